//! S10: bad input of every kind gets a 4xx problem+json with a clear code, and nothing
//! in the database changes.

use crate::setup;
use keyway_testkit::{browser, csrf_of, location, Flavor};
use reqwest::Method;
use serde_json::json;
use time::Duration;

#[tokio::test]
async fn admin_endpoints_reject_bad_input_without_writing() {
    let (kw, _fake, _app) = setup(Flavor::Salesforce).await;
    let before = kw.db_fingerprint().await;
    let k = kw.admin_key.clone();
    let k = Some(k.as_str());
    kw.call_raw(
        Method::POST,
        "/v1/integrations",
        k,
        "application/json",
        b"{\"slug\": ".to_vec(),
    )
    .await
    .assert_problem(400, "invalid_json");
    kw.call_raw(
        Method::POST,
        "/v1/integrations",
        k,
        "text/plain",
        b"{}".to_vec(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    kw.admin(
        Method::POST,
        "/v1/integrations",
        Some(json!({"slug": 5, "provider": "fake", "client_id": "c"})),
    )
    .await
    .assert_problem(422, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/integrations",
        Some(json!({"provider": "fake", "client_id": "c"})),
    )
    .await
    .assert_problem(422, "invalid_request");
    let r = kw
        .admin(
            Method::POST,
            "/v1/integrations",
            Some(json!({"slug": "x", "provider": "fake", "client_id": "c", "colour": "red"})),
        )
        .await;
    r.assert_problem(422, "invalid_request");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "names the unknown field: {}",
        r.body
    );
    kw.admin(
        Method::POST,
        "/v1/integrations",
        Some(json!({"slug": "x", "provider": "nope", "client_id": "c"})),
    )
    .await
    .assert_problem(422, "unknown_provider");
    kw.admin(Method::POST, "/v1/integrations", Some(json!({"slug": "Bad Slug", "provider": "fake", "client_id": "c", "settings": {"host": "a.b"}}))).await.assert_problem(400, "invalid_request");
    kw.admin(Method::POST, "/v1/integrations", Some(json!({"slug": "acme", "provider": "fake", "client_id": "c", "settings": {"host": "a.b"}}))).await.assert_problem(409, "integration_exists");
    kw.admin(
        Method::POST,
        "/v1/integrations",
        Some(json!({"slug": "y", "provider": "fake", "client_id": "c"})),
    )
    .await
    .assert_problem(400, "missing_setting");
    kw.admin(Method::POST, "/v1/integrations", Some(json!({"slug": "y", "provider": "fake", "client_id": "c", "settings": {"host": "a.b", "region": "eu"}}))).await.assert_problem(400, "invalid_setting");
    kw.admin(Method::POST, "/v1/integrations", Some(json!({"slug": "y", "provider": "fake", "client_id": "c", "settings": {"host": "evil.com/x?"}}))).await.assert_problem(400, "invalid_setting");
    kw.admin(Method::POST, "/v1/integrations", Some(json!({"slug": "y", "provider": "fake", "client_id": "c", "settings": {"host": "a.b"}, "scopes": ["has space"]}))).await.assert_problem(400, "invalid_request");
    let big = json!({"slug": "y", "provider": "fake", "client_id": "x".repeat(100_000)});
    kw.admin(Method::POST, "/v1/integrations", Some(big))
        .await
        .assert_problem(413, "payload_too_large");
    kw.admin(
        Method::PATCH,
        "/v1/integrations/nope",
        Some(json!({"client_id": "c"})),
    )
    .await
    .assert_problem(404, "not_found");
    kw.admin(
        Method::PATCH,
        "/v1/integrations/acme",
        Some(json!({"scopes": ["a"]})),
    )
    .await
    .assert_problem(400, "reason_required");
    kw.admin(Method::POST, "/v1/applications", Some(json!({"name": ""})))
        .await
        .assert_problem(400, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/applications",
        Some(json!({"name": "x", "return_urls": ["javascript:alert(1)"]})),
    )
    .await
    .assert_problem(400, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/applications",
        Some(json!({"name": "x", "return_urls": ["https://a.example/#frag"]})),
    )
    .await
    .assert_problem(400, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/applications",
        Some(json!({"name": "x", "allowed_origins": ["https://a.example/path"]})),
    )
    .await
    .assert_problem(400, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/applications",
        Some(json!({"name": "x", "agent_session_max": 5})),
    )
    .await
    .assert_problem(400, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/applications/app_nope/api-keys",
        Some(json!({})),
    )
    .await
    .assert_problem(404, "not_found");
    kw.admin(
        Method::POST,
        "/v1/applications/app_nope/api-keys",
        Some(json!({"name": 3})),
    )
    .await
    .assert_problem(422, "invalid_request");
    kw.admin(Method::DELETE, "/v1/api-keys/key_nope", None)
        .await
        .assert_problem(404, "not_found");
    kw.admin(Method::GET, "/v1/nothing-here", None)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(before, kw.db_fingerprint().await, "nothing was written");
}

#[tokio::test]
async fn application_endpoints_reject_bad_input_without_writing() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let before = kw.db_fingerprint().await;
    let k = Some(app.key.as_str());
    let cs = |b| kw.call(Method::POST, "/v1/connect/sessions", k, Some(b));
    cs(json!({"user_id": "u1", "return_url": "https://evil.example/done"}))
        .await
        .assert_problem(400, "return_url_not_allowed");
    cs(json!({"user_id": "u1", "return_url": "https://app.example/done/../x"}))
        .await
        .assert_problem(400, "return_url_not_allowed");
    cs(json!({"user_id": "u1", "return_url": "https://app.example/done?next=https://evil.example"})).await.assert_problem(400, "return_url_not_allowed");
    cs(json!({"user_id": "u1", "integrations": ["nope"]}))
        .await
        .assert_problem(422, "unknown_integration");
    cs(json!({"user_id": "u1", "integrations": []}))
        .await
        .assert_problem(400, "invalid_request");
    cs(json!({"user_id": ""}))
        .await
        .assert_problem(400, "invalid_request");
    cs(json!({"user_id": "x".repeat(300)}))
        .await
        .assert_problem(400, "invalid_request");
    cs(json!({"user_id": "u1", "owner": "o".repeat(2000)}))
        .await
        .assert_problem(400, "invalid_request");
    cs(json!({"user_id": ["u1"]}))
        .await
        .assert_problem(422, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/connect/sessions",
        Some(json!({"user_id": "u1"})),
    )
    .await
    .assert_problem(400, "application_required");
    kw.call(
        Method::POST,
        "/v1/integrations/nope/authorize",
        k,
        Some(json!({"user_id": "u1"})),
    )
    .await
    .assert_problem(422, "unknown_integration");
    kw.call(
        Method::POST,
        "/v1/integrations/acme/authorize",
        k,
        Some(json!({"user_id": "u1", "return_url": "https://evil.example"})),
    )
    .await
    .assert_problem(400, "return_url_not_allowed");

    kw.call_raw(
        Method::POST,
        "/v1/token",
        k,
        "application/json",
        b"not json".to_vec(),
    )
    .await
    .assert_problem(400, "invalid_json");
    kw.call(
        Method::POST,
        "/v1/token",
        k,
        Some(json!({"integration": "acme"})),
    )
    .await
    .assert_problem(422, "invalid_request");
    kw.call(
        Method::POST,
        "/v1/token",
        k,
        Some(json!({"integration": "acme", "user_id": 7})),
    )
    .await
    .assert_problem(422, "invalid_request");
    kw.call(
        Method::POST,
        "/v1/token",
        k,
        Some(json!({"integration": "nope", "user_id": "u1"})),
    )
    .await
    .assert_problem(404, "not_installed");
    kw.call(
        Method::POST,
        "/v1/token",
        k,
        Some(json!({"integration": "acme", "user_id": ""})),
    )
    .await
    .assert_problem(400, "invalid_request");

    kw.call(Method::GET, "/v1/connections?status=bogus", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/connections?cursor=%21%21%21", k, None)
        .await
        .assert_problem(400, "invalid_cursor");
    kw.call(Method::GET, "/v1/connections?limit=0", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/connections?limit=abc", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/connections?colour=red", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/connections/conn_nope", k, None)
        .await
        .assert_problem(404, "not_found");
    kw.call(
        Method::PATCH,
        &format!("/v1/connections/{id}"),
        k,
        Some(json!({"owner": "o".repeat(5000)})),
    )
    .await
    .assert_problem(400, "invalid_request");
    kw.call(
        Method::PATCH,
        &format!("/v1/connections/{id}"),
        k,
        Some(json!({"status": "active"})),
    )
    .await
    .assert_problem(422, "invalid_request");
    kw.call(Method::DELETE, "/v1/connections/conn_nope", k, None)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(before, kw.db_fingerprint().await, "nothing was written");
}

#[tokio::test]
async fn callback_rejects_missing_replayed_expired_foreign_and_mixed_up_states() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    // No state at all.
    let r = kw
        .http
        .get(format!("{}/oauth/callback?code=x", kw.url))
        .send()
        .await
        .expect("cb");
    assert_eq!(r.status(), 400);
    let r = kw
        .http
        .get(format!("{}/oauth/callback", kw.url))
        .send()
        .await
        .expect("cb");
    assert_eq!(r.status(), 400);

    // Replay: the second use of a state fails and changes nothing.
    let s = kw.connect_session(&app, json!({"user_id": "u1"})).await;
    let url = s.body["url"].as_str().unwrap_or_default().to_string();
    let b = browser();
    let auth = kw.start_flow(&b, &url, "acme").await;
    let cb = kw.provider_redirect(&b, &auth).await;
    assert_eq!(b.get(&cb).send().await.expect("cb").status(), 200);
    let before = kw.db_fingerprint().await;
    let replay = b.get(&cb).send().await.expect("cb");
    assert_eq!(replay.status(), 400);
    assert!(replay
        .text()
        .await
        .unwrap_or_default()
        .contains("already used"));
    assert_eq!(before, kw.db_fingerprint().await);

    // Another browser cannot finish a flow it did not start (S4 browser binding).
    let auth = kw.start_flow(&b, &url, "acme").await;
    let cb = kw.provider_redirect(&b, &auth).await;
    let other = browser();
    let r = other.get(&cb).send().await.expect("cb");
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap_or_default()
        .contains("another browser"));

    // Expired state.
    let auth = kw.start_flow(&b, &url, "acme").await;
    let cb = kw.provider_redirect(&b, &auth).await;
    kw.clock.advance(Duration::minutes(11));
    assert_eq!(b.get(&cb).send().await.expect("cb").status(), 400);

    // Expired connect link (15 minutes).
    kw.clock.advance(Duration::minutes(5));
    let r = b.get(&url).send().await.expect("page");
    assert_eq!(r.status(), 410);

    assert_eq!(
        fake.authorizations(),
        3,
        "good, other-browser and expired flows reached the provider"
    );
    let conns = kw
        .call(Method::GET, "/v1/connections", Some(&app.key), None)
        .await;
    assert_eq!(
        conns.body["data"].as_array().map(Vec::len),
        Some(1),
        "only the one good flow connected"
    );
}

#[tokio::test]
async fn issuer_mismatch_is_rejected() {
    let fake = keyway_testkit::FakeProvider::start(Flavor::Standard).await;
    let mut provider = fake.provider_toml();
    provider["oauth2"].as_table_mut().expect("table").insert(
        "issuer".into(),
        toml::Value::String(format!("{}/", fake.url)),
    );
    let mut opts = keyway_testkit::TestOptions::default();
    opts.providers.insert("fake".into(), provider);
    let kw = keyway_testkit::TestKeyway::start(opts).await;
    kw.create_integration("acme", "fake", &[], json!({})).await;
    let app = kw.create_app("App", &[]).await;
    fake.set_issuer(Some("https://attacker.example"));
    let s = kw.connect_session(&app, json!({"user_id": "u1"})).await;
    let b = browser();
    let auth = kw
        .start_flow(&b, s.body["url"].as_str().unwrap_or_default(), "acme")
        .await;
    let cb = kw.provider_redirect(&b, &auth).await;
    let r = b.get(&cb).send().await.expect("cb");
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap_or_default()
        .contains("Unexpected sign-in response"));
    fake.set_issuer(Some(&fake.url));
    let auth = kw
        .start_flow(&b, s.body["url"].as_str().unwrap_or_default(), "acme")
        .await;
    let cb = kw.provider_redirect(&b, &auth).await;
    assert_eq!(
        b.get(&cb).send().await.expect("cb").status(),
        200,
        "matching iss (trailing slash tolerated)"
    );
}

#[tokio::test]
async fn widget_forms_need_the_csrf_token_and_a_known_session() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let s = kw.connect_session(&app, json!({"user_id": "u1"})).await;
    let url = s.body["url"].as_str().unwrap_or_default().to_string();
    let b = browser();
    let html = b
        .get(&url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let before = kw.db_fingerprint().await;
    let r = b
        .post(&url)
        .form(&[("integration", "acme")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "incomplete form");
    let r = b
        .post(&url)
        .form(&[("csrf", "0".repeat(64)), ("integration", "acme".into())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = browser()
        .post(&url)
        .form(&[("csrf", csrf_of(&html)), ("integration", "acme".into())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "a csrf token is bound to its browser");
    let r = b
        .post(&url)
        .form(&[("csrf", csrf_of(&html)), ("integration", "nope".into())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let r = b
        .get(format!("{}/connect/kwcs_unknown", kw.url))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 404);
    assert_eq!(fake.authorizations(), 0);
    assert_eq!(before, kw.db_fingerprint().await);
    let r = b
        .post(&url)
        .form(&[("csrf", csrf_of(&html)), ("integration", "acme".into())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with(&fake.url));
}
