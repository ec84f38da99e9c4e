//! Starting connections: connect sessions for the widget, and authorization links for
//! applications with their own UI.

use super::types::*;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, Auth};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyway_core::clock::rfc3339;
use keyway_core::connect::NewConnectSession;

/// Create a connect session for one user; `url` is the hosted widget.
#[utoipa::path(post, path = "/v1/connect/sessions", tag = "connect", request_body = CreateConnectSession,
    responses((status = 201, body = ConnectSessionCreated), (status = 400, body = Problem), (status = 401, body = Problem)), security(("api_key" = [])))]
pub async fn create_session(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(b): ApiJson<CreateConnectSession>,
) -> Result<(StatusCode, Json<ConnectSessionCreated>), ApiError> {
    let app = auth.application(b.application_id.as_deref())?;
    let (session, token, url) = s
        .broker
        .create_connect_session(
            &app,
            NewConnectSession {
                user_id: b.user_id,
                organization_id: b.organization_id,
                integrations: b.integrations,
                return_url: b.return_url,
                owner: b.owner,
                purpose: b.purpose,
                shared: b.shared,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ConnectSessionCreated {
            token,
            url,
            expires_at: rfc3339(session.expires_at),
        }),
    ))
}

/// A link that starts one integration's OAuth flow for a user.
#[utoipa::path(post, path = "/v1/integrations/{slug}/authorize", tag = "connect", params(("slug" = String, Path)), request_body = AuthorizeBody,
    responses((status = 200, body = AuthorizeResponse), (status = 400, body = Problem)), security(("api_key" = [])))]
pub async fn authorize(
    State(s): State<AppState>,
    auth: Auth,
    Path(slug): Path<String>,
    ApiJson(b): ApiJson<AuthorizeBody>,
) -> Result<Json<AuthorizeResponse>, ApiError> {
    let app = auth.application(b.application_id.as_deref())?;
    let (link, url) = s
        .broker
        .create_authorize_link(&app, &slug, &b.user_id, b.organization_id, b.return_url)
        .await?;
    Ok(Json(AuthorizeResponse {
        url,
        expires_at: rfc3339(link.expires_at),
    }))
}
