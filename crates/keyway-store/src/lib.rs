//! Storage for Keyway: the SQLite implementation of [`keyway_core::store::Store`].
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so a committed token survives a
//! process or machine crash (R4). Every method is a single statement or a single
//! transaction.

mod migrate;
mod rows;
mod sqlite;

pub use sqlite::SqliteStore;

#[cfg(test)]
mod tests;
