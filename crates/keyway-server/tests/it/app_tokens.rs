//! Client-credentials providers: app-level tokens (issue 7, item 2).

use keyway_testkit::{App, FakeProvider, Flavor, TestKeyway, TestOptions};
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use time::Duration;

async fn setup(secret: &str) -> (Arc<TestKeyway>, FakeProvider, App) {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let mut provider = fake.provider_toml();
    let mut app_token = toml::map::Map::new();
    app_token.insert(
        "grant_type".into(),
        toml::Value::String("client_credentials".into()),
    );
    provider["oauth2"]
        .as_table_mut()
        .expect("table")
        .insert("app_token".into(), toml::Value::Table(app_token));
    let mut opts = TestOptions::default();
    opts.providers.insert("fakeapp".into(), provider);
    let kw = TestKeyway::start(opts).await;
    let r = kw
        .admin(Method::POST, "/v1/integrations", Some(json!({"slug": "acme", "provider": "fakeapp", "client_id": keyway_testkit::fake::CLIENT_ID, "client_secret": secret})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = kw.create_app("App", &[]).await;
    (Arc::new(kw), fake, app)
}

#[tokio::test]
async fn app_tokens_are_obtained_once_and_renewed_once() {
    let (kw, fake, app) = setup(keyway_testkit::fake::CLIENT_SECRET).await;
    fake.set_refresh_delay(std::time::Duration::from_millis(50));
    // 100 concurrent first calls, for different users of the application: one token.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (kw, app) = (kw.clone(), app.clone());
        tasks.push(tokio::spawn(async move {
            kw.call(
                Method::POST,
                "/v1/token",
                Some(&app.key),
                Some(json!({"integration": "acme", "user_id": format!("user{i}")})),
            )
            .await
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, 200, "{}", r.body);
        tokens.insert(
            r.body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(
        (fake.refreshes(), tokens.len()),
        (1, 1),
        "one client-credentials call served everyone"
    );
    // Expired: renewed exactly once with the same grant (there is no refresh token).
    kw.clock.advance(Duration::hours(2));
    let renewed = keyway_testkit::token_storm(&kw, &app, "someone", "acme", 100).await;
    assert_eq!(fake.refreshes(), 2);
    assert_eq!(renewed.len(), 1);
    assert!(!renewed.contains(tokens.iter().next().map(String::as_str).unwrap_or_default()));
    // One application-level connection, and every use audited with the real user.
    let inv = kw.admin(Method::GET, "/v1/inventory", None).await;
    assert_eq!(inv.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        inv.body["data"][0]["user_id"],
        keyway_core::tokens::APP_USER
    );
    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    let issued = audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "token.issued")
        .count();
    assert_eq!(issued, 200);
    assert!(audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["action"] == "connection.created"
            && e["details"]["grant"] == "client_credentials"));
    // Other applications get their own app-level token.
    let other = kw.create_app("Other", &[]).await;
    let t = kw
        .call(
            Method::POST,
            "/v1/token",
            Some(&other.key),
            Some(json!({"integration": "acme", "user_id": "x"})),
        )
        .await;
    assert_eq!(t.status, 200);
    assert!(!renewed.contains(t.body["access_token"].as_str().unwrap_or_default()));
}

#[tokio::test]
async fn rejected_client_credentials_create_nothing() {
    let (kw, _fake, app) = setup("wrong-secret").await;
    let before = kw.db_fingerprint().await;
    let r = kw
        .call(
            Method::POST,
            "/v1/token",
            Some(&app.key),
            Some(json!({"integration": "acme", "user_id": "u1"})),
        )
        .await;
    r.assert_problem(502, "provider_error");
    assert_eq!(
        before,
        kw.db_fingerprint().await,
        "no connection, no event, nothing half-written"
    );
}

#[tokio::test]
async fn catalog_app_token_providers_need_their_tenant() {
    let kw = TestKeyway::start(TestOptions::default()).await;
    let r = kw
        .admin(
            Method::POST,
            "/v1/integrations",
            Some(json!({"slug": "zoom", "provider": "zoom-server-to-server", "client_id": "c"})),
        )
        .await;
    r.assert_problem(400, "missing_setting");
    let r = kw
        .admin(
            Method::POST,
            "/v1/integrations",
            Some(json!({"slug": "graph", "provider": "microsoft-graph-app", "client_id": "c"})),
        )
        .await;
    r.assert_problem(400, "missing_setting");
    let r = kw
        .admin(Method::POST, "/v1/integrations", Some(json!({"slug": "zoom", "provider": "zoom-server-to-server", "client_id": "c", "settings": {"account_id": "abc123"}})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}
