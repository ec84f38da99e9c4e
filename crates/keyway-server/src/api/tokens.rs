//! `POST /v1/token`.

use super::types::*;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, Auth};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyway_core::clock::rfc3339;
use keyway_core::connect::MAX_ID_LEN;
use keyway_core::tokens::TokenRequest;
use keyway_core::CoreError;

/// A fresh access token for a user's connection, refreshed if needed (exactly once).
#[utoipa::path(post, path = "/v1/token", tag = "tokens", request_body = TokenBody,
    responses(
        (status = 200, body = TokenResponse),
        (status = 404, description = "`not_installed`: the user has no connection to this integration", body = Problem),
        (status = 409, description = "`needs_reauthorization`, with `reconnect_url`", body = Problem),
        (status = 503, description = "`provider_unavailable`, with `Retry-After`", body = Problem)),
    security(("api_key" = [])))]
pub async fn issue(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(b): ApiJson<TokenBody>,
) -> Result<Response, ApiError> {
    let app = auth.application(b.application_id.as_deref())?;
    for (name, v) in [
        ("integration", Some(&b.integration)),
        ("user_id", Some(&b.user_id)),
        ("organization_id", b.organization_id.as_ref()),
        ("connection_id", b.connection_id.as_ref()),
        ("label", b.label.as_ref()),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.len() > MAX_ID_LEN {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("`{name}` must be 1-{MAX_ID_LEN} characters"),
                ));
            }
        }
    }
    let actor = auth.0.actor();
    let req = TokenRequest {
        actor,
        connection_id: b.connection_id,
        label: b.label,
        application_id: app,
        integration: b.integration,
        user_id: b.user_id,
        organization_id: b.organization_id,
    };
    let t = match s.broker.issue_token(&req).await {
        Ok(t) => t,
        Err(CoreError::NeedsReauthorization { connection_id, .. }) => {
            let reconnect_url = s.broker.reconnect_url(&connection_id).await.ok();
            return Err(CoreError::NeedsReauthorization {
                connection_id,
                reconnect_url,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let credentials = t.credentials.as_ref().map(|c| {
        c.iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect()
    });
    let body = TokenResponse {
        access_token: credentials
            .is_none()
            .then(|| t.access_token.expose().to_string()),
        credentials,
        token_type: t.token_type,
        expires_at: t.expires_at.map(rfc3339),
        scopes: t.scopes,
        missing_scopes: t.missing_scopes,
        connection_id: t.connection_id,
        shared: t.shared,
    };
    let mut resp = Json(body).into_response();
    // RFC 6749 §5.1: responses carrying tokens must not be cached.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
