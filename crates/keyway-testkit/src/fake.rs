//! A fake OAuth 2.0 provider on port 0 that can act like the real ones: rotating refresh
//! tokens with immediate invalidation, Slack's nested answer and `ok:false` errors,
//! GitHub's form-encoded answer, HubSpot's `status` errors, Salesforce's `instance_url`,
//! slow answers, 5xx, 429, `invalid_grant`, revocation recording and call counters.

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const CLIENT_ID: &str = "fake-client";
pub const CLIENT_SECRET: &str = "fake-client-secret-6f1c0e";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// RFC 6749 JSON, PKCE, rotating refresh tokens, RFC 7009 revocation.
    Standard,
    /// Slack: nested `authed_user`, `team`, comma scopes, errors as HTTP 200 `ok:false`.
    Slack,
    /// GitHub OAuth App: form-encoded answer, no expiry, no refresh, DELETE grant revocation.
    GitHub,
    /// HubSpot: errors as `{"status": "BAD_REFRESH_TOKEN"}`.
    HubSpot,
    /// Salesforce: tenant host in URLs, `instance_url` in the answer.
    Salesforce,
    /// An API-key provider: keys added with [`FakeProvider::add_api_key`], sent in an
    /// `X-Api-Key` header, checked by `/me`.
    ApiKey,
}

/// What the token endpoint does for the next calls, before answering normally.
#[derive(Debug, Clone)]
pub enum Scripted {
    Status(u16),
    InvalidGrant,
    /// Wait, then answer normally.
    Slow(Duration),
}

struct Code {
    challenge: Option<String>,
    account: String,
    redirect_uri: String,
}

#[derive(Default)]
struct Data {
    codes: HashMap<String, Code>,
    /// refresh token → account
    refresh: HashMap<String, String>,
    access: HashMap<String, String>,
    revoked: Vec<String>,
    /// Every access and refresh token ever issued.
    issued: Vec<String>,
    script: VecDeque<Scripted>,
    /// The account the next sign-ins get, like a person choosing an account at the
    /// provider (default `acct1`).
    account: Option<String>,
}

pub struct Counters {
    pub authorize: AtomicU64,
    pub code_exchanges: AtomicU64,
    pub refreshes: AtomicU64,
    pub revocations: AtomicU64,
    /// Calls to the identity endpoint `/me`.
    pub identity: AtomicU64,
}

pub struct FakeState {
    pub flavor: Flavor,
    pub expires_in: Mutex<Option<u64>>,
    pub rotate: std::sync::atomic::AtomicBool,
    /// A fixed delay on every refresh, to widen race windows.
    pub refresh_delay: Mutex<Duration>,
    /// Granted scope override (to test missing scopes).
    pub granted_scope: Mutex<Option<String>>,
    pub issuer: Mutex<Option<String>>,
    pub deny_next: Mutex<bool>,
    /// Answer revocations with HTTP 500.
    pub fail_revocations: Mutex<bool>,
    pub counters: Counters,
    data: Mutex<Data>,
    base: String,
}

pub struct FakeProvider {
    pub url: String,
    pub state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn token(prefix: &str) -> String {
    format!("{prefix}{}", keyway_core::ids::random_token(18))
}

impl FakeProvider {
    pub async fn start(flavor: Flavor) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake provider");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let state = Arc::new(FakeState {
            flavor,
            expires_in: Mutex::new(match flavor {
                Flavor::GitHub => None,
                _ => Some(3600),
            }),
            rotate: std::sync::atomic::AtomicBool::new(!matches!(flavor, Flavor::GitHub)),
            refresh_delay: Mutex::new(Duration::ZERO),
            granted_scope: Mutex::new(None),
            issuer: Mutex::new(None),
            deny_next: Mutex::new(false),
            fail_revocations: Mutex::new(false),
            counters: Counters {
                authorize: AtomicU64::new(0),
                code_exchanges: AtomicU64::new(0),
                refreshes: AtomicU64::new(0),
                revocations: AtomicU64::new(0),
                identity: AtomicU64::new(0),
            },
            data: Mutex::new(Data::default()),
            base: url.clone(),
        });
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token_endpoint))
            .route("/revoke", post(revoke))
            .route("/applications/{client_id}/grant", delete(github_revoke))
            .route("/me", get(me).post(me))
            .route("/api/{*rest}", axum::routing::any(api))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, state, task }
    }

    /// Makes `key` a valid API key of `account` (and of the echo API).
    pub fn add_api_key(&self, key: &str, account: &str) {
        self.state
            .data
            .lock()
            .expect("lock")
            .access
            .insert(key.to_string(), account.to_string());
    }

    /// Deletes an API key at the provider, as a user would in its settings.
    pub fn delete_api_key(&self, key: &str) {
        self.state.data.lock().expect("lock").access.remove(key);
    }

    /// The `[providers.<id>]` table that describes this fake, for Keyway's config.
    pub fn provider_toml(&self) -> toml::Value {
        let u = &self.url;
        let text = match self.state.flavor {
            Flavor::ApiKey => format!(
                r#"name = "Fake Keys"
api_base_url = "{u}"
[api_key]
issue_url = "{u}/keys"
help = "Use a key from the fake provider's settings."
[[api_key.fields]]
name = "api_key"
label = "API key"
help = "Starts with fk_"
[api_key.headers]
X-Api-Key = "{{api_key}}"
[identity]
url = "{u}/me"
account_id = "id"
account_name = "name"
"#
            ),
            Flavor::Standard => format!(
                r#"name = "Fake Standard"
api_base_url = "{u}"
[oauth2]
authorize_url = "{u}/authorize"
token_url = "{u}/token"
revocation_url = "{u}/revoke"
scope_separator = " "
pkce = true
client_auth = "basic"
refresh_token_rotation = "rotating"
[identity]
url = "{u}/me"
account_id = "id"
account_name = "name"
"#
            ),
            Flavor::Slack => format!(
                r#"name = "Fake Slack"
api_base_url = "{u}"
[oauth2]
authorize_url = "{u}/authorize"
token_url = "{u}/token"
scope_separator = ","
client_auth = "basic"
refresh_token_rotation = "rotating"
[oauth2.token_response]
ok_field = "ok"
scope_separator = ","
dead_grant_errors = ["invalid_refresh_token", "token_revoked"]
account_id = "team.id"
account_name = "team.name"
[oauth2.token_response.metadata]
bot_user_id = "bot_user_id"
authed_user_id = "authed_user.id"
[oauth2.revocation]
url = "{u}/revoke"
auth = "bearer"
ok_field = "ok"
"#
            ),
            Flavor::GitHub => format!(
                r#"name = "Fake GitHub"
api_base_url = "{u}"
[oauth2]
authorize_url = "{u}/authorize"
token_url = "{u}/token"
scope_separator = " "
client_auth = "post"
refresh_token_rotation = "none"
[oauth2.token_headers]
Accept = "application/json"
[oauth2.token_response]
scope_separator = ","
dead_grant_errors = ["bad_verification_code", "bad_refresh_token"]
[oauth2.revocation]
url = "{u}/applications/{{client_id}}/grant"
method = "DELETE"
auth = "basic"
token_param = "access_token"
body_format = "json"
[identity]
url = "{u}/me"
account_id = "id"
account_name = "login"
"#
            ),
            Flavor::HubSpot => format!(
                r#"name = "Fake HubSpot"
api_base_url = "{u}"
[oauth2]
authorize_url = "{u}/authorize"
token_url = "{u}/token"
scope_separator = " "
client_auth = "post"
[oauth2.token_response]
error_fields = ["error", "status"]
dead_grant_errors = ["BAD_REFRESH_TOKEN"]
"#
            ),
            Flavor::Salesforce => r#"name = "Fake Salesforce"
api_base_url = "http://{host}"
api_base_url_from = "instance_url"
api_hosts = ["127.0.0.1", "localhost"]
[[tenant]]
name = "host"
description = "login host"
[oauth2]
authorize_url = "http://{host}/authorize"
token_url = "http://{host}/token"
revocation_url = "http://{host}/revoke"
scope_separator = " "
pkce = true
client_auth = "post"
[oauth2.token_response]
account_id = "id"
default_expires_in = 3600
[oauth2.token_response.metadata]
instance_url = "instance_url"
"#
            .to_string(),
        };
        toml::from_str(&text).expect("fake provider toml")
    }

    pub fn script(&self, steps: impl IntoIterator<Item = Scripted>) {
        self.state.data.lock().expect("lock").script.extend(steps);
    }

    pub fn refreshes(&self) -> u64 {
        self.state.counters.refreshes.load(Ordering::SeqCst)
    }
    pub fn authorizations(&self) -> u64 {
        self.state.counters.authorize.load(Ordering::SeqCst)
    }
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.data.lock().expect("lock").issued.clone()
    }
    pub fn revoked(&self) -> Vec<String> {
        self.state.data.lock().expect("lock").revoked.clone()
    }
    /// Kills every refresh token, as when the user removes the app at the provider.
    pub fn revoke_all_grants(&self) {
        let mut d = self.state.data.lock().expect("lock");
        d.refresh.clear();
        d.access.clear();
    }
    /// Sign-ins from now on are for this provider account (a second Slack workspace).
    pub fn sign_in_as(&self, account: &str) {
        self.state.data.lock().expect("lock").account = Some(account.to_string());
    }

    /// A token pair the fake accepts, as if issued to another client earlier (imports).
    pub fn mint(&self, account: &str) -> (String, String) {
        let mut d = self.state.data.lock().expect("lock");
        let (a, r) = (token("at_"), token("rt_"));
        d.access.insert(a.clone(), account.to_string());
        d.refresh.insert(r.clone(), account.to_string());
        d.issued.push(a.clone());
        d.issued.push(r.clone());
        (a, r)
    }

    /// Invalidates every access token but keeps refresh tokens (an early revocation).
    pub fn expire_access_tokens(&self) {
        self.state.data.lock().expect("lock").access.clear();
    }
    pub fn set_expires_in(&self, v: Option<u64>) {
        *self.state.expires_in.lock().expect("lock") = v;
    }
    /// Rotation on: a refresh token works once. Off: it stays valid after use (as with
    /// providers that allow a reuse interval).
    pub fn set_rotate(&self, on: bool) {
        self.state.rotate.store(on, Ordering::SeqCst);
    }
    pub fn set_refresh_delay(&self, d: Duration) {
        *self.state.refresh_delay.lock().expect("lock") = d;
    }
    pub fn set_granted_scope(&self, s: Option<&str>) {
        *self.state.granted_scope.lock().expect("lock") = s.map(str::to_string);
    }
    pub fn set_issuer(&self, s: Option<&str>) {
        *self.state.issuer.lock().expect("lock") = s.map(str::to_string);
    }
    pub fn set_fail_revocations(&self, fail: bool) {
        *self.state.fail_revocations.lock().expect("lock") = fail;
    }
    pub fn deny_next(&self) {
        *self.state.deny_next.lock().expect("lock") = true;
    }
    /// Whether this access token is live at the fake.
    pub fn access_token_live(&self, t: &str) -> bool {
        self.state.data.lock().expect("lock").access.contains_key(t)
    }
}

async fn authorize(
    State(s): State<Arc<FakeState>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    s.counters.authorize.fetch_add(1, Ordering::SeqCst);
    let Some(redirect) = q.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "no redirect_uri").into_response();
    };
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, "unknown client").into_response();
    }
    let mut u = url::Url::parse(redirect).expect("redirect uri");
    let deny = std::mem::take(&mut *s.deny_next.lock().expect("lock"));
    {
        let mut pairs = u.query_pairs_mut();
        if deny {
            pairs.append_pair("error", "access_denied");
        } else {
            let code = token("code_");
            let mut d = s.data.lock().expect("lock");
            let challenge = q.get("code_challenge").cloned();
            if challenge.is_some()
                && q.get("code_challenge_method").map(String::as_str) != Some("S256")
            {
                return (StatusCode::BAD_REQUEST, "S256 only").into_response();
            }
            let account = d.account.clone().unwrap_or_else(|| "acct1".into());
            d.codes.insert(
                code.clone(),
                Code {
                    challenge,
                    account,
                    redirect_uri: redirect.clone(),
                },
            );
            pairs.append_pair("code", &code);
        }
        if let Some(st) = q.get("state") {
            pairs.append_pair("state", st);
        }
        if let Some(iss) = s.issuer.lock().expect("lock").as_ref() {
            pairs.append_pair("iss", iss);
        }
    }
    Redirect::to(u.as_str()).into_response()
}

fn client_ok(headers: &HeaderMap, f: &BTreeMap<String, String>) -> bool {
    if let Some(b) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let d = base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .unwrap_or_default();
        return d
            == format!(
                "{CLIENT_ID}:{}",
                url::form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect::<String>()
            );
    }
    f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
}

fn error_response(s: &FakeState, status: u16, code: &str) -> Response {
    match s.flavor {
        Flavor::Slack => Json(json!({"ok": false, "error": code})).into_response(),
        Flavor::GitHub => ([(header::CONTENT_TYPE, "application/x-www-form-urlencoded")], format!("error={code}&error_description=failed")).into_response(),
        Flavor::HubSpot => (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), Json(json!({"status": code.to_uppercase().replace("INVALID_GRANT", "BAD_REFRESH_TOKEN"), "message": "failed"}))).into_response(),
        _ => (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), Json(json!({"error": code}))).into_response(),
    }
}

fn success(s: &FakeState, account: &str, access: &str, refresh: Option<&str>) -> Response {
    let expires = *s.expires_in.lock().expect("lock");
    let granted = s.granted_scope.lock().expect("lock").clone();
    match s.flavor {
        Flavor::Slack => Json(json!({
            "ok": true, "access_token": access, "token_type": "bot", "scope": granted.unwrap_or_else(|| "channels:read,chat:write".into()),
            "bot_user_id": "U0BOT", "app_id": "A01",
            "team": {"id": format!("T-{account}"), "name": format!("Team {account}")},
            "authed_user": {"id": "U123", "scope": "search:read", "access_token": "xoxp-user", "token_type": "user"},
            "refresh_token": refresh, "expires_in": expires,
        }))
        .into_response(),
        Flavor::GitHub => (
            [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
            format!("access_token={access}&scope={}&token_type=bearer", url::form_urlencoded::byte_serialize(granted.as_deref().unwrap_or("repo,read:user").as_bytes()).collect::<String>()),
        )
            .into_response(),
        Flavor::Salesforce => Json(json!({
            "access_token": access, "refresh_token": refresh, "token_type": "Bearer",
            "instance_url": s.base, "id": format!("https://login.example/id/00D/{account}"),
            "scope": granted.unwrap_or_else(|| "api refresh_token".into()), "issued_at": "1700000000000",
        }))
        .into_response(),
        _ => {
            let mut v = json!({"access_token": access, "token_type": "Bearer", "scope": granted.unwrap_or_else(|| "read write".into())});
            if let Some(e) = expires {
                v["expires_in"] = json!(e);
            }
            if let Some(r) = refresh {
                v["refresh_token"] = json!(r);
            }
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(v)).into_response()
        }
    }
}

async fn token_endpoint(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    Form(f): Form<BTreeMap<String, String>>,
) -> Response {
    if !client_ok(&headers, &f) {
        return error_response(&s, 401, "invalid_client");
    }
    let is_app = matches!(
        f.get("grant_type").map(String::as_str),
        Some("client_credentials" | "account_credentials")
    );
    // App tokens count as refreshes: both are the calls that must happen exactly once.
    let is_refresh = is_app || f.get("grant_type").map(String::as_str) == Some("refresh_token");
    if is_refresh {
        s.counters.refreshes.fetch_add(1, Ordering::SeqCst);
        let delay = *s.refresh_delay.lock().expect("lock");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    } else {
        s.counters.code_exchanges.fetch_add(1, Ordering::SeqCst);
    }
    let step = s.data.lock().expect("lock").script.pop_front();
    match step {
        Some(Scripted::Status(code)) => {
            return (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::RETRY_AFTER, "7")],
                "upstream trouble",
            )
                .into_response()
        }
        Some(Scripted::InvalidGrant) => return error_response(&s, 400, "invalid_grant"),
        Some(Scripted::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let dead_code = match s.flavor {
        Flavor::Slack => "invalid_refresh_token",
        Flavor::GitHub => "bad_refresh_token",
        _ => "invalid_grant",
    };
    let mut d = s.data.lock().expect("lock");
    let account = if is_app {
        "app".to_string()
    } else if is_refresh {
        let rt = f.get("refresh_token").cloned().unwrap_or_default();
        let acct = if s.rotate.load(Ordering::SeqCst) {
            d.refresh.remove(&rt)
        } else {
            d.refresh.get(&rt).cloned()
        };
        match acct {
            Some(a) => a,
            None => return error_response(&s, 400, dead_code),
        }
    } else {
        let Some(code) = f.get("code").and_then(|c| d.codes.remove(c)) else {
            return error_response(
                &s,
                400,
                if s.flavor == Flavor::GitHub {
                    "bad_verification_code"
                } else {
                    "invalid_grant"
                },
            );
        };
        if f.get("redirect_uri") != Some(&code.redirect_uri) {
            return error_response(&s, 400, "invalid_grant");
        }
        if let Some(ch) = &code.challenge {
            let v = f.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(v.as_bytes()));
            if &computed != ch {
                return error_response(&s, 400, "invalid_grant");
            }
        }
        code.account
    };
    let access = token("at_");
    d.issued.push(access.clone());
    d.access.insert(access.clone(), account.clone());
    let refresh = (s.flavor != Flavor::GitHub && !is_app).then(|| {
        let r = token("rt_");
        d.issued.push(r.clone());
        d.refresh.insert(r.clone(), account.clone());
        r
    });
    drop(d);
    success(&s, &account, &access, refresh.as_deref())
}

async fn revoke(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    s.counters.revocations.fetch_add(1, Ordering::SeqCst);
    if *s.fail_revocations.lock().expect("lock") {
        return (StatusCode::INTERNAL_SERVER_ERROR, "revocation is down").into_response();
    }
    let f: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let tok = f.get("token").cloned().or(bearer).unwrap_or_default();
    let mut d = s.data.lock().expect("lock");
    let acct = d.refresh.remove(&tok).or_else(|| d.access.remove(&tok));
    if let Some(a) = acct {
        d.refresh.retain(|_, v| v != &a);
        d.access.retain(|_, v| v != &a);
    }
    d.revoked.push(tok);
    match s.flavor {
        Flavor::Slack => Json(json!({"ok": true, "revoked": true})).into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

async fn github_revoke(
    State(s): State<Arc<FakeState>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    s.counters.revocations.fetch_add(1, Ordering::SeqCst);
    let basic_ok = client_ok(&headers, &BTreeMap::new());
    if client_id != CLIENT_ID || !basic_ok {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let tok = v
        .get("access_token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut d = s.data.lock().expect("lock");
    d.access.remove(&tok);
    d.revoked.push(tok);
    StatusCode::NO_CONTENT.into_response()
}

/// The credential a request presents: a bearer token, an `X-Api-Key` header or an
/// `api_key` query parameter.
fn presented(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return t.to_string();
    }
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return k.to_string();
    }
    uri.query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "api_key")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

async fn me(State(s): State<Arc<FakeState>>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    s.counters.identity.fetch_add(1, Ordering::SeqCst);
    let t = presented(&headers, &uri);
    let d = s.data.lock().expect("lock");
    match d.access.get(&t) {
        Some(a) => Json(json!({"id": format!("id-{a}"), "name": format!("Account {a}"), "login": format!("login-{a}")})).into_response(),
        None => (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response(),
    }
}

/// The provider's "API": echoes what arrived (never the token itself), after checking it.
async fn api(
    State(s): State<Arc<FakeState>>,
    Path(rest): Path<String>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let t = presented(&headers, &uri);
    let account = s.data.lock().expect("lock").access.get(&t).cloned();
    let Some(account) = account else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token"})),
        )
            .into_response();
    };
    match rest.as_str() {
        "redirect" => {
            return (
                StatusCode::FOUND,
                [(header::LOCATION, "https://evil.example/steal")],
            )
                .into_response()
        }
        "big" => return (StatusCode::OK, vec![b'x'; 5 * 1024 * 1024]).into_response(),
        _ => {}
    }
    let names: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
    (
        StatusCode::OK,
        [
            ("x-upstream", "fake"),
            ("set-cookie", "upstream=1"),
            ("connection", "close"),
        ],
        Json(json!({
            "account": account,
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "body": String::from_utf8_lossy(&body),
            "header_names": names,
            "x_custom": headers.get("x-custom").and_then(|v| v.to_str().ok()),
        })),
    )
        .into_response()
}
