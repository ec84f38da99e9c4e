//! Issue 3: the audit chain, inventory and offboarding.

use crate::setup;
use keyway_testkit::{FakeProvider, Flavor, Scripted, TestKeyway, TestOptions};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use time::Duration;

async fn audit_all(kw: &TestKeyway) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let r = kw
            .admin(
                Method::GET,
                &format!("/v1/audit?after_seq={after}&limit=7"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.extend(r.body["data"].as_array().cloned().unwrap_or_default());
        match r.body["next_after_seq"].as_i64() {
            Some(n) => after = n,
            None => return out,
        }
    }
}

async fn verify(kw: &TestKeyway, body: Option<Value>) -> Value {
    let r = kw.admin(Method::POST, "/v1/audit/verify", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test]
async fn every_security_relevant_action_is_in_the_chain() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    let id = kw.connect(&app, "u1", "acme").await;
    kw.token(&app, "u1", "acme").await;
    kw.clock.advance(Duration::hours(2));
    kw.token(&app, "u1", "acme").await;
    fake.revoke_all_grants();
    kw.clock.advance(Duration::hours(2));
    kw.token(&app, "u1", "acme")
        .await
        .assert_problem(409, "needs_reauthorization");
    kw.connect(&app, "u1", "acme").await;
    let r = kw
        .admin(
            Method::PATCH,
            "/v1/integrations/acme",
            Some(json!({"scopes": ["read", "write", "admin"], "reason": "ticket SEC-42"})),
        )
        .await;
    assert_eq!(r.status, 200);
    kw.call(
        Method::PATCH,
        &format!("/v1/connections/{id}"),
        Some(&app.key),
        Some(json!({"owner": "alice"})),
    )
    .await;
    kw.call(
        Method::DELETE,
        &format!("/v1/connections/{id}"),
        Some(&app.key),
        None,
    )
    .await;

    let events = audit_all(&kw).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect();
    for a in [
        "integration.created",
        "application.created",
        "api_key.created",
        "connection.created",
        "token.issued",
        "connection.refreshed",
        "connection.needs_reauthorization",
        "connection.recovered",
        "integration.scopes_changed",
        "connection.updated",
        "connection.revoked",
    ] {
        assert!(actions.contains(&a), "missing {a} in {actions:?}");
    }
    let issued = events
        .iter()
        .find(|e| e["action"] == "token.issued")
        .expect("token event");
    let app_key_id = kw
        .admin(
            Method::GET,
            &format!("/v1/applications/{}/api-keys", app.id),
            None,
        )
        .await
        .body[0]["id"]
        .clone();
    assert_eq!(
        issued["actor"],
        format!("key:{}", app_key_id.as_str().unwrap_or_default()),
        "which API key asked"
    );
    assert_eq!(
        (
            issued["application_id"].clone(),
            issued["user_id"].clone(),
            issued["integration"].clone()
        ),
        (json!(app.id), json!("u1"), json!("acme"))
    );
    assert_eq!(issued["connection_id"], id);
    assert_eq!(
        issued["details"]["provider_account"], "id-acct1",
        "and for which provider account"
    );
    let scopes = events
        .iter()
        .find(|e| e["action"] == "integration.scopes_changed")
        .expect("scope change");
    assert_eq!(scopes["details"]["reason"], "ticket SEC-42");
    assert_eq!(
        scopes["details"]["scopes_after"],
        json!(["read", "write", "admin"])
    );
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["seq"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    let text = serde_json::to_string(&events).unwrap_or_default();
    for secret in fake.issued_tokens().iter().chain([
        &app.key,
        &kw.admin_key,
        &keyway_testkit::fake::CLIENT_SECRET.to_string(),
    ]) {
        assert!(
            !text.contains(secret.as_str()),
            "audit details never hold secrets"
        );
    }
    let v = verify(&kw, None).await;
    assert_eq!(
        (v["valid"].clone(), v["checked"].as_u64()),
        (json!(true), Some(events.len() as u64))
    );
}

#[tokio::test]
async fn tampering_is_detected_edit_delete_reorder_truncate() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    for _ in 0..5 {
        kw.token(&app, "u1", "acme").await;
    }
    let clean = verify(&kw, None).await;
    assert_eq!(clean["valid"], true);
    let head_seq = clean["head_seq"].as_i64().expect("head");
    let head_hash = clean["head_hash"].clone();
    kw.exec_sql("CREATE TABLE audit_backup AS SELECT * FROM audit_events")
        .await;
    let restore = "DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM audit_backup";

    kw.exec_sql("UPDATE audit_events SET user_id = 'mallory' WHERE seq = 5")
        .await;
    let v = verify(&kw, None).await;
    assert_eq!(
        (v["valid"].clone(), v["first_bad_seq"].clone()),
        (json!(false), json!(5)),
        "edited row"
    );
    kw.exec_sql(restore).await;

    kw.exec_sql(
        "UPDATE audit_events SET details = '{\"provider_account\":\"other\"}' WHERE seq = 6",
    )
    .await;
    assert_eq!(
        verify(&kw, None).await["first_bad_seq"],
        6,
        "edited details"
    );
    kw.exec_sql(restore).await;

    kw.exec_sql("DELETE FROM audit_events WHERE seq = 4").await;
    assert_eq!(
        verify(&kw, None).await["first_bad_seq"],
        4,
        "deleted row: the gap is named"
    );
    kw.exec_sql(restore).await;

    kw.exec_sql("UPDATE audit_events SET seq = -seq WHERE seq IN (3, 7); UPDATE audit_events SET seq = 7 WHERE seq = -3; UPDATE audit_events SET seq = 3 WHERE seq = -7").await;
    assert_eq!(
        verify(&kw, None).await["first_bad_seq"],
        3,
        "reordered rows"
    );
    kw.exec_sql(restore).await;
    assert_eq!(verify(&kw, None).await["valid"], true, "restored");

    kw.exec_sql(&format!("DELETE FROM audit_events WHERE seq = {head_seq}"))
        .await;
    assert_eq!(
        verify(&kw, None).await["valid"],
        true,
        "a cut tail looks valid on its own..."
    );
    let anchored = verify(
        &kw,
        Some(json!({"anchor_seq": head_seq, "anchor_hash": head_hash})),
    )
    .await;
    assert_eq!(
        (anchored["valid"].clone(), anchored["first_bad_seq"].clone()),
        (json!(false), json!(head_seq)),
        "...but not against an anchor"
    );
}

#[tokio::test]
async fn concurrent_token_calls_are_all_audited_through_group_commit() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    let kw = Arc::new(kw);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (kw, app) = (kw.clone(), app.clone());
        tasks.push(tokio::spawn(async move {
            kw.token(&app, "u1", "acme").await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    let issued = audit_all(&kw)
        .await
        .iter()
        .filter(|e| e["action"] == "token.issued")
        .count();
    assert_eq!(issued, 200, "one event per token handed out");
    assert_eq!(verify(&kw, None).await["valid"], true);
}

#[tokio::test]
async fn no_token_without_its_audit_event() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    kw.token(&app, "u1", "acme").await;
    // The audit table refuses writes: the token must not be handed out.
    if kw.db.is_postgres() {
        kw.exec_sql("CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END $$ LANGUAGE plpgsql; CREATE TRIGGER no_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION no_audit()").await;
    } else {
        kw.exec_sql("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END").await;
    }
    let r = kw.token(&app, "u1", "acme").await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.get("access_token").is_none());
}

#[tokio::test]
async fn inventory_json_csv_filters_and_stale_flag() {
    let (kw, _fake, app) = setup_two_integrations().await;
    let other = kw.create_app("Other app", &[]).await;
    let a = kw.connect(&app, "alice", "acme").await;
    kw.connect(&app, "bob", "acme").await;
    kw.connect(&other, "carol", "gh").await;
    kw.call(
        Method::PATCH,
        &format!("/v1/connections/{a}"),
        Some(&app.key),
        Some(json!({"owner": "sec@example.com", "purpose": "CRM sync"})),
    )
    .await;
    kw.token(&app, "alice", "acme").await;

    let all = kw.admin(Method::GET, "/v1/inventory", None).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let rows = all.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3);
    let alice = rows
        .iter()
        .find(|r| r["user_id"] == "alice")
        .expect("alice");
    assert_eq!(alice["application_name"], "App One");
    assert_eq!(alice["owner"], "sec@example.com");
    assert_eq!(alice["provider_account_name"], "Account acct1");
    assert_eq!(alice["granted_scopes"], json!(["read", "write"]));
    assert_eq!(alice["stale"], false);
    assert!(alice["last_used_at"].is_string());

    // Only the application's own connections for an application key.
    let mine = kw
        .call(Method::GET, "/v1/inventory", Some(&app.key), None)
        .await;
    assert_eq!(mine.body["data"].as_array().map(Vec::len), Some(2));
    let no_owner = kw
        .admin(Method::GET, "/v1/inventory?no_owner=true", None)
        .await;
    assert_eq!(no_owner.body["data"].as_array().map(Vec::len), Some(2));
    let gh = kw
        .admin(Method::GET, "/v1/inventory?integration=gh", None)
        .await;
    assert_eq!(gh.body["data"][0]["user_id"], "carol");
    let by_app = kw
        .admin(
            Method::GET,
            &format!("/v1/inventory?application_id={}", other.id),
            None,
        )
        .await;
    assert_eq!(by_app.body["data"].as_array().map(Vec::len), Some(1));
    let page = kw.admin(Method::GET, "/v1/inventory?limit=2", None).await;
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let page2 = kw
        .admin(
            Method::GET,
            &format!("/v1/inventory?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(page2.body["data"].as_array().map(Vec::len), Some(1));

    // Scope widening shows as missing; 91 days later, unused connections are stale.
    kw.admin(
        Method::PATCH,
        "/v1/integrations/acme",
        Some(json!({"scopes": ["read", "write", "admin"], "reason": "new feature"})),
    )
    .await;
    kw.clock.advance(Duration::days(91));
    kw.token(&app, "alice", "acme").await;
    let stale = kw
        .admin(Method::GET, "/v1/inventory?stale=true", None)
        .await;
    let mut users: Vec<&str> = stale.body["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["user_id"].as_str()).collect())
        .unwrap_or_default();
    users.sort();
    assert_eq!(users, ["bob", "carol"]);
    assert!(
        !users.contains(&"alice"),
        "alice's connection was just used"
    );

    // CSV: every row, parsed back, agrees with JSON.
    let r = kw
        .http
        .get(format!("{}/v1/inventory?format=csv", kw.url))
        .bearer_auth(&kw.admin_key)
        .send()
        .await
        .expect("csv");
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.expect("text");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let recs: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(recs.len(), 3);
    let col = |name: &str| headers.iter().position(|h| h == name).expect("column");
    let alice_row = recs
        .iter()
        .find(|r| &r[col("user_id")] == "alice")
        .expect("alice row");
    assert_eq!(&alice_row[col("purpose")], "CRM sync");
    assert_eq!(&alice_row[col("missing_scopes")], "admin");
    assert_eq!(&alice_row[col("stale")], "false");
    assert_eq!(&alice_row[col("application_name")], "App One");
}

async fn setup_two_integrations() -> (
    TestKeyway,
    (FakeProvider, FakeProvider),
    keyway_testkit::App,
) {
    let std = FakeProvider::start(Flavor::Standard).await;
    let gh = FakeProvider::start(Flavor::GitHub).await;
    let kw = TestKeyway::start(
        TestOptions::default()
            .with_provider("fake", &std)
            .with_provider("fakegh", &gh),
    )
    .await;
    kw.create_integration("acme", "fake", &["read", "write"], json!({}))
        .await;
    kw.create_integration("gh", "fakegh", &[], json!({})).await;
    let app = kw.create_app("App One", &[]).await;
    (kw, (std, gh), app)
}

#[tokio::test]
async fn offboarding_revokes_everything_across_applications() {
    let (kw, (std, gh), app) = setup_two_integrations().await;
    let other = kw.create_app("Other app", &[]).await;
    kw.connect(&app, "leaver", "acme").await;
    kw.connect(&app, "leaver", "gh").await;
    kw.connect(&other, "leaver", "acme").await;
    let stayer = kw.connect(&app, "stayer", "acme").await;
    let before_token = kw.token(&app, "leaver", "acme").await.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    kw.call(
        Method::POST,
        "/v1/users/leaver/offboard",
        Some(&app.key),
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    let r = kw
        .admin(Method::POST, "/v1/users/leaver/offboard", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let items = r.body["connections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 3);
    assert!(
        items.iter().all(|i| i["revocation"] == "confirmed"),
        "{items:?}"
    );
    assert_eq!(
        std.revoked().len(),
        2,
        "the provider saw both acme grants revoked"
    );
    assert_eq!(gh.revoked().len(), 1);
    assert!(!std.access_token_live(&before_token));
    kw.token(&app, "leaver", "acme")
        .await
        .assert_problem(404, "not_installed");
    kw.token(&other, "leaver", "acme")
        .await
        .assert_problem(404, "not_installed");
    let left = kw.db.count("SELECT COUNT(*) FROM connections WHERE user_id = 'leaver' AND (access_token IS NOT NULL OR refresh_token IS NOT NULL)", &[]).await;
    assert_eq!(left, 0, "token material is shredded");
    let tombstones = kw
        .db
        .count(
            "SELECT COUNT(*) FROM connections WHERE user_id = 'leaver' AND status = 'revoked'",
            &[],
        )
        .await;
    assert_eq!(tombstones, 3, "records stay for the audit trail");
    let s = kw
        .call(
            Method::GET,
            &format!("/v1/connections/{stayer}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(s.body["status"], "active", "other users are untouched");
    let events = audit_all(&kw).await;
    let off = events
        .iter()
        .find(|e| e["action"] == "user.offboarded")
        .expect("offboard event");
    assert_eq!(off["details"]["connections"], 3);
    assert_eq!(
        events
            .iter()
            .filter(
                |e| e["action"] == "connection.revoked" && e["details"]["reason"] == "offboarding"
            )
            .count(),
        3
    );
    let again = kw
        .admin(Method::POST, "/v1/users/leaver/offboard", None)
        .await;
    assert_eq!(again.body["connections"], json!([]), "idempotent");
}

#[tokio::test]
async fn failed_revocations_are_retried_then_confirmed_or_given_up() {
    let (kw, fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    kw.connect(&app, "u2", "acme").await;
    fake.set_fail_revocations(true);
    let r = kw.admin(Method::POST, "/v1/users/u1/offboard", None).await;
    assert_eq!(r.body["connections"][0]["revocation"], "failed");
    let id2 = kw
        .call(
            Method::GET,
            "/v1/connections?user_id=u2",
            Some(&app.key),
            None,
        )
        .await
        .body["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let d = kw
        .call(
            Method::DELETE,
            &format!("/v1/connections/{id2}"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(
        d.body["revocation"], "failed",
        "disconnect also queues its failed revocation"
    );
    let queued = kw
        .db
        .count("SELECT COUNT(*) FROM revocation_retries", &[])
        .await;
    assert_eq!(queued, 2);
    let sealed = kw
        .db
        .value("SELECT access_token FROM revocation_retries LIMIT 1", &[])
        .await
        .unwrap_or_default();
    assert!(sealed.starts_with("kw1."), "queued tokens stay sealed");

    // Not due yet: nothing is tried.
    assert_eq!(kw.broker.retry_revocations().await.expect("retry"), 0);
    kw.clock.advance(Duration::minutes(3));
    fake.set_fail_revocations(false);
    let tried_first = kw.broker.retry_revocations().await.expect("retry");
    assert_eq!(tried_first, 2);
    let queued = kw
        .db
        .count("SELECT COUNT(*) FROM revocation_retries", &[])
        .await;
    assert_eq!(queued, 0, "confirmed retries leave no token copy behind");
    let events = audit_all(&kw).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["action"] == "connection.revocation_confirmed")
            .count(),
        2
    );

    // A provider that never recovers: given up after the last attempt, with an event.
    kw.connect(&app, "u3", "acme").await;
    fake.set_fail_revocations(true);
    kw.admin(Method::POST, "/v1/users/u3/offboard", None).await;
    for _ in 0..12 {
        kw.clock.advance(Duration::hours(7));
        kw.broker.retry_revocations().await.expect("retry");
    }
    let queued = kw
        .db
        .count("SELECT COUNT(*) FROM revocation_retries", &[])
        .await;
    assert_eq!(queued, 0);
    let abandoned = audit_all(&kw)
        .await
        .into_iter()
        .filter(|e| e["action"] == "connection.revocation_abandoned")
        .collect::<Vec<_>>();
    assert_eq!(abandoned.len(), 1);
    assert_eq!(
        abandoned[0]["details"]["attempts"],
        keyway_core::connections::MAX_REVOCATION_ATTEMPTS
    );
    assert_eq!(verify(&kw, None).await["valid"], true);
    let _ = Scripted::InvalidGrant;
}

#[tokio::test]
async fn governance_endpoints_reject_bad_input_without_writing() {
    let (kw, _fake, app) = setup(Flavor::Standard).await;
    kw.connect(&app, "u1", "acme").await;
    let before = kw.db_fingerprint().await;
    let k = Some(app.key.as_str());
    kw.call(Method::GET, "/v1/inventory?status=bogus", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/inventory?format=xml", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/inventory?limit=0", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/inventory?stale=maybe", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/inventory?cursor=%25%25", k, None)
        .await
        .assert_problem(400, "invalid_cursor");
    kw.call(Method::GET, "/v1/inventory?colour=red", k, None)
        .await
        .assert_problem(400, "invalid_request");
    kw.call(Method::GET, "/v1/audit", k, None)
        .await
        .assert_problem(403, "forbidden");
    kw.call(Method::POST, "/v1/audit/verify", k, None)
        .await
        .assert_problem(403, "forbidden");
    kw.admin(Method::GET, "/v1/audit?limit=0", None)
        .await
        .assert_problem(400, "invalid_request");
    kw.admin(Method::GET, "/v1/audit?after_seq=-1", None)
        .await
        .assert_problem(400, "invalid_request");
    kw.admin(Method::GET, "/v1/audit?after_seq=x", None)
        .await
        .assert_problem(400, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/audit/verify",
        Some(json!({"anchor_seq": 3})),
    )
    .await
    .assert_problem(400, "invalid_request");
    kw.admin(
        Method::POST,
        "/v1/audit/verify",
        Some(json!({"anchor_seq": "x", "anchor_hash": "y"})),
    )
    .await
    .assert_problem(422, "invalid_request");
    kw.admin(
        Method::POST,
        &format!("/v1/users/{}/offboard", "x".repeat(300)),
        None,
    )
    .await
    .assert_problem(400, "invalid_request");
    assert_eq!(before, kw.db_fingerprint().await, "nothing was written");
    let _ = (Scripted::InvalidGrant, FakeProvider::start);
}
