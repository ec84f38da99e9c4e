//! The store contract, and the refresh rules that depend on it, tested against SQLite, and
//! against PostgreSQL too when `KW_TEST_PG_URL` names a server (`scripts/test` runs them
//! once more with a throwaway cluster).

use crate::{PgSettings, PgStore, SqliteStore};
use async_trait::async_trait;
use keyway_core::catalog::Catalog;
use keyway_core::clock::ManualClock;
use keyway_core::model::*;
use keyway_core::outbound::{HttpClient, OutboundError, OutboundRequest, OutboundResponse};
use keyway_core::store::{RefreshedTokens, Store};
use keyway_core::tokens::TokenRequest;
use keyway_core::vault::{MasterKey, Vault};
use keyway_core::{Broker, BrokerSettings, CoreError, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

pub(crate) fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-11-22 12:00:00 UTC)
}

pub(crate) fn conn(id: &str, user: &str) -> Connection {
    Connection {
        id: id.into(),
        application_id: "app_1".into(),
        user_id: user.into(),
        organization_id: None,
        integration: "acme".into(),
        provider: "acme".into(),
        status: ConnectionStatus::Active,
        scopes: vec!["read".into()],
        account_id: None,
        account_name: None,
        metadata: BTreeMap::new(),
        owner: None,
        purpose: None,
        label: None,
        tokens: Some(SealedTokens {
            access_token: "a".into(),
            refresh_token: Some("r".into()),
            token_type: "bearer".into(),
            expires_at: Some(t0()),
        }),
        token_version: 1,
        created_at: t0(),
        updated_at: t0(),
        last_used_at: None,
        last_refreshed_at: None,
        last_validated_at: None,
        revoked_at: None,
        revocation: None,
        shared: false,
    }
}

pub(crate) fn app_1() -> Application {
    Application {
        id: "app_1".into(),
        name: "A".into(),
        return_urls: vec![],
        allowed_origins: vec![],
        allowed_integrations: None,
        agent_session_max_secs: 3600,
        agent_session_default_secs: 600,
        login_url: None,
        branding: Default::default(),
        created_at: t0(),
    }
}

#[tokio::test]
async fn applications_are_updated_with_their_branding() {
    let s = store_with_app().await;
    let mut a = app_1();
    a.name = "Renamed".into();
    a.branding.accent_color = Some("#112233".into());
    a.branding.logo_url = Some("https://cdn.example/logo.svg".into());
    assert!(s.update_application(&a, &[]).await.expect("update"));
    let back = s
        .get_application("app_1")
        .await
        .expect("get")
        .expect("some");
    assert_eq!(back.name, "Renamed");
    assert_eq!(back.branding, a.branding);
    a.id = "app_nope".into();
    assert!(!s.update_application(&a, &[]).await.expect("no row"));
}

/// A fresh PostgreSQL database on the `KW_TEST_PG_URL` server.
async fn fresh_postgres(server: &str) -> PgStore {
    let url = fresh_postgres_url(server).await;
    let settings = PgSettings {
        max_connections: 4,
        ..Default::default()
    };
    PgStore::connect(&url, &settings).await.expect("store")
}

/// Creates an empty database on the server and returns its URL.
pub(crate) async fn fresh_postgres_url(server: &str) -> String {
    let name = format!(
        "kws_{}",
        keyway_core::ids::random_token(12)
            .to_lowercase()
            .replace(['-', '_'], "")
    );
    let mut admin: sqlx::PgConnection = sqlx::Connection::connect(server).await.expect("server");
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create database");
    match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("KW_TEST_PG_URL ends with a database name"),
    }
}

/// An empty store: SQLite in memory, or PostgreSQL when `KW_TEST_PG_URL` is set.
async fn fresh_store() -> Arc<dyn Store> {
    match std::env::var("KW_TEST_PG_URL") {
        Ok(server) => Arc::new(fresh_postgres(&server).await),
        Err(_) => Arc::new(SqliteStore::in_memory().await.expect("store")),
    }
}

async fn store_with_app() -> Arc<dyn Store> {
    let s = fresh_store().await;
    s.insert_application(&app_1(), &[]).await.expect("app");
    s
}

pub(crate) fn refreshed(access: &str) -> RefreshedTokens {
    RefreshedTokens {
        tokens: SealedTokens {
            access_token: access.into(),
            refresh_token: Some(format!("r-{access}")),
            token_type: "bearer".into(),
            expires_at: Some(t0() + Duration::hours(1)),
        },
        scopes: vec!["read".into()],
        refreshed_at: t0(),
    }
}

#[tokio::test]
async fn a_lost_lease_cannot_overwrite_newer_tokens() {
    let s = store_with_app().await;
    s.save_grant(&conn("c1", "u"), &[]).await.expect("save");
    let f1 = s
        .acquire_refresh_lease("c1", "p1", t0(), t0() + Duration::seconds(30))
        .await
        .expect("q")
        .expect("lease");
    assert_eq!(
        s.acquire_refresh_lease(
            "c1",
            "p2",
            t0() + Duration::seconds(10),
            t0() + Duration::seconds(40)
        )
        .await
        .expect("q"),
        None,
        "held"
    );
    // p1 stalls past its lease; p2 takes over and writes.
    let later = t0() + Duration::seconds(31);
    let f2 = s
        .acquire_refresh_lease("c1", "p2", later, later + Duration::seconds(30))
        .await
        .expect("q")
        .expect("lease");
    assert!(f2 > f1);
    assert!(s
        .write_refreshed_tokens("c1", f2, &refreshed("new"), &[])
        .await
        .expect("w"));
    assert!(
        !s.write_refreshed_tokens("c1", f1, &refreshed("stale"), &[])
            .await
            .expect("w"),
        "fenced out"
    );
    let c = s.get_connection("c1").await.expect("q").expect("row");
    assert_eq!(c.tokens.expect("tokens").access_token, "new");
    assert_eq!(c.token_version, 2);
    assert!(c.last_refreshed_at.is_some());
}

#[tokio::test]
async fn dead_grant_marking_respects_the_token_version() {
    let s = store_with_app().await;
    s.save_grant(&conn("c1", "u"), &[]).await.expect("save");
    assert!(
        !s.mark_needs_reauthorization("c1", 0, t0(), &[])
            .await
            .expect("q"),
        "version moved on: a race, not dead"
    );
    assert!(s
        .mark_needs_reauthorization("c1", 1, t0(), &[])
        .await
        .expect("q"));
    assert_eq!(
        s.get_connection("c1")
            .await
            .expect("q")
            .expect("row")
            .status,
        ConnectionStatus::NeedsReauthorization
    );
    assert_eq!(
        s.acquire_refresh_lease("c1", "p", t0(), t0() + Duration::seconds(5))
            .await
            .expect("q"),
        None,
        "dead connections are not refreshed"
    );
}

#[tokio::test]
async fn one_live_connection_per_key_and_tombstones_stay() {
    let s = store_with_app().await;
    s.save_grant(&conn("c1", "u"), &[]).await.expect("save");
    assert!(matches!(
        s.save_grant(&conn("c2", "u"), &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s
        .revoke_connection("c1", RevocationOutcome::Confirmed, t0(), None, &[])
        .await
        .expect("q"));
    assert!(!s
        .revoke_connection("c1", RevocationOutcome::Confirmed, t0(), None, &[])
        .await
        .expect("q"));
    let tomb = s.get_connection("c1").await.expect("q").expect("row");
    assert_eq!(
        (tomb.status, tomb.tokens.is_none(), tomb.revocation),
        (
            ConnectionStatus::Revoked,
            true,
            Some(RevocationOutcome::Confirmed)
        )
    );
    s.save_grant(&conn("c2", "u"), &[])
        .await
        .expect("a new connection beside the tombstone");
    let key = ConnectionKey {
        application_id: "app_1".into(),
        user_id: "u".into(),
        organization_id: None,
        integration: "acme".into(),
        selector: None,
    };
    assert_eq!(
        s.find_connections(&key)
            .await
            .expect("q")
            .first()
            .map(|c| c.id.clone()),
        Some("c2".into())
    );
}

#[tokio::test]
async fn pending_authorizations_are_single_use_and_purged() {
    let s = store_with_app().await;
    let p = PendingAuthorization {
        state_hash: "h".into(),
        application_id: "app_1".into(),
        user_id: "u".into(),
        organization_id: None,
        integration: "acme".into(),
        connect_session_id: None,
        browser_hash: "b".into(),
        pkce_verifier_sealed: None,
        redirect_uri: "https://x/cb".into(),
        return_url: None,
        owner: None,
        purpose: None,
        expires_at: t0(),
        shared: false,
    };
    s.insert_pending_authorization(&p).await.expect("insert");
    assert_eq!(
        s.take_pending_authorization("h").await.expect("q"),
        Some(p.clone())
    );
    assert_eq!(s.take_pending_authorization("h").await.expect("q"), None);
    s.insert_pending_authorization(&p).await.expect("insert");
    assert_eq!(
        s.purge_expired(t0() + Duration::seconds(1))
            .await
            .expect("purge"),
        1
    );
}

#[tokio::test]
async fn sealed_values_swap_only_if_unchanged() {
    let s = store_with_app().await;
    s.save_grant(&conn("c1", "u"), &[]).await.expect("save");
    let vals = s.list_sealed_values().await.expect("list");
    let access = vals
        .iter()
        .find(|v| v.field == "access_token")
        .expect("access")
        .clone();
    assert!(s.replace_sealed_value(&access, "new").await.expect("swap"));
    assert!(
        !s.replace_sealed_value(&access, "newer")
            .await
            .expect("swap"),
        "compare-and-swap"
    );
}

/// Scripted provider: on the refresh call it first simulates the user reconnecting (a
/// new grant written meanwhile), then answers `invalid_grant` for the old token.
struct RaceProvider {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    calls: Mutex<u32>,
}

#[async_trait]
impl HttpClient for RaceProvider {
    async fn send(&self, _req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        *self.calls.lock().expect("lock") += 1;
        let mut c = self
            .store
            .get_connection("c1")
            .await
            .map_err(|e| OutboundError::Other(e.to_string()))?
            .expect("row");
        c.tokens = Some(SealedTokens {
            access_token: self.vault.seal(
                keyway_core::vault::FieldRef::new("connections", "c1", "access_token"),
                "reconnected-token",
            ),
            refresh_token: None,
            token_type: "bearer".into(),
            expires_at: Some(t0() + Duration::hours(5)),
        });
        self.store
            .save_grant(&c, &[])
            .await
            .map_err(|e| OutboundError::Other(e.to_string()))?;
        Ok(OutboundResponse {
            status: 400,
            headers: vec![],
            body: br#"{"error":"invalid_grant"}"#.to_vec(),
        })
    }
}

#[tokio::test]
async fn r2_invalid_grant_after_a_concurrent_write_is_a_race_not_a_dead_grant() {
    let store = store_with_app().await;
    let vault = Arc::new(Vault::new(&MasterKey::generate(), &[]));
    let providers: BTreeMap<String, toml::Value> = [(
        "acme".to_string(),
        toml::from_str("name='Acme'\napi_base_url='https://api.acme.test'\n[oauth2]\nauthorize_url='https://acme.test/a'\ntoken_url='https://acme.test/t'\n").expect("toml"),
    )]
    .into();
    let catalog = Catalog::load("https://kw.test", &providers, false).expect("catalog");
    let clock = Arc::new(ManualClock::new(t0() + Duration::hours(2)));
    let http = Arc::new(RaceProvider {
        store: store.clone(),
        vault: vault.clone(),
        calls: Mutex::new(0),
    });
    let mut settings = BrokerSettings::new("https://kw.test");
    settings.retry_base_delay = std::time::Duration::from_millis(1);
    let broker = Broker::new(
        store.clone(),
        vault.clone(),
        Arc::new(catalog),
        http.clone(),
        clock,
        settings,
    );
    store
        .insert_integration(
            &Integration {
                slug: "acme".into(),
                provider: "acme".into(),
                client_id: "c".into(),
                client_secret_sealed: None,
                scopes: vec![],
                settings: BTreeMap::new(),
                created_at: t0(),
                updated_at: t0(),
            },
            &[],
        )
        .await
        .expect("integration");
    let mut c = conn("c1", "u");
    let seal = |f: &'static str, v: &str| {
        vault.seal(keyway_core::vault::FieldRef::new("connections", "c1", f), v)
    };
    c.tokens = Some(SealedTokens {
        access_token: seal("access_token", "old"),
        refresh_token: Some(seal("refresh_token", "old-rt")),
        token_type: "bearer".into(),
        expires_at: Some(t0()),
    });
    store.save_grant(&c, &[]).await.expect("save");
    let req = TokenRequest {
        application_id: "app_1".into(),
        integration: "acme".into(),
        user_id: "u".into(),
        organization_id: None,
        actor: "key:test".into(),
        connection_id: None,
        label: None,
    };
    let t = broker
        .issue_token(&req)
        .await
        .expect("the reconnected token is handed out");
    assert_eq!(t.access_token.expose(), "reconnected-token");
    assert_eq!(
        store
            .get_connection("c1")
            .await
            .expect("q")
            .expect("row")
            .status,
        ConnectionStatus::Active
    );
    assert_eq!(*http.calls.lock().expect("lock"), 1);

    // Without a concurrent write the same answer is a dead grant.
    let c = store.get_connection("c1").await.expect("q").expect("row");
    let mut dead = c.clone();
    dead.tokens = Some(SealedTokens {
        access_token: seal("access_token", "old2"),
        refresh_token: Some(seal("refresh_token", "old-rt2")),
        token_type: "bearer".into(),
        expires_at: Some(t0()),
    });
    store.save_grant(&dead, &[]).await.expect("save");
    struct Dead;
    #[async_trait]
    impl HttpClient for Dead {
        async fn send(&self, _r: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
            Ok(OutboundResponse {
                status: 400,
                headers: vec![],
                body: br#"{"error":"invalid_grant"}"#.to_vec(),
            })
        }
    }
    let providers2 = Catalog::load("https://kw.test", &providers, false).expect("catalog");
    let broker2 = Broker::new(
        store.clone(),
        vault,
        Arc::new(providers2),
        Arc::new(Dead),
        Arc::new(ManualClock::new(t0() + Duration::hours(2))),
        BrokerSettings::new("https://kw.test"),
    );
    assert!(matches!(
        broker2.issue_token(&req).await,
        Err(CoreError::NeedsReauthorization { .. })
    ));
    assert_eq!(
        store
            .get_connection("c1")
            .await
            .expect("q")
            .expect("row")
            .status,
        ConnectionStatus::NeedsReauthorization
    );
}

#[tokio::test]
async fn audit_events_are_written_only_with_their_change() {
    use keyway_core::audit::{AuditEvent, Verifier};
    let s = store_with_app().await;
    let ev = |a: &str| AuditEvent::new(t0(), a, "key:k").details(serde_json::json!({"x": 1}));
    s.save_grant(&conn("c1", "u"), &[ev("connection.created")])
        .await
        .expect("save");
    let f = s
        .acquire_refresh_lease("c1", "p", t0(), t0() + Duration::seconds(30))
        .await
        .expect("q")
        .expect("lease");
    assert!(
        !s.write_refreshed_tokens("c1", f + 1, &refreshed("x"), &[ev("connection.refreshed")])
            .await
            .expect("w"),
        "fenced out"
    );
    assert!(!s
        .mark_needs_reauthorization("c1", 99, t0(), &[ev("connection.needs_reauthorization")])
        .await
        .expect("q"));
    assert!(s
        .write_refreshed_tokens("c1", f, &refreshed("y"), &[ev("connection.refreshed")])
        .await
        .expect("w"));
    s.append_audit(&[ev("token.issued"), ev("token.issued")])
        .await
        .expect("batch");
    assert!(matches!(
        s.save_grant(&conn("c2", "u"), &[ev("connection.created")])
            .await,
        Err(StoreError::Conflict(_))
    ));
    let records = s.list_audit(0, 100).await.expect("list");
    let actions: Vec<&str> = records.iter().map(|r| r.event.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "connection.created",
            "connection.refreshed",
            "token.issued",
            "token.issued"
        ],
        "no event without its change"
    );
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let mut v = Verifier::new(None);
    for r in &records {
        assert!(v.feed(r));
    }
    assert!(v.finish().valid);
    assert_eq!(
        s.list_audit(2, 100)
            .await
            .expect("page")
            .first()
            .map(|r| r.seq),
        Some(3)
    );
}

#[tokio::test]
async fn group_commit_fast_path_survives_other_writers() {
    use keyway_core::audit::{AuditEvent, Verifier};
    let dir = tempfile::tempdir().expect("tempdir");
    let a = SqliteStore::open(dir.path()).await.expect("a");
    let b = SqliteStore::open(dir.path())
        .await
        .expect("b: a second process on the same file");
    a.insert_application(&app_1(), &[]).await.expect("app");
    let ev = |n: i64| {
        AuditEvent::new(t0(), "token.issued", "key:k").details(serde_json::json!({"n": n}))
    };
    a.append_audit(&[ev(1), ev(2)])
        .await
        .expect("slow path, caches the head");
    a.append_audit(&[ev(3)]).await.expect("fast path");
    b.append_audit(&[ev(4)])
        .await
        .expect("another process moves the head");
    a.save_grant(
        &conn("c1", "u"),
        &[AuditEvent::new(t0(), "connection.created", "user:u")],
    )
    .await
    .expect("an audited change moves it too");
    a.append_audit(&[ev(5), ev(6)])
        .await
        .expect("stale cache: guarded, falls back");
    a.append_audit(&[ev(7)]).await.expect("fast again");
    b.append_audit(&[ev(8)])
        .await
        .expect("b's cache is stale too");
    let records = a.list_audit(0, 100).await.expect("list");
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    let mut v = Verifier::new(None);
    for r in &records {
        assert!(v.feed(r), "chain intact at {}", r.seq);
    }
    assert!(v.finish().valid);
}

#[tokio::test]
async fn audit_activity_counts_recent_events_per_hour_and_history_per_connection() {
    use keyway_core::audit::AuditEvent;
    let s = store_with_app().await;
    let hour = |h: i64| t0() + time::Duration::hours(h);
    let mut events = Vec::new();
    for (h, action, conn) in [
        (0, "token.issued", "c1"),
        (1, "token.issued", "c1"),
        (1, "token.issued", "c2"),
        (1, "connection.needs_reauthorization", "c2"),
        (2, "token.issued", "c1"),
        (2, "webhook.created", "c1"),
    ] {
        let mut e = AuditEvent::new(hour(h), action, "key:k");
        e.connection_id = Some(conn.into());
        events.push(e);
    }
    s.append_audit(&events).await.expect("append");
    let got = s
        .audit_activity(
            hour(1),
            &["token.issued", "connection.needs_reauthorization"],
        )
        .await
        .expect("activity");
    let h1 = keyway_core::clock::from_millis(
        keyway_core::clock::to_millis(hour(1)) / 3_600_000 * 3_600_000,
    );
    assert!(
        got.contains(&(h1, "token.issued".to_string(), 2)),
        "{got:?}"
    );
    assert!(got.contains(&(h1, "connection.needs_reauthorization".to_string(), 1)));
    assert_eq!(
        got.iter().map(|x| x.2).sum::<u64>(),
        4,
        "hour 0 and other actions left out"
    );
    assert!(s
        .audit_activity(hour(5), &["token.issued"])
        .await
        .expect("none")
        .is_empty());
    let history = s.audit_for_connection("c2", 10).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|r| r.event.action.as_str())
            .collect::<Vec<_>>(),
        ["connection.needs_reauthorization", "token.issued"]
    );
}
