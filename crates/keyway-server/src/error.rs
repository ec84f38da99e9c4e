//! The API error: one type at the edge that writes RFC 9457 problem+json with a stable
//! `code`. What the client sees is kept apart from what the log sees: storage and vault
//! details are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyway_core::{CoreError, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem details body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable error code.
    pub code: String,
    /// For `needs_reauthorization`: the connection concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// For `needs_reauthorization`: a connect link for the user to reconnect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_url: Option<String>,
    /// For `ambiguous_connection`: the connections to choose from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<ConnectionChoiceView>>,
}

/// One connection a token call could mean.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionChoiceView {
    pub connection_id: String,
    pub label: Option<String>,
    pub provider_account_name: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
    /// Rarely set; boxed so the error stays small on the happy path's `Result`.
    pub extra: Box<ErrorExtra>,
}

#[derive(Debug, Default)]
pub struct ErrorExtra {
    pub retry_after: Option<u64>,
    pub connection_id: Option<String>,
    pub reconnect_url: Option<String>,
    pub www_authenticate: Option<String>,
    pub choices: Option<Vec<ConnectionChoiceView>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            detail: detail.into(),
            extra: Box::default(),
        }
    }
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        );
        e.extra.www_authenticate = Some("Bearer".into());
        e
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { code, detail } => {
                let status = match code {
                    "unknown_integration" | "unknown_provider" => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, code, detail)
            }
            CoreError::NotFound { what } => ApiError::not_found(what),
            e @ CoreError::NotInstalled { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_installed", e.to_string())
            }
            e @ CoreError::Revoked { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_installed", e.to_string())
            }
            CoreError::NeedsReauthorization {
                connection_id,
                reconnect_url,
            } => {
                let mut a = ApiError::new(
                    StatusCode::CONFLICT,
                    "needs_reauthorization",
                    "the user must reconnect this account: the provider no longer accepts its grant",
                );
                a.extra.connection_id = Some(connection_id);
                a.extra.reconnect_url = reconnect_url;
                a
            }
            CoreError::Ambiguous {
                integration,
                choices,
            } => {
                let detail = format!("the user has several connections to {integration}; name one with connection_id or label");
                let mut a = ApiError::new(StatusCode::CONFLICT, "ambiguous_connection", detail);
                a.extra.choices = Some(
                    choices
                        .into_iter()
                        .map(|c| ConnectionChoiceView {
                            connection_id: c.connection_id,
                            label: c.label,
                            provider_account_name: c.account_name,
                        })
                        .collect(),
                );
                a
            }
            e @ CoreError::ProviderUnavailable {
                retry_after_secs, ..
            } => {
                let mut a = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "provider_unavailable",
                    e.to_string(),
                );
                a.extra.retry_after = Some(retry_after_secs);
                a
            }
            e @ CoreError::ProviderRejected { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", e.to_string())
            }
            CoreError::Forbidden { code, detail } => {
                ApiError::new(StatusCode::FORBIDDEN, code, detail)
            }
            CoreError::Conflict { code, detail } => {
                ApiError::new(StatusCode::CONFLICT, code, detail)
            }
            CoreError::Store(StoreError::Unavailable(d)) => {
                tracing::error!(error = %d, "database unavailable");
                let mut a = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; try again shortly",
                );
                a.extra.retry_after = Some(2);
                a
            }
            CoreError::Store(e) => {
                tracing::error!(error = %e, "storage error");
                ApiError::internal()
            }
            CoreError::Vault(e) => {
                tracing::error!(error = %e, "vault error");
                ApiError::internal()
            }
        }
    }
}

fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!(
                "https://keyway.dev/problems/{}",
                self.code.replace('_', "-")
            ),
            title: title(self.status),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            connection_id: self.extra.connection_id,
            reconnect_url: self.extra.reconnect_url,
            choices: self.extra.choices,
        };
        let mut resp = (
            self.status,
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(r) = self.extra.retry_after {
            if let Ok(v) = HeaderValue::from_str(&r.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(w) = self.extra.www_authenticate {
            if let Ok(v) = HeaderValue::from_str(&w) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}
