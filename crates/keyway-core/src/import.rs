//! Importing existing tokens (`POST /v1/connections/import`), for teams migrating from
//! their own OAuth code or another broker. Each import is validated against the
//! provider's identity call when it has one, sealed like any grant, and audited as
//! `connection.imported`.

use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::connect::{check_id, check_text};
use crate::error::CoreError;
use crate::ids::new_id;
use crate::model::*;
use crate::oauth;
use crate::secret::Secret;
use std::collections::BTreeMap;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integration: String,
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<OffsetDateTime>,
    pub scopes: Vec<String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    /// Skip the provider identity check (tokens of a provider that is unreachable here).
    pub skip_validation: bool,
}

impl Broker {
    pub async fn import_connection(
        &self,
        actor: &str,
        req: ImportRequest,
    ) -> Result<Connection, CoreError> {
        check_id("user_id", &req.user_id)?;
        if let Some(o) = &req.organization_id {
            check_id("organization_id", o)?;
        }
        check_text("owner", &req.owner)?;
        check_text("purpose", &req.purpose)?;
        if req.access_token.is_empty()
            || req.access_token.expose().len() > 8192
            || req
                .refresh_token
                .as_ref()
                .is_some_and(|r| r.is_empty() || r.expose().len() > 8192)
        {
            return Err(CoreError::invalid(
                "invalid_request",
                "tokens must be 1-8192 characters",
            ));
        }
        if req.scopes.len() > 200
            || req
                .scopes
                .iter()
                .any(|s| s.is_empty() || s.len() > 200 || s.contains(char::is_whitespace))
        {
            return Err(CoreError::invalid(
                "invalid_request",
                "`scopes` must be scope names without spaces",
            ));
        }
        let app = self.application(&req.application_id).await?;
        let integration = self.allowed_integration(&app, &req.integration).await?;
        let key = ConnectionKey {
            application_id: app.id.clone(),
            user_id: req.user_id.clone(),
            organization_id: req.organization_id.clone(),
            integration: req.integration.clone(),
            selector: None,
        };
        let now = self.clock.now();
        if req.expires_at.is_some_and(|e| e <= now) && req.refresh_token.is_none() {
            return Err(CoreError::invalid(
                "token_expired",
                "the access token has expired and there is no refresh token",
            ));
        }
        // Validate against the provider when it has a cheap identity call.
        let ctx = self.provider_ctx(&integration)?;
        ctx.entry.provider.oauth()?;
        let (mut account_id, mut account_name, mut validated) = (None, None, None);
        if !req.skip_validation && req.expires_at.is_none_or(|e| e > now) {
            if let Some(mut ireq) =
                oauth::identity_request(&ctx, &req.access_token, &BTreeMap::new())?
            {
                ireq.timeout = self.settings.provider_timeout;
                let resp =
                    self.http
                        .send(ireq)
                        .await
                        .map_err(|_| CoreError::ProviderUnavailable {
                            provider: ctx.entry.provider.name.clone(),
                            retry_after_secs: 5,
                        })?;
                if resp.status == 401 || resp.status == 403 {
                    return Err(CoreError::invalid(
                        "token_rejected",
                        format!(
                            "{} does not accept this access token",
                            ctx.entry.provider.name
                        ),
                    ));
                }
                if let Some((id, name)) = oauth::parse_identity(ctx.entry, &resp) {
                    (account_id, account_name, validated) = (id, name, Some(now));
                }
            }
        }
        // One connection per provider account: importing the same account again is a
        // conflict, another account is a connection of its own.
        if self
            .store
            .find_connections(&key)
            .await?
            .iter()
            .any(|c| c.account_id == account_id)
        {
            return Err(CoreError::Conflict {
                code: "connection_exists",
                detail:
                    "this user already has a connection to this integration and provider account"
                        .into(),
            });
        }
        let id = new_id("conn");
        let set = oauth::TokenSet {
            access_token: req.access_token.clone(),
            refresh_token: req.refresh_token.clone(),
            token_type: "bearer".into(),
            expires_in: None,
            scopes: None,
            account_id: None,
            account_name: None,
            metadata: BTreeMap::new(),
        };
        let mut tokens = self.seal_tokens(&id, &set, None, now);
        tokens.expires_at = req.expires_at;
        let scopes = if req.scopes.is_empty() {
            oauth::requested_scopes(&ctx)
        } else {
            req.scopes.clone()
        };
        let conn = Connection {
            id: id.clone(),
            application_id: app.id.clone(),
            user_id: req.user_id.clone(),
            organization_id: req.organization_id.clone(),
            integration: req.integration.clone(),
            provider: integration.provider.clone(),
            status: ConnectionStatus::Active,
            scopes,
            account_id,
            account_name: account_name.clone(),
            metadata: BTreeMap::new(),
            owner: req.owner.clone(),
            purpose: req.purpose.clone(),
            label: account_name,
            tokens: Some(tokens),
            token_version: 1,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            last_refreshed_at: None,
            last_validated_at: validated,
            revoked_at: None,
            revocation: None,
            shared: false,
        };
        let event = AuditEvent::new(now, "connection.imported", actor)
            .connection(&conn)
            .details(serde_json::json!({
                "provider": conn.provider,
                "provider_account": {"id": conn.account_id, "name": conn.account_name},
                "scopes": conn.scopes,
                "validated": validated.is_some(),
                "has_refresh_token": req.refresh_token.is_some(),
            }));
        match self.store.save_grant(&conn, &[event]).await {
            Ok(()) => {
                self.cache.forget_owner(&key);
                Ok(conn)
            }
            Err(crate::StoreError::Conflict(_)) => Err(CoreError::Conflict {
                code: "connection_exists",
                detail: "this user already has a connection to this integration".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}
