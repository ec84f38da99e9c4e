//! Reading, annotating and disconnecting connections, always within the caller's
//! application (S6); revocation at the provider, with background retries.

use crate::audit::{AuditEvent, SYSTEM};
use crate::broker::Broker;
use crate::connect::{check_text, NewConnectSession};
use crate::error::CoreError;
use crate::ids::new_id;
use crate::model::*;
use crate::oauth;
use crate::secret::Secret;
use crate::vault::FieldRef;

/// `PATCH /v1/connections/{id}`: `Some(None)` clears a field, `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPatch {
    pub owner: Option<Option<String>>,
    pub purpose: Option<Option<String>>,
    pub label: Option<Option<String>>,
}

/// Failed revocations are retried this many times (about a day with the backoff below)
/// before they are given up with an audit event.
pub const MAX_REVOCATION_ATTEMPTS: i64 = 10;

fn retry_delay(attempts: i64) -> time::Duration {
    time::Duration::minutes(1i64 << attempts.clamp(0, 9)).min(time::Duration::hours(6))
}

impl Broker {
    /// A connection the principal may see. Another application's connection is "not
    /// found", so ids do not leak across applications.
    pub async fn connection_for(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Connection, CoreError> {
        let conn = self
            .store
            .get_connection(id)
            .await?
            .ok_or(CoreError::NotFound { what: "connection" })?;
        match principal.application_id() {
            Some(app) if app != conn.application_id => {
                Err(CoreError::NotFound { what: "connection" })
            }
            _ => Ok(conn),
        }
    }

    pub async fn list_connections(
        &self,
        principal: &Principal,
        mut filter: ConnectionFilter,
    ) -> Result<Vec<Connection>, CoreError> {
        if let Some(app) = principal.application_id() {
            if filter.application_id.as_deref().is_some_and(|f| f != app) {
                return Ok(Vec::new());
            }
            filter.application_id = Some(app.to_string());
        }
        filter.limit = filter.limit.clamp(1, 1001);
        Ok(self.store.list_connections(&filter).await?)
    }

    pub async fn update_connection(
        &self,
        principal: &Principal,
        id: &str,
        patch: ConnectionPatch,
    ) -> Result<Connection, CoreError> {
        for (name, v) in [
            ("owner", &patch.owner),
            ("purpose", &patch.purpose),
            ("label", &patch.label),
        ] {
            if let Some(v) = v {
                check_text(name, v)?;
            }
        }
        let conn = self.connection_for(principal, id).await?;
        let now = self.clock.now();
        let mut details = serde_json::Map::new();
        for (name, v) in [
            ("owner", &patch.owner),
            ("purpose", &patch.purpose),
            ("label", &patch.label),
        ] {
            if let Some(v) = v {
                details.insert(name.into(), serde_json::json!(v));
            }
        }
        let event = AuditEvent::new(now, "connection.updated", &principal.actor())
            .connection(&conn)
            .details(serde_json::Value::Object(details));
        self.store
            .update_connection_details(
                &conn.id,
                patch.owner,
                patch.purpose,
                patch.label,
                now,
                &[event],
            )
            .await?;
        self.connection_for(principal, id).await
    }

    /// Disconnects: revokes at the provider, then erases the tokens and keeps the record
    /// as a revoked tombstone. A failed provider call still disconnects locally and is
    /// retried in the background.
    pub async fn disconnect(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(Connection, RevocationOutcome), CoreError> {
        let conn = self.connection_for(principal, id).await?;
        if conn.status == ConnectionStatus::Revoked {
            return Err(CoreError::Conflict {
                code: "already_revoked",
                detail: "this connection was already disconnected".into(),
            });
        }
        let outcome = self
            .revoke_and_shred(&conn, &principal.actor(), "disconnect")
            .await?;
        let conn = self
            .store
            .get_connection(&conn.id)
            .await?
            .ok_or(CoreError::NotFound { what: "connection" })?;
        Ok((conn, outcome))
    }

    /// Revokes at the provider and erases the connection's tokens in one transaction with
    /// its audit event; a failed revocation is queued with the tokens sealed for the retry.
    pub(crate) async fn revoke_and_shred(
        &self,
        conn: &Connection,
        actor: &str,
        reason: &str,
    ) -> Result<RevocationOutcome, CoreError> {
        let opened = self.open_tokens(conn).ok();
        let (outcome, error) = match &opened {
            Some((access, refresh)) => {
                self.revoke_at_provider(&conn.integration, access, refresh.as_ref())
                    .await
            }
            None => (RevocationOutcome::Unsupported, None),
        };
        let now = self.clock.now();
        let retry = match (&opened, outcome) {
            (Some((access, refresh)), RevocationOutcome::Failed) => {
                let id = new_id("rvk");
                Some(RevocationRetry {
                    access_token_sealed: self.vault.seal(
                        FieldRef::new("revocation_retries", &id, "access_token"),
                        access.expose(),
                    ),
                    refresh_token_sealed: refresh.as_ref().map(|r| {
                        self.vault.seal(
                            FieldRef::new("revocation_retries", &id, "refresh_token"),
                            r.expose(),
                        )
                    }),
                    id,
                    connection_id: conn.id.clone(),
                    application_id: conn.application_id.clone(),
                    user_id: conn.user_id.clone(),
                    integration: conn.integration.clone(),
                    attempts: 1,
                    next_attempt_at: now + retry_delay(1),
                    last_error: error.clone(),
                    created_at: now,
                })
            }
            _ => None,
        };
        let event = AuditEvent::new(now, "connection.revoked", actor)
            .connection(conn)
            .details(serde_json::json!({
                "reason": reason,
                "revocation": outcome.as_str(),
                "retry_queued": retry.is_some(),
                "provider_account": {"id": conn.account_id, "name": conn.account_name},
            }));
        self.store
            .revoke_connection(&conn.id, outcome, now, retry.as_ref(), &[event])
            .await?;
        self.cache.forget_connection(&conn.id);
        tracing::info!(connection = %conn.id, provider = %conn.provider, revocation = outcome.as_str(), "connection revoked");
        Ok(outcome)
    }

    fn open_tokens(&self, conn: &Connection) -> Result<(Secret, Option<Secret>), CoreError> {
        let tokens = conn
            .tokens
            .as_ref()
            .ok_or(CoreError::NotFound { what: "tokens" })?;
        let access = self.vault.open(
            FieldRef::new("connections", &conn.id, "access_token"),
            &tokens.access_token,
        )?;
        let refresh = match &tokens.refresh_token {
            Some(r) => Some(
                self.vault
                    .open(FieldRef::new("connections", &conn.id, "refresh_token"), r)?,
            ),
            None => None,
        };
        Ok((access, refresh))
    }

    /// One revocation call; `(outcome, error)`.
    async fn revoke_at_provider(
        &self,
        integration: &str,
        access: &Secret,
        refresh: Option<&Secret>,
    ) -> (RevocationOutcome, Option<String>) {
        let result = async {
            let integration = self.integration(integration).await?;
            let ctx = self.provider_ctx(&integration)?;
            let Some(mut req) = oauth::revocation_request(&ctx, access, refresh)? else {
                return Ok::<_, CoreError>((RevocationOutcome::Unsupported, None));
            };
            req.timeout = self.settings.provider_timeout;
            Ok(match self.http.send(req).await {
                Ok(resp) => {
                    let outcome = oauth::classify_revocation(ctx.entry, &resp);
                    let err = (outcome == RevocationOutcome::Failed)
                        .then(|| format!("HTTP {}", resp.status));
                    (outcome, err)
                }
                Err(e) => (RevocationOutcome::Failed, Some(e.to_string())),
            })
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "revocation could not be attempted");
            (RevocationOutcome::Failed, Some(e.to_string()))
        })
    }

    /// Retries due provider revocations; run periodically. Returns how many were tried.
    pub async fn retry_revocations(&self) -> Result<usize, CoreError> {
        let now = self.clock.now();
        let due = self.store.due_revocation_retries(now, 100).await?;
        for r in &due {
            let opened = self
                .vault
                .open(
                    FieldRef::new("revocation_retries", &r.id, "access_token"),
                    &r.access_token_sealed,
                )
                .and_then(|a| {
                    let refresh = r
                        .refresh_token_sealed
                        .as_ref()
                        .map(|t| {
                            self.vault.open(
                                FieldRef::new("revocation_retries", &r.id, "refresh_token"),
                                t,
                            )
                        })
                        .transpose()?;
                    Ok((a, refresh))
                });
            let (outcome, error) = match &opened {
                Ok((a, refresh)) => {
                    self.revoke_at_provider(&r.integration, a, refresh.as_ref())
                        .await
                }
                Err(e) => (RevocationOutcome::Failed, Some(e.to_string())),
            };
            let base = |action: &str| {
                AuditEvent::new(now, action, SYSTEM)
                    .application(&r.application_id)
                    .user(&r.user_id)
                    .integration(&r.integration)
            };
            if outcome != RevocationOutcome::Failed {
                let mut e = base("connection.revocation_confirmed").details(
                    serde_json::json!({"revocation": outcome.as_str(), "attempts": r.attempts + 1}),
                );
                e.connection_id = Some(r.connection_id.clone());
                self.store.finish_revocation_retry(&r.id, &[e]).await?;
            } else if r.attempts + 1 >= MAX_REVOCATION_ATTEMPTS {
                let mut e = base("connection.revocation_abandoned")
                    .details(serde_json::json!({"attempts": r.attempts + 1, "last_error": error}));
                e.connection_id = Some(r.connection_id.clone());
                self.store.finish_revocation_retry(&r.id, &[e]).await?;
                tracing::warn!(connection = %r.connection_id, "gave up revoking at the provider");
            } else {
                let attempts = r.attempts + 1;
                self.store
                    .reschedule_revocation_retry(
                        &r.id,
                        attempts,
                        now + retry_delay(attempts),
                        error.as_deref().unwrap_or("failed"),
                    )
                    .await?;
            }
        }
        Ok(due.len())
    }

    /// A connect link that lets the connection's user reconnect just this integration.
    pub async fn reconnect_url(&self, connection_id: &str) -> Result<String, CoreError> {
        let conn = self
            .store
            .get_connection(connection_id)
            .await?
            .ok_or(CoreError::NotFound { what: "connection" })?;
        let (_, _, url) = self
            .create_connect_session(
                &conn.application_id,
                NewConnectSession {
                    user_id: conn.user_id,
                    organization_id: conn.organization_id,
                    integrations: Some(vec![conn.integration]),
                    shared: conn.shared,
                    ..Default::default()
                },
            )
            .await?;
        Ok(url)
    }

    /// Missing scopes of a connection against its integration's configured ones (R6).
    pub async fn missing_scopes(&self, conn: &Connection) -> Result<Vec<String>, CoreError> {
        let Some(integration) = self.store.get_integration(&conn.integration).await? else {
            return Ok(Vec::new());
        };
        let ctx = self.provider_ctx(&integration)?;
        Ok(oauth::requested_scopes(&ctx)
            .into_iter()
            .filter(|s| !conn.scopes.contains(s))
            .collect())
    }
}
