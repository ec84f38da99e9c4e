//! The records Keyway keeps. Token material appears here only sealed (see [`crate::vault`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// One product or trust context using Keyway (spec §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: String,
    pub name: String,
    /// Exact return URLs the connect flow may redirect to (S5).
    pub return_urls: Vec<String>,
    /// Origins allowed to embed the widget and receive its messages.
    pub allowed_origins: Vec<String>,
    /// Integration slugs this application may use; `None` means all.
    pub allowed_integrations: Option<Vec<String>>,
    pub agent_session_max_secs: i64,
    pub agent_session_default_secs: i64,
    pub login_url: Option<String>,
    /// How the connect widget looks for this application.
    pub branding: Branding,
    pub created_at: OffsetDateTime,
}

/// An application's look in the widget. Checked when set: the colour is `#rrggbb` and the
/// logo an https URL (plain http only on loopback), so both can go into CSS and CSP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Branding {
    pub accent_color: Option<String>,
    pub logo_url: Option<String>,
}

/// Who is calling the API, established from the bearer API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator key: manages integrations and applications, reads everything.
    Admin { key_id: String },
    /// An application key: sees only its application's connections (S6).
    Application {
        key_id: String,
        application_id: String,
    },
}

impl Principal {
    /// How this principal appears as the actor of audit events.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id())
    }
    pub fn key_id(&self) -> &str {
        match self {
            Principal::Admin { key_id } | Principal::Application { key_id, .. } => key_id,
        }
    }
    pub fn application_id(&self) -> Option<&str> {
        match self {
            Principal::Admin { .. } => None,
            Principal::Application { application_id, .. } => Some(application_id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    /// `None` for admin keys.
    pub application_id: Option<String>,
    pub name: String,
    /// SHA-256 of the key; the key itself is shown once and never stored (S3).
    pub hash: String,
    /// The first characters of the key, to tell keys apart in lists.
    pub prefix: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A configured use of a provider (spec §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub slug: String,
    pub provider: String,
    pub client_id: String,
    /// Sealed client secret.
    pub client_secret_sealed: Option<String>,
    pub scopes: Vec<String>,
    pub settings: BTreeMap<String, String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    NeedsReauthorization,
    Revoked,
}

impl ConnectionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReauthorization => "needs_reauthorization",
            ConnectionStatus::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "needs_reauthorization" => Some(Self::NeedsReauthorization),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// Sealed token material of a connection, with the version that fences writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_type: String,
    pub expires_at: Option<OffsetDateTime>,
}

/// One user's binding to one integration inside one application (spec §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integration: String,
    pub provider: String,
    pub status: ConnectionStatus,
    pub scopes: Vec<String>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub label: Option<String>,
    pub tokens: Option<SealedTokens>,
    /// Incremented on every token write; a refresh that read version N may only write
    /// if no one else wrote since (R1 fencing, R2 race detection).
    pub token_version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_refreshed_at: Option<OffsetDateTime>,
    pub last_validated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// Result of the provider revocation when the connection was disconnected.
    pub revocation: Option<RevocationOutcome>,
    /// Connected by `user_id` for the whole organization: every member of it in this
    /// application may use it (their own connection, if any, wins).
    pub shared: bool,
}

/// The (application, user, organization, integration) key. A user may hold several
/// connections under one key, one per provider account; `selector` names one of them
/// (`id:<connection id>` or `label:<label>`), and the store ignores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integration: String,
    pub selector: Option<String>,
}

impl ConnectionKey {
    /// The key that names exactly this connection.
    pub fn of(c: &Connection) -> Self {
        Self {
            application_id: c.application_id.clone(),
            user_id: c.user_id.clone(),
            organization_id: c.organization_id.clone(),
            integration: c.integration.clone(),
            selector: Some(format!("id:{}", c.id)),
        }
    }

    pub fn same_owner(&self, other: &Self) -> bool {
        self.application_id == other.application_id
            && self.user_id == other.user_id
            && self.organization_id == other.organization_id
            && self.integration == other.integration
    }
}

/// One of several connections a token call could mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionChoice {
    pub connection_id: String,
    pub label: Option<String>,
    pub account_name: Option<String>,
}

/// Filters for listing connections.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub application_id: Option<String>,
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub integration: Option<String>,
    pub status: Option<ConnectionStatus>,
    /// Return only ids greater than this (the opaque cursor).
    pub after_id: Option<String>,
    pub limit: u32,
}

/// A short-lived authority to connect accounts for one user through the widget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSession {
    pub id: String,
    pub token_hash: String,
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integrations: Option<Vec<String>>,
    pub return_url: Option<String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    /// Connect for the organization, shared with its members.
    pub shared: bool,
}

/// A pending authorization: the OAuth `state`, stored by hash, single-use (S4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// SHA-256 of the `state` value sent to the provider.
    pub state_hash: String,
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integration: String,
    pub connect_session_id: Option<String>,
    /// SHA-256 of the browser-binding cookie set before the redirect to the provider.
    pub browser_hash: String,
    /// Sealed PKCE code verifier, when the provider uses PKCE.
    pub pkce_verifier_sealed: Option<String>,
    pub redirect_uri: String,
    pub return_url: Option<String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub expires_at: OffsetDateTime,
    pub shared: bool,
}

/// An authorization link from `POST /v1/integrations/{slug}/authorize`, waiting for the
/// browser to open it (the browser binding is only set then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeLink {
    pub id: String,
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integration: String,
    pub connect_session_id: Option<String>,
    pub return_url: Option<String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub expires_at: OffsetDateTime,
}

/// Outcome of revoking a grant at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationOutcome {
    Confirmed,
    Unsupported,
    Failed,
}

impl RevocationOutcome {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirmed" => Some(Self::Confirmed),
            "unsupported" => Some(Self::Unsupported),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            RevocationOutcome::Confirmed => "confirmed",
            RevocationOutcome::Unsupported => "unsupported",
            RevocationOutcome::Failed => "failed",
        }
    }
}

/// A provider revocation that failed and is retried in the background. The tokens are
/// kept sealed here (not on the connection, which is shredded) only until the provider
/// confirms or the retries are given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRetry {
    pub id: String,
    pub connection_id: String,
    pub application_id: String,
    pub user_id: String,
    pub integration: String,
    pub access_token_sealed: String,
    pub refresh_token_sealed: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
}

/// An MCP client registered with Keyway's authorization server (RFC 7591).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentClient {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub created_at: OffsetDateTime,
}

/// An authorization request waiting for the application to identify its user and for
/// the person to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAuthorization {
    pub id: String,
    pub client_id: String,
    pub application_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    /// RFC 7636 S256 challenge.
    pub code_challenge: String,
    /// RFC 8707 resource the token will be for (Keyway's MCP URL).
    pub resource: String,
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    /// SHA-256 of the secret in the approval URL handed to the application's backend:
    /// knowing the request id (which went through the browser) is not enough to approve.
    pub approval_hash: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A session a person approved: which integrations, at which level, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSession {
    pub id: String,
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub client_id: String,
    pub client_name: String,
    pub integrations: Vec<String>,
    pub access: crate::catalog::Access,
    pub resource: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// SHA-256 of the authorization code, which works once.
    pub code_hash: String,
    pub code_challenge: String,
    pub code_redirect_uri: String,
    pub code_expires_at: OffsetDateTime,
}

/// One tool call on an agent session's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCall {
    pub session_id: String,
    pub at: OffsetDateTime,
    pub tool: String,
    pub integration: String,
    pub method: String,
    pub path: String,
    /// The provider's HTTP status, when it answered.
    pub status: Option<i64>,
    /// `ok`, `provider_error`, `refused` or `failed`.
    pub outcome: String,
}

impl AgentSession {
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "active"
        }
    }
}
