//! Tools over HTTP for an application's own backend: the same catalog operations agents
//! get over MCP, called with a user's connection (`write` access: the application is
//! trusted with its users' connections; agents get only what a person approved).

use super::types::*;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, Auth};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use keyway_core::catalog::Access;
use keyway_core::connect::MAX_ID_LEN;
use keyway_core::tokens::TokenRequest;
use keyway_core::tools::ToolCall;

/// The tools of an integration: its provider's, plus the guarded generic `call_api`.
#[utoipa::path(get, path = "/v1/integrations/{slug}/tools", tag = "tools",
    responses((status = 200, body = [ToolView]), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(s): State<AppState>,
    _auth: Auth,
    Path(slug): Path<String>,
) -> Result<Json<Vec<ToolView>>, ApiError> {
    let tools = s.broker.tools_for(&slug).await?;
    Ok(Json(
        tools
            .into_iter()
            .map(|t| ToolView {
                name: t.name,
                description: t.description,
                access: t.access.as_str().into(),
                scopes: t.scopes,
                input_schema: t.input_schema,
            })
            .collect(),
    ))
}

/// Calls a tool with a user's connection; the provider's status and answer come back
/// (bodies over 256 KiB are cut and marked `truncated`). Every call is audited.
#[utoipa::path(post, path = "/v1/tools/{integration}/{tool}", tag = "tools", request_body = ToolCallBody,
    responses(
        (status = 200, body = ToolCallResult),
        (status = 400, description = "`invalid_input` naming the field, `unknown_tool`", body = Problem),
        (status = 404, description = "`not_installed`", body = Problem),
        (status = 409, description = "`needs_reauthorization` or `ambiguous_connection`", body = Problem)),
    security(("api_key" = [])))]
pub async fn call(
    State(s): State<AppState>,
    auth: Auth,
    Path((integration, tool)): Path<(String, String)>,
    ApiJson(b): ApiJson<ToolCallBody>,
) -> Result<Json<ToolCallResult>, ApiError> {
    let app = auth.application(b.application_id.as_deref())?;
    for (name, v) in [
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
    let out = s
        .broker
        .call_tool(ToolCall {
            token: TokenRequest {
                application_id: app,
                integration,
                user_id: b.user_id,
                organization_id: b.organization_id,
                actor: auth.0.actor(),
                connection_id: b.connection_id,
                label: b.label,
            },
            tool,
            input: b.input.unwrap_or_default(),
            granted: Access::Write,
            agent_session: None,
        })
        .await?;
    Ok(Json(ToolCallResult {
        status: out.status,
        body: out.body,
        truncated: out.truncated,
    }))
}
