//! `ANY /v1/proxy/{integration}/{path}`: call a provider's API with the user's token
//! injected here, so the token never leaves Keyway. Shared with the MCP tools later.
//!
//! Guards: the target is the connection's API base (Salesforce: its `instance_url`) joined
//! with a path that cannot climb out of it, and its host must match the provider's host
//! patterns (S7); hop-by-hop headers and the caller's credentials are dropped; bodies are
//! bounded; redirects are returned, never followed; an upstream 401 triggers one refresh
//! and one retry.

use crate::broker::Broker;
use crate::error::CoreError;
use crate::model::{ConnectionKey, ConnectionStatus};
use crate::oauth;
use crate::outbound::{OutboundError, OutboundRequest};
use crate::secret::Secret;
use crate::tokens::TokenRequest;
use url::Url;

/// Largest request body forwarded upstream.
pub const MAX_PROXY_BODY: usize = 1024 * 1024;

/// Headers never forwarded in either direction (RFC 9110 §7.6.1 hop-by-hop, plus ones
/// that are Keyway's or carry the caller's own credentials).
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "cookie",
    "set-cookie",
    "content-length",
];

fn forwardable(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !DROPPED.contains(&n.as_str()) && !n.starts_with("keyway-") && !n.starts_with("x-forwarded-")
}

#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub token: TokenRequest,
    pub method: String,
    /// The path after `/v1/proxy/{integration}/`, percent-encoded as received.
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct ProxyResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Rejects paths that could leave the API base: `..` or `.` segments (also encoded),
/// empty segments (`//host` tricks), backslashes and control characters.
fn check_path(path: &str) -> Result<(), CoreError> {
    let bad = |d: &str| Err(CoreError::invalid("invalid_path", d.to_string()));
    if path.len() > 2048 {
        return bad("the path is too long");
    }
    if path.contains('\\')
        || path.chars().any(|c| c.is_control() || c == ' ')
        || path.contains('#')
        || path.contains('?')
    {
        return bad("the path has characters that are not allowed");
    }
    for seg in path.split('/') {
        let decoded = url::form_urlencoded::parse(format!("s={seg}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let lower = seg.to_ascii_lowercase();
        if decoded == ".."
            || decoded == "."
            || lower.contains("%2f")
            || lower.contains("%5c")
            || decoded.contains('/')
        {
            return bad("the path may not contain `.`, `..` or encoded slashes");
        }
    }
    if path.starts_with('/') || path.contains("//") {
        return bad("the path has empty segments");
    }
    Ok(())
}

impl Broker {
    /// The API base of a connection: the provider's, rendered with the integration's
    /// settings, or the URL the token response named (Salesforce `instance_url`).
    async fn api_base(&self, conn: &crate::model::Connection) -> Result<Url, CoreError> {
        let integration = self.integration(&conn.integration).await?;
        let ctx = self.provider_ctx(&integration)?;
        let from_response = ctx
            .entry
            .provider
            .api_base_url_from
            .as_ref()
            .and_then(|k| conn.metadata.get(k))
            .cloned();
        let base = match from_response {
            Some(u) => Url::parse(&u).map_err(|_| {
                CoreError::invalid("invalid_api_base", "the connection's API base is not a URL")
            })?,
            None => oauth::render_api_base(&ctx, &conn.metadata)?,
        };
        Ok(base)
    }

    pub async fn proxy(&self, req: ProxyRequest) -> Result<ProxyResponse, CoreError> {
        check_path(&req.path)?;
        if req.body.len() > MAX_PROXY_BODY {
            return Err(CoreError::invalid(
                "payload_too_large",
                "the request body is too large to forward",
            ));
        }
        let method = req.method.to_ascii_uppercase();
        if !matches!(
            method.as_str(),
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
        ) {
            return Err(CoreError::invalid(
                "invalid_method",
                format!("method {method} is not proxied"),
            ));
        }
        let issued = self.issue_token(&req.token).await?;
        let conn = self
            .store
            .get_connection(&issued.connection_id)
            .await?
            .ok_or_else(|| CoreError::NotInstalled {
                integration: req.token.integration.clone(),
            })?;
        let entry = self.entry(&conn.provider)?;
        let base = self.api_base(&conn).await?;
        let mut joined = base.as_str().trim_end_matches('/').to_string();
        joined.push('/');
        joined.push_str(&req.path);
        // The credential's own query parameters are Keyway's to set, never the caller's.
        let injected_query: Vec<&str> = entry
            .provider
            .api_key
            .as_ref()
            .map(|k| k.query.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let injected_headers: Vec<String> = entry
            .provider
            .api_key
            .as_ref()
            .map(|k| k.headers.keys().map(|h| h.to_ascii_lowercase()).collect())
            .unwrap_or_default();
        if let Some(q) = req.query.as_deref().filter(|q| !q.is_empty()) {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|pair| {
                    let name = pair.split('=').next().unwrap_or_default();
                    !injected_query.contains(&name)
                })
                .collect();
            if !kept.is_empty() {
                joined.push('?');
                joined.push_str(&kept.join("&"));
            }
        }
        let target = Url::parse(&joined).map_err(|_| {
            CoreError::invalid("invalid_path", "the path does not make a valid URL")
        })?;
        // S7: only the provider's API hosts, over https (plain http only on loopback).
        let host = target.host_str().unwrap_or_default().to_string();
        if !entry.hosts.iter().any(|p| p.matches(&host))
            || !crate::catalog::load_url_allowed(&target)
            || !target
                .as_str()
                .starts_with(base.as_str().trim_end_matches('/'))
        {
            return Err(CoreError::Forbidden {
                code: "host_not_allowed",
                detail: format!("{host} is not one of {}'s API hosts", entry.provider.name),
            });
        }
        let send = |token: Secret| -> Result<OutboundRequest, CoreError> {
            let mut out = OutboundRequest::new(&method, target.as_str());
            for (k, v) in req.headers.iter().filter(|(k, _)| {
                forwardable(k) && !injected_headers.contains(&k.to_ascii_lowercase())
            }) {
                out = out.header(k, v.clone());
            }
            let mut out = oauth::authorize_call(entry, out, &token)?;
            if !req.body.is_empty() {
                out.body = Some(req.body.clone());
            }
            out.timeout = std::time::Duration::from_secs(30);
            Ok(out)
        };
        let upstream = |e: OutboundError| CoreError::ProviderUnavailable {
            provider: entry.provider.name.clone(),
            retry_after_secs: match e {
                OutboundError::Timeout => 5,
                _ => 2,
            },
        };
        let mut resp = self
            .http
            .send(send(issued.access_token.clone())?)
            .await
            .map_err(upstream)?;
        if resp.status == 401
            && conn
                .tokens
                .as_ref()
                .is_some_and(|t| t.refresh_token.is_some())
        {
            // The provider no longer takes this token (revoked early, clock skew): refresh
            // once, through the same single-flight path, and retry once.
            if let Some(fresh) = self.refresh_rejected(&conn, &issued.access_token).await? {
                resp = self.http.send(send(fresh)?).await.map_err(upstream)?;
            }
        }
        Ok(ProxyResponse {
            status: resp.status,
            headers: resp
                .headers
                .into_iter()
                .filter(|(k, _)| forwardable(k))
                .collect(),
            body: resp.body,
        })
    }

    /// Forces one refresh of a connection whose access token a provider rejected, unless
    /// someone already replaced that token. Returns the token to retry with.
    async fn refresh_rejected(
        &self,
        conn: &crate::model::Connection,
        rejected: &Secret,
    ) -> Result<Option<Secret>, CoreError> {
        let key = ConnectionKey::of(conn);
        let lock = self.flight(&conn.id);
        let result = async {
            let _guard = lock.lock().await;
            let Some(current) = self.store.get_connection(&conn.id).await? else {
                return Ok(None);
            };
            match current.status {
                ConnectionStatus::Active => {}
                // Found dead meanwhile (keep-alive, another caller): say so, not 401.
                ConnectionStatus::NeedsReauthorization => {
                    return Err(CoreError::NeedsReauthorization {
                        connection_id: current.id.clone(),
                        reconnect_url: None,
                    })
                }
                ConnectionStatus::Revoked => return Ok(None),
            }
            let (cached, _) = self.open_cached_pub(&current)?;
            if cached.access_token.expose() != rejected.expose() {
                return Ok(Some(cached.access_token));
            }
            let now = self.clock.now();
            let Some(fence) = self
                .store
                .acquire_refresh_lease(
                    &conn.id,
                    &self.holder_id,
                    now,
                    now + self.settings.lease_ttl,
                )
                .await?
            else {
                return Ok(None);
            };
            let current = self
                .store
                .get_connection(&conn.id)
                .await?
                .ok_or(CoreError::NotFound { what: "connection" })?;
            let fresh = self
                .refresh_with_lease_opt(&key, current, fence, "system:proxy", true)
                .await?;
            Ok(Some(fresh.access_token))
        }
        .await;
        self.drop_flight(&conn.id, &lock);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_climb_out_of_the_api_base() {
        for ok in [
            "users/me",
            "v1/files/abc%20def",
            "search",
            "a/b/c.json",
            "items/",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../admin",
            "a/../../b",
            "%2e%2e/x",
            "a/%2E%2E",
            "a%2fb",
            "a%5Cb",
            "/abs",
            "a//b",
            "a\\b",
            "a b",
            "a#f",
            "a?q",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_and_credentials_are_not_forwarded() {
        for h in [
            "Connection",
            "Authorization",
            "Cookie",
            "Host",
            "Keyway-User-Id",
            "Transfer-Encoding",
            "X-Forwarded-For",
        ] {
            assert!(!forwardable(h), "{h}");
        }
        for h in ["Content-Type", "Accept", "Notion-Version", "X-Custom"] {
            assert!(forwardable(h), "{h}");
        }
    }
}
