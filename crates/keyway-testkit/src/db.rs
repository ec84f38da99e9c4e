//! The database under a test server: SQLite in the test's data directory, or — when
//! `KW_TEST_PG_URL` names a PostgreSQL server (`scripts/test` starts a throwaway cluster
//! and runs the integration suite once more with it) — a fresh PostgreSQL database per
//! test server. The database's name is kept in the data directory, so a test that restarts
//! Keyway on the same directory finds the same data, as with SQLite.
//!
//! Tests read and poke the database through these helpers, written once: SQL uses `?`
//! placeholders, rewritten to `$1, $2, …` for PostgreSQL.

use keyway_core::store::Store;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::path::Path;
use std::sync::Arc;

/// The variable naming the PostgreSQL server for the integration suite (not `KEYWAY_*`:
/// `keyway serve` refuses unknown variables of its own prefix).
pub const PG_URL_VAR: &str = "KW_TEST_PG_URL";

#[derive(Clone)]
pub enum TestDb {
    Sqlite(keyway_store::SqliteStore),
    /// The store and its database's name.
    Postgres(keyway_store::PgStore, String),
}

/// `?` → `$n`, outside string literals.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let (mut n, mut quoted) = (0, false);
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
}

/// A column as text, whatever its type (NULL is `None`).
fn text_of<R: Row>(row: &R, i: usize) -> Option<String>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(|v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return v.map(|v| if v { "1".into() } else { "0".into() });
    }
    None
}

/// A new empty database on the `KW_TEST_PG_URL` server, by URL; `None` without one.
pub async fn fresh_postgres_url() -> Option<String> {
    let server = std::env::var(PG_URL_VAR).ok()?;
    let name = format!(
        "kwt_{}",
        keyway_core::ids::random_token(12)
            .to_lowercase()
            .replace(['-', '_'], "")
    );
    let mut admin: sqlx::PgConnection = sqlx::Connection::connect(&server)
        .await
        .expect("postgres server");
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let _ = sqlx::Connection::close(admin).await;
    let mut url = url::Url::parse(&server).expect("KW_TEST_PG_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

impl TestDb {
    /// Opens the test database for `dir`: SQLite in it, or the PostgreSQL database whose
    /// name it records (created on first use).
    pub async fn open(dir: &Path) -> Self {
        if std::env::var(PG_URL_VAR).is_err() {
            return Self::Sqlite(
                keyway_store::SqliteStore::open(dir)
                    .await
                    .expect("sqlite store"),
            );
        }
        std::fs::create_dir_all(dir).expect("data dir");
        let marker = dir.join("postgres-database");
        let url = match std::fs::read_to_string(&marker) {
            Ok(u) => u.trim().to_string(),
            Err(_) => {
                let u = fresh_postgres_url().await.expect("KW_TEST_PG_URL");
                std::fs::write(&marker, &u).expect("record database");
                u
            }
        };
        let settings = keyway_store::PgSettings {
            max_connections: 6,
            acquire_timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        };
        let name = url.rsplit('/').next().unwrap_or_default().to_string();
        Self::Postgres(
            keyway_store::PgStore::connect(&url, &settings)
                .await
                .expect("postgres store"),
            name,
        )
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(..))
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Postgres(s, _) => Arc::new(s.clone()),
        }
    }

    /// Every row of a query, each column as text.
    pub async fn rows(&self, sql: &str, binds: &[&str]) -> Vec<Vec<Option<String>>> {
        match self {
            Self::Sqlite(s) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                let rows = q.fetch_all(s.pool()).await.expect("query");
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| text_of(r, i)).collect())
                    .collect()
            }
            Self::Postgres(s, _) => {
                let sql = numbered(sql);
                let mut q = sqlx::query(&sql);
                for b in binds {
                    q = q.bind(*b);
                }
                let rows = q.fetch_all(s.pool()).await.expect("query");
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| text_of(r, i)).collect())
                    .collect()
            }
        }
    }

    /// The first column of every row.
    pub async fn column(&self, sql: &str, binds: &[&str]) -> Vec<Option<String>> {
        self.rows(sql, binds)
            .await
            .into_iter()
            .map(|r| r.into_iter().next().flatten())
            .collect()
    }

    /// The first column of the first row (a query that must return one).
    pub async fn value(&self, sql: &str, binds: &[&str]) -> Option<String> {
        self.column(sql, binds)
            .await
            .into_iter()
            .next()
            .expect("one row")
    }

    /// A `COUNT(*)` or other integer.
    pub async fn count(&self, sql: &str, binds: &[&str]) -> i64 {
        self.value(sql, binds)
            .await
            .and_then(|v| v.parse().ok())
            .expect("an integer")
    }

    /// Runs statements as they are (tamper tests); dialect-specific SQL is the caller's.
    pub async fn exec(&self, sql: &str) {
        match self {
            Self::Sqlite(s) => sqlx::raw_sql(sql).execute(s.pool()).await.map(|_| ()),
            Self::Postgres(s, _) => sqlx::raw_sql(sql).execute(s.pool()).await.map(|_| ()),
        }
        .expect("sql");
    }

    /// PostgreSQL only (`false` on SQLite, where the database is a file in the process):
    /// with `down`, the database refuses new connections and every open one is cut, as
    /// in an outage or a failover; without, it accepts them again.
    pub async fn set_outage(&self, down: bool) -> bool {
        let Self::Postgres(_, name) = self else {
            return false;
        };
        let server = std::env::var(PG_URL_VAR).expect("KW_TEST_PG_URL");
        let mut admin: sqlx::PgConnection = sqlx::Connection::connect(&server)
            .await
            .expect("postgres server");
        sqlx::raw_sql(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {}",
            if down { "false" } else { "true" }
        ))
        .execute(&mut admin)
        .await
        .expect("alter database");
        if down {
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                .bind(name)
                .execute(&mut admin)
                .await
                .expect("terminate");
        }
        let _ = sqlx::Connection::close(admin).await;
        true
    }

    /// Closes the pool: every later call fails as if the database were gone.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.pool().close().await,
            Self::Postgres(s, _) => s.pool().close().await,
        }
    }

    async fn tables(&self) -> Vec<String> {
        let sql = match self {
            Self::Sqlite(_) => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            Self::Postgres(..) => "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name",
        };
        self.column(sql, &[]).await.into_iter().flatten().collect()
    }

    /// Every row of every table as text, in a stable order.
    pub async fn dump(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for t in self.tables().await {
            let sql = match self {
                Self::Sqlite(_) => {
                    let cols: Vec<String> = self
                        .column(
                            &format!("SELECT name FROM pragma_table_info('{t}') ORDER BY cid"),
                            &[],
                        )
                        .await
                        .into_iter()
                        .flatten()
                        .collect();
                    let expr = cols
                        .iter()
                        .map(|c| format!("quote({c})"))
                        .collect::<Vec<_>>()
                        .join("||','||");
                    format!("SELECT {expr} FROM {t} ORDER BY rowid")
                }
                Self::Postgres(..) => format!("SELECT x::TEXT FROM {t} x ORDER BY 1"),
            };
            let rows = self.column(&sql, &[]).await.into_iter().flatten().collect();
            out.push((t, rows));
        }
        out
    }

    /// A digest of every row of every table: equal before and after means nothing changed.
    pub async fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (t, rows) in self.dump().await {
            h.update(t.as_bytes());
            for r in rows {
                h.update(r.as_bytes());
                h.update(b"\n");
            }
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            super::numbered("SELECT a FROM t WHERE b = ? AND c = '?' AND d = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d = $2"
        );
    }
}
