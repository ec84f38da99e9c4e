//! What security teams ask of Keyway: the inventory of connections, offboarding a user,
//! and reading and verifying the audit chain.

use crate::audit::{AuditEvent, AuditRecord, Verifier, VerifyReport};
use crate::broker::Broker;
use crate::connect::check_id;
use crate::error::CoreError;
use crate::model::*;
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct InventoryFilter {
    pub application_id: Option<String>,
    pub integration: Option<String>,
    pub status: Option<ConnectionStatus>,
    /// Only stale (`Some(true)`) or only fresh (`Some(false)`) connections.
    pub stale: Option<bool>,
    /// Only connections without an owner.
    pub no_owner: bool,
    pub after_id: Option<String>,
    pub limit: u32,
}

/// One inventory line: a connection with what it can do and whether it is still used.
#[derive(Debug, Clone)]
pub struct InventoryRow {
    pub connection: Connection,
    pub application_name: String,
    pub configured_scopes: Vec<String>,
    /// Configured but not granted (the user must reconnect to grant them).
    pub missing_scopes: Vec<String>,
    /// Granted beyond the configured minimum.
    pub extra_scopes: Vec<String>,
    /// Unused (or never used) for longer than the stale threshold.
    pub stale: bool,
}

#[derive(Debug, Clone)]
pub struct OffboardItem {
    pub connection: Connection,
    pub revocation: RevocationOutcome,
}

impl Broker {
    /// The inventory, filtered and paginated by connection id. Application keys see
    /// their own application's connections only.
    pub async fn inventory(
        &self,
        principal: &Principal,
        mut filter: InventoryFilter,
    ) -> Result<(Vec<InventoryRow>, Option<String>), CoreError> {
        if let Some(app) = principal.application_id() {
            if filter.application_id.as_deref().is_some_and(|f| f != app) {
                return Ok((Vec::new(), None));
            }
            filter.application_id = Some(app.to_string());
        }
        let limit = filter.limit.clamp(1, 10_000) as usize;
        let apps: HashMap<String, String> = self
            .store
            .list_applications()
            .await?
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect();
        let mut configured: HashMap<String, Vec<String>> = HashMap::new();
        for i in self.store.list_integrations().await? {
            let scopes = match self.provider_ctx(&i) {
                Ok(ctx) => crate::oauth::requested_scopes(&ctx),
                Err(_) => i.scopes.clone(),
            };
            configured.insert(i.slug, scopes);
        }
        let now = self.clock.now();
        let mut rows = Vec::new();
        let mut after = filter.after_id.clone();
        let mut more = false;
        'scan: loop {
            let page = self
                .store
                .list_connections(&ConnectionFilter {
                    application_id: filter.application_id.clone(),
                    integration: filter.integration.clone(),
                    status: filter.status,
                    after_id: after.clone(),
                    limit: 500,
                    ..Default::default()
                })
                .await?;
            let full = page.len() == 500;
            for c in page {
                after = Some(c.id.clone());
                let last_activity = c.last_used_at.unwrap_or(c.created_at);
                let stale = c.status != ConnectionStatus::Revoked
                    && now - last_activity > self.settings.stale_after;
                if filter.stale.is_some_and(|s| s != stale)
                    || (filter.no_owner && c.owner.as_deref().is_some_and(|o| !o.is_empty()))
                {
                    continue;
                }
                if rows.len() == limit {
                    more = true;
                    break 'scan;
                }
                let conf = configured.get(&c.integration).cloned().unwrap_or_default();
                rows.push(InventoryRow {
                    application_name: apps.get(&c.application_id).cloned().unwrap_or_default(),
                    missing_scopes: conf
                        .iter()
                        .filter(|s| !c.scopes.contains(s))
                        .cloned()
                        .collect(),
                    extra_scopes: c
                        .scopes
                        .iter()
                        .filter(|s| !conf.contains(s))
                        .cloned()
                        .collect(),
                    configured_scopes: conf,
                    stale,
                    connection: c,
                });
            }
            if !full {
                break;
            }
        }
        let next = if more {
            rows.last().map(|r| r.connection.id.clone())
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Revokes every connection of a user in every application at the provider, erases
    /// their tokens (the records stay as tombstones), and reports per connection. Failed
    /// revocations are retried in the background.
    pub async fn offboard(
        &self,
        actor: &str,
        user_id: &str,
    ) -> Result<Vec<OffboardItem>, CoreError> {
        check_id("user_id", user_id)?;
        let mut live = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_connections(&ConnectionFilter {
                    user_id: Some(user_id.into()),
                    after_id: after.clone(),
                    limit: 500,
                    ..Default::default()
                })
                .await?;
            let full = page.len() == 500;
            after = page.last().map(|c| c.id.clone());
            live.extend(
                page.into_iter()
                    .filter(|c| c.status != ConnectionStatus::Revoked),
            );
            if !full {
                break;
            }
        }
        // The user's agent sessions end first: no agent keeps acting while tokens go.
        let sessions_ended = self.end_agent_sessions_of(actor, user_id).await?;
        let mut report = Vec::new();
        for c in live {
            let outcome = self.revoke_and_shred(&c, actor, "offboarding").await?;
            let connection = self.store.get_connection(&c.id).await?.unwrap_or(c);
            report.push(OffboardItem {
                connection,
                revocation: outcome,
            });
        }
        let count = |o: RevocationOutcome| report.iter().filter(|r| r.revocation == o).count();
        self.record(
            AuditEvent::new(self.clock.now(), "user.offboarded", actor)
                .user(user_id)
                .details(serde_json::json!({
                    "connections": report.len(),
                    "confirmed": count(RevocationOutcome::Confirmed),
                    "unsupported": count(RevocationOutcome::Unsupported),
                    "failed": count(RevocationOutcome::Failed),
                    "agent_sessions_ended": sessions_ended,
                })),
        )
        .await?;
        tracing::info!(connections = report.len(), "user offboarded");
        Ok(report)
    }

    pub async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, CoreError> {
        Ok(self
            .store
            .list_audit(after_seq.max(0), limit.clamp(1, 1000))
            .await?)
    }

    /// Recomputes the whole chain; with an anchor, also checks that record is unchanged.
    pub async fn verify_audit(
        &self,
        anchor: Option<(i64, String)>,
    ) -> Result<VerifyReport, CoreError> {
        let mut v = Verifier::new(anchor);
        let mut after = 0;
        loop {
            let page = self.store.list_audit(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                if !v.feed(r) {
                    return Ok(v.finish());
                }
            }
        }
        Ok(v.finish())
    }
}
