//! Agent sessions (issue 4, items 2-4 and 7): the OAuth 2.1 authorization server, the
//! application's identify call, the approval page, the code exchange, session bounds and
//! the session API.

use crate::setup;
use keyway_testkit::{browser, csrf_of, location, App, Flavor, TestKeyway};
use reqwest::Method;
use serde_json::{json, Value};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXkdBjftJeZ4CVP";

fn challenge(v: &str) -> String {
    keyway_core::ids::pkce_challenge(v)
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

async fn with_login(kw: &TestKeyway, app: &App) {
    let r = kw
        .admin(
            Method::PATCH,
            &format!("/v1/applications/{}", app.id),
            Some(json!({"login_url": "https://app.example/login"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn register(kw: &TestKeyway) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/register", kw.url))
        .json(&json!({"client_name": "Test Agent", "redirect_uris": ["http://127.0.0.1/callback"]}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["token_endpoint_auth_method"], "none");
    v["client_id"].as_str().expect("client_id").to_string()
}

/// Authorize → login redirect → identify; returns the approval URL and the request id.
async fn approval_url(kw: &TestKeyway, app: &App, client_id: &str, user: &str) -> (String, String) {
    let b = browser();
    let r = b
        .get(format!("{}/oauth2/authorize", kw.url))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:49152/callback"),
            ("state", "st-1"),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
            ("resource", &format!("{}/mcp/", kw.url)),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 303);
    let login = location(&r);
    assert!(
        login.starts_with("https://app.example/login?keyway_request=ar_"),
        "{login}"
    );
    let id = query_of(&login)["keyway_request"].clone();
    let r = kw
        .call(
            Method::POST,
            &format!("/v1/agent-authorizations/{id}/identify"),
            Some(&app.key),
            Some(json!({"user_id": user})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (
        r.body["approval_url"].as_str().expect("url").to_string(),
        id,
    )
}

async fn approve(b: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let page = b.get(url).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let mut form: Vec<(String, String)> = vec![("csrf".into(), csrf_of(&html))];
    form.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    b.post(url).form(&form).send().await.expect("decide")
}

async fn exchange(kw: &TestKeyway, client_id: &str, code: &str, verifier: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/token", kw.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:49152/callback"),
            ("resource", &format!("{}/mcp", kw.url)),
        ])
        .send()
        .await
        .expect("token");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn metadata_documents_describe_the_server() {
    let (kw, _fake, _app) = setup(Flavor::Standard).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let v: Value = reqwest::get(format!("{}{path}", kw.url))
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(v["issuer"], kw.url.as_str());
        assert_eq!(v["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(v["token_endpoint_auth_methods_supported"], json!(["none"]));
        assert_eq!(v["authorization_response_iss_parameter_supported"], true);
        assert!(v["registration_endpoint"]
            .as_str()
            .is_some_and(|r| r.ends_with("/oauth2/register")));
    }
    let v: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        kw.url
    ))
    .await
    .expect("get")
    .json()
    .await
    .expect("json");
    assert_eq!(v["resource"], format!("{}/mcp", kw.url));
    assert_eq!(v["authorization_servers"], json!([kw.url]));
}

#[tokio::test]
async fn an_approved_session_yields_a_bounded_token_once() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    with_login(&kw, &app).await;
    let client = register(&kw).await;
    let (url, id) = approval_url(&kw, &app, &client, "u1").await;

    // Identify works once, and only for the request's own application.
    let other = kw.create_app("Other", &[]).await;
    kw.call(
        Method::POST,
        &format!("/v1/agent-authorizations/{id}/identify"),
        Some(&other.key),
        Some(json!({"user_id": "u1"})),
    )
    .await
    .assert_problem(404, "not_found");
    kw.call(
        Method::POST,
        &format!("/v1/agent-authorizations/{id}/identify"),
        Some(&app.key),
        Some(json!({"user_id": "u2"})),
    )
    .await
    .assert_problem(409, "already_identified");

    // The approval page says who asks for what, and cannot be framed or opened without
    // the URL's secret.
    let b = browser();
    let page = b.get(&url).send().await.expect("page");
    assert_eq!(
        page.headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let html = page.text().await.expect("html");
    assert!(
        html.contains("Test Agent")
            && html.contains("127.0.0.1")
            && html.contains("acme")
            && html.contains("u1")
    );
    assert!(
        html.contains("Fake Standard (acme)"),
        "integrations are named by their provider"
    );
    let bare = url.split('?').next().expect("path");
    assert_eq!(b.get(bare).send().await.expect("x").status(), 404);

    // Bad decisions change nothing.
    let before = kw.db_fingerprint().await;
    for fields in [
        vec![
            ("decision", "approve"),
            ("integrations", "acme"),
            ("access", "read"),
            ("duration", "999999999"),
        ],
        vec![
            ("decision", "approve"),
            ("integrations", "other"),
            ("access", "read"),
            ("duration", "3600"),
        ],
        vec![
            ("decision", "approve"),
            ("access", "read"),
            ("duration", "3600"),
        ],
        vec![
            ("decision", "approve"),
            ("integrations", "acme"),
            ("access", "admin"),
            ("duration", "3600"),
        ],
    ] {
        let r = approve(&b, &url, &fields).await;
        assert_eq!(r.status(), 400, "{fields:?}");
    }
    let r = reqwest::Client::new()
        .post(&url)
        .form(&[
            ("decision", "approve"),
            ("integrations", "acme"),
            ("access", "read"),
            ("duration", "3600"),
        ])
        .send()
        .await
        .expect("no csrf");
    assert_eq!(r.status(), 403);
    assert_eq!(kw.db_fingerprint().await, before);

    let r = approve(
        &b,
        &url,
        &[
            ("decision", "approve"),
            ("integrations", "acme"),
            ("access", "read"),
            ("duration", "3600"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert!(
        back.starts_with("http://127.0.0.1:49152/callback?"),
        "{back}"
    );
    let q = query_of(&back);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], kw.url);
    let code = q["code"].clone();
    // Deciding again is refused.
    assert_eq!(approve_again(&b, &url).await, 404);

    // The wrong verifier, client or a second use of the code get invalid_grant.
    let (status, body) = exchange(&kw, &client, &code, &"x".repeat(43)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = exchange(&kw, &client, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the code was spent by the failed attempt"
    );

    // A fresh approval, exchanged properly.
    let (url, _) = approval_url(&kw, &app, &client, "u1").await;
    let r = approve(
        &b,
        &url,
        &[
            ("decision", "approve"),
            ("integrations", "acme"),
            ("access", "read"),
            ("duration", "600"),
        ],
    )
    .await;
    let code = query_of(&location(&r))["code"].clone();
    let (status, body) = exchange(&kw, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_string();
    assert!(token.starts_with("kwat_"));
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].as_i64().is_some_and(|e| e <= 600),
        "the token ends with the session"
    );
    assert_eq!(body["scope"], "acme:read");
    let (status, body) = exchange(&kw, &client, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "codes work once"
    );

    // The token maps to the session for Keyway's resource only.
    let resource = format!("{}/mcp", kw.url);
    let s = kw
        .broker
        .agent_session_for_token(&token, &resource)
        .await
        .expect("lookup")
        .expect("session");
    assert_eq!(
        (s.user_id.as_str(), s.integrations.clone()),
        ("u1", vec!["acme".to_string()])
    );
    assert!(kw
        .broker
        .agent_session_for_token(&token, "https://other.example/mcp")
        .await
        .expect("x")
        .is_none());

    // Sessions API: listed, shown, ended at once.
    let list = kw
        .call(
            Method::GET,
            "/v1/agent-sessions?user_id=u1&state=active",
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1), "{}", list.body);
    assert_eq!(list.body[0]["client_name"], "Test Agent");
    assert_eq!(list.body[0]["access"], "read");
    let sid = list.body[0]["id"].as_str().expect("id").to_string();
    assert_eq!(
        kw.call(Method::GET, "/v1/agent-sessions", Some(&other.key), None)
            .await
            .body,
        json!([])
    );
    kw.call(
        Method::GET,
        &format!("/v1/agent-sessions/{sid}"),
        Some(&other.key),
        None,
    )
    .await
    .assert_problem(404, "not_found");
    kw.call(
        Method::GET,
        "/v1/agent-sessions?state=bogus",
        Some(&app.key),
        None,
    )
    .await
    .assert_problem(400, "invalid_request");
    let r = kw
        .call(
            Method::DELETE,
            &format!("/v1/agent-sessions/{sid}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["state"].as_str()),
        (200, Some("revoked"))
    );
    assert!(
        kw.broker
            .agent_session_for_token(&token, &resource)
            .await
            .expect("x")
            .is_none(),
        "revoked at once"
    );
    kw.call(
        Method::DELETE,
        &format!("/v1/agent-sessions/{sid}"),
        Some(&app.key),
        None,
    )
    .await
    .assert_problem(409, "session_ended");
    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    let actions: Vec<&str> = audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "agent_session.approved")
            .count(),
        2
    );
    assert!(actions.contains(&"agent_session.revoked"));
}

async fn approve_again(b: &reqwest::Client, url: &str) -> u16 {
    b.get(url).send().await.expect("page").status().as_u16()
}

#[tokio::test]
async fn bad_requests_are_shown_or_sent_back_by_the_rules() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    with_login(&kw, &app).await;
    let client = register(&kw).await;
    let b = browser();
    let authorize = |extra: Vec<(&'static str, String)>| {
        let mut q: Vec<(&str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", client.clone()),
            ("redirect_uri", "http://127.0.0.1/callback".into()),
            ("state", "s".into()),
            ("code_challenge", challenge(VERIFIER)),
            ("code_challenge_method", "S256".into()),
        ];
        for (k, v) in extra {
            q.retain(|(n, _)| *n != k);
            if !v.is_empty() {
                q.push((k, v));
            }
        }
        b.get(format!("{}/oauth2/authorize", kw.url))
            .query(&q)
            .send()
    };
    // Unknown client or redirect: a page, never a redirect.
    for extra in [
        vec![("client_id", "mcpc_nope".to_string())],
        vec![("redirect_uri", "https://evil.example/cb".to_string())],
        vec![("redirect_uri", "http://127.0.0.1/other".to_string())],
    ] {
        let r = authorize(extra.clone()).await.expect("authorize");
        assert_eq!(r.status(), 400, "{extra:?}");
        assert!(r.headers().get("location").is_none());
    }
    // Known client and redirect: errors go back with state and iss.
    for (extra, error) in [
        (
            vec![("code_challenge_method", "plain".to_string())],
            "invalid_request",
        ),
        (vec![("code_challenge", String::new())], "invalid_request"),
        (
            vec![("response_type", "token".to_string())],
            "unsupported_response_type",
        ),
        (
            vec![("resource", "https://elsewhere.example/mcp".to_string())],
            "invalid_target",
        ),
    ] {
        let r = authorize(extra.clone()).await.expect("authorize");
        assert_eq!(r.status(), 303, "{extra:?}");
        let q = query_of(&location(&r));
        assert_eq!(q.get("error").map(String::as_str), Some(error), "{extra:?}");
        assert_eq!(q.get("state").map(String::as_str), Some("s"));
        assert_eq!(q.get("iss").map(String::as_str), Some(kw.url.as_str()));
    }
    // Registration refuses what it cannot honour.
    for body in [
        json!({"client_name": "x", "redirect_uris": ["http://evil.example/cb"]}),
        json!({"client_name": "x", "redirect_uris": []}),
        json!({"client_name": "x", "redirect_uris": ["https://c.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
        json!({"client_name": "x", "redirect_uris": ["https://c.example/cb"], "grant_types": ["client_credentials"]}),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}/oauth2/register", kw.url))
            .json(&body)
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.expect("json");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("invalid_")),
            "{v}"
        );
    }
    // The token endpoint: only the authorization-code grant, with its parameters.
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/token", kw.url))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "unsupported_grant_type"
    );
    let (status, body) = exchange(&kw, &client, "nope", VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn denying_and_offboarding_end_things() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    with_login(&kw, &app).await;
    let client = register(&kw).await;
    let b = browser();
    let (url, _) = approval_url(&kw, &app, &client, "u1").await;
    let r = approve(&b, &url, &[("decision", "deny")]).await;
    assert_eq!(
        query_of(&location(&r)).get("error").map(String::as_str),
        Some("access_denied")
    );

    let (url, _) = approval_url(&kw, &app, &client, "u1").await;
    let r = approve(
        &b,
        &url,
        &[
            ("decision", "approve"),
            ("integrations", "acme"),
            ("access", "write"),
            ("duration", "3600"),
        ],
    )
    .await;
    let code = query_of(&location(&r))["code"].clone();
    let (_, body) = exchange(&kw, &client, &code, VERIFIER).await;
    assert_eq!(body["scope"], "acme:write");
    let token = body["access_token"].as_str().expect("token").to_string();
    let r = kw
        .admin(Method::POST, "/v1/users/u1/offboard", Some(json!({})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let resource = format!("{}/mcp", kw.url);
    assert!(
        kw.broker
            .agent_session_for_token(&token, &resource)
            .await
            .expect("x")
            .is_none(),
        "offboarding ends agent sessions"
    );
    let list = kw
        .call(
            Method::GET,
            "/v1/agent-sessions?user_id=u1",
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(list.body[0]["state"], "revoked");
}

/// A session's token, read access to `acme`, through the whole approval.
async fn read_token(kw: &TestKeyway, app: &App) -> String {
    let client = register(kw).await;
    let (url, _) = approval_url(kw, app, &client, "u1").await;
    let r = approve(
        &browser(),
        &url,
        &[
            ("decision", "approve"),
            ("integrations", "acme"),
            ("access", "read"),
            ("duration", "3600"),
        ],
    )
    .await;
    let code = query_of(&location(&r))["code"].clone();
    let (_, body) = exchange(kw, &client, &code, VERIFIER).await;
    body["access_token"].as_str().expect("token").to_string()
}

async fn mcp(
    kw: &TestKeyway,
    token: Option<&str>,
    session: Option<&str>,
    msg: Value,
) -> reqwest::Response {
    let mut rb = reqwest::Client::new()
        .post(format!("{}/mcp", kw.url))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&msg);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(s) = session {
        rb = rb.header("mcp-session-id", s);
    }
    rb.send().await.expect("mcp")
}

async fn rpc_body(r: reqwest::Response) -> Value {
    rpc_parse(&r.text().await.expect("body"))
}

/// The JSON-RPC answer in a body: JSON, or the last SSE event (after any notifications).
fn rpc_parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("null");
        serde_json::from_str(data).unwrap_or(Value::Null)
    })
}

#[tokio::test]
async fn mcp_serves_the_approved_tools_and_checks_every_call() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    with_login(&kw, &app).await;

    // No token, or a made-up one: 401 with the metadata to find the authorization server.
    for token in [None, Some("kwat_made_up")] {
        let r = mcp(
            &kw,
            token,
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
        assert_eq!(r.status(), 401);
        let www = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            www.contains(&format!(
                "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                kw.url
            )),
            "{www}"
        );
    }

    let token = read_token(&kw, &app).await;
    for version in ["2025-06-18", "2025-11-25"] {
        let r = reqwest::Client::new()
            .post(format!("{}/mcp", kw.url))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", version)
            .bearer_auth(&token)
            .json(&json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "v", "version": "1"}}
            }))
            .send()
            .await
            .expect("initialize");
        let body = rpc_body(r).await;
        assert_eq!(body["result"]["protocolVersion"], version, "{body}");
    }
    // 2026-07-28 is stateless: no initialize, per-request metadata and an Mcp-Method header.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    for (method, id) in [("server/discover", 10), ("tools/list", 11)] {
        let r = reqwest::Client::new()
            .post(format!("{}/mcp", kw.url))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .bearer_auth(&token)
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"_meta": meta}}))
            .send()
            .await
            .expect("stateless");
        let body = rpc_body(r).await;
        if method == "server/discover" {
            assert!(
                body["result"]["supportedVersions"]
                    .as_array()
                    .is_some_and(|v| v.contains(&json!("2026-07-28"))),
                "{body}"
            );
        } else {
            assert_eq!(
                body["result"]["tools"][0]["name"], "acme__call_api",
                "{body}"
            );
        }
    }
    let init = mcp(&kw, Some(&token), None, json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
    })).await;
    assert_eq!(init.status(), 200);
    let sid = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = rpc_body(init).await;
    assert_eq!(body["result"]["serverInfo"]["name"], "keyway", "{body}");
    mcp(
        &kw,
        Some(&token),
        sid.as_deref(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    let list = rpc_body(
        mcp(
            &kw,
            Some(&token),
            sid.as_deref(),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await,
    )
    .await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["acme__call_api"], "{list}");

    // The session's standalone SSE stream (GET), where rmcp sends log notifications.
    let mut events = reqwest::Client::new()
        .get(format!("{}/mcp", kw.url))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", sid.clone().unwrap_or_default())
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /mcp");
    assert_eq!(events.status(), 200);
    let call_hello = |id: u64| {
        mcp(
            &kw,
            Some(&token),
            sid.as_deref(),
            json!({
                "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "acme__call_api", "arguments": {"method": "GET", "path": "api/hello"}}
            }),
        )
    };
    let call = rpc_body(call_hello(3).await).await;
    let text = call["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let out: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    assert_eq!(out["status"], 200, "{call}");
    assert_eq!(out["body"]["path"], "/api/hello");
    assert_eq!(call["result"]["isError"], false);

    // MCP logging: nothing before the client sets a level (call 3 above); then each call
    // is narrated as log notifications naming the tool, never a token; nothing below the
    // level (call 33).
    let set_level = |id: u64, level: &'static str| {
        mcp(
            &kw,
            Some(&token),
            sid.as_deref(),
            json!({
                "jsonrpc": "2.0", "id": id, "method": "logging/setLevel", "params": {"level": level}
            }),
        )
    };
    let set = rpc_body(set_level(30, "info").await).await;
    assert_eq!(set["result"], json!({}), "{set}");
    assert_eq!(
        rpc_body(call_hello(31).await).await["result"]["isError"],
        false
    );
    rpc_body(set_level(32, "error").await).await;
    rpc_body(call_hello(33).await).await;
    rpc_body(set_level(34, "info").await).await;
    rpc_body(call_hello(35).await).await;
    let mut stream = String::new();
    while stream.matches("acme__call_api succeeded").count() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), events.chunk())
            .await
            .expect("log notifications arrive")
            .expect("stream")
            .expect("stream open");
        stream.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        stream.matches("notifications/message").count(),
        4,
        "{stream}"
    );
    assert_eq!(
        stream.matches("Calling acme__call_api").count(),
        2,
        "{stream}"
    );
    assert!(!stream.contains(&token), "{stream}");
    drop(events);

    // Keyway offers tools only: prompts and resources are "method not found" outside the
    // test-only conformance mode.
    for (id, method) in [(36, "prompts/list"), (37, "resources/list")] {
        let r = rpc_body(
            mcp(
                &kw,
                Some(&token),
                sid.as_deref(),
                json!({
                    "jsonrpc": "2.0", "id": id, "method": method
                }),
            )
            .await,
        )
        .await;
        assert_eq!(r["error"]["code"], -32601, "{method}: {r}");
    }

    // Outside the approval: 403 naming the scope to ask for.
    let r = mcp(&kw, Some(&token), sid.as_deref(), json!({
        "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "acme__call_api", "arguments": {"method": "POST", "path": "api/hello"}}
    })).await;
    assert_eq!(r.status(), 403);
    let www = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        www.contains("insufficient_scope") && www.contains("scope=\"acme:write\""),
        "{www}"
    );
    let r = mcp(
        &kw,
        Some(&token),
        sid.as_deref(),
        json!({
            "jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "other__call_api", "arguments": {"method": "GET", "path": "x"}}
        }),
    )
    .await;
    assert_eq!(r.status(), 403);

    // Every call is on the audit chain as the agent session.
    let sessions = kw
        .call(
            Method::GET,
            "/v1/agent-sessions?user_id=u1",
            Some(&app.key),
            None,
        )
        .await;
    let sid_db = sessions.body[0]["id"].as_str().expect("id").to_string();
    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    assert!(audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["action"] == "tool.called" && e["actor"] == format!("agent:{sid_db}")));

    // The session's timeline has every call, refused ones too.
    let detail = kw
        .call(
            Method::GET,
            &format!("/v1/agent-sessions/{sid_db}"),
            Some(&app.key),
            None,
        )
        .await;
    let timeline = detail.body["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let outcomes: Vec<&str> = timeline
        .iter()
        .filter_map(|c| c["outcome"].as_str())
        .collect();
    // Calls 3, 31, 33 and 35 succeeded, then two were refused.
    assert_eq!(
        outcomes,
        ["ok", "ok", "ok", "ok", "refused", "refused"],
        "{}",
        detail.body
    );
    assert_eq!(timeline[0]["tool"], "call_api");
    assert_eq!(timeline[0]["method"], "GET");
    assert_eq!(timeline[0]["path"], "api/hello");
    assert_eq!(timeline[0]["status"], 200);
    assert!(list_has_no_timeline(&kw, &app).await);

    // Ended: the next call is 401.
    kw.call(
        Method::DELETE,
        &format!("/v1/agent-sessions/{sid_db}"),
        Some(&app.key),
        None,
    )
    .await;
    let r = mcp(
        &kw,
        Some(&token),
        sid.as_deref(),
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.status(), 401);
}

async fn list_has_no_timeline(kw: &TestKeyway, app: &App) -> bool {
    let list = kw
        .call(Method::GET, "/v1/agent-sessions", Some(&app.key), None)
        .await;
    list.body
        .as_array()
        .into_iter()
        .flatten()
        .all(|s| s.get("timeline").is_none())
}

/// Serves client ID metadata documents on loopback: `/good.json` names itself,
/// `/liar.json` claims another client_id.
async fn metadata_host() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let b = base.clone();
    let app = axum::Router::new()
        .route(
            "/good.json",
            axum::routing::get(move || {
                let b = b.clone();
                async move {
                    axum::Json(json!({"client_id": format!("{b}/good.json"), "client_name": "Doc Agent", "redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"}))
                }
            }),
        )
        .route(
            "/liar.json",
            axum::routing::get(|| async { axum::Json(json!({"client_id": "https://someone-else.example/c.json", "redirect_uris": ["http://127.0.0.1/callback"]})) }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

#[tokio::test]
async fn client_id_metadata_documents_stand_in_for_registration() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    with_login(&kw, &app).await;
    let meta: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", kw.url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    let host = metadata_host().await;

    // A document that names another client, or none at all: refused on a page.
    for client in [
        format!("{host}/liar.json"),
        format!("{host}/missing.json"),
        "https://127.0.0.1/".to_string(),
    ] {
        let r = browser()
            .get(format!("{}/oauth2/authorize", kw.url))
            .query(&[
                ("response_type", "code"),
                ("client_id", client.as_str()),
                ("redirect_uri", "http://127.0.0.1/callback"),
                ("code_challenge", &challenge(VERIFIER)),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(r.status(), 400, "{client}");
        assert!(r.headers().get("location").is_none());
    }

    // The document's own URL is the client id, all the way to a token.
    let client = format!("{host}/good.json");
    let (url, _) = approval_url(&kw, &app, &client, "u1").await;
    let b = browser();
    let html = b
        .get(&url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Doc Agent"), "the document's name is shown");
    let r = approve(
        &b,
        &url,
        &[
            ("decision", "approve"),
            ("integrations", "acme"),
            ("access", "read"),
            ("duration", "600"),
        ],
    )
    .await;
    let code = query_of(&location(&r))["code"].clone();
    let (status, body) = exchange(&kw, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
}
