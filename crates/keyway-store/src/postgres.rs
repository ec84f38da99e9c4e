//! The PostgreSQL store, for several Keyway replicas on one database.
//!
//! Same contract as the SQLite store, with what several processes need:
//! * the audit chain's head is one row (`audit_head`) locked by every append, which orders
//!   appends across replicas (a row lock, not an advisory lock, so PostgreSQL-compatible
//!   databases without advisory locks work the same way);
//! * the refresh lease and its fence are columns of the connection row, written by
//!   conditional `UPDATE`s (R1 across replicas);
//! * background work is claimed with `FOR UPDATE SKIP LOCKED` or pushed forward in the
//!   same statement, so two replicas never take the same item;
//! * a trigger on `connections` sends `NOTIFY keyway_connection` on commit; each store
//!   LISTENs and republishes as [`ConnectionChange`]s for token caches and refresh waiters.

use crate::rows::{self, db_err, json, ms, SEALED};
use async_trait::async_trait;
use keyway_core::audit::{chain_hash, AuditEvent, AuditRecord, GENESIS};
use keyway_core::model::*;
use keyway_core::store::{ConnectionChange, RefreshedTokens, SealedValue, Store};
use keyway_core::webhooks;
use keyway_core::StoreError;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// The channel the `connections_changed` trigger notifies.
const CHANNEL: &str = "keyway_connection";

/// Pool and timeout settings.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Connections per replica (the listener takes one more).
    pub max_connections: u32,
    /// How long a request waits for a free connection before it gets a 503.
    pub acquire_timeout: Duration,
    /// The server aborts any statement running longer (`statement_timeout`).
    pub statement_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    changes: broadcast::Sender<ConnectionChange>,
    _listener: Arc<ListenerTask>,
    /// Last known chain head, for the one-statement group commit. Only a hint: the
    /// statement checks it against the database, and a miss takes the locking path.
    audit_head: Arc<std::sync::Mutex<Option<(i64, String)>>>,
    /// The group commit's own connection, see [`AuditWriter`].
    audit_writer: Arc<AuditWriter>,
}

/// Token-event batches go through a connection of their own with
/// `synchronous_commit = off`: a batch is committed (visible, ordered, in the WAL buffer)
/// before the callers get their tokens, and the WAL writer flushes it within a few
/// hundred milliseconds. What a database crash can cost is that window of `token.issued`
/// rows, never a link in the middle of the chain (PostgreSQL recovers a prefix of the
/// commit order). Every state-changing write keeps synchronous commit (the SQLite store
/// makes the same trade with `synchronous = NORMAL` on its writer connection).
#[derive(Debug)]
struct AuditWriter {
    opts: PgConnectOptions,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
}

impl AuditWriter {
    /// Runs the guarded one-statement append; `Ok(false)` when the head moved.
    async fn try_append(&self, head_seq: i64, rows: &AuditRows) -> Result<bool, sqlx::Error> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let c: PgConnection = sqlx::ConnectOptions::connect(&self.opts).await?;
            *guard = Some(c);
        }
        let Some(conn) = guard.as_mut() else {
            return Ok(false);
        };
        let (new_seq, new_hash) = rows.head();
        let result = rows
            .bind(sqlx::query(
                "WITH moved AS (UPDATE audit_head SET seq = $12, hash = $13 WHERE id = 1 AND seq = $14 RETURNING 1)
                 INSERT INTO audit_events (seq, at, action, actor, application_id, user_id, connection_id, integration, details, prev_hash, hash)
                 SELECT u.* FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[]) AS u
                 WHERE EXISTS (SELECT 1 FROM moved)",
            ))
            .bind(new_seq)
            .bind(&new_hash)
            .bind(head_seq)
            .execute(&mut *conn)
            .await;
        match result {
            Ok(r) => Ok(r.rows_affected() as usize == rows.len()),
            Err(e) => {
                // A broken connection is replaced on the next batch.
                *guard = None;
                Err(e)
            }
        }
    }
}

/// Stops the LISTEN task when the last clone of the store goes.
#[derive(Debug)]
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Appends events to the chain inside the caller's transaction: locks the head row, so
/// appends from every replica form one chain, inserts all rows in one statement (arrays
/// unnested server-side) and moves the head.
async fn append(
    conn: &mut PgConnection,
    events: &[AuditEvent],
) -> Result<Option<(i64, String)>, sqlx::Error> {
    if events.is_empty() {
        return Ok(None);
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_optional(&mut *conn)
            .await?;
    let rows = AuditRows::chain(head.unwrap_or((0, GENESIS.to_string())), events);
    rows.bind(sqlx::query(
        "INSERT INTO audit_events (seq, at, action, actor, application_id, user_id, connection_id, integration, details, prev_hash, hash)
         SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[])",
    ))
    .execute(&mut *conn)
    .await?;
    let head = rows.head();
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(head.0)
        .bind(&head.1)
        .execute(&mut *conn)
        .await?;
    queue_webhooks(conn, &rows.webhook_events(events)).await?;
    Ok(Some(head))
}

/// Events chained onto a head, as the columns of one `UNNEST` insert.
struct AuditRows {
    seqs: Vec<i64>,
    ats: Vec<i64>,
    actions: Vec<String>,
    actors: Vec<String>,
    apps: Vec<Option<String>>,
    users: Vec<Option<String>>,
    conns: Vec<Option<String>>,
    integrations: Vec<Option<String>>,
    details: Vec<String>,
    prevs: Vec<String>,
    hashes: Vec<String>,
}

impl AuditRows {
    fn chain(head: (i64, String), events: &[AuditEvent]) -> Self {
        let (mut seq, mut prev) = head;
        let n = events.len();
        let mut r = Self {
            seqs: Vec::with_capacity(n),
            ats: Vec::with_capacity(n),
            actions: Vec::with_capacity(n),
            actors: Vec::with_capacity(n),
            apps: Vec::with_capacity(n),
            users: Vec::with_capacity(n),
            conns: Vec::with_capacity(n),
            integrations: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
            prevs: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
        };
        for e in events {
            seq += 1;
            let hash = chain_hash(&prev, seq, e);
            r.seqs.push(seq);
            r.ats.push(ms(e.at));
            r.actions.push(e.action.clone());
            r.actors.push(e.actor.clone());
            r.apps.push(e.application_id.clone());
            r.users.push(e.user_id.clone());
            r.conns.push(e.connection_id.clone());
            r.integrations.push(e.integration.clone());
            r.details.push(e.details.clone());
            r.prevs.push(std::mem::replace(&mut prev, hash.clone()));
            r.hashes.push(hash);
        }
        r
    }

    /// The chain's head after these rows.
    fn head(&self) -> (i64, String) {
        match (self.seqs.last(), self.hashes.last()) {
            (Some(s), Some(h)) => (*s, h.clone()),
            _ => (0, GENESIS.to_string()),
        }
    }

    fn len(&self) -> usize {
        self.seqs.len()
    }

    /// `$1`…`$11`: the eleven columns.
    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.seqs)
            .bind(&self.ats)
            .bind(&self.actions)
            .bind(&self.actors)
            .bind(&self.apps)
            .bind(&self.users)
            .bind(&self.conns)
            .bind(&self.integrations)
            .bind(&self.details)
            .bind(&self.prevs)
            .bind(&self.hashes)
    }

    fn webhook_events<'e>(&self, events: &'e [AuditEvent]) -> Vec<(i64, &'e AuditEvent)> {
        self.seqs
            .iter()
            .zip(events)
            .filter(|(_, e)| webhooks::EVENTS.contains(&e.action.as_str()))
            .map(|(s, e)| (*s, e))
            .collect()
    }
}

/// The outbox: one pending delivery per subscribed webhook, in the audit transaction.
async fn queue_webhooks(
    conn: &mut PgConnection,
    events: &[(i64, &AuditEvent)],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let hooks: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT id, application_id, events FROM webhooks")
            .fetch_all(&mut *conn)
            .await?;
    for (seq, e) in events {
        for (hook_id, hook_app, subscribed) in &hooks {
            let subscribed = serde_json::from_str::<Vec<String>>(subscribed)
                .unwrap_or_default()
                .iter()
                .any(|x| x == &e.action);
            let visible = hook_app.is_none() || hook_app == &e.application_id;
            if !(subscribed && visible) {
                continue;
            }
            sqlx::query("INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, created_at, attempts, next_attempt_at, state) VALUES ($1,$2,$3,$4,$5,0,$5,'pending')")
                .bind(keyway_core::ids::new_id("dlv"))
                .bind(hook_id)
                .bind(&e.action)
                .bind(webhooks::payload(*seq, e))
                .bind(ms(e.at))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// LISTENs for connection changes and republishes them; after a reconnect (notifications
/// may have been lost meanwhile) it publishes [`ConnectionChange::Resync`].
async fn listen(pool: PgPool, tx: broadcast::Sender<ConnectionChange>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for connection changes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        // Anything may have changed while we were not listening.
        let _ = tx.send(ConnectionChange::Resync);
        backoff = Duration::from_millis(100);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    let change = match n.payload().strip_prefix("app:") {
                        Some(app) => ConnectionChange::Added {
                            application_id: app.to_string(),
                        },
                        None => ConnectionChange::Changed(n.payload().to_string()),
                    };
                    let _ = tx.send(change);
                }
                // The connection dropped; the listener reconnects on the next call.
                Ok(None) => {
                    let _ = tx.send(ConnectionChange::Resync);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "connection-change listener failed; reconnecting");
                    let _ = tx.send(ConnectionChange::Resync);
                    tokio::time::sleep(backoff).await;
                    break;
                }
            }
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies migrations under their lock.
    pub async fn connect(url: &str, settings: &PgSettings) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("database URL: {e}")))?
            .application_name("keyway")
            .options([(
                "statement_timeout",
                format!("{}ms", settings.statement_timeout.as_millis()),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(2))
            .min_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            // A connection that died with the server is noticed before a request gets it.
            .test_before_acquire(true)
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        crate::migrate::run_postgres(&pool).await?;
        let (changes, _) = broadcast::channel(1024);
        let task = tokio::spawn(listen(pool.clone(), changes.clone()));
        let writer_opts = pool
            .connect_options()
            .as_ref()
            .clone()
            .options([("synchronous_commit", "off")]);
        Ok(Self {
            pool,
            changes,
            _listener: Arc::new(ListenerTask(task)),
            audit_head: Default::default(),
            audit_writer: Arc::new(AuditWriter {
                opts: writer_opts,
                conn: tokio::sync::Mutex::new(None),
            }),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn cache_head(&self, head: Option<(i64, String)>) {
        *self.audit_head.lock().unwrap_or_else(|p| p.into_inner()) = head;
    }

    /// Runs one statement and, if it changed a row, appends `audit`, all in one transaction.
    async fn write_audited<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let changed = q.execute(&mut *tx).await.map_err(db_err)?.rows_affected() > 0;
        let mut head = None;
        if changed {
            head = append(&mut tx, audit).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        if head.is_some() {
            self.cache_head(head);
        }
        Ok(changed)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    fn connection_changes(&self) -> Option<broadcast::Receiver<ConnectionChange>> {
        Some(self.changes.subscribe())
    }

    async fn insert_application(
        &self,
        a: &Application,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let q = sqlx::query("INSERT INTO applications (id, name, return_urls, allowed_origins, allowed_integrations, agent_session_max_secs, agent_session_default_secs, login_url, branding, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)")
            .bind(&a.id)
            .bind(&a.name)
            .bind(json(&a.return_urls))
            .bind(json(&a.allowed_origins))
            .bind(a.allowed_integrations.as_ref().map(json))
            .bind(a.agent_session_max_secs)
            .bind(a.agent_session_default_secs)
            .bind(&a.login_url)
            .bind(json(&a.branding))
            .bind(ms(a.created_at));
        self.write_audited(q, audit).await.map(|_| ())
    }

    async fn get_application(&self, id: &str) -> Result<Option<Application>, StoreError> {
        let row = sqlx::query("SELECT * FROM applications WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::application).transpose()
    }

    async fn update_application(
        &self,
        a: &Application,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let q = sqlx::query("UPDATE applications SET name = $1, return_urls = $2, allowed_origins = $3, allowed_integrations = $4, login_url = $5, branding = $6 WHERE id = $7")
            .bind(&a.name)
            .bind(json(&a.return_urls))
            .bind(json(&a.allowed_origins))
            .bind(a.allowed_integrations.as_ref().map(json))
            .bind(&a.login_url)
            .bind(json(&a.branding))
            .bind(&a.id);
        self.write_audited(q, audit).await
    }

    async fn list_applications(&self) -> Result<Vec<Application>, StoreError> {
        let rows = sqlx::query("SELECT * FROM applications ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::application).collect()
    }

    async fn insert_api_key(
        &self,
        k: &ApiKeyRecord,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let q = sqlx::query("INSERT INTO api_keys (id, application_id, name, hash, prefix, created_at, revoked_at) VALUES ($1,$2,$3,$4,$5,$6,$7)")
            .bind(&k.id)
            .bind(&k.application_id)
            .bind(&k.name)
            .bind(&k.hash)
            .bind(&k.prefix)
            .bind(ms(k.created_at))
            .bind(k.revoked_at.map(ms));
        self.write_audited(q, audit).await.map(|_| ())
    }

    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn list_api_keys(
        &self,
        application_id: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM api_keys WHERE ($1::TEXT IS NULL OR application_id = $1) ORDER BY created_at, id",
        )
        .bind(application_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let q =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(ms(at))
                .bind(id);
        self.write_audited(q, audit).await
    }

    async fn insert_integration(
        &self,
        i: &Integration,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let q = sqlx::query("INSERT INTO integrations (slug, provider, client_id, client_secret, scopes, settings, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
            .bind(&i.slug)
            .bind(&i.provider)
            .bind(&i.client_id)
            .bind(&i.client_secret_sealed)
            .bind(json(&i.scopes))
            .bind(json(&i.settings))
            .bind(ms(i.created_at))
            .bind(ms(i.updated_at));
        self.write_audited(q, audit).await.map(|_| ())
    }

    async fn get_integration(&self, slug: &str) -> Result<Option<Integration>, StoreError> {
        let row = sqlx::query("SELECT * FROM integrations WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::integration).transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<Integration>, StoreError> {
        let rows = sqlx::query("SELECT * FROM integrations ORDER BY slug")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::integration).collect()
    }

    async fn update_integration(
        &self,
        i: &Integration,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let q = sqlx::query("UPDATE integrations SET client_id = $1, client_secret = $2, scopes = $3, settings = $4, updated_at = $5 WHERE slug = $6")
            .bind(&i.client_id)
            .bind(&i.client_secret_sealed)
            .bind(json(&i.scopes))
            .bind(json(&i.settings))
            .bind(ms(i.updated_at))
            .bind(&i.slug);
        self.write_audited(q, audit).await
    }

    async fn insert_connect_session(&self, c: &ConnectSession) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO connect_sessions (id, token_hash, application_id, user_id, organization_id, integrations, return_url, owner, purpose, expires_at, created_at, shared) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)")
            .bind(&c.id)
            .bind(&c.token_hash)
            .bind(&c.application_id)
            .bind(&c.user_id)
            .bind(&c.organization_id)
            .bind(c.integrations.as_ref().map(json))
            .bind(&c.return_url)
            .bind(&c.owner)
            .bind(&c.purpose)
            .bind(ms(c.expires_at))
            .bind(ms(c.created_at))
            .bind(c.shared)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn find_connect_session_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<ConnectSession>, StoreError> {
        let row = sqlx::query("SELECT * FROM connect_sessions WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::connect_session).transpose()
    }

    async fn insert_authorize_link(&self, l: &AuthorizeLink) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO authorize_links (id, application_id, user_id, organization_id, integration, connect_session_id, return_url, owner, purpose, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)")
            .bind(&l.id)
            .bind(&l.application_id)
            .bind(&l.user_id)
            .bind(&l.organization_id)
            .bind(&l.integration)
            .bind(&l.connect_session_id)
            .bind(&l.return_url)
            .bind(&l.owner)
            .bind(&l.purpose)
            .bind(ms(l.expires_at))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_authorize_link(&self, id: &str) -> Result<Option<AuthorizeLink>, StoreError> {
        let row = sqlx::query("SELECT * FROM authorize_links WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::authorize_link).transpose()
    }

    async fn insert_pending_authorization(
        &self,
        p: &PendingAuthorization,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO pending_authorizations (state_hash, application_id, user_id, organization_id, integration, connect_session_id, browser_hash, pkce_verifier, redirect_uri, return_url, owner, purpose, expires_at, shared) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)")
            .bind(&p.state_hash)
            .bind(&p.application_id)
            .bind(&p.user_id)
            .bind(&p.organization_id)
            .bind(&p.integration)
            .bind(&p.connect_session_id)
            .bind(&p.browser_hash)
            .bind(&p.pkce_verifier_sealed)
            .bind(&p.redirect_uri)
            .bind(&p.return_url)
            .bind(&p.owner)
            .bind(&p.purpose)
            .bind(ms(p.expires_at))
            .bind(p.shared)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn take_pending_authorization(
        &self,
        state_hash: &str,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let row =
            sqlx::query("DELETE FROM pending_authorizations WHERE state_hash = $1 RETURNING *")
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        row.as_ref().map(rows::pending).transpose()
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut n = 0;
        for table in [
            "connect_sessions",
            "authorize_links",
            "pending_authorizations",
        ] {
            n += sqlx::query(&format!("DELETE FROM {table} WHERE expires_at < $1"))
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
        }
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let row = sqlx::query("SELECT * FROM connections WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::connection).transpose()
    }

    async fn find_connections(&self, k: &ConnectionKey) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM connections WHERE application_id = $1 AND user_id = $2 AND org_key = $3 AND integration = $4 AND NOT shared AND status <> 'revoked' ORDER BY created_at, id",
        )
        .bind(&k.application_id)
        .bind(&k.user_id)
        .bind(k.organization_id.as_deref().unwrap_or(""))
        .bind(&k.integration)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::connection).collect()
    }

    async fn find_shared_connections(
        &self,
        application_id: &str,
        organization_id: &str,
        integration: &str,
    ) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM connections WHERE application_id = $1 AND org_key = $2 AND integration = $3 AND shared AND status <> 'revoked' ORDER BY created_at, id",
        )
        .bind(application_id)
        .bind(organization_id)
        .bind(integration)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::connection).collect()
    }

    async fn list_connections(&self, f: &ConnectionFilter) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM connections WHERE ($1::TEXT IS NULL OR application_id = $1) AND ($2::TEXT IS NULL OR user_id = $2)
               AND ($3::TEXT IS NULL OR organization_id = $3) AND ($4::TEXT IS NULL OR integration = $4)
               AND ($5::TEXT IS NULL OR status = $5) AND ($6::TEXT IS NULL OR id > $6)
             ORDER BY id LIMIT $7",
        )
        .bind(&f.application_id)
        .bind(&f.user_id)
        .bind(&f.organization_id)
        .bind(&f.integration)
        .bind(f.status.map(|s| s.as_str()))
        .bind(&f.after_id)
        .bind(f.limit.max(1) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::connection).collect()
    }

    async fn save_grant(&self, c: &Connection, audit: &[AuditEvent]) -> Result<(), StoreError> {
        let t = c.tokens.as_ref();
        let q = sqlx::query(
            "INSERT INTO connections (id, application_id, user_id, organization_id, org_key, integration, provider, status, scopes, account_id, account_name, metadata, owner, purpose, label, access_token, refresh_token, token_type, expires_at, token_version, created_at, updated_at, last_used_at, last_refreshed_at, last_validated_at, account_key, shared)
             VALUES ($1,$2,$3,$4,$5,$6,$7,'active',$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26)
             ON CONFLICT (id) DO UPDATE SET status = 'active', scopes = excluded.scopes, account_id = excluded.account_id,
               account_name = excluded.account_name, metadata = excluded.metadata, owner = excluded.owner, purpose = excluded.purpose,
               label = excluded.label, access_token = excluded.access_token, refresh_token = excluded.refresh_token,
               token_type = excluded.token_type, expires_at = excluded.expires_at, token_version = connections.token_version + 1,
               lease_holder = NULL, lease_until = NULL, lease_fence = connections.lease_fence + 1, revocation = NULL, revoked_at = NULL,
               updated_at = excluded.updated_at, last_validated_at = excluded.last_validated_at, account_key = excluded.account_key",
        )
        .bind(&c.id)
        .bind(&c.application_id)
        .bind(&c.user_id)
        .bind(&c.organization_id)
        .bind(c.organization_id.as_deref().unwrap_or(""))
        .bind(&c.integration)
        .bind(&c.provider)
        .bind(json(&c.scopes))
        .bind(&c.account_id)
        .bind(&c.account_name)
        .bind(json(&c.metadata))
        .bind(&c.owner)
        .bind(&c.purpose)
        .bind(&c.label)
        .bind(t.map(|t| &t.access_token))
        .bind(t.and_then(|t| t.refresh_token.as_ref()))
        .bind(t.map(|t| &t.token_type))
        .bind(t.and_then(|t| t.expires_at).map(ms))
        .bind(c.token_version)
        .bind(ms(c.created_at))
        .bind(ms(c.updated_at))
        .bind(c.last_used_at.map(ms))
        .bind(c.last_refreshed_at.map(ms))
        .bind(c.last_validated_at.map(ms))
        .bind(c.account_id.as_deref().unwrap_or(""))
        .bind(c.shared);
        self.write_audited(q, audit).await.map(|_| ())
    }

    async fn update_connection_details(
        &self,
        id: &str,
        owner: Option<Option<String>>,
        purpose: Option<Option<String>>,
        label: Option<Option<String>>,
        at: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        // Each field: the CASE keeps the old value when the patch does not name it.
        let q = sqlx::query(
            "UPDATE connections SET
               owner = CASE WHEN $1 THEN $2 ELSE owner END,
               purpose = CASE WHEN $3 THEN $4 ELSE purpose END,
               label = CASE WHEN $5 THEN $6 ELSE label END,
               updated_at = $7 WHERE id = $8",
        )
        .bind(owner.is_some())
        .bind(owner.flatten())
        .bind(purpose.is_some())
        .bind(purpose.flatten())
        .bind(label.is_some())
        .bind(label.flatten())
        .bind(ms(at))
        .bind(id);
        self.write_audited(q, audit).await
    }

    async fn touch_last_used(&self, id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE connections SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)")
            .bind(ms(at))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn acquire_refresh_lease(
        &self,
        id: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        // READ COMMITTED re-checks the WHERE clause after waiting for a concurrent
        // writer of the row, so of two replicas racing here only one gets a fence.
        sqlx::query_scalar(
            "UPDATE connections SET lease_holder = $1, lease_until = $2, lease_fence = lease_fence + 1
             WHERE id = $3 AND status = 'active' AND (lease_until IS NULL OR lease_until <= $4) RETURNING lease_fence",
        )
        .bind(holder)
        .bind(ms(until))
        .bind(id)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn write_refreshed_tokens(
        &self,
        id: &str,
        fence: i64,
        r: &RefreshedTokens,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let q = sqlx::query(
            "UPDATE connections SET access_token = $1, refresh_token = $2, token_type = $3, expires_at = $4, scopes = $5,
               token_version = token_version + 1, last_refreshed_at = $6, updated_at = $6, lease_holder = NULL, lease_until = NULL
             WHERE id = $7 AND lease_fence = $8 AND status = 'active'",
        )
        .bind(&r.tokens.access_token)
        .bind(&r.tokens.refresh_token)
        .bind(&r.tokens.token_type)
        .bind(r.tokens.expires_at.map(ms))
        .bind(json(&r.scopes))
        .bind(ms(r.refreshed_at))
        .bind(id)
        .bind(fence);
        self.write_audited(q, audit).await
    }

    async fn release_refresh_lease(&self, id: &str, fence: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE connections SET lease_holder = NULL, lease_until = NULL WHERE id = $1 AND lease_fence = $2 AND lease_until IS NOT NULL")
            .bind(id)
            .bind(fence)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn mark_needs_reauthorization(
        &self,
        id: &str,
        token_version: i64,
        at: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let q = sqlx::query(
            "UPDATE connections SET status = 'needs_reauthorization', updated_at = $1, lease_holder = NULL, lease_until = NULL
             WHERE id = $2 AND token_version = $3 AND status = 'active'",
        )
        .bind(ms(at))
        .bind(id)
        .bind(token_version);
        self.write_audited(q, audit).await
    }

    async fn revoke_connection(
        &self,
        id: &str,
        outcome: RevocationOutcome,
        at: OffsetDateTime,
        retry: Option<&RevocationRetry>,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let changed = sqlx::query(
            "UPDATE connections SET status = 'revoked', access_token = NULL, refresh_token = NULL, expires_at = NULL,
               revocation = $1, revoked_at = $2, updated_at = $2, token_version = token_version + 1,
               lease_fence = lease_fence + 1, lease_holder = NULL, lease_until = NULL
             WHERE id = $3 AND status <> 'revoked'",
        )
        .bind(outcome.as_str())
        .bind(ms(at))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected()
            == 1;
        if changed {
            if let Some(r) = retry {
                sqlx::query("INSERT INTO revocation_retries (id, connection_id, application_id, user_id, integration, access_token, refresh_token, attempts, next_attempt_at, last_error, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)")
                    .bind(&r.id)
                    .bind(&r.connection_id)
                    .bind(&r.application_id)
                    .bind(&r.user_id)
                    .bind(&r.integration)
                    .bind(&r.access_token_sealed)
                    .bind(&r.refresh_token_sealed)
                    .bind(r.attempts)
                    .bind(ms(r.next_attempt_at))
                    .bind(&r.last_error)
                    .bind(ms(r.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            append(&mut tx, audit).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(changed)
    }

    async fn expiring_recently_used(
        &self,
        expiring_before: OffsetDateTime,
        used_since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM connections WHERE status = 'active' AND refresh_token IS NOT NULL AND expires_at IS NOT NULL
               AND expires_at <= $1 AND last_used_at >= $2 ORDER BY expires_at LIMIT $3",
        )
        .bind(ms(expiring_before))
        .bind(ms(used_since))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::connection).collect()
    }

    async fn idle_grants(
        &self,
        provider: &str,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM connections WHERE status = 'active' AND refresh_token IS NOT NULL AND provider = $1
               AND COALESCE(last_refreshed_at, created_at) < $2 ORDER BY COALESCE(last_refreshed_at, created_at) LIMIT $3",
        )
        .bind(provider)
        .bind(ms(before))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::connection).collect()
    }

    async fn unvalidated_non_expiring(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM connections WHERE status = 'active' AND access_token IS NOT NULL AND expires_at IS NULL
               AND COALESCE(last_validated_at, created_at) < $1 ORDER BY COALESCE(last_validated_at, created_at) LIMIT $2",
        )
        .bind(ms(before))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::connection).collect()
    }

    async fn mark_validated(&self, id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE connections SET last_validated_at = $1 WHERE id = $2")
            .bind(ms(at))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn due_revocation_retries(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<RevocationRetry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM revocation_retries WHERE next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2")
            .bind(ms(now))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::retry).collect()
    }

    async fn reschedule_revocation_retry(
        &self,
        id: &str,
        attempts: i64,
        next_attempt_at: OffsetDateTime,
        last_error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE revocation_retries SET attempts = $1, next_attempt_at = $2, last_error = $3 WHERE id = $4")
            .bind(attempts)
            .bind(ms(next_attempt_at))
            .bind(last_error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn finish_revocation_retry(
        &self,
        id: &str,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let q = sqlx::query("DELETE FROM revocation_retries WHERE id = $1").bind(id);
        self.write_audited(q, audit).await
    }

    /// The group commit of token events. Fast path: one statement on the writer's
    /// connection that moves the head only if it is still the cached one and inserts the
    /// batch with it (one round trip); if another writer or replica moved the head, or
    /// the batch carries webhook events, a transaction locks the head and appends.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        const FAST_MAX: usize = 1000;
        let cached = self
            .audit_head
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let plain = events.len() <= FAST_MAX
            && !events
                .iter()
                .any(|e| webhooks::EVENTS.contains(&e.action.as_str()));
        if let (Some(head), true) = (cached, plain) {
            let head_seq = head.0;
            let rows = AuditRows::chain(head, events);
            match self.audit_writer.try_append(head_seq, &rows).await {
                Ok(true) => {
                    self.cache_head(Some(rows.head()));
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "fast audit append failed; using a transaction")
                }
            }
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let head = append(&mut tx, events).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.cache_head(head);
        Ok(())
    }

    async fn list_audit(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after_seq)
            .bind(limit.max(1) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::audit).collect()
    }

    async fn list_audit_desc(
        &self,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM audit_events WHERE seq < $1 ORDER BY seq DESC LIMIT $2")
                .bind(before_seq.unwrap_or(i64::MAX))
                .bind(limit.clamp(1, 1000) as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.iter().map(rows::audit).collect()
    }

    async fn audit_for_connection(
        &self,
        connection_id: &str,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE connection_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(connection_id)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::audit).collect()
    }

    /// Events are appended in time order, so the first record at or after `since` is
    /// found by bisecting on `seq` (the primary key) and only that tail is read.
    async fn audit_activity(
        &self,
        since: OffsetDateTime,
        actions: &[&str],
    ) -> Result<Vec<(OffsetDateTime, String, u64)>, StoreError> {
        let (lo, hi): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM audit_events")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        let (Some(mut lo), Some(mut hi)) = (lo, hi) else {
            return Ok(Vec::new());
        };
        let since_ms = ms(since);
        hi += 1;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at: Option<i64> = sqlx::query_scalar(
                "SELECT at FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT 1",
            )
            .bind(mid)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
            match at {
                Some(at) if at < since_ms => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT (at / 3600000) * 3600000 AS hour, action, COUNT(*) AS n FROM audit_events
             WHERE seq >= $1 AND at >= $2 AND action = ANY($3) GROUP BY hour, action ORDER BY hour",
        )
        .bind(lo)
        .bind(since_ms)
        .bind(&actions)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(h, a, n)| (keyway_core::clock::from_millis(h), a, n.max(0) as u64))
            .collect())
    }

    async fn insert_agent_client(&self, c: &AgentClient) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_clients (id, name, redirect_uris, created_at) VALUES ($1,$2,$3,$4) ON CONFLICT (id) DO UPDATE SET name = excluded.name, redirect_uris = excluded.redirect_uris",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(json(&c.redirect_uris))
        .bind(ms(c.created_at))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_agent_client(&self, id: &str) -> Result<Option<AgentClient>, StoreError> {
        let row = sqlx::query("SELECT * FROM agent_clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::agent_client).transpose()
    }

    async fn insert_agent_authorization(&self, a: &AgentAuthorization) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO agent_authorizations (id, client_id, application_id, redirect_uri, state, code_challenge, resource, user_id, organization_id, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)")
            .bind(&a.id)
            .bind(&a.client_id)
            .bind(&a.application_id)
            .bind(&a.redirect_uri)
            .bind(&a.state)
            .bind(&a.code_challenge)
            .bind(&a.resource)
            .bind(&a.user_id)
            .bind(&a.organization_id)
            .bind(ms(a.created_at))
            .bind(ms(a.expires_at))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_agent_authorization(
        &self,
        id: &str,
    ) -> Result<Option<AgentAuthorization>, StoreError> {
        let row = sqlx::query("SELECT * FROM agent_authorizations WHERE id = $1 AND NOT done")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::agent_authorization).transpose()
    }

    async fn identify_agent_authorization(
        &self,
        id: &str,
        user_id: &str,
        organization_id: Option<&str>,
        approval_hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE agent_authorizations SET user_id = $1, organization_id = $2, approval_hash = $3 WHERE id = $4 AND NOT done AND user_id IS NULL AND expires_at > $5")
            .bind(user_id)
            .bind(organization_id)
            .bind(approval_hash)
            .bind(id)
            .bind(ms(now))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn finish_agent_authorization(
        &self,
        id: &str,
        session: Option<&AgentSession>,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done =
            sqlx::query("UPDATE agent_authorizations SET done = TRUE WHERE id = $1 AND NOT done")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected()
                == 1;
        if !done {
            return Ok(false);
        }
        if let Some(a) = session {
            sqlx::query("INSERT INTO agent_sessions (id, application_id, user_id, organization_id, client_id, client_name, integrations, access, resource, created_at, expires_at, revoked_at, code_hash, code_challenge, code_redirect_uri, code_expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)")
                .bind(&a.id)
                .bind(&a.application_id)
                .bind(&a.user_id)
                .bind(&a.organization_id)
                .bind(&a.client_id)
                .bind(&a.client_name)
                .bind(json(&a.integrations))
                .bind(a.access.as_str())
                .bind(&a.resource)
                .bind(ms(a.created_at))
                .bind(ms(a.expires_at))
                .bind(a.revoked_at.map(ms))
                .bind(&a.code_hash)
                .bind(&a.code_challenge)
                .bind(&a.code_redirect_uri)
                .bind(ms(a.code_expires_at))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        append(&mut tx, audit).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn redeem_agent_code(
        &self,
        code_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<AgentSession>, StoreError> {
        let row = sqlx::query("UPDATE agent_sessions SET code_used = TRUE WHERE code_hash = $1 AND NOT code_used AND code_expires_at > $2 AND revoked_at IS NULL AND expires_at > $2 RETURNING *")
            .bind(code_hash)
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::agent_session).transpose()
    }

    async fn insert_agent_token(
        &self,
        hash: &str,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO agent_tokens (hash, session_id, expires_at) VALUES ($1,$2,$3)")
            .bind(hash)
            .bind(session_id)
            .bind(ms(expires_at))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn agent_session_by_token(
        &self,
        hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<AgentSession>, StoreError> {
        let row = sqlx::query("SELECT s.* FROM agent_tokens t JOIN agent_sessions s ON s.id = t.session_id WHERE t.hash = $1 AND t.expires_at > $2 AND s.expires_at > $2 AND s.revoked_at IS NULL")
            .bind(hash)
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::agent_session).transpose()
    }

    async fn get_agent_session(&self, id: &str) -> Result<Option<AgentSession>, StoreError> {
        let row = sqlx::query("SELECT * FROM agent_sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::agent_session).transpose()
    }

    async fn list_agent_sessions(
        &self,
        application_id: Option<&str>,
        user_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AgentSession>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agent_sessions WHERE ($1::TEXT IS NULL OR application_id = $1) AND ($2::TEXT IS NULL OR user_id = $2) ORDER BY created_at DESC, id LIMIT $3")
            .bind(application_id)
            .bind(user_id)
            .bind(limit.clamp(1, 1000) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::agent_session).collect()
    }

    async fn insert_agent_call(&self, c: &AgentCall) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO agent_session_calls (session_id, at, tool, integration, method, path, status, outcome) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
            .bind(&c.session_id)
            .bind(ms(c.at))
            .bind(&c.tool)
            .bind(&c.integration)
            .bind(&c.method)
            .bind(&c.path)
            .bind(c.status)
            .bind(&c.outcome)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_agent_calls(
        &self,
        session_id: &str,
        limit: u32,
    ) -> Result<Vec<AgentCall>, StoreError> {
        let rows = sqlx::query("SELECT session_id, at, tool, integration, method, path, status, outcome FROM agent_session_calls WHERE session_id = $1 ORDER BY at, id LIMIT $2")
            .bind(session_id)
            .bind(limit.clamp(1, 10_000) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::agent_call).collect()
    }

    async fn revoke_agent_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let ended = sqlx::query("UPDATE agent_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND expires_at > $1")
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected()
            == 1;
        sqlx::query("DELETE FROM agent_tokens WHERE session_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if ended {
            append(&mut tx, audit).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(ended)
    }

    async fn insert_webhook(
        &self,
        h: &webhooks::Webhook,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let q = sqlx::query("INSERT INTO webhooks (id, application_id, url, events, secret, created_at) VALUES ($1,$2,$3,$4,$5,$6)")
            .bind(&h.id)
            .bind(&h.application_id)
            .bind(&h.url)
            .bind(json(&h.events))
            .bind(&h.secret_sealed)
            .bind(ms(h.created_at));
        self.write_audited(q, audit).await.map(|_| ())
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<webhooks::Webhook>, StoreError> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::webhook).transpose()
    }

    async fn list_webhooks(
        &self,
        application_id: Option<&str>,
    ) -> Result<Vec<webhooks::Webhook>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM webhooks WHERE ($1::TEXT IS NULL OR application_id = $1) ORDER BY created_at, id",
        )
        .bind(application_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::webhook).collect()
    }

    async fn delete_webhook(&self, id: &str, audit: &[AuditEvent]) -> Result<bool, StoreError> {
        let q = sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id);
        self.write_audited(q, audit).await
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<webhooks::Delivery>, StoreError> {
        let rows = sqlx::query("SELECT * FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at DESC, id LIMIT $2")
            .bind(webhook_id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::delivery).collect()
    }

    /// Claims due deliveries: rows another replica is claiming right now are skipped
    /// (`FOR UPDATE SKIP LOCKED`), and the claimed ones move to `lease_until` in the same
    /// statement, so no two replicas send the same delivery.
    async fn claim_due_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(webhooks::Delivery, webhooks::Webhook)>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let rows = sqlx::query(
            "WITH claimed AS (
               UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id IN
                 (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $2
                  ORDER BY next_attempt_at, n LIMIT $3 FOR UPDATE SKIP LOCKED)
               RETURNING *)
             SELECT * FROM claimed ORDER BY n",
        )
        .bind(ms(lease_until))
        .bind(ms(now))
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut out = Vec::new();
        for r in &rows {
            let d = rows::delivery(r)?;
            let hook = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
                .bind(&d.webhook_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            if let Some(h) = hook.as_ref().map(rows::webhook).transpose()? {
                out.push((d, h));
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn record_delivery_attempt(
        &self,
        id: &str,
        attempts: i64,
        state: &str,
        status: Option<i64>,
        error: Option<&str>,
        next_attempt_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $1, state = $2, last_status = $3, last_error = $4, next_attempt_at = $5,
               delivered_at = CASE WHEN $2 = 'delivered' THEN $6 ELSE delivered_at END WHERE id = $7",
        )
        .bind(attempts)
        .bind(state)
        .bind(status)
        .bind(error)
        .bind(ms(next_attempt_at))
        .bind(ms(at))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn try_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO job_leases (job, holder, until) VALUES ($1, $2, $3)
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE job_leases.until <= $4 OR job_leases.holder = excluded.holder",
        )
        .bind(job)
        .bind(holder)
        .bind(ms(until))
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_sealed_values(&self) -> Result<Vec<SealedValue>, StoreError> {
        let mut out = Vec::new();
        for (table, key, field) in SEALED {
            let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                "SELECT {key}, {field} FROM {table} WHERE {field} IS NOT NULL"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
            out.extend(rows.into_iter().map(|(record_id, value)| SealedValue {
                table,
                record_id,
                field,
                value,
            }));
        }
        Ok(out)
    }

    async fn replace_sealed_value(
        &self,
        old: &SealedValue,
        new_value: &str,
    ) -> Result<bool, StoreError> {
        let Some((table, key, field)) = SEALED
            .iter()
            .find(|(t, _, f)| *t == old.table && *f == old.field)
        else {
            return Err(StoreError::Other(format!(
                "{}.{} is not a sealed column",
                old.table, old.field
            )));
        };
        let r = sqlx::query(&format!(
            "UPDATE {table} SET {field} = $1 WHERE {key} = $2 AND {field} = $3"
        ))
        .bind(new_value)
        .bind(&old.record_id)
        .bind(&old.value)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected() == 1)
    }
}
