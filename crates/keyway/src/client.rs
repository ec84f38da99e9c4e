//! The HTTP client behind the operator and agent commands: talks to a Keyway server
//! (`KEYWAY_URL`, `KEYWAY_API_KEY`), prints a table for people or `--json` for programs,
//! and fails with the server's own error message.

use anyhow::{anyhow, Result};
use serde_json::Value;

pub struct Client {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: String, key: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            key,
            http,
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(k) = &self.key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach Keyway at {}: {}", self.base, e.without_url()))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let detail = value
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("request failed");
        let code = value.get("code").and_then(Value::as_str).unwrap_or("error");
        let mut msg = format!("{detail} ({code}, HTTP {})", status.as_u16());
        if let Some(u) = value.get("reconnect_url").and_then(Value::as_str) {
            msg.push_str(&format!("\nreconnect: {u}"));
        }
        Err(anyhow!(msg))
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows as an aligned table with the given (header, JSON pointer) columns.
pub fn table(rows: &[Value], cols: &[(&str, &str)]) {
    let data: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|(_, p)| r.pointer(p).map(cell).unwrap_or_else(|| "-".into()))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            data.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(cols.iter().map(|(h, _)| h.to_uppercase()).collect());
    for r in data {
        line(r);
    }
}

pub fn print(value: &Value, json: bool, cols: &[(&str, &str)]) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    match value {
        Value::Array(rows) => table(rows, cols),
        Value::Object(o) if o.get("data").is_some_and(Value::is_array) => {
            if let Some(Value::Array(rows)) = o.get("data") {
                table(rows, cols);
            }
            if let Some(c) = o.get("next_cursor").and_then(Value::as_str) {
                println!("(more: --cursor {c})");
            }
        }
        other => table(std::slice::from_ref(other), cols),
    }
}
