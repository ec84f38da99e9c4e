//! Keyway's HTTP surface: the v1 API, the hosted connect pages, the OAuth callback, the
//! built-in sandbox provider and the operations endpoints. Handlers are thin: they
//! extract, call the broker, and map the result.

pub mod api;
pub mod app;
pub mod console;
pub mod dev;
pub mod error;
pub mod extract;
pub mod mcp;
pub mod metrics;
pub mod oauth_server;
pub mod openapi;
pub mod ops;
pub mod outbound;
pub mod pages;
pub mod sandbox;
pub mod web;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use keyway_core::Broker;
use std::ops::Deref;
use std::sync::Arc;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub public_url: String,
    /// SHA-256 of `KEYWAY_ADMIN_KEY`, when set.
    pub admin_key_hash: Option<String>,
    pub dev: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Test only (`serve --dev --mcp-conformance`): unauthenticated `/mcp`.
    pub mcp_conformance: bool,
}

impl ServerConfig {
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The origin browsers send for Keyway's own pages (`Origin` header).
    pub fn public_origin(&self) -> String {
        url::Url::parse(&self.public_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| self.public_url.clone())
    }
}

pub struct Inner {
    pub broker: Arc<Broker>,
    pub config: ServerConfig,
    pub pages: pages::Pages,
    pub metrics: metrics::Metrics,
    pub sandbox: Option<Arc<sandbox::Sandbox>>,
    /// Signed-in admin console sessions (in memory).
    pub console: console::session::Sessions,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        broker: Arc<Broker>,
        config: ServerConfig,
        sandbox: Option<Arc<sandbox::Sandbox>>,
    ) -> Self {
        let metrics = metrics::Metrics::new(broker.clone());
        Self(Arc::new(Inner {
            broker,
            config,
            pages: pages::Pages::new(),
            metrics,
            sandbox,
            console: Default::default(),
        }))
    }
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    router_with(state, None)
}

/// The server's routes plus `extra`, all inside the same middleware stack.
pub fn router_with(state: AppState, extra: Option<Router<AppState>>) -> Router {
    let v1 = Router::new()
        .route(
            "/integrations",
            post(api::admin::create_integration).get(api::admin::list_integrations),
        )
        .route(
            "/integrations/{slug}",
            get(api::admin::get_integration).patch(api::admin::patch_integration),
        )
        .route(
            "/integrations/{slug}/authorize",
            post(api::connect::authorize),
        )
        .route(
            "/applications",
            post(api::admin::create_application).get(api::admin::list_applications),
        )
        .route("/integrations/{slug}/tools", get(api::tools::list))
        .route(
            "/agent-authorizations/{id}/identify",
            post(api::agents::identify),
        )
        .route("/agent-sessions", get(api::agents::list))
        .route(
            "/agent-sessions/{id}",
            get(api::agents::get).delete(api::agents::revoke),
        )
        .route("/tools/{integration}/{tool}", post(api::tools::call))
        .route(
            "/applications/{id}",
            axum::routing::patch(api::admin::update_application),
        )
        .route(
            "/applications/{id}/api-keys",
            post(api::admin::create_api_key).get(api::admin::list_api_keys),
        )
        .route(
            "/api-keys/{id}",
            axum::routing::delete(api::admin::revoke_api_key),
        )
        .route("/providers", get(api::admin::list_providers))
        .route("/admin/master-key/rotate", post(api::admin::reseal))
        .route("/connect/sessions", post(api::connect::create_session))
        .route("/token", post(api::tokens::issue))
        .route("/connections", get(api::connections::list))
        .route(
            "/connections/import",
            post(api::import::import).layer(DefaultBodyLimit::max(4 * 1024 * 1024)),
        )
        .route(
            "/connections/{id}",
            get(api::connections::get)
                .patch(api::connections::patch)
                .delete(api::connections::delete),
        )
        .route("/inventory", get(api::governance::inventory))
        .route("/users/{user_id}/offboard", post(api::governance::offboard))
        .route("/audit", get(api::governance::audit))
        .route("/audit/verify", post(api::governance::verify))
        .route(
            "/webhooks",
            post(api::webhooks::create).get(api::webhooks::list),
        )
        .route(
            "/webhooks/{id}",
            axum::routing::delete(api::webhooks::delete),
        )
        .route("/webhooks/{id}/deliveries", get(api::webhooks::deliveries))
        .route(
            "/proxy/{integration}/{*path}",
            axum::routing::any(api::proxy::proxy)
                .layer(DefaultBodyLimit::max(keyway_core::proxy::MAX_PROXY_BODY)),
        )
        .fallback(ops::not_found);
    let mut app = Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(pages::routes())
        .merge(console::routes())
        .merge(oauth_server::routes());
    if state.sandbox.is_some() {
        app = app.merge(sandbox::routes());
    }
    let mcp_routes: Router<AppState> = Router::new()
        .nest_service("/mcp", mcp::service(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            mcp::authenticate,
        ));
    app = app.merge(mcp_routes);
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    app.fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}
