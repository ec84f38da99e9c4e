//! Keyway's domain: everything the broker decides, with no HTTP framework and no SQL.
//!
//! Time ([`clock::Clock`]), storage ([`store::Store`]) and outbound HTTP
//! ([`outbound::HttpClient`]) come in through small traits so that the rules here are
//! tested without sockets or sleeping.

pub mod admin;
pub mod agents;
pub mod audit;
pub mod broker;
mod cache;
pub mod catalog;
pub mod clock;
pub mod connect;
pub mod connections;
pub mod credentials;
pub mod error;
pub mod governance;
pub mod ids;
pub mod import;
pub mod keepalive;
pub mod model;
pub mod oauth;
pub mod outbound;
pub mod proxy;
pub mod secret;
pub mod store;
pub mod tokens;
pub mod tools;
pub mod vault;
pub mod webhooks;

pub use broker::{Broker, BrokerSettings};
pub use error::{CoreError, StoreError};
