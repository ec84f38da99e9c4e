//! Keep-alive and validation (R5), run periodically by the server:
//!
//! * tokens near expiry on recently used connections are refreshed ahead of time, so
//!   callers rarely wait on a refresh;
//! * grants of providers whose refresh tokens die when unused (`refresh_token_idle_days`)
//!   are refreshed at half that age;
//! * tokens that never expire are validated through the provider's identity call, and a
//!   token the provider no longer accepts (401) marks the connection for reauthorization.
//!
//! Refreshes go through the same flight lock and database lease as callers (R1), and are
//! skipped if the token changed since the candidate was read. Calls are rate-limited per
//! provider per run.

use crate::audit::{AuditEvent, SYSTEM};
use crate::broker::Broker;
use crate::error::CoreError;
use crate::model::{Connection, ConnectionKey, ConnectionStatus};
use crate::oauth;
use crate::vault::FieldRef;
use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepAliveReport {
    pub refreshed: usize,
    pub validated: usize,
    /// Connections found dead (refresh refused, or the identity call answered 401).
    pub needs_reauthorization: usize,
    pub failed: usize,
    /// Candidates left for a later run by the per-provider rate limit.
    pub deferred: usize,
}

enum Outcome {
    Done,
    Skipped,
    Dead,
    Failed,
}

impl Broker {
    pub async fn keep_alive(&self) -> Result<KeepAliveReport, CoreError> {
        let now = self.clock.now();
        let mut report = KeepAliveReport::default();
        let mut budget: HashMap<String, usize> = HashMap::new();
        let mut take = |provider: &str, report: &mut KeepAliveReport| {
            let used = budget.entry(provider.to_string()).or_insert(0);
            if *used >= self.settings.keepalive_per_provider {
                report.deferred += 1;
                return false;
            }
            *used += 1;
            true
        };
        let mut refresh_candidates = self
            .store
            .expiring_recently_used(
                now + self.settings.keepalive_window,
                now - self.settings.keepalive_recent_use,
                500,
            )
            .await?;
        for entry in self.catalog.iter() {
            if let Some(days) = entry
                .provider
                .oauth2
                .as_ref()
                .and_then(|o| o.refresh_token_idle_days)
            {
                let before = now - time::Duration::days(i64::from(days)) / 2;
                for c in self.store.idle_grants(&entry.id, before, 200).await? {
                    if !refresh_candidates.iter().any(|x| x.id == c.id) {
                        refresh_candidates.push(c);
                    }
                }
            }
        }
        for c in refresh_candidates {
            if !take(&c.provider, &mut report) {
                continue;
            }
            match self.refresh_ahead(&c).await {
                Outcome::Done => report.refreshed += 1,
                Outcome::Skipped => {}
                Outcome::Dead => report.needs_reauthorization += 1,
                Outcome::Failed => report.failed += 1,
            }
        }
        for c in self
            .store
            .unvalidated_non_expiring(now - self.settings.validate_every, 500)
            .await?
        {
            let has_identity = self
                .catalog
                .get(&c.provider)
                .is_some_and(|e| e.provider.identity.is_some());
            if !has_identity || !take(&c.provider, &mut report) {
                continue;
            }
            match self.validate(&c).await {
                Outcome::Done => report.validated += 1,
                Outcome::Skipped => {}
                Outcome::Dead => report.needs_reauthorization += 1,
                Outcome::Failed => report.failed += 1,
            }
        }
        if report != KeepAliveReport::default() {
            tracing::info!(?report, "keep-alive run");
        }
        Ok(report)
    }

    /// Refreshes a candidate unless someone else did since it was read.
    async fn refresh_ahead(&self, candidate: &Connection) -> Outcome {
        let key = ConnectionKey::of(candidate);
        let lock = self.flight(&candidate.id);
        let result = async {
            let _guard = lock.lock().await;
            let now = self.clock.now();
            let Some(fence) = self.store.acquire_refresh_lease(&candidate.id, &self.holder_id, now, now + self.settings.lease_ttl).await? else {
                return Ok::<_, CoreError>(Outcome::Skipped);
            };
            let conn = self.store.get_connection(&candidate.id).await?;
            let Some(conn) = conn.filter(|c| c.token_version == candidate.token_version && c.status == ConnectionStatus::Active) else {
                self.store.release_refresh_lease(&candidate.id, fence).await?;
                return Ok(Outcome::Skipped);
            };
            match self.refresh_with_lease_opt(&key, conn, fence, SYSTEM, true).await {
                Ok(_) => Ok(Outcome::Done),
                Err(CoreError::NeedsReauthorization { .. }) => Ok(Outcome::Dead),
                Err(e) => {
                    let _ = self.store.release_refresh_lease(&candidate.id, fence).await;
                    tracing::warn!(connection = %candidate.id, error = %e, "keep-alive refresh failed");
                    Ok(Outcome::Failed)
                }
            }
        }
        .await;
        self.drop_flight(&candidate.id, &lock);
        result.unwrap_or(Outcome::Failed)
    }

    /// Calls the provider's identity endpoint with the connection's token.
    async fn validate(&self, c: &Connection) -> Outcome {
        let result = async {
            let Some(tokens) = &c.tokens else { return Ok::<_, CoreError>(Outcome::Skipped) };
            let access = self.vault.open(FieldRef::new("connections", &c.id, "access_token"), &tokens.access_token)?;
            let integration = self.integration(&c.integration).await?;
            let ctx = self.provider_ctx(&integration)?;
            let Some(mut req) = oauth::identity_request(&ctx, &access, &c.metadata)? else { return Ok(Outcome::Skipped) };
            req.timeout = self.settings.provider_timeout;
            let now = self.clock.now();
            match self.http.send(req).await {
                Ok(r) if (200..300).contains(&r.status) => {
                    self.store.mark_validated(&c.id, now).await?;
                    Ok(Outcome::Done)
                }
                Ok(r) if r.status == 401 => {
                    let event = AuditEvent::new(now, "connection.needs_reauthorization", SYSTEM)
                        .connection(c)
                        .details(serde_json::json!({"error": "identity_call_unauthorized", "provider": c.provider}));
                    self.store.mark_needs_reauthorization(&c.id, c.token_version, now, &[event]).await?;
                    self.cache.forget_connection(&c.id);
                    Ok(Outcome::Dead)
                }
                Ok(r) => {
                    tracing::warn!(connection = %c.id, status = r.status, "validation call failed");
                    Ok(Outcome::Failed)
                }
                Err(e) => {
                    tracing::warn!(connection = %c.id, error = %e, "validation call failed");
                    Ok(Outcome::Failed)
                }
            }
        }
        .await;
        result.unwrap_or(Outcome::Failed)
    }
}
