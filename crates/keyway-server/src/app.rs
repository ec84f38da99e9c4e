//! Assembling a running Keyway from options: used by `keyway serve` and by the testkit,
//! so tests exercise the same wiring as production.

use crate::dev::DevBootstrap;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::{AppState, ServerConfig};
use axum::Router;
use keyway_core::catalog::{Catalog, CatalogError};
use keyway_core::clock::{Clock, SystemClock};
use keyway_core::ids::{random_token, sha256_hex};
use keyway_core::outbound::HttpClient;
use keyway_core::secret::Secret;
use keyway_core::store::Store;
use keyway_core::vault::{MasterKey, Vault};
use keyway_core::{Broker, BrokerSettings, CoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct StartOptions {
    pub public_url: String,
    pub store: Arc<dyn Store>,
    pub master_key: MasterKey,
    pub previous_master_keys: Vec<MasterKey>,
    pub admin_key: Option<Secret>,
    pub dev: bool,
    /// Test only, with `dev`: `/mcp` answers unauthenticated requests as the demo user's
    /// sandbox session (for the MCP conformance suite).
    pub mcp_conformance: bool,
    /// Serve the sandbox provider (always on with `dev`).
    pub sandbox: bool,
    pub custom_providers: BTreeMap<String, toml::Value>,
    /// Replaces the reqwest client (tests script provider answers).
    pub http: Option<Arc<dyn HttpClient>>,
    pub clock: Option<Arc<dyn Clock>>,
    /// Replaces the default broker settings (the public URL is always set from above).
    pub settings: Option<BrokerSettings>,
    pub max_body_bytes: usize,
    /// Routes added inside the same middleware stack (benchmarks add a bare endpoint).
    pub extra_routes: Option<Router<AppState>>,
}

impl StartOptions {
    pub fn new(public_url: &str, store: Arc<dyn Store>, master_key: MasterKey) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_string(),
            store,
            master_key,
            previous_master_keys: Vec::new(),
            admin_key: None,
            dev: false,
            mcp_conformance: false,
            sandbox: false,
            custom_providers: BTreeMap::new(),
            http: None,
            clock: None,
            settings: None,
            max_body_bytes: 64 * 1024,
            extra_routes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("KEYWAY_ADMIN_KEY must be at least 32 characters")]
    WeakAdminKey,
    #[error("could not build the HTTP client: {0}")]
    Http(String),
    #[error("dev bootstrap failed: {0}")]
    Dev(CoreError),
}

pub struct Built {
    pub router: Router,
    pub state: AppState,
    pub broker: Arc<Broker>,
    pub dev: Option<DevBootstrap>,
}

pub async fn build(opts: StartOptions) -> Result<Built, StartError> {
    let sandbox_on = opts.dev || opts.sandbox;
    let catalog = Catalog::load(&opts.public_url, &opts.custom_providers, sandbox_on)?;
    if let Some(k) = &opts.admin_key {
        if k.expose().len() < 32 {
            return Err(StartError::WeakAdminKey);
        }
    }
    let http: Arc<dyn HttpClient> = match opts.http {
        Some(h) => h,
        None => Arc::new(
            crate::outbound::ReqwestClient::new().map_err(|e| StartError::Http(e.to_string()))?,
        ),
    };
    let clock = opts.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let mut settings = opts
        .settings
        .unwrap_or_else(|| BrokerSettings::new(&opts.public_url));
    settings.public_url = opts.public_url.clone();
    let vault = Vault::new(&opts.master_key, &opts.previous_master_keys);
    let broker = Arc::new(Broker::new(
        opts.store,
        Arc::new(vault),
        Arc::new(catalog),
        http,
        clock,
        settings,
    ));
    let sandbox_secret = Secret::new(random_token(24));
    let sandbox = sandbox_on.then(|| {
        Arc::new(Sandbox::new(SandboxConfig {
            client_secret: sandbox_secret.clone(),
            redirect_uri: broker.settings.redirect_uri(),
            issuer: format!("{}/sandbox", opts.public_url),
            access_token_ttl: time::Duration::minutes(5),
        }))
    });
    let config = ServerConfig {
        public_url: opts.public_url.clone(),
        admin_key_hash: opts.admin_key.as_ref().map(|k| sha256_hex(k.expose())),
        dev: opts.dev,
        max_body_bytes: opts.max_body_bytes,
        mcp_conformance: opts.dev && opts.mcp_conformance,
    };
    let dev = if opts.dev {
        Some(
            crate::dev::bootstrap(&broker, &sandbox_secret)
                .await
                .map_err(StartError::Dev)?,
        )
    } else if sandbox_on
        && broker
            .store
            .get_integration("sandbox")
            .await
            .ok()
            .flatten()
            .is_some()
    {
        // Keep an existing sandbox integration's secret in step with this process.
        let _ = broker
            .update_integration(
                "system:sandbox",
                "sandbox",
                keyway_core::admin::IntegrationPatch {
                    client_secret: Some(sandbox_secret.clone()),
                    ..Default::default()
                },
            )
            .await;
        None
    } else {
        None
    };
    let state = AppState::new(broker.clone(), config, sandbox);
    let router = crate::router_with(state.clone(), opts.extra_routes);
    Ok(Built {
        router,
        state,
        broker,
        dev,
    })
}

/// Background housekeeping: retries failed provider revocations every minute and drops
/// expired sessions and states every five.
pub fn spawn_housekeeping(broker: Arc<Broker>) -> tokio::task::JoinHandle<()> {
    let deliveries = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tick.tick().await;
            if let Err(e) = deliveries.deliver_webhooks().await {
                tracing::warn!(error = %e, "webhook delivery failed");
            }
        }
    });
    let keepalive = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tick.tick().await;
            // With several replicas on one database, one of them runs each pass.
            if !keepalive
                .take_job_turn("keep-alive", std::time::Duration::from_secs(25))
                .await
            {
                continue;
            }
            if let Err(e) = keepalive.keep_alive().await {
                tracing::warn!(error = %e, "keep-alive run failed");
            }
        }
    });
    let retries = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if !retries
                .take_job_turn("revocation-retries", std::time::Duration::from_secs(55))
                .await
            {
                continue;
            }
            match retries.retry_revocations().await {
                Ok(n) if n > 0 => tracing::info!(tried = n, "retried provider revocations"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "revocation retries failed"),
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            match broker.purge_expired().await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "purged expired sessions and states"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
            }
        }
    })
}
