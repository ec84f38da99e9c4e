//! The full cycle per quirk family, and the connect flow's variants.

use crate::{setup, setup_with};
use keyway_testkit::{browser, csrf_of, location, Flavor};
use reqwest::Method;
use serde_json::json;
use time::Duration;

#[tokio::test]
async fn full_cycle_standard_json_pkce_rotation_revocation() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(c.body["status"], "active");
    assert_eq!(
        c.body["provider_account"]["name"], "Account acct1",
        "account from the identity call"
    );
    assert_eq!(c.body["scopes"], json!(["read", "write"]));
    assert!(c.body["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let t1 = kw.token(&app, "u1", "acme").await;
    assert_eq!(t1.status, 200, "{}", t1.body);
    assert_eq!(t1.headers["cache-control"], "no-store");
    assert_eq!(t1.body["connection_id"], id);
    assert_eq!(t1.body["token_type"], "Bearer");
    assert_eq!(t1.body["missing_scopes"], json!([]));
    assert!(t1.body["expires_at"].is_string());
    assert_eq!(fake.refreshes(), 0);

    // Expired: the next call refreshes once and hands out the new token.
    kw.clock.advance(Duration::hours(2));
    let t2 = kw.token(&app, "u1", "acme").await;
    assert_eq!(t2.status, 200, "{}", t2.body);
    assert_ne!(t2.body["access_token"], t1.body["access_token"]);
    assert_eq!(fake.refreshes(), 1);
    let t3 = kw.token(&app, "u1", "acme").await;
    assert_eq!(t3.body["access_token"], t2.body["access_token"]);
    assert_eq!(fake.refreshes(), 1, "a fresh token is served from cache");
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert!(c.body["last_refreshed_at"].is_string());
    assert!(c.body["last_used_at"].is_string());

    // Disconnect revokes at the provider (RFC 7009) and erases the tokens.
    let d = kw
        .call(
            Method::DELETE,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["revocation"], "confirmed");
    assert_eq!(d.body["connection"]["status"], "revoked");
    assert_eq!(fake.revoked().len(), 1);
    assert!(!fake.access_token_live(t2.body["access_token"].as_str().unwrap_or_default()));
    let sealed = kw
        .db
        .value("SELECT access_token FROM connections WHERE id = ?", &[&id])
        .await;
    assert!(sealed.is_none(), "token material is erased");
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(404, "not_installed");
    kw.call(
        Method::DELETE,
        &format!("/v1/connections/{id}"),
        Some(&app.key),
        None,
    )
    .await
    .assert_problem(409, "already_revoked");
}

#[tokio::test]
async fn full_cycle_slack_nested_answer_and_ok_false() {
    let (kw, fake, app) = setup(Flavor::Slack).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        c.body["provider_account"],
        json!({"id": "T-acct1", "name": "Team acct1"})
    );
    assert_eq!(c.body["metadata"]["bot_user_id"], "U0BOT");
    assert_eq!(c.body["metadata"]["authed_user_id"], "U123");
    assert_eq!(c.body["scopes"], json!(["channels:read", "chat:write"]));
    let t = kw.token(&app, "u1", "acme").await;
    assert_eq!(t.body["token_type"], "bot");
    kw.clock.advance(Duration::hours(2));
    let t2 = kw.token(&app, "u1", "acme").await;
    assert_eq!(t2.status, 200, "{}", t2.body);
    assert_eq!(fake.refreshes(), 1);
    // Slack reports a dead refresh token as HTTP 200 with ok:false.
    fake.revoke_all_grants();
    kw.clock.advance(Duration::hours(2));
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(409, "needs_reauthorization");
    let d = kw
        .call(
            Method::DELETE,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        d.body["revocation"], "confirmed",
        "auth.revoke answered ok:true"
    );
}

#[tokio::test]
async fn full_cycle_github_form_encoded_non_expiring_delete_grant() {
    let (kw, fake, app) = setup(Flavor::GitHub).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        c.body["scopes"],
        json!(["repo", "read:user"]),
        "comma-separated granted scopes"
    );
    assert_eq!(c.body["provider_account"]["name"], "login-acct1");
    let t = kw.token(&app, "u1", "acme").await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert!(
        t.body["expires_at"].is_null(),
        "GitHub OAuth App tokens do not expire"
    );
    kw.clock.advance(Duration::days(400));
    let t2 = kw.token(&app, "u1", "acme").await;
    assert_eq!(t2.body["access_token"], t.body["access_token"]);
    assert_eq!(fake.refreshes(), 0);
    let d = kw
        .call(
            Method::DELETE,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        d.body["revocation"], "confirmed",
        "DELETE /applications/{{client_id}}/grant with Basic auth"
    );
    assert_eq!(
        fake.revoked(),
        vec![t.body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()]
    );
}

#[tokio::test]
async fn full_cycle_tenant_host_and_instance_url() {
    let (kw, fake, app) = setup(Flavor::Salesforce).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(c.body["metadata"]["instance_url"], fake.url);
    assert!(c.body["provider_account"]["id"]
        .as_str()
        .is_some_and(|s| s.contains("/id/00D/")));
    kw.clock.advance(Duration::hours(3));
    assert_eq!(kw.token(&app, "u1", "acme").await.status, 200);
    assert_eq!(fake.refreshes(), 1);
}

#[tokio::test]
async fn tenant_host_outside_the_provider_hosts_is_refused_before_redirect() {
    let (kw, fake, app) = setup(Flavor::Salesforce).await;
    let r = kw
        .admin(Method::POST, "/v1/integrations", Some(json!({"slug": "evil", "provider": "fake", "client_id": "x", "settings": {"host": "evil.example"}})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let s = kw
        .connect_session(&app, json!({"user_id": "u1", "integrations": ["evil"]}))
        .await;
    let b = browser();
    let url = s.body["url"].as_str().unwrap_or_default().to_string();
    let html = b
        .get(&url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let r = b
        .post(&url)
        .form(&[("csrf", csrf_of(&html)), ("integration", "evil".into())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap_or_default().contains("evil.example"));
    assert_eq!(fake.authorizations(), 0);
}

#[tokio::test]
async fn hubspot_status_field_is_a_dead_grant() {
    let (kw, fake, app) = setup(Flavor::HubSpot).await;
    kw.connect(&app, "u1", "acme").await;
    fake.revoke_all_grants();
    kw.clock.advance(Duration::hours(2));
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(409, "needs_reauthorization");
}

#[tokio::test]
async fn return_url_gets_connection_id_and_status() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let s = kw.connect_session(&app, json!({"user_id": "u1", "return_url": "https://app.example/done", "owner": "ops@example.com", "purpose": "sync"})).await;
    assert_eq!(s.status, 201, "{}", s.body);
    assert!(s.body["token"]
        .as_str()
        .is_some_and(|t| s.body["url"].as_str().unwrap_or_default().ends_with(t)));
    let b = browser();
    let auth = kw
        .start_flow(&b, s.body["url"].as_str().unwrap_or_default(), "acme")
        .await;
    let cb = kw.provider_redirect(&b, &auth).await;
    let done = b.get(&cb).send().await.expect("callback");
    assert_eq!(done.status(), 303);
    let loc = url::Url::parse(&location(&done)).expect("url");
    assert_eq!(loc.host_str(), Some("app.example"));
    let q: std::collections::BTreeMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q.get("status").map(String::as_str), Some("active"));
    let id = q.get("connection_id").cloned().unwrap_or_default();
    let c = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(c.body["owner"], "ops@example.com");
    assert_eq!(c.body["purpose"], "sync");
}

#[tokio::test]
async fn provider_denial_returns_error_and_connects_nothing() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    fake.deny_next();
    let s = kw
        .connect_session(
            &app,
            json!({"user_id": "u1", "return_url": "https://app.example/done"}),
        )
        .await;
    let b = browser();
    let auth = kw
        .start_flow(&b, s.body["url"].as_str().unwrap_or_default(), "acme")
        .await;
    let cb = kw.provider_redirect(&b, &auth).await;
    let done = b.get(&cb).send().await.expect("callback");
    assert_eq!(done.status(), 303);
    assert!(location(&done).contains("error=access_denied"));
    let list = kw
        .call(Method::GET, "/v1/connections", Some(&app.key), None)
        .await;
    assert_eq!(list.body["data"], json!([]));
}

#[tokio::test]
async fn authorize_link_for_apps_with_their_own_ui() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let r = kw
        .call(
            Method::POST,
            "/v1/integrations/acme/authorize",
            Some(&app.key),
            Some(json!({"user_id": "u7"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let link = r.body["url"].as_str().unwrap_or_default().to_string();
    let b = browser();
    let page = b.get(&link).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("App One") && html.contains("u7") && html.contains("Fake Standard"),
        "S9: who connects what, shown first"
    );
    assert_eq!(
        fake.authorizations(),
        0,
        "the provider is not contacted before the user confirms"
    );
    let r = b
        .post(&link)
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    let cb = kw.provider_redirect(&b, &location(&r)).await;
    assert_eq!(b.get(&cb).send().await.expect("cb").status(), 200);
    assert_eq!(kw.token(&app, "u7", "acme").await.status, 200);
}

#[tokio::test]
async fn reconnect_after_dead_grant_keeps_the_connection() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    fake.revoke_all_grants();
    kw.clock.advance(Duration::hours(2));
    let r = kw.token(&app, "u1", "acme").await;
    r.assert_problem(409, "needs_reauthorization");
    assert_eq!(r.body["connection_id"], id);
    let reconnect = r.body["reconnect_url"]
        .as_str()
        .expect("reconnect_url")
        .to_string();
    let b = browser();
    let html = b
        .get(&reconnect)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Needs to be reconnected"), "{html}");
    let auth = kw.start_flow(&b, &reconnect, "acme").await;
    let cb = kw.provider_redirect(&b, &auth).await;
    assert_eq!(b.get(&cb).send().await.expect("cb").status(), 200);
    let t = kw.token(&app, "u1", "acme").await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(
        t.body["connection_id"], id,
        "reconnecting keeps the connection's identity"
    );
}

#[tokio::test]
async fn widened_scopes_show_as_missing_and_need_a_reason() {
    let (kw, _fake, app) = setup_with(Flavor::Standard, &["read", "write"]).await;
    kw.connect(&app, "u1", "acme").await;
    let before = kw.db_fingerprint().await;
    kw.admin(
        Method::PATCH,
        "/v1/integrations/acme",
        Some(json!({"scopes": ["read", "write", "admin"]})),
    )
    .await
    .assert_problem(400, "reason_required");
    assert_eq!(before, kw.db_fingerprint().await);
    let r = kw
        .admin(
            Method::PATCH,
            "/v1/integrations/acme",
            Some(json!({"scopes": ["read", "write", "admin"], "reason": "new admin feature"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = kw.token(&app, "u1", "acme").await;
    assert_eq!(t.body["missing_scopes"], json!(["admin"]));
    let s = kw.connect_session(&app, json!({"user_id": "u1"})).await;
    let html = browser()
        .get(s.body["url"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("new permissions needed: admin"), "{html}");
}

#[tokio::test]
async fn patch_connection_sets_and_clears_fields() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    let r = kw
        .call(
            Method::PATCH,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            Some(json!({"owner": "alice", "purpose": "CRM sync", "label": "main"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.body["owner"].clone(),
            r.body["purpose"].clone(),
            r.body["label"].clone()
        ),
        (json!("alice"), json!("CRM sync"), json!("main"))
    );
    let r = kw
        .call(
            Method::PATCH,
            &format!("/v1/connections/{id}"),
            Some(&app.key),
            Some(json!({"owner": null})),
        )
        .await;
    assert!(r.body["owner"].is_null());
    assert_eq!(r.body["purpose"], "CRM sync", "fields not named are kept");
}

#[tokio::test]
async fn connections_list_filters_and_paginates() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    for u in ["a", "b", "c"] {
        kw.connect(&app, u, "acme").await;
    }
    let p1 = kw
        .call(Method::GET, "/v1/connections?limit=2", Some(&app.key), None)
        .await;
    assert_eq!(p1.body["data"].as_array().map(Vec::len), Some(2));
    let cursor = p1.body["next_cursor"].as_str().expect("cursor").to_string();
    let p2 = kw
        .call(
            Method::GET,
            &format!("/v1/connections?limit=2&cursor={cursor}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(p2.body["data"].as_array().map(Vec::len), Some(1));
    assert!(p2.body["next_cursor"].is_null());
    let only_b = kw
        .call(
            Method::GET,
            "/v1/connections?user_id=b",
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(only_b.body["data"][0]["user_id"], "b");
    let none = kw
        .call(
            Method::GET,
            "/v1/connections?status=needs_reauthorization",
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(none.body["data"], json!([]));
}
