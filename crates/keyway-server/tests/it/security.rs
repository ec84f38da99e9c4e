//! Security invariants S1–S9 that apply to the core (S10 is in bad_input.rs, S6 in
//! isolation.rs).

use crate::setup;
use keyway_testkit::{browser, csrf_of, FakeProvider, Flavor, TestKeyway, TestOptions};
use reqwest::Method;
use serde_json::json;
use time::Duration;

/// S1: a full run with every log line captured at the most verbose level never shows a
/// token, client secret, API key, connect token or the master key.
#[tokio::test]
async fn s1_no_secret_in_logs() {
    keyway_testkit::logs::install();
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let s = kw
        .connect_session(
            &app,
            json!({"user_id": "s1-user", "return_url": "https://app.example/done"}),
        )
        .await;
    let connect_token = s.body["token"].as_str().unwrap_or_default().to_string();
    let b = browser();
    let auth = kw
        .start_flow(&b, s.body["url"].as_str().unwrap_or_default(), "acme")
        .await;
    let cb = kw.provider_redirect(&b, &auth).await;
    let code = url::Url::parse(&cb)
        .expect("cb")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    b.get(&cb).send().await.expect("cb");
    let t = kw.token(&app, "s1-user", "acme").await;
    kw.clock.advance(Duration::hours(2));
    kw.token(&app, "s1-user", "acme").await;
    fake.script([keyway_testkit::Scripted::Status(500)]);
    kw.clock.advance(Duration::hours(2));
    kw.token(&app, "s1-user", "acme").await;
    kw.call(
        Method::DELETE,
        &format!(
            "/v1/connections/{}",
            t.body["connection_id"].as_str().unwrap_or_default()
        ),
        Some(&app.key),
        None,
    )
    .await;
    kw.call(
        Method::GET,
        "/v1/connections",
        Some("kw_app_wrong-key-for-s1-test-000"),
        None,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let logs = keyway_testkit::logs::captured();
    assert!(logs.contains("refresh"), "logs were captured");
    let mut secrets = fake.issued_tokens();
    assert!(secrets.len() >= 4);
    secrets.extend([
        kw.admin_key.clone(),
        app.key.clone(),
        keyway_testkit::fake::CLIENT_SECRET.to_string(),
        connect_token,
        code,
        kw.master_key.to_base64(),
        "kw_app_wrong-key-for-s1-test-000".to_string(),
    ]);
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!logs.contains(&secret), "a secret appeared in the logs");
    }
    // Debug output of the broker and its parts shows no key material either.
    let debug = format!("{:?} {:?}", kw.broker, kw.broker.vault);
    assert!(!debug.contains(&kw.master_key.to_base64()));
}

/// S2: a ciphertext moved to another record does not decrypt there.
#[tokio::test]
async fn s2_swapped_ciphertexts_fail() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let a = kw.connect(&app, "alice", "acme").await;
    let b = kw.connect(&app, "bob", "acme").await;
    let bob_token = kw.token(&app, "bob", "acme").await.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    kw.exec_sql(&format!("UPDATE connections SET access_token = (SELECT access_token FROM connections WHERE id = '{b}') WHERE id = '{a}'")).await;
    // A second server on the same database (empty cache) must refuse rather than hand
    // out bob's token as alice's.
    let mut opts = TestOptions::default().with_provider("fake", &fake);
    opts.data_dir = Some(kw.data_dir.clone());
    opts.master_key = Some(kw.master_key.clone());
    let kw2 = TestKeyway::start(opts).await;
    let r = kw2.token(&app, "alice", "acme").await;
    r.assert_problem(500, "internal");
    assert!(!r.body.to_string().contains(&bob_token));
    assert_eq!(kw2.token(&app, "bob", "acme").await.status, 200);
    let stored = kw
        .db
        .value(
            "SELECT client_secret FROM integrations WHERE slug = 'acme'",
            &[],
        )
        .await
        .unwrap_or_default();
    assert!(
        stored.starts_with("kw1.") && !stored.contains(keyway_testkit::fake::CLIENT_SECRET),
        "client secrets are sealed too"
    );
}

/// S2: the master key can be rotated online: the new key seals, the old one still opens
/// until everything is re-sealed, then the old key can go.
#[tokio::test]
async fn s2_master_key_rotation() {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let kw = TestKeyway::start(TestOptions::default().with_provider("fake", &fake)).await;
    kw.create_integration("acme", "fake", &[], json!({})).await;
    let app = kw.create_app("App", &[]).await;
    kw.connect(&app, "u1", "acme").await;
    let old_key = kw.master_key.clone();
    let new_key = keyway_core::vault::MasterKey::generate();
    let dir = kw.data_dir.clone();
    let clock = kw.clock.clone();
    let (_, tmp) = kw.into_data_dir();

    let mut opts = TestOptions::default().with_provider("fake", &fake);
    opts.data_dir = Some(dir.clone());
    opts.master_key = Some(new_key.clone());
    opts.previous_master_keys = vec![old_key.clone()];
    opts.clock = Some(clock.clone());
    let kw = TestKeyway::start(opts).await;
    assert_eq!(
        kw.token(&app, "u1", "acme").await.status,
        200,
        "old ciphertexts still open"
    );
    let r = kw
        .admin(Method::POST, "/v1/admin/master-key/rotate", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["resealed"].as_u64().unwrap_or(0) >= 3, "{}", r.body);
    assert_eq!(r.body["failed"], 0);
    assert_eq!(r.body["active_key_id"], new_key.id());
    let again = kw
        .admin(Method::POST, "/v1/admin/master-key/rotate", None)
        .await;
    assert_eq!(again.body["resealed"], 0, "idempotent");
    kw.into_data_dir();

    let mut opts = TestOptions::default().with_provider("fake", &fake);
    opts.data_dir = Some(dir);
    opts.master_key = Some(new_key);
    opts.clock = Some(clock);
    let kw = TestKeyway::start(opts).await;
    assert_eq!(
        kw.token(&app, "u1", "acme").await.status,
        200,
        "everything opens with the new key alone"
    );
    kw.clock.advance(Duration::hours(2));
    assert_eq!(
        kw.token(&app, "u1", "acme").await.status,
        200,
        "refresh works (client secret re-sealed)"
    );
    drop(tmp);
}

/// S3: API keys are stored only as hashes.
#[tokio::test]
async fn s3_api_keys_are_hashed() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let rows: Vec<(String, String)> = kw
        .db
        .rows("SELECT hash, prefix FROM api_keys", &[])
        .await
        .into_iter()
        .map(|r| {
            let mut c = r.into_iter().map(Option::unwrap_or_default);
            (c.next().unwrap_or_default(), c.next().unwrap_or_default())
        })
        .collect();
    assert!(rows
        .iter()
        .any(|(h, _)| h == &keyway_core::ids::sha256_hex(&app.key)));
    // Every stored byte: the SQLite files, or every row of every PostgreSQL table.
    let mut blobs = vec![
        std::fs::read(kw.data_dir.join("keyway.db")).unwrap_or_default(),
        std::fs::read(kw.data_dir.join("keyway.db-wal")).unwrap_or_default(),
    ];
    for (_, rows) in kw.db.dump().await {
        blobs.push(rows.join("\n").into_bytes());
    }
    for blob in blobs {
        let text = String::from_utf8_lossy(&blob);
        assert!(!text.contains(&app.key), "the key itself is never stored");
    }
}

/// S4: PKCE S256 is sent, the verifier is stored sealed, state is random and single-use.
#[tokio::test]
async fn s4_pkce_and_state() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    let s = kw.connect_session(&app, json!({"user_id": "u1"})).await;
    let b = browser();
    let auth = kw
        .start_flow(&b, s.body["url"].as_str().unwrap_or_default(), "acme")
        .await;
    let q: std::collections::BTreeMap<String, String> = url::Url::parse(&auth)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 43, "state has at least 256 bits");
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", kw.url));
    let row = kw
        .db
        .rows(
            "SELECT state_hash, pkce_verifier FROM pending_authorizations",
            &[],
        )
        .await;
    let (hash, verifier) = match row.as_slice() {
        [r] => (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
        ),
        _ => panic!("one pending authorization: {row:?}"),
    };
    assert_eq!(
        hash,
        keyway_core::ids::sha256_hex(&q["state"]),
        "only the state's hash is stored"
    );
    assert!(verifier.starts_with("kw1."), "the verifier is sealed");
}

/// S8 and S9: pages carry a CSP without inline script, cannot be framed, set an
/// HttpOnly SameSite cookie, and show who connects what before any provider is contacted.
#[tokio::test]
async fn s8_s9_page_headers_and_who_connects_what() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let s = kw
        .connect_session(
            &app,
            json!({"user_id": "victim-42", "organization_id": "org-9"}),
        )
        .await;
    let r = browser()
        .get(s.body["url"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("page");
    let h = r.headers().clone();
    let csp = h["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("default-src 'none'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let cookie = h["set-cookie"].to_str().unwrap_or_default().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "no Secure flag over plain http");
    let html = r.text().await.expect("html");
    assert!(
        html.contains("App One")
            && html.contains("victim-42")
            && html.contains("org-9")
            && html.contains("Fake Standard")
    );
    assert!(html.contains(&csrf_of(&html)));
    assert_eq!(fake.authorizations(), 0, "nothing reached the provider yet");
}
