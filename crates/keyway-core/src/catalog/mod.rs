//! The provider catalog: OAuth 2.0 descriptions of third-party services, as data.
//!
//! Built-in entries are TOML files under `crates/keyway-core/catalog/`, embedded at build
//! time; deployments add their own under `[providers.<id>]` in the config file with the
//! same schema. Every provider quirk (nested token paths, errors inside HTTP 200,
//! form-encoded answers, per-tenant hosts, extra authorize parameters, custom revocation)
//! is a field here, never a `if provider == ".."` branch in code.

mod hosts;
mod load;
mod model;

pub use hosts::{host_matches, HostPattern};
pub use load::{url_allowed as load_url_allowed, Catalog, CatalogEntry, CatalogError};
pub use model::*;
