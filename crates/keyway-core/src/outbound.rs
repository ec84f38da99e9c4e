//! Outbound HTTP as a trait, so provider calls are scripted exactly in unit tests and go
//! through reqwest in the server.

use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

#[derive(Clone)]
pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// Only the method and host: URLs and headers may carry tokens (S1).
impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        write!(f, "OutboundRequest({} {host})", self.method)
    }
}

impl OutboundRequest {
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(10),
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .push(("Content-Type".into(), content_type.into()));
        self.body = Some(body);
        self
    }
}

#[derive(Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for OutboundResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OutboundResponse({}, {} bytes)",
            self.status,
            self.body.len()
        )
    }
}

impl OutboundResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("timed out")]
    Timeout,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

#[async_trait]
pub trait HttpClient: Send + Sync + 'static {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError>;
}
