//! The sandbox provider: a small OAuth 2.0 authorization server inside Keyway, for
//! `serve --dev` and demos. It behaves like the strict real ones: PKCE S256 required,
//! exact redirect URI, single-use codes, rotating single-use refresh tokens, short-lived
//! access tokens, RFC 7009 revocation and RFC 9207 `iss`. State lives in memory.

use crate::AppState;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use keyway_core::ids::{pkce_challenge, random_token};
use keyway_core::secret::Secret;
use minijinja::context;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

pub const CLIENT_ID: &str = "keyway-sandbox";

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub client_secret: Secret,
    pub redirect_uri: String,
    pub issuer: String,
    pub access_token_ttl: Duration,
}

#[derive(Clone)]
struct Account {
    id: String,
    name: String,
}

struct Code {
    account: Account,
    scope: String,
    challenge: String,
    expires: OffsetDateTime,
}

struct Access {
    account: Account,
    scope: String,
    family: String,
    expires: OffsetDateTime,
}

struct Refresh {
    account: Account,
    scope: String,
    family: String,
}

#[derive(Default)]
struct Data {
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
}

pub struct Sandbox {
    cfg: SandboxConfig,
    data: Mutex<Data>,
}

impl Sandbox {
    pub fn new(cfg: SandboxConfig) -> Self {
        Self {
            cfg,
            data: Mutex::new(Data::default()),
        }
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn issue(
        &self,
        d: &mut Data,
        account: Account,
        scope: String,
        family: String,
    ) -> serde_json::Value {
        let access = format!("sbx_at_{}", random_token(24));
        let refresh = format!("sbx_rt_{}", random_token(24));
        let now = OffsetDateTime::now_utc();
        d.access.insert(
            access.clone(),
            Access {
                account: account.clone(),
                scope: scope.clone(),
                family: family.clone(),
                expires: now + self.cfg.access_token_ttl,
            },
        );
        d.refresh.insert(
            refresh.clone(),
            Refresh {
                account,
                scope: scope.clone(),
                family,
            },
        );
        json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.cfg.access_token_ttl.whole_seconds(),
            "refresh_token": refresh,
            "scope": scope,
        })
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandbox/", get(home))
        .route(
            "/sandbox/oauth/authorize",
            get(authorize_page).post(authorize_decision),
        )
        .route("/sandbox/oauth/token", post(token))
        .route("/sandbox/oauth/revoke", post(revoke))
        .route("/sandbox/api/me", get(me))
        .route("/sandbox/api/notes", get(notes))
}

fn sandbox(s: &AppState) -> Option<&Sandbox> {
    s.sandbox.as_deref()
}

async fn home(State(s): State<AppState>) -> Response {
    s.pages.render(
        StatusCode::OK,
        "message.html",
        context! { ok => true, title => "Keyway Sandbox", message => "A pretend OAuth provider built into Keyway for trying it out. Not for production." },
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn message(s: &AppState, status: StatusCode, text: &str) -> Response {
    s.pages.render(
        status,
        "message.html",
        context! { ok => false, title => "Sandbox: bad request", message => text },
    )
}

/// Checks an authorization request; errors about the client or redirect URI are shown,
/// never redirected (RFC 6749 §4.1.2.1).
fn check_request(sb: &Sandbox, p: &BTreeMap<String, String>) -> Result<(), &'static str> {
    if p.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return Err("unknown client_id");
    }
    if p.get("redirect_uri") != Some(&sb.cfg.redirect_uri) {
        return Err("redirect_uri does not match the registered one");
    }
    Ok(())
}

fn redirect_error(sb: &Sandbox, p: &BTreeMap<String, String>, error: &str) -> Response {
    let mut u = match url::Url::parse(&sb.cfg.redirect_uri) {
        Ok(u) => u,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "bad redirect").into_response(),
    };
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("error", error);
        if let Some(st) = p.get("state") {
            q.append_pair("state", st);
        }
        q.append_pair("iss", &sb.cfg.issuer);
    }
    Redirect::to(u.as_str()).into_response()
}

async fn authorize_page(
    State(s): State<AppState>,
    Query(p): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(sb) = sandbox(&s) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(e) = check_request(sb, &p) {
        return message(&s, StatusCode::BAD_REQUEST, e);
    }
    if p.get("response_type").map(String::as_str) != Some("code") {
        return redirect_error(sb, &p, "unsupported_response_type");
    }
    if p.get("code_challenge_method").map(String::as_str) != Some("S256")
        || p.get("code_challenge").is_none_or(|c| c.len() < 43)
    {
        return redirect_error(sb, &p, "invalid_request");
    }
    let keep: BTreeMap<&str, &String> = [
        "client_id",
        "redirect_uri",
        "state",
        "scope",
        "code_challenge",
    ]
    .into_iter()
    .filter_map(|k| p.get(k).map(|v| (k, v)))
    .collect();
    s.pages.render(
        StatusCode::OK,
        "sandbox_authorize.html",
        context! { client_id => CLIENT_ID, scope => p.get("scope").cloned().unwrap_or_default(), params => keep },
    )
}

async fn authorize_decision(
    State(s): State<AppState>,
    Form(p): Form<BTreeMap<String, String>>,
) -> Response {
    let Some(sb) = sandbox(&s) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(e) = check_request(sb, &p) {
        return message(&s, StatusCode::BAD_REQUEST, e);
    }
    if p.get("decision").map(String::as_str) != Some("approve") {
        return redirect_error(sb, &p, "access_denied");
    }
    let name: String = p
        .get("account")
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .unwrap_or("Demo Account")
        .chars()
        .take(64)
        .collect();
    let id = format!(
        "sbx_{}",
        name.to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
    );
    let code = random_token(24);
    sb.data().codes.insert(
        code.clone(),
        Code {
            account: Account { id, name },
            scope: p.get("scope").cloned().unwrap_or_default(),
            challenge: p.get("code_challenge").cloned().unwrap_or_default(),
            expires: OffsetDateTime::now_utc() + Duration::minutes(5),
        },
    );
    let mut u = match url::Url::parse(&sb.cfg.redirect_uri) {
        Ok(u) => u,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "bad redirect").into_response(),
    };
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(st) = p.get("state") {
            q.append_pair("state", st);
        }
        q.append_pair("iss", &sb.cfg.issuer);
    }
    Redirect::to(u.as_str()).into_response()
}

/// RFC 6749 §2.3.1 client authentication, Basic or in the body.
fn client_ok(sb: &Sandbox, headers: &HeaderMap, form: &BTreeMap<String, String>) -> bool {
    let (id, secret) = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        Some(b) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .unwrap_or_default();
            let (i, s) = decoded.split_once(':').unwrap_or(("", ""));
            let dec = |x: &str| {
                url::form_urlencoded::parse(format!("v={x}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (dec(i), dec(s))
        }
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    let want = sb.cfg.client_secret.expose();
    id == CLIENT_ID && crate::web::same_secret(&secret, want)
}

async fn token(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<BTreeMap<String, String>>,
) -> Response {
    let Some(sb) = sandbox(&s) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !client_ok(sb, &headers, &f) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let mut d = sb.data();
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(code) = f.get("code").and_then(|c| d.codes.remove(c)) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or used code",
                );
            };
            if code.expires < OffsetDateTime::now_utc()
                || f.get("redirect_uri") != Some(&sb.cfg.redirect_uri)
            {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "expired code or wrong redirect_uri",
                );
            }
            if f.get("code_verifier").map(|v| pkce_challenge(v)) != Some(code.challenge.clone()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            let body = sb.issue(&mut d, code.account, code.scope, random_token(8));
            (
                StatusCode::OK,
                [(header::CACHE_CONTROL, "no-store")],
                Json(body),
            )
                .into_response()
        }
        Some("refresh_token") => {
            // Rotation with immediate invalidation: a used refresh token never works again.
            let Some(old) = f.get("refresh_token").and_then(|r| d.refresh.remove(r)) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown, used or revoked refresh token",
                );
            };
            let family = old.family.clone();
            d.access.retain(|_, a| a.family != family);
            let body = sb.issue(&mut d, old.account, old.scope, family);
            (
                StatusCode::OK,
                [(header::CACHE_CONTROL, "no-store")],
                Json(body),
            )
                .into_response()
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        ),
    }
}

/// RFC 7009: revoking either token ends its whole grant; unknown tokens answer 200 too.
async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<BTreeMap<String, String>>,
) -> Response {
    let Some(sb) = sandbox(&s) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !client_ok(sb, &headers, &f) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let token = f.get("token").cloned().unwrap_or_default();
    let mut d = sb.data();
    let family = d
        .refresh
        .get(&token)
        .map(|r| r.family.clone())
        .or_else(|| d.access.get(&token).map(|a| a.family.clone()));
    if let Some(fam) = family {
        d.refresh.retain(|_, r| r.family != fam);
        d.access.retain(|_, a| a.family != fam);
    }
    StatusCode::OK.into_response()
}

fn bearer_account(sb: &Sandbox, headers: &HeaderMap) -> Option<(Account, String)> {
    let t = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let d = sb.data();
    let a = d.access.get(t)?;
    (a.expires > OffsetDateTime::now_utc()).then(|| (a.account.clone(), a.scope.clone()))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        Json(json!({"error": "invalid_token"})),
    )
        .into_response()
}

async fn me(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(sb) = sandbox(&s) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match bearer_account(sb, &headers) {
        Some((a, _)) => Json(json!({"id": a.id, "name": a.name})).into_response(),
        None => unauthorized(),
    }
}

async fn notes(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(sb) = sandbox(&s) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match bearer_account(sb, &headers) {
        Some((a, scope)) if scope.split(' ').any(|x| x == "notes:read") => Json(json!({
            "notes": [
                {"id": "n1", "title": format!("Welcome, {}", a.name)},
                {"id": "n2", "title": "This note comes from the Keyway sandbox"}
            ]
        }))
        .into_response(),
        Some(_) => (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "insufficient_scope", "scope": "notes:read"})),
        )
            .into_response(),
        None => unauthorized(),
    }
}
