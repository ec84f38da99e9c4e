//! `/mcp`: the Model Context Protocol endpoint (Streamable HTTP, with the official Rust
//! SDK `rmcp`). Authentication is the agent session's bearer token, checked on every
//! request before rmcp sees it (an MCP session id is never authentication); tools are the
//! approved integrations' catalog tools, named `{integration}__{tool}`, and every call
//! goes through `Broker::call_tool` with the session's access level.

// MCP logging is deprecated by SEP-2577 for 2026-07-28 but part of 2025-06-18 and
// 2025-11-25, which Keyway serves; rmcp marks its types deprecated.
#![allow(deprecated)]

mod conformance;

use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyway_core::catalog::Access;
use keyway_core::model::AgentSession;
use keyway_core::tokens::TokenRequest;
use keyway_core::tools::ToolCall;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{Peer, RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Largest JSON-RPC body accepted on `/mcp`.
const MAX_MCP_BODY: usize = 1024 * 1024;
/// Separates the integration from the tool in MCP tool names.
const SEP: &str = "__";

/// One MCP session's handler (rmcp builds one per session).
#[derive(Clone)]
pub struct KeywayMcp {
    state: AppState,
    log: SessionLog,
    /// `resources/subscribe` URIs (conformance mode only: Keyway has no resources).
    subscriptions: Arc<Mutex<HashSet<String>>>,
}

/// MCP log notifications for one session, at or above the level the client set with
/// `logging/setLevel`; nothing is sent before a client asks for a level. Messages name
/// tools and statuses, never a token or a request body (S1).
#[derive(Clone, Default)]
pub struct SessionLog {
    level: Arc<Mutex<Option<LoggingLevel>>>,
}

/// RFC 5424 severity order, as MCP's logging utility uses it.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl SessionLog {
    fn set(&self, level: LoggingLevel) {
        if let Ok(mut l) = self.level.lock() {
            *l = Some(level);
        }
    }

    fn wants(&self, level: LoggingLevel) -> bool {
        self.level
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|min| severity(level) >= severity(min))
    }

    /// Sends `message()` if the client asked for `level`; the message is only built then
    /// (the tool path pays nothing for clients that never set a level).
    pub async fn send(
        &self,
        peer: &Peer<RoleServer>,
        level: LoggingLevel,
        message: impl FnOnce() -> String,
    ) {
        if self.wants(level) {
            let mut param = LoggingMessageNotificationParam::new(level, Value::String(message()));
            param.logger = Some("keyway".into());
            // A client that went away misses a log line; the call itself goes on.
            let _ = peer.notify_logging_message(param).await;
        }
    }
}

fn session_of(ctx: &RequestContext<RoleServer>) -> Result<AgentSession, McpError> {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.extensions.get::<AgentSession>())
        .cloned()
        .ok_or_else(|| McpError::invalid_request("no agent session", None))
}

fn text_result(v: &Value, is_error: bool) -> CallToolResult {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    }
}

impl ServerHandler for KeywayMcp {
    fn get_info(&self) -> ServerConfig {
        let capabilities = if self.state.config.mcp_conformance {
            conformance::capabilities()
        } else {
            ServerCapabilities::builder()
                .enable_logging()
                .enable_tools()
                .build()
        };
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("keyway", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools act with the user's connected accounts, only those a person approved for this session, at the approved level (read or write), until the session ends. Tool names are <integration>__<tool>; call_api reaches any endpoint of an integration's API.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let session = session_of(&ctx)?;
        let mut tools = Vec::new();
        if self.state.config.mcp_conformance {
            tools.extend(conformance::tools());
        }
        for integration in &session.integrations {
            let Ok(list) = self.state.broker.tools_for(integration).await else {
                continue;
            };
            for t in list {
                let schema = match t.input_schema {
                    Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                };
                let note = if t.access == Access::Write && session.access == Access::Read {
                    " (needs write access: this session may only read)"
                } else {
                    ""
                };
                tools.push(Tool::new(
                    format!("{integration}{SEP}{}", t.name),
                    format!("{}{note}", t.description),
                    Arc::new(schema),
                ));
            }
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let session = session_of(&ctx)?;
        let name = request.name.to_string();
        if self.state.config.mcp_conformance {
            let args = request.arguments.clone().unwrap_or_default();
            if let Some(result) = conformance::call(&name, &args, &ctx, &self.log).await {
                return result.map(Into::into);
            }
        }
        let Some((integration, tool)) = name.split_once(SEP) else {
            return Ok(text_result(
                &serde_json::json!({"error": "unknown_tool", "detail": format!("`{name}` is not a Keyway tool")}),
                true,
            )
            .into());
        };
        if !session.integrations.iter().any(|i| i == integration) {
            return Ok(text_result(
                &serde_json::json!({"error": "insufficient_scope", "detail": format!("This session was not approved for {integration}. Ask the person to approve `{integration}:read` or `{integration}:write`.")}),
                true,
            )
            .into());
        }
        let input = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let call = ToolCall {
            token: TokenRequest {
                application_id: session.application_id.clone(),
                integration: integration.to_string(),
                user_id: session.user_id.clone(),
                organization_id: session.organization_id.clone(),
                actor: format!("agent:{}", session.id),
                connection_id: None,
                label: None,
            },
            tool: tool.to_string(),
            input,
            granted: session.access,
            agent_session: Some(session.id.clone()),
        };
        self.log
            .send(&ctx.peer, LoggingLevel::Info, || {
                format!("Calling {name} for session {}", session.id)
            })
            .await;
        let result = match self.state.broker.call_tool(call).await {
            Ok(out) => text_result(
                &serde_json::json!({"status": out.status, "body": out.body, "truncated": out.truncated}),
                out.status >= 400,
            ),
            Err(e) => {
                let problem = crate::error::ApiError::from(e);
                text_result(
                    &serde_json::json!({"error": problem.code, "detail": problem.detail}),
                    true,
                )
            }
        };
        let (level, outcome) = if result.is_error == Some(true) {
            (LoggingLevel::Warning, "failed")
        } else {
            (LoggingLevel::Info, "succeeded")
        };
        self.log
            .send(&ctx.peer, level, || format!("{name} {outcome}"))
            .await;
        Ok(result.into())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.log.set(request.level);
        Ok(())
    }

    // Keyway offers tools only: prompts, resources and completions exist in the test-only
    // conformance mode, for the suite's fixtures; otherwise they are "method not found".

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.fixtures_only::<rmcp::model::ListPromptsRequestMethod>()?;
        conformance::prompts()
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.fixtures_only::<rmcp::model::GetPromptRequestMethod>()?;
        conformance::get_prompt(request).map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.fixtures_only::<rmcp::model::ListResourcesRequestMethod>()?;
        conformance::resources()
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.fixtures_only::<rmcp::model::ListResourceTemplatesRequestMethod>()?;
        conformance::resource_templates()
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.fixtures_only::<rmcp::model::ReadResourceRequestMethod>()?;
        conformance::read_resource(&request.uri).map(Into::into)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.fixtures_only::<rmcp::model::SubscribeRequestMethod>()?;
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.insert(request.uri);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.fixtures_only::<rmcp::model::UnsubscribeRequestMethod>()?;
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.remove(&request.uri);
        }
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.fixtures_only::<rmcp::model::CompleteRequestMethod>()?;
        conformance::complete(request)
    }
}

impl KeywayMcp {
    /// `Err(method not found)` unless the test-only conformance mode is on.
    fn fixtures_only<M: rmcp::model::ConstString>(&self) -> Result<(), McpError> {
        if self.state.config.mcp_conformance {
            Ok(())
        } else {
            Err(McpError::method_not_found::<M>())
        }
    }
}

/// The rmcp service: stateless JSON answers, hosts and origins from the public URL.
pub fn service(state: AppState) -> StreamableHttpService<KeywayMcp, LocalSessionManager> {
    let public = url::Url::parse(&state.config.public_url).ok();
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let mut origins: Vec<String> = Vec::new();
    if let Some(u) = &public {
        if let Some(h) = u.host_str() {
            hosts.push(h.to_string());
            if let Some(p) = u.port() {
                hosts.push(format!("{h}:{p}"));
            }
        }
        origins.push(u.origin().ascii_serialization());
    }
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
    config.allowed_origins = origins;
    config.json_response = true;
    config.max_request_body_bytes = MAX_MCP_BODY;
    StreamableHttpService::new(
        move || {
            Ok(KeywayMcp {
                state: state.clone(),
                log: SessionLog::default(),
                subscriptions: Arc::default(),
            })
        },
        LocalSessionManager::default().into(),
        config,
    )
}

/// The resource a request is for: `/mcp`, or `/mcp/{application_id}` (spec §5).
fn resource_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/mcp")?.trim_matches('/');
    if rest.is_empty() {
        Some("mcp".into())
    } else if !rest.contains('/') && rest.len() <= 256 {
        Some(format!("mcp/{rest}"))
    } else {
        None
    }
}

/// A 401 (`scope` is `mcp`) or a 403 `insufficient_scope` naming the scope to ask for
/// (RFC 6750 §3), both pointing at the resource's metadata (RFC 9728 §5.1).
fn challenge(state: &AppState, status: StatusCode, resource: &str, scope: &str) -> Response {
    let meta = format!(
        "{}/.well-known/oauth-protected-resource/{resource}",
        state.config.public_url
    );
    let value = if status == StatusCode::FORBIDDEN {
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{meta}\""
        )
    } else {
        format!("Bearer resource_metadata=\"{meta}\", scope=\"{scope}\"")
    };
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": if status == StatusCode::FORBIDDEN { "insufficient_scope" } else { "invalid_token" }}).to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Authenticates `/mcp` requests (RFC 6750 bearer, audience = Keyway's MCP resource) and
/// answers `403 insufficient_scope` for tool calls outside the approval, naming the scope
/// to ask for (step-up), before rmcp handles the message.
pub async fn authenticate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(rpath) = resource_path(req.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let resource = format!("{}/{rpath}", s.config.public_url);
    let session = match token {
        Some(t) => s
            .broker
            .agent_session_for_token(&t, &resource)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let session = match session {
        Some(x) => Some(x),
        // Test only: the conformance suite speaks MCP without OAuth.
        None if s.config.mcp_conformance && !req.headers().contains_key(header::AUTHORIZATION) => {
            conformance_session(&s, &resource).await
        }
        None => None,
    };
    let Some(session) = session else {
        return challenge(&s, StatusCode::UNAUTHORIZED, &rpath, "mcp");
    };
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_MCP_BODY).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response(),
    };
    if let Ok(msg) = serde_json::from_slice::<Value>(&bytes) {
        if msg["method"] == "tools/call" {
            let name = msg["params"]["name"].as_str().unwrap_or_default();
            if let Some((integration, tool)) = name.split_once(SEP) {
                let needed = if !session.integrations.iter().any(|i| i == integration) {
                    Some(format!("{integration}:read"))
                } else if session.access == Access::Read {
                    let write = s
                        .broker
                        .tools_for(integration)
                        .await
                        .ok()
                        .and_then(|ts| ts.into_iter().find(|t| t.name == tool))
                        .is_some_and(|t| t.access == Access::Write)
                        || (tool == keyway_core::tools::CALL_API
                            && msg["params"]["arguments"]["method"]
                                .as_str()
                                .is_some_and(|m| !m.eq_ignore_ascii_case("GET")));
                    write.then(|| format!("{integration}:write"))
                } else {
                    None
                };
                if let Some(scope) = needed {
                    let refused = keyway_core::model::AgentCall {
                        session_id: session.id.clone(),
                        at: s.broker.now(),
                        tool: tool.to_string(),
                        integration: integration.to_string(),
                        method: msg["params"]["arguments"]["method"]
                            .as_str()
                            .unwrap_or("-")
                            .to_string(),
                        path: msg["params"]["arguments"]["path"]
                            .as_str()
                            .unwrap_or("-")
                            .to_string(),
                        status: Some(403),
                        outcome: "refused".into(),
                    };
                    if let Err(e) = s.broker.store.insert_agent_call(&refused).await {
                        tracing::warn!(error = %e, "agent session timeline write failed");
                    }
                    return challenge(&s, StatusCode::FORBIDDEN, &rpath, &scope);
                }
            }
        }
    }
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `serve --dev --mcp-conformance` only: the demo user's session with write access to the
/// integrations they have connected (the sandbox), for the MCP conformance suite.
async fn conformance_session(s: &AppState, resource: &str) -> Option<AgentSession> {
    let apps = s.broker.store.list_applications().await.ok()?;
    let app = apps.into_iter().next()?;
    let integrations = s
        .broker
        .agent_integrations_of(&app, "demo", None)
        .await
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| vec!["sandbox".into()]);
    let now = s.broker.now();
    Some(AgentSession {
        id: "as_conformance".into(),
        application_id: app.id,
        user_id: "demo".into(),
        organization_id: None,
        client_id: "conformance".into(),
        client_name: "MCP conformance suite".into(),
        integrations,
        access: Access::Write,
        resource: resource.to_string(),
        created_at: now,
        expires_at: now + time::Duration::hours(1),
        revoked_at: None,
        code_hash: String::new(),
        code_challenge: String::new(),
        code_redirect_uri: String::new(),
        code_expires_at: now,
    })
}
