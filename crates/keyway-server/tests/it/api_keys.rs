//! API-key providers (issue 7, item 1): the widget's form, the provider's check before
//! anything is stored, `credentials` from the token call, injection by the proxy.

use crate::setup;
use keyway_testkit::{browser, csrf_of, location, FakeProvider, Flavor, TestKeyway, TestOptions};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use time::Duration;

/// Creates a connect session and returns the URL of the key form for `acme`.
async fn key_form_url(kw: &TestKeyway, app: &keyway_testkit::App, user: &str) -> (String, String) {
    let s = kw
        .connect_session(
            app,
            json!({"user_id": user, "integrations": ["acme"], "return_url": "https://app.example/done"}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let widget = s.body["url"].as_str().expect("url").to_string();
    let form = format!("{widget}/key/acme");
    (widget, form)
}

async fn submit(
    b: &reqwest::Client,
    form_url: &str,
    fields: &[(&str, &str)],
) -> (u16, String, Option<String>) {
    let page = b.get(form_url).send().await.expect("form");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let mut body: Vec<(String, String)> = vec![("csrf".into(), csrf_of(&html))];
    body.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let r = b.post(form_url).form(&body).send().await.expect("submit");
    let status = r.status().as_u16();
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.text().await.unwrap_or_default(), loc)
}

async fn audit_actions(kw: &TestKeyway) -> Vec<Value> {
    kw.admin(Method::GET, "/v1/audit?limit=1000", None)
        .await
        .body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_key_is_checked_by_the_provider_before_it_is_stored() {
    keyway_testkit::logs::install();
    let (kw, fake, app) = setup(Flavor::ApiKey).await;
    fake.add_api_key("fk_good_0123456789", "acct9");
    let (widget, form_url) = key_form_url(&kw, &app, "u1").await;
    let b = browser();

    // The widget offers a key form for this integration, not an OAuth redirect.
    let html = b
        .get(&widget)
        .send()
        .await
        .expect("widget")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Add key"), "{html}");
    // (minijinja escapes `/` in attributes.)
    let path = &form_url[form_url.find("/connect/").expect("path")..];
    assert!(html.replace("&#x2f;", "/").contains(path), "{html}");

    // The form says who connects what, asks for exactly the declared fields and links
    // to where the provider issues keys.
    let page = b.get(&form_url).send().await.expect("form");
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.expect("html").replace("&#x2f;", "/");
    for needle in [
        "App One",
        "u1",
        "Fake Keys",
        "API key",
        "Starts with fk_",
        "type=\"password\"",
        &format!("href=\"{}/keys\"", fake.url),
    ] {
        assert!(html.contains(needle), "form lacks {needle}: {html}");
    }
    assert_eq!(html.matches("<input id=\"f-").count(), 1, "one field");

    let before = kw.db_fingerprint().await;
    // Without the CSRF token nothing happens.
    let r = b
        .post(&form_url)
        .form(&[("api_key", "fk_good_0123456789")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    // An empty field is refused before the provider is asked.
    let (status, html, _) = submit(&b, &form_url, &[("api_key", "  ")]).await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("API key is required"), "{html}");
    assert_eq!(fake.state.counters.identity.load(Ordering::SeqCst), 0);
    // A key the provider rejects is not stored and not echoed back.
    let (status, html, _) = submit(&b, &form_url, &[("api_key", "fk_wrong_key_987")]).await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("did not accept these credentials"), "{html}");
    assert!(!html.contains("fk_wrong_key_987"), "the key is not echoed");
    assert_eq!(fake.state.counters.identity.load(Ordering::SeqCst), 1);
    assert_eq!(kw.db_fingerprint().await, before, "nothing was written");

    // An accepted key is stored and the browser goes back to the application.
    let (status, _, loc) = submit(&b, &form_url, &[("api_key", " fk_good_0123456789\n")]).await;
    assert_eq!(status, 303);
    let loc = loc.expect("redirect");
    assert!(
        loc.starts_with("https://app.example/done?connection_id=conn_")
            && loc.ends_with("status=active"),
        "{loc}"
    );
    let list = kw
        .call(
            Method::GET,
            "/v1/connections?user_id=u1",
            Some(&app.key),
            None,
        )
        .await;
    let conn = &list.body["data"][0];
    assert_eq!(conn["provider_account"]["name"], "Account acct9", "{conn}");
    assert_eq!(conn["label"], "Account acct9");

    // The token call answers the credential's fields, marked as an API key.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/token", kw.url))
        .bearer_auth(&app.key)
        .json(&json!({"integration": "acme", "user_id": "u1"}))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let t: Value = r.json().await.expect("json");
    assert_eq!(t["token_type"], "api_key", "{t}");
    assert_eq!(t["credentials"], json!({"api_key": "fk_good_0123456789"}));
    assert!(t.get("access_token").is_none(), "{t}");
    assert_eq!(t["expires_at"], Value::Null);

    // The proxy injects the key in the header the entry names; the caller's own value
    // for that header never reaches the provider.
    let client = reqwest::Client::new();
    let p = client
        .get(format!("{}/v1/proxy/acme/api/things?x=1", kw.url))
        .bearer_auth(&app.key)
        .header("Keyway-User-Id", "u1")
        .header("X-Api-Key", "fk_spoofed")
        .send()
        .await
        .expect("proxy");
    assert_eq!(p.status(), 200);
    let echo: Value = p.json().await.expect("echo");
    assert_eq!(echo["account"], "acct9", "{echo}");
    assert_eq!(echo["query"], "x=1");

    // Audited with the kind of grant, and the key never appears in the audit log.
    let audit = audit_actions(&kw).await;
    assert!(audit
        .iter()
        .any(|e| e["action"] == "connection.created" && e["details"]["grant"] == "api_key"));
    assert!(audit.iter().any(|e| e["action"] == "token.issued"));
    assert!(!serde_json::to_string(&audit)
        .expect("json")
        .contains("fk_good_0123456789"));
    // At rest the key is sealed.
    let stored: Vec<String> = kw
        .db
        .column("SELECT access_token FROM connections", &[])
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(stored
        .iter()
        .all(|s| s.starts_with("kw1.") && !s.contains("fk_good")));
    // S1: neither the accepted nor the rejected key was logged.
    let logs = keyway_testkit::logs::captured();
    assert!(logs.contains("API key"), "logs were captured");
    for key in ["fk_good_0123456789", "fk_wrong_key_987", "fk_spoofed"] {
        assert!(!logs.contains(key), "{key} appeared in the logs");
    }
}

#[tokio::test]
async fn a_deleted_key_needs_reconnecting_and_a_new_key_recovers_it() {
    let (kw, fake, app) = setup(Flavor::ApiKey).await;
    fake.add_api_key("fk_first_key_000", "acct1");
    let (_, form_url) = key_form_url(&kw, &app, "u1").await;
    let b = browser();
    let (status, _, _) = submit(&b, &form_url, &[("api_key", "fk_first_key_000")]).await;
    assert_eq!(status, 303);

    // The daily validation finds the key deleted at the provider.
    fake.delete_api_key("fk_first_key_000");
    kw.clock.advance(Duration::hours(25));
    let r = kw.broker.keep_alive().await.expect("keep-alive");
    assert_eq!(r.needs_reauthorization, 1, "{r:?}");
    let t = kw.token(&app, "u1", "acme").await;
    t.assert_problem(409, "needs_reauthorization");
    assert!(t.body["reconnect_url"].is_string(), "{}", t.body);

    // The widget (a new session: the first one expired) asks to replace the key; the
    // same account's new key recovers the connection in place.
    let (widget, form_url) = key_form_url(&kw, &app, "u1").await;
    let html = b
        .get(&widget)
        .send()
        .await
        .expect("widget")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("Replace key") && html.contains("Needs to be reconnected"),
        "{html}"
    );
    fake.add_api_key("fk_second_key_111", "acct1");
    let (status, _, _) = submit(&b, &form_url, &[("api_key", "fk_second_key_111")]).await;
    assert_eq!(status, 303);
    let t = kw.token(&app, "u1", "acme").await;
    assert_eq!(
        t.body["credentials"]["api_key"], "fk_second_key_111",
        "{}",
        t.body
    );
    let list = kw
        .call(
            Method::GET,
            "/v1/connections?user_id=u1",
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1));
    assert!(audit_actions(&kw)
        .await
        .iter()
        .any(|e| e["action"] == "connection.recovered"));

    // Disconnecting cannot revoke an API key at the provider; it says so and shreds it.
    let id = list.body["data"][0]["id"].as_str().expect("id").to_string();
    let d = kw
        .call(
            Method::DELETE,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["revocation"], "unsupported", "{}", d.body);
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(404, "not_installed");
}

/// A provider taking its key in the query string, with a non-secret field in the API
/// base (as Mailchimp's data centre), connected through an authorization link.
#[tokio::test]
async fn query_injection_and_non_secret_fields_through_an_authorize_link() {
    keyway_testkit::logs::install();
    let fake = FakeProvider::start(Flavor::ApiKey).await;
    let u = &fake.url;
    let entry: toml::Value = toml::from_str(&format!(
        r#"name = "Query Keys"
api_hosts = ["127.0.0.1"]
api_base_url = "{u}/api/{{workspace}}"
[api_key]
issue_url = "{u}/keys"
[[api_key.fields]]
name = "workspace"
label = "Workspace"
secret = false
[[api_key.fields]]
name = "api_key"
label = "Secret"
[api_key.query]
api_key = "{{api_key}}"
[identity]
url = "{u}/me?workspace={{workspace}}"
account_id = "id"
"#
    ))
    .expect("toml");
    let mut opts = TestOptions::default();
    opts.providers.insert("qkeys".into(), entry);
    let kw = TestKeyway::start(opts).await;
    let r = kw
        .admin(
            Method::POST,
            "/v1/integrations",
            Some(json!({"slug": "acme", "provider": "qkeys"})),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "an API-key integration needs no client: {}",
        r.body
    );
    let app = kw.create_app("App", &["https://app.example/done"]).await;
    fake.add_api_key("qk_secret_555", "acct5");

    let link = kw
        .call(
            Method::POST,
            "/v1/integrations/acme/authorize",
            Some(&app.key),
            Some(json!({"user_id": "u5", "return_url": "https://app.example/done"})),
        )
        .await;
    assert_eq!(link.status, 200, "{}", link.body);
    let b = browser();
    let link_url = link.body["url"].as_str().expect("url");
    let html = b
        .get(link_url)
        .send()
        .await
        .expect("link")
        .text()
        .await
        .expect("html");
    let r = b
        .post(link_url)
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .expect("continue");
    assert_eq!(r.status(), 303);
    let form_url = format!("{}{}", kw.url, location(&r));
    assert!(form_url.ends_with("/key"), "{form_url}");
    // A workspace value that could change the URL is refused.
    let (status, html, _) = submit(
        &b,
        &form_url,
        &[("workspace", "../admin"), ("api_key", "qk_secret_555")],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    let html = html.replace("&#x2f;", "/");
    assert!(html.contains("Workspace may use letters"), "{html}");
    assert!(
        html.contains("value=\"../admin\""),
        "non-secret values are kept in the form"
    );
    assert_eq!(fake.state.counters.identity.load(Ordering::SeqCst), 0);
    let (status, _, loc) = submit(
        &b,
        &form_url,
        &[("workspace", "ws1"), ("api_key", "qk_secret_555")],
    )
    .await;
    assert_eq!(status, 303);
    assert!(loc
        .unwrap_or_default()
        .starts_with("https://app.example/done?connection_id="));

    let t = kw.token(&app, "u5", "acme").await;
    assert_eq!(
        t.body["credentials"],
        json!({"workspace": "ws1", "api_key": "qk_secret_555"})
    );
    let p = reqwest::Client::new()
        .get(format!(
            "{}/v1/proxy/acme/items?api_key=qk_spoofed&x=1",
            kw.url
        ))
        .bearer_auth(&app.key)
        .header("Keyway-User-Id", "u5")
        .send()
        .await
        .expect("proxy");
    assert_eq!(p.status(), 200);
    let echo: Value = p.json().await.expect("echo");
    assert_eq!(echo["path"], "/api/ws1/items", "{echo}");
    assert_eq!(echo["query"], "x=1&api_key=qk_secret_555");
    assert_eq!(echo["account"], "acct5");
    // S1: a key carried in the URL does not reach the logs with the URL.
    assert!(!keyway_testkit::logs::captured().contains("qk_secret_555"));
}

#[tokio::test]
async fn bad_input_around_api_keys() {
    let (kw, fake, app) = setup(Flavor::ApiKey).await;
    fake.add_api_key("fk_good_key", "acct1");
    let b = browser();
    // An OAuth integration has no key form; OAuth integrations still need a client id.
    let oauth = FakeProvider::start(Flavor::Standard).await;
    let kw2 = TestKeyway::start(TestOptions::default().with_provider("fake", &oauth)).await;
    let before = kw2.db_fingerprint().await;
    let r = kw2
        .admin(
            Method::POST,
            "/v1/integrations",
            Some(json!({"slug": "acme", "provider": "fake"})),
        )
        .await;
    r.assert_problem(400, "invalid_request");
    assert_eq!(kw2.db_fingerprint().await, before);
    kw2.create_integration("acme", "fake", &[], json!({})).await;
    let app2 = kw2.create_app("App", &[]).await;
    let s = kw2
        .connect_session(&app2, json!({"user_id": "u1", "integrations": ["acme"]}))
        .await;
    let r = b
        .get(format!("{}/key/acme", s.body["url"].as_str().expect("url")))
        .send()
        .await
        .expect("form");
    assert_eq!(r.status(), 400);

    let (_, form_url) = key_form_url(&kw, &app, "u1").await;
    // Importing tokens is for OAuth providers.
    let before = kw.db_fingerprint().await;
    let r = kw
        .call(
            Method::POST,
            "/v1/connections/import",
            Some(&app.key),
            Some(json!({"integration": "acme", "user_id": "u1", "access_token": "fk_good_key"})),
        )
        .await;
    r.assert_problem(400, "not_oauth");
    // A form for an integration the session does not offer, or an unknown session.
    let other = form_url.replace("/key/acme", "/key/other");
    assert_eq!(b.get(&other).send().await.expect("x").status(), 400);
    let gone = form_url.replace("/connect/kwcs_", "/connect/kwcs_x");
    assert_eq!(b.get(&gone).send().await.expect("x").status(), 404);
    // An over-long key is refused without asking the provider.
    let long = "k".repeat(5000);
    let (status, html, _) = submit(&b, &form_url, &[("api_key", &long)]).await;
    assert_eq!(status, 422);
    assert!(html.contains("at most 4096"), "{html}");
    assert_eq!(fake.state.counters.identity.load(Ordering::SeqCst), 0);
    assert_eq!(kw.db_fingerprint().await, before, "nothing changed");
}

#[tokio::test]
async fn the_provider_being_down_stores_nothing() {
    let (kw, fake, app) = setup(Flavor::ApiKey).await;
    fake.add_api_key("fk_good_key", "acct1");
    let (_, form_url) = key_form_url(&kw, &app, "u1").await;
    let b = browser();
    let page = b.get(&form_url).send().await.expect("form");
    let csrf = csrf_of(&page.text().await.expect("html"));
    let before = kw.db_fingerprint().await;
    drop(fake);
    let r = b
        .post(&form_url)
        .form(&[("csrf", csrf.as_str()), ("api_key", "fk_good_key")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 503);
    let html = r.text().await.expect("html");
    assert!(html.contains("could not be checked"), "{html}");
    assert_eq!(kw.db_fingerprint().await, before);
}
