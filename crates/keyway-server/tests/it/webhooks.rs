//! Webhooks: signed deliveries from the transactional outbox, retries, restarts.

use crate::setup;
use hmac::{Hmac, Mac};
use keyway_testkit::receiver::Receiver;
use keyway_testkit::{Flavor, TestKeyway, TestOptions};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use time::Duration;

/// Checks `Keyway-Signature: t=..,v1=..` the way a receiver would.
fn verify_signature(secret: &str, headers: &axum::http::HeaderMap, body: &str) -> bool {
    let sig = headers
        .get("keyway-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut t = "";
    let mut v1 = "";
    for part in sig.split(',') {
        if let Some(x) = part.strip_prefix("t=") {
            t = x;
        }
        if let Some(x) = part.strip_prefix("v1=") {
            v1 = x;
        }
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    !t.is_empty() && hex::encode(mac.finalize().into_bytes()) == v1
}

async fn register(kw: &TestKeyway, key: &str, url: &str, events: &[&str]) -> (String, String) {
    let r = kw
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(key),
            Some(json!({"url": url, "events": events})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("whsec_")));
    (
        r.body["id"].as_str().unwrap_or_default().to_string(),
        r.body["secret"].as_str().unwrap_or_default().to_string(),
    )
}

fn events(rx: &Receiver) -> Vec<Value> {
    rx.received()
        .iter()
        .map(|(_, b)| serde_json::from_str(b).expect("json body"))
        .collect()
}

#[tokio::test]
async fn connection_lifecycle_events_are_delivered_signed() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let rx = Receiver::start().await;
    let all = [
        "connection.created",
        "connection.needs_reauthorization",
        "connection.recovered",
        "connection.revoked",
    ];
    let (hook, secret) = register(&kw, &kw.admin_key.clone(), &rx.url, &all).await;
    let id = kw.connect(&app, "u1", "acme").await;
    fake.revoke_all_grants();
    kw.clock.advance(Duration::hours(2));
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(409, "needs_reauthorization");
    kw.connect(&app, "u1", "acme").await;
    kw.call(
        Method::DELETE,
        &format!("/v1/connections/{id}"),
        Some(&app.key),
        None,
    )
    .await;
    assert!(
        rx.received().is_empty(),
        "nothing is sent until the worker runs"
    );
    assert_eq!(kw.broker.deliver_webhooks().await.expect("deliver"), 4);
    let got = events(&rx);
    let types: Vec<&str> = got
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types, all);
    for (headers, body) in rx.received() {
        assert!(
            verify_signature(&secret, &headers, &body),
            "valid HMAC-SHA256 signature"
        );
        assert!(!verify_signature("whsec_wrong", &headers, &body));
        assert!(headers.get("keyway-delivery").is_some());
        assert_eq!(headers["content-type"], "application/json");
    }
    assert_eq!(got[0]["data"]["connection_id"], id);
    assert_eq!(got[0]["data"]["user_id"], "u1");
    assert!(got[0]["id"].as_str().is_some_and(|i| i.starts_with("evt_")));
    assert_eq!(
        kw.broker.deliver_webhooks().await.expect("deliver"),
        0,
        "each delivery is sent once"
    );
    let log = kw
        .admin(
            Method::GET,
            &format!("/v1/webhooks/{hook}/deliveries"),
            None,
        )
        .await;
    assert_eq!(log.body.as_array().map(Vec::len), Some(4));
    assert!(log
        .body
        .as_array()
        .into_iter()
        .flatten()
        .all(|d| d["state"] == "delivered" && d["last_status"] == 204));
    let list = kw.admin(Method::GET, "/v1/webhooks", None).await;
    assert!(
        list.body[0].get("secret").is_none(),
        "secrets are never listed"
    );
    let sealed = kw
        .db
        .value("SELECT secret FROM webhooks", &[])
        .await
        .unwrap_or_default();
    assert!(sealed.starts_with("kw1.") && !sealed.contains(&secret));
}

#[tokio::test]
async fn a_queued_event_survives_a_restart_and_arrives_once() {
    let fake = keyway_testkit::FakeProvider::start(Flavor::Standard).await;
    let kw = TestKeyway::start(TestOptions::default().with_provider("fake", &fake)).await;
    kw.create_integration("acme", "fake", &[], json!({})).await;
    let app = kw.create_app("App", &[]).await;
    let rx = Receiver::start().await;
    let (_, secret) = register(&kw, &app.key, &rx.url, &["connection.created"]).await;
    kw.connect(&app, "u1", "acme").await;
    // The process dies after the commit, before any delivery.
    let (key, clock) = (kw.master_key.clone(), kw.clock.clone());
    let (dir, tmp) = kw.into_data_dir();
    let mut opts = TestOptions::default().with_provider("fake", &fake);
    opts.data_dir = Some(dir);
    opts.master_key = Some(key);
    opts.clock = Some(clock);
    let kw = TestKeyway::start(opts).await;
    assert_eq!(kw.broker.deliver_webhooks().await.expect("deliver"), 1);
    assert_eq!(kw.broker.deliver_webhooks().await.expect("deliver"), 0);
    let got = rx.received();
    assert_eq!(got.len(), 1, "exactly once");
    assert!(verify_signature(&secret, &got[0].0, &got[0].1));
    drop(tmp);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let rx = Receiver::start().await;
    let (hook, _) = register(&kw, &app.key, &rx.url, &["connection.created"]).await;
    kw.connect(&app, "u1", "acme").await;
    rx.fail_next(2);
    assert_eq!(kw.broker.deliver_webhooks().await.expect("deliver"), 1);
    assert_eq!(
        kw.broker.deliver_webhooks().await.expect("deliver"),
        0,
        "not due yet: backoff"
    );
    kw.clock.advance(Duration::seconds(25));
    assert_eq!(kw.broker.deliver_webhooks().await.expect("deliver"), 1);
    kw.clock.advance(Duration::seconds(45));
    assert_eq!(kw.broker.deliver_webhooks().await.expect("deliver"), 1);
    assert_eq!(rx.received().len(), 1);
    let log = kw
        .call(
            Method::GET,
            &format!("/v1/webhooks/{hook}/deliveries"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        (
            log.body[0]["state"].clone(),
            log.body[0]["attempts"].clone()
        ),
        (json!("delivered"), json!(3))
    );
}

#[tokio::test]
async fn application_webhooks_see_only_their_application() {
    let (kw, _fake, a) = setup(Flavor::Standard).await;
    let b = kw.create_app("App Two", &[]).await;
    let rx_a = Receiver::start().await;
    let rx_b = Receiver::start().await;
    let (hook_a, _) = register(&kw, &a.key, &rx_a.url, &["connection.created"]).await;
    register(&kw, &b.key, &rx_b.url, &["connection.created"]).await;
    kw.connect(&a, "u1", "acme").await;
    kw.broker.deliver_webhooks().await.expect("deliver");
    assert_eq!(rx_a.received().len(), 1);
    assert!(
        rx_b.received().is_empty(),
        "S6: no other application's events"
    );
    kw.call(
        Method::GET,
        &format!("/v1/webhooks/{hook_a}/deliveries"),
        Some(&b.key),
        None,
    )
    .await
    .assert_problem(404, "not_found");
    kw.call(
        Method::DELETE,
        &format!("/v1/webhooks/{hook_a}"),
        Some(&b.key),
        None,
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(
        kw.call(Method::GET, "/v1/webhooks", Some(&b.key), None)
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let d = kw
        .call(
            Method::DELETE,
            &format!("/v1/webhooks/{hook_a}"),
            Some(&a.key),
            None,
        )
        .await;
    assert_eq!(d.status, 204);
}

#[tokio::test]
async fn webhook_endpoints_reject_bad_input_without_writing() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let before = kw.db_fingerprint().await;
    let k = Some(app.key.as_str());
    let post = |b: Value| kw.call(Method::POST, "/v1/webhooks", k, Some(b));
    post(json!({"url": "ftp://x.example/h", "events": ["connection.created"]}))
        .await
        .assert_problem(400, "invalid_request");
    post(json!({"url": "https://user:pw@x.example/h", "events": ["connection.created"]}))
        .await
        .assert_problem(400, "invalid_request");
    post(json!({"url": "not a url", "events": ["connection.created"]}))
        .await
        .assert_problem(400, "invalid_request");
    post(json!({"url": "https://x.example/h", "events": []}))
        .await
        .assert_problem(400, "invalid_request");
    post(json!({"url": "https://x.example/h", "events": ["connection.exploded"]}))
        .await
        .assert_problem(400, "invalid_request");
    post(json!({"url": "https://x.example/h", "events": "connection.created"}))
        .await
        .assert_problem(422, "invalid_request");
    post(json!({"url": "https://x.example/h", "events": ["connection.created"], "secret": "mine"}))
        .await
        .assert_problem(422, "invalid_request");
    kw.call(Method::DELETE, "/v1/webhooks/wh_nope", k, None)
        .await
        .assert_problem(404, "not_found");
    kw.call(Method::GET, "/v1/webhooks/wh_nope/deliveries", k, None)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(before, kw.db_fingerprint().await);
}
