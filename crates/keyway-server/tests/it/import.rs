//! Importing existing tokens (issue 7, item 5).

use crate::{setup, setup_with};
use keyway_testkit::{Flavor, TestKeyway};
use reqwest::Method;
use serde_json::{json, Value};
use time::Duration;

async fn import_lines(kw: &TestKeyway, key: &str, lines: &[String]) -> keyway_testkit::Response {
    kw.call_raw(
        Method::POST,
        "/v1/connections/import",
        Some(key),
        "application/x-ndjson",
        lines.join("\n").into_bytes(),
    )
    .await
}

#[tokio::test]
async fn an_imported_connection_is_validated_used_refreshed_and_audited() {
    let (kw, fake, app) = setup_with(Flavor::Standard, &["read", "write"]).await;
    let (access, refresh) = fake.mint("legacy");
    let r = kw
        .call(
            Method::POST,
            "/v1/connections/import",
            Some(&app.key),
            Some(json!({"user_id": "u1", "integration": "acme", "access_token": access, "refresh_token": refresh,
                "expires_at": time::OffsetDateTime::now_utc().checked_add(Duration::hours(1)).map(keyway_core::clock::rfc3339),
                "scopes": ["read"], "owner": "migration@example.com", "purpose": "moved from our old OAuth code"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["provider_account"]["name"], "Account legacy",
        "validated through the identity call"
    );
    assert!(r.body["last_validated_at"].is_string());
    assert_eq!(r.body["owner"], "migration@example.com");
    let t = kw.token(&app, "u1", "acme").await;
    assert_eq!(t.body["access_token"], access.as_str());
    assert_eq!(
        t.body["missing_scopes"],
        json!(["write"]),
        "granted `read` only, configured read + write"
    );
    // Expired: the imported refresh token works like any other.
    kw.clock.advance(Duration::hours(3));
    let t2 = kw.token(&app, "u1", "acme").await;
    assert_eq!(t2.status, 200, "{}", t2.body);
    assert_ne!(t2.body["access_token"], access.as_str());
    assert_eq!(fake.refreshes(), 1);
    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    let ev = audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "connection.imported")
        .cloned()
        .expect("imported event");
    assert_eq!(
        (ev["user_id"].clone(), ev["details"]["validated"].clone()),
        (json!("u1"), json!(true))
    );
    assert!(
        !audit.body.to_string().contains(&access) && !audit.body.to_string().contains(&refresh)
    );
    let sealed = kw
        .db
        .value(
            "SELECT refresh_token FROM connections WHERE user_id = 'u1'",
            &[],
        )
        .await
        .unwrap_or_default();
    assert!(sealed.starts_with("kw1."), "imported tokens are sealed");
}

#[tokio::test]
async fn bulk_json_lines_report_per_line() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let (a1, r1) = fake.mint("one");
    let (a1b, r1b) = fake.mint("one");
    let (a2, r2) = fake.mint("two");
    let lines = vec![
        json!({"user_id": "u1", "integration": "acme", "access_token": a1, "refresh_token": r1}).to_string(),
        "{not json".to_string(),
        json!({"user_id": "u1", "integration": "acme", "access_token": a1b, "refresh_token": r1b}).to_string(),
        json!({"user_id": "u2", "integration": "acme", "access_token": "at_forged", "refresh_token": "rt_forged"}).to_string(),
        json!({"user_id": "u3", "integration": "nope", "access_token": a2}).to_string(),
        json!({"user_id": "u4", "integration": "acme", "access_token": a2, "refresh_token": r2}).to_string(),
    ];
    let r = import_lines(&kw, &app.key, &lines).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["imported"].clone(), r.body["failed"].clone()),
        (json!(2), json!(4))
    );
    let codes: Vec<(i64, Value)> = r.body["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| (x["line"].as_i64().unwrap_or(0), x["code"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (1, Value::Null),
            (2, json!("invalid_request")),
            (3, json!("connection_exists")),
            (4, json!("token_rejected")),
            (5, json!("unknown_integration")),
            (6, Value::Null)
        ]
    );
    assert_eq!(kw.token(&app, "u4", "acme").await.status, 200);
}

#[tokio::test]
async fn import_rejects_bad_input_without_writing() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let before = kw.db_fingerprint().await;
    let k = Some(app.key.as_str());
    let one = |b: Value| kw.call(Method::POST, "/v1/connections/import", k, Some(b));
    one(json!({"user_id": "u1", "integration": "acme", "access_token": "at_unknown"}))
        .await
        .assert_problem(400, "token_rejected");
    one(json!({"user_id": "u1", "integration": "acme", "access_token": "x", "expires_at": "2001-01-01T00:00:00Z"})).await.assert_problem(400, "token_expired");
    one(json!({"user_id": "u1", "integration": "acme", "access_token": "x", "expires_at": "tomorrow"})).await.assert_problem(400, "invalid_request");
    one(json!({"user_id": "u1", "integration": "acme", "access_token": ""}))
        .await
        .assert_problem(400, "invalid_request");
    one(json!({"user_id": "u1", "integration": "acme", "access_token": "x".repeat(9000)}))
        .await
        .assert_problem(400, "invalid_request");
    one(json!({"user_id": "u1", "integration": "acme", "access_token": "x", "scopes": ["a b"]}))
        .await
        .assert_problem(400, "invalid_request");
    one(json!({"user_id": "", "integration": "acme", "access_token": "x"}))
        .await
        .assert_problem(400, "invalid_request");
    one(json!({"user_id": "u1", "integration": "nope", "access_token": "x"}))
        .await
        .assert_problem(422, "unknown_integration");
    one(json!({"user_id": "u1", "integration": "acme"}))
        .await
        .assert_problem(422, "invalid_request");
    one(json!({"user_id": "u1", "integration": "acme", "access_token": "x", "password": "y"}))
        .await
        .assert_problem(422, "invalid_request");
    kw.call_raw(
        Method::POST,
        "/v1/connections/import",
        k,
        "text/csv",
        b"a,b".to_vec(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    kw.call_raw(
        Method::POST,
        "/v1/connections/import",
        k,
        "application/x-ndjson",
        b"\n\n".to_vec(),
    )
    .await
    .assert_problem(400, "invalid_request");
    kw.call(
        Method::POST,
        "/v1/connections/import",
        Some(&kw.admin_key.clone()),
        Some(json!({"user_id": "u1", "integration": "acme", "access_token": "x"})),
    )
    .await
    .assert_problem(400, "application_required");
    assert_eq!(before, kw.db_fingerprint().await);
}
