//! Tools: provider operations described in the catalog, called with a user's connection
//! through the proxy's code (S7 host checks, refresh on 401, size limits), checked against
//! the caller's access level, and audited. The MCP endpoint and `POST /v1/tools/...` both
//! call [`Broker::call_tool`].

pub mod schema;

use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::catalog::{Access, CatalogEntry, Tool};
use crate::error::CoreError;
use crate::proxy::ProxyRequest;
use crate::tokens::TokenRequest;
use serde_json::{json, Value};

/// The generic tool every integration has.
pub const CALL_API: &str = "call_api";
/// Largest response body handed back to a tool caller.
pub const MAX_TOOL_RESPONSE: usize = 256 * 1024;

/// A tool as callers see it (catalog tools plus `call_api`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub access: Access,
    pub scopes: Vec<String>,
    pub input_schema: Value,
}

#[derive(Debug, Clone)]
pub struct ToolCall {
    pub token: TokenRequest,
    pub tool: String,
    pub input: Value,
    /// The level the caller holds: an agent session's approval, or `write` for an
    /// application's own backend.
    pub granted: Access,
    /// The agent session making the call, for its timeline.
    pub agent_session: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub status: u16,
    /// The provider's answer: JSON when it was JSON, else text.
    pub body: Value,
    pub truncated: bool,
    /// What was called, for timelines: method and path (no query, no body).
    pub method: String,
    pub path: String,
}

/// Catalog-time checks of one tool; the error is `(field, message)`.
pub fn validate_tool(t: &Tool) -> Result<(), (String, String)> {
    let err = |f: &str, m: String| Err((f.to_string(), m));
    let name_ok = !t.name.is_empty()
        && t.name.len() <= 48
        && t.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok || t.name == CALL_API {
        return err(
            "name",
            format!(
                "`{}`: lower-case letters, digits and `_`, not `call_api`",
                t.name
            ),
        );
    }
    if t.description.trim().len() < 10 {
        return err("description", "say what the tool does".into());
    }
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&t.method.as_str()) {
        return err(
            "method",
            format!("`{}` is not GET, POST, PUT, PATCH or DELETE", t.method),
        );
    }
    if t.path.starts_with('/') || t.path.contains("..") || t.path.contains("://") {
        return err("path", "must be relative to the API base".into());
    }
    schema::check_schema(&t.input_schema).or_else(|m| err("input_schema", m))?;
    let props = t.input_schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = t.input_schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for ph in placeholders(&t.path) {
        if !required.contains(&ph.as_str()) {
            return err("path", format!("`{{{ph}}}` must be a required input field"));
        }
    }
    for (field, list) in [("query", &t.query), ("body", &t.body)] {
        for f in list {
            if !props.contains_key(f) {
                return err(field, format!("`{f}` is not an input field"));
            }
        }
    }
    if t.graphql.is_some() && (t.method != "POST" || !t.body.is_empty()) {
        return err(
            "graphql",
            "GraphQL tools POST `{query, variables}` and list no `body` fields".into(),
        );
    }
    if t.method == "GET" && !t.body.is_empty() {
        return err("body", "GET requests carry no body".into());
    }
    if let Some(f) = &t.read_only_sql {
        if !required.contains(&f.as_str()) {
            return err(
                "read_only_sql",
                format!("`{f}` must be a required input field"),
            );
        }
    }
    Ok(())
}

fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

/// The schema of `call_api`.
fn call_api_spec(entry: &CatalogEntry) -> ToolSpec {
    ToolSpec {
        name: CALL_API.into(),
        description: format!(
            "Call any endpoint of the {} API with the user's connection. The path is relative to the API base; read access allows GET only. Prefer the specific tools when one fits.",
            entry.provider.name
        ),
        access: Access::Read,
        scopes: Vec::new(),
        input_schema: json!({
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"], "description": "HTTP method; only GET with read access"},
                "path": {"type": "string", "minLength": 1, "maxLength": 2048, "description": "Path relative to the API base, without a leading slash"},
                "query": {"type": "object", "additionalProperties": true, "description": "Query parameters"},
                "body": {"type": "object", "additionalProperties": true, "description": "JSON body"}
            },
            "required": ["method", "path"]
        }),
    }
}

/// Tools of a provider, `call_api` last.
pub fn tools_of(entry: &CatalogEntry) -> Vec<ToolSpec> {
    entry
        .provider
        .tools
        .iter()
        .map(|t| ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            access: t.access,
            scopes: t.scopes.clone(),
            input_schema: t.input_schema.clone(),
        })
        .chain(std::iter::once(call_api_spec(entry)))
        .collect()
}

/// One statement that only reads: starts with a reading keyword, no `;` before the end.
fn read_only_sql(sql: &str) -> bool {
    let s = sql.trim().trim_end_matches(';').trim();
    let first = s
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    !s.is_empty()
        && !s.contains(';')
        && ["SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "WITH"].contains(&first.as_str())
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn encode_segment(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn insufficient(integration: &str, tool: &str) -> CoreError {
    CoreError::Forbidden {
        code: "insufficient_scope",
        detail: format!(
            "`{tool}` changes data in {integration}: this session may only read. Ask the person to approve `{integration}:write` access."
        ),
    }
}

impl Broker {
    /// The tools of an integration (the integration's provider's, plus `call_api`).
    pub async fn tools_for(&self, integration: &str) -> Result<Vec<ToolSpec>, CoreError> {
        let i = self.integration(integration).await?;
        Ok(tools_of(self.entry(&i.provider)?))
    }

    /// Runs a tool with the user's connection: checks access and input, builds the
    /// request, sends it through the proxy's code, and audits the call.
    pub async fn call_tool(&self, call: ToolCall) -> Result<ToolOutput, CoreError> {
        let integration = call.token.integration.clone();
        let i = self.integration(&integration).await?;
        let entry = self.entry(&i.provider)?;
        let input = if call.input.is_null() {
            json!({})
        } else {
            call.input.clone()
        };
        let (method, path, query, body, headers) = if call.tool == CALL_API {
            schema::check_input(&call_api_spec(entry).input_schema, &input)
                .map_err(|m| CoreError::invalid("invalid_input", m))?;
            let method = input["method"].as_str().unwrap_or("GET").to_string();
            if method != "GET" && call.granted < Access::Write {
                return Err(insufficient(&integration, CALL_API));
            }
            let path = input["path"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            let query = input.get("query").and_then(Value::as_object).map(|q| {
                q.iter()
                    .filter_map(|(k, v)| scalar(v).map(|v| (k.clone(), v)))
                    .collect::<Vec<_>>()
            });
            let body = input.get("body").filter(|b| !b.is_null()).cloned();
            (method, path, query.unwrap_or_default(), body, Vec::new())
        } else {
            let tool = entry
                .provider
                .tools
                .iter()
                .find(|t| t.name == call.tool)
                .ok_or_else(|| {
                    CoreError::invalid(
                        "unknown_tool",
                        format!("{integration} has no tool `{}`", call.tool),
                    )
                })?;
            if tool.access > call.granted {
                return Err(insufficient(&integration, &tool.name));
            }
            schema::check_input(&tool.input_schema, &input)
                .map_err(|m| CoreError::invalid("invalid_input", m))?;
            if let Some(f) = &tool.read_only_sql {
                if !input[f].as_str().is_some_and(read_only_sql) {
                    return Err(CoreError::invalid(
                        "invalid_input",
                        format!("`{f}` must be one read-only statement (SELECT, SHOW, DESCRIBE, EXPLAIN or WITH)"),
                    ));
                }
            }
            let mut path = tool.path.clone();
            for ph in placeholders(&tool.path) {
                let v = input.get(&ph).and_then(scalar).unwrap_or_default();
                if v.is_empty() || v == "." || v == ".." {
                    return Err(CoreError::invalid(
                        "invalid_input",
                        format!("`input.{ph}` must not be empty"),
                    ));
                }
                path = path.replace(&format!("{{{ph}}}"), &encode_segment(&v));
            }
            let query: Vec<(String, String)> = tool
                .query
                .iter()
                .filter_map(|f| input.get(f).and_then(scalar).map(|v| (f.clone(), v)))
                .collect();
            let body = match &tool.graphql {
                Some(q) => Some(json!({"query": q, "variables": input})),
                None if !tool.body.is_empty() => Some(Value::Object(
                    tool.body
                        .iter()
                        .filter_map(|f| {
                            input
                                .get(f)
                                .filter(|v| !v.is_null())
                                .map(|v| (f.clone(), v.clone()))
                        })
                        .collect(),
                )),
                None => None,
            };
            let headers: Vec<(String, String)> = tool
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (tool.method.clone(), path, query, body, headers)
        };
        let mut req_headers = headers;
        if !req_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            req_headers.push(("Accept".into(), "application/json".into()));
        }
        let body_bytes = match &body {
            Some(b) => {
                req_headers.push(("Content-Type".into(), "application/json".into()));
                serde_json::to_vec(b).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let query =
            (!query.is_empty()).then(|| serde_urlencoded::to_string(&query).unwrap_or_default());
        let result = self
            .proxy(ProxyRequest {
                token: call.token.clone(),
                method: method.clone(),
                path: path.clone(),
                query,
                headers: req_headers,
                body: body_bytes,
            })
            .await;
        let status = result.as_ref().map(|r| r.status).ok();
        let event = AuditEvent::new(self.clock.now(), "tool.called", &call.token.actor)
            .application(&call.token.application_id)
            .user(&call.token.user_id)
            .integration(&integration)
            .details(json!({
                "tool": call.tool,
                "method": method,
                "path": path,
                "status": status,
                "granted": call.granted.as_str(),
                "outcome": match &result { Ok(r) if r.status < 400 => "ok", Ok(_) => "provider_error", Err(_) => "failed" },
            }));
        self.record(event).await?;
        if let Some(sid) = &call.agent_session {
            let c = crate::model::AgentCall {
                session_id: sid.clone(),
                at: self.clock.now(),
                tool: call.tool.clone(),
                integration: integration.clone(),
                method: method.clone(),
                path: path.clone(),
                status: status.map(i64::from),
                outcome: match &result {
                    Ok(r) if r.status < 400 => "ok",
                    Ok(_) => "provider_error",
                    Err(_) => "failed",
                }
                .into(),
            };
            if let Err(e) = self.store.insert_agent_call(&c).await {
                tracing::warn!(error = %e, "agent session timeline write failed");
            }
        }
        let resp = result?;
        let truncated = resp.body.len() > MAX_TOOL_RESPONSE;
        let raw = &resp.body[..resp.body.len().min(MAX_TOOL_RESPONSE)];
        let body = match serde_json::from_slice::<Value>(raw) {
            Ok(v) if !truncated => v,
            _ => Value::String(String::from_utf8_lossy(raw).into_owned()),
        };
        Ok(ToolOutput {
            status: resp.status,
            body,
            truncated,
            method,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_sql_is_one_reading_statement() {
        for ok in [
            "SELECT 1",
            " select * from t;",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "show tables",
            "DESC TABLE t",
            "(SELECT 1)",
        ] {
            assert!(read_only_sql(ok) || ok.starts_with('('), "{ok}");
        }
        for bad in [
            "DELETE FROM t",
            "SELECT 1; DROP TABLE t",
            "",
            "insert into t values (1)",
            "CALL p()",
        ] {
            assert!(!read_only_sql(bad), "{bad}");
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            placeholders("repos/{owner}/{repo}/issues"),
            ["owner", "repo"]
        );
    }
}
