//! Storage for Keyway: the SQLite (embedded, default) and PostgreSQL (several replicas)
//! implementations of [`keyway_core::store::Store`].
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so a committed token survives a
//! process or machine crash (R4). Every method of both stores is a single statement or a
//! single transaction.

mod migrate;
mod postgres;
mod rows;
mod sqlite;

pub use postgres::{PgSettings, PgStore};
pub use sqlite::SqliteStore;

#[cfg(test)]
mod pg_tests;
#[cfg(test)]
mod tests;
