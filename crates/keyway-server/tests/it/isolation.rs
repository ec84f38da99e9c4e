//! S6: no application, key or user reaches another's connections.

use crate::setup;
use keyway_testkit::Flavor;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn applications_and_users_are_isolated() {
    let (kw, _fake, a) = setup(Flavor::Standard).await;
    let b = kw.create_app("App Two", &[]).await;
    let id = kw.connect(&a, "u1", "acme").await;
    let before = kw.db_fingerprint().await;

    kw.token(&b, "u1", "acme")
        .await
        .assert_problem(404, "not_installed");
    kw.token(&a, "u2", "acme")
        .await
        .assert_problem(404, "not_installed");
    kw.call(
        Method::GET,
        &format!("/v1/connections/{id}"),
        Some(&b.key),
        None,
    )
    .await
    .assert_problem(404, "not_found");
    kw.call(
        Method::PATCH,
        &format!("/v1/connections/{id}"),
        Some(&b.key),
        Some(json!({"owner": "mallory"})),
    )
    .await
    .assert_problem(404, "not_found");
    kw.call(
        Method::DELETE,
        &format!("/v1/connections/{id}"),
        Some(&b.key),
        None,
    )
    .await
    .assert_problem(404, "not_found");
    let list = kw
        .call(Method::GET, "/v1/connections", Some(&b.key), None)
        .await;
    assert_eq!(list.body["data"], json!([]));
    let list = kw
        .call(
            Method::GET,
            &format!("/v1/connections?application_id={}", a.id),
            Some(&b.key),
            None,
        )
        .await;
    assert_eq!(list.body["data"], json!([]));
    // An application key cannot act for another application by naming it.
    kw.call(
        Method::POST,
        "/v1/token",
        Some(&b.key),
        Some(json!({"integration": "acme", "user_id": "u1", "application_id": a.id})),
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(before, kw.db_fingerprint().await);
    assert_eq!(kw.token(&a, "u1", "acme").await.status, 200);
}

#[tokio::test]
async fn organizations_are_separate_connections() {
    let (kw, _fake, a) = setup(Flavor::Standard).await;
    kw.connect(&a, "u1", "acme").await;
    kw.call(
        Method::POST,
        "/v1/token",
        Some(&a.key),
        Some(json!({"integration": "acme", "user_id": "u1", "organization_id": "org1"})),
    )
    .await
    .assert_problem(404, "not_installed");
}

#[tokio::test]
async fn keys_are_checked_and_admin_calls_need_an_admin_key() {
    let (kw, _fake, a) = setup(Flavor::Standard).await;
    let r = kw.call(Method::GET, "/v1/connections", None, None).await;
    r.assert_problem(401, "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    kw.call(
        Method::GET,
        "/v1/connections",
        Some("kw_app_not-a-real-key"),
        None,
    )
    .await
    .assert_problem(401, "unauthorized");
    kw.call(
        Method::POST,
        "/v1/integrations",
        Some(&a.key),
        Some(json!({"slug": "x", "provider": "fake", "client_id": "c"})),
    )
    .await
    .assert_problem(403, "forbidden");
    kw.call(
        Method::POST,
        "/v1/applications",
        Some(&a.key),
        Some(json!({"name": "x"})),
    )
    .await
    .assert_problem(403, "forbidden");
    kw.call(
        Method::POST,
        "/v1/admin/master-key/rotate",
        Some(&a.key),
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    // Revoked keys stop working at once.
    let keys = kw
        .admin(
            Method::GET,
            &format!("/v1/applications/{}/api-keys", a.id),
            None,
        )
        .await;
    let key_id = keys.body[0]["id"].as_str().expect("key id").to_string();
    assert!(
        keys.body[0].get("key").is_none() && keys.body[0].get("hash").is_none(),
        "lists never show keys"
    );
    let r = kw
        .admin(Method::DELETE, &format!("/v1/api-keys/{key_id}"), None)
        .await;
    assert_eq!(r.status, 204);
    kw.call(Method::GET, "/v1/connections", Some(&a.key), None)
        .await
        .assert_problem(401, "unauthorized");
}
