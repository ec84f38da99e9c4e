//! The storage contract. One trait, implemented for SQLite and PostgreSQL in
//! `keyway-store`, tested by the same suite against each.
//!
//! Every method is one atomic step: where a rule needs "read then write" the method does
//! it in one statement or one transaction, so nothing is half-written (S10). Methods that
//! change something take the audit events that record the change and append them to the
//! chain in the same transaction, only if the change happened.

use crate::audit::{AuditEvent, AuditRecord};
use crate::error::StoreError;
use crate::model::*;
use async_trait::async_trait;
use time::OffsetDateTime;

/// A sealed value somewhere in the database, for master-key rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub table: &'static str,
    pub record_id: String,
    pub field: &'static str,
    pub value: String,
}

/// New tokens from a refresh, already sealed.
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    pub tokens: SealedTokens,
    pub scopes: Vec<String>,
    pub refreshed_at: OffsetDateTime,
}

/// What other processes sharing the database changed, as far as this one's caches care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionChange {
    /// A connection's tokens, status or refresh lease changed (refreshed, revoked, lost
    /// its grant, lease released).
    Changed(String),
    /// A connection was created in this application.
    Added { application_id: String },
    /// Changes may have been missed (the feed reconnected): forget everything cached.
    Resync,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Changes made by any process sharing this database, pushed as they commit; `None`
    /// when the store has no such feed (then caches rely on their time bounds and refresh
    /// waiters on a bounded backoff).
    fn connection_changes(&self) -> Option<tokio::sync::broadcast::Receiver<ConnectionChange>> {
        None
    }

    // Applications and API keys.
    async fn insert_application(
        &self,
        app: &Application,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    async fn get_application(&self, id: &str) -> Result<Option<Application>, StoreError>;
    /// Writes the editable fields (name, URLs, origins, integrations, login URL,
    /// branding); `false` when there is no such application.
    async fn update_application(
        &self,
        app: &Application,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;
    async fn list_applications(&self) -> Result<Vec<Application>, StoreError>;
    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list_api_keys(
        &self,
        application_id: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks a key revoked; false if there was no such live key.
    async fn revoke_api_key(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;

    // Integrations.
    /// Fails with [`StoreError::Conflict`] if the slug exists.
    async fn insert_integration(
        &self,
        integration: &Integration,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    async fn get_integration(&self, slug: &str) -> Result<Option<Integration>, StoreError>;
    async fn list_integrations(&self) -> Result<Vec<Integration>, StoreError>;
    async fn update_integration(
        &self,
        integration: &Integration,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;

    // Connect sessions, authorization links and pending authorizations.
    async fn insert_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError>;
    async fn find_connect_session_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<ConnectSession>, StoreError>;
    async fn insert_authorize_link(&self, link: &AuthorizeLink) -> Result<(), StoreError>;
    async fn get_authorize_link(&self, id: &str) -> Result<Option<AuthorizeLink>, StoreError>;
    async fn insert_pending_authorization(
        &self,
        p: &PendingAuthorization,
    ) -> Result<(), StoreError>;
    /// Removes and returns the pending authorization: a `state` works once (S4).
    async fn take_pending_authorization(
        &self,
        state_hash: &str,
    ) -> Result<Option<PendingAuthorization>, StoreError>;
    /// Deletes expired sessions, links and pending authorizations.
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    // Connections.
    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError>;
    /// The user's own live (not revoked, not shared) connections for a key, oldest first:
    /// one per provider account.
    async fn find_connections(&self, key: &ConnectionKey) -> Result<Vec<Connection>, StoreError>;
    /// The live organization-shared connections of an organization for an integration.
    async fn find_shared_connections(
        &self,
        application_id: &str,
        organization_id: &str,
        integration: &str,
    ) -> Result<Vec<Connection>, StoreError>;
    async fn list_connections(
        &self,
        filter: &ConnectionFilter,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Inserts a new connection or replaces the grant of the one with the same id (a
    /// reconnect): tokens, scopes, account, status `active`, `token_version` + 1.
    /// [`StoreError::Conflict`] if another connection holds the same key and provider account.
    async fn save_grant(
        &self,
        connection: &Connection,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    #[allow(clippy::too_many_arguments)]
    async fn update_connection_details(
        &self,
        id: &str,
        owner: Option<Option<String>>,
        purpose: Option<Option<String>>,
        label: Option<Option<String>>,
        at: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;
    async fn touch_last_used(&self, id: &str, at: OffsetDateTime) -> Result<(), StoreError>;

    // Refresh lease (R1 across processes) and fenced writes.
    /// Takes the refresh lease if it is free or expired; returns the new fence number.
    async fn acquire_refresh_lease(
        &self,
        id: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError>;
    /// Writes refreshed tokens only if the lease `fence` is still the current one, then
    /// releases the lease. False means the lease was lost and nothing was written.
    async fn write_refreshed_tokens(
        &self,
        id: &str,
        fence: i64,
        tokens: &RefreshedTokens,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;
    async fn release_refresh_lease(&self, id: &str, fence: i64) -> Result<(), StoreError>;
    /// Marks `needs_reauthorization` only if no token was written since `token_version`
    /// (R2: a changed version means a race, not a dead grant).
    async fn mark_needs_reauthorization(
        &self,
        id: &str,
        token_version: i64,
        at: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;
    /// Status `revoked`, token material erased (crypto-shred), record kept as a tombstone;
    /// with `retry`, the failed provider revocation is queued in the same transaction.
    async fn revoke_connection(
        &self,
        id: &str,
        outcome: RevocationOutcome,
        at: OffsetDateTime,
        retry: Option<&RevocationRetry>,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;

    // Keep-alive (R5).
    /// Active connections with a refresh token whose access token expires before
    /// `expiring_before` and that were used since `used_since`.
    async fn expiring_recently_used(
        &self,
        expiring_before: OffsetDateTime,
        used_since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Active connections of `provider` with a refresh token, last refreshed (or created)
    /// before `before`.
    async fn idle_grants(
        &self,
        provider: &str,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Active connections whose access token does not expire, last validated (or created)
    /// before `before`.
    async fn unvalidated_non_expiring(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
    async fn mark_validated(&self, id: &str, at: OffsetDateTime) -> Result<(), StoreError>;

    // Revocation retries.
    async fn due_revocation_retries(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<RevocationRetry>, StoreError>;
    async fn reschedule_revocation_retry(
        &self,
        id: &str,
        attempts: i64,
        next_attempt_at: OffsetDateTime,
        last_error: &str,
    ) -> Result<(), StoreError>;
    /// Deletes the retry (and with it the last copy of the tokens).
    async fn finish_revocation_retry(
        &self,
        id: &str,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;

    // The audit chain.
    /// Appends events in one transaction (the group commit of token events).
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// Records with `seq > after_seq`, in order.
    async fn list_audit(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// Records with `seq < before_seq` (all when `None`), newest first.
    async fn list_audit_desc(
        &self,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// A connection's history, newest first.
    async fn audit_for_connection(
        &self,
        connection_id: &str,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// How many events of each of `actions` happened per hour since `since`:
    /// `(hour start, action, count)`.
    async fn audit_activity(
        &self,
        since: OffsetDateTime,
        actions: &[&str],
    ) -> Result<Vec<(OffsetDateTime, String, u64)>, StoreError>;

    // Agents.
    /// Saves a client; a client ID metadata document fetched again replaces its entry.
    async fn insert_agent_client(&self, c: &AgentClient) -> Result<(), StoreError>;
    async fn get_agent_client(&self, id: &str) -> Result<Option<AgentClient>, StoreError>;
    async fn insert_agent_authorization(&self, a: &AgentAuthorization) -> Result<(), StoreError>;
    async fn get_agent_authorization(
        &self,
        id: &str,
    ) -> Result<Option<AgentAuthorization>, StoreError>;
    /// Records who the application says the user is; only once, and only while pending.
    async fn identify_agent_authorization(
        &self,
        id: &str,
        user_id: &str,
        organization_id: Option<&str>,
        approval_hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Marks the request approved or denied (once) and, when approved, saves the session
    /// with its audit events in the same transaction.
    async fn finish_agent_authorization(
        &self,
        id: &str,
        session: Option<&AgentSession>,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;
    /// Redeems an authorization code once: returns the session it belongs to.
    async fn redeem_agent_code(
        &self,
        code_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<AgentSession>, StoreError>;
    async fn insert_agent_token(
        &self,
        hash: &str,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The live session of an access token (not expired, not revoked).
    async fn agent_session_by_token(
        &self,
        hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<AgentSession>, StoreError>;
    async fn get_agent_session(&self, id: &str) -> Result<Option<AgentSession>, StoreError>;
    async fn list_agent_sessions(
        &self,
        application_id: Option<&str>,
        user_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AgentSession>, StoreError>;
    async fn insert_agent_call(&self, call: &AgentCall) -> Result<(), StoreError>;
    /// A session's timeline, oldest first.
    async fn list_agent_calls(
        &self,
        session_id: &str,
        limit: u32,
    ) -> Result<Vec<AgentCall>, StoreError>;
    /// Ends a session now and deletes its tokens; false if it had already ended.
    async fn revoke_agent_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;

    // Webhooks and their outbox. Deliveries are queued by the audit append itself (see
    // `append_audit` and every audited write) for events in `webhooks::EVENTS`.
    async fn insert_webhook(
        &self,
        hook: &crate::webhooks::Webhook,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    async fn get_webhook(&self, id: &str) -> Result<Option<crate::webhooks::Webhook>, StoreError>;
    /// `None`: every webhook; `Some(app)`: that application's.
    async fn list_webhooks(
        &self,
        application_id: Option<&str>,
    ) -> Result<Vec<crate::webhooks::Webhook>, StoreError>;
    async fn delete_webhook(&self, id: &str, audit: &[AuditEvent]) -> Result<bool, StoreError>;
    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<crate::webhooks::Delivery>, StoreError>;
    /// Due pending deliveries with their webhook, each pushed to `lease_until` so no
    /// other worker takes it meanwhile.
    async fn claim_due_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(crate::webhooks::Delivery, crate::webhooks::Webhook)>, StoreError>;
    #[allow(clippy::too_many_arguments)]
    async fn record_delivery_attempt(
        &self,
        id: &str,
        attempts: i64,
        state: &str,
        status: Option<i64>,
        error: Option<&str>,
        next_attempt_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    // Periodic jobs.
    /// Takes (or renews) the lease of a periodic job (`keep-alive`, `revocation-retries`)
    /// until `until`, unless another holder's lease is still running: with several
    /// processes on one database, one of them does each pass.
    async fn try_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    // Vault rotation.
    async fn list_sealed_values(&self) -> Result<Vec<SealedValue>, StoreError>;
    /// Compare-and-swap of one sealed value: false if it changed meanwhile.
    async fn replace_sealed_value(
        &self,
        old: &SealedValue,
        new_value: &str,
    ) -> Result<bool, StoreError>;
}
