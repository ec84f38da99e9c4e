//! Keyway's OAuth 2.1 authorization server for MCP clients: RFC 8414 and RFC 9728
//! metadata, RFC 7591 registration, `/oauth2/authorize` (to the application's login),
//! the approval page, `/oauth2/token`, and the `--dev` login. The domain rules live in
//! `keyway_core::agents`.

use crate::web::{cookie, same_secret};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use keyway_core::agents::{AuthorizeOutcome, AuthorizeParams, Decision, TokenExchange};
use keyway_core::catalog::Access;
use keyway_core::ids::{random_token, sha256_hex};
use keyway_core::CoreError;
use minijinja::context;
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route(
            "/.well-known/oauth-authorization-server/{*rest}",
            get(as_metadata),
        )
        .route("/.well-known/openid-configuration", get(as_metadata))
        .route(
            "/.well-known/oauth-protected-resource",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*rest}",
            get(resource_metadata_for),
        )
        .route("/oauth2/register", post(register))
        .route("/oauth2/authorize", get(authorize))
        .route("/oauth2/token", post(token))
        .route(
            "/agent/approve/{id}",
            get(approval_page).post(approval_decision),
        )
        .route("/dev/login", get(dev_login_page).post(dev_login))
}

/// RFC 8414 authorization-server metadata (also served at the OIDC discovery path that
/// some clients try first).
async fn as_metadata(State(s): State<AppState>) -> Response {
    let iss = s.broker.issuer();
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth2/authorize"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "registration_endpoint": format!("{iss}/oauth2/register"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": ["mcp"],
        "client_id_metadata_document_supported": true,
    }))
    .into_response()
}

fn resource_doc(s: &AppState, resource: String) -> Response {
    Json(json!({
        "resource": resource,
        "authorization_servers": [s.broker.issuer()],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["mcp"],
        "resource_name": "Keyway",
    }))
    .into_response()
}

/// RFC 9728 protected-resource metadata for `/mcp`.
async fn resource_metadata(State(s): State<AppState>) -> Response {
    resource_doc(&s, s.broker.mcp_resource(None))
}

/// `/.well-known/oauth-protected-resource/mcp[/{application_id}]` (RFC 9728 §3.1).
async fn resource_metadata_for(State(s): State<AppState>, Path(rest): Path<String>) -> Response {
    let rest = rest.trim_end_matches('/');
    match rest.strip_prefix("mcp") {
        Some("") => resource_doc(&s, s.broker.mcp_resource(None)),
        Some(app) if app.starts_with('/') && !app[1..].contains('/') => {
            resource_doc(&s, s.broker.mcp_resource(Some(&app[1..])))
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
struct RegisterBody {
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
}

/// RFC 7591 dynamic client registration: public clients only.
async fn register(
    State(s): State<AppState>,
    body: Result<Json<RegisterBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(b)) = body else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "send the client metadata as JSON",
        );
    };
    if b.token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "only public clients (token_endpoint_auth_method=none) are supported",
        );
    }
    if b.grant_types.as_ref().is_some_and(|g| {
        g.iter()
            .any(|x| x != "authorization_code" && x != "refresh_token")
    }) || b
        .response_types
        .as_ref()
        .is_some_and(|r| r.iter().any(|x| x != "code"))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "only the authorization_code grant with response_type code",
        );
    }
    let name = b.client_name.unwrap_or_else(|| "MCP client".into());
    match s
        .broker
        .register_agent_client(&name, &b.redirect_uris)
        .await
    {
        Ok(c) => {
            tracing::info!(client_id = %c.id, "agent client registered");
            (
                StatusCode::CREATED,
                Json(json!({
                    "client_id": c.id,
                    "client_name": c.name,
                    "redirect_uris": c.redirect_uris,
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "client_id_issued_at": c.created_at.unix_timestamp(),
                })),
            )
                .into_response()
        }
        Err(CoreError::Invalid { code, detail }) => {
            oauth_error(StatusCode::BAD_REQUEST, code, &detail)
        }
        Err(e) => {
            tracing::error!(error = %e, "client registration failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "try again",
            )
        }
    }
}

#[derive(Deserialize, Default)]
struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
}

fn message(s: &AppState, status: StatusCode, title: &str, message: String) -> Response {
    s.pages.render(
        status,
        "message.html",
        context! { ok => false, title, message },
    )
}

async fn authorize(
    State(s): State<AppState>,
    q: Result<Query<AuthorizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let p = AuthorizeParams {
        response_type: q.response_type,
        client_id: q.client_id,
        redirect_uri: q.redirect_uri,
        state: q.state,
        code_challenge: q.code_challenge,
        code_challenge_method: q.code_challenge_method,
        resource: q.resource,
        scope: q.scope,
    };
    match s.broker.start_agent_authorization(p).await {
        Ok(AuthorizeOutcome::Login(url)) | Ok(AuthorizeOutcome::ClientError(url)) => {
            Redirect::to(&url).into_response()
        }
        Err(CoreError::Invalid { detail, .. }) => message(
            &s,
            StatusCode::BAD_REQUEST,
            "This agent's request is not valid",
            format!("{detail}. Nothing was shared. Tell the agent's developer."),
        ),
        Err(e) => {
            tracing::error!(error = %e, "authorization request failed");
            message(
                &s,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Keyway could not handle this request. Try again shortly.".into(),
            )
        }
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
    resource: Option<String>,
}

/// RFC 6749 §3.2 token endpoint (authorization-code grant, public clients).
async fn token(
    State(s): State<AppState>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the parameters form-encoded",
        );
    };
    let x = TokenExchange {
        grant_type: f.grant_type,
        code: f.code,
        redirect_uri: f.redirect_uri,
        client_id: f.client_id,
        code_verifier: f.code_verifier,
        resource: f.resource,
    };
    match s.broker.exchange_agent_code(x).await {
        Ok(t) => {
            let mut r = Json(json!({
                "access_token": t.access_token,
                "token_type": "Bearer",
                "expires_in": t.expires_in,
                "scope": t.scope,
            }))
            .into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => oauth_error(StatusCode::BAD_REQUEST, e.error, &e.description),
    }
}

// --- the approval page -----------------------------------------------------------------

const APPROVAL_COOKIE: &str = "kw_approve";

fn approval_csrf(binding: &str, id: &str) -> String {
    sha256_hex(&format!("keyway approval\0{binding}\0{id}"))
}

#[derive(Deserialize, Default)]
struct ApprovalQuery {
    t: Option<String>,
}

async fn approval_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<ApprovalQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let secret = q.ok().and_then(|Query(q)| q.t).unwrap_or_default();
    let (a, client, app) = match s
        .broker
        .agent_authorization_for_approval(&id, &secret)
        .await
    {
        Ok(v) => v,
        Err(CoreError::NotFound { .. }) => return message(
            &s,
            StatusCode::NOT_FOUND,
            "Approval not found",
            "This approval link is not valid or was already used. Ask the agent to connect again."
                .into(),
        ),
        Err(CoreError::Invalid { detail, .. }) => {
            return message(&s, StatusCode::GONE, "Approval expired", detail)
        }
        Err(e) => {
            tracing::error!(error = %e, "approval page failed");
            return message(
                &s,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Try again shortly.".into(),
            );
        }
    };
    let user_id = a.user_id.clone().unwrap_or_default();
    let integrations = s
        .broker
        .agent_integrations_of(&app, &user_id, a.organization_id.as_deref())
        .await
        .unwrap_or_default();
    let mut items: Vec<minijinja::Value> = Vec::new();
    for slug in &integrations {
        let name = integration_label(&s, slug).await;
        items.push(context! { slug, name });
    }
    let redirect_host = url::Url::parse(&a.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| a.redirect_uri.clone());
    let max_minutes = app.agent_session_max_secs / 60;
    let default_minutes = app.agent_session_default_secs / 60;
    let durations: Vec<minijinja::Value> = [15, 60, 240, 480, 1440, 10080]
        .iter()
        .copied()
        .filter(|m| *m <= max_minutes)
        .chain(std::iter::once(default_minutes))
        .collect::<std::collections::BTreeSet<i64>>()
        .into_iter()
        .map(|m| {
            let label = if m % 1440 == 0 {
                format!("{} day{}", m / 1440, if m / 1440 == 1 { "" } else { "s" })
            } else if m % 60 == 0 {
                format!("{} hour{}", m / 60, if m / 60 == 1 { "" } else { "s" })
            } else {
                format!("{m} minutes")
            };
            context! { secs => m * 60, label, selected => m == default_minutes }
        })
        .collect();
    let (binding, fresh) = match cookie(&headers, APPROVAL_COOKIE) {
        Some(b) => (b, false),
        None => (random_token(32), true),
    };
    let mut resp = s.pages.render(
        StatusCode::OK,
        "approve.html",
        context! {
            client_name => client.name,
            redirect_host,
            app_name => app.name,
            user_id,
            organization_id => a.organization_id,
            items,
            durations,
            csrf => approval_csrf(&binding, &id),
            action => format!("/agent/approve/{id}?t={secret}"),
        },
    );
    if fresh {
        let secure = if s.config.secure_cookies() {
            "; Secure"
        } else {
            ""
        };
        let c = format!("{APPROVAL_COOKIE}={binding}; Path=/agent; HttpOnly; SameSite=Strict; Max-Age=1800{secure}");
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// How the approval page names an integration: its provider's name and its slug.
async fn integration_label(s: &AppState, slug: &str) -> String {
    let provider = match s.broker.store.get_integration(slug).await {
        Ok(Some(i)) => i.provider,
        _ => return slug.to_string(),
    };
    match s.broker.catalog.get(&provider) {
        Some(e) => format!("{} ({slug})", e.provider.name),
        None => slug.to_string(),
    }
}

async fn approval_decision(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<ApprovalQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> Response {
    let secret = q.ok().and_then(|Query(q)| q.t).unwrap_or_default();
    // Repeated `integrations` fields: parse the form by hand.
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let binding = cookie(&headers, APPROVAL_COOKIE).unwrap_or_default();
    let csrf_ok = !binding.is_empty()
        && get("csrf").is_some_and(|c| same_secret(&c, &approval_csrf(&binding, &id)));
    if !csrf_ok {
        return message(
            &s,
            StatusCode::FORBIDDEN,
            "Please try again",
            "The form expired or came from another page. Reload the approval page.".into(),
        );
    }
    let decision = match get("decision").as_deref() {
        Some("approve") => {
            let access = match get("access").as_deref() {
                Some("write") => Access::Write,
                Some("read") => Access::Read,
                _ => {
                    return message(
                        &s,
                        StatusCode::BAD_REQUEST,
                        "Choose an access level",
                        "Pick read or write.".into(),
                    )
                }
            };
            Decision::Approve {
                integrations: fields
                    .iter()
                    .filter(|(k, _)| k == "integrations")
                    .map(|(_, v)| v.clone())
                    .collect(),
                access,
                duration_secs: get("duration").and_then(|d| d.parse().ok()).unwrap_or(0),
            }
        }
        Some("deny") => Decision::Deny,
        _ => {
            return message(
                &s,
                StatusCode::BAD_REQUEST,
                "Choose approve or deny",
                "The form had no decision.".into(),
            )
        }
    };
    match s
        .broker
        .decide_agent_authorization(&id, &secret, decision)
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(CoreError::Invalid { detail, .. }) => {
            message(&s, StatusCode::BAD_REQUEST, "Not approved", detail)
        }
        Err(CoreError::NotFound { .. }) => message(
            &s,
            StatusCode::NOT_FOUND,
            "Approval not found",
            "This approval link is not valid or was already used.".into(),
        ),
        Err(CoreError::Conflict { detail, .. }) => {
            message(&s, StatusCode::CONFLICT, "Already decided", detail)
        }
        Err(e) => {
            tracing::error!(error = %e, "approval failed");
            message(
                &s,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Try again shortly.".into(),
            )
        }
    }
}

// --- `--dev`: a clearly marked login for the demo application ----------------------------

#[derive(Deserialize, Default)]
struct DevLoginQuery {
    keyway_request: Option<String>,
}

async fn dev_login_page(
    State(s): State<AppState>,
    q: Result<Query<DevLoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !s.config.dev {
        return StatusCode::NOT_FOUND.into_response();
    }
    let request = q
        .ok()
        .and_then(|Query(q)| q.keyway_request)
        .unwrap_or_default();
    s.pages
        .render(StatusCode::OK, "dev_login.html", context! { request })
}

#[derive(Deserialize)]
struct DevLoginForm {
    keyway_request: String,
    user_id: String,
}

/// Plays the demo application's backend: "signs in" the named user and identifies them.
async fn dev_login(State(s): State<AppState>, Form(f): Form<DevLoginForm>) -> Response {
    if !s.config.dev {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(a) = s
        .broker
        .store
        .get_agent_authorization(&f.keyway_request)
        .await
        .ok()
        .flatten()
    else {
        return message(
            &s,
            StatusCode::NOT_FOUND,
            "Unknown request",
            "Ask the agent to connect again.".into(),
        );
    };
    match s
        .broker
        .identify_agent_user(&a.application_id, &a.id, f.user_id.trim(), None)
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => message(
            &s,
            StatusCode::BAD_REQUEST,
            "Could not sign in",
            e.to_string(),
        ),
    }
}
