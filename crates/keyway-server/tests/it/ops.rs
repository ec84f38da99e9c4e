//! Operations endpoints.

use crate::setup;
use keyway_testkit::Flavor;
use reqwest::Method;

#[tokio::test]
async fn health_ready_metrics_openapi() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    kw.token(&app, "u1", "acme").await;
    let h = kw.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(h.status, 200);
    let r = kw.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (r.status.as_u16(), r.body["database"].as_str()),
        (200, Some("ok"))
    );
    let m = kw
        .http
        .get(format!("{}/metrics", kw.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("keyway_token_calls_total 1"), "{m}");
    assert!(m.contains("route=\"/v1/token\""), "{m}");
    assert!(!m.contains("kwcs_"), "metrics never carry connect tokens");
    let o = kw.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(o.status, 200);
    assert!(o.body["paths"]["/v1/token"].is_object());
}

#[tokio::test]
async fn readyz_reports_a_lost_database() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    kw.clock.advance(time::Duration::hours(2));
    kw.db.close().await;
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(503, "database_unavailable");
    let r = kw.call(Method::GET, "/readyz", None, None).await;
    r.assert_problem(503, "database_unavailable");
    kw.call(
        Method::GET,
        "/v1/connections",
        Some(&kw.admin_key.clone()),
        None,
    )
    .await
    .assert_problem(503, "database_unavailable");
}

/// PostgreSQL: the database goes away (connections cut, new ones refused, as in an
/// outage or failover): 503 problems and a failing /readyz, nothing half-written; when it
/// returns, Keyway recovers by itself. (SQLite is a file inside the process: its lost
/// database is the test above.)
#[tokio::test]
async fn a_database_outage_gives_503_and_recovers_by_itself() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    assert_eq!(kw.token(&app, "u1", "acme").await.status, 200);
    if !kw.db.set_outage(true).await {
        eprintln!("SQLite: no outage to simulate");
        return;
    }
    kw.clock.advance(time::Duration::hours(2));
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(503, "database_unavailable");
    kw.call(Method::GET, "/readyz", None, None)
        .await
        .assert_problem(503, "database_unavailable");
    kw.db.set_outage(false).await;
    let r = kw.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = kw.token(&app, "u1", "acme").await;
    assert_eq!(t.status, 200, "{}", t.body);
}
