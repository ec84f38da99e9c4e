//! The real outbound HTTP client (reqwest with rustls). Redirects are never followed: a
//! provider endpoint that redirects is answered as it is, so no token follows a
//! redirect to another host.

use async_trait::async_trait;
use keyway_core::outbound::{HttpClient, OutboundError, OutboundRequest, OutboundResponse};

/// Largest provider answer read into memory.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ReqwestClient {
    client: reqwest::Client,
}

impl ReqwestClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keyway/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .pool_max_idle_per_host(32)
            .build()?;
        Ok(Self { client })
    }
}

#[async_trait]
impl HttpClient for ReqwestClient {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| OutboundError::Refused("bad method".into()))?;
        let mut rb = self.client.request(method, &req.url).timeout(req.timeout);
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(b) = req.body {
            rb = rb.body(b);
        }
        let mut resp = rb.send().await.map_err(|e| {
            if e.is_timeout() {
                OutboundError::Timeout
            } else if e.is_connect() {
                OutboundError::Connect("connection failed".into())
            } else if e.is_builder() {
                OutboundError::Refused("invalid request".into())
            } else {
                OutboundError::Other("request failed".into())
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
            .collect();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(OutboundError::Other("response too large".into()));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(OutboundError::Timeout),
                Err(_) => return Err(OutboundError::Other("response body failed".into())),
            }
        }
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    }
}
