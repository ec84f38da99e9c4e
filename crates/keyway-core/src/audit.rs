//! The tamper-evident audit log: every security-relevant action, hash-chained.
//!
//! Each record carries the previous record's hash, and its own hash covers its sequence
//! number, time, action, actor, subjects, details and that previous hash. Editing a row
//! breaks its hash; deleting one breaks the next row's link or the sequence; reordering
//! breaks both. Truncating the tail is caught by checking against an anchor (a head seq and
//! hash recorded elsewhere, e.g. by a monitoring job). Details never hold secrets (S1).

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The actor of background work.
pub const SYSTEM: &str = "system";

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event to append. `details` is JSON text, fixed when the event is made, so the hash
/// is computed over exactly what is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub action: String,
    pub actor: String,
    pub application_id: Option<String>,
    pub user_id: Option<String>,
    pub connection_id: Option<String>,
    pub integration: Option<String>,
    pub details: String,
}

impl AuditEvent {
    pub fn new(at: OffsetDateTime, action: &str, actor: &str) -> Self {
        Self {
            at,
            action: action.into(),
            actor: actor.into(),
            application_id: None,
            user_id: None,
            connection_id: None,
            integration: None,
            details: "{}".into(),
        }
    }
    pub fn application(mut self, id: &str) -> Self {
        self.application_id = Some(id.into());
        self
    }
    pub fn user(mut self, id: &str) -> Self {
        self.user_id = Some(id.into());
        self
    }
    pub fn connection(mut self, c: &crate::model::Connection) -> Self {
        self.application_id = Some(c.application_id.clone());
        self.user_id = Some(c.user_id.clone());
        self.connection_id = Some(c.id.clone());
        self.integration = Some(c.integration.clone());
        self
    }
    pub fn integration(mut self, slug: &str) -> Self {
        self.integration = Some(slug.into());
        self
    }
    pub fn details(mut self, v: serde_json::Value) -> Self {
        self.details = v.to_string();
        self
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// The chain hash of a record: SHA-256 over an unambiguous JSON array of its fields.
pub fn chain_hash(prev_hash: &str, seq: i64, e: &AuditEvent) -> String {
    // A tuple serializes as the same JSON array as `json!([...])`, without building a
    // `Value` tree first (this runs for every token handed out).
    let material = serde_json::to_string(&(
        prev_hash,
        seq,
        crate::clock::to_millis(e.at),
        &e.action,
        &e.actor,
        &e.application_id,
        &e.user_id,
        &e.connection_id,
        &e.integration,
        &e.details,
    ))
    .unwrap_or_default();
    hex::encode(Sha256::digest(material.as_bytes()))
}

/// Result of a verification pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub valid: bool,
    pub checked: u64,
    pub first_bad_seq: Option<i64>,
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
}

/// Checks records in sequence order, page by page. Start with [`Verifier::new`], feed
/// every record, then [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    expected_prev: String,
    report: VerifyReport,
    anchor: Option<(i64, String)>,
    anchor_seen: bool,
}

impl Verifier {
    /// `anchor`: a (seq, hash) recorded earlier that the chain must still contain.
    pub fn new(anchor: Option<(i64, String)>) -> Self {
        Self {
            expected_seq: 1,
            expected_prev: GENESIS.into(),
            report: VerifyReport {
                valid: true,
                ..Default::default()
            },
            anchor,
            anchor_seen: false,
        }
    }

    /// False once the first bad record is found (no need to read further).
    pub fn feed(&mut self, r: &AuditRecord) -> bool {
        if !self.report.valid {
            return false;
        }
        self.report.checked += 1;
        let linked = r.seq == self.expected_seq && r.prev_hash == self.expected_prev;
        let intact = chain_hash(&r.prev_hash, r.seq, &r.event) == r.hash;
        let anchored = match &self.anchor {
            Some((seq, hash)) if *seq == r.seq => {
                self.anchor_seen = true;
                *hash == r.hash
            }
            _ => true,
        };
        if !(linked && intact && anchored) {
            self.report.valid = false;
            self.report.first_bad_seq = Some(r.seq.min(self.expected_seq));
            return false;
        }
        self.expected_seq = r.seq + 1;
        self.expected_prev = r.hash.clone();
        self.report.head_seq = Some(r.seq);
        self.report.head_hash = Some(r.hash.clone());
        true
    }

    pub fn finish(mut self) -> VerifyReport {
        if self.report.valid {
            if let Some((seq, _)) = &self.anchor {
                if !self.anchor_seen {
                    // The anchored record is gone: the tail was cut.
                    self.report.valid = false;
                    self.report.first_bad_seq = Some(self.expected_seq.min(*seq));
                }
            }
        }
        self.report
    }
}

/// Token events are the bulk of the log; they are group-committed: callers queue their
/// event and wait until the batch holding it is durable, so a token is never handed out
/// unaudited, and one transaction carries hundreds of events under load.
pub(crate) struct AuditQueue {
    tx: tokio::sync::mpsc::Sender<(
        AuditEvent,
        tokio::sync::oneshot::Sender<Result<(), crate::StoreError>>,
    )>,
}

impl AuditQueue {
    pub(crate) fn spawn(store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(
            AuditEvent,
            tokio::sync::oneshot::Sender<Result<(), crate::StoreError>>,
        )>(8192);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let (mut events, mut acks) = (Vec::with_capacity(64), Vec::with_capacity(64));
                events.push(first.0);
                acks.push(first.1);
                // Let callers that are already running queue their events too: one
                // scheduler turn costs microseconds, a commit far more.
                tokio::task::yield_now().await;
                while events.len() < 1024 {
                    match rx.try_recv() {
                        Ok((e, ack)) => {
                            events.push(e);
                            acks.push(ack);
                        }
                        Err(_) => break,
                    }
                }
                let result = store.append_audit(&events).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, events = events.len(), "audit batch failed");
                }
                for ack in acks {
                    let _ = ack.send(result.clone());
                }
            }
        });
        Self { tx }
    }

    pub(crate) async fn record(&self, e: AuditEvent) -> Result<(), crate::StoreError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx
            .send((e, ack))
            .await
            .map_err(|_| crate::StoreError::Unavailable("audit writer stopped".into()))?;
        done.await
            .map_err(|_| crate::StoreError::Unavailable("audit writer stopped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let event = AuditEvent::new(
                    time::macros::datetime!(2026-11-22 10:00 UTC),
                    "token.issued",
                    "key:k1",
                )
                .user(&format!("u{seq}"))
                .details(serde_json::json!({"n": seq}));
                let hash = chain_hash(&prev, seq, &event);
                let r = AuditRecord {
                    seq,
                    event,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                r
            })
            .collect()
    }

    fn verify(records: &[AuditRecord], anchor: Option<(i64, String)>) -> VerifyReport {
        let mut v = Verifier::new(anchor);
        for r in records {
            if !v.feed(r) {
                break;
            }
        }
        v.finish()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let r = verify(&c, Some((3, c[2].hash.clone())));
        assert!(r.valid);
        assert_eq!((r.checked, r.head_seq), (5, Some(5)));
        assert!(verify(&[], None).valid);
    }

    #[test]
    fn edits_deletions_reorders_and_truncation_are_found() {
        let mut edited = chain(5);
        edited[2].event.user_id = Some("mallory".into());
        assert_eq!(verify(&edited, None).first_bad_seq, Some(3));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted, None).first_bad_seq, Some(2));

        let mut reordered = chain(5);
        reordered.swap(1, 3);
        assert_eq!(verify(&reordered, None).first_bad_seq, Some(2));

        let mut renumbered = chain(5);
        renumbered.swap(1, 3);
        renumbered[1].seq = 2;
        renumbered[3].seq = 4;
        assert_eq!(verify(&renumbered, None).first_bad_seq, Some(2));

        let full = chain(5);
        let anchor = Some((5, full[4].hash.clone()));
        let truncated = &full[..3];
        let r = verify(truncated, anchor);
        assert!(!r.valid);
        assert_eq!(r.first_bad_seq, Some(4));

        let mut rehashed = chain(5);
        rehashed[4].event.actor = "key:forged".into();
        rehashed[4].hash = chain_hash(&rehashed[4].prev_hash, 5, &rehashed[4].event);
        assert!(
            verify(&rehashed, None).valid,
            "a rewritten tail verifies without an anchor..."
        );
        assert_eq!(
            verify(&rehashed, Some((5, chain(5)[4].hash.clone()))).first_bad_seq,
            Some(5),
            "...but not against one"
        );
    }
}
