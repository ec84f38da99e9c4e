//! The embeddable widget (issue 6): keyway.js, framing by allowed origins only, result
//! messages, the confirmation page used from an iframe, and disconnecting from the widget.

use crate::{setup, unescape};
use keyway_testkit::{browser, csrf_of, location, Flavor, TestKeyway};
use reqwest::Method;
use serde_json::{json, Value};

async fn app_with_origin(kw: &TestKeyway) -> keyway_testkit::App {
    let r = kw
        .admin(
            Method::POST,
            "/v1/applications",
            Some(json!({"name": "Embedding App", "return_urls": [], "allowed_origins": ["https://host.example"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_string();
    let k = kw
        .admin(
            Method::POST,
            &format!("/v1/applications/{id}/api-keys"),
            Some(json!({"name": "backend"})),
        )
        .await;
    keyway_testkit::App {
        id,
        key: k.body["key"].as_str().expect("key").to_string(),
    }
}

async fn session(kw: &TestKeyway, app: &keyway_testkit::App, user: &str) -> String {
    let s = kw
        .connect_session(app, json!({"user_id": user, "integrations": ["acme"]}))
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    s.body["url"].as_str().expect("url").to_string()
}

#[tokio::test]
async fn keyway_js_and_the_page_script_are_served() {
    let (kw, _fake, _app) = setup(Flavor::Standard).await;
    for (path, needle) in [
        ("/assets/keyway.js", "Keyway = { open: open"),
        ("/assets/keyway-page.js", "data-kw-origins"),
    ] {
        let r = reqwest::get(format!("{}{path}", kw.url))
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
        assert!(r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/javascript")));
        assert!(r.text().await.expect("body").contains(needle));
    }
}

#[tokio::test]
async fn only_the_embedded_widget_may_be_framed_and_only_by_allowed_origins() {
    let (kw, _fake, _) = setup(Flavor::Standard).await;
    let app = app_with_origin(&kw).await;
    let url = session(&kw, &app, "u1").await;
    let b = browser();
    let hosted = b.get(&url).send().await.expect("hosted");
    let csp = |r: &reqwest::Response| {
        r.headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(csp(&hosted).contains("frame-ancestors 'none'"));
    assert_eq!(
        hosted
            .headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let embedded = b.get(format!("{url}?embed=1")).send().await.expect("embed");
    assert!(
        csp(&embedded).contains("frame-ancestors https://host.example;"),
        "{}",
        csp(&embedded)
    );
    assert!(embedded.headers().get("x-frame-options").is_none());
    assert!(!csp(&embedded).contains("unsafe-inline"));
    let html = unescape(&embedded.text().await.expect("html"));
    // In the iframe, connecting happens in a window of its own (the binding cookie).
    assert!(
        html.contains("/start/acme\" target=\"_blank\" rel=\"opener\" data-kw-popup"),
        "{html}"
    );
    assert!(
        html.contains("data-kw-origins=\"[\"https://host.example\"]\""),
        "{html}"
    );
    // Every other page stays unframeable.
    let start = b
        .get(format!("{url}/start/acme"))
        .send()
        .await
        .expect("start");
    assert!(csp(&start).contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn connecting_from_the_confirmation_page_reports_to_allowed_origins() {
    let (kw, _fake, _) = setup(Flavor::Standard).await;
    let app = app_with_origin(&kw).await;
    let url = session(&kw, &app, "u1").await;
    let b = browser();
    let start = format!("{url}/start/acme");
    let html = b
        .get(&start)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    // S9 before the provider: who connects what.
    assert!(
        html.contains("Embedding App") && html.contains("u1") && html.contains("Fake Standard")
    );
    let r = b
        .post(&start)
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    let cb = kw.provider_redirect(&b, &location(&r)).await;
    let done = b.get(&cb).send().await.expect("callback");
    assert_eq!(done.status(), 200);
    let html = unescape(&done.text().await.expect("html"));
    assert!(
        html.contains("data-kw-origins=\"[\"https://host.example\"]\""),
        "{html}"
    );
    let result = html
        .split("data-result=\"")
        .nth(1)
        .and_then(|r| r.split("\"></div>").next())
        .expect("result element");
    let msg: Value = serde_json::from_str(result).expect("json");
    assert_eq!(msg["type"], "keyway:connected");
    assert_eq!(msg["integration"], "acme");
    assert!(msg["connection_id"]
        .as_str()
        .is_some_and(|c| c.starts_with("conn_")));
    assert!(html.contains("data-kw-close"));
    // Without CSRF nothing starts.
    let r = reqwest::Client::new()
        .post(&start)
        .form(&[("csrf", "nope")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn disconnecting_from_the_widget_is_limited_to_the_sessions_own_connections() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let mine = kw.connect(&app, "u1", "acme").await;
    let theirs = kw.connect(&app, "u2", "acme").await;
    let url = session(&kw, &app, "u1").await;
    let b = browser();
    let html = unescape(
        &b.get(&url)
            .send()
            .await
            .expect("widget")
            .text()
            .await
            .expect("html"),
    );
    assert!(html.contains(&format!("value=\"{mine}\"")), "{html}");
    assert!(!html.contains(&theirs));
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(2)
        .and_then(|r| r.split('"').next())
        .expect("disconnect csrf")
        .to_string();
    let action = format!("{url}/disconnect");
    let before = kw.db_fingerprint().await;
    // Another user's connection, a wrong token, a foreign Origin: refused, nothing changed.
    let r = b
        .post(&action)
        .form(&[("csrf", csrf.as_str()), ("connection_id", theirs.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
    let r = b
        .post(&action)
        .form(&[("csrf", "wrong"), ("connection_id", mine.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = b
        .post(&action)
        .header("Origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str()), ("connection_id", mine.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = b
        .post(&action)
        .form(&[("connection_id", mine.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(kw.db_fingerprint().await, before);

    // The user's own: revoked at the provider, reported back on the list.
    let r = b
        .post(&action)
        .header("Origin", kw.url.as_str())
        .form(&[("csrf", csrf.as_str()), ("connection_id", mine.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert!(back.ends_with(&format!("?disconnected={mine}")), "{back}");
    let html = unescape(
        &b.get(format!("{}{back}", kw.url))
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("html"),
    );
    assert!(html.contains("Disconnected.") && html.contains("keyway:disconnected"));
    assert!(html.contains("Not connected"), "{html}");
    assert_eq!(
        fake.state
            .counters
            .revocations
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{mine}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(c.body["status"], "revoked");
    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    assert!(audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["action"] == "connection.revoked" && e["actor"] == "user:u1"));
    // Twice is a clear error, not a 500.
    let r = b
        .post(&action)
        .form(&[("csrf", csrf.as_str()), ("connection_id", mine.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 409);
    assert!(r
        .text()
        .await
        .expect("html")
        .contains("already disconnected"));
}

#[tokio::test]
async fn applications_theme_the_widget_through_their_settings() {
    let (kw, _fake, _) = setup(Flavor::Standard).await;
    let app = app_with_origin(&kw).await;
    let path = format!("/v1/applications/{}", app.id);
    let before = kw.db_fingerprint().await;
    for (body, field) in [
        (json!({"branding": {"accent_color": "red"}}), "accent_color"),
        (
            json!({"branding": {"accent_color": "#12345"}}),
            "accent_color",
        ),
        (
            json!({"branding": {"logo_url": "http://evil.example/x.png"}}),
            "logo_url",
        ),
        (
            json!({"branding": {"logo_url": "javascript:alert(1)"}}),
            "logo_url",
        ),
        (
            json!({"allowed_origins": ["https://a.example/path"]}),
            "allowed_origins",
        ),
    ] {
        let r = kw.admin(Method::PATCH, &path, Some(body.clone())).await;
        r.assert_problem(400, "invalid_request");
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(field),
            "{body}: {}",
            r.body
        );
    }
    kw.admin(
        Method::PATCH,
        &path,
        Some(json!({"branding": {"colour": "#fff"}})),
    )
    .await
    .assert_problem(422, "invalid_request");
    kw.admin(Method::PATCH, &path, Some(json!({})))
        .await
        .assert_problem(400, "invalid_request");
    kw.call(
        Method::PATCH,
        &path,
        Some(&app.key),
        Some(json!({"name": "Mine now"})),
    )
    .await
    .assert_problem(403, "forbidden");
    kw.admin(
        Method::PATCH,
        "/v1/applications/app_nope",
        Some(json!({"name": "x"})),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(kw.db_fingerprint().await, before, "nothing changed");

    let r = kw
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"branding": {"accent_color": "#0a7c59", "logo_url": "https://cdn.example/acme.svg"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["branding"]["accent_color"], "#0a7c59");
    let url = session(&kw, &app, "u1").await;
    let page = browser().get(&url).send().await.expect("widget");
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("img-src 'self' data: https://cdn.example;"),
        "{csp}"
    );
    let html = unescape(&page.text().await.expect("html"));
    assert!(
        html.contains("href=\"/assets/theme.css?accent=0a7c59\""),
        "{html}"
    );
    assert!(html.contains("src=\"https://cdn.example/acme.svg\""));
    let css = reqwest::get(format!("{}/assets/theme.css?accent=0a7c59", kw.url))
        .await
        .expect("css");
    assert_eq!(css.status(), 200);
    assert!(css
        .text()
        .await
        .expect("css")
        .contains("--accent: #0a7c59;"));
    let bad = reqwest::get(format!(
        "{}/assets/theme.css?accent=0a7c59;}}body{{x",
        kw.url
    ))
    .await
    .expect("css");
    assert_eq!(bad.status(), 404);
    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    assert!(audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["action"] == "application.updated"
            && e["details"]["changed"] == json!(["branding"])));
}
