//! The v1 JSON API: thin handlers that extract, call one broker function, and map.

pub mod admin;
pub mod agents;
pub mod connect;
pub mod connections;
pub mod governance;
pub mod import;
pub mod params;
pub mod proxy;
pub mod tokens;
pub mod tools;
pub mod types;
pub mod webhooks;
