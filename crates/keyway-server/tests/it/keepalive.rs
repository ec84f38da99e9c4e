//! R5: keep-alive ahead of expiry, idle grants, validation; R1 still holds.

use crate::setup;
use keyway_testkit::{FakeProvider, Flavor, TestKeyway, TestOptions};
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use time::Duration;

#[tokio::test]
async fn recently_used_tokens_are_refreshed_ahead_of_expiry() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "used", "acme").await;
    kw.connect(&app, "idle", "acme").await;
    let before = kw.token(&app, "used", "acme").await.body["access_token"].clone();
    kw.clock.advance(Duration::seconds(3600 - 200));
    let r = kw.broker.keep_alive().await.expect("keep-alive");
    assert_eq!(r.refreshed, 1, "{r:?}");
    assert_eq!(fake.refreshes(), 1, "only the recently used connection");
    let after = kw.token(&app, "used", "acme").await;
    assert_ne!(
        after.body["access_token"], before,
        "callers get the refreshed token"
    );
    assert_eq!(fake.refreshes(), 1, "and do not refresh again");
    assert_eq!(kw.broker.keep_alive().await.expect("again").refreshed, 0);
}

#[tokio::test]
async fn keep_alive_and_callers_never_refresh_twice() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    kw.token(&app, "u1", "acme").await;
    kw.clock.advance(Duration::hours(2));
    fake.set_refresh_delay(std::time::Duration::from_millis(100));
    let kw = Arc::new(kw);
    let ka = {
        let kw = kw.clone();
        tokio::spawn(async move { kw.broker.keep_alive().await.expect("keep-alive") })
    };
    let tokens = keyway_testkit::token_storm(&kw, &app, "u1", "acme", 50).await;
    ka.await.expect("keep-alive task");
    assert_eq!(
        fake.refreshes(),
        1,
        "R1 holds with the scheduler in the race"
    );
    assert_eq!(tokens.len(), 1);
}

#[tokio::test]
async fn grants_that_die_when_idle_are_refreshed_at_half_their_idle_life() {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let mut provider = fake.provider_toml();
    provider["oauth2"]
        .as_table_mut()
        .expect("table")
        .insert("refresh_token_idle_days".into(), toml::Value::Integer(10));
    let mut opts = TestOptions::default();
    opts.providers.insert("fake".into(), provider);
    let kw = TestKeyway::start(opts).await;
    kw.create_integration("acme", "fake", &[], json!({})).await;
    let app = kw.create_app("App", &[]).await;
    let id = kw.connect(&app, "u1", "acme").await;
    kw.clock.advance(Duration::days(4));
    assert_eq!(
        kw.broker.keep_alive().await.expect("ka").refreshed,
        0,
        "not yet half its idle life"
    );
    kw.clock.advance(Duration::days(2));
    assert_eq!(kw.broker.keep_alive().await.expect("ka").refreshed, 1);
    assert_eq!(fake.refreshes(), 1);
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert!(c.body["last_refreshed_at"].is_string());
    assert!(
        c.body["last_used_at"].is_null(),
        "kept alive without being used"
    );
}

#[tokio::test]
async fn non_expiring_tokens_are_validated_and_dead_ones_marked() {
    let (kw, fake, app) = setup(Flavor::GitHub).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let first = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await
        .body["last_validated_at"]
        .clone();
    kw.clock.advance(Duration::hours(25));
    let r = kw.broker.keep_alive().await.expect("ka");
    assert_eq!(r.validated, 1, "{r:?}");
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_ne!(c.body["last_validated_at"], first);
    assert_eq!(
        kw.broker.keep_alive().await.expect("ka").validated,
        0,
        "validated at most once a day"
    );
    // The user removed the app at the provider: the token no longer works.
    fake.revoke_all_grants();
    kw.clock.advance(Duration::hours(25));
    let r = kw.broker.keep_alive().await.expect("ka");
    assert_eq!(r.needs_reauthorization, 1, "{r:?}");
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(409, "needs_reauthorization");
    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    assert!(audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["action"] == "connection.needs_reauthorization"
            && e["details"]["error"] == "identity_call_unauthorized"));
}

#[tokio::test]
async fn keep_alive_is_rate_limited_per_provider() {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let mut opts = TestOptions::default().with_provider("fake", &fake);
    opts.settings = Some(Box::new(|s| s.keepalive_per_provider = 2));
    let kw = TestKeyway::start(opts).await;
    kw.create_integration("acme", "fake", &[], json!({})).await;
    let app = kw.create_app("App", &[]).await;
    for u in ["a", "b", "c"] {
        kw.connect(&app, u, "acme").await;
        kw.token(&app, u, "acme").await;
    }
    kw.clock.advance(Duration::seconds(3600 - 100));
    let r = kw.broker.keep_alive().await.expect("ka");
    assert_eq!((r.refreshed, r.deferred), (2, 1));
    let r = kw.broker.keep_alive().await.expect("ka");
    assert_eq!(r.refreshed, 1, "the deferred one goes next run");
}
