//! The fixtures the official MCP conformance suite (`@modelcontextprotocol/conformance`)
//! expects from a server, served only with `serve --dev --mcp-conformance`: content-type
//! tools, tools that log, report progress, ask the client for sampling or elicitation, and
//! the `test://` resources, resource template, prompts and completions. Keyway itself
//! offers tools only; these exist so the suite can check the transport and the SDK's
//! handling of every message kind against Keyway's `/mcp` (docs/mcp-conformance.md).
#![allow(deprecated)] // logging and sampling are deprecated by SEP-2577, still in 2025-11-25

use super::SessionLog;
use rmcp::model::{
    CallToolResult, CompleteRequestParams, CompleteResult, ContentBlock,
    CreateMessageRequestParams, ElicitRequestParams, GetPromptRequestParams, GetPromptResult,
    JsonObject, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, LoggingLevel,
    ProgressNotificationParam, ReadResourceResult, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::ErrorData as McpError;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A 1x1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV header with no samples.
const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";
/// The pause between a fixture tool's notifications, so clients see them arrive apart.
const STEP: Duration = Duration::from_millis(50);

/// Name, description and input schema properties (all required) of each fixture tool.
const TOOLS: &[(&str, &str, &[&str])] = &[
    ("test_simple_text", "Returns a text block.", &[]),
    ("test_image_content", "Returns a PNG image block.", &[]),
    ("test_audio_content", "Returns a WAV audio block.", &[]),
    (
        "test_embedded_resource",
        "Returns an embedded text resource.",
        &[],
    ),
    (
        "test_multiple_content_types",
        "Returns text, image and resource blocks.",
        &[],
    ),
    ("test_error_handling", "Always fails, as a tool error.", &[]),
    (
        "test_tool_with_logging",
        "Sends three info log notifications while it runs.",
        &[],
    ),
    (
        "test_tool_with_progress",
        "Reports progress 0, 50 and 100 of 100 when given a progress token.",
        &[],
    ),
    (
        "test_sampling",
        "Asks the client's model to answer `prompt`.",
        &["prompt"],
    ),
    (
        "test_elicitation",
        "Asks the person for a username and an email, explaining with `message`.",
        &["message"],
    ),
    (
        "test_elicitation_sep1034_defaults",
        "Asks the person for fields of every primitive type, each with a default.",
        &[],
    ),
    (
        "test_elicitation_sep1330_enums",
        "Asks the person to choose from every kind of enumeration.",
        &[],
    ),
];

/// The server capabilities in this mode: everything the suite exercises.
pub fn capabilities() -> ServerCapabilities {
    // The typestate builder fixes the order of its calls; the wire form is plainer.
    from_json(json!({
        "tools": {},
        "logging": {},
        "completions": {},
        "prompts": {},
        "resources": {"subscribe": true},
    }))
    .unwrap_or_default()
}

pub fn tools() -> Vec<Tool> {
    TOOLS
        .iter()
        .map(|(name, description, required)| {
            let properties: serde_json::Map<String, Value> = required
                .iter()
                .map(|p| (p.to_string(), json!({"type": "string"})))
                .collect();
            let mut schema = serde_json::Map::new();
            schema.insert("type".into(), "object".into());
            schema.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                schema.insert("required".into(), json!(required));
            }
            Tool::new(*name, *description, Arc::new(schema))
        })
        .collect()
}

/// Results are written in their wire form (`resultType` is required from 2026-07-28 on
/// and ignored before).
fn from_json<T: DeserializeOwned>(v: Value) -> Result<T, McpError> {
    serde_json::from_value(v).map_err(|e| McpError::internal_error(e.to_string(), None))
}

fn text(s: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s)])
}

fn argument<'a>(args: &'a JsonObject, name: &str) -> Result<&'a str, McpError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params(format!("`{name}` (a string) is required"), None))
}

/// Answers a fixture tool, or `None` when `name` is not one (then Keyway's tools answer).
pub async fn call(
    name: &str,
    args: &JsonObject,
    ctx: &RequestContext<RoleServer>,
    log: &SessionLog,
) -> Option<Result<CallToolResult, McpError>> {
    let resource = || {
        ContentBlock::embedded_text("test://embedded-resource", r#"{"test":"data","value":123}"#)
    };
    Some(Ok(match name {
        "test_simple_text" => text("This is a simple text response for testing."),
        "test_image_content" => {
            CallToolResult::success(vec![ContentBlock::image(PNG, "image/png")])
        }
        "test_audio_content" => {
            CallToolResult::success(vec![ContentBlock::audio(WAV, "audio/wav")])
        }
        "test_embedded_resource" => CallToolResult::success(vec![resource()]),
        "test_multiple_content_types" => CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG, "image/png"),
            resource(),
        ]),
        "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
            "This tool intentionally returns an error for testing",
        )]),
        "test_tool_with_logging" => {
            for (i, message) in [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ]
            .into_iter()
            .enumerate()
            {
                if i > 0 {
                    tokio::time::sleep(STEP).await;
                }
                log.send(&ctx.peer, LoggingLevel::Info, || message.to_string())
                    .await;
            }
            text("Tool with logging executed successfully")
        }
        "test_tool_with_progress" => {
            let token = ctx.meta.get_progress_token();
            for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(STEP).await;
                }
                if let Some(token) = &token {
                    let mut p = ProgressNotificationParam::new(token.clone(), progress);
                    p.total = Some(100.0);
                    let _ = ctx.peer.notify_progress(p).await;
                }
            }
            text("Tool with progress executed successfully")
        }
        "test_sampling" => return Some(sampling(args, ctx).await),
        "test_elicitation" => {
            let message = match argument(args, "message") {
                Ok(m) => m.to_string(),
                Err(e) => return Some(Err(e)),
            };
            let schema = json!({
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            });
            return Some(
                elicit(ctx, message, schema)
                    .await
                    .map(|r| text(format!("User response: {r}"))),
            );
        }
        "test_elicitation_sep1034_defaults" => {
            let schema = json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "default": "John Doe"},
                    "age": {"type": "integer", "default": 30},
                    "score": {"type": "number", "default": 95.5},
                    "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "default": true},
                },
            });
            return Some(
                elicit(ctx, "Please review these defaults".into(), schema)
                    .await
                    .map(|r| text(format!("Elicitation completed: {r}"))),
            );
        }
        "test_elicitation_sep1330_enums" => {
            let schema = json!({
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ]},
                    "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "items": {"anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]}},
                },
            });
            return Some(
                elicit(ctx, "Please choose".into(), schema)
                    .await
                    .map(|r| text(format!("Elicitation completed: {r}"))),
            );
        }
        _ => return None,
    }))
}

/// `sampling/createMessage` with the tool's prompt; a client without the `sampling`
/// capability gets a tool error saying so.
async fn sampling(
    args: &JsonObject,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let prompt = argument(args, "prompt")?;
    let supported = ctx
        .peer
        .peer_info()
        .is_some_and(|i| i.capabilities.sampling.is_some());
    if !supported {
        return Ok(CallToolResult::error(vec![ContentBlock::text(
            "This client does not support sampling",
        )]));
    }
    let params: CreateMessageRequestParams = from_json(json!({
        "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
        "maxTokens": 100,
    }))?;
    match ctx.peer.create_message(params).await {
        Ok(result) => {
            let answer = serde_json::to_value(&result.message.content)
                .ok()
                .and_then(|c| c.get("text").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            Ok(text(format!("LLM response: {answer}")))
        }
        Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
            "Sampling failed: {e}"
        ))])),
    }
}

/// `elicitation/create` in form mode; answers `action=…, content=…` as the suite expects.
async fn elicit(
    ctx: &RequestContext<RoleServer>,
    message: String,
    schema: Value,
) -> Result<String, McpError> {
    let supported = ctx
        .peer
        .peer_info()
        .is_some_and(|i| i.capabilities.elicitation.is_some());
    if !supported {
        return Err(McpError::invalid_request(
            "this client does not support elicitation",
            None,
        ));
    }
    let params: ElicitRequestParams = from_json(json!({
        "mode": "form",
        "message": message,
        "requestedSchema": schema,
    }))?;
    let result = ctx
        .peer
        .create_elicitation(params)
        .await
        .map_err(|e| McpError::internal_error(format!("elicitation failed: {e}"), None))?;
    let action = serde_json::to_value(result.action).unwrap_or_default();
    let content = result.content.unwrap_or(Value::Null);
    Ok(format!(
        "action={}, content={content}",
        action.as_str().unwrap_or("unknown")
    ))
}

pub fn prompts() -> Result<ListPromptsResult, McpError> {
    from_json(json!({"resultType": "complete", "prompts": [
        {"name": "test_simple_prompt", "description": "A prompt with no arguments."},
        {"name": "test_prompt_with_arguments", "description": "A prompt that uses its two arguments.",
         "arguments": [
            {"name": "arg1", "description": "First argument", "required": true},
            {"name": "arg2", "description": "Second argument", "required": true},
         ]},
        {"name": "test_prompt_with_embedded_resource", "description": "A prompt that embeds a resource.",
         "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
        {"name": "test_prompt_with_image", "description": "A prompt with an image."},
    ]}))
}

pub fn get_prompt(request: GetPromptRequestParams) -> Result<GetPromptResult, McpError> {
    let args = request.arguments.unwrap_or_default();
    let arg =
        |name: &str| -> Result<String, McpError> { argument(&args, name).map(str::to_string) };
    let messages = match request.name.as_str() {
        "test_simple_prompt" => json!([
            {"role": "user", "content": {"type": "text", "text": "This is a simple prompt for testing."}},
        ]),
        "test_prompt_with_arguments" => {
            let (a1, a2) = (arg("arg1")?, arg("arg2")?);
            json!([{"role": "user", "content": {"type": "text",
                "text": format!("Prompt with arguments: arg1='{a1}', arg2='{a2}'")}}])
        }
        "test_prompt_with_embedded_resource" => {
            let uri = arg("resourceUri")?;
            json!([
                {"role": "user", "content": {"type": "resource", "resource": {
                    "uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}}},
                {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}},
            ])
        }
        "test_prompt_with_image" => json!([
            {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
            {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}},
        ]),
        other => {
            return Err(McpError::invalid_params(
                format!("no prompt named `{other}`"),
                None,
            ))
        }
    };
    from_json(json!({"resultType": "complete", "messages": messages}))
}

pub fn resources() -> Result<ListResourcesResult, McpError> {
    from_json(json!({"resultType": "complete", "resources": [
        {"uri": "test://static-text", "name": "static-text", "description": "A static text resource.", "mimeType": "text/plain"},
        {"uri": "test://static-binary", "name": "static-binary", "description": "A static PNG image.", "mimeType": "image/png"},
        {"uri": "test://watched-resource", "name": "watched-resource", "description": "A resource that can be subscribed to.", "mimeType": "text/plain"},
    ]}))
}

pub fn resource_templates() -> Result<ListResourceTemplatesResult, McpError> {
    from_json(json!({"resultType": "complete", "resourceTemplates": [
        {"uriTemplate": "test://template/{id}/data", "name": "template-data",
         "description": "Data for the item `id`.", "mimeType": "application/json"},
    ]}))
}

pub fn read_resource(uri: &str) -> Result<ReadResourceResult, McpError> {
    let contents = match uri {
        "test://static-text" => json!({"uri": uri, "mimeType": "text/plain",
            "text": "This is the content of the static text resource."}),
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG}),
        "test://watched-resource" => json!({"uri": uri, "mimeType": "text/plain",
            "text": "Watched resource content."}),
        _ => match uri
            .strip_prefix("test://template/")
            .and_then(|r| r.strip_suffix("/data"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
        {
            Some(id) => json!({"uri": uri, "mimeType": "application/json",
                "text": json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string()}),
            None => {
                return Err(McpError::resource_not_found(
                    format!("no resource `{uri}`"),
                    None,
                ))
            }
        },
    };
    from_json(json!({"resultType": "complete", "contents": [contents]}))
}

/// Completion values for the prompt arguments, filtered by what was typed.
pub fn complete(request: CompleteRequestParams) -> Result<CompleteResult, McpError> {
    const CHOICES: &[&str] = &["paris", "park", "party", "test", "testing"];
    let typed = request.argument.value.to_lowercase();
    let values: Vec<&str> = CHOICES
        .iter()
        .copied()
        .filter(|c| c.starts_with(&typed))
        .collect();
    from_json(
        json!({"resultType": "complete", "completion": {"values": values, "total": values.len(), "hasMore": false}}),
    )
}
