//! Connections: list, read, annotate, disconnect.

use super::types::*;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use keyway_core::connections::ConnectionPatch;
use keyway_core::model::ConnectionFilter;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub integration: Option<String>,
    /// `active`, `needs_reauthorization` or `revoked`.
    pub status: Option<String>,
    pub application_id: Option<String>,
    pub cursor: Option<String>,
    /// Page size, 1-500 (default 100).
    pub limit: Option<u32>,
}

/// List connections, filtered and paginated.
#[utoipa::path(get, path = "/v1/connections", tag = "connections", params(ListQuery),
    responses((status = 200, body = ConnectionList), (status = 400, body = Problem)), security(("api_key" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ConnectionList>, ApiError> {
    let status = super::params::status(q.status.as_deref())?;
    let after_id = super::params::decode_cursor(q.cursor.as_deref())?;
    let limit = super::params::limit(q.limit, 100, 500)?;
    let filter = ConnectionFilter {
        application_id: q.application_id,
        user_id: q.user_id,
        organization_id: q.organization_id,
        integration: q.integration,
        status,
        after_id,
        limit: limit + 1,
    };
    let mut rows = s.broker.list_connections(&auth.0, filter).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|c| super::params::encode_cursor(&c.id))
    } else {
        None
    };
    Ok(Json(ConnectionList {
        data: rows.iter().map(ConnectionView::from).collect(),
        next_cursor,
    }))
}

/// Read one connection.
#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    Ok(Json((&s.broker.connection_for(&auth.0, &id).await?).into()))
}

/// Set owner, purpose or label (`null` clears).
#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections", params(("id" = String, Path)), request_body = PatchConnection,
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn patch(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<PatchConnection>,
) -> Result<Json<ConnectionView>, ApiError> {
    let c = s
        .broker
        .update_connection(
            &auth.0,
            &id,
            ConnectionPatch {
                owner: b.owner,
                purpose: b.purpose,
                label: b.label,
            },
        )
        .await?;
    Ok(Json((&c).into()))
}

/// Disconnect: revoke at the provider and erase the tokens.
#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = DisconnectResponse), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<DisconnectResponse>, ApiError> {
    let (c, outcome) = s.broker.disconnect(&auth.0, &id).await?;
    Ok(Json(DisconnectResponse {
        revocation: outcome.as_str().into(),
        connection: (&c).into(),
    }))
}
