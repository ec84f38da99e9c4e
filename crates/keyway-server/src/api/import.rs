//! `POST /v1/connections/import`: existing tokens, one (JSON) or many (JSON Lines).

use super::types::ConnectionView;
use crate::error::{ApiError, Problem};
use crate::extract::Auth;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyway_core::import::ImportRequest;
use keyway_core::secret::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Most lines in one bulk import.
const MAX_LINES: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    pub user_id: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    pub integration: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// RFC 3339; absent for tokens that do not expire.
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    /// Admin keys name the application; application keys imply it.
    #[serde(default)]
    pub application_id: Option<String>,
    /// Store without calling the provider's identity endpoint.
    #[serde(default)]
    pub skip_validation: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportLineResult {
    pub line: usize,
    /// `imported` or `failed`.
    pub status: String,
    pub connection_id: Option<String>,
    pub code: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkImportReport {
    pub imported: usize,
    pub failed: usize,
    pub results: Vec<ImportLineResult>,
}

async fn import_one(
    s: &AppState,
    auth: &Auth,
    b: ImportBody,
) -> Result<keyway_core::model::Connection, ApiError> {
    let application_id = auth.application(b.application_id.as_deref())?;
    let expires_at = b
        .expires_at
        .as_deref()
        .map(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339))
        .transpose()
        .map_err(|_| {
            ApiError::bad_request("invalid_request", "`expires_at` must be an RFC 3339 time")
        })?;
    Ok(s.broker
        .import_connection(
            &auth.0.actor(),
            ImportRequest {
                application_id,
                user_id: b.user_id,
                organization_id: b.organization_id,
                integration: b.integration,
                access_token: Secret::new(b.access_token),
                refresh_token: b.refresh_token.map(Secret::new),
                expires_at,
                scopes: b.scopes,
                owner: b.owner,
                purpose: b.purpose,
                skip_validation: b.skip_validation,
            },
        )
        .await?)
}

/// Import existing tokens: a JSON object answers 201 with the connection; a JSON Lines
/// body (`application/x-ndjson`) imports each line and reports per line.
#[utoipa::path(post, path = "/v1/connections/import", tag = "connections", request_body = ImportBody,
    responses((status = 201, body = ConnectionView), (status = 200, description = "JSON Lines report", body = BulkImportReport),
        (status = 400, body = Problem), (status = 409, description = "`connection_exists`", body = Problem)),
    security(("api_key" = [])))]
pub async fn import(
    State(s): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.starts_with("application/json") {
        let b: ImportBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            )
        })?;
        let c = import_one(&s, &auth, b).await?;
        return Ok((StatusCode::CREATED, Json(ConnectionView::from(&c))).into_response());
    }
    if !(ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json (one) or application/x-ndjson (many)",
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_request", "the body is not UTF-8"))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("send 1 to {MAX_LINES} lines"),
        ));
    }
    let mut results = Vec::with_capacity(lines.len());
    for (line, l) in lines {
        let outcome = match serde_json::from_str::<ImportBody>(l) {
            Ok(b) => import_one(&s, &auth, b).await,
            Err(e) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            )),
        };
        results.push(match outcome {
            Ok(c) => ImportLineResult {
                line,
                status: "imported".into(),
                connection_id: Some(c.id),
                code: None,
                detail: None,
            },
            Err(e) => ImportLineResult {
                line,
                status: "failed".into(),
                connection_id: None,
                code: Some(e.code),
                detail: Some(e.detail),
            },
        });
    }
    let imported = results.iter().filter(|r| r.status == "imported").count();
    Ok(Json(BulkImportReport {
        imported,
        failed: results.len() - imported,
        results,
    })
    .into_response())
}
