//! Tools as catalog data (issue 4, item 5): listing, input checks, request building
//! (path segments, query, JSON body, GraphQL, headers), access levels, the SQL guard, and
//! the audit trail — through the proxy's code, against the fake provider's echo API.

use keyway_core::catalog::Access;
use keyway_core::tokens::TokenRequest;
use keyway_core::tools::ToolCall;
use keyway_testkit::{App, FakeProvider, Flavor, TestKeyway, TestOptions};
use reqwest::Method;
use serde_json::{json, Value};

const TOOLS: &str = r#"
[[tools]]
name = "list_issues"
description = "List a repository's issues."
method = "GET"
path = "api/repos/{owner}/{repo}/issues"
access = "read"
scopes = ["repo"]
query = ["state", "per_page"]
[tools.headers]
X-Custom = "from-the-catalog"
[tools.input_schema]
type = "object"
required = ["owner", "repo"]
[tools.input_schema.properties.owner]
type = "string"
minLength = 1
[tools.input_schema.properties.repo]
type = "string"
minLength = 1
[tools.input_schema.properties.state]
type = "string"
enum = ["open", "closed"]
[tools.input_schema.properties.per_page]
type = "integer"
minimum = 1
maximum = 100

[[tools]]
name = "create_issue"
description = "Open an issue in a repository."
method = "POST"
path = "api/repos/{owner}/{repo}/issues"
access = "write"
body = ["title", "labels"]
[tools.input_schema]
type = "object"
required = ["owner", "repo", "title"]
[tools.input_schema.properties.owner]
type = "string"
[tools.input_schema.properties.repo]
type = "string"
[tools.input_schema.properties.title]
type = "string"
minLength = 1
[tools.input_schema.properties.labels]
type = "array"
items = { type = "string" }

[[tools]]
name = "graph"
description = "A GraphQL query with variables."
method = "POST"
path = "api/graphql"
access = "read"
graphql = "query Q($first: Int) { items(first: $first) { id } }"
[tools.input_schema]
type = "object"
[tools.input_schema.properties.first]
type = "integer"

[[tools]]
name = "run_query"
description = "Run one read-only SQL statement."
method = "POST"
path = "api/statements"
access = "read"
body = ["statement"]
read_only_sql = "statement"
[tools.input_schema]
type = "object"
required = ["statement"]
[tools.input_schema.properties.statement]
type = "string"
"#;

async fn setup() -> (TestKeyway, FakeProvider, App) {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let mut entry = fake.provider_toml();
    let tools: toml::Value = toml::from_str(TOOLS).expect("tools");
    if let (Some(t), Some(extra)) = (entry.as_table_mut(), tools.get("tools")) {
        t.insert("tools".into(), extra.clone());
    }
    let mut opts = TestOptions::default();
    opts.providers.insert("fake".into(), entry);
    let kw = TestKeyway::start(opts).await;
    kw.create_integration("acme", "fake", &[], json!({})).await;
    let app = kw.create_app("App One", &[]).await;
    kw.connect(&app, "u1", "acme").await;
    (kw, fake, app)
}

async fn call(kw: &TestKeyway, app: &App, tool: &str, input: Value) -> keyway_testkit::Response {
    kw.call(
        Method::POST,
        &format!("/v1/tools/acme/{tool}"),
        Some(&app.key),
        Some(json!({"user_id": "u1", "input": input})),
    )
    .await
}

#[tokio::test]
async fn tools_are_listed_with_their_schemas_and_call_api_last() {
    let (kw, _fake, app) = setup().await;
    let r = kw
        .call(
            Method::GET,
            "/v1/integrations/acme/tools",
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<&str> = r
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "list_issues",
            "create_issue",
            "graph",
            "run_query",
            "call_api"
        ]
    );
    assert_eq!(r.body[0]["access"], "read");
    assert_eq!(r.body[1]["access"], "write");
    assert_eq!(
        r.body[0]["input_schema"]["required"],
        json!(["owner", "repo"])
    );
    kw.call(
        Method::GET,
        "/v1/integrations/nope/tools",
        Some(&app.key),
        None,
    )
    .await
    .assert_problem(422, "unknown_integration");
}

#[tokio::test]
async fn requests_are_built_from_the_input_and_audited() {
    let (kw, _fake, app) = setup().await;
    let r = call(
        &kw,
        &app,
        "list_issues",
        json!({"owner": "octo cat", "repo": "hello", "state": "open", "per_page": 5}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], 200);
    let echo = &r.body["body"];
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/api/repos/octo%20cat/hello/issues");
    assert_eq!(echo["query"], "state=open&per_page=5");
    assert_eq!(echo["x_custom"], "from-the-catalog");
    assert_eq!(r.body["truncated"], false);

    let r = call(
        &kw,
        &app,
        "create_issue",
        json!({"owner": "o", "repo": "r", "title": "Bug", "labels": ["p1"]}),
    )
    .await;
    let echo = &r.body["body"];
    assert_eq!(echo["method"], "POST");
    let sent: Value =
        serde_json::from_str(echo["body"].as_str().unwrap_or("{}")).expect("json body");
    assert_eq!(
        sent,
        json!({"title": "Bug", "labels": ["p1"]}),
        "only the body fields"
    );

    let r = call(&kw, &app, "graph", json!({"first": 3})).await;
    let sent: Value =
        serde_json::from_str(r.body["body"]["body"].as_str().unwrap_or("{}")).expect("graphql");
    assert_eq!(sent["variables"], json!({"first": 3}));
    assert!(sent["query"]
        .as_str()
        .unwrap_or_default()
        .starts_with("query Q("));

    let r = call(
        &kw,
        &app,
        "call_api",
        json!({"method": "GET", "path": "api/anything", "query": {"a": 1, "b": "x y"}}),
    )
    .await;
    assert_eq!(r.body["body"]["path"], "/api/anything");
    assert_eq!(r.body["body"]["query"], "a=1&b=x+y");

    let audit = kw.admin(Method::GET, "/v1/audit?limit=1000", None).await;
    let calls: Vec<&Value> = audit.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "tool.called")
        .collect();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[0]["details"]["tool"], "list_issues");
    assert_eq!(
        calls[0]["details"]["path"],
        "api/repos/octo%20cat/hello/issues"
    );
    assert_eq!(calls[0]["details"]["status"], 200);
    assert_eq!(calls[0]["user_id"], "u1");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_call() {
    let (kw, _fake, app) = setup().await;
    let before = kw.db_fingerprint().await;
    for (tool, input, code, needle) in [
        (
            "list_issues",
            json!({"owner": "o"}),
            "invalid_input",
            "input.repo",
        ),
        (
            "list_issues",
            json!({"owner": "o", "repo": "r", "state": "merged"}),
            "invalid_input",
            "one of",
        ),
        (
            "list_issues",
            json!({"owner": "o", "repo": "r", "per_page": 1000}),
            "invalid_input",
            "at most 100",
        ),
        (
            "list_issues",
            json!({"owner": "o", "repo": "r", "evil": 1}),
            "invalid_input",
            "no field `evil`",
        ),
        (
            "list_issues",
            json!({"owner": "..", "repo": "r"}),
            "invalid_input",
            "must not be empty",
        ),
        (
            "create_issue",
            json!({"owner": "o", "repo": "r", "title": ""}),
            "invalid_input",
            "input.title",
        ),
        (
            "run_query",
            json!({"statement": "DELETE FROM users"}),
            "invalid_input",
            "read-only",
        ),
        (
            "run_query",
            json!({"statement": "SELECT 1; DROP TABLE t"}),
            "invalid_input",
            "read-only",
        ),
        (
            "call_api",
            json!({"method": "TRACE", "path": "x"}),
            "invalid_input",
            "one of",
        ),
        ("nope", json!({}), "unknown_tool", "nope"),
    ] {
        let r = call(&kw, &app, tool, input.clone()).await;
        r.assert_problem(400, code);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{tool} {input}: {}",
            r.body
        );
    }
    assert_eq!(
        kw.db_fingerprint().await,
        before,
        "refused input changes nothing and calls nothing"
    );
    // A value that would climb out of the path is encoded and then refused by the proxy.
    call(
        &kw,
        &app,
        "list_issues",
        json!({"owner": "../../admin", "repo": "r"}),
    )
    .await
    .assert_problem(400, "invalid_path");
    kw.call(
        Method::POST,
        "/v1/tools/acme/list_issues",
        Some(&app.key),
        Some(json!({"user_id": "", "input": {}})),
    )
    .await
    .assert_problem(400, "invalid_request");
    kw.call(
        Method::POST,
        "/v1/tools/acme/list_issues",
        Some(&app.key),
        Some(json!({"user_id": "nobody", "input": {"owner": "o", "repo": "r"}})),
    )
    .await
    .assert_problem(404, "not_installed");
}

#[tokio::test]
async fn read_access_allows_read_tools_and_get_only() {
    let (kw, _fake, app) = setup().await;
    let run = |tool: &str, input: Value| {
        kw.broker.call_tool(ToolCall {
            token: TokenRequest {
                application_id: app.id.clone(),
                integration: "acme".into(),
                user_id: "u1".into(),
                organization_id: None,
                actor: "agent-session:test".into(),
                connection_id: None,
                label: None,
            },
            tool: tool.into(),
            input,
            granted: Access::Read,
            agent_session: None,
        })
    };
    let ok = run("list_issues", json!({"owner": "o", "repo": "r"}))
        .await
        .expect("read tool");
    assert_eq!(ok.status, 200);
    assert_eq!(
        (ok.method.as_str(), ok.path.as_str()),
        ("GET", "api/repos/o/r/issues")
    );
    for (tool, input) in [
        (
            "create_issue",
            json!({"owner": "o", "repo": "r", "title": "x"}),
        ),
        ("call_api", json!({"method": "POST", "path": "api/x"})),
        ("call_api", json!({"method": "DELETE", "path": "api/x"})),
    ] {
        match run(tool, input).await {
            Err(keyway_core::CoreError::Forbidden { code, detail }) => {
                assert_eq!(code, "insufficient_scope");
                assert!(detail.contains("acme:write"), "{detail}");
            }
            other => panic!("{tool}: {other:?}"),
        }
    }
    run("call_api", json!({"method": "GET", "path": "api/x"}))
        .await
        .expect("GET is reading");
}
