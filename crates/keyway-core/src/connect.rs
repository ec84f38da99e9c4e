//! Connecting an account: connect sessions, authorization links, the OAuth redirect and
//! the callback (RFC 6749 §4.1 with RFC 7636 PKCE, RFC 9207 `iss`, RFC 9700 §4.7 state).

use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::credentials::{Credentials, API_KEY_TOKEN_TYPE};
use crate::error::CoreError;
use crate::ids::{new_id, pkce_challenge, random_token, sha256_hex};
use crate::model::*;
use crate::oauth::{self, Grant, TokenEndpointError};
use crate::outbound::OutboundError;
use crate::vault::FieldRef;
use std::collections::BTreeMap;
use time::OffsetDateTime;

pub const MAX_ID_LEN: usize = 256;
pub const MAX_TEXT_LEN: usize = 1000;

/// `POST /v1/connect/sessions` input.
#[derive(Debug, Clone, Default)]
pub struct NewConnectSession {
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integrations: Option<Vec<String>>,
    pub return_url: Option<String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    /// Connect for the organization, shared with its members (needs `organization_id`).
    pub shared: bool,
}

/// Who a flow connects for, and where it returns.
#[derive(Debug, Clone)]
pub struct FlowTarget {
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integration: String,
    pub connect_session_id: Option<String>,
    pub return_url: Option<String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub shared: bool,
}

/// One line of the widget: an integration and what this user has connected to it.
#[derive(Debug, Clone)]
pub struct WidgetItem {
    pub integration: Integration,
    /// The connection the line's state is about: one needing attention first.
    pub primary: Option<Connection>,
    /// Every live connection (several accounts of one provider each get a line of
    /// their own to disconnect).
    pub connections: Vec<Connection>,
    pub missing_scopes: Vec<String>,
}

/// The query of `GET /oauth/callback`.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub iss: Option<String>,
}

/// How a callback ended, for the redirect back to the application.
#[derive(Debug, Clone)]
pub enum CallbackOutcome {
    Connected {
        connection: Box<Connection>,
        return_url: Option<String>,
    },
    /// The user or provider ended the flow with an OAuth error (`access_denied`...).
    ProviderError {
        error: String,
        return_url: Option<String>,
        integration: String,
        application_id: String,
    },
}

pub(crate) fn check_id(field: &str, v: &str) -> Result<(), CoreError> {
    if v.trim().is_empty() {
        return Err(CoreError::invalid(
            "invalid_request",
            format!("`{field}` must not be empty"),
        ));
    }
    if v.len() > MAX_ID_LEN || v.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "invalid_request",
            format!("`{field}` must be at most {MAX_ID_LEN} characters without control characters"),
        ));
    }
    Ok(())
}

pub(crate) fn check_text(field: &str, v: &Option<String>) -> Result<(), CoreError> {
    if let Some(v) = v {
        if v.len() > MAX_TEXT_LEN || v.chars().any(|c| c.is_control() && c != '\n') {
            return Err(CoreError::invalid(
                "invalid_request",
                format!("`{field}` must be at most {MAX_TEXT_LEN} characters"),
            ));
        }
    }
    Ok(())
}

impl Broker {
    pub(crate) async fn application(&self, id: &str) -> Result<Application, CoreError> {
        self.store
            .get_application(id)
            .await?
            .ok_or(CoreError::NotFound {
                what: "application",
            })
    }

    /// S5: a return URL must be on the application's list exactly — no prefix or
    /// pattern matching, so there is no open redirect.
    fn check_return_url(&self, app: &Application, url: &Option<String>) -> Result<(), CoreError> {
        match url {
            Some(u) if !app.return_urls.iter().any(|a| a == u) => Err(CoreError::invalid(
                "return_url_not_allowed",
                "return_url is not one of the application's return URLs",
            )),
            _ => Ok(()),
        }
    }

    /// The integration exists and the application may use it.
    pub(crate) async fn allowed_integration(
        &self,
        app: &Application,
        slug: &str,
    ) -> Result<Integration, CoreError> {
        let integration = self.integration(slug).await?;
        if let Some(allowed) = &app.allowed_integrations {
            if !allowed.iter().any(|a| a == slug) {
                return Err(CoreError::invalid(
                    "integration_not_allowed",
                    format!("this application may not use integration `{slug}`"),
                ));
            }
        }
        Ok(integration)
    }

    /// Creates a connect session; returns it with its token (shown once) and widget URL.
    pub async fn create_connect_session(
        &self,
        application_id: &str,
        input: NewConnectSession,
    ) -> Result<(ConnectSession, String, String), CoreError> {
        let app = self.application(application_id).await?;
        check_id("user_id", &input.user_id)?;
        if let Some(o) = &input.organization_id {
            check_id("organization_id", o)?;
        }
        check_text("owner", &input.owner)?;
        check_text("purpose", &input.purpose)?;
        self.check_return_url(&app, &input.return_url)?;
        if input.shared && input.organization_id.is_none() {
            return Err(CoreError::invalid(
                "invalid_request",
                "a shared connection needs `organization_id`",
            ));
        }
        if let Some(list) = &input.integrations {
            if list.is_empty() {
                return Err(CoreError::invalid(
                    "invalid_request",
                    "`integrations` must not be empty when given",
                ));
            }
            for slug in list {
                self.allowed_integration(&app, slug).await?;
            }
        }
        let token = format!("kwcs_{}", random_token(32));
        let now = self.clock.now();
        let session = ConnectSession {
            id: new_id("cs"),
            token_hash: sha256_hex(&token),
            application_id: app.id.clone(),
            user_id: input.user_id,
            organization_id: input.organization_id,
            integrations: input.integrations,
            return_url: input.return_url,
            owner: input.owner,
            purpose: input.purpose,
            expires_at: now + self.settings.connect_session_ttl,
            created_at: now,
            shared: input.shared,
        };
        self.store.insert_connect_session(&session).await?;
        let url = format!("{}/connect/{}", self.settings.public_url, token);
        Ok((session, token, url))
    }

    /// Looks up a live connect session by the token in the widget URL.
    pub async fn connect_session_by_token(&self, token: &str) -> Result<ConnectSession, CoreError> {
        let s = self
            .store
            .find_connect_session_by_token_hash(&sha256_hex(token))
            .await?
            .ok_or(CoreError::NotFound {
                what: "connect session",
            })?;
        if s.expires_at <= self.clock.now() {
            return Err(CoreError::invalid(
                "connect_session_expired",
                "this connect link has expired; ask the application for a new one",
            ));
        }
        Ok(s)
    }

    /// What the widget lists: the session's integrations with this user's connections.
    pub async fn widget_view(
        &self,
        session: &ConnectSession,
    ) -> Result<(Application, Vec<WidgetItem>), CoreError> {
        let app = self.application(&session.application_id).await?;
        let slugs: Vec<String> = match (&session.integrations, &app.allowed_integrations) {
            (Some(list), _) => list.clone(),
            (None, Some(allowed)) => allowed.clone(),
            (None, None) => self
                .store
                .list_integrations()
                .await?
                .into_iter()
                .map(|i| i.slug)
                .collect(),
        };
        let mut out = Vec::new();
        for slug in slugs {
            let Some(integration) = self.store.get_integration(&slug).await? else {
                continue;
            };
            if self.catalog.get(&integration.provider).is_none() {
                continue;
            }
            let key = ConnectionKey {
                application_id: app.id.clone(),
                user_id: session.user_id.clone(),
                organization_id: session.organization_id.clone(),
                integration: slug.clone(),
                selector: None,
            };
            let conns = match (&session.organization_id, session.shared) {
                (Some(org), true) => {
                    self.store
                        .find_shared_connections(&app.id, org, &slug)
                        .await?
                }
                _ => self.store.find_connections(&key).await?,
            };
            // One line per integration: the connection needing attention first.
            let conn = conns
                .iter()
                .find(|c| c.status == ConnectionStatus::NeedsReauthorization)
                .or(conns.first())
                .cloned();
            let configured = crate::oauth::requested_scopes(&self.provider_ctx(&integration)?);
            let missing = conn
                .as_ref()
                .map(|c| {
                    configured
                        .iter()
                        .filter(|s| !c.scopes.contains(s))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            out.push(WidgetItem {
                integration,
                primary: conn,
                connections: conns,
                missing_scopes: missing,
            });
        }
        Ok((app, out))
    }

    /// Disconnects one of the session's own connections from the widget: the person
    /// holding the connect link may remove what that link could have connected, nothing
    /// else (the user's, or the organization's when the session connects for it).
    pub async fn disconnect_from_session(
        &self,
        session: &ConnectSession,
        connection_id: &str,
    ) -> Result<(Connection, RevocationOutcome), CoreError> {
        let conn = self
            .store
            .get_connection(connection_id)
            .await?
            .filter(|c| {
                let owner = if session.shared {
                    c.shared && c.organization_id == session.organization_id
                } else {
                    !c.shared
                        && c.user_id == session.user_id
                        && c.organization_id == session.organization_id
                };
                owner
                    && c.application_id == session.application_id
                    && session
                        .integrations
                        .as_ref()
                        .is_none_or(|list| list.contains(&c.integration))
            })
            .ok_or(CoreError::NotFound { what: "connection" })?;
        if conn.status == ConnectionStatus::Revoked {
            return Err(CoreError::Conflict {
                code: "already_revoked",
                detail: "this connection was already disconnected".into(),
            });
        }
        let actor = format!("user:{}", session.user_id);
        let outcome = self.revoke_and_shred(&conn, &actor, "disconnect").await?;
        let conn = self
            .store
            .get_connection(&conn.id)
            .await?
            .ok_or(CoreError::NotFound { what: "connection" })?;
        Ok((conn, outcome))
    }

    /// `POST /v1/integrations/{slug}/authorize`: a link the application sends its user
    /// to. It leads to a Keyway page first, which binds the browser before the provider.
    pub async fn create_authorize_link(
        &self,
        application_id: &str,
        slug: &str,
        user_id: &str,
        organization_id: Option<String>,
        return_url: Option<String>,
    ) -> Result<(AuthorizeLink, String), CoreError> {
        let app = self.application(application_id).await?;
        check_id("user_id", user_id)?;
        if let Some(o) = &organization_id {
            check_id("organization_id", o)?;
        }
        self.check_return_url(&app, &return_url)?;
        self.allowed_integration(&app, slug).await?;
        let link = AuthorizeLink {
            id: new_id("al"),
            application_id: app.id,
            user_id: user_id.to_string(),
            organization_id,
            integration: slug.to_string(),
            connect_session_id: None,
            return_url,
            owner: None,
            purpose: None,
            expires_at: self.clock.now() + self.settings.connect_session_ttl,
        };
        self.store.insert_authorize_link(&link).await?;
        let url = format!("{}/connect/link/{}", self.settings.public_url, link.id);
        Ok((link, url))
    }

    pub async fn authorize_link(&self, id: &str) -> Result<AuthorizeLink, CoreError> {
        let link = self
            .store
            .get_authorize_link(id)
            .await?
            .ok_or(CoreError::NotFound {
                what: "authorization link",
            })?;
        if link.expires_at <= self.clock.now() {
            return Err(CoreError::invalid(
                "link_expired",
                "this link has expired; ask the application for a new one",
            ));
        }
        Ok(link)
    }

    /// Starts the provider redirect. `browser_secret` is the value of the binding cookie
    /// the page set; only its hash is stored, and the callback must present it (S4).
    pub async fn start_authorization(
        &self,
        target: FlowTarget,
        browser_secret: &str,
    ) -> Result<String, CoreError> {
        let app = self.application(&target.application_id).await?;
        let integration = self.allowed_integration(&app, &target.integration).await?;
        let ctx = self.provider_ctx(&integration)?;
        let state = random_token(32);
        let state_hash = sha256_hex(&state);
        let verifier = ctx.entry.provider.oauth()?.pkce.then(|| random_token(48));
        let redirect_uri = self.settings.redirect_uri();
        let url = oauth::authorize_url(
            &ctx,
            &state,
            verifier.as_deref().map(pkce_challenge).as_deref(),
            &redirect_uri,
        )?;
        let pending = PendingAuthorization {
            pkce_verifier_sealed: verifier.as_deref().map(|v| {
                self.vault.seal(
                    FieldRef::new("pending_authorizations", &state_hash, "pkce_verifier"),
                    v,
                )
            }),
            state_hash,
            application_id: target.application_id,
            user_id: target.user_id,
            organization_id: target.organization_id,
            integration: target.integration,
            connect_session_id: target.connect_session_id,
            browser_hash: sha256_hex(browser_secret),
            redirect_uri,
            return_url: target.return_url,
            owner: target.owner,
            purpose: target.purpose,
            expires_at: self.clock.now() + self.settings.state_ttl,
            shared: target.shared,
        };
        self.store.insert_pending_authorization(&pending).await?;
        Ok(url)
    }

    /// Completes `GET /oauth/callback`. The state is consumed first, whatever happens
    /// next: it works once.
    pub async fn complete_callback(
        &self,
        params: CallbackParams,
        browser_secret: Option<&str>,
    ) -> Result<CallbackOutcome, CoreError> {
        let state = params
            .state
            .as_deref()
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or_else(|| {
                CoreError::invalid("invalid_state", "the callback has no state parameter")
            })?;
        let pending = self
            .store
            .take_pending_authorization(&sha256_hex(state))
            .await?
            .ok_or_else(|| {
                CoreError::invalid(
                    "invalid_state",
                    "this authorization is unknown, was already used, or has expired",
                )
            })?;
        if pending.expires_at <= self.clock.now() {
            return Err(CoreError::invalid(
                "invalid_state",
                "this authorization has expired; start again",
            ));
        }
        // S4: the state is bound to the browser that started the flow.
        let bound = browser_secret.is_some_and(|b| {
            subtle::ConstantTimeEq::ct_eq(sha256_hex(b).as_bytes(), pending.browser_hash.as_bytes())
                .into()
        });
        if !bound {
            return Err(CoreError::Forbidden {
                code: "browser_mismatch",
                detail: "this authorization was started in another browser".into(),
            });
        }
        let integration = self.integration(&pending.integration).await?;
        let ctx = self.provider_ctx(&integration)?;
        // RFC 9207 §2.4: compare `iss` with the issuer this request was sent to.
        let o = ctx.entry.provider.oauth()?;
        match (&o.issuer, &params.iss) {
            (Some(expected), Some(got))
                if expected.trim_end_matches('/') != got.trim_end_matches('/') =>
            {
                return Err(CoreError::invalid(
                    "issuer_mismatch",
                    "the authorization response came from an unexpected issuer",
                ));
            }
            (Some(_), None) if o.iss_required => {
                return Err(CoreError::invalid(
                    "issuer_mismatch",
                    "the authorization response has no `iss` parameter",
                ));
            }
            _ => {}
        }
        if let Some(error) = params.error.filter(|e| !e.is_empty()) {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Ok(CallbackOutcome::ProviderError {
                error,
                return_url: pending.return_url,
                integration: pending.integration,
                application_id: pending.application_id,
            });
        }
        let code = params
            .code
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| {
                CoreError::invalid("invalid_request", "the callback has no authorization code")
            })?;
        let verifier = match &pending.pkce_verifier_sealed {
            Some(s) => Some(self.vault.open(
                FieldRef::new(
                    "pending_authorizations",
                    &pending.state_hash,
                    "pkce_verifier",
                ),
                s,
            )?),
            None => None,
        };
        let mut req = oauth::token_request(
            &ctx,
            Grant::AuthorizationCode {
                code: &code,
                redirect_uri: &pending.redirect_uri,
                verifier: verifier.as_ref(),
            },
        )?;
        req.timeout = self.settings.provider_timeout;
        let provider_name = ctx.entry.provider.name.clone();
        let resp = self.http.send(req).await.map_err(|e| match e {
            OutboundError::Refused(d) => CoreError::ProviderRejected {
                provider: provider_name.clone(),
                detail: d,
            },
            _ => CoreError::ProviderUnavailable {
                provider: provider_name.clone(),
                retry_after_secs: 5,
            },
        })?;
        let mut set = oauth::parse_token_response(ctx.entry, &resp).map_err(|e| match e {
            TokenEndpointError::Transient { retry_after, .. } => CoreError::ProviderUnavailable {
                provider: provider_name.clone(),
                retry_after_secs: retry_after.unwrap_or(5),
            },
            TokenEndpointError::DeadGrant { code } | TokenEndpointError::Rejected { code, .. } => {
                CoreError::ProviderRejected {
                    provider: provider_name.clone(),
                    detail: format!("the authorization code was not accepted (`{code}`)"),
                }
            }
        })?;
        if set.account_id.is_none() || set.account_name.is_none() {
            if let Some(mut ireq) = oauth::identity_request(&ctx, &set.access_token, &set.metadata)?
            {
                ireq.timeout = self.settings.provider_timeout;
                match self.http.send(ireq).await {
                    Ok(r) => {
                        if let Some((id, name)) = oauth::parse_identity(ctx.entry, &r) {
                            set.account_id = set.account_id.or(id);
                            set.account_name = set.account_name.or(name);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(provider = %integration.provider, error = %e, "identity call failed")
                    }
                }
            }
        }
        // Salesforce-style API bases must stay on the provider's hosts (S7).
        if let Some(key) = &ctx.entry.provider.api_base_url_from {
            if let Some(base) = set.metadata.get(key) {
                let ok = url::Url::parse(base)
                    .ok()
                    .filter(crate::catalog::load_url_allowed)
                    .and_then(|u| {
                        u.host_str()
                            .map(|h| ctx.entry.hosts.iter().any(|p| p.matches(h)))
                    });
                if ok != Some(true) {
                    return Err(CoreError::ProviderRejected {
                        provider: provider_name,
                        detail: format!(
                            "the provider returned an API host outside {}'s hosts",
                            ctx.entry.provider.name
                        ),
                    });
                }
            }
        }
        let requested = oauth::requested_scopes(&ctx);
        let target = FlowTarget {
            application_id: pending.application_id,
            user_id: pending.user_id,
            organization_id: pending.organization_id,
            integration: pending.integration,
            connect_session_id: pending.connect_session_id,
            return_url: pending.return_url,
            owner: pending.owner,
            purpose: pending.purpose,
            shared: pending.shared,
        };
        let connection = self
            .save_connection(&target, &integration, set, requested, "authorization_code")
            .await?;
        Ok(CallbackOutcome::Connected {
            connection: Box::new(connection),
            return_url: target.return_url,
        })
    }

    /// Connects an API-key provider with what the user typed into the widget's form.
    /// The credential is checked with the provider's identity call first (when the entry
    /// has one) and stored only if the provider accepts it.
    pub async fn connect_api_key(
        &self,
        target: FlowTarget,
        form: &BTreeMap<String, String>,
    ) -> Result<Connection, CoreError> {
        let app = self.application(&target.application_id).await?;
        let integration = self.allowed_integration(&app, &target.integration).await?;
        let ctx = self.provider_ctx(&integration)?;
        let Some(spec) = ctx.entry.provider.api_key.as_ref() else {
            return Err(CoreError::invalid(
                "not_api_key",
                format!(
                    "{} is connected with OAuth, not an API key",
                    ctx.entry.provider.name
                ),
            ));
        };
        let creds = Credentials::from_form(spec, form)?;
        let metadata = creds.public_values(spec);
        // Non-secret values may end up in URLs: check them before any call.
        oauth::connection_values(ctx.entry, &metadata)?;
        let secret = creds.to_secret();
        let provider_name = ctx.entry.provider.name.clone();
        let (mut account_id, mut account_name) = (None, None);
        if let Some(mut req) = oauth::identity_request(&ctx, &secret, &metadata)? {
            req.timeout = self.settings.provider_timeout;
            let resp = self.http.send(req).await.map_err(|e| {
                tracing::warn!(provider = %integration.provider, error = %e, "API key check failed");
                CoreError::ProviderUnavailable {
                    provider: provider_name.clone(),
                    retry_after_secs: 5,
                }
            })?;
            match resp.status {
                200..=299 => {
                    if let Some((id, name)) = oauth::parse_identity(ctx.entry, &resp) {
                        account_id = id;
                        account_name = name;
                    }
                }
                429 | 500..=599 => {
                    return Err(CoreError::ProviderUnavailable {
                        provider: provider_name,
                        retry_after_secs: 5,
                    })
                }
                status => {
                    return Err(CoreError::invalid(
                        "credentials_rejected",
                        format!("{provider_name} did not accept these credentials (HTTP {status}). Check them and try again."),
                    ))
                }
            }
        }
        let set = oauth::TokenSet {
            access_token: secret,
            refresh_token: None,
            token_type: API_KEY_TOKEN_TYPE.into(),
            expires_in: None,
            scopes: Some(Vec::new()),
            account_id,
            account_name,
            metadata,
        };
        self.save_connection(&target, &integration, set, Vec::new(), "api_key")
            .await
    }

    async fn save_connection(
        &self,
        p: &FlowTarget,
        integration: &Integration,
        set: oauth::TokenSet,
        requested: Vec<String>,
        grant: &str,
    ) -> Result<Connection, CoreError> {
        let key = ConnectionKey {
            application_id: p.application_id.clone(),
            user_id: p.user_id.clone(),
            organization_id: p.organization_id.clone(),
            integration: p.integration.clone(),
            selector: None,
        };
        for _ in 0..3 {
            // Reconnecting the same provider account updates its connection; another
            // account (a second Slack workspace) is a connection of its own.
            let candidates = match (&p.organization_id, p.shared) {
                (Some(org), true) => {
                    self.store
                        .find_shared_connections(&p.application_id, org, &p.integration)
                        .await?
                }
                _ => self.store.find_connections(&key).await?,
            };
            let existing = candidates
                .into_iter()
                .find(|c| c.account_id == set.account_id);
            let now = self.clock.now();
            let id = existing
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_else(|| new_id("conn"));
            let tokens = self.seal_tokens(&id, &set, None, now);
            let mut metadata: BTreeMap<String, String> = set.metadata.clone();
            metadata.retain(|_, v| v.len() <= 2048);
            let conn = Connection {
                id: id.clone(),
                application_id: p.application_id.clone(),
                user_id: p.user_id.clone(),
                organization_id: p.organization_id.clone(),
                integration: p.integration.clone(),
                provider: integration.provider.clone(),
                status: ConnectionStatus::Active,
                scopes: set.scopes.clone().unwrap_or_else(|| requested.clone()),
                account_id: set.account_id.clone(),
                account_name: set.account_name.clone(),
                metadata,
                owner: p
                    .owner
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|c| c.owner.clone())),
                purpose: p
                    .purpose
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|c| c.purpose.clone())),
                label: existing
                    .as_ref()
                    .and_then(|c| c.label.clone())
                    .or_else(|| set.account_name.clone()),
                tokens: Some(tokens),
                token_version: existing.as_ref().map(|c| c.token_version + 1).unwrap_or(1),
                created_at: existing.as_ref().map(|c| c.created_at).unwrap_or(now),
                updated_at: now,
                last_used_at: existing.as_ref().and_then(|c| c.last_used_at),
                last_refreshed_at: existing.as_ref().and_then(|c| c.last_refreshed_at),
                last_validated_at: Some(now),
                revoked_at: None,
                revocation: None,
                shared: p.shared,
            };
            let action = match existing.as_ref().map(|c| c.status) {
                None => "connection.created",
                Some(ConnectionStatus::NeedsReauthorization) => "connection.recovered",
                Some(_) => "connection.reconnected",
            };
            let event = AuditEvent::new(now, action, &format!("user:{}", p.user_id))
                .connection(&conn)
                .details(serde_json::json!({
                    "provider": conn.provider,
                    "provider_account": {"id": conn.account_id, "name": conn.account_name},
                    "scopes": conn.scopes,
                    "connect_session_id": p.connect_session_id,
                    "owner": conn.owner,
                    "purpose": conn.purpose,
                    "shared": conn.shared,
                    "grant": grant,
                }));
            match self.store.save_grant(&conn, &[event]).await {
                Ok(()) => {
                    self.cache.forget_connection(&id);
                    self.cache.forget_owner(&key);
                    return Ok(conn);
                }
                Err(crate::error::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Conflict {
            code: "concurrent_connect",
            detail: "another connection for this user was saved at the same time; try again".into(),
        })
    }

    /// Drops expired sessions, links and states; run periodically.
    pub async fn purge_expired(&self) -> Result<u64, CoreError> {
        Ok(self.store.purge_expired(self.clock.now()).await?)
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}
