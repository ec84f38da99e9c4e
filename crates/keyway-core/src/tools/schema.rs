//! The JSON Schema subset tool inputs are described with, checked twice: the catalog's
//! schemas when they load (unknown keywords are errors, so a schema never silently means
//! less than it says), and every call's input against its tool's schema.

use serde_json::{Map, Value};

const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "items",
    "description",
    "default",
    "additionalProperties",
    "minItems",
    "maxItems",
];
const TYPES: &[&str] = &["object", "string", "integer", "number", "boolean", "array"];

/// Checks a schema uses only the supported subset; the top level must be an object.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let obj = schema.as_object().ok_or("must be a table")?;
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err("the top level must have type = \"object\"".into());
    }
    check_node(schema, "input_schema")
}

fn check_node(v: &Value, at: &str) -> Result<(), String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{at} must be a table"))?;
    for k in obj.keys() {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(format!("{at}: unsupported keyword `{k}`"));
        }
    }
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}: needs a `type`"))?;
    if !TYPES.contains(&ty) {
        return Err(format!("{at}: unknown type `{ty}`"));
    }
    if let Some(props) = obj.get("properties") {
        let props = props
            .as_object()
            .ok_or_else(|| format!("{at}.properties must be a table"))?;
        for (name, p) in props {
            check_node(p, &format!("{at}.properties.{name}"))?;
        }
    }
    if let Some(req) = obj.get("required") {
        let props = obj.get("properties").and_then(Value::as_object);
        for r in req
            .as_array()
            .ok_or_else(|| format!("{at}.required must be a list"))?
        {
            let name = r.as_str().unwrap_or_default();
            if !props.is_some_and(|p| p.contains_key(name)) {
                return Err(format!(
                    "{at}.required names `{name}`, which is not a property"
                ));
            }
        }
    }
    if let Some(items) = obj.get("items") {
        check_node(items, &format!("{at}.items"))?;
    }
    Ok(())
}

/// The input's problems, named by field, or `Ok`.
pub fn check_input(schema: &Value, input: &Value) -> Result<(), String> {
    check_value(schema, input, "input")
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "string" => v.is_string(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        _ => false,
    }
}

fn check_value(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let empty = Map::new();
    let s = schema.as_object().unwrap_or(&empty);
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("object");
    if !type_ok(ty, v) {
        return Err(format!("`{at}` must be of type {ty}"));
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(format!("`{at}` must be one of {}", list.join(", ")));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(format!("`{at}` must be at least {min}"));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(format!("`{at}` must be at most {max}"));
            }
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
            if len < min {
                return Err(format!("`{at}` must be at least {min} characters"));
            }
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                return Err(format!("`{at}` must be at most {max} characters"));
            }
        }
    }
    if let Some(list) = v.as_array() {
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            if list.len() as u64 > max {
                return Err(format!("`{at}` must have at most {max} items"));
            }
        }
        if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
            if (list.len() as u64) < min {
                return Err(format!("`{at}` must have at least {min} items"));
            }
        }
        if let Some(items) = s.get("items") {
            for (i, item) in list.iter().enumerate() {
                check_value(items, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = r.as_str().unwrap_or_default();
            if !obj.contains_key(name) || obj[name].is_null() {
                return Err(format!("`{at}.{name}` is required"));
            }
        }
        let closed = s.get("additionalProperties") != Some(&Value::Bool(true));
        for (k, val) in obj {
            match props.get(k) {
                Some(p) if !val.is_null() => check_value(p, val, &format!("{at}.{k}"))?,
                Some(_) => {}
                None if closed => return Err(format!("`{at}` has no field `{k}`")),
                None => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "channel": {"type": "string", "minLength": 1, "maxLength": 80},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "state": {"type": "string", "enum": ["open", "closed"]},
                "labels": {"type": "array", "items": {"type": "string"}, "maxItems": 3}
            },
            "required": ["channel"]
        })
    }

    #[test]
    fn schemas_use_the_supported_subset() {
        check_schema(&schema()).expect("valid");
        assert!(check_schema(&json!({"type": "string"})).is_err());
        let err = check_schema(
            &json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}),
        )
        .expect_err("pattern");
        assert!(err.contains("pattern"), "{err}");
        let err =
            check_schema(&json!({"type": "object", "required": ["nope"]})).expect_err("required");
        assert!(err.contains("nope"));
    }

    #[test]
    fn inputs_are_checked_field_by_field() {
        let s = schema();
        check_input(&s, &json!({"channel": "C1", "limit": 10, "labels": ["a"]})).expect("ok");
        let cases = [
            (json!({}), "`input.channel` is required"),
            (json!({"channel": ""}), "at least 1 characters"),
            (json!({"channel": "C", "limit": 0}), "at least 1"),
            (json!({"channel": "C", "limit": 1.5}), "type integer"),
            (json!({"channel": "C", "state": "merged"}), "one of"),
            (
                json!({"channel": "C", "labels": [1]}),
                "`input.labels[0]` must be of type string",
            ),
            (
                json!({"channel": "C", "labels": ["a", "b", "c", "d"]}),
                "at most 3 items",
            ),
            (json!({"channel": "C", "extra": true}), "no field `extra`"),
            (json!("C"), "type object"),
        ];
        for (input, want) in cases {
            let err = check_input(&s, &input).expect_err(&input.to_string());
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
