//! The admin console (issue 6, item 2): sign-in, CSRF, inventory filters and CSV, revoke,
//! scope changes with a reason, audit verification, charts.

use crate::{setup, unescape};
use keyway_testkit::{browser, location, Flavor, TestKeyway};
use reqwest::Method;
use serde_json::json;

/// Signs in with the admin key; returns the browser (with the session cookie) and the
/// session's CSRF token.
async fn sign_in(kw: &TestKeyway) -> (reqwest::Client, String) {
    let b = browser();
    let r = b
        .post(format!("{}/admin/login", kw.url))
        .form(&[("key", kw.admin_key.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/admin");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/admin"),
        "{cookie}"
    );
    let html = page(&b, &format!("{}/admin", kw.url)).await;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("csrf")
        .to_string();
    (b, csrf)
}

async fn page(b: &reqwest::Client, url: &str) -> String {
    let r = b.get(url).send().await.expect("get");
    assert_eq!(r.status(), 200, "{url}");
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    unescape(&r.text().await.expect("html"))
}

#[tokio::test]
async fn only_admin_keys_sign_in_and_pages_need_a_session() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let b = browser();
    for path in [
        "/admin",
        "/admin/connections",
        "/admin/audit",
        "/admin/connections.csv",
    ] {
        let r = b
            .get(format!("{}{path}", kw.url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(location(&r), "/admin/login");
    }
    for key in [app.key.as_str(), "kw_admin_wrong", ""] {
        let r = b
            .post(format!("{}/admin/login", kw.url))
            .form(&[("key", key)])
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 401, "{key}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    let (b, csrf) = sign_in(&kw).await;
    // Signing out ends the session on the server, not only in the browser.
    let r = b
        .post(format!("{}/admin/logout", kw.url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 303);
    let r = b
        .get(format!("{}/admin", kw.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn inventory_filters_csv_revoke_and_the_audit_trail() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let first = kw.connect(&app, "alice", "acme").await;
    let second = kw.connect(&app, "bob", "acme").await;
    kw.token(&app, "alice", "acme").await;
    let (b, csrf) = sign_in(&kw).await;

    let html = page(&b, &format!("{}/admin", kw.url)).await;
    assert!(html.contains("<svg class=\"chart\""), "charts are rendered");
    assert!(html.contains("Connections by status") && html.contains("token calls"));

    let all = page(&b, &format!("{}/admin/connections", kw.url)).await;
    assert!(all.contains(&first) && all.contains(&second));
    let filtered = page(
        &b,
        &format!(
            "{}/admin/connections?status=revoked&integration=acme",
            kw.url
        ),
    )
    .await;
    assert!(!filtered.contains(&first) && filtered.contains("No connection matches"));
    let r = b
        .get(format!("{}/admin/connections?status=bogus", kw.url))
        .send()
        .await
        .expect("bad filter");
    assert_eq!(r.status(), 400);
    let csv = b
        .get(format!("{}/admin/connections.csv?status=active", kw.url))
        .send()
        .await
        .expect("csv");
    assert!(csv
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv")));
    let csv = csv.text().await.expect("csv");
    assert_eq!(csv.lines().count(), 3, "{csv}");

    let detail = page(&b, &format!("{}/admin/connections/{first}", kw.url)).await;
    assert!(detail.contains("connection.created") && detail.contains("token.issued"));
    assert!(detail.contains("Revoke this connection"));

    // Revoking needs the session's CSRF token.
    let before = kw.db_fingerprint().await;
    let r = b
        .post(format!("{}/admin/connections/{first}/revoke", kw.url))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .expect("forged");
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new()
        .post(format!("{}/admin/connections/{first}/revoke", kw.url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("no session");
    assert!(r.status().is_success() || r.status().is_redirection());
    assert_eq!(kw.db_fingerprint().await, before, "nothing changed");
    let r = b
        .post(format!("{}/admin/connections/{first}/revoke", kw.url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 303);
    assert_eq!(
        fake.state
            .counters
            .revocations
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let detail = page(&b, &format!("{}/admin/connections/{first}", kw.url)).await;
    assert!(detail.contains("status-revoked") && !detail.contains("Revoke this connection"));
    let audit = page(&b, &format!("{}/admin/audit", kw.url)).await;
    assert!(audit.contains("connection.revoked"), "{audit}");
    let rows = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    assert!(rows.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["action"] == "connection.revoked"
            && e["connection_id"] == first.as_str()
            && e["actor"] == "key:admin_env"));

    let verified = b
        .post(format!("{}/admin/audit/verify", kw.url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("verify");
    assert_eq!(verified.status(), 200);
    assert!(verified
        .text()
        .await
        .expect("html")
        .contains("Chain intact"));
}

#[tokio::test]
async fn scope_changes_need_a_reason_and_are_audited() {
    let (kw, _fake, _app) = setup(Flavor::Standard).await;
    let (b, csrf) = sign_in(&kw).await;
    let html = page(&b, &format!("{}/admin/integrations", kw.url)).await;
    assert!(html.contains("acme") && html.contains("/oauth/callback"));
    let before = kw.db_fingerprint().await;
    let r = b
        .post(format!("{}/admin/integrations/acme/scopes", kw.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("scopes", "read write"),
            ("reason", ""),
        ])
        .send()
        .await
        .expect("no reason");
    assert_eq!(r.status(), 400);
    assert_eq!(kw.db_fingerprint().await, before);
    let r = b
        .post(format!("{}/admin/integrations/acme/scopes", kw.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("scopes", "read write"),
            ("reason", "export needs write"),
        ])
        .send()
        .await
        .expect("change");
    assert_eq!(r.status(), 303);
    let i = kw.admin(Method::GET, "/v1/integrations/acme", None).await;
    assert_eq!(i.body["scopes"], json!(["read", "write"]));
    let html = page(&b, &format!("{}/admin/applications", kw.url)).await;
    assert!(html.contains("App One"));
    let html = page(&b, &format!("{}/admin/webhooks", kw.url)).await;
    assert!(html.contains("No webhooks"));
    let html = page(&b, &format!("{}/admin/sessions", kw.url)).await;
    assert!(html.contains("Agent sessions") && html.contains("No agent sessions yet"));
}
