//! The SQLite store.
//!
//! Writes that record audit events run in `BEGIN IMMEDIATE` transactions: the write lock is
//! taken up front, so reading the chain head and appending to it cannot interleave with
//! another writer, in this process or another one on the same file.

use crate::rows::{self, db_err, json, ms, SEALED};
use async_trait::async_trait;
use keyway_core::audit::{chain_hash, AuditEvent, AuditRecord, GENESIS};
use keyway_core::model::*;
use keyway_core::store::{RefreshedTokens, SealedValue, Store};
use keyway_core::webhooks;
use keyway_core::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Last known chain head, for the one-statement group commit. Only a hint: every use
    /// is guarded by the database, and a miss falls back to reading the head.
    audit_head: std::sync::Arc<std::sync::Mutex<Option<(i64, String)>>>,
    /// The group commit's own connection (file databases only), see [`AuditWriter`].
    audit_writer: Option<std::sync::Arc<AuditWriter>>,
}

/// Token-event batches are committed on a connection of their own with
/// `synchronous=NORMAL`: a commit is in the OS before the caller gets its token, so a
/// killed process loses nothing, and the WAL is fsynced within [`WAL_SYNC_EVERY`] (or
/// sooner, by any state-changing commit, which stays `synchronous=FULL`). Skipping the
/// per-batch fsync keeps the token endpoint's latency off the disk (spec P1); what a
/// power cut can cost is at most that window of `token.issued` rows, never a chain link
/// in the middle (SQLite's WAL keeps the database consistent).
#[derive(Debug)]
struct AuditWriter {
    conn: tokio::sync::Mutex<SqliteConnection>,
    wal_path: std::path::PathBuf,
    dirty: std::sync::atomic::AtomicBool,
}

/// How long `token.issued` rows may wait in the OS for an fsync.
const WAL_SYNC_EVERY: Duration = Duration::from_millis(500);

impl AuditWriter {
    /// Fsyncs the WAL if a NORMAL commit happened since the last time.
    async fn sync_if_dirty(&self) {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let path = self.wal_path.clone();
        let synced = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .read(true)
                .open(&path)
                .and_then(|f| f.sync_data())
        })
        .await;
        if !matches!(synced, Ok(Ok(()))) {
            // Try again next tick; the next FULL commit syncs the WAL anyway.
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
            tracing::warn!("could not fsync the write-ahead log");
        }
    }

    /// Keeps the WAL synced while the store is alive.
    fn spawn_syncer(me: &std::sync::Arc<Self>) {
        let weak = std::sync::Arc::downgrade(me);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WAL_SYNC_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(w) = weak.upgrade() else { break };
                w.sync_if_dirty().await;
            }
        });
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        if self.dirty.load(std::sync::atomic::Ordering::Acquire) {
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .open(&self.wal_path)
                .and_then(|f| f.sync_data());
        }
    }
}

/// Appends events to the chain inside the caller's transaction. Hashes are computed
/// here; rows go in as multi-row INSERTs, since per-statement overhead, not the commit,
/// bounds a group commit's throughput.
async fn append(conn: &mut SqliteConnection, events: &[AuditEvent]) -> Result<(), sqlx::Error> {
    const ROWS_PER_STATEMENT: usize = 200;
    if events.is_empty() {
        return Ok(());
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let rows = chain_rows(head.unwrap_or((0, GENESIS.to_string())), events);
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_rows_sql(chunk.len(), false);
        bind_rows(sqlx::query(&sql), chunk)
            .execute(&mut *conn)
            .await?;
    }
    queue_webhooks(conn, &rows).await
}

/// An audit row ready to insert: (seq, event, prev_hash, hash).
type AuditRow<'a> = (i64, &'a AuditEvent, String, String);

/// Chains `events` onto `head` (seq, hash).
fn chain_rows(head: (i64, String), events: &[AuditEvent]) -> Vec<AuditRow<'_>> {
    let (mut seq, mut prev) = head;
    events
        .iter()
        .map(|e| {
            seq += 1;
            let hash = chain_hash(&prev, seq, e);
            (seq, e, std::mem::replace(&mut prev, hash.clone()), hash)
        })
        .collect()
}

/// A multi-row INSERT; `guarded` adds a final `?` for the expected head seq.
fn insert_rows_sql(n: usize, guarded: bool) -> String {
    let cols = "INSERT INTO audit_events (seq, at, action, actor, application_id, user_id, connection_id, integration, details, prev_hash, hash) ";
    let values = vec!["(?,?,?,?,?,?,?,?,?,?,?)"; n].join(",");
    if guarded {
        format!("{cols}SELECT * FROM (VALUES {values}) WHERE (SELECT COALESCE(MAX(seq), 0) FROM audit_events) = ?")
    } else {
        format!("{cols}VALUES {values}")
    }
}

fn bind_rows<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    rows: &'q [AuditRow<'_>],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for (seq, e, prev_hash, hash) in rows {
        q = q
            .bind(*seq)
            .bind(ms(e.at))
            .bind(&e.action)
            .bind(&e.actor)
            .bind(&e.application_id)
            .bind(&e.user_id)
            .bind(&e.connection_id)
            .bind(&e.integration)
            .bind(&e.details)
            .bind(prev_hash)
            .bind(hash);
    }
    q
}

/// The outbox: one pending delivery per subscribed webhook, in the audit transaction.
async fn queue_webhooks(
    conn: &mut SqliteConnection,
    rows: &[AuditRow<'_>],
) -> Result<(), sqlx::Error> {
    if !rows
        .iter()
        .any(|(_, e, _, _)| webhooks::EVENTS.contains(&e.action.as_str()))
    {
        return Ok(());
    }
    let hooks: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT id, application_id, events FROM webhooks")
            .fetch_all(&mut *conn)
            .await?;
    for (seq, e, _, _) in rows {
        if !webhooks::EVENTS.contains(&e.action.as_str()) {
            continue;
        }
        for (hook_id, hook_app, events) in &hooks {
            let subscribed = serde_json::from_str::<Vec<String>>(events)
                .unwrap_or_default()
                .iter()
                .any(|x| x == &e.action);
            let visible = hook_app.is_none() || hook_app == &e.application_id;
            if !(subscribed && visible) {
                continue;
            }
            sqlx::query("INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, created_at, attempts, next_attempt_at, state) VALUES (?,?,?,?,?,0,?,'pending')")
                .bind(keyway_core::ids::new_id("dlv"))
                .bind(hook_id)
                .bind(&e.action)
                .bind(webhooks::payload(*seq, e))
                .bind(ms(e.at))
                .bind(ms(e.at))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) `keyway.db` in `data_dir` and applies migrations.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        if !data_dir.exists() {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                StoreError::Other(format!(
                    "cannot create data dir {}: {e}",
                    data_dir.display()
                ))
            })?;
            // The database holds sealed tokens and key hashes: owner only.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
            }
        }
        let opts = SqliteConnectOptions::new()
            .filename(data_dir.join("keyway.db"))
            .create_if_missing(true);
        Self::connect_with(opts, 8).await
    }

    /// An in-memory database, for unit tests.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:").map_err(db_err)?;
        Self::connect_with(opts, 1).await
    }

    async fn connect_with(opts: SqliteConnectOptions, max: u32) -> Result<Self, StoreError> {
        let opts = opts
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let in_memory = opts.get_filename().to_string_lossy().contains(":memory:") || max == 1;
        let wal_path = {
            let mut p = opts.get_filename().as_os_str().to_os_string();
            p.push("-wal");
            std::path::PathBuf::from(p)
        };
        if !in_memory {
            // Migrate on a lone connection first; an in-memory database exists only in
            // the pool's one connection, so it is migrated there.
            let mut conn = sqlx::ConnectOptions::connect(&opts).await.map_err(db_err)?;
            crate::migrate::run_sqlite(&mut conn).await?;
            sqlx::Connection::close(conn).await.map_err(db_err)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.clone())
            .await
            .map_err(db_err)?;
        if in_memory {
            let mut conn = pool.acquire().await.map_err(db_err)?;
            crate::migrate::run_sqlite(&mut conn).await?;
        }
        let audit_writer = if in_memory {
            None
        } else {
            let conn = sqlx::ConnectOptions::connect(&opts.synchronous(SqliteSynchronous::Normal))
                .await
                .map_err(db_err)?;
            let w = std::sync::Arc::new(AuditWriter {
                conn: tokio::sync::Mutex::new(conn),
                wal_path,
                dirty: std::sync::atomic::AtomicBool::new(false),
            });
            AuditWriter::spawn_syncer(&w);
            Some(w)
        };
        Ok(Self {
            pool,
            audit_head: Default::default(),
            audit_writer,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }

    /// Runs one statement and, if it changed a row, appends `audit`, all in one transaction.
    async fn write_audited<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let changed = q.execute(&mut *tx).await.map_err(db_err)?.rows_affected() > 0;
        if changed {
            append(&mut tx, audit).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(changed)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_application(
        &self,
        a: &Application,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let q = sqlx::query("INSERT INTO applications (id, name, return_urls, allowed_origins, allowed_integrations, agent_session_max_secs, agent_session_default_secs, login_url, branding, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)")
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
        let row = sqlx::query("SELECT * FROM applications WHERE id = ?")
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
        let q = sqlx::query("UPDATE applications SET name = ?, return_urls = ?, allowed_origins = ?, allowed_integrations = ?, login_url = ?, branding = ? WHERE id = ?")
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
        let q = sqlx::query("INSERT INTO api_keys (id, application_id, name, hash, prefix, created_at, revoked_at) VALUES (?,?,?,?,?,?,?)")
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
        let row = sqlx::query("SELECT * FROM api_keys WHERE hash = ?")
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
        let rows = match application_id {
            Some(a) => {
                sqlx::query(
                    "SELECT * FROM api_keys WHERE application_id = ? ORDER BY created_at, id",
                )
                .bind(a)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await
            }
        }
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
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ms(at))
                .bind(id);
        self.write_audited(q, audit).await
    }

    async fn insert_integration(
        &self,
        i: &Integration,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let q = sqlx::query("INSERT INTO integrations (slug, provider, client_id, client_secret, scopes, settings, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)")
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
        let row = sqlx::query("SELECT * FROM integrations WHERE slug = ?")
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
        let q = sqlx::query("UPDATE integrations SET client_id = ?, client_secret = ?, scopes = ?, settings = ?, updated_at = ? WHERE slug = ?")
            .bind(&i.client_id)
            .bind(&i.client_secret_sealed)
            .bind(json(&i.scopes))
            .bind(json(&i.settings))
            .bind(ms(i.updated_at))
            .bind(&i.slug);
        self.write_audited(q, audit).await
    }

    async fn insert_connect_session(&self, c: &ConnectSession) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO connect_sessions (id, token_hash, application_id, user_id, organization_id, integrations, return_url, owner, purpose, expires_at, created_at, shared) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
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
        let row = sqlx::query("SELECT * FROM connect_sessions WHERE token_hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::connect_session).transpose()
    }

    async fn insert_authorize_link(&self, l: &AuthorizeLink) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO authorize_links (id, application_id, user_id, organization_id, integration, connect_session_id, return_url, owner, purpose, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?)")
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
        let row = sqlx::query("SELECT * FROM authorize_links WHERE id = ?")
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
        sqlx::query("INSERT INTO pending_authorizations (state_hash, application_id, user_id, organization_id, integration, connect_session_id, browser_hash, pkce_verifier, redirect_uri, return_url, owner, purpose, expires_at, shared) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
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
            sqlx::query("DELETE FROM pending_authorizations WHERE state_hash = ? RETURNING *")
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        row.as_ref().map(rows::pending).transpose()
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut n = 0;
        for table in [
            "connect_sessions",
            "authorize_links",
            "pending_authorizations",
        ] {
            n += sqlx::query(&format!("DELETE FROM {table} WHERE expires_at < ?"))
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
        let row = sqlx::query("SELECT * FROM connections WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::connection).transpose()
    }

    async fn find_connections(&self, k: &ConnectionKey) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM connections WHERE application_id = ? AND user_id = ? AND org_key = ? AND integration = ? AND shared = 0 AND status <> 'revoked' ORDER BY created_at, id",
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
            "SELECT * FROM connections WHERE application_id = ? AND org_key = ? AND integration = ? AND shared = 1 AND status <> 'revoked' ORDER BY created_at, id",
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
        let mut sql = String::from("SELECT * FROM connections WHERE 1=1");
        let mut binds: Vec<String> = Vec::new();
        for (col, v) in [
            ("application_id", &f.application_id),
            ("user_id", &f.user_id),
            ("organization_id", &f.organization_id),
            ("integration", &f.integration),
        ] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND {col} = ?"));
                binds.push(v.clone());
            }
        }
        if let Some(s) = f.status {
            sql.push_str(" AND status = ?");
            binds.push(s.as_str().to_string());
        }
        if let Some(a) = &f.after_id {
            sql.push_str(" AND id > ?");
            binds.push(a.clone());
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q
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
             VALUES (?,?,?,?,?,?,?,'active',?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
             ON CONFLICT(id) DO UPDATE SET status = 'active', scopes = excluded.scopes, account_id = excluded.account_id,
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
               owner = CASE WHEN ? THEN ? ELSE owner END,
               purpose = CASE WHEN ? THEN ? ELSE purpose END,
               label = CASE WHEN ? THEN ? ELSE label END,
               updated_at = ? WHERE id = ?",
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
        sqlx::query("UPDATE connections SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)")
            .bind(ms(at))
            .bind(id)
            .bind(ms(at))
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
        sqlx::query_scalar(
            "UPDATE connections SET lease_holder = ?, lease_until = ?, lease_fence = lease_fence + 1
             WHERE id = ? AND status = 'active' AND (lease_until IS NULL OR lease_until <= ?) RETURNING lease_fence",
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
            "UPDATE connections SET access_token = ?, refresh_token = ?, token_type = ?, expires_at = ?, scopes = ?,
               token_version = token_version + 1, last_refreshed_at = ?, updated_at = ?, lease_holder = NULL, lease_until = NULL
             WHERE id = ? AND lease_fence = ? AND status = 'active'",
        )
        .bind(&r.tokens.access_token)
        .bind(&r.tokens.refresh_token)
        .bind(&r.tokens.token_type)
        .bind(r.tokens.expires_at.map(ms))
        .bind(json(&r.scopes))
        .bind(ms(r.refreshed_at))
        .bind(ms(r.refreshed_at))
        .bind(id)
        .bind(fence);
        self.write_audited(q, audit).await
    }

    async fn release_refresh_lease(&self, id: &str, fence: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE connections SET lease_holder = NULL, lease_until = NULL WHERE id = ? AND lease_fence = ?")
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
            "UPDATE connections SET status = 'needs_reauthorization', updated_at = ?, lease_holder = NULL, lease_until = NULL
             WHERE id = ? AND token_version = ? AND status = 'active'",
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
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE connections SET status = 'revoked', access_token = NULL, refresh_token = NULL, expires_at = NULL,
               revocation = ?, revoked_at = ?, updated_at = ?, token_version = token_version + 1,
               lease_fence = lease_fence + 1, lease_holder = NULL, lease_until = NULL
             WHERE id = ? AND status <> 'revoked'",
        )
        .bind(outcome.as_str())
        .bind(ms(at))
        .bind(ms(at))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected()
            == 1;
        if changed {
            if let Some(r) = retry {
                sqlx::query("INSERT INTO revocation_retries (id, connection_id, application_id, user_id, integration, access_token, refresh_token, attempts, next_attempt_at, last_error, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
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
               AND expires_at <= ? AND last_used_at >= ? ORDER BY expires_at LIMIT ?",
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
            "SELECT * FROM connections WHERE status = 'active' AND refresh_token IS NOT NULL AND provider = ?
               AND COALESCE(last_refreshed_at, created_at) < ? ORDER BY COALESCE(last_refreshed_at, created_at) LIMIT ?",
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
               AND COALESCE(last_validated_at, created_at) < ? ORDER BY COALESCE(last_validated_at, created_at) LIMIT ?",
        )
        .bind(ms(before))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::connection).collect()
    }

    async fn mark_validated(&self, id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE connections SET last_validated_at = ? WHERE id = ?")
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
        let rows = sqlx::query("SELECT * FROM revocation_retries WHERE next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?")
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
        sqlx::query("UPDATE revocation_retries SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?")
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
        let q = sqlx::query("DELETE FROM revocation_retries WHERE id = ?").bind(id);
        self.write_audited(q, audit).await
    }

    /// The group commit of token events. Fast path: one guarded statement that inserts
    /// the whole batch only if the chain head is still the cached one (a single round
    /// trip to SQLite); if another writer moved the head, or the batch carries webhook
    /// events, the transactional path reads the head and appends.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        const FAST_MAX: usize = 500;
        let cached = self
            .audit_head
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let plain = events.len() <= FAST_MAX
            && !events
                .iter()
                .any(|e| webhooks::EVENTS.contains(&e.action.as_str()));
        if let (Some((head_seq, head_hash)), true) = (cached, plain) {
            let rows = chain_rows((head_seq, head_hash), events);
            let sql = insert_rows_sql(rows.len(), true);
            let q = bind_rows(sqlx::query(&sql), &rows).bind(head_seq);
            let result = match &self.audit_writer {
                Some(w) => {
                    let mut conn = w.conn.lock().await;
                    let r = q.execute(&mut *conn).await;
                    if r.is_ok() {
                        w.dirty.store(true, std::sync::atomic::Ordering::Release);
                    }
                    r
                }
                None => q.execute(&self.pool).await,
            };
            match result {
                Ok(r) if r.rows_affected() as usize == rows.len() => {
                    let last = rows.last().map(|(seq, _, _, hash)| (*seq, hash.clone()));
                    *self.audit_head.lock().unwrap_or_else(|p| p.into_inner()) = last;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "fast audit append failed; using a transaction")
                }
            }
        }
        let mut tx = self.begin().await?;
        append(&mut tx, events).await.map_err(db_err)?;
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        *self.audit_head.lock().unwrap_or_else(|p| p.into_inner()) = head;
        Ok(())
    }

    async fn insert_agent_client(&self, c: &AgentClient) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_clients (id, name, redirect_uris, created_at) VALUES (?,?,?,?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, redirect_uris = excluded.redirect_uris",
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
        let row = sqlx::query("SELECT * FROM agent_clients WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::agent_client).transpose()
    }

    async fn insert_agent_authorization(&self, a: &AgentAuthorization) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO agent_authorizations (id, client_id, application_id, redirect_uri, state, code_challenge, resource, user_id, organization_id, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
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
        let row = sqlx::query("SELECT * FROM agent_authorizations WHERE id = ? AND done = 0")
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
        let r = sqlx::query("UPDATE agent_authorizations SET user_id = ?, organization_id = ?, approval_hash = ? WHERE id = ? AND done = 0 AND user_id IS NULL AND expires_at > ?")
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
        let mut tx = self.begin().await?;
        let done =
            sqlx::query("UPDATE agent_authorizations SET done = 1 WHERE id = ? AND done = 0")
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
            sqlx::query("INSERT INTO agent_sessions (id, application_id, user_id, organization_id, client_id, client_name, integrations, access, resource, created_at, expires_at, revoked_at, code_hash, code_challenge, code_redirect_uri, code_expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
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
        let row = sqlx::query("UPDATE agent_sessions SET code_used = 1 WHERE code_hash = ? AND code_used = 0 AND code_expires_at > ? AND revoked_at IS NULL AND expires_at > ? RETURNING *")
            .bind(code_hash)
            .bind(ms(now))
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
        sqlx::query("INSERT INTO agent_tokens (hash, session_id, expires_at) VALUES (?,?,?)")
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
        let row = sqlx::query("SELECT s.* FROM agent_tokens t JOIN agent_sessions s ON s.id = t.session_id WHERE t.hash = ? AND t.expires_at > ? AND s.expires_at > ? AND s.revoked_at IS NULL")
            .bind(hash)
            .bind(ms(now))
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::agent_session).transpose()
    }

    async fn get_agent_session(&self, id: &str) -> Result<Option<AgentSession>, StoreError> {
        let row = sqlx::query("SELECT * FROM agent_sessions WHERE id = ?")
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
        let rows = sqlx::query("SELECT * FROM agent_sessions WHERE (? IS NULL OR application_id = ?) AND (? IS NULL OR user_id = ?) ORDER BY created_at DESC, id LIMIT ?")
            .bind(application_id)
            .bind(application_id)
            .bind(user_id)
            .bind(user_id)
            .bind(limit.clamp(1, 1000) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::agent_session).collect()
    }

    async fn insert_agent_call(&self, c: &AgentCall) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO agent_session_calls (session_id, at, tool, integration, method, path, status, outcome) VALUES (?,?,?,?,?,?,?,?)")
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
        let rows = sqlx::query("SELECT session_id, at, tool, integration, method, path, status, outcome FROM agent_session_calls WHERE session_id = ? ORDER BY at, rowid LIMIT ?")
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
        let mut tx = self.begin().await?;
        let ended = sqlx::query("UPDATE agent_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL AND expires_at > ?")
            .bind(ms(now))
            .bind(id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected()
            == 1;
        sqlx::query("DELETE FROM agent_tokens WHERE session_id = ?")
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

    async fn list_audit_desc(
        &self,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM audit_events WHERE seq < ? ORDER BY seq DESC LIMIT ?")
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
            "SELECT * FROM audit_events WHERE connection_id = ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(connection_id)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::audit).collect()
    }

    /// Events are appended in time order, so the first record at or after `since` is
    /// found by bisecting on `seq` (the primary key) and only that tail is read: no index
    /// on time slows down the token path's appends.
    async fn audit_activity(
        &self,
        since: OffsetDateTime,
        actions: &[&str],
    ) -> Result<Vec<(OffsetDateTime, String, u64)>, StoreError> {
        let bounds: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM audit_events")
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        let (Some(mut lo), Some(mut hi)) = bounds.unwrap_or((None, None)) else {
            return Ok(Vec::new());
        };
        let since_ms = ms(since);
        // The smallest seq whose time is >= since (hi + 1 when none is).
        hi += 1;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at: Option<i64> = sqlx::query_scalar(
                "SELECT at FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT 1",
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
        let placeholders = vec!["?"; actions.len().max(1)].join(",");
        let sql = format!("SELECT (at / 3600000) * 3600000 AS hour, action, COUNT(*) AS n FROM audit_events WHERE seq >= ? AND at >= ? AND action IN ({placeholders}) GROUP BY hour, action ORDER BY hour");
        let mut q = sqlx::query_as::<_, (i64, String, i64)>(&sql)
            .bind(lo)
            .bind(since_ms);
        for a in actions {
            q = q.bind(*a);
        }
        if actions.is_empty() {
            q = q.bind("");
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(h, a, n)| (keyway_core::clock::from_millis(h), a, n.max(0) as u64))
            .collect())
    }

    async fn list_audit(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after_seq)
            .bind(limit.max(1) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::audit).collect()
    }

    async fn insert_webhook(
        &self,
        h: &webhooks::Webhook,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let q = sqlx::query("INSERT INTO webhooks (id, application_id, url, events, secret, created_at) VALUES (?,?,?,?,?,?)")
            .bind(&h.id)
            .bind(&h.application_id)
            .bind(&h.url)
            .bind(json(&h.events))
            .bind(&h.secret_sealed)
            .bind(ms(h.created_at));
        self.write_audited(q, audit).await.map(|_| ())
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<webhooks::Webhook>, StoreError> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE id = ?")
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
        let rows = match application_id {
            Some(a) => {
                sqlx::query(
                    "SELECT * FROM webhooks WHERE application_id = ? ORDER BY created_at, id",
                )
                .bind(a)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query("SELECT * FROM webhooks ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db_err)?;
        rows.iter().map(rows::webhook).collect()
    }

    async fn delete_webhook(&self, id: &str, audit: &[AuditEvent]) -> Result<bool, StoreError> {
        let q = sqlx::query("DELETE FROM webhooks WHERE id = ?").bind(id);
        self.write_audited(q, audit).await
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<webhooks::Delivery>, StoreError> {
        let rows = sqlx::query("SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at DESC, id LIMIT ?")
            .bind(webhook_id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::delivery).collect()
    }

    async fn claim_due_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(webhooks::Delivery, webhooks::Webhook)>, StoreError> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id IN
               (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?)
             RETURNING *",
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
            let hook = sqlx::query("SELECT * FROM webhooks WHERE id = ?")
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
            "UPDATE webhook_deliveries SET attempts = ?, state = ?, last_status = ?, last_error = ?, next_attempt_at = ?,
               delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
        )
        .bind(attempts)
        .bind(state)
        .bind(status)
        .bind(error)
        .bind(ms(next_attempt_at))
        .bind(state)
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
            "INSERT INTO job_leases (job, holder, until) VALUES (?, ?, ?)
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE job_leases.until <= ? OR job_leases.holder = excluded.holder",
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
            "UPDATE {table} SET {field} = ? WHERE {key} = ? AND {field} = ?"
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

#[cfg(test)]
mod audit_writer_tests {
    use super::*;
    use keyway_core::store::Store;

    /// Token batches go through the writer's own connection; other connections see them
    /// at once (they are committed), and the WAL is fsynced by the next sync pass.
    #[tokio::test]
    async fn token_batches_are_committed_on_their_own_connection_and_synced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(dir.path()).await.expect("open");
        let w = s.audit_writer.clone().expect("file stores have a writer");
        let ev = |n: i64| {
            AuditEvent::new(OffsetDateTime::UNIX_EPOCH, "token.issued", "key:k")
                .details(serde_json::json!({"n": n}))
        };
        s.append_audit(&[ev(1)])
            .await
            .expect("slow path reads the head");
        assert!(!w.dirty.load(std::sync::atomic::Ordering::Acquire));
        s.append_audit(&[ev(2), ev(3)]).await.expect("fast path");
        assert!(
            w.dirty.load(std::sync::atomic::Ordering::Acquire),
            "a NORMAL commit awaits its fsync"
        );
        let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
            .fetch_one(s.pool())
            .await
            .expect("count");
        assert_eq!(seen, 3, "committed before the callers were answered");
        w.sync_if_dirty().await;
        assert!(!w.dirty.load(std::sync::atomic::Ordering::Acquire));
        // In-memory stores (unit tests) have no WAL and write through the pool.
        assert!(SqliteStore::in_memory()
            .await
            .expect("mem")
            .audit_writer
            .is_none());
    }
}
