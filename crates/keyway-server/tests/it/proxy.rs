//! `ANY /v1/proxy/{integration}/{path}` (issue 4, item 6).

use crate::setup;
use keyway_testkit::{Flavor, TestKeyway};
use reqwest::Method;
use serde_json::Value;
use time::Duration;

async fn proxied(
    kw: &TestKeyway,
    key: &str,
    method: Method,
    path: &str,
    user: Option<&str>,
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut rb = kw
        .http
        .request(method, format!("{}/v1/proxy/{path}", kw.url))
        .bearer_auth(key)
        .header("X-Custom", "kept")
        .header("Cookie", "kw_bind=secret-cookie")
        .header("Keyway-Trace", "not forwarded");
    if let Some(u) = user {
        rb = rb.header("Keyway-User-Id", u);
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.expect("proxy");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn calls_the_api_with_the_token_injected_and_headers_filtered() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    let (status, headers, body) = proxied(
        &kw,
        &app.key,
        Method::POST,
        "acme/api/items/a%20b?limit=5&q=x",
        Some("u1"),
        Some(r#"{"name":"n"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["account"], "acct1", "the user's own token was used");
    assert_eq!(
        (v["method"].clone(), v["path"].clone(), v["query"].clone()),
        (
            "POST".into(),
            "/api/items/a%20b".into(),
            "limit=5&q=x".into()
        )
    );
    assert_eq!(v["body"], r#"{"name":"n"}"#);
    assert_eq!(v["x_custom"], "kept");
    let names: Vec<&str> = v["header_names"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        !names.contains(&"cookie") && !names.iter().any(|n| n.starts_with("keyway-")),
        "{names:?}"
    );
    assert_eq!(headers["x-upstream"], "fake");
    assert!(
        headers.get("set-cookie").is_none(),
        "upstream cookies are not passed to the caller"
    );
    assert!(
        !body.contains("at_"),
        "the provider token never reaches the caller"
    );
    assert_eq!(fake.refreshes(), 0);
}

#[tokio::test]
async fn an_upstream_401_refreshes_once_and_retries() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    fake.expire_access_tokens();
    let (status, _, body) =
        proxied(&kw, &app.key, Method::GET, "acme/api/me", Some("u1"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.refreshes(), 1);
    // A dead grant: the retry is not attempted forever.
    fake.revoke_all_grants();
    let (status, _, _) = proxied(&kw, &app.key, Method::GET, "acme/api/me", Some("u1"), None).await;
    assert_eq!(status, 409, "the refresh found the grant dead");
    assert_eq!(fake.refreshes(), 2);
}

#[tokio::test]
async fn paths_hosts_redirects_and_sizes_are_guarded() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    kw.clock.advance(Duration::seconds(1));
    let before = kw.db_fingerprint().await;
    for bad in [
        "acme/api/..%2f..%2fadmin",
        "acme/api/x/%2E%2E%2Fy",
        "acme/api%2F..%2Fx",
        "acme/api/a%5cb",
    ] {
        let (status, _, body) = proxied(&kw, &app.key, Method::GET, bad, Some("u1"), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("invalid_path"), "{body}");
    }
    let (status, _, body) = proxied(&kw, &app.key, Method::GET, "acme/api/me", None, None).await;
    assert_eq!((status, body.contains("missing_user")), (400, true));
    assert_eq!(
        before,
        kw.db_fingerprint().await,
        "rejected before any token was handed out"
    );
    let (status, headers, _) = proxied(
        &kw,
        &app.key,
        Method::GET,
        "acme/api/redirect",
        Some("u1"),
        None,
    )
    .await;
    assert_eq!(status, 302, "redirects are returned, never followed");
    assert_eq!(headers["location"], "https://evil.example/steal");
    let (status, _, body) =
        proxied(&kw, &app.key, Method::GET, "acme/api/big", Some("u1"), None).await;
    assert_eq!(status, 503, "an oversized answer is not relayed: {body}");
    let big = "x".repeat(2 * 1024 * 1024);
    let (status, _, body) = proxied(
        &kw,
        &app.key,
        Method::POST,
        "acme/api/echo",
        Some("u1"),
        Some(&big),
    )
    .await;
    assert_eq!((status, body.contains("payload_too_large")), (413, true));
    let (status, _, body) = proxied(
        &kw,
        &app.key,
        Method::GET,
        "acme/api/me",
        Some("nobody"),
        None,
    )
    .await;
    assert_eq!((status, body.contains("not_installed")), (404, true));
    let other = kw.create_app("Other", &[]).await;
    let (status, _, _) = proxied(
        &kw,
        &other.key,
        Method::GET,
        "acme/api/me",
        Some("u1"),
        None,
    )
    .await;
    assert_eq!(
        status, 404,
        "S6: another application cannot use the connection"
    );
}

#[tokio::test]
async fn tenant_api_base_from_the_token_response_is_used_and_checked() {
    let (kw, _fake, app) = setup(Flavor::Salesforce).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let (status, _, body) = proxied(
        &kw,
        &app.key,
        Method::GET,
        "acme/api/query?q=SELECT%20Id",
        Some("u1"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A tampered instance_url pointing elsewhere is refused (S7).
    kw.exec_sql(&format!("UPDATE connections SET metadata = '{{\"instance_url\":\"https://evil.example\"}}' WHERE id = '{id}'")).await;
    let (status, _, body) = proxied(
        &kw,
        &app.key,
        Method::GET,
        "acme/api/query",
        Some("u1"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("host_not_allowed"));
}
