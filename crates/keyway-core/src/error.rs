//! The domain error: what went wrong in terms a caller can act on. The HTTP layer maps
//! each variant to a status and a stable `code`; nothing here knows HTTP.

use crate::vault::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Input that breaks a rule; `code` is stable and machine-readable.
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// No connection for this user and integration (`404 not_installed`).
    #[error("no connection to {integration} for this user")]
    NotInstalled { integration: String },
    /// The grant is dead; the user must reconnect (`409 needs_reauthorization`).
    #[error("connection {connection_id} needs to be reauthorized by its user")]
    NeedsReauthorization {
        connection_id: String,
        reconnect_url: Option<String>,
    },
    /// The connection was disconnected.
    #[error("connection {connection_id} was revoked")]
    Revoked { connection_id: String },
    /// Several connections match and the call did not say which (`409 ambiguous_connection`).
    #[error(
        "the user has several connections to {integration}; name one with connection_id or label"
    )]
    Ambiguous {
        integration: String,
        choices: Vec<crate::model::ConnectionChoice>,
    },
    /// The provider failed transiently and no valid token is at hand (R3).
    #[error("{provider} is unavailable; try again shortly")]
    ProviderUnavailable {
        provider: String,
        retry_after_secs: u64,
    },
    /// The provider refused in a way that is not a dead grant (bad client credentials).
    #[error("{provider} refused the request: {detail}")]
    ProviderRejected { provider: String, detail: String },
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
}

impl CoreError {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        CoreError::Invalid {
            code,
            detail: detail.into(),
        }
    }
}

/// Errors of the storage layer, reduced to what the domain must tell apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded (maps to 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was hit.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}
