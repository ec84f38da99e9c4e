//! A small migration runner: numbered SQL files embedded in the binary, one list per
//! database dialect, applied in order inside transactions, recorded in `schema_migrations`.

use keyway_core::StoreError;
use sqlx::{PgPool, SqliteConnection};

pub(crate) const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_audit_and_retries.sql"),
    ),
    (3, include_str!("../migrations/sqlite/0003_webhooks.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_labelled_connections.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_shared_connections.sql"),
    ),
    (
        6,
        include_str!("../migrations/sqlite/0006_application_branding.sql"),
    ),
    (
        7,
        include_str!("../migrations/sqlite/0007_agent_sessions.sql"),
    ),
    (
        8,
        include_str!("../migrations/sqlite/0008_agent_session_calls.sql"),
    ),
    (9, include_str!("../migrations/sqlite/0009_job_leases.sql")),
];

/// Runs on one connection, before the pool opens others: a migration's write lock must
/// not meet other connections of this process still running their start-up pragmas.
/// Other processes starting at the same time wait on `BEGIN IMMEDIATE`.
pub(crate) async fn run_sqlite(conn: &mut SqliteConnection) -> Result<u32, StoreError> {
    let err = |e: sqlx::Error| StoreError::Other(format!("migration: {e}"));
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    let mut applied = 0;
    for (version, sql) in SQLITE {
        // IMMEDIATE takes the write lock first, so two processes cannot both apply it.
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *conn)
                .await
                .map_err(err)?;
        if done.is_some() {
            sqlx::raw_sql("COMMIT")
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            continue;
        }
        let result = async {
            sqlx::raw_sql(sql).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s','now') * 1000)")
                .bind(version)
                .execute(&mut *conn)
                .await?;
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await
        }
        .await;
        if let Err(e) = result {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            return Err(err(e));
        }
        tracing::info!(version, "applied database migration");
        applied += 1;
    }
    Ok(applied)
}

pub(crate) const POSTGRES: &[(i64, &str)] =
    &[(1, include_str!("../migrations/postgres/0001_init.sql"))];

/// PostgreSQL: every pending migration in one transaction that first locks the row of
/// `schema_lock` (`SELECT … FOR UPDATE`): replicas starting together take turns, and the
/// ones that come second find the work done. A row lock rather than an advisory lock, so
/// the same runner works on PostgreSQL-compatible databases without advisory locks.
/// Refuses a database migrated by a newer Keyway.
pub(crate) async fn run_postgres(pool: &PgPool) -> Result<u32, StoreError> {
    let err = |e: sqlx::Error| match crate::rows::db_err(e) {
        StoreError::Unavailable(m) => StoreError::Unavailable(m),
        other => StoreError::Other(format!("migration: {other}")),
    };
    // Two processes creating the bookkeeping tables at once can collide in the catalog
    // (`IF NOT EXISTS` is checked before the insert): the loser tries again and finds them.
    let mut attempt = 0;
    loop {
        let r = sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
             CREATE TABLE IF NOT EXISTS schema_lock (id SMALLINT PRIMARY KEY);
             INSERT INTO schema_lock (id) VALUES (1) ON CONFLICT DO NOTHING;",
        )
        .execute(pool)
        .await;
        match r {
            Ok(_) => break,
            // 23505 on the catalog's type name, or 42P07 / 42710 "already exists".
            Err(sqlx::Error::Database(d))
                if attempt < 5
                    && (d.is_unique_violation()
                        || matches!(d.code().as_deref(), Some("42P07" | "42710"))) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(err(e)),
        }
    }
    let mut tx = pool.begin().await.map_err(err)?;
    sqlx::query("SELECT id FROM schema_lock WHERE id = 1 FOR UPDATE")
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
    let known = POSTGRES.last().map(|(v, _)| *v).unwrap_or(0);
    if let Some(newer) = done.iter().copied().filter(|v| *v > known).max() {
        return Err(StoreError::Other(format!(
            "the database is at schema version {newer}, newer than this Keyway knows ({known}); run the newer Keyway or restore a backup"
        )));
    }
    let mut applied = 0;
    for (version, sql) in POSTGRES {
        if done.contains(version) {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(err)?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tracing::info!(version, "applied database migration");
        applied += 1;
    }
    // The audit chain's head row starts at the genesis hash.
    sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT DO NOTHING")
        .bind(keyway_core::audit::GENESIS)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(applied)
}
