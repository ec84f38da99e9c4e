//! Organization-shared connections (issue 7, item 3).

use crate::setup;
use keyway_testkit::{browser, App, Flavor, TestKeyway};
use reqwest::Method;
use serde_json::{json, Value};
use time::Duration;

async fn connect_with(kw: &TestKeyway, app: &App, body: Value) -> String {
    let s = kw.connect_session(app, body).await;
    assert_eq!(s.status, 201, "{}", s.body);
    let url = s.body["url"].as_str().unwrap_or_default().to_string();
    let b = browser();
    let auth = kw.start_flow(&b, &url, "acme").await;
    let cb = kw.provider_redirect(&b, &auth).await;
    let done = b.get(&cb).send().await.expect("callback");
    assert_eq!(done.status(), 200);
    url
}

async fn token(
    kw: &TestKeyway,
    app: &App,
    user: &str,
    org: Option<&str>,
) -> keyway_testkit::Response {
    kw.call(
        Method::POST,
        "/v1/token",
        Some(&app.key),
        Some(json!({"integration": "acme", "user_id": user, "organization_id": org})),
    )
    .await
}

#[tokio::test]
async fn members_use_the_organization_connection_and_their_own_wins() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let url = connect_with(&kw, &app, json!({"user_id": "admin1", "organization_id": "org1", "shared": true, "integrations": ["acme"]})).await;
    let html = browser()
        .get(&url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("Shared:") && html.contains("org1"),
        "the widget says it is shared"
    );

    let m = token(&kw, &app, "member2", Some("org1")).await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.body["shared"], true);
    let shared_id = m.body["connection_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{shared_id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        (c.body["shared"].clone(), c.body["user_id"].clone()),
        (json!(true), json!("admin1"))
    );
    token(&kw, &app, "member2", Some("org2"))
        .await
        .assert_problem(404, "not_installed");
    token(&kw, &app, "member2", None)
        .await
        .assert_problem(404, "not_installed");

    // A member's own connection wins over the organization's.
    fake.sign_in_as("personal");
    connect_with(
        &kw,
        &app,
        json!({"user_id": "member2", "organization_id": "org1", "integrations": ["acme"]}),
    )
    .await;
    let own = token(&kw, &app, "member2", Some("org1")).await;
    assert_eq!(own.body["shared"], false);
    assert_ne!(own.body["connection_id"], shared_id);
    let other = token(&kw, &app, "member3", Some("org1")).await;
    assert_eq!(
        (
            other.body["shared"].clone(),
            other.body["connection_id"].clone()
        ),
        (json!(true), json!(shared_id))
    );

    // One refresh serves every member; each use is audited with the real user.
    kw.clock.advance(Duration::hours(2));
    let before = fake.refreshes();
    let a = token(&kw, &app, "member3", Some("org1")).await;
    let b = token(&kw, &app, "member4", Some("org1")).await;
    assert_eq!(a.body["access_token"], b.body["access_token"]);
    assert_eq!(
        fake.refreshes() - before,
        1,
        "one refresh serves every member"
    );
    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    let users: Vec<&str> = audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "token.issued" && e["connection_id"] == shared_id.as_str())
        .filter_map(|e| e["user_id"].as_str())
        .collect();
    for u in ["member2", "member3", "member4"] {
        assert!(users.contains(&u), "token.issued names {u}: {users:?}");
    }

    // Disconnecting the shared connection cuts every member off at once.
    kw.call(
        Method::DELETE,
        &format!("/v1/connections/{shared_id}"),
        Some(&app.key),
        None,
    )
    .await;
    token(&kw, &app, "member3", Some("org1"))
        .await
        .assert_problem(404, "not_installed");
    assert_eq!(
        token(&kw, &app, "member2", Some("org1")).await.status,
        200,
        "own connections are unaffected"
    );
}

#[tokio::test]
async fn a_shared_connect_session_needs_an_organization() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let before = kw.db_fingerprint().await;
    kw.connect_session(&app, json!({"user_id": "admin1", "shared": true}))
        .await
        .assert_problem(400, "invalid_request");
    kw.connect_session(
        &app,
        json!({"user_id": "admin1", "organization_id": "org1", "shared": "yes"}),
    )
    .await
    .assert_problem(422, "invalid_request");
    assert_eq!(before, kw.db_fingerprint().await);
}
