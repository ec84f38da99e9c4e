//! Several labelled connections per provider (issue 7, item 4).

use crate::setup;
use keyway_testkit::{browser, Flavor, TestKeyway};
use reqwest::Method;
use serde_json::{json, Value};

async fn token_with(kw: &TestKeyway, key: &str, extra: Value) -> keyway_testkit::Response {
    let mut body = json!({"integration": "acme", "user_id": "u1"});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    kw.call(Method::POST, "/v1/token", Some(key), Some(body))
        .await
}

async fn id_by_label(kw: &TestKeyway, key: &str, label: &str) -> String {
    let list = kw
        .call(
            Method::GET,
            "/v1/connections?user_id=u1&status=active",
            Some(key),
            None,
        )
        .await;
    list.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["label"] == label)
        .and_then(|c| c["id"].as_str())
        .expect("labelled connection")
        .to_string()
}

#[tokio::test]
async fn two_workspaces_are_two_connections_chosen_by_label_or_id() {
    let (kw, fake, app) = setup(Flavor::Slack).await;
    kw.connect(&app, "u1", "acme").await;
    // The only connection answers an unnamed call, which caches it...
    let only = token_with(&kw, &app.key, json!({})).await;
    assert_eq!(only.status, 200, "{}", only.body);
    fake.sign_in_as("acct2");
    kw.connect(&app, "u1", "acme").await;
    let first = id_by_label(&kw, &app.key, "Team acct1").await;
    let second = id_by_label(&kw, &app.key, "Team acct2").await;
    assert_ne!(
        first, second,
        "a second workspace is a connection of its own"
    );

    // ...and a second connection makes the unnamed call ambiguous at once.
    let r = token_with(&kw, &app.key, json!({})).await;
    r.assert_problem(409, "ambiguous_connection");
    let mut labels: Vec<&str> = r.body["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["label"].as_str())
        .collect();
    labels.sort();
    assert_eq!(labels, ["Team acct1", "Team acct2"]);

    let by_label = token_with(&kw, &app.key, json!({"label": "Team acct2"})).await;
    assert_eq!(
        (
            by_label.status.as_u16(),
            by_label.body["connection_id"].clone()
        ),
        (200, json!(second))
    );
    let by_id = token_with(&kw, &app.key, json!({"connection_id": first})).await;
    assert_eq!(by_id.body["connection_id"], first);
    assert_ne!(by_id.body["access_token"], by_label.body["access_token"]);

    // Labels are editable; reconnecting a workspace updates its own connection.
    kw.call(
        Method::PATCH,
        &format!("/v1/connections/{first}"),
        Some(&app.key),
        Some(json!({"label": "primary"})),
    )
    .await;
    assert_eq!(
        token_with(&kw, &app.key, json!({"label": "primary"}))
            .await
            .body["connection_id"],
        first
    );
    fake.sign_in_as("acct1");
    kw.connect(&app, "u1", "acme").await;
    let list = kw
        .call(
            Method::GET,
            "/v1/connections?user_id=u1&status=active",
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        list.body["data"].as_array().map(Vec::len),
        Some(2),
        "still two connections"
    );
    assert_eq!(
        token_with(&kw, &app.key, json!({"label": "primary"}))
            .await
            .body["connection_id"],
        first,
        "the label survives a reconnect"
    );

    // The widget names both accounts; the proxy takes the same choice in headers.
    let s = kw.connect_session(&app, json!({"user_id": "u1"})).await;
    let html = browser()
        .get(s.body["url"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("Team acct1") && html.contains("Team acct2"),
        "{html}"
    );
    let r = kw
        .http
        .get(format!("{}/v1/proxy/acme/api/me", kw.url))
        .bearer_auth(&app.key)
        .header("Keyway-User-Id", "u1")
        .send()
        .await
        .expect("proxy");
    assert_eq!(r.status(), 409, "the proxy is as strict as the token call");
}

#[tokio::test]
async fn connection_choices_are_checked() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    let other = kw.connect(&app, "u2", "acme").await;
    fake.sign_in_as("acct9");
    let before = kw.db_fingerprint().await;
    token_with(&kw, &app.key, json!({"label": "nope"}))
        .await
        .assert_problem(404, "not_installed");
    token_with(&kw, &app.key, json!({"connection_id": other}))
        .await
        .assert_problem(404, "not_installed");
    token_with(&kw, &app.key, json!({"label": "x".repeat(300)}))
        .await
        .assert_problem(400, "invalid_request");
    token_with(&kw, &app.key, json!({"connection_id": ""}))
        .await
        .assert_problem(400, "invalid_request");
    token_with(&kw, &app.key, json!({"label": 5}))
        .await
        .assert_problem(422, "invalid_request");
    assert_eq!(before, kw.db_fingerprint().await);
    assert_eq!(
        token_with(&kw, &app.key, json!({})).await.status,
        200,
        "one connection needs no name"
    );
}
