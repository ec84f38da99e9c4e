//! The OAuth 2.0 client side, driven entirely by catalog data: authorize URLs, token
//! requests, token-response parsing with each provider's quirks, revocation and identity.

use crate::catalog::{
    BodyFormat, CatalogEntry, ClientAuth, Revocation, RevocationAuth, TokenResponse, WhichToken,
};
use crate::credentials::Credentials;
use crate::error::CoreError;
use crate::model::{Integration, RevocationOutcome};
use crate::outbound::{OutboundRequest, OutboundResponse};
use crate::secret::Secret;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use url::Url;

/// A provider as configured for one integration, with its client secret opened.
pub struct ProviderCtx<'a> {
    pub entry: &'a CatalogEntry,
    pub integration: &'a Integration,
    pub client_secret: Option<Secret>,
}

/// Values for `{name}` placeholders: tenant settings are checked to be plain host-label
/// text; call values (`client_id`, `token`) are percent-encoded as one path segment.
fn render(
    ctx: &ProviderCtx<'_>,
    field: &str,
    template: &str,
    call_values: &[(&str, &str)],
) -> Result<Url, CoreError> {
    let mut out = template.to_string();
    let host_templated = template
        .split("://")
        .nth(1)
        .map(|rest| rest.split('/').next().unwrap_or("").contains('{'))
        .unwrap_or(false);
    for t in &ctx.entry.provider.tenant {
        let ph = format!("{{{}}}", t.name);
        if !out.contains(&ph) {
            continue;
        }
        let value = ctx
            .integration
            .settings
            .get(&t.name)
            .or(t.default.as_ref())
            .ok_or_else(|| {
                CoreError::invalid(
                    "missing_setting",
                    format!(
                        "integration `{}` needs the setting `{}` ({})",
                        ctx.integration.slug, t.name, t.description
                    ),
                )
            })?;
        if !valid_setting_value(value) {
            return Err(CoreError::invalid(
                "invalid_setting",
                format!("setting `{}` must be a host name or label", t.name),
            ));
        }
        out = out.replace(&ph, value);
    }
    for (name, value) in call_values {
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        out = out.replace(&format!("{{{name}}}"), &encoded.replace('+', "%20"));
    }
    let url = Url::parse(&out).map_err(|_| {
        CoreError::invalid(
            "invalid_setting",
            format!("{field} is not a valid URL for this integration's settings"),
        )
    })?;
    if host_templated {
        let host = url.host_str().unwrap_or_default();
        if !ctx.entry.hosts.iter().any(|p| p.matches(host)) {
            return Err(CoreError::invalid(
                "host_not_allowed",
                format!(
                    "host `{host}` is not one of {}'s hosts",
                    ctx.entry.provider.name
                ),
            ));
        }
    }
    if !crate::catalog::load_url_allowed(&url) {
        return Err(CoreError::invalid(
            "invalid_setting",
            format!("{field} must use https"),
        ));
    }
    Ok(url)
}

/// Substitutes tenant settings into a plain parameter value (`{account_id}`).
fn render_value(ctx: &ProviderCtx<'_>, template: &str) -> Result<String, CoreError> {
    let mut out = template.to_string();
    for t in &ctx.entry.provider.tenant {
        let ph = format!("{{{}}}", t.name);
        if out.contains(&ph) {
            let v = ctx
                .integration
                .settings
                .get(&t.name)
                .or(t.default.as_ref())
                .ok_or_else(|| {
                    CoreError::invalid(
                        "missing_setting",
                        format!(
                            "integration `{}` needs the setting `{}`",
                            ctx.integration.slug, t.name
                        ),
                    )
                })?;
            out = out.replace(&ph, v);
        }
    }
    Ok(out)
}

/// Renders a provider URL template with the integration's settings (for API bases).
pub fn render_public(ctx: &ProviderCtx<'_>, field: &str, template: &str) -> Result<Url, CoreError> {
    render(ctx, field, template, &[])
}

/// Tenant setting values end up in host names: letters, digits, `-`, `.` and `_` only.
/// An optional `:port` is accepted for self-hosted and test servers.
pub fn valid_setting_value(v: &str) -> bool {
    let (name, port) = match v.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (v, None),
    };
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

/// The scopes to request: the integration's, or the provider's defaults. API keys have
/// no scopes Keyway can see, so none are "missing" from them.
pub fn requested_scopes(ctx: &ProviderCtx<'_>) -> Vec<String> {
    if ctx.entry.provider.api_key.is_some() {
        Vec::new()
    } else if ctx.integration.scopes.is_empty() {
        ctx.entry.provider.default_scopes().to_vec()
    } else {
        ctx.integration.scopes.clone()
    }
}

/// RFC 6749 §4.1.1 authorization request, with RFC 7636 PKCE (S256 only).
pub fn authorize_url(
    ctx: &ProviderCtx<'_>,
    state: &str,
    pkce_challenge: Option<&str>,
    redirect_uri: &str,
) -> Result<String, CoreError> {
    let o = ctx.entry.provider.oauth()?;
    let mut url = render(ctx, "oauth2.authorize_url", &o.authorize_url, &[])?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code");
        q.append_pair("client_id", &ctx.integration.client_id);
        q.append_pair("redirect_uri", redirect_uri);
        q.append_pair("state", state);
        let scopes = requested_scopes(ctx);
        if !scopes.is_empty() {
            q.append_pair(&o.scope_param, &scopes.join(&o.scope_separator));
        }
        if let Some(c) = pkce_challenge {
            q.append_pair("code_challenge", c);
            q.append_pair("code_challenge_method", "S256");
        }
        for (k, v) in &o.authorize_params {
            q.append_pair(k, v);
        }
    }
    Ok(url.into())
}

pub enum Grant<'a> {
    AuthorizationCode {
        code: &'a str,
        redirect_uri: &'a str,
        verifier: Option<&'a Secret>,
    },
    Refresh {
        refresh_token: &'a Secret,
    },
    /// RFC 6749 §4.4, with the provider's grant type and parameters from the catalog.
    ClientCredentials,
}

fn encode_body(format: BodyFormat, params: &[(String, String)]) -> (String, Vec<u8>) {
    match format {
        BodyFormat::Form => {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in params {
                s.append_pair(k, v);
            }
            (
                "application/x-www-form-urlencoded".into(),
                s.finish().into_bytes(),
            )
        }
        BodyFormat::Json => {
            let map: serde_json::Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            (
                "application/json".into(),
                Value::Object(map).to_string().into_bytes(),
            )
        }
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
fn basic_auth(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A token-endpoint request: authorization code (RFC 6749 §4.1.3) or refresh (§6).
pub fn token_request(
    ctx: &ProviderCtx<'_>,
    grant: Grant<'_>,
) -> Result<OutboundRequest, CoreError> {
    let o = ctx.entry.provider.oauth()?;
    let mut params: Vec<(String, String)> = Vec::new();
    let url = match &grant {
        Grant::AuthorizationCode {
            code,
            redirect_uri,
            verifier,
        } => {
            params.push(("grant_type".into(), "authorization_code".into()));
            params.push(("code".into(), code.to_string()));
            params.push(("redirect_uri".into(), redirect_uri.to_string()));
            if let Some(v) = verifier {
                params.push(("code_verifier".into(), v.expose().to_string()));
            }
            render(ctx, "oauth2.token_url", &o.token_url, &[])?
        }
        Grant::Refresh { refresh_token } => {
            params.push(("grant_type".into(), "refresh_token".into()));
            params.push(("refresh_token".into(), refresh_token.expose().to_string()));
            let t = o.refresh_url.as_deref().unwrap_or(&o.token_url);
            render(ctx, "oauth2.token_url", t, &[])?
        }
        Grant::ClientCredentials => {
            let app = o.app_token.as_ref().ok_or_else(|| {
                CoreError::invalid("invalid_request", "this provider has no app tokens")
            })?;
            params.push(("grant_type".into(), app.grant_type.clone()));
            let scopes = requested_scopes(ctx);
            if !scopes.is_empty() {
                params.push(("scope".into(), scopes.join(&o.scope_separator)));
            }
            for (k, v) in &app.params {
                params.push((k.clone(), render_value(ctx, v)?));
            }
            render(ctx, "oauth2.token_url", &o.token_url, &[])?
        }
    };
    for (k, v) in &o.token_params {
        params.push((k.clone(), v.clone()));
    }
    let secret = ctx
        .client_secret
        .as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let mut req = OutboundRequest::new("POST", url.as_str());
    match o.client_auth {
        ClientAuth::Basic => {
            req = req.header(
                "Authorization",
                basic_auth(&ctx.integration.client_id, &secret),
            );
        }
        ClientAuth::Post => {
            params.push(("client_id".into(), ctx.integration.client_id.clone()));
            if !secret.is_empty() {
                params.push(("client_secret".into(), secret));
            }
        }
    }
    if !o
        .token_headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("accept"))
    {
        req = req.header("Accept", "application/json");
    }
    for (k, v) in &o.token_headers {
        req = req.header(k, v.clone());
    }
    let (ct, body) = encode_body(o.token_request_format, &params);
    Ok(req.body(&ct, body))
}

/// What a token endpoint gave.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub token_type: String,
    pub expires_in: Option<u64>,
    /// Granted scopes, when the provider said.
    pub scopes: Option<Vec<String>>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEndpointError {
    /// The grant is dead (R2): `invalid_grant` or the provider's equivalent.
    DeadGrant { code: String },
    /// 5xx, 429, timeouts (R3): retry with backoff, never mark dead.
    Transient {
        detail: String,
        retry_after: Option<u64>,
    },
    /// Any other refusal (bad client credentials, malformed answer).
    Rejected { code: String, detail: String },
}

/// Reads a dot path (`authed_user.access_token`, `0.id`) from a JSON value.
pub fn get_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |cur, seg| match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// JSON, or a form-encoded body (GitHub without `Accept: application/json`).
pub fn parse_body(resp: &OutboundResponse) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
        return Some(v);
    }
    let text = std::str::from_utf8(&resp.body).ok()?;
    if text.contains('=') && !text.trim_start().starts_with('<') {
        let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        if !map.is_empty() {
            return Some(Value::Object(map));
        }
    }
    None
}

fn retry_after(resp: &OutboundResponse) -> Option<u64> {
    resp.header("retry-after")
        .and_then(|v| v.trim().parse().ok())
}

fn error_code(tr: &TokenResponse, body: &Value) -> Option<String> {
    tr.error_fields
        .iter()
        .find_map(|f| get_path(body, f).and_then(as_text))
}

/// Classifies and parses a token-endpoint answer (RFC 6749 §5.1, §5.2, plus quirks).
pub fn parse_token_response(
    entry: &CatalogEntry,
    resp: &OutboundResponse,
) -> Result<TokenSet, TokenEndpointError> {
    let Some(o) = entry.provider.oauth2.as_ref() else {
        return Err(TokenEndpointError::Rejected {
            code: "not_oauth".into(),
            detail: format!("{} has no token endpoint", entry.provider.name),
        });
    };
    let tr = &o.token_response;
    let body = parse_body(resp);
    if resp.status >= 500 || resp.status == 429 {
        return Err(TokenEndpointError::Transient {
            detail: format!("HTTP {}", resp.status),
            retry_after: retry_after(resp),
        });
    }
    let Some(body) = body else {
        return Err(TokenEndpointError::Rejected {
            code: "unreadable_response".into(),
            detail: format!(
                "HTTP {} with a body that is neither JSON nor a form",
                resp.status
            ),
        });
    };
    let not_ok = tr
        .ok_field
        .as_ref()
        .is_some_and(|f| matches!(get_path(&body, f), Some(Value::Bool(false))));
    let access = get_path(&body, &tr.access_token).and_then(as_text);
    if not_ok || resp.status >= 400 || access.is_none() {
        let code = error_code(tr, &body).unwrap_or_else(|| format!("http_{}", resp.status));
        if tr.dead_grant_errors.iter().any(|d| d == &code) {
            return Err(TokenEndpointError::DeadGrant { code });
        }
        if code == "ratelimited" || code == "rate_limited" || code == "temporarily_unavailable" {
            return Err(TokenEndpointError::Transient {
                detail: code,
                retry_after: retry_after(resp),
            });
        }
        let detail = if access.is_none() && !not_ok && resp.status < 400 {
            "the response has no access token".to_string()
        } else {
            format!("error `{code}`")
        };
        return Err(TokenEndpointError::Rejected { code, detail });
    }
    let expires_in = get_path(&body, &tr.expires_in)
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .or(tr.default_expires_in);
    let sep = tr.scope_separator.as_deref().unwrap_or(&o.scope_separator);
    let scopes = get_path(&body, &tr.scope).and_then(|v| match v {
        Value::String(s) => Some(split_scopes(s, sep)),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    });
    let metadata = tr
        .metadata
        .iter()
        .filter_map(|(k, p)| get_path(&body, p).and_then(as_text).map(|v| (k.clone(), v)))
        .collect();
    Ok(TokenSet {
        access_token: Secret::new(access.unwrap_or_default()),
        refresh_token: get_path(&body, &tr.refresh_token)
            .and_then(as_text)
            .map(Secret::new),
        token_type: get_path(&body, &tr.token_type)
            .and_then(as_text)
            .unwrap_or_else(|| "bearer".into()),
        expires_in,
        scopes,
        account_id: tr
            .account_id
            .as_deref()
            .and_then(|p| get_path(&body, p))
            .and_then(as_text),
        account_name: tr
            .account_name
            .as_deref()
            .and_then(|p| get_path(&body, p))
            .and_then(as_text),
        metadata,
    })
}

/// Splits a granted-scope string; tolerates either separator plus stray spaces.
pub fn split_scopes(s: &str, sep: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in s
        .split(sep)
        .flat_map(|p| p.split(' '))
        .flat_map(|p| p.split(','))
    {
        let p = part.trim();
        if !p.is_empty() && !out.iter().any(|x| x == p) {
            out.push(p.to_string());
        }
    }
    out
}

/// How a grant is revoked at the provider: `None` when the provider has no way.
pub fn revocation_request(
    ctx: &ProviderCtx<'_>,
    access: &Secret,
    refresh: Option<&Secret>,
) -> Result<Option<OutboundRequest>, CoreError> {
    // API keys are revoked where they were issued, by the person who made them.
    let Some(o) = ctx.entry.provider.oauth2.as_ref() else {
        return Ok(None);
    };
    let secret = ctx
        .client_secret
        .as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    if let Some(r) = &o.revocation {
        return custom_revocation(ctx, r, access, refresh, &secret).map(Some);
    }
    let Some(url) = &o.revocation_url else {
        return Ok(None);
    };
    // RFC 7009 §2.1: revoking the refresh token should also invalidate its access tokens.
    let (token, hint) = match refresh {
        Some(r) => (r, "refresh_token"),
        None => (access, "access_token"),
    };
    let url = render(ctx, "oauth2.revocation_url", url, &[])?;
    let mut params = vec![
        ("token".to_string(), token.expose().to_string()),
        ("token_type_hint".into(), hint.into()),
    ];
    let mut req = OutboundRequest::new("POST", url.as_str());
    match o.client_auth {
        ClientAuth::Basic => {
            req = req.header(
                "Authorization",
                basic_auth(&ctx.integration.client_id, &secret),
            )
        }
        ClientAuth::Post => {
            params.push(("client_id".into(), ctx.integration.client_id.clone()));
            if !secret.is_empty() {
                params.push(("client_secret".into(), secret));
            }
        }
    }
    let (ct, body) = encode_body(BodyFormat::Form, &params);
    Ok(Some(req.body(&ct, body)))
}

fn custom_revocation(
    ctx: &ProviderCtx<'_>,
    r: &Revocation,
    access: &Secret,
    refresh: Option<&Secret>,
    secret: &str,
) -> Result<OutboundRequest, CoreError> {
    let token = match r.token {
        WhichToken::Access => access,
        WhichToken::Refresh => refresh.unwrap_or(access),
    };
    let url = render(
        ctx,
        "oauth2.revocation.url",
        &r.url,
        &[
            ("client_id", &ctx.integration.client_id),
            ("token", token.expose()),
        ],
    )?;
    let mut req = OutboundRequest::new(&r.method, url.as_str());
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(p) = &r.token_param {
        params.push((p.clone(), token.expose().to_string()));
    }
    match r.auth {
        RevocationAuth::Basic => {
            req = req.header(
                "Authorization",
                basic_auth(&ctx.integration.client_id, secret),
            )
        }
        RevocationAuth::Bearer => {
            req = req.header("Authorization", format!("Bearer {}", token.expose()))
        }
        RevocationAuth::Post => {
            params.push(("client_id".into(), ctx.integration.client_id.clone()));
            params.push(("client_secret".into(), secret.to_string()));
        }
        RevocationAuth::None => {}
    }
    req = req.header("Accept", "application/json");
    if !params.is_empty() {
        let (ct, body) = encode_body(r.body_format, &params);
        req = req.body(&ct, body);
    }
    Ok(req)
}

/// RFC 7009 §2.2: 200 means revoked (an invalid token also answers 200).
pub fn classify_revocation(entry: &CatalogEntry, resp: &OutboundResponse) -> RevocationOutcome {
    let custom = entry
        .provider
        .oauth2
        .as_ref()
        .and_then(|o| o.revocation.as_ref());
    if (200..300).contains(&resp.status) {
        if let Some(f) = custom.and_then(|r| r.ok_field.as_ref()) {
            let body = parse_body(resp);
            let ok = body
                .as_ref()
                .and_then(|b| get_path(b, f))
                .and_then(Value::as_bool);
            return if ok == Some(true) {
                RevocationOutcome::Confirmed
            } else {
                RevocationOutcome::Failed
            };
        }
        return RevocationOutcome::Confirmed;
    }
    if custom.is_some_and(|r| r.already_revoked_statuses.contains(&resp.status)) {
        return RevocationOutcome::Confirmed;
    }
    RevocationOutcome::Failed
}

/// Puts a connection's credential on a call to the provider's API: the access token as
/// an RFC 6750 bearer token, or an API key where and how its catalog entry says.
pub fn authorize_call(
    entry: &CatalogEntry,
    req: OutboundRequest,
    access: &Secret,
) -> Result<OutboundRequest, CoreError> {
    match &entry.provider.api_key {
        Some(spec) => Ok(Credentials::from_secret(access)?.apply(spec, req)),
        None => Ok(req.header("Authorization", format!("Bearer {}", access.expose()))),
    }
}

/// Values for placeholders a connection fills in itself: the non-secret fields of an API
/// key (a data centre in the host), checked like tenant settings.
pub fn connection_values(
    entry: &CatalogEntry,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, CoreError> {
    let Some(spec) = &entry.provider.api_key else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for f in spec.fields.iter().filter(|f| !f.secret) {
        if let Some(v) = metadata.get(&f.name) {
            if !valid_setting_value(v) {
                return Err(CoreError::invalid(
                    "invalid_credentials",
                    format!("{} may use letters, digits, `-`, `.` and `_` only", f.label),
                ));
            }
            out.push((f.name.clone(), v.clone()));
        }
    }
    Ok(out)
}

/// Renders the API base of a connection, with its own placeholder values.
pub fn render_api_base(
    ctx: &ProviderCtx<'_>,
    metadata: &BTreeMap<String, String>,
) -> Result<Url, CoreError> {
    let values = connection_values(ctx.entry, metadata)?;
    let refs: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    render(ctx, "api_base_url", &ctx.entry.provider.api_base_url, &refs)
}

/// The provider's identity call for this access token (or API key), if it has one.
/// `metadata` fills the placeholders of an API key's non-secret fields.
pub fn identity_request(
    ctx: &ProviderCtx<'_>,
    access: &Secret,
    metadata: &BTreeMap<String, String>,
) -> Result<Option<OutboundRequest>, CoreError> {
    let Some(i) = &ctx.entry.provider.identity else {
        return Ok(None);
    };
    let values = connection_values(ctx.entry, metadata)?;
    let mut call: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    call.push(("client_id", &ctx.integration.client_id));
    if ctx.entry.provider.oauth2.is_some() {
        call.push(("token", access.expose()));
    }
    let url = render(ctx, "identity.url", &i.url, &call)?;
    let req = OutboundRequest::new(&i.method, url.as_str());
    let mut req = authorize_call(ctx.entry, req, access)?;
    if !req
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        req = req.header("Accept", "application/json");
    }
    for (k, v) in &i.headers {
        req = req.header(k, v.clone());
    }
    Ok(Some(req))
}

/// Account id and name from an identity answer.
pub fn parse_identity(
    entry: &CatalogEntry,
    resp: &OutboundResponse,
) -> Option<(Option<String>, Option<String>)> {
    let i = entry.provider.identity.as_ref()?;
    if !(200..300).contains(&resp.status) {
        return None;
    }
    let body = parse_body(resp)?;
    let id = i
        .account_id
        .as_deref()
        .and_then(|p| get_path(&body, p))
        .and_then(as_text);
    let name = i
        .account_name
        .as_deref()
        .and_then(|p| get_path(&body, p))
        .and_then(as_text);
    Some((id, name))
}

#[cfg(test)]
mod tests;
