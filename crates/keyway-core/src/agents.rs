//! Agent sessions: Keyway's OAuth 2.1 authorization server for MCP clients (spec §5).
//!
//! The grant is the approval: an MCP client registers (RFC 7591), sends the browser to
//! `/oauth2/authorize` with PKCE S256 (RFC 7636, required) and a `resource` (RFC 8707);
//! Keyway keeps the request and sends the browser to the application's login; the
//! application's backend identifies its user and gets a one-time approval URL; the person
//! picks integrations, `read` or `write`, and a duration bounded by the application's
//! policy; the client gets a code (with RFC 9207 `iss`) and exchanges it for an opaque
//! access token, stored as a hash, bound to the resource and ending with the session.

use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::catalog::Access;
use crate::connect::{check_id, MAX_ID_LEN};
use crate::error::CoreError;
use crate::ids::{new_id, pkce_challenge, random_token, sha256_hex};
use crate::model::*;
use time::Duration;
use url::Url;

/// How long a pending authorization waits for the login and the approval.
pub const AUTHORIZATION_TTL: Duration = Duration::minutes(15);
/// How long an authorization code may wait to be exchanged.
pub const CODE_TTL: Duration = Duration::minutes(5);
/// Access tokens last at most this long (and never past the session's end).
pub const TOKEN_TTL: Duration = Duration::hours(1);

/// The query of `GET /oauth2/authorize`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
    pub scope: Option<String>,
}

/// Where `/oauth2/authorize` sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// To the application's login, carrying the request id.
    Login(String),
    /// Back to the client with an OAuth error (RFC 6749 §4.1.2.1): only once the client
    /// and its redirect URI are known to be genuine.
    ClientError(String),
}

/// The person's choice on the approval page.
#[derive(Debug, Clone)]
pub enum Decision {
    Approve {
        integrations: Vec<String>,
        access: Access,
        duration_secs: i64,
    },
    Deny,
}

/// `POST /oauth2/token` input (authorization-code grant; public clients).
#[derive(Debug, Clone, Default)]
pub struct TokenExchange {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub code_verifier: Option<String>,
    pub resource: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AgentToken {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub session_id: String,
}

/// RFC 6749 §5.2 errors of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

fn oauth_err(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        error,
        description: description.into(),
    }
}

fn is_loopback(u: &Url) -> bool {
    matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

/// Registered redirect URIs: https, http on loopback (RFC 8252 §7.3), or a private-use
/// scheme with a dot (RFC 8252 §7.1); never a fragment.
fn check_redirect_uri(u: &str) -> Result<Url, CoreError> {
    let bad = || {
        CoreError::invalid(
            "invalid_redirect_uri",
            format!("`{u}` must be https, http on a loopback address, or an app scheme like com.example.app:/cb, without a fragment"),
        )
    };
    let parsed = Url::parse(u).map_err(|_| bad())?;
    let ok = match parsed.scheme() {
        "https" => parsed.host_str().is_some(),
        "http" => is_loopback(&parsed),
        s => s.contains('.'),
    };
    if !ok || parsed.fragment().is_some() || u.len() > 2048 {
        return Err(bad());
    }
    Ok(parsed)
}

/// Exact match, except that a loopback redirect may use any port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    match (Url::parse(registered), Url::parse(presented)) {
        (Ok(mut r), Ok(mut p)) if r.scheme() == "http" && is_loopback(&r) && is_loopback(&p) => {
            let _ = r.set_port(None);
            let _ = p.set_port(None);
            r == p
        }
        _ => false,
    }
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.into()
        }
        Err(_) => base.to_string(),
    }
}

impl Broker {
    /// Keyway's MCP resource: `{public}/mcp`, or `{public}/mcp/{application_id}`.
    pub fn mcp_resource(&self, application_id: Option<&str>) -> String {
        match application_id {
            Some(a) => format!("{}/mcp/{a}", self.settings.public_url),
            None => format!("{}/mcp", self.settings.public_url),
        }
    }

    /// The issuer (RFC 8414 / RFC 9207): Keyway's public URL.
    pub fn issuer(&self) -> String {
        self.settings.public_url.clone()
    }

    /// The application a resource URL names: `/mcp/{id}`, or for `/mcp` the oldest
    /// application with a login URL. A missing resource means Keyway's own (RFC 8707).
    async fn application_for_resource(
        &self,
        resource: Option<&str>,
    ) -> Result<(Application, String), CoreError> {
        let base = self.mcp_resource(None);
        let r = resource
            .map(|r| r.trim_end_matches('/').to_string())
            .unwrap_or_else(|| base.clone());
        let invalid = || {
            CoreError::invalid(
                "invalid_target",
                format!("`resource` must be {base} or {base}/{{application_id}}"),
            )
        };
        if r == base {
            let apps = self.store.list_applications().await?;
            let app = apps
                .into_iter()
                .find(|a| a.login_url.is_some())
                .ok_or_else(|| {
                    CoreError::invalid(
                        "no_login_url",
                        "no application has a login_url for agent approvals",
                    )
                })?;
            return Ok((app, r));
        }
        let id = r.strip_prefix(&format!("{base}/")).ok_or_else(invalid)?;
        if id.is_empty() || id.contains('/') {
            return Err(invalid());
        }
        let app = self.store.get_application(id).await?.ok_or_else(invalid)?;
        Ok((app, r))
    }

    /// RFC 7591 dynamic client registration (public clients, `none` authentication).
    pub async fn register_agent_client(
        &self,
        name: &str,
        redirect_uris: &[String],
    ) -> Result<AgentClient, CoreError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(CoreError::invalid(
                "invalid_client_metadata",
                "`client_name` must be 1-200 characters",
            ));
        }
        if redirect_uris.is_empty() || redirect_uris.len() > 10 {
            return Err(CoreError::invalid(
                "invalid_redirect_uri",
                "give 1-10 `redirect_uris`",
            ));
        }
        for u in redirect_uris {
            check_redirect_uri(u)?;
        }
        let client = AgentClient {
            id: new_id("mcpc"),
            name: name.to_string(),
            redirect_uris: redirect_uris.to_vec(),
            created_at: self.clock.now(),
        };
        self.store.insert_agent_client(&client).await?;
        Ok(client)
    }

    /// A client whose `client_id` is the URL of its metadata document (MCP's client ID
    /// metadata documents): fetched at each authorization (no redirects, bounded size,
    /// https or loopback http only), its `client_id` must be that URL, and its redirect
    /// URIs follow the registration rules.
    async fn client_from_metadata_document(&self, url: &str) -> Result<AgentClient, CoreError> {
        let bad = |why: &str| {
            CoreError::invalid(
                "invalid_client",
                format!("the client ID metadata document at {url} {why}"),
            )
        };
        let parsed = Url::parse(url).map_err(|_| bad("is not a URL"))?;
        if !crate::catalog::load_url_allowed(&parsed)
            || parsed.path() == "/"
            || parsed.fragment().is_some()
            || url.len() > 2048
        {
            return Err(bad("must be an https URL with a path"));
        }
        let mut req =
            crate::outbound::OutboundRequest::new("GET", url).header("Accept", "application/json");
        req.timeout = std::time::Duration::from_secs(5);
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|_| bad("could not be fetched"))?;
        if resp.status != 200 || resp.body.len() > 64 * 1024 {
            return Err(bad(&format!("answered HTTP {}", resp.status)));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|_| bad("is not JSON"))?;
        if doc["client_id"].as_str() != Some(url) {
            return Err(bad("names another client_id"));
        }
        if doc["token_endpoint_auth_method"]
            .as_str()
            .is_some_and(|m| m != "none")
        {
            return Err(bad("asks for client authentication Keyway does not do"));
        }
        let redirect_uris: Vec<String> = doc["redirect_uris"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if redirect_uris.is_empty() || redirect_uris.len() > 10 {
            return Err(bad("must list 1-10 redirect_uris"));
        }
        for u in &redirect_uris {
            check_redirect_uri(u)?;
        }
        let name: String = doc["client_name"]
            .as_str()
            .unwrap_or_else(|| parsed.host_str().unwrap_or("MCP client"))
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let client = AgentClient {
            id: url.to_string(),
            name,
            redirect_uris,
            created_at: self.clock.now(),
        };
        self.store.insert_agent_client(&client).await?;
        Ok(client)
    }

    /// `GET /oauth2/authorize`. Errors about the client or its redirect URI are returned
    /// (shown to the person, never redirected); the rest go back to the client.
    pub async fn start_agent_authorization(
        &self,
        p: AuthorizeParams,
    ) -> Result<AuthorizeOutcome, CoreError> {
        let client_id = p
            .client_id
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= MAX_ID_LEN)
            .ok_or_else(|| CoreError::invalid("invalid_client", "`client_id` is required"))?;
        let client = if client_id.starts_with("https://") || client_id.starts_with("http://") {
            self.client_from_metadata_document(client_id).await?
        } else {
            self.store
                .get_agent_client(client_id)
                .await?
                .ok_or_else(|| CoreError::invalid("invalid_client", "unknown `client_id`"))?
        };
        let redirect_uri = match p.redirect_uri.as_deref() {
            Some(r) => client
                .redirect_uris
                .iter()
                .any(|reg| redirect_matches(reg, r))
                .then(|| r.to_string())
                .ok_or_else(|| {
                    CoreError::invalid(
                        "invalid_redirect_uri",
                        "`redirect_uri` is not one the client registered",
                    )
                })?,
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Err(CoreError::invalid(
                    "invalid_redirect_uri",
                    "`redirect_uri` is required",
                ))
            }
        };
        let state = p.state.clone().filter(|s| s.len() <= 1024);
        let back = |error: &str, description: &str| {
            let mut pairs = vec![("error", error), ("error_description", description)];
            let iss = self.issuer();
            pairs.push(("iss", &iss));
            if let Some(s) = &state {
                pairs.push(("state", s));
            }
            Ok(AuthorizeOutcome::ClientError(with_query(
                &redirect_uri,
                &pairs,
            )))
        };
        if p.response_type.as_deref() != Some("code") {
            return back("unsupported_response_type", "only response_type=code");
        }
        // OAuth 2.1 §4.1.1: PKCE with S256 is required.
        let challenge = match (
            p.code_challenge.as_deref(),
            p.code_challenge_method.as_deref(),
        ) {
            (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => c.to_string(),
            _ => {
                return back(
                    "invalid_request",
                    "PKCE with code_challenge_method=S256 is required",
                )
            }
        };
        let (app, resource) = match self.application_for_resource(p.resource.as_deref()).await {
            Ok(v) => v,
            Err(CoreError::Invalid { detail, .. }) => return back("invalid_target", &detail),
            Err(e) => return Err(e),
        };
        let Some(login_url) = app.login_url.clone() else {
            return back(
                "invalid_target",
                "this application has no login_url for agent approvals",
            );
        };
        let now = self.clock.now();
        let a = AgentAuthorization {
            id: new_id("ar"),
            client_id: client.id,
            application_id: app.id,
            redirect_uri,
            state,
            code_challenge: challenge,
            resource,
            user_id: None,
            organization_id: None,
            approval_hash: None,
            created_at: now,
            expires_at: now + AUTHORIZATION_TTL,
        };
        self.store.insert_agent_authorization(&a).await?;
        Ok(AuthorizeOutcome::Login(with_query(
            &login_url,
            &[("keyway_request", &a.id)],
        )))
    }

    /// `POST /v1/agent-authorizations/{id}/identify`: the application's backend says who
    /// signed in; returns the one-time approval URL to send that browser to.
    pub async fn identify_agent_user(
        &self,
        application_id: &str,
        id: &str,
        user_id: &str,
        organization_id: Option<&str>,
    ) -> Result<String, CoreError> {
        check_id("user_id", user_id)?;
        if let Some(o) = organization_id {
            check_id("organization_id", o)?;
        }
        let a = self
            .store
            .get_agent_authorization(id)
            .await?
            .filter(|a| a.application_id == application_id)
            .ok_or(CoreError::NotFound {
                what: "agent authorization",
            })?;
        let now = self.clock.now();
        if a.expires_at <= now {
            return Err(CoreError::invalid(
                "authorization_expired",
                "this authorization request has expired; the agent must start again",
            ));
        }
        let secret = random_token(32);
        if !self
            .store
            .identify_agent_authorization(id, user_id, organization_id, &sha256_hex(&secret), now)
            .await?
        {
            return Err(CoreError::Conflict {
                code: "already_identified",
                detail: "this request was already given a user".into(),
            });
        }
        Ok(format!(
            "{}/agent/approve/{id}?t={secret}",
            self.settings.public_url
        ))
    }

    /// The pending request behind an approval URL, checked against its secret.
    pub async fn agent_authorization_for_approval(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<(AgentAuthorization, AgentClient, Application), CoreError> {
        let a = self
            .store
            .get_agent_authorization(id)
            .await?
            .ok_or(CoreError::NotFound {
                what: "agent authorization",
            })?;
        let ok = a.approval_hash.as_deref().is_some_and(|h| {
            subtle::ConstantTimeEq::ct_eq(h.as_bytes(), sha256_hex(secret).as_bytes()).into()
        });
        if !ok || a.user_id.is_none() {
            return Err(CoreError::NotFound {
                what: "agent authorization",
            });
        }
        if a.expires_at <= self.clock.now() {
            return Err(CoreError::invalid(
                "authorization_expired",
                "this approval has expired; ask the agent to connect again",
            ));
        }
        let client = self
            .store
            .get_agent_client(&a.client_id)
            .await?
            .ok_or(CoreError::NotFound { what: "client" })?;
        let app = self.application(&a.application_id).await?;
        Ok((a, client, app))
    }

    /// The person's decision. Returns where to send the browser: the client's redirect URI
    /// with a code (approved) or `error=access_denied`.
    pub async fn decide_agent_authorization(
        &self,
        id: &str,
        secret: &str,
        decision: Decision,
    ) -> Result<String, CoreError> {
        let (a, client, app) = self.agent_authorization_for_approval(id, secret).await?;
        let user_id = a.user_id.clone().unwrap_or_default();
        let iss = self.issuer();
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let now = self.clock.now();
        let (session, events) = match decision {
            Decision::Deny => {
                pairs.push(("error", "access_denied".into()));
                let e = AuditEvent::new(now, "agent_session.denied", &format!("user:{user_id}"))
                    .application(&app.id)
                    .user(&user_id)
                    .details(
                        serde_json::json!({"client_id": client.id, "client_name": client.name}),
                    );
                (None, vec![e])
            }
            Decision::Approve {
                integrations,
                access,
                duration_secs,
            } => {
                if integrations.is_empty() {
                    return Err(CoreError::invalid(
                        "invalid_request",
                        "choose at least one connection",
                    ));
                }
                if !(60..=app.agent_session_max_secs).contains(&duration_secs) {
                    return Err(CoreError::invalid(
                        "invalid_request",
                        format!(
                            "the duration must be between 1 minute and {} minutes",
                            app.agent_session_max_secs / 60
                        ),
                    ));
                }
                let available = self
                    .agent_integrations_of(&app, &user_id, a.organization_id.as_deref())
                    .await?;
                let mut chosen: Vec<String> = Vec::new();
                for i in integrations {
                    if !available.contains(&i) {
                        return Err(CoreError::invalid(
                            "invalid_request",
                            format!("`{i}` is not one of this user's connections"),
                        ));
                    }
                    if !chosen.contains(&i) {
                        chosen.push(i);
                    }
                }
                let code = random_token(32);
                let s = AgentSession {
                    id: new_id("as"),
                    application_id: app.id.clone(),
                    user_id: user_id.clone(),
                    organization_id: a.organization_id.clone(),
                    client_id: client.id.clone(),
                    client_name: client.name.clone(),
                    integrations: chosen,
                    access,
                    resource: a.resource.clone(),
                    created_at: now,
                    expires_at: now + Duration::seconds(duration_secs),
                    revoked_at: None,
                    code_hash: sha256_hex(&code),
                    code_challenge: a.code_challenge.clone(),
                    code_redirect_uri: a.redirect_uri.clone(),
                    code_expires_at: now + CODE_TTL,
                };
                pairs.push(("code", code));
                let e = AuditEvent::new(now, "agent_session.approved", &format!("user:{user_id}"))
                    .application(&app.id)
                    .user(&user_id)
                    .details(serde_json::json!({
                        "session_id": s.id, "client_id": client.id, "client_name": client.name,
                        "integrations": s.integrations, "access": s.access.as_str(),
                        "expires_at": crate::clock::rfc3339(s.expires_at),
                    }));
                (Some(s), vec![e])
            }
        };
        if !self
            .store
            .finish_agent_authorization(id, session.as_ref(), &events)
            .await?
        {
            return Err(CoreError::Conflict {
                code: "already_decided",
                detail: "this request was already approved or denied".into(),
            });
        }
        if let Some(s) = &a.state {
            pairs.push(("state", s.clone()));
        }
        pairs.push(("iss", iss));
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Ok(with_query(&a.redirect_uri, &refs))
    }

    /// Integrations the user has live connections to in this application (own or the
    /// organization's shared ones), which an approval may include.
    pub async fn agent_integrations_of(
        &self,
        app: &Application,
        user_id: &str,
        organization_id: Option<&str>,
    ) -> Result<Vec<String>, CoreError> {
        let conns = self
            .store
            .list_connections(&ConnectionFilter {
                application_id: Some(app.id.clone()),
                user_id: Some(user_id.to_string()),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let mut out: Vec<String> = conns
            .into_iter()
            .filter(|c| c.status != ConnectionStatus::Revoked)
            .filter(|c| {
                c.organization_id.as_deref() == organization_id || c.organization_id.is_none()
            })
            .map(|c| c.integration)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// `POST /oauth2/token` with the authorization-code grant: PKCE verified, redirect URI
    /// and client matched, resource checked; the code works once.
    pub async fn exchange_agent_code(&self, x: TokenExchange) -> Result<AgentToken, OAuthError> {
        if x.grant_type.as_deref() != Some("authorization_code") {
            return Err(oauth_err(
                "unsupported_grant_type",
                "only authorization_code (sessions end when the person said; approve again for more)",
            ));
        }
        let (Some(code), Some(verifier), Some(client_id)) = (
            x.code.as_deref(),
            x.code_verifier.as_deref(),
            x.client_id.as_deref(),
        ) else {
            return Err(oauth_err(
                "invalid_request",
                "code, code_verifier and client_id are required",
            ));
        };
        if code.len() > 512 || !(43..=128).contains(&verifier.len()) {
            return Err(oauth_err(
                "invalid_grant",
                "the code or verifier is malformed",
            ));
        }
        let now = self.clock.now();
        let session = self
            .store
            .redeem_agent_code(&sha256_hex(code), now)
            .await
            .map_err(|_| oauth_err("server_error", "try again"))?
            .ok_or_else(|| oauth_err("invalid_grant", "the code is unknown, used or expired"))?;
        let pkce_ok: bool = subtle::ConstantTimeEq::ct_eq(
            pkce_challenge(verifier).as_bytes(),
            session.code_challenge.as_bytes(),
        )
        .into();
        let redirect_ok = x
            .redirect_uri
            .as_deref()
            .is_none_or(|r| r == session.code_redirect_uri);
        let resource_ok = x
            .resource
            .as_deref()
            .is_none_or(|r| r.trim_end_matches('/') == session.resource);
        if !pkce_ok || !redirect_ok || session.client_id != client_id {
            // The code was presented by someone who cannot finish the exchange: it is
            // spent, and the session it would have opened is ended (RFC 6749 §10.5).
            let e = AuditEvent::new(now, "agent_session.revoked", "system")
                .application(&session.application_id)
                .user(&session.user_id)
                .details(serde_json::json!({"session_id": session.id, "reason": "code_mismatch"}));
            let _ = self
                .store
                .revoke_agent_session(&session.id, now, &[e])
                .await;
            return Err(oauth_err(
                "invalid_grant",
                "the code does not match this client, redirect_uri or code_verifier",
            ));
        }
        if !resource_ok {
            return Err(oauth_err(
                "invalid_target",
                "the code was issued for another resource",
            ));
        }
        let token = format!("kwat_{}", random_token(32));
        let expires = (now + TOKEN_TTL).min(session.expires_at);
        self.store
            .insert_agent_token(&sha256_hex(&token), &session.id, expires)
            .await
            .map_err(|_| oauth_err("server_error", "try again"))?;
        Ok(AgentToken {
            access_token: token,
            expires_in: (expires - now).whole_seconds().max(1),
            scope: session
                .integrations
                .iter()
                .map(|i| format!("{i}:{}", session.access.as_str()))
                .collect::<Vec<_>>()
                .join(" "),
            session_id: session.id,
        })
    }

    /// The live session behind an agent's bearer token, for this resource only.
    pub async fn agent_session_for_token(
        &self,
        token: &str,
        resource: &str,
    ) -> Result<Option<AgentSession>, CoreError> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let s = self
            .store
            .agent_session_by_token(&sha256_hex(token), self.clock.now())
            .await?;
        Ok(s.filter(|s| s.resource == resource.trim_end_matches('/')))
    }

    /// Sessions an API key may see: an application's own, or all for admins.
    pub async fn agent_sessions(
        &self,
        principal: &Principal,
        application_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<Vec<AgentSession>, CoreError> {
        let app = principal.application_id().or(application_id);
        if principal
            .application_id()
            .is_some_and(|own| application_id.is_some_and(|a| a != own))
        {
            return Ok(Vec::new());
        }
        Ok(self.store.list_agent_sessions(app, user_id, 1000).await?)
    }

    pub async fn agent_session(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<AgentSession, CoreError> {
        self.store
            .get_agent_session(id)
            .await?
            .filter(|s| {
                principal
                    .application_id()
                    .is_none_or(|a| a == s.application_id)
            })
            .ok_or(CoreError::NotFound {
                what: "agent session",
            })
    }

    /// Ends a session at once: its tokens stop working with the next call.
    pub async fn revoke_agent_session(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<AgentSession, CoreError> {
        let s = self.agent_session(principal, id).await?;
        let now = self.clock.now();
        let e = AuditEvent::new(now, "agent_session.revoked", &principal.actor())
            .application(&s.application_id)
            .user(&s.user_id)
            .details(serde_json::json!({"session_id": s.id, "client_name": s.client_name}));
        if !self.store.revoke_agent_session(id, now, &[e]).await? {
            return Err(CoreError::Conflict {
                code: "session_ended",
                detail: "this session has already ended".into(),
            });
        }
        self.agent_session(principal, id).await
    }

    /// Ends every live session of a user in every application (offboarding).
    pub async fn end_agent_sessions_of(
        &self,
        actor: &str,
        user_id: &str,
    ) -> Result<u64, CoreError> {
        let now = self.clock.now();
        let mut ended = 0;
        for s in self
            .store
            .list_agent_sessions(None, Some(user_id), 1000)
            .await?
        {
            if s.state(now) != "active" {
                continue;
            }
            let e = AuditEvent::new(now, "agent_session.revoked", actor)
                .application(&s.application_id)
                .user(&s.user_id)
                .details(serde_json::json!({"session_id": s.id, "reason": "offboarding"}));
            if self.store.revoke_agent_session(&s.id, now, &[e]).await? {
                ended += 1;
            }
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_checked_and_loopback_ports_float() {
        for ok in [
            "https://client.example/cb",
            "http://127.0.0.1:33418/callback",
            "http://localhost/cb",
            "com.example.app:/oauth",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "https://client.example/cb#frag",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
        assert!(redirect_matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:51234/callback"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:51234/other"
        ));
        assert!(!redirect_matches(
            "https://client.example/cb",
            "https://client.example/cb/"
        ));
        assert!(!redirect_matches(
            "https://client.example/cb",
            "https://client.example:8443/cb"
        ));
    }
}
