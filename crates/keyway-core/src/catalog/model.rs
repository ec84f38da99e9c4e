//! The catalog schema. `docs/providers.md` documents every field; keep the two in step.

use serde::Deserialize;
use std::collections::BTreeMap;

/// One provider. Field names `name`, `api_base_url` and the `oauth2` table's
/// `authorize_url`, `token_url`, `revocation_url`, `scope_separator`, `pkce` and
/// `client_auth` are fixed by the spec so that users' files keep working.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Display name ("Slack").
    pub name: String,
    /// Base of the provider's API; may contain `{setting}` placeholders (Salesforce host).
    pub api_base_url: String,
    /// Hosts the proxy and tools may reach (S7). Defaults to the host of `api_base_url`.
    /// `*.example.com` matches one or more labels before `example.com`.
    #[serde(default)]
    pub api_hosts: Vec<String>,
    /// Where the provider documents its OAuth apps, shown to operators.
    #[serde(default)]
    pub docs_url: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// Another catalog entry this one refines (aliases such as `google-drive`); only the
    /// fields given here override the parent's.
    #[serde(default)]
    pub extends: Option<String>,
    /// What could not be confirmed from the provider's documentation.
    #[serde(default)]
    pub notes: Option<String>,
    /// How users connect with OAuth 2.0. Exactly one of `oauth2` and `api_key` is set.
    #[serde(default)]
    pub oauth2: Option<OAuth2>,
    /// How users connect by pasting an API key (or a basic-auth pair) into the widget.
    #[serde(default)]
    pub api_key: Option<ApiKeyAuth>,
    /// Per-tenant settings substituted into URLs (`{host}`, `{account}`).
    #[serde(default)]
    pub tenant: Vec<TenantSetting>,
    /// A cheap identity call: fills in the provider account when the token response does
    /// not carry it, and validates non-expiring tokens (R5).
    #[serde(default)]
    pub identity: Option<Identity>,
    /// Token-response metadata key whose value replaces `api_base_url` for a connection
    /// (Salesforce `instance_url`). Its host must match `api_hosts`.
    #[serde(default)]
    pub api_base_url_from: Option<String>,
    /// Operations agents (and application backends) may call on the user's behalf.
    #[serde(default)]
    pub tools: Vec<Tool>,
}

/// What a tool may do: `read` sessions may call only `read` tools.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn as_str(&self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// One operation on a provider's API, as data. The input is checked against
/// `input_schema`; `{field}` placeholders in `path` take input values (each encoded as one
/// path segment), `query` and `body` name the input fields sent as query parameters or in
/// a JSON body, and `graphql` sends `{query, variables: input}` instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Lower-case name, unique within the provider (`list_channels`).
    pub name: String,
    pub description: String,
    pub method: String,
    /// Relative to the connection's API base.
    pub path: String,
    pub access: Access,
    /// Provider scopes the tool needs (shown to people; the provider enforces them).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A JSON Schema (the subset Keyway checks: type, properties, required, enum,
    /// minimum, maximum, minLength, maxLength, items, description, default,
    /// additionalProperties).
    #[serde(default = "empty_object_schema")]
    pub input_schema: serde_json::Value,
    #[serde(default)]
    pub query: Vec<String>,
    #[serde(default)]
    pub body: Vec<String>,
    #[serde(default)]
    pub graphql: Option<String>,
    /// Extra request headers (Notion-Version).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// An input field that must hold exactly one read-only SQL statement (SELECT, SHOW,
    /// DESCRIBE, EXPLAIN, WITH), for SQL APIs reached with POST.
    #[serde(default)]
    pub read_only_sql: Option<String>,
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// A credential the user pastes instead of going through an OAuth grant. Templates in
/// `headers`, `query` and `basic` use the field names as placeholders (`Bearer {api_key}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Where the provider issues keys; the form links to it.
    pub issue_url: String,
    /// A sentence shown above the form (which kind of key, which permissions).
    #[serde(default)]
    pub help: Option<String>,
    /// What the user enters, in this order.
    pub fields: Vec<CredentialField>,
    /// Headers set on every call made with the credential (proxy, tools, identity check).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters set the same way, for providers that take the key in the URL.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// HTTP Basic authentication (RFC 7617) built from two templates.
    #[serde(default)]
    pub basic: Option<BasicCredentials>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialField {
    /// Placeholder and form field name (`api_key`, `account_sid`).
    pub name: String,
    /// The form label ("Secret key").
    pub label: String,
    /// A hint under the field ("Starts with sk-").
    #[serde(default)]
    pub help: Option<String>,
    /// Secret fields are sealed and never shown again. Others (an account SID, a data
    /// centre) are kept as connection metadata and may be used in `api_base_url` and
    /// `identity.url` placeholders.
    #[serde(default = "yes")]
    pub secret: bool,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredentials {
    pub username: String,
    pub password: String,
}

fn yes() -> bool {
    true
}

impl Provider {
    /// The OAuth description, for code paths that only OAuth providers reach.
    pub fn oauth(&self) -> Result<&OAuth2, crate::error::CoreError> {
        self.oauth2.as_ref().ok_or_else(|| {
            crate::error::CoreError::invalid(
                "not_oauth",
                format!("{} is connected with an API key, not OAuth", self.name),
            )
        })
    }

    /// Scopes requested when an integration configures none (none for API keys).
    pub fn default_scopes(&self) -> &[String] {
        self.oauth2
            .as_ref()
            .map(|o| o.default_scopes.as_slice())
            .unwrap_or_default()
    }

    /// Whether Keyway obtains app-level tokens itself (client credentials).
    pub fn is_app_level(&self) -> bool {
        self.oauth2.as_ref().is_some_and(|o| o.app_token.is_some())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// RFC 6749 §2.3.1 HTTP Basic with the client id and secret.
    #[default]
    Basic,
    /// Client id and secret in the request body.
    Post,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    #[default]
    Form,
    Json,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// Refresh tokens are not replaced on refresh.
    None,
    /// A refresh may return a new refresh token; keep the old one if it does not.
    #[default]
    Optional,
    /// Every refresh returns a new refresh token and the old one stops working at once,
    /// so concurrent refreshes break each other (Slack, GitHub Apps, Linear).
    Rotating,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    pub authorize_url: String,
    pub token_url: String,
    /// Where refresh requests go when not to `token_url` (Figma).
    #[serde(default)]
    pub refresh_url: Option<String>,
    /// RFC 7009 revocation endpoint (token in a form body, client authenticated).
    #[serde(default)]
    pub revocation_url: Option<String>,
    /// How requested scopes are joined (`" "` per RFC 6749 §3.3; Slack uses `","`).
    #[serde(default = "space")]
    pub scope_separator: String,
    /// Send RFC 7636 PKCE with S256.
    #[serde(default)]
    pub pkce: bool,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Scopes requested when an integration configures none.
    #[serde(default)]
    pub default_scopes: Vec<String>,
    /// Authorize parameter that carries scopes (Slack user scopes go in `user_scope`).
    #[serde(default = "scope")]
    pub scope_param: String,
    /// Extra authorize parameters (`access_type = "offline"`, `prompt = "consent"`).
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// Extra token-endpoint parameters.
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    /// Extra token-endpoint headers (GitHub needs `Accept: application/json`).
    #[serde(default)]
    pub token_headers: BTreeMap<String, String>,
    /// Encoding of the token request body (Notion takes JSON).
    #[serde(default)]
    pub token_request_format: BodyFormat,
    #[serde(default)]
    pub refresh_token_rotation: Rotation,
    /// Refresh tokens die after this many days unused (Google 180, Microsoft and
    /// Atlassian 90): the keep-alive refreshes such grants at half this age (R5).
    #[serde(default)]
    pub refresh_token_idle_days: Option<u32>,
    /// RFC 9207 issuer: when set, an `iss` on the callback must equal it, and its absence
    /// is tolerated only if `iss_required` is false.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub iss_required: bool,
    #[serde(default)]
    pub token_response: TokenResponse,
    /// A provider-specific revocation call, when it is not RFC 7009.
    #[serde(default)]
    pub revocation: Option<Revocation>,
    /// App-level tokens from the client-credentials grant (RFC 6749 §4.4): no user
    /// connects; Keyway obtains one token per application and integration on the first
    /// token call and renews it the same exactly-once way as a refresh.
    #[serde(default)]
    pub app_token: Option<AppToken>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppToken {
    /// `client_credentials`, or a provider's variant (Zoom `account_credentials`).
    #[serde(default = "client_credentials")]
    pub grant_type: String,
    /// Extra token-request parameters; may use tenant placeholders (`{account_id}`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

fn client_credentials() -> String {
    "client_credentials".into()
}

fn space() -> String {
    " ".into()
}
fn scope() -> String {
    "scope".into()
}

/// Where things are in the token response. Paths are dot-separated (`authed_user.access_token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: String,
    pub scope: String,
    pub token_type: String,
    /// Separator of the granted-scope string; defaults to `oauth2.scope_separator`.
    /// GitHub answers `repo,gist` although it takes space-separated requests.
    pub scope_separator: Option<String>,
    /// A boolean field that is `false` on errors reported with HTTP 200 (Slack `ok`).
    pub ok_field: Option<String>,
    /// Fields that may carry an error code, first present wins.
    pub error_fields: Vec<String>,
    /// Error codes meaning the grant is dead and the user must reconnect (R2).
    pub dead_grant_errors: Vec<String>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    /// Extra values to keep from the response: name → path (Salesforce `instance_url`).
    pub metadata: BTreeMap<String, String>,
    /// Access-token lifetime to assume when the response has no `expires_in`.
    pub default_expires_in: Option<u64>,
}

impl Default for TokenResponse {
    fn default() -> Self {
        Self {
            access_token: "access_token".into(),
            refresh_token: "refresh_token".into(),
            expires_in: "expires_in".into(),
            scope: "scope".into(),
            token_type: "token_type".into(),
            scope_separator: None,
            ok_field: None,
            error_fields: vec!["error".into()],
            dead_grant_errors: vec!["invalid_grant".into()],
            account_id: None,
            account_name: None,
            metadata: BTreeMap::new(),
            default_expires_in: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RevocationAuth {
    /// Client id and secret as HTTP Basic.
    Basic,
    /// The token being revoked as a bearer token (Slack `auth.revoke`).
    Bearer,
    /// Client id and secret in the body.
    Post,
    None,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WhichToken {
    #[default]
    Access,
    Refresh,
}

/// A provider's own revocation call. `url` may use `{client_id}`, `{token}` and tenant
/// placeholders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub url: String,
    #[serde(default = "post_method")]
    pub method: String,
    pub auth: RevocationAuth,
    #[serde(default)]
    pub token: WhichToken,
    /// Body field carrying the token; none when it travels in the URL or as bearer.
    #[serde(default)]
    pub token_param: Option<String>,
    #[serde(default)]
    pub body_format: BodyFormat,
    /// Statuses that mean "already revoked" and count as confirmed (Linear answers 400).
    #[serde(default)]
    pub already_revoked_statuses: Vec<u16>,
    /// A boolean field that is `false` when the call failed despite HTTP 200 (Slack).
    #[serde(default)]
    pub ok_field: Option<String>,
}

fn post_method() -> String {
    "POST".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSetting {
    /// Setting name, used as `{name}` in URLs and as the integration settings key.
    pub name: String,
    #[serde(default)]
    pub default: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub url: String,
    #[serde(default = "get_method")]
    pub method: String,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub account_name: Option<String>,
    /// Extra headers (GitHub wants `Accept` and a `User-Agent`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn get_method() -> String {
    "GET".into()
}
