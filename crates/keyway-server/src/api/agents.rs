//! The application's side of agent approvals, and agent sessions for operators and
//! applications: `POST /v1/agent-authorizations/{id}/identify`, `GET/DELETE
//! /v1/agent-sessions[/{id}]`.

use super::types::*;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use keyway_core::clock::rfc3339;
use keyway_core::model::AgentSession;

fn view(s: &AgentSession, now: time::OffsetDateTime) -> AgentSessionView {
    AgentSessionView {
        id: s.id.clone(),
        application_id: s.application_id.clone(),
        user_id: s.user_id.clone(),
        organization_id: s.organization_id.clone(),
        client_id: s.client_id.clone(),
        client_name: s.client_name.clone(),
        integrations: s.integrations.clone(),
        access: s.access.as_str().into(),
        state: s.state(now).into(),
        created_at: rfc3339(s.created_at),
        expires_at: rfc3339(s.expires_at),
        revoked_at: s.revoked_at.map(rfc3339),
        timeline: None,
    }
}

/// The application's backend says which of its users signed in for an agent's request
/// (the `keyway_request` its login URL received); send that browser to `approval_url`.
#[utoipa::path(post, path = "/v1/agent-authorizations/{id}/identify", tag = "agents", request_body = IdentifyBody,
    responses((status = 200, body = IdentifyResponse), (status = 404, body = Problem), (status = 409, description = "`already_identified`", body = Problem)),
    security(("api_key" = [])))]
pub async fn identify(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<IdentifyBody>,
) -> Result<Json<IdentifyResponse>, ApiError> {
    let app = auth.application(b.application_id.as_deref())?;
    let url = s
        .broker
        .identify_agent_user(&app, &id, &b.user_id, b.organization_id.as_deref())
        .await?;
    Ok(Json(IdentifyResponse { approval_url: url }))
}

/// Agent sessions, newest first; application keys see their own application's.
#[utoipa::path(get, path = "/v1/agent-sessions", tag = "agents", params(AgentSessionQuery),
    responses((status = 200, body = [AgentSessionView])), security(("api_key" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<AgentSessionQuery>,
) -> Result<Json<Vec<AgentSessionView>>, ApiError> {
    let now = s.broker.now();
    let list = s
        .broker
        .agent_sessions(&auth.0, q.application_id.as_deref(), q.user_id.as_deref())
        .await?;
    if let Some(st) = q.state.as_deref() {
        if !["active", "expired", "revoked"].contains(&st) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`state` must be active, expired or revoked",
            ));
        }
    }
    Ok(Json(
        list.iter()
            .filter(|x| q.state.as_deref().is_none_or(|st| x.state(now) == st))
            .map(|x| view(x, now))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/agent-sessions/{id}", tag = "agents",
    responses((status = 200, body = AgentSessionView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<AgentSessionView>, ApiError> {
    let x = s.broker.agent_session(&auth.0, &id).await?;
    let calls = s
        .broker
        .store
        .list_agent_calls(&x.id, 10_000)
        .await
        .map_err(keyway_core::CoreError::from)?;
    let mut v = view(&x, s.broker.now());
    v.timeline = Some(
        calls
            .into_iter()
            .map(|c| AgentCallView {
                at: rfc3339(c.at),
                tool: c.tool,
                integration: c.integration,
                method: c.method,
                path: c.path,
                status: c.status,
                outcome: c.outcome,
            })
            .collect(),
    );
    Ok(Json(v))
}

/// Ends a session at once: its access tokens stop working.
#[utoipa::path(delete, path = "/v1/agent-sessions/{id}", tag = "agents",
    responses((status = 200, body = AgentSessionView), (status = 404, body = Problem), (status = 409, description = "`session_ended`", body = Problem)),
    security(("api_key" = [])))]
pub async fn revoke(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<AgentSessionView>, ApiError> {
    let x = s.broker.revoke_agent_session(&auth.0, &id).await?;
    tracing::info!(session = %x.id, "agent session revoked");
    Ok(Json(view(&x, s.broker.now())))
}
