//! Reading, annotating and disconnecting connections, always within the caller's
//! application (S6).

use crate::broker::Broker;
use crate::connect::{check_text, NewConnectSession};
use crate::error::CoreError;
use crate::model::*;
use crate::oauth;
use crate::vault::FieldRef;

/// `PATCH /v1/connections/{id}`: `Some(None)` clears a field, `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPatch {
    pub owner: Option<Option<String>>,
    pub purpose: Option<Option<String>>,
    pub label: Option<Option<String>>,
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
        filter.limit = filter.limit.clamp(1, 500);
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
        self.store
            .update_connection_details(
                &conn.id,
                patch.owner,
                patch.purpose,
                patch.label,
                self.clock.now(),
            )
            .await?;
        self.connection_for(principal, id).await
    }

    /// Disconnects: revokes at the provider, then erases the tokens and keeps the record
    /// as a revoked tombstone. A failed provider call still disconnects locally.
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
        let outcome = self.revoke_at_provider(&conn).await;
        self.store
            .revoke_connection(&conn.id, outcome, self.clock.now())
            .await?;
        self.cache.forget_connection(&conn.id);
        tracing::info!(connection = %conn.id, provider = %conn.provider, revocation = outcome.as_str(), "connection revoked");
        let conn = self
            .store
            .get_connection(&conn.id)
            .await?
            .ok_or(CoreError::NotFound { what: "connection" })?;
        Ok((conn, outcome))
    }

    async fn revoke_at_provider(&self, conn: &Connection) -> RevocationOutcome {
        let Some(tokens) = &conn.tokens else {
            return RevocationOutcome::Unsupported;
        };
        let result = async {
            let integration = self.integration(&conn.integration).await?;
            let ctx = self.provider_ctx(&integration)?;
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
            let Some(mut req) = oauth::revocation_request(&ctx, &access, refresh.as_ref())? else {
                return Ok::<_, CoreError>(RevocationOutcome::Unsupported);
            };
            req.timeout = self.settings.provider_timeout;
            Ok(match self.http.send(req).await {
                Ok(resp) => oauth::classify_revocation(ctx.entry, &resp),
                Err(e) => {
                    tracing::warn!(connection = %conn.id, error = %e, "revocation call failed");
                    RevocationOutcome::Failed
                }
            })
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::warn!(connection = %conn.id, error = %e, "revocation could not be attempted");
            RevocationOutcome::Failed
        })
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
