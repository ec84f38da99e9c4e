//! Refresh rules R1–R4 through the HTTP API.

use crate::setup;
use keyway_testkit::{FakeProvider, Flavor, Scripted, TestKeyway, TestOptions};
use reqwest::Method;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use time::Duration;

#[tokio::test]
async fn storm_of_500_calls_on_an_expired_rotating_connection_refreshes_once() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    fake.set_refresh_delay(std::time::Duration::from_millis(100));
    kw.clock.advance(Duration::hours(2));
    let kw = Arc::new(kw);
    let tokens = keyway_testkit::token_storm(&kw, &app, "u1", "acme", 500).await;
    assert_eq!(fake.refreshes(), 1, "exactly one upstream refresh (R1)");
    assert_eq!(tokens.len(), 1, "every caller got the new token");
}

#[tokio::test]
async fn two_servers_on_one_database_refresh_once() {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let a = TestKeyway::start(TestOptions::default().with_provider("fake", &fake)).await;
    a.create_integration("acme", "fake", &[], json!({})).await;
    let app = a.create_app("App", &[]).await;
    a.connect(&app, "u1", "acme").await;
    let mut opts = TestOptions::default().with_provider("fake", &fake);
    opts.data_dir = Some(a.data_dir.clone());
    opts.master_key = Some(a.master_key.clone());
    opts.clock = Some(a.clock.clone());
    let b = TestKeyway::start(opts).await;
    fake.set_refresh_delay(std::time::Duration::from_millis(150));
    a.clock.advance(Duration::hours(2));
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let kw = if i % 2 == 0 { a.clone() } else { b.clone() };
        let app = app.clone();
        tasks.push(tokio::spawn(
            async move { kw.token(&app, "u1", "acme").await },
        ));
    }
    let mut tokens = HashSet::new();
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
        fake.refreshes(),
        1,
        "the database lease serialises refreshes across servers"
    );
    assert_eq!(tokens.len(), 1);
}

#[tokio::test]
async fn dead_grant_is_409_marks_the_connection_and_stays_409() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    fake.revoke_all_grants();
    kw.clock.advance(Duration::hours(2));
    let r = kw.token(&app, "u1", "acme").await;
    r.assert_problem(409, "needs_reauthorization");
    assert!(r.body["reconnect_url"]
        .as_str()
        .is_some_and(|u| u.starts_with(&kw.url)));
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(c.body["status"], "needs_reauthorization");
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(409, "needs_reauthorization");
    assert_eq!(
        fake.refreshes(),
        1,
        "a dead connection is not refreshed again"
    );
}

#[tokio::test]
async fn transient_failure_with_a_still_valid_token_returns_it() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let t1 = kw.token(&app, "u1", "acme").await;
    // 30 s before expiry: inside the refresh-ahead window, still valid.
    kw.clock.advance(Duration::seconds(3600 - 30));
    fake.script([
        Scripted::Status(500),
        Scripted::Status(502),
        Scripted::Status(503),
    ]);
    let t2 = kw.token(&app, "u1", "acme").await;
    assert_eq!(t2.status, 200, "{}", t2.body);
    assert_eq!(t2.body["access_token"], t1.body["access_token"]);
    assert_eq!(fake.refreshes(), 3, "bounded retries");
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        c.body["status"], "active",
        "transient failures never mark a connection dead (R3)"
    );
}

#[tokio::test]
async fn transient_failure_with_an_expired_token_is_503_then_recovers() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    kw.clock.advance(Duration::hours(2));
    fake.script([
        Scripted::Status(429),
        Scripted::Status(503),
        Scripted::Status(500),
    ]);
    let r = kw.token(&app, "u1", "acme").await;
    r.assert_problem(503, "provider_unavailable");
    assert_eq!(r.headers["retry-after"], "7");
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(c.body["status"], "active");
    let ok = kw.token(&app, "u1", "acme").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(fake.refreshes(), 4);
}

#[tokio::test]
async fn a_slow_provider_within_timeout_still_refreshes() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    kw.clock.advance(Duration::hours(2));
    fake.script([Scripted::Slow(std::time::Duration::from_millis(300))]);
    assert_eq!(kw.token(&app, "u1", "acme").await.status, 200);
    assert_eq!(fake.refreshes(), 1);
}

#[tokio::test]
async fn provider_timeouts_are_transient() {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let mut opts = TestOptions::default().with_provider("fake", &fake);
    opts.settings = Some(Box::new(|s| {
        s.provider_timeout = std::time::Duration::from_millis(200)
    }));
    let kw = TestKeyway::start(opts).await;
    kw.create_integration("acme", "fake", &[], json!({})).await;
    let app = kw.create_app("App", &[]).await;
    let id = kw.connect(&app, "u1", "acme").await;
    kw.clock.advance(Duration::hours(2));
    fake.script((0..3).map(|_| Scripted::Slow(std::time::Duration::from_secs(2))));
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(503, "provider_unavailable");
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(c.body["status"], "active");
}

#[tokio::test]
async fn new_tokens_are_durable_before_they_are_handed_out() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    kw.clock.advance(Duration::hours(2));
    let t = kw.token(&app, "u1", "acme").await;
    // What the caller got is what the database holds (R4): open the stored value.
    let sealed = kw
        .db
        .value("SELECT access_token FROM connections WHERE id = ?", &[&id])
        .await
        .unwrap_or_default();
    let opened = kw
        .broker
        .vault
        .open(
            keyway_core::vault::FieldRef::new("connections", &id, "access_token"),
            &sealed,
        )
        .expect("open");
    assert_eq!(
        opened.expose(),
        t.body["access_token"].as_str().unwrap_or_default()
    );
}

/// Tokens that live less than the refresh-ahead window are not refreshed on every call,
/// and callers queued behind a refresh take its token instead of refreshing again.
#[tokio::test]
async fn short_lived_tokens_refresh_once_per_half_life() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    fake.set_expires_in(Some(30));
    kw.connect(&app, "u1", "acme").await;
    let t1 = kw.token(&app, "u1", "acme").await;
    let t2 = kw.token(&app, "u1", "acme").await;
    assert_eq!(t1.body["access_token"], t2.body["access_token"]);
    assert_eq!(
        fake.refreshes(),
        0,
        "a 30 s token is fresh for its first half"
    );
    kw.clock.advance(Duration::seconds(20));
    fake.set_refresh_delay(std::time::Duration::from_millis(50));
    let kw = Arc::new(kw);
    let tokens = keyway_testkit::token_storm(&kw, &app, "u1", "acme", 100).await;
    assert_eq!(fake.refreshes(), 1);
    assert_eq!(tokens.len(), 1);
}
