//! What only several processes on one PostgreSQL database exercise: stores opened on the
//! same database play replicas. Run when `KW_TEST_PG_URL` names a server (`scripts/test`
//! starts a throwaway cluster for them); without it they say so and pass.

use crate::tests::{app_1, conn, fresh_postgres_url, refreshed, t0};
use crate::{PgSettings, PgStore};
use keyway_core::audit::{AuditEvent, Verifier};
use keyway_core::store::{ConnectionChange, Store};
use std::time::Duration;

/// Three stores on one fresh database, started at the same time.
async fn replicas() -> Option<Vec<PgStore>> {
    let Ok(server) = std::env::var("KW_TEST_PG_URL") else {
        eprintln!("KW_TEST_PG_URL is not set: PostgreSQL replica tests skipped");
        return None;
    };
    let url = fresh_postgres_url(&server).await;
    let settings = PgSettings {
        max_connections: 4,
        ..Default::default()
    };
    // Started together: the migration lock lets one migrate while the others wait.
    let (a, b, c) = tokio::join!(
        PgStore::connect(&url, &settings),
        PgStore::connect(&url, &settings),
        PgStore::connect(&url, &settings),
    );
    Some(vec![
        a.expect("replica a"),
        b.expect("replica b"),
        c.expect("replica c"),
    ])
}

/// The next change on a feed that is not a resync (a listener's first message is one).
async fn next_change(
    feed: &mut tokio::sync::broadcast::Receiver<ConnectionChange>,
) -> ConnectionChange {
    loop {
        let c = tokio::time::timeout(Duration::from_secs(30), feed.recv())
            .await
            .expect("a change arrives")
            .expect("feed open");
        if c != ConnectionChange::Resync {
            return c;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_migrate_together_and_append_to_one_chain() {
    let Some(rs) = replicas().await else { return };
    rs[0].insert_application(&app_1(), &[]).await.expect("app");
    let mut tasks = Vec::new();
    for (i, r) in rs.iter().enumerate() {
        for n in 0..20 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let e = AuditEvent::new(t0(), "token.issued", &format!("key:{i}"))
                    .details(serde_json::json!({ "n": n }));
                r.append_audit(&[e.clone(), e]).await
            }));
        }
    }
    for t in tasks {
        t.await.expect("task").expect("append");
    }
    let records = rs[1].list_audit(0, 1000).await.expect("list");
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>(),
        "one gap-free sequence"
    );
    let mut v = Verifier::new(None);
    for r in &records {
        assert!(v.feed(r), "chain intact at {}", r.seq);
    }
    assert!(v.finish().valid);
}

#[tokio::test]
async fn every_replica_hears_of_refreshes_revocations_and_new_connections() {
    let Some(rs) = replicas().await else { return };
    let (a, b) = (&rs[0], &rs[1]);
    let mut feed = a.connection_changes().expect("postgres has a feed");
    b.insert_application(&app_1(), &[]).await.expect("app");
    b.save_grant(&conn("c1", "u"), &[]).await.expect("grant");
    assert_eq!(
        next_change(&mut feed).await,
        ConnectionChange::Added {
            application_id: "app_1".into()
        }
    );
    let fence = b
        .acquire_refresh_lease("c1", "b", t0(), t0() + time::Duration::seconds(30))
        .await
        .expect("lease")
        .expect("free");
    assert!(b
        .write_refreshed_tokens("c1", fence, &refreshed("new"), &[])
        .await
        .expect("write"));
    assert_eq!(
        next_change(&mut feed).await,
        ConnectionChange::Changed("c1".into())
    );
    // A lease released without a write (the refresh failed) wakes waiters too.
    let fence = b
        .acquire_refresh_lease("c1", "b", t0(), t0() + time::Duration::seconds(30))
        .await
        .expect("lease")
        .expect("free");
    b.release_refresh_lease("c1", fence).await.expect("release");
    assert_eq!(
        next_change(&mut feed).await,
        ConnectionChange::Changed("c1".into())
    );
    assert!(b
        .revoke_connection(
            "c1",
            keyway_core::model::RevocationOutcome::Confirmed,
            t0(),
            None,
            &[]
        )
        .await
        .expect("revoke"));
    assert_eq!(
        next_change(&mut feed).await,
        ConnectionChange::Changed("c1".into())
    );
}

#[tokio::test]
async fn a_fenced_write_from_a_replica_that_lost_its_lease_changes_nothing() {
    let Some(rs) = replicas().await else { return };
    let (slow, fast) = (&rs[0], &rs[1]);
    slow.insert_application(&app_1(), &[]).await.expect("app");
    slow.save_grant(&conn("c1", "u"), &[]).await.expect("grant");
    let lease = time::Duration::seconds(10);
    let old = slow
        .acquire_refresh_lease("c1", "slow", t0(), t0() + lease)
        .await
        .expect("lease")
        .expect("free");
    assert_eq!(
        fast.acquire_refresh_lease("c1", "fast", t0(), t0() + lease)
            .await
            .expect("lease"),
        None,
        "held"
    );
    // The slow replica stalls past its lease; the other takes over and writes.
    let later = t0() + lease + time::Duration::seconds(1);
    let new = fast
        .acquire_refresh_lease("c1", "fast", later, later + lease)
        .await
        .expect("lease")
        .expect("expired lease is taken");
    assert!(fast
        .write_refreshed_tokens("c1", new, &refreshed("newer"), &[])
        .await
        .expect("write"));
    assert!(
        !slow
            .write_refreshed_tokens("c1", old, &refreshed("stale"), &[])
            .await
            .expect("write"),
        "the stale fence writes nothing"
    );
    let c = slow.get_connection("c1").await.expect("get").expect("row");
    assert_eq!(c.tokens.map(|t| t.access_token), Some("newer".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_work_is_taken_by_one_replica() {
    let Some(rs) = replicas().await else { return };
    let (a, b) = (&rs[0], &rs[1]);
    let until = t0() + time::Duration::seconds(25);
    assert!(a
        .try_job_lease("keep-alive", "a", t0(), until)
        .await
        .expect("lease"));
    assert!(!b
        .try_job_lease("keep-alive", "b", t0(), until)
        .await
        .expect("lease"));
    assert!(
        a.try_job_lease("keep-alive", "a", t0(), until)
            .await
            .expect("lease"),
        "the holder renews"
    );
    assert!(
        b.try_job_lease(
            "keep-alive",
            "b",
            until,
            until + time::Duration::seconds(25)
        )
        .await
        .expect("lease"),
        "an expired lease passes on"
    );

    // Webhook deliveries: two replicas claiming at once never get the same one.
    a.insert_application(&app_1(), &[]).await.expect("app");
    let hook = keyway_core::webhooks::Webhook {
        id: "wh_1".into(),
        application_id: None,
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["connection.created".into()],
        secret_sealed: "sealed".into(),
        created_at: t0(),
    };
    a.insert_webhook(&hook, &[]).await.expect("hook");
    let events: Vec<AuditEvent> = (0..40)
        .map(|_| AuditEvent::new(t0(), "connection.created", "user:u"))
        .collect();
    a.append_audit(&events).await.expect("events");
    let (ca, cb) = tokio::join!(
        a.claim_due_deliveries(t0(), t0() + time::Duration::minutes(2), 30),
        b.claim_due_deliveries(t0(), t0() + time::Duration::minutes(2), 30),
    );
    let (ca, cb) = (ca.expect("claim"), cb.expect("claim"));
    let mut ids: Vec<String> = ca
        .iter()
        .chain(cb.iter())
        .map(|(d, _)| d.id.clone())
        .collect();
    assert_eq!(ids.len(), 40, "all claimed once between them");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "no delivery claimed twice");
}
