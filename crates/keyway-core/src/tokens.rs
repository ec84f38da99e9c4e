//! `POST /v1/token`: hand out a fresh access token, refreshing exactly once (R1–R4, R6).
//!
//! * R1 in process: callers for one connection queue on a per-connection async mutex and
//!   re-check after acquiring it, so one refresh serves them all. Across processes: a
//!   lease row with a fence number; the new tokens are written only if the fence is
//!   still ours.
//! * R2: on a dead-grant answer the connection is re-read; if its tokens changed
//!   meanwhile, someone else refreshed and the new token is used.
//! * R3: transient failures are retried with bounded, jittered backoff; a still-valid
//!   token is returned, otherwise `provider_unavailable`.
//! * R4: new tokens are committed before any caller sees them.

use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::error::CoreError;
use crate::model::{Connection, ConnectionKey, ConnectionStatus, SealedTokens};
use crate::oauth::{self, Grant, TokenEndpointError, TokenSet};
use crate::outbound::OutboundError;
use crate::secret::Secret;
use crate::store::RefreshedTokens;
use crate::vault::FieldRef;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// The reserved user id of app-level connections (client-credentials providers).
pub const APP_USER: &str = "@app";

/// What the token call answers.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub connection_id: String,
    pub access_token: Secret,
    pub token_type: String,
    pub expires_at: Option<OffsetDateTime>,
    pub scopes: Vec<String>,
    pub missing_scopes: Vec<String>,
    /// Served from the organization's shared connection rather than the user's own.
    pub shared: bool,
    /// For API-key providers: the credential's fields (`api_key`, `account_sid`...),
    /// instead of an access token.
    pub credentials: Option<crate::credentials::Credentials>,
}

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub application_id: String,
    pub integration: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    /// Who asks, for the audit log (`key:<api key id>`).
    pub actor: String,
    /// Which of several connections (two Slack workspaces): by id or by label.
    pub connection_id: Option<String>,
    pub label: Option<String>,
}

#[derive(Clone)]
pub(crate) struct CachedToken {
    connection_id: String,
    pub(crate) access_token: Secret,
    token_type: String,
    expires_at: Option<OffsetDateTime>,
    scopes: Vec<String>,
    last_used_written: OffsetDateTime,
    /// The connection's `token_version` this token came with.
    version: i64,
    shared: bool,
    account_id: Option<String>,
    /// When to refresh ahead of expiry: the refresh-ahead window, but never more than
    /// half the token's lifetime, so short-lived tokens are not refreshed on every call.
    refresh_at: Option<OffsetDateTime>,
}

/// Opened access tokens of active connections, by connection key. Entries are dropped
/// whenever the connection's tokens or status change in this process.
#[derive(Default)]
pub(crate) struct TokenCache {
    inner: Mutex<HashMap<ConnectionKey, CachedToken>>,
}

impl TokenCache {
    fn get(&self, key: &ConnectionKey) -> Option<CachedToken> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }
    fn put(&self, key: ConnectionKey, t: CachedToken) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, t);
    }
    fn mark_used(&self, key: &ConnectionKey, at: OffsetDateTime) {
        if let Some(t) = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(key)
        {
            t.last_used_written = at;
        }
    }
    /// Drops every entry of an application (another process added a connection there,
    /// which may make an unnamed call ambiguous or a shared connection shadowed).
    pub(crate) fn forget_application(&self, application_id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k.application_id != application_id);
    }
    pub(crate) fn clear(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    pub(crate) fn forget_connection(&self, id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| v.connection_id != id);
    }
    /// Drops every entry of a user's key: a new connection may make an unnamed call
    /// ambiguous.
    pub(crate) fn forget_owner(&self, key: &ConnectionKey) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| !k.same_owner(key));
    }
}

/// Counters for `/metrics` and the benchmarks.
#[derive(Default)]
pub struct RefreshStats {
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    pub token_calls: AtomicU64,
}

impl RefreshStats {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.token_calls.load(Ordering::Relaxed),
            self.refreshes.load(Ordering::Relaxed),
            self.refresh_failures.load(Ordering::Relaxed),
        )
    }
}

enum RefreshOutcome {
    Tokens(Box<TokenSet>),
    Dead(String),
    Transient(String, Option<u64>),
    Rejected(String),
}

impl Broker {
    pub fn refresh_stats(&self) -> &RefreshStats {
        &self.stats
    }

    /// The token call. `application_id` comes from the caller's API key (S6).
    pub async fn issue_token(&self, req: &TokenRequest) -> Result<IssuedToken, CoreError> {
        self.stats.token_calls.fetch_add(1, Ordering::Relaxed);
        let integration = match self.integration(&req.integration).await {
            Ok(i) => i,
            Err(CoreError::Invalid {
                code: "unknown_integration",
                ..
            }) => {
                return Err(CoreError::NotInstalled {
                    integration: req.integration.clone(),
                })
            }
            Err(e) => return Err(e),
        };
        // App-level tokens (client-credentials providers) belong to the application, not a user.
        let app_level = self.entry(&integration.provider)?.provider.is_app_level();
        let key = ConnectionKey {
            application_id: req.application_id.clone(),
            user_id: if app_level {
                APP_USER.to_string()
            } else {
                req.user_id.clone()
            },
            organization_id: req.organization_id.clone(),
            integration: req.integration.clone(),
            selector: match (&req.connection_id, &req.label) {
                (Some(id), _) => Some(format!("id:{id}")),
                (None, Some(l)) => Some(format!("label:{l}")),
                (None, None) => None,
            },
        };
        let configured = self.configured_scopes(&integration);
        let now = self.clock.now();
        if let Some(c) = self.cache.get(&key) {
            if is_fresh(&c, now) {
                self.note_use(&key, &c.connection_id, c.last_used_written, now)
                    .await;
                return self.hand_out(req, &c, &configured).await;
            }
            // Known but due: queue for the refresh without another lookup, so a storm
            // of callers costs one database read, not one each.
            let cached = self
                .refresh_queued(&key, &c.connection_id, c.version, &req.actor)
                .await?;
            self.note_use(&key, &cached.connection_id, cached.last_used_written, now)
                .await;
            return self.hand_out(req, &cached, &configured).await;
        }
        let conn = if app_level {
            self.app_connection(req, &key, &integration).await?
        } else {
            self.resolve_connection(req, &key).await?
        };
        let cached = self.usable_or_refresh(&key, conn, &req.actor).await?;
        self.note_use(&key, &cached.connection_id, cached.last_used_written, now)
            .await;
        self.hand_out(req, &cached, &configured).await
    }

    /// The application's connection to a client-credentials provider, created on the
    /// first call: the flight lock makes one upstream call serve every concurrent first
    /// caller, and the live-key index settles a race between processes.
    async fn app_connection(
        &self,
        req: &TokenRequest,
        key: &ConnectionKey,
        integration: &crate::model::Integration,
    ) -> Result<Connection, CoreError> {
        if let Some(c) = self.store.find_connections(key).await?.into_iter().next() {
            return Ok(c);
        }
        let flight_id = format!("app:{}:{}", key.application_id, key.integration);
        let lock = self.flight(&flight_id);
        let result = async {
            let _guard = lock.lock().await;
            if let Some(c) = self.store.find_connections(key).await?.into_iter().next() {
                return Ok(c);
            }
            let set = match self.call_refresh(integration, None).await? {
                RefreshOutcome::Tokens(set) => set,
                RefreshOutcome::Transient(detail, retry_after) => {
                    tracing::warn!(integration = %integration.slug, %detail, "app token request failed transiently");
                    return Err(CoreError::ProviderUnavailable { provider: integration.provider.clone(), retry_after_secs: retry_after.unwrap_or(5).clamp(1, 300) });
                }
                RefreshOutcome::Dead(detail) | RefreshOutcome::Rejected(detail) => {
                    return Err(CoreError::ProviderRejected { provider: integration.provider.clone(), detail });
                }
            };
            self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
            let now = self.clock.now();
            let id = crate::ids::new_id("conn");
            let requested = self.configured_scopes(integration);
            let conn = Connection {
                id: id.clone(),
                application_id: key.application_id.clone(),
                user_id: APP_USER.into(),
                organization_id: None,
                integration: integration.slug.clone(),
                provider: integration.provider.clone(),
                status: ConnectionStatus::Active,
                scopes: set.scopes.clone().unwrap_or(requested),
                account_id: None,
                account_name: None,
                metadata: Default::default(),
                owner: None,
                purpose: Some("app-level token (client credentials)".into()),
                label: Some("app".into()),
                tokens: Some(self.seal_tokens(&id, &set, None, now)),
                token_version: 1,
                created_at: now,
                updated_at: now,
                last_used_at: None,
                last_refreshed_at: Some(now),
                last_validated_at: None,
                revoked_at: None,
                revocation: None,
                shared: false,
            };
            let event = AuditEvent::new(now, "connection.created", &req.actor)
                .connection(&conn)
                .details(serde_json::json!({"provider": conn.provider, "grant": "client_credentials", "scopes": conn.scopes}));
            match self.store.save_grant(&conn, &[event]).await {
                Ok(()) => Ok(conn),
                // Another process created it first: use theirs.
                Err(crate::StoreError::Conflict(_)) => self.store.find_connections(key).await?.into_iter().next().ok_or(CoreError::NotInstalled { integration: integration.slug.clone() }),
                Err(e) => Err(e.into()),
            }
        }
        .await;
        self.drop_flight(&flight_id, &lock);
        result
    }

    /// Which live connection a token call means: the named one, the labelled one, or the
    /// only one; several without a name is `ambiguous_connection`.
    async fn resolve_connection(
        &self,
        req: &TokenRequest,
        key: &ConnectionKey,
    ) -> Result<Connection, CoreError> {
        let personal = self.store.find_connections(key).await?;
        let shared = match &req.organization_id {
            Some(org) => {
                self.store
                    .find_shared_connections(&req.application_id, org, &req.integration)
                    .await?
            }
            None => Vec::new(),
        };
        let not_installed = || CoreError::NotInstalled {
            integration: req.integration.clone(),
        };
        if let Some(id) = &req.connection_id {
            return personal
                .into_iter()
                .chain(shared)
                .find(|c| &c.id == id)
                .ok_or_else(not_installed);
        }
        // The documented rule: a user's own connections win; the organization's shared
        // ones answer only when the user has none (or none with the asked label).
        let pick = |mut list: Vec<Connection>| {
            if let Some(label) = &req.label {
                list.retain(|c| c.label.as_deref() == Some(label.as_str()));
            }
            list
        };
        let mut conns = pick(personal);
        if conns.is_empty() {
            conns = pick(shared);
        }
        match conns.len() {
            0 => Err(not_installed()),
            1 => Ok(conns.remove(0)),
            _ => Err(CoreError::Ambiguous {
                integration: req.integration.clone(),
                choices: conns
                    .iter()
                    .map(|c| crate::model::ConnectionChoice {
                        connection_id: c.id.clone(),
                        label: c.label.clone(),
                        account_name: c.account_name.clone(),
                    })
                    .collect(),
            }),
        }
    }

    fn configured_scopes(&self, integration: &crate::model::Integration) -> Vec<String> {
        let api_key = self
            .catalog
            .get(&integration.provider)
            .is_some_and(|e| e.provider.api_key.is_some());
        if api_key {
            Vec::new()
        } else if integration.scopes.is_empty() {
            self.catalog
                .get(&integration.provider)
                .map(|e| e.provider.default_scopes().to_vec())
                .unwrap_or_default()
        } else {
            integration.scopes.clone()
        }
    }

    /// Every token handed out is audited first, through the group commit: no audit, no
    /// token.
    async fn hand_out(
        &self,
        req: &TokenRequest,
        c: &CachedToken,
        configured: &[String],
    ) -> Result<IssuedToken, CoreError> {
        let mut event = AuditEvent::new(self.clock.now(), "token.issued", &req.actor)
            .application(&req.application_id)
            .user(&req.user_id)
            .integration(&req.integration)
            .details(serde_json::json!({
                "organization_id": req.organization_id,
                "provider_account": c.account_id,
                "expires_at": c.expires_at.map(crate::clock::rfc3339),
            }));
        event.connection_id = Some(c.connection_id.clone());
        self.record(event).await?;
        Ok(self.answer(c, configured))
    }

    fn answer(&self, c: &CachedToken, configured: &[String]) -> IssuedToken {
        IssuedToken {
            connection_id: c.connection_id.clone(),
            access_token: c.access_token.clone(),
            token_type: c.token_type.clone(),
            expires_at: c.expires_at,
            scopes: c.scopes.clone(),
            missing_scopes: configured
                .iter()
                .filter(|s| !c.scopes.contains(s))
                .cloned()
                .collect(),
            shared: c.shared,
            credentials: (c.token_type == crate::credentials::API_KEY_TOKEN_TYPE)
                .then(|| crate::credentials::Credentials::from_secret(&c.access_token).ok())
                .flatten(),
        }
    }

    fn refresh_at(
        &self,
        expires_at: Option<OffsetDateTime>,
        obtained_at: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        expires_at.map(|e| {
            let half_life = (e - obtained_at) / 2;
            e - self
                .settings
                .refresh_ahead
                .min(half_life)
                .max(time::Duration::ZERO)
        })
    }

    /// `last_used_at` is written at most once per interval per connection, so the hot
    /// path stays in memory.
    async fn note_use(
        &self,
        key: &ConnectionKey,
        id: &str,
        last_written: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        if now - last_written < self.settings.usage_write_interval {
            return;
        }
        self.cache.mark_used(key, now);
        if let Err(e) = self.store.touch_last_used(id, now).await {
            tracing::warn!(connection = id, error = %e, "could not record last use");
        }
    }

    fn check_status(&self, conn: &Connection) -> Result<(), CoreError> {
        match conn.status {
            ConnectionStatus::Active => Ok(()),
            ConnectionStatus::Revoked => Err(CoreError::NotInstalled {
                integration: conn.integration.clone(),
            }),
            ConnectionStatus::NeedsReauthorization => Err(CoreError::NeedsReauthorization {
                connection_id: conn.id.clone(),
                reconnect_url: None,
            }),
        }
    }

    pub(crate) fn open_cached_pub(
        &self,
        conn: &Connection,
    ) -> Result<(CachedToken, Option<Secret>), CoreError> {
        self.open_cached(conn)
    }

    fn open_cached(&self, conn: &Connection) -> Result<(CachedToken, Option<Secret>), CoreError> {
        let tokens = conn
            .tokens
            .as_ref()
            .ok_or_else(|| CoreError::NotInstalled {
                integration: conn.integration.clone(),
            })?;
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
        let last = conn.last_used_at.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok((
            CachedToken {
                connection_id: conn.id.clone(),
                access_token: access,
                token_type: tokens.token_type.clone(),
                expires_at: tokens.expires_at,
                scopes: conn.scopes.clone(),
                last_used_written: last,
                account_id: conn.account_id.clone(),
                version: conn.token_version,
                shared: conn.shared,
                refresh_at: self.refresh_at(tokens.expires_at, conn.updated_at),
            },
            refresh,
        ))
    }

    pub(crate) fn flight(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut f = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        f.entry(id.to_string()).or_default().clone()
    }

    pub(crate) fn drop_flight(&self, id: &str, lock: &Arc<tokio::sync::Mutex<()>>) {
        let mut f = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours. Anyone else waiting keeps it alive.
        if Arc::strong_count(lock) <= 2 {
            f.remove(id);
        }
    }

    async fn usable_or_refresh(
        &self,
        key: &ConnectionKey,
        conn: Connection,
        actor: &str,
    ) -> Result<CachedToken, CoreError> {
        self.check_status(&conn)?;
        let (cached, _) = self.open_cached(&conn)?;
        if is_fresh(&cached, self.clock.now()) {
            self.cache.put(key.clone(), cached.clone());
            return Ok(cached);
        }
        self.refresh_queued(key, &conn.id, cached.version, actor)
            .await
    }

    /// Waits for this connection's flight lock, then refreshes unless someone else
    /// already did.
    async fn refresh_queued(
        &self,
        key: &ConnectionKey,
        id: &str,
        seen: i64,
        actor: &str,
    ) -> Result<CachedToken, CoreError> {
        let lock = self.flight(id);
        let result = {
            let _guard = lock.lock().await;
            self.refresh_locked(key, id, seen, actor).await
        };
        self.drop_flight(id, &lock);
        result
    }

    /// Runs with the in-process flight lock held.
    /// `seen` is the token version the caller found stale: any newer, still valid token
    /// is the one it waited for.
    async fn refresh_locked(
        &self,
        key: &ConnectionKey,
        id: &str,
        seen: i64,
        actor: &str,
    ) -> Result<CachedToken, CoreError> {
        // Someone in this process may have refreshed while we waited.
        if let Some(c) = self.cache.get(key) {
            if is_fresh(&c, self.clock.now())
                || (c.version != seen && still_valid(&c, self.clock.now()).is_some())
            {
                return Ok(c);
            }
        }
        let deadline = self.clock.now() + self.settings.lease_ttl * 2;
        let mut wait = std::time::Duration::from_millis(20);
        // With a change feed, the lease holder's write wakes us; the backoff is a fallback.
        let max_wait = if self.changes.has_feed() {
            std::time::Duration::from_secs(1)
        } else {
            std::time::Duration::from_millis(250)
        };
        loop {
            // Armed before the read, so a write committed after it still wakes us.
            let changed = self.changes.notify.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let conn =
                self.store
                    .get_connection(id)
                    .await?
                    .ok_or_else(|| CoreError::NotInstalled {
                        integration: key.integration.clone(),
                    })?;
            self.check_status(&conn)?;
            let (cached, _) = self.open_cached(&conn)?;
            let now = self.clock.now();
            if is_fresh(&cached, now)
                || (cached.version != seen && still_valid(&cached, now).is_some())
            {
                self.cache.put(key.clone(), cached.clone());
                return Ok(cached);
            }
            let until = now + self.settings.lease_ttl;
            match self
                .store
                .acquire_refresh_lease(id, &self.holder_id, now, until)
                .await?
            {
                Some(fence) => {
                    // Re-read under the lease: the refresh must use the newest refresh token.
                    let conn = self.store.get_connection(id).await?.ok_or_else(|| {
                        CoreError::NotInstalled {
                            integration: key.integration.clone(),
                        }
                    })?;
                    let result = self.refresh_with_lease(key, conn, fence, actor).await;
                    if result.is_err() {
                        let _ = self.store.release_refresh_lease(id, fence).await;
                    }
                    return result;
                }
                None => {
                    // Another process holds the lease: wait for its write, bounded.
                    if self.clock.now() > deadline {
                        if let Some(c) = still_valid(&cached, self.clock.now()) {
                            return Ok(c);
                        }
                        return Err(CoreError::ProviderUnavailable {
                            provider: conn.provider.clone(),
                            retry_after_secs: 1,
                        });
                    }
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(max_wait);
                }
            }
        }
    }

    async fn refresh_with_lease(
        &self,
        key: &ConnectionKey,
        conn: Connection,
        fence: i64,
        actor: &str,
    ) -> Result<CachedToken, CoreError> {
        self.refresh_with_lease_opt(key, conn, fence, actor, false)
            .await
    }

    /// `force`: refresh even a fresh token (keep-alive ahead of expiry, idle grants).
    pub(crate) async fn refresh_with_lease_opt(
        &self,
        key: &ConnectionKey,
        conn: Connection,
        fence: i64,
        actor: &str,
        force: bool,
    ) -> Result<CachedToken, CoreError> {
        self.check_status(&conn)?;
        let (current, refresh_token) = self.open_cached(&conn)?;
        if !force && is_fresh(&current, self.clock.now()) {
            self.store.release_refresh_lease(&conn.id, fence).await?;
            self.cache.put(key.clone(), current.clone());
            return Ok(current);
        }
        let integration = self.integration(&conn.integration).await?;
        let app_level = self.entry(&integration.provider)?.provider.is_app_level();
        if refresh_token.is_none() && !app_level {
            // Expired and nothing to refresh with: only the user can fix this.
            return self.dead_grant(&conn, "no_refresh_token", actor).await;
        }
        match self
            .call_refresh(&integration, refresh_token.as_ref())
            .await?
        {
            RefreshOutcome::Tokens(set) => {
                self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                let now = self.clock.now();
                let sealed = self.seal_tokens(&conn.id, &set, refresh_token.as_ref(), now);
                let scopes = set.scopes.clone().unwrap_or_else(|| conn.scopes.clone());
                let written = self
                    .store
                    .write_refreshed_tokens(
                        &conn.id,
                        fence,
                        &RefreshedTokens {
                            tokens: sealed.clone(),
                            scopes: scopes.clone(),
                            refreshed_at: now,
                        },
                        &[AuditEvent::new(now, "connection.refreshed", actor)
                            .connection(&conn)
                            .details(serde_json::json!({
                                "expires_at": sealed.expires_at.map(crate::clock::rfc3339),
                                "refresh_token_rotated": set.refresh_token.is_some(),
                            }))],
                    )
                    .await?;
                if !written {
                    // Our lease was taken over; whoever holds it now wrote or will write
                    // newer tokens, and ours must not overwrite them.
                    tracing::warn!(connection = %conn.id, "refresh lease lost; discarding our result");
                    let latest = self.store.get_connection(&conn.id).await?;
                    if let Some(latest) = latest {
                        let (c, _) = self.open_cached(&latest)?;
                        if let Some(c) = still_valid(&c, self.clock.now()) {
                            return Ok(c);
                        }
                    }
                    return Err(CoreError::ProviderUnavailable {
                        provider: conn.provider.clone(),
                        retry_after_secs: 1,
                    });
                }
                let cached = CachedToken {
                    connection_id: conn.id.clone(),
                    access_token: set.access_token.clone(),
                    token_type: set.token_type.clone(),
                    expires_at: sealed.expires_at,
                    scopes,
                    last_used_written: current.last_used_written,
                    account_id: conn.account_id.clone(),
                    version: conn.token_version + 1,
                    shared: conn.shared,
                    refresh_at: self.refresh_at(sealed.expires_at, now),
                };
                // Entries under other selectors (by id, by label, unnamed) hold the old token.
                self.cache.forget_connection(&conn.id);
                self.cache.put(key.clone(), cached.clone());
                Ok(cached)
            }
            RefreshOutcome::Dead(code) => {
                self.stats.refresh_failures.fetch_add(1, Ordering::Relaxed);
                // R2: a changed token means another refresher won the race.
                if let Some(latest) = self.store.get_connection(&conn.id).await? {
                    if latest.token_version != conn.token_version {
                        self.store.release_refresh_lease(&conn.id, fence).await?;
                        self.check_status(&latest)?;
                        let (c, _) = self.open_cached(&latest)?;
                        self.cache.put(key.clone(), c.clone());
                        return Ok(c);
                    }
                }
                self.dead_grant(&conn, &code, actor).await
            }
            RefreshOutcome::Transient(detail, retry_after) => {
                self.stats.refresh_failures.fetch_add(1, Ordering::Relaxed);
                self.store.release_refresh_lease(&conn.id, fence).await?;
                tracing::warn!(connection = %conn.id, provider = %conn.provider, %detail, "refresh failed transiently");
                if let Some(c) = still_valid(&current, self.clock.now()) {
                    return Ok(c);
                }
                Err(CoreError::ProviderUnavailable {
                    provider: conn.provider.clone(),
                    retry_after_secs: retry_after.unwrap_or(5).clamp(1, 300),
                })
            }
            RefreshOutcome::Rejected(detail) => {
                self.stats.refresh_failures.fetch_add(1, Ordering::Relaxed);
                self.store.release_refresh_lease(&conn.id, fence).await?;
                tracing::warn!(connection = %conn.id, provider = %conn.provider, %detail, "provider rejected the refresh");
                if let Some(c) = still_valid(&current, self.clock.now()) {
                    return Ok(c);
                }
                Err(CoreError::ProviderRejected {
                    provider: conn.provider.clone(),
                    detail,
                })
            }
        }
    }

    async fn dead_grant(
        &self,
        conn: &Connection,
        code: &str,
        actor: &str,
    ) -> Result<CachedToken, CoreError> {
        let now = self.clock.now();
        let marked = self
            .store
            .mark_needs_reauthorization(
                &conn.id,
                conn.token_version,
                now,
                &[
                    AuditEvent::new(now, "connection.needs_reauthorization", actor)
                        .connection(conn)
                        .details(serde_json::json!({"error": code, "provider": conn.provider})),
                ],
            )
            .await?;
        self.cache.forget_connection(&conn.id);
        if marked {
            tracing::info!(connection = %conn.id, provider = %conn.provider, code, "grant is dead; connection needs reauthorization");
        }
        Err(CoreError::NeedsReauthorization {
            connection_id: conn.id.clone(),
            reconnect_url: None,
        })
    }

    /// Seals a token set for a connection; keeps the old refresh token when the provider
    /// did not send a new one.
    pub(crate) fn seal_tokens(
        &self,
        id: &str,
        set: &TokenSet,
        old_refresh: Option<&Secret>,
        now: OffsetDateTime,
    ) -> SealedTokens {
        let refresh = set.refresh_token.as_ref().or(old_refresh);
        SealedTokens {
            access_token: self.vault.seal(
                FieldRef::new("connections", id, "access_token"),
                set.access_token.expose(),
            ),
            refresh_token: refresh.map(|r| {
                self.vault.seal(
                    FieldRef::new("connections", id, "refresh_token"),
                    r.expose(),
                )
            }),
            token_type: set.token_type.clone(),
            expires_at: set
                .expires_in
                .map(|s| now + time::Duration::seconds(s.min(i64::MAX as u64 / 2) as i64)),
        }
    }

    /// One refresh, retried on transient failures with jittered exponential backoff.
    /// `None`: an app-level token (client-credentials grant) instead of a refresh.
    async fn call_refresh(
        &self,
        integration: &crate::model::Integration,
        refresh_token: Option<&Secret>,
    ) -> Result<RefreshOutcome, CoreError> {
        let ctx = self.provider_ctx(integration)?;
        let mut last = RefreshOutcome::Transient("no attempt".into(), None);
        for attempt in 0..self.settings.refresh_attempts.max(1) {
            if attempt > 0 {
                let base = self.settings.retry_base_delay * 2u32.pow(attempt - 1);
                let jitter = rand::thread_rng().gen_range(0.5..1.5);
                tokio::time::sleep(base.mul_f64(jitter)).await;
            }
            let grant = match refresh_token {
                Some(refresh_token) => Grant::Refresh { refresh_token },
                None => Grant::ClientCredentials,
            };
            let mut req = oauth::token_request(&ctx, grant)?;
            req.timeout = self.settings.provider_timeout;
            last = match self.http.send(req).await {
                Ok(resp) => match oauth::parse_token_response(ctx.entry, &resp) {
                    Ok(set) => return Ok(RefreshOutcome::Tokens(Box::new(set))),
                    Err(TokenEndpointError::DeadGrant { code }) => {
                        return Ok(RefreshOutcome::Dead(code))
                    }
                    Err(TokenEndpointError::Rejected { detail, .. }) => {
                        return Ok(RefreshOutcome::Rejected(detail))
                    }
                    Err(TokenEndpointError::Transient {
                        detail,
                        retry_after,
                    }) => RefreshOutcome::Transient(detail, retry_after),
                },
                Err(OutboundError::Refused(d)) => return Ok(RefreshOutcome::Rejected(d)),
                Err(e) => RefreshOutcome::Transient(e.to_string(), None),
            };
        }
        Ok(last)
    }
}

fn is_fresh(c: &CachedToken, now: OffsetDateTime) -> bool {
    c.refresh_at.is_none_or(|r| r > now)
}

fn still_valid(c: &CachedToken, now: OffsetDateTime) -> Option<CachedToken> {
    match c.expires_at {
        Some(e) if e <= now => None,
        _ => Some(c.clone()),
    }
}
