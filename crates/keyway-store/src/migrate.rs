//! A small migration runner: numbered SQL files embedded in the binary, applied in order
//! inside one transaction each, recorded in `schema_migrations`.

use keyway_core::StoreError;
use sqlx::SqliteConnection;

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
