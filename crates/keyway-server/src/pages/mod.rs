//! Server-rendered pages: the hosted connect widget, the authorization-link page, and
//! the OAuth callback. They work without JavaScript.
//!
//! Before any provider is contacted the page says who is connecting what for which
//! application (S9). Starting a flow sets a browser-binding cookie whose hash the
//! pending authorization stores; the callback must present it (S4). Forms carry a
//! CSRF token derived from that cookie (S8).

mod api_key;
pub(crate) mod render;

pub use render::Pages;

use crate::web::{cookie, same_secret};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use keyway_core::connect::{CallbackOutcome, CallbackParams, FlowTarget};
use keyway_core::ids::{random_token, sha256_hex};
use keyway_core::CoreError;
use minijinja::context;
use serde::Deserialize;

const BIND_COOKIE: &str = "kw_bind";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/connect/{token}", get(widget).post(start_from_widget))
        .route("/connect/link/{id}", get(link_page).post(start_from_link))
        .route(
            "/connect/{token}/start/{slug}",
            get(start_page).post(start_from_page),
        )
        .route("/connect/{token}/disconnect", post(disconnect))
        .route(
            "/connect/{token}/key/{slug}",
            get(api_key::widget_form).post(api_key::widget_submit),
        )
        .route(
            "/connect/link/{id}/key",
            get(api_key::link_form).post(api_key::link_submit),
        )
        .route("/oauth/callback", get(callback))
        .route("/assets/keyway.css", get(stylesheet))
        .route("/assets/console.css", get(console_stylesheet))
        .route("/assets/keyway.js", get(host_script))
        .route("/assets/theme.css", get(theme_stylesheet))
        .route("/assets/keyway-page.js", get(page_script))
}

/// The host-page library: opens the widget in a popup or an iframe and reports results.
async fn host_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin",
            ),
        ],
        include_str!("../../assets/keyway.js"),
    )
}

#[derive(Deserialize)]
struct ThemeQuery {
    accent: Option<String>,
}

/// An application's accent colour as a stylesheet (CSP allows no inline styles).
async fn theme_stylesheet(Query(q): Query<ThemeQuery>) -> Response {
    let Some(hex) = q
        .accent
        .filter(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        format!(":root {{ --accent: #{hex}; }}\n"),
    )
        .into_response()
}

/// Template values and image sources for an application's branding.
pub(crate) struct Theme {
    pub css: Option<String>,
    pub logo_url: Option<String>,
    pub img_src: Vec<String>,
}

pub(crate) fn theme(b: &keyway_core::model::Branding) -> Theme {
    let logo_origin = b
        .logo_url
        .as_deref()
        .and_then(|l| url::Url::parse(l).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null");
    Theme {
        css: b
            .accent_color
            .as_deref()
            .map(|c| format!("/assets/theme.css?accent={}", c.trim_start_matches('#'))),
        logo_url: logo_origin.as_ref().and(b.logo_url.clone()),
        img_src: logo_origin.into_iter().collect(),
    }
}

/// The widget pages' own script: result messages and popup links (pages work without it).
async fn page_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/keyway-page.js"),
    )
}

async fn console_stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/console.css"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/keyway.css"),
    )
}

/// The browser-binding secret: the existing cookie, or a new one to set.
fn binding(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, BIND_COOKIE) {
        Some(v) => (v, false),
        None => (random_token(32), true),
    }
}

fn csrf_for(binding: &str) -> String {
    sha256_hex(&format!("keyway csrf\0{binding}"))
}

fn set_cookie(s: &AppState, resp: &mut Response, value: &str) {
    let secure = if s.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    // Lax: the cookie must come back on the provider's top-level redirect to the callback.
    let c = format!("{BIND_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600{secure}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn page(s: &AppState, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    s.pages.render(status, name, ctx)
}

fn error_page(s: &AppState, e: &CoreError) -> Response {
    let (status, title, message) = match e {
        CoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "Link not found", "This link is not valid. Ask the application for a new one.".to_string()),
        CoreError::Invalid { code: "connect_session_expired" | "link_expired", .. } => {
            (StatusCode::GONE, "Link expired", "This link has expired. Go back to the application and start again.".to_string())
        }
        CoreError::Invalid { code: "invalid_state", .. } => (
            StatusCode::BAD_REQUEST,
            "This sign-in can't be completed",
            "It was already used, has expired, or did not start here. Go back to the application and connect again.".to_string(),
        ),
        CoreError::Forbidden { code: "browser_mismatch", .. } => (
            StatusCode::FORBIDDEN,
            "Started in another browser",
            "For your safety, a connection must be finished in the browser that started it. Start again from the application.".to_string(),
        ),
        CoreError::Forbidden { code: "csrf", .. } => (
            StatusCode::FORBIDDEN,
            "Please try again",
            "The form expired or came from another page. Reload the page and try again.".to_string(),
        ),
        CoreError::Invalid { code: "issuer_mismatch", .. } => (
            StatusCode::BAD_REQUEST,
            "Unexpected sign-in response",
            "The answer did not come from the service this connection was started with. Start again.".to_string(),
        ),
        CoreError::ProviderUnavailable { provider, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            format!("{provider} did not answer. Wait a moment and connect again."),
        ),
        CoreError::ProviderRejected { provider, .. } => (
            StatusCode::BAD_GATEWAY,
            "The service refused the connection",
            format!("{provider} did not accept the sign-in. Try again; if it keeps failing, tell the application's support."),
        ),
        CoreError::Invalid { detail, .. } => (StatusCode::BAD_REQUEST, "Something is not right", detail.clone()),
        CoreError::Conflict { detail, .. } => (StatusCode::CONFLICT, "Already done", detail.clone()),
        other => {
            tracing::error!(error = %other, "connect page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Keyway could not finish this step. Try again shortly.".to_string())
        }
    };
    page(
        s,
        status,
        "message.html",
        context! { title, message, ok => false },
    )
}

#[derive(Deserialize, Default)]
struct WidgetQuery {
    /// `1`: rendered inside the application's iframe (keyway.js inline mode).
    embed: Option<String>,
    /// Set after a disconnect, to report it to the host page.
    disconnected: Option<String>,
}

/// The application's allowed origins as the JSON the pages' script reads.
fn origins_json(app: &keyway_core::model::Application) -> String {
    serde_json::to_string(&app.allowed_origins).unwrap_or_else(|_| "[]".into())
}

/// The CSRF token of the widget list's disconnect forms: bound to the connect session
/// (the capability the page was opened with), so it works inside a third-party iframe
/// where the binding cookie is not sent; the Origin header is checked as well.
fn session_csrf(token: &str) -> String {
    sha256_hex(&format!("keyway widget csrf\0{token}"))
}

async fn widget(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    q: Result<Query<WidgetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let embed = q.embed.as_deref() == Some("1");
    let session = match s.broker.connect_session_by_token(&token).await {
        Ok(v) => v,
        Err(e) => return error_page(&s, &e),
    };
    let (app, items) = match s.broker.widget_view(&session).await {
        Ok(v) => v,
        Err(e) => return error_page(&s, &e),
    };
    let (bind, fresh) = binding(&headers);
    let rows: Vec<minijinja::Value> = items
        .iter()
        .map(|item| {
            let i = &item.integration;
            let entry = s.broker.catalog.get(&i.provider);
            let api_key = entry.is_some_and(|e| e.provider.api_key.is_some());
            let state = match &item.primary {
                None => "not_connected",
                Some(c) if c.status == keyway_core::model::ConnectionStatus::NeedsReauthorization => "needs_reconnect",
                Some(_) if !item.missing_scopes.is_empty() => "missing_scopes",
                Some(_) => "connected",
            };
            let verb = match (api_key, state) {
                (true, "not_connected") => "Add key",
                (true, _) => "Replace key",
                (false, "not_connected") => "Connect",
                (false, _) => "Reconnect",
            };
            let key_url = api_key.then(|| format!("/connect/{token}/key/{}", i.slug));
            let connections: Vec<minijinja::Value> = item
                .connections
                .iter()
                .map(|c| {
                    context! {
                        id => c.id,
                        account => {
                            let name = c.account_name.clone().or(c.account_id.clone());
                            match (&c.label, name) {
                                (Some(l), Some(n)) if *l != n => format!("{l} ({n})"),
                                (Some(l), _) => l.clone(),
                                (None, Some(n)) => n,
                                (None, None) => "connected account".into(),
                            }
                        },
                    }
                })
                .collect();
            context! {
                slug => i.slug,
                name => entry.map(|e| e.provider.name.clone()).unwrap_or_else(|| i.provider.clone()),
                initial => entry.map(|e| e.provider.name.chars().next().unwrap_or('?').to_string()).unwrap_or_default(),
                state,
                verb,
                account => item.primary.as_ref().and_then(|c| c.account_name.clone().or(c.account_id.clone())),
                missing => item.missing_scopes,
                popup_url => key_url.clone().unwrap_or_else(|| format!("/connect/{token}/start/{}", i.slug)),
                key_url,
                connections,
            }
        })
        .collect();
    let result = q.disconnected.as_ref().map(|id| {
        serde_json::json!({"type": "keyway:disconnected", "connection_id": id}).to_string()
    });
    let th = theme(&app.branding);
    let sec = render::PageSecurity {
        frame_ancestors: if embed {
            app.allowed_origins.clone()
        } else {
            Vec::new()
        },
        img_src: th.img_src.clone(),
    };
    let suffix = if embed { "?embed=1" } else { "" };
    let mut resp = s.pages.render_with(
        StatusCode::OK,
        "connect.html",
        context! {
            app_name => app.name,
            user_id => session.user_id,
            organization_id => session.organization_id,
            shared => session.shared,
            items => rows,
            csrf => csrf_for(&bind),
            action => format!("/connect/{token}"),
            disconnect_action => format!("/connect/{token}/disconnect{suffix}"),
            disconnect_csrf => session_csrf(&token),
            embed,
            kw_list => true,
            kw_origins => origins_json(&app),
            kw_result => result,
            notice => q.disconnected.as_ref().map(|_| "Disconnected. The account's tokens were erased."),
            theme_css => th.css,
            logo_url => th.logo_url,
        },
        &sec,
    );
    if fresh {
        set_cookie(&s, &mut resp, &bind);
    }
    resp
}

#[derive(Deserialize)]
struct DisconnectForm {
    connection_id: String,
    csrf: String,
}

/// `POST /connect/{token}/disconnect`: the user removes one of the session's connections.
async fn disconnect(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    q: Result<Query<WidgetQuery>, axum::extract::rejection::QueryRejection>,
    form: Result<Form<DisconnectForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let embed = q
        .ok()
        .and_then(|Query(q)| q.embed)
        .is_some_and(|e| e == "1");
    let result = async {
        let Ok(Form(form)) = form else {
            return Err(CoreError::invalid("invalid_request", "the form is incomplete"));
        };
        // Pages send no referrer, so browsers may send `Origin: null` for them; a named
        // origin must be Keyway's own.
        let same_origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|o| o == "null" || o == s.config.public_origin());
        if !same_origin || !same_secret(&session_csrf(&token), &form.csrf) {
            return Err(CoreError::Forbidden {
                code: "csrf",
                detail: "csrf token mismatch".into(),
            });
        }
        let session = s.broker.connect_session_by_token(&token).await?;
        let (conn, outcome) = s
            .broker
            .disconnect_from_session(&session, &form.connection_id)
            .await?;
        tracing::info!(connection = %conn.id, revocation = ?outcome, "disconnected from the widget");
        Ok(conn.id)
    }
    .await;
    match result {
        Ok(id) => {
            let embed = if embed { "&embed=1" } else { "" };
            Redirect::to(&format!("/connect/{token}?disconnected={id}{embed}")).into_response()
        }
        Err(e) => error_page(&s, &e),
    }
}

/// `GET /connect/{token}/start/{slug}`: one integration's confirmation page, opened in a
/// window of its own from the embedded widget (a third-party iframe cannot keep the
/// browser-binding cookie the callback needs).
async fn start_page(
    State(s): State<AppState>,
    Path((token, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let session = s.broker.connect_session_by_token(&token).await?;
        if session
            .integrations
            .as_ref()
            .is_some_and(|list| !list.contains(&slug))
        {
            return Err(CoreError::invalid(
                "integration_not_allowed",
                "this link does not offer that integration",
            ));
        }
        let app = s
            .broker
            .store
            .get_application(&session.application_id)
            .await?
            .ok_or(CoreError::NotFound {
                what: "application",
            })?;
        let integration =
            s.broker
                .store
                .get_integration(&slug)
                .await?
                .ok_or(CoreError::NotFound {
                    what: "integration",
                })?;
        let provider_name = s
            .broker
            .catalog
            .get(&integration.provider)
            .map(|e| e.provider.name.clone())
            .unwrap_or(integration.provider);
        Ok((session, app, provider_name))
    }
    .await;
    let (session, app, provider_name) = match result {
        Ok(v) => v,
        Err(e) => return error_page(&s, &e),
    };
    let (bind, fresh) = binding(&headers);
    let th = theme(&app.branding);
    let mut resp = s.pages.render_with(
        StatusCode::OK,
        "link.html",
        context! {
            app_name => app.name,
            user_id => session.user_id,
            organization_id => session.organization_id,
            provider_name,
            csrf => csrf_for(&bind),
            action => format!("/connect/{token}/start/{slug}"),
            theme_css => th.css,
            logo_url => th.logo_url,
        },
        &render::PageSecurity {
            frame_ancestors: Vec::new(),
            img_src: th.img_src,
        },
    );
    if fresh {
        set_cookie(&s, &mut resp, &bind);
    }
    resp
}

async fn start_from_page(
    State(s): State<AppState>,
    Path((token, slug)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<StartForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(mut f)| {
        f.integration = Some(slug);
        Form(f)
    });
    start_from_widget(State(s), Path(token), headers, form).await
}

#[derive(Deserialize)]
struct StartForm {
    integration: Option<String>,
    csrf: String,
}

fn check_csrf(headers: &HeaderMap, form_csrf: &str) -> Result<String, CoreError> {
    let bind = cookie(headers, BIND_COOKIE).ok_or(CoreError::Forbidden {
        code: "csrf",
        detail: "no binding cookie".into(),
    })?;
    let expected = csrf_for(&bind);
    if same_secret(&expected, form_csrf) {
        Ok(bind)
    } else {
        Err(CoreError::Forbidden {
            code: "csrf",
            detail: "csrf token mismatch".into(),
        })
    }
}

async fn start_from_widget(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<StartForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let result = async {
        let Ok(Form(form)) = form else {
            return Err(CoreError::invalid(
                "invalid_request",
                "the form is incomplete",
            ));
        };
        let bind = check_csrf(&headers, &form.csrf)?;
        let session = s.broker.connect_session_by_token(&token).await?;
        let integration = form
            .integration
            .filter(|i| !i.is_empty())
            .ok_or_else(|| CoreError::invalid("invalid_request", "choose an integration"))?;
        if session
            .integrations
            .as_ref()
            .is_some_and(|list| !list.contains(&integration))
        {
            return Err(CoreError::invalid(
                "integration_not_allowed",
                "this link does not offer that integration",
            ));
        }
        if api_key::is_api_key(&s, &integration).await {
            return Ok(format!("/connect/{token}/key/{integration}"));
        }
        s.broker
            .start_authorization(
                FlowTarget {
                    application_id: session.application_id,
                    user_id: session.user_id,
                    organization_id: session.organization_id,
                    integration,
                    connect_session_id: Some(session.id),
                    return_url: session.return_url,
                    owner: session.owner,
                    purpose: session.purpose,
                    shared: session.shared,
                },
                &bind,
            )
            .await
    }
    .await;
    match result {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => error_page(&s, &e),
    }
}

async fn link_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let link = match s.broker.authorize_link(&id).await {
        Ok(l) => l,
        Err(e) => return error_page(&s, &e),
    };
    let app = match s.broker.store.get_application(&link.application_id).await {
        Ok(Some(a)) => a,
        _ => {
            return error_page(
                &s,
                &CoreError::NotFound {
                    what: "application",
                },
            )
        }
    };
    let provider_name = match s.broker.store.get_integration(&link.integration).await {
        Ok(Some(i)) => s
            .broker
            .catalog
            .get(&i.provider)
            .map(|e| e.provider.name.clone())
            .unwrap_or(i.provider),
        _ => {
            return error_page(
                &s,
                &CoreError::NotFound {
                    what: "integration",
                },
            )
        }
    };
    let (bind, fresh) = binding(&headers);
    let mut resp = page(
        &s,
        StatusCode::OK,
        "link.html",
        context! {
            app_name => app.name,
            user_id => link.user_id,
            organization_id => link.organization_id,
            provider_name,
            csrf => csrf_for(&bind),
            action => format!("/connect/link/{id}"),
        },
    );
    if fresh {
        set_cookie(&s, &mut resp, &bind);
    }
    resp
}

async fn start_from_link(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<StartForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let result = async {
        let Ok(Form(form)) = form else {
            return Err(CoreError::invalid(
                "invalid_request",
                "the form is incomplete",
            ));
        };
        let bind = check_csrf(&headers, &form.csrf)?;
        let link = s.broker.authorize_link(&id).await?;
        if api_key::is_api_key(&s, &link.integration).await {
            return Ok(format!("/connect/link/{id}/key"));
        }
        s.broker
            .start_authorization(
                FlowTarget {
                    application_id: link.application_id,
                    user_id: link.user_id,
                    organization_id: link.organization_id,
                    integration: link.integration,
                    connect_session_id: link.connect_session_id,
                    return_url: link.return_url,
                    owner: link.owner,
                    purpose: link.purpose,
                    shared: false,
                },
                &bind,
            )
            .await
    }
    .await;
    match result {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => error_page(&s, &e),
    }
}

#[derive(Deserialize, Default)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

fn with_params(base: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut u = url::Url::parse(base).ok()?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Some(u.into())
}

/// The application's allowed origins, for result messages from a finished flow.
async fn app_origins(s: &AppState, application_id: &str) -> String {
    match s.broker.store.get_application(application_id).await {
        Ok(Some(app)) => origins_json(&app),
        _ => "[]".into(),
    }
}

/// The end of a successful connect: back to the application, or a page saying so that
/// also tells the page that opened it (keyway.js) by `postMessage`, to the application's
/// allowed origins only.
async fn connected(
    s: &AppState,
    connection: &keyway_core::model::Connection,
    return_url: Option<String>,
) -> Response {
    tracing::info!(connection = %connection.id, integration = %connection.integration, "account connected");
    let origins = app_origins(s, &connection.application_id).await;
    match return_url.and_then(|r| {
        with_params(
            &r,
            &[
                ("connection_id", &connection.id),
                ("status", connection.status.as_str()),
            ],
        )
    }) {
        Some(u) => Redirect::to(&u).into_response(),
        None => page(
            s,
            StatusCode::OK,
            "message.html",
            context! {
                ok => true,
                title => "Connected",
                message => format!(
                    "Your account{} is connected. You can close this window.",
                    connection.account_name.as_deref().map(|n| format!(" {n}")).unwrap_or_default()
                ),
                kw_origins => origins,
                kw_close => true,
                kw_result => serde_json::json!({
                    "type": "keyway:connected",
                    "integration": connection.integration,
                    "connection_id": connection.id,
                    "status": connection.status.as_str(),
                    "account": connection.account_name,
                }).to_string(),
            },
        ),
    }
}

/// `GET /oauth/callback`: the single redirect URI registered with every provider.
async fn callback(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let bind = cookie(&headers, BIND_COOKIE);
    let params = CallbackParams {
        state: q.state,
        code: q.code,
        error: q.error,
        iss: q.iss,
    };
    match s.broker.complete_callback(params, bind.as_deref()).await {
        Ok(CallbackOutcome::Connected {
            connection,
            return_url,
        }) => connected(&s, &connection, return_url).await,
        Ok(CallbackOutcome::ProviderError {
            error,
            return_url,
            integration,
            application_id,
        }) => {
            tracing::info!(%integration, %error, "provider ended the authorization with an error");
            match return_url
                .and_then(|r| with_params(&r, &[("error", &error), ("integration", &integration)]))
            {
                Some(u) => Redirect::to(&u).into_response(),
                None => {
                    let message = if error == "access_denied" {
                        "You declined the connection. Nothing was connected.".to_string()
                    } else {
                        format!("The service ended the connection with the error `{error}`. Nothing was connected.")
                    };
                    let kw_result = serde_json::json!({"type": "keyway:error", "integration": integration, "error": error}).to_string();
                    page(
                        &s,
                        StatusCode::OK,
                        "message.html",
                        context! {
                            ok => false,
                            title => "Not connected",
                            message,
                            kw_result,
                            kw_origins => app_origins(&s, &application_id).await,
                            kw_close => true,
                        },
                    )
                }
            }
        }
        Err(e) => error_page(&s, &e),
    }
}
