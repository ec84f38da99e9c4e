//! Request and response bodies of the v1 API, with their OpenAPI schemas.

use keyway_core::clock::rfc3339;
use keyway_core::model::*;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Tells "absent" (leave as is) from `null` (clear) in PATCH bodies.
fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// Lower-case slug used in API calls (`slack`).
    pub slug: String,
    /// Catalog provider id (`slack`, `google-drive`, or a custom one).
    pub provider: String,
    /// The OAuth client id; leave out for API-key providers (each user brings a key).
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Scopes to request; the provider's defaults when empty.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Per-tenant settings (`host` for Salesforce, `account` for Snowflake).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchIntegration {
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub settings: Option<BTreeMap<String, String>>,
    /// Required when `scopes` changes.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationView {
    pub slug: String,
    pub provider: String,
    pub provider_name: String,
    pub client_id: String,
    /// Whether a client secret is stored; the secret itself is never returned.
    pub has_client_secret: bool,
    pub scopes: Vec<String>,
    pub settings: BTreeMap<String, String>,
    /// The redirect URI to register with the provider.
    pub redirect_uri: String,
    pub created_at: String,
    pub updated_at: String,
}

impl IntegrationView {
    pub fn new(i: &Integration, provider_name: String, redirect_uri: String) -> Self {
        Self {
            slug: i.slug.clone(),
            provider: i.provider.clone(),
            provider_name,
            client_id: i.client_id.clone(),
            has_client_secret: i.client_secret_sealed.is_some(),
            scopes: i.scopes.clone(),
            settings: i.settings.clone(),
            redirect_uri,
            created_at: rfc3339(i.created_at),
            updated_at: rfc3339(i.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApplication {
    pub name: String,
    /// Exact URLs the connect flow may return to.
    #[serde(default)]
    pub return_urls: Vec<String>,
    /// Origins allowed to embed the widget (`https://app.example.com`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Integrations this application may use; all when absent.
    #[serde(default)]
    pub allowed_integrations: Option<Vec<String>>,
    /// Longest agent session, in seconds.
    #[serde(default)]
    pub agent_session_max: Option<i64>,
    #[serde(default)]
    pub agent_session_default: Option<i64>,
    /// Where agent approvals send the browser to sign the user in.
    #[serde(default)]
    pub login_url: Option<String>,
    /// How the connect widget looks for this application.
    #[serde(default)]
    pub branding: Option<BrandingBody>,
}

/// The widget's look: an accent colour (`#rrggbb`) and a logo (https URL).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingBody {
    #[serde(default)]
    pub accent_color: Option<String>,
    #[serde(default)]
    pub logo_url: Option<String>,
}

impl From<BrandingBody> for keyway_core::model::Branding {
    fn from(b: BrandingBody) -> Self {
        Self {
            accent_color: b.accent_color,
            logo_url: b.logo_url,
        }
    }
}

/// `PATCH /v1/applications/{id}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchApplication {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub return_urls: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub login_url: Option<String>,
    #[serde(default)]
    pub branding: Option<BrandingBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationView {
    pub id: String,
    pub name: String,
    pub return_urls: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_integrations: Option<Vec<String>>,
    pub agent_session_max: i64,
    pub agent_session_default: i64,
    pub login_url: Option<String>,
    pub branding: BrandingBody,
    pub created_at: String,
}

impl From<&Application> for ApplicationView {
    fn from(a: &Application) -> Self {
        Self {
            id: a.id.clone(),
            name: a.name.clone(),
            return_urls: a.return_urls.clone(),
            allowed_origins: a.allowed_origins.clone(),
            allowed_integrations: a.allowed_integrations.clone(),
            agent_session_max: a.agent_session_max_secs,
            agent_session_default: a.agent_session_default_secs,
            login_url: a.login_url.clone(),
            branding: BrandingBody {
                accent_color: a.branding.accent_color.clone(),
                logo_url: a.branding.logo_url.clone(),
            },
            created_at: rfc3339(a.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: String,
    /// The key itself: shown once, stored only as a hash.
    pub key: String,
    pub prefix: String,
    pub application_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub application_id: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            application_id: k.application_id.clone(),
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectSession {
    pub user_id: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    /// Integrations the widget offers; all the application's when absent.
    #[serde(default)]
    pub integrations: Option<Vec<String>>,
    /// Must be one of the application's return URLs exactly.
    #[serde(default)]
    pub return_url: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    /// Admin keys name the application; application keys imply it.
    #[serde(default)]
    pub application_id: Option<String>,
    /// Connect once for the organization; every member of it then gets tokens from this
    /// connection (their own connection, if they have one, wins). Needs `organization_id`.
    #[serde(default)]
    pub shared: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectSessionCreated {
    /// The session token (also inside `url`).
    pub token: String,
    /// The hosted connect widget for this user.
    pub url: String,
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    pub user_id: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub return_url: Option<String>,
    #[serde(default)]
    pub application_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizeResponse {
    /// Send the user's browser here; Keyway shows who connects what, then redirects to
    /// the provider.
    pub url: String,
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// Integration slug.
    pub integration: String,
    pub user_id: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    /// Which connection, when the user has several (two Slack workspaces).
    #[serde(default)]
    pub connection_id: Option<String>,
    /// Or which label (defaults to the provider account name).
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub application_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The provider access token (OAuth providers). Absent for API-key providers, which
    /// answer `credentials` instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// For API-key providers (`token_type: "api_key"`): every field the user entered, by
    /// the catalog entry's field names, e.g. `{"api_key": "sk-..."}` or
    /// `{"account_sid": "AC...", "auth_token": "..."}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<BTreeMap<String, String>>,
    /// `bearer` for OAuth tokens, `api_key` for API-key credentials.
    pub token_type: String,
    /// When the access token expires; absent for tokens that do not expire.
    pub expires_at: Option<String>,
    pub scopes: Vec<String>,
    /// Configured scopes this connection was not granted (reconnect to add them).
    pub missing_scopes: Vec<String>,
    pub connection_id: String,
    /// True when the token comes from the organization's shared connection (the user has
    /// no connection of their own to this integration).
    pub shared: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderAccount {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integration: String,
    pub provider: String,
    /// `active`, `needs_reauthorization` or `revoked`.
    pub status: String,
    pub scopes: Vec<String>,
    pub provider_account: ProviderAccount,
    pub metadata: BTreeMap<String, String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub label: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_used_at: Option<String>,
    pub last_refreshed_at: Option<String>,
    pub last_validated_at: Option<String>,
    pub revoked_at: Option<String>,
    /// For revoked connections: `confirmed`, `unsupported` or `failed`.
    pub revocation: Option<String>,
    /// Connected for the whole organization (`organization_id`), used by its members.
    pub shared: bool,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.id.clone(),
            application_id: c.application_id.clone(),
            user_id: c.user_id.clone(),
            organization_id: c.organization_id.clone(),
            integration: c.integration.clone(),
            provider: c.provider.clone(),
            status: c.status.as_str().into(),
            scopes: c.scopes.clone(),
            provider_account: ProviderAccount {
                id: c.account_id.clone(),
                name: c.account_name.clone(),
            },
            metadata: c.metadata.clone(),
            owner: c.owner.clone(),
            purpose: c.purpose.clone(),
            label: c.label.clone(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            last_used_at: c.last_used_at.map(rfc3339),
            last_refreshed_at: c.last_refreshed_at.map(rfc3339),
            last_validated_at: c.last_validated_at.map(rfc3339),
            revoked_at: c.revoked_at.map(rfc3339),
            revocation: c.revocation.map(|r| r.as_str().into()),
            shared: c.shared,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub data: Vec<ConnectionView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchConnection {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub purpose: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub label: Option<Option<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DisconnectResponse {
    /// `confirmed`, `unsupported` (the provider has no revocation) or `failed`.
    pub revocation: String,
    pub connection: ConnectionView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub id: String,
    pub name: String,
    /// `oauth2`, `client_credentials` (app-level tokens) or `api_key`.
    pub kind: String,
    pub api_base_url: String,
    pub pkce: bool,
    pub scope_separator: String,
    pub default_scopes: Vec<String>,
    pub settings: Vec<String>,
    pub revocation: bool,
    /// API-key providers: the fields the widget's form asks for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credential_fields: Vec<String>,
    pub docs_url: Option<String>,
    pub notes: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResealResponse {
    pub checked: u64,
    pub resealed: u64,
    pub failed: u64,
    pub active_key_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolView {
    pub name: String,
    pub description: String,
    /// `read` or `write`.
    pub access: String,
    /// Provider scopes the tool needs.
    pub scopes: Vec<String>,
    /// JSON Schema of the input.
    #[schema(value_type = Object)]
    pub input_schema: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCallBody {
    pub user_id: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub connection_id: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// Admin keys name the application.
    #[serde(default)]
    pub application_id: Option<String>,
    /// The tool's input, checked against its schema.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolCallResult {
    /// The provider's HTTP status.
    pub status: u16,
    /// The provider's answer: JSON when it was JSON, else text.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    pub truncated: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifyBody {
    pub user_id: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    /// Admin keys name the application.
    #[serde(default)]
    pub application_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentifyResponse {
    /// One-time URL of Keyway's approval page for this user; redirect the browser there.
    pub approval_url: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AgentSessionQuery {
    pub user_id: Option<String>,
    pub application_id: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub state: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSessionView {
    pub id: String,
    pub application_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub client_id: String,
    pub client_name: String,
    pub integrations: Vec<String>,
    /// `read` or `write`.
    pub access: String,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    /// Every tool call of the session, oldest first (`GET /v1/agent-sessions/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<AgentCallView>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentCallView {
    pub at: String,
    pub tool: String,
    pub integration: String,
    pub method: String,
    pub path: String,
    /// The provider's HTTP status, when it answered.
    pub status: Option<i64>,
    /// `ok`, `provider_error`, `refused` or `failed`.
    pub outcome: String,
}
