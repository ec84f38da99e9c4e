//! Webhook endpoints: register (the secret is shown once), list, delete, delivery log.

use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyway_core::clock::rfc3339;
use keyway_core::webhooks::{Delivery, Webhook};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed.
    pub url: String,
    /// Event types: `connection.created`, `connection.needs_reauthorization`,
    /// `connection.recovered`, `connection.revoked`, `agent_session.approved`,
    /// `agent_session.ended`.
    pub events: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// Signing secret, shown once: `Keyway-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    pub secret: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub application_id: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
}

impl From<&Webhook> for WebhookView {
    fn from(h: &Webhook) -> Self {
        Self {
            id: h.id.clone(),
            application_id: h.application_id.clone(),
            url: h.url.clone(),
            events: h.events.clone(),
            created_at: rfc3339(h.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id.clone(),
            event_type: d.event_type.clone(),
            state: d.state.clone(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: rfc3339(d.created_at),
            next_attempt_at: (d.state == "pending").then(|| rfc3339(d.next_attempt_at)),
            delivered_at: d.delivered_at.map(rfc3339),
        }
    }
}

/// Register a webhook. Application keys get their application's events only.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = WebhookCreated), (status = 400, body = Problem)), security(("api_key" = [])))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(b): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    let (hook, secret) = s
        .broker
        .create_webhook(&auth.0.actor(), auth.0.application_id(), &b.url, b.events)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            id: hook.id,
            url: hook.url,
            events: hook.events,
            secret,
            created_at: rfc3339(hook.created_at),
        }),
    ))
}

/// List webhooks (never returns secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", responses((status = 200, body = [WebhookView])), security(("api_key" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<WebhookView>>, ApiError> {
    let hooks = s.broker.list_webhooks(auth.0.application_id()).await?;
    Ok(Json(hooks.iter().map(WebhookView::from).collect()))
}

/// Delete a webhook and its pending deliveries.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.broker
        .delete_webhook(&auth.0.actor(), auth.0.application_id(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// 1-500 (default 100), newest first.
    pub limit: Option<u32>,
}

/// A webhook's delivery log, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, body = [DeliveryView]), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn deliveries(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let limit = super::params::limit(q.limit, 100, 500)?;
    let hook = s.broker.webhook_for(auth.0.application_id(), &id).await?;
    let list = s.broker.webhook_deliveries(&hook.id, limit).await?;
    Ok(Json(list.iter().map(DeliveryView::from).collect()))
}
