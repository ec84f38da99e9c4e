//! Governance calls: the inventory, offboarding, and the audit chain.

use crate::error::{ApiError, Problem};
use crate::extract::{ApiQuery, Auth};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyway_core::clock::rfc3339;
use keyway_core::governance::{InventoryFilter, InventoryRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InventoryQuery {
    pub application_id: Option<String>,
    pub integration: Option<String>,
    /// `active`, `needs_reauthorization` or `revoked`.
    pub status: Option<String>,
    /// `true`: only stale connections; `false`: only fresh ones.
    pub stale: Option<bool>,
    /// `true`: only connections without an owner.
    pub no_owner: Option<bool>,
    /// `json` (default) or `csv` (every matching row, no pagination).
    pub format: Option<String>,
    pub cursor: Option<String>,
    /// Page size for JSON, 1-10000 (default 1000).
    pub limit: Option<u32>,
}

/// One connection as the security team sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryItem {
    pub connection_id: String,
    pub application_id: String,
    pub application_name: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub integration: String,
    pub provider: String,
    pub provider_account_id: Option<String>,
    pub provider_account_name: Option<String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub status: String,
    pub granted_scopes: Vec<String>,
    pub configured_scopes: Vec<String>,
    pub missing_scopes: Vec<String>,
    pub extra_scopes: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub last_refreshed_at: Option<String>,
    pub last_validated_at: Option<String>,
    /// Unused for longer than the configured threshold (`stale_after_days`).
    pub stale: bool,
}

impl From<&InventoryRow> for InventoryItem {
    fn from(r: &InventoryRow) -> Self {
        let c = &r.connection;
        Self {
            connection_id: c.id.clone(),
            application_id: c.application_id.clone(),
            application_name: r.application_name.clone(),
            user_id: c.user_id.clone(),
            organization_id: c.organization_id.clone(),
            integration: c.integration.clone(),
            provider: c.provider.clone(),
            provider_account_id: c.account_id.clone(),
            provider_account_name: c.account_name.clone(),
            owner: c.owner.clone(),
            purpose: c.purpose.clone(),
            status: c.status.as_str().into(),
            granted_scopes: c.scopes.clone(),
            configured_scopes: r.configured_scopes.clone(),
            missing_scopes: r.missing_scopes.clone(),
            extra_scopes: r.extra_scopes.clone(),
            created_at: rfc3339(c.created_at),
            last_used_at: c.last_used_at.map(rfc3339),
            last_refreshed_at: c.last_refreshed_at.map(rfc3339),
            last_validated_at: c.last_validated_at.map(rfc3339),
            stale: r.stale,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryList {
    pub data: Vec<InventoryItem>,
    pub next_cursor: Option<String>,
}

pub(crate) fn csv_response(rows: &[InventoryRow]) -> Result<Response, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "connection_id",
        "application_id",
        "application_name",
        "user_id",
        "organization_id",
        "integration",
        "provider",
        "provider_account_id",
        "provider_account_name",
        "owner",
        "purpose",
        "status",
        "granted_scopes",
        "configured_scopes",
        "missing_scopes",
        "extra_scopes",
        "created_at",
        "last_used_at",
        "last_refreshed_at",
        "last_validated_at",
        "stale",
    ];
    let fail = |e: csv::Error| {
        tracing::error!(error = %e, "csv encoding failed");
        ApiError::internal()
    };
    w.write_record(header).map_err(fail)?;
    for r in rows {
        let i = InventoryItem::from(r);
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        w.write_record([
            i.connection_id,
            i.application_id,
            i.application_name,
            i.user_id,
            o(&i.organization_id),
            i.integration,
            i.provider,
            o(&i.provider_account_id),
            o(&i.provider_account_name),
            o(&i.owner),
            o(&i.purpose),
            i.status,
            i.granted_scopes.join(" "),
            i.configured_scopes.join(" "),
            i.missing_scopes.join(" "),
            i.extra_scopes.join(" "),
            i.created_at,
            o(&i.last_used_at),
            o(&i.last_refreshed_at),
            o(&i.last_validated_at),
            i.stale.to_string(),
        ])
        .map_err(fail)?;
    }
    let body = w.into_inner().map_err(|e| fail(e.into_error().into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"keyway-inventory.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// Every connection with owner, scopes, activity and a stale flag (`?format=csv` for CSV).
#[utoipa::path(get, path = "/v1/inventory", tag = "governance", params(InventoryQuery),
    responses((status = 200, body = InventoryList), (status = 400, body = Problem)), security(("api_key" = [])))]
pub async fn inventory(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<InventoryQuery>,
) -> Result<Response, ApiError> {
    let status = super::params::status(q.status.as_deref())?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`format` must be json or csv",
            ))
        }
    };
    let after_id = super::params::decode_cursor(q.cursor.as_deref())?;
    let limit = super::params::limit(q.limit, 1000, 10_000)?;
    let mut filter = InventoryFilter {
        application_id: q.application_id,
        integration: q.integration,
        status,
        stale: q.stale,
        no_owner: q.no_owner.unwrap_or(false),
        after_id,
        limit,
    };
    if csv {
        let mut all = Vec::new();
        loop {
            let (rows, next) = s.broker.inventory(&auth.0, filter.clone()).await?;
            all.extend(rows);
            match next {
                Some(n) => filter.after_id = Some(n),
                None => break,
            }
        }
        return csv_response(&all);
    }
    let (rows, next) = s.broker.inventory(&auth.0, filter).await?;
    Ok(Json(InventoryList {
        data: rows.iter().map(InventoryItem::from).collect(),
        next_cursor: next.map(|n| super::params::encode_cursor(&n)),
    })
    .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OffboardedConnection {
    pub connection_id: String,
    pub application_id: String,
    pub integration: String,
    pub provider_account_name: Option<String>,
    /// `confirmed`, `unsupported` or `failed` (failed ones are retried in the background).
    pub revocation: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OffboardReport {
    pub user_id: String,
    pub connections: Vec<OffboardedConnection>,
}

/// Revoke every connection of a user in every application (admin).
#[utoipa::path(post, path = "/v1/users/{user_id}/offboard", tag = "governance", params(("user_id" = String, Path)),
    responses((status = 200, body = OffboardReport), (status = 403, body = Problem)), security(("api_key" = [])))]
pub async fn offboard(
    State(s): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<Json<OffboardReport>, ApiError> {
    auth.require_admin()?;
    let items = s.broker.offboard(&auth.0.actor(), &user_id).await?;
    Ok(Json(OffboardReport {
        user_id,
        connections: items
            .iter()
            .map(|i| OffboardedConnection {
                connection_id: i.connection.id.clone(),
                application_id: i.connection.application_id.clone(),
                integration: i.connection.integration.clone(),
                provider_account_name: i.connection.account_name.clone(),
                revocation: i.revocation.as_str().into(),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Return records with a sequence number greater than this (default 0).
    pub after_seq: Option<i64>,
    /// 1-1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    pub at: String,
    pub action: String,
    pub actor: String,
    pub application_id: Option<String>,
    pub user_id: Option<String>,
    pub connection_id: Option<String>,
    pub integration: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub data: Vec<AuditEventView>,
    /// Pass as `after_seq` for the next page; absent at the end of the chain.
    pub next_after_seq: Option<i64>,
}

/// Read the audit chain from a sequence number (admin).
#[utoipa::path(get, path = "/v1/audit", tag = "governance", params(AuditQuery),
    responses((status = 200, body = AuditList)), security(("api_key" = [])))]
pub async fn audit(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    auth.require_admin()?;
    let limit = super::params::limit(q.limit, 100, 1000)?;
    let after = q.after_seq.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`after_seq` must not be negative",
        ));
    }
    let records = s.broker.audit_page(after, limit).await?;
    let next = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(Json(AuditList {
        data: records
            .into_iter()
            .map(|r| AuditEventView {
                seq: r.seq,
                at: rfc3339(r.event.at),
                action: r.event.action,
                actor: r.event.actor,
                application_id: r.event.application_id,
                user_id: r.event.user_id,
                connection_id: r.event.connection_id,
                integration: r.event.integration,
                details: serde_json::from_str(&r.event.details).unwrap_or(serde_json::Value::Null),
                prev_hash: r.prev_hash,
                hash: r.hash,
            })
            .collect(),
        next_after_seq: next,
    }))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// A head recorded earlier (from a previous verification): the chain must still hold
    /// this record unchanged, which also catches a cut tail.
    pub anchor_seq: Option<i64>,
    pub anchor_hash: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    pub checked: u64,
    pub first_bad_seq: Option<i64>,
    /// The last verified record: record it elsewhere to anchor later verifications.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
}

/// Recompute the whole chain and name the first bad sequence number (admin).
#[utoipa::path(post, path = "/v1/audit/verify", tag = "governance", request_body = VerifyBody,
    responses((status = 200, body = VerifyResponse)), security(("api_key" = [])))]
pub async fn verify(
    State(s): State<AppState>,
    auth: Auth,
    body: axum::body::Bytes,
) -> Result<Json<VerifyResponse>, ApiError> {
    auth.require_admin()?;
    let b: VerifyBody = if body.iter().all(u8::is_ascii_whitespace) {
        VerifyBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            )
        })?
    };
    let anchor = match (b.anchor_seq, b.anchor_hash) {
        (Some(seq), Some(hash)) if seq > 0 && hash.len() == 64 => Some((seq, hash)),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "an anchor needs both `anchor_seq` (> 0) and `anchor_hash` (64 hex characters)",
            ))
        }
    };
    let r = s.broker.verify_audit(anchor).await?;
    if !r.valid {
        tracing::error!(first_bad_seq = ?r.first_bad_seq, "audit chain verification failed");
    }
    Ok(Json(VerifyResponse {
        valid: r.valid,
        checked: r.checked,
        first_bad_seq: r.first_bad_seq,
        head_seq: r.head_seq,
        head_hash: r.head_hash,
    }))
}
