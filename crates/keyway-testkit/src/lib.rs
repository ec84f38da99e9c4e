//! Test support: start Keyway on port 0 (the same wiring as `keyway serve`), a fake
//! OAuth provider, a browser-like client that follows the connect flow, database
//! fingerprints for "nothing changed" assertions, and log capture for S1.

pub mod db;
pub mod fake;
pub mod logs;
pub mod receiver;

use keyway_core::clock::ManualClock;
use keyway_core::vault::MasterKey;
use keyway_core::{Broker, BrokerSettings};
use keyway_server::app::{build, StartOptions};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use db::TestDb;
pub use fake::{FakeProvider, Flavor, Scripted};

/// Adjusts the broker settings of a test server.
pub type SettingsHook = Box<dyn FnOnce(&mut BrokerSettings) + Send>;

#[derive(Default)]
pub struct TestOptions {
    pub data_dir: Option<PathBuf>,
    pub master_key: Option<MasterKey>,
    pub previous_master_keys: Vec<MasterKey>,
    pub providers: BTreeMap<String, toml::Value>,
    pub clock: Option<Arc<ManualClock>>,
    pub dev: bool,
    pub settings: Option<SettingsHook>,
    /// Extra routes inside the server's middleware stack (benchmarks).
    pub extra_routes: Option<axum::Router<keyway_server::AppState>>,
}

impl TestOptions {
    pub fn with_provider(mut self, id: &str, fake: &FakeProvider) -> Self {
        self.providers.insert(id.to_string(), fake.provider_toml());
        self
    }
}

/// A running Keyway.
pub struct TestKeyway {
    pub url: String,
    pub admin_key: String,
    pub broker: Arc<Broker>,
    /// SQLite, or PostgreSQL when `KW_TEST_PG_URL` is set (see [`db`]).
    pub db: TestDb,
    pub clock: Arc<ManualClock>,
    pub master_key: MasterKey,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    pub dev: Option<keyway_server::dev::DevBootstrap>,
    _tmp: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestKeyway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An application with an API key.
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub key: String,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    /// Asserts an RFC 9457 problem with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.body);
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(
            ct, "application/problem+json",
            "content type; body: {}",
            self.body
        );
        assert_eq!(self.body["code"], code, "code; body: {}", self.body);
        assert_eq!(
            self.body["status"], status,
            "status field; body: {}",
            self.body
        );
        for f in ["type", "title", "detail"] {
            assert!(self.body[f].is_string(), "problem lacks {f}: {}", self.body);
        }
    }
}

pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client")
}

/// A client with its own cookie jar, like one browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser")
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The CSRF value of the first form on a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .map(|i| i + marker.len())
        .expect("page has a csrf field");
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

impl TestKeyway {
    pub async fn start(opts: TestOptions) -> Self {
        let (tmp, dir) = match opts.data_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let db = TestDb::open(&dir).await;
        let master_key = opts.master_key.unwrap_or_else(MasterKey::generate);
        let clock = opts
            .clock
            .unwrap_or_else(|| Arc::new(ManualClock::new(time::OffsetDateTime::now_utc())));
        let admin_key = format!("test-admin-{}", keyway_core::ids::random_token(24));
        let mut so = StartOptions::new(&url, db.store(), master_key.clone());
        so.previous_master_keys = opts.previous_master_keys;
        so.admin_key = Some(keyway_core::secret::Secret::new(admin_key.clone()));
        so.custom_providers = opts.providers;
        so.clock = Some(clock.clone());
        so.dev = opts.dev;
        so.extra_routes = opts.extra_routes;
        let mut settings = BrokerSettings::new(&url);
        settings.retry_base_delay = std::time::Duration::from_millis(5);
        if let Some(f) = opts.settings {
            f(&mut settings);
        }
        so.settings = Some(settings);
        let built = build(so).await.expect("build keyway");
        let router = built.router;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            admin_key,
            broker: built.broker,
            db,
            clock,
            master_key,
            data_dir: dir,
            http: plain_client(),
            dev: built.dev,
            _tmp: tmp,
            task,
        }
    }

    /// Stops serving but keeps the data directory (for restart tests).
    pub fn into_data_dir(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.task.abort();
        (self.data_dir.clone(), self._tmp.take())
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut rb = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response {
            status,
            headers,
            body,
        }
    }

    /// A raw body with a content type, for malformed-input tests.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .header("content-type", content_type)
            .body(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        let r = rb.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.call(method, path, Some(&self.admin_key.clone()), body)
            .await
    }

    pub async fn create_app(&self, name: &str, return_urls: &[&str]) -> App {
        let r = self
            .admin(
                Method::POST,
                "/v1/applications",
                Some(json!({"name": name, "return_urls": return_urls})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let id = r.body["id"].as_str().expect("id").to_string();
        let k = self
            .admin(
                Method::POST,
                &format!("/v1/applications/{id}/api-keys"),
                Some(json!({"name": "test"})),
            )
            .await;
        assert_eq!(k.status, StatusCode::CREATED, "{}", k.body);
        App {
            id,
            key: k.body["key"].as_str().expect("key").to_string(),
        }
    }

    pub async fn create_integration(
        &self,
        slug: &str,
        provider: &str,
        scopes: &[&str],
        settings: Value,
    ) {
        let r = self
            .admin(
                Method::POST,
                "/v1/integrations",
                Some(json!({"slug": slug, "provider": provider, "client_id": fake::CLIENT_ID, "client_secret": fake::CLIENT_SECRET, "scopes": scopes, "settings": settings})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    pub async fn connect_session(&self, app: &App, body: Value) -> Response {
        self.call(
            Method::POST,
            "/v1/connect/sessions",
            Some(&app.key),
            Some(body),
        )
        .await
    }

    /// Opens the widget and presses Connect for `integration`; returns the provider URL.
    pub async fn start_flow(
        &self,
        browser: &reqwest::Client,
        widget_url: &str,
        integration: &str,
    ) -> String {
        let page = browser.get(widget_url).send().await.expect("widget");
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("html");
        let r = browser
            .post(widget_url)
            .form(&[
                ("csrf", csrf_of(&html)),
                ("integration", integration.to_string()),
            ])
            .send()
            .await
            .expect("start");
        assert_eq!(r.status(), 303, "start flow");
        location(&r)
    }

    /// Visits the provider's authorize URL (the fake approves at once); returns Keyway's
    /// callback URL.
    pub async fn provider_redirect(
        &self,
        browser: &reqwest::Client,
        authorize_url: &str,
    ) -> String {
        let r = browser.get(authorize_url).send().await.expect("authorize");
        assert_eq!(r.status(), 303, "fake authorize");
        location(&r)
    }

    /// The whole connect flow for one user; returns the new connection's id.
    pub async fn connect(&self, app: &App, user: &str, integration: &str) -> String {
        let s = self
            .connect_session(app, json!({"user_id": user, "integrations": [integration]}))
            .await;
        assert_eq!(s.status, StatusCode::CREATED, "{}", s.body);
        let b = browser();
        let auth = self
            .start_flow(&b, s.body["url"].as_str().expect("url"), integration)
            .await;
        let cb = self.provider_redirect(&b, &auth).await;
        let done = b.get(&cb).send().await.expect("callback");
        let status = done.status();
        let html = done.text().await.unwrap_or_default();
        assert_eq!(status, 200, "callback: {html}");
        assert!(html.contains("Connected"), "{html}");
        let list = self
            .call(
                Method::GET,
                &format!("/v1/connections?user_id={user}&integration={integration}&status=active"),
                Some(&app.key),
                None,
            )
            .await;
        list.body["data"][0]["id"]
            .as_str()
            .expect("connection id")
            .to_string()
    }

    pub async fn token(&self, app: &App, user: &str, integration: &str) -> Response {
        self.call(
            Method::POST,
            "/v1/token",
            Some(&app.key),
            Some(json!({"integration": integration, "user_id": user})),
        )
        .await
    }

    /// A digest of every row of every table: equal before and after means nothing changed.
    pub async fn db_fingerprint(&self) -> String {
        self.db.fingerprint().await
    }

    /// Runs a SQL statement directly against the database (tamper tests).
    pub async fn exec_sql(&self, sql: &str) {
        self.db.exec(sql).await
    }
}

/// `n` concurrent token calls; asserts every one succeeded and returns the distinct
/// access tokens handed out.
pub async fn token_storm(
    kw: &Arc<TestKeyway>,
    app: &App,
    user: &str,
    integration: &str,
    n: usize,
) -> std::collections::HashSet<String> {
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (kw, app, user, integration) = (
            kw.clone(),
            app.clone(),
            user.to_string(),
            integration.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            kw.token(&app, &user, &integration).await
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        tokens.insert(
            r.body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    tokens
}
