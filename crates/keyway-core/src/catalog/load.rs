//! Loading and validating the catalog: built-in files plus the config file's
//! `[providers.<id>]` tables, with `extends` resolved and errors that name the file and
//! the field.

use super::hosts::HostPattern;
use super::model::Provider;
use std::collections::BTreeMap;
use url::Url;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/catalog_files.rs"));
}

/// Placeholder for Keyway's own public URL, used by the built-in sandbox provider.
pub const KEYWAY_URL_PLACEHOLDER: &str = "{keyway_url}";
/// Placeholders the revocation URL may use besides tenant settings.
const CALL_PLACEHOLDERS: &[&str] = &["client_id", "token"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("provider catalog: {source_name}: {field}: {message}")]
pub struct CatalogError {
    /// `catalog/slack.toml` or `config [providers.acme]`.
    pub source_name: String,
    /// Dotted path of the offending field (`oauth2.client_auth`), or `-` for the file.
    pub field: String,
    pub message: String,
}

impl CatalogError {
    fn new(source_name: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated provider with its id and where it came from.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub id: String,
    pub source_name: String,
    pub provider: Provider,
    pub hosts: Vec<HostPattern>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl Catalog {
    /// The built-in files (the sandbox only when `sandbox` is on) plus `custom` entries from
    /// the config file. A custom entry with a built-in's id replaces it.
    pub fn load(
        public_url: &str,
        custom: &BTreeMap<String, toml::Value>,
        sandbox: bool,
    ) -> Result<Self, CatalogError> {
        let mut raw: BTreeMap<String, (String, toml::Value)> = BTreeMap::new();
        for (id, text) in embedded::FILES {
            if *id == "sandbox" && !sandbox {
                continue;
            }
            let source = format!("catalog/{id}.toml");
            let value: toml::Value = toml::from_str(text)
                .map_err(|e| CatalogError::new(&source, "-", e.message().to_string()))?;
            raw.insert(id.to_string(), (source, value));
        }
        for (id, value) in custom {
            raw.insert(
                id.clone(),
                (format!("config [providers.{id}]"), value.clone()),
            );
        }
        let mut entries = BTreeMap::new();
        for id in raw.keys() {
            let (source, merged) = resolve(id, &raw, 0)?;
            let merged = substitute(merged, public_url);
            let provider = Provider::deserialize_path(&merged)
                .map_err(|(field, msg)| CatalogError::new(&source, &field, msg))?;
            let hosts = validate(id, &source, &provider)?;
            entries.insert(
                id.clone(),
                CatalogEntry {
                    id: id.clone(),
                    source_name: source,
                    provider,
                    hosts,
                },
            );
        }
        Ok(Self { entries })
    }

    pub fn get(&self, id: &str) -> Option<&CatalogEntry> {
        self.entries.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Provider {
    fn deserialize_path(v: &toml::Value) -> Result<Provider, (String, String)> {
        let de = v.clone();
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path.is_empty() || path == "." {
                "-".to_string()
            } else {
                path
            };
            (field, e.into_inner().to_string())
        })
    }
}

/// Follows `extends` and deep-merges the child's fields over its parent's.
fn resolve(
    id: &str,
    raw: &BTreeMap<String, (String, toml::Value)>,
    depth: usize,
) -> Result<(String, toml::Value), CatalogError> {
    let (source, value) = raw
        .get(id)
        .ok_or_else(|| CatalogError::new(id, "extends", format!("no provider named `{id}`")))?;
    if depth > 4 {
        return Err(CatalogError::new(
            source,
            "extends",
            "`extends` chain is too deep or circular",
        ));
    }
    let Some(parent) = value.get("extends").and_then(|v| v.as_str()) else {
        return Ok((source.clone(), value.clone()));
    };
    if !raw.contains_key(parent) {
        return Err(CatalogError::new(
            source,
            "extends",
            format!("no provider named `{parent}` to extend"),
        ));
    }
    let (_, base) = resolve(parent, raw, depth + 1)?;
    Ok((source.clone(), merge(base, value.clone())))
}

fn merge(base: toml::Value, over: toml::Value) -> toml::Value {
    match (base, over) {
        (toml::Value::Table(mut b), toml::Value::Table(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(bv) => merge(bv, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            toml::Value::Table(b)
        }
        (_, o) => o,
    }
}

fn substitute(v: toml::Value, public_url: &str) -> toml::Value {
    match v {
        toml::Value::String(s) => {
            toml::Value::String(s.replace(KEYWAY_URL_PLACEHOLDER, public_url.trim_end_matches('/')))
        }
        toml::Value::Array(a) => {
            toml::Value::Array(a.into_iter().map(|x| substitute(x, public_url)).collect())
        }
        toml::Value::Table(t) => toml::Value::Table(
            t.into_iter()
                .map(|(k, x)| (k, substitute(x, public_url)))
                .collect(),
        ),
        other => other,
    }
}

fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

/// Whether a URL may be used for a provider: HTTPS, or plain HTTP to a loopback host
/// (for tests and the sandbox).
pub fn url_allowed(u: &Url) -> bool {
    match u.scheme() {
        "https" => u.host_str().is_some(),
        "http" => matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    }
}

fn validate(id: &str, source: &str, p: &Provider) -> Result<Vec<HostPattern>, CatalogError> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(CatalogError::new(
            source,
            "-",
            "provider ids use lower-case letters, digits, `-` and `_`",
        ));
    }
    if p.name.trim().is_empty() {
        return Err(CatalogError::new(source, "name", "must not be empty"));
    }
    let tenant: Vec<&str> = p.tenant.iter().map(|t| t.name.as_str()).collect();
    let mut urls: Vec<(&str, &str, bool)> = vec![("api_base_url", p.api_base_url.as_str(), false)];
    // Non-secret credential fields (a data centre, an account SID) may shape URLs.
    let mut url_fields: Vec<&str> = Vec::new();
    match (&p.oauth2, &p.api_key) {
        (None, None) => {
            return Err(CatalogError::new(
                source,
                "-",
                "needs an `oauth2` or an `api_key` table",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(CatalogError::new(
                source,
                "api_key",
                "a provider is connected either with `oauth2` or with `api_key`, not both",
            ))
        }
        (Some(o), None) => {
            validate_oauth2(source, o)?;
            urls.push(("oauth2.authorize_url", o.authorize_url.as_str(), false));
            urls.push(("oauth2.token_url", o.token_url.as_str(), false));
            if let Some(r) = &o.refresh_url {
                urls.push(("oauth2.refresh_url", r, false));
            }
            if let Some(r) = &o.revocation_url {
                urls.push(("oauth2.revocation_url", r, false));
            }
            if let Some(r) = &o.revocation {
                urls.push(("oauth2.revocation.url", &r.url, true));
            }
        }
        (None, Some(k)) => {
            validate_api_key(source, k)?;
            urls.push(("api_key.issue_url", k.issue_url.as_str(), false));
            url_fields = k
                .fields
                .iter()
                .filter(|f| !f.secret)
                .map(|f| f.name.as_str())
                .collect();
        }
    }
    if let Some(i) = &p.identity {
        urls.push(("identity.url", &i.url, true));
    }
    let mut tool_names: Vec<&str> = Vec::new();
    for (n, t) in p.tools.iter().enumerate() {
        crate::tools::validate_tool(t)
            .map_err(|(field, m)| CatalogError::new(source, &format!("tools[{n}].{field}"), m))?;
        if tool_names.contains(&t.name.as_str()) {
            return Err(CatalogError::new(
                source,
                &format!("tools[{n}].name"),
                format!("`{}` is declared twice", t.name),
            ));
        }
        tool_names.push(&t.name);
    }
    // Only a placeholder in a host needs explicit host patterns; path ones do not.
    let uses_tenant = urls.iter().any(|(_, t, _)| {
        let host = t
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_default();
        placeholders(host)
            .iter()
            .any(|ph| tenant.contains(ph) || url_fields.contains(ph))
    });
    let hosts: Vec<HostPattern> = if p.api_hosts.is_empty() {
        if uses_tenant || p.api_base_url_from.is_some() {
            return Err(CatalogError::new(
                source,
                "api_hosts",
                "required when URLs depend on tenant settings or the token response",
            ));
        }
        let host = Url::parse(&p.api_base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .ok_or_else(|| CatalogError::new(source, "api_base_url", "has no host"))?;
        vec![HostPattern::new(&host)]
    } else {
        p.api_hosts.iter().map(|h| HostPattern::new(h)).collect()
    };
    // A templated host may use plain http only if every allowed host is loopback (tests).
    let loopback_only = hosts
        .iter()
        .all(|h| matches!(h.as_str(), "127.0.0.1" | "localhost" | "[::1]"));
    for (field, template, call) in &urls {
        let mut sample = template.to_string();
        for ph in placeholders(template) {
            let known = tenant.contains(&ph)
                || (*call && CALL_PLACEHOLDERS.contains(&ph))
                || (url_fields.contains(&ph) && !field.starts_with("api_key."));
            if !known {
                return Err(CatalogError::new(
                    source,
                    field,
                    format!("unknown placeholder `{{{ph}}}`"),
                ));
            }
            sample = sample.replace(&format!("{{{ph}}}"), "example");
        }
        let parsed = Url::parse(&sample)
            .map_err(|e| CatalogError::new(source, field, format!("not a valid URL: {e}")))?;
        let host_templated = template
            .split("://")
            .nth(1)
            .is_some_and(|r| r.split('/').next().unwrap_or("").contains('{'));
        let allowed =
            url_allowed(&parsed) || (host_templated && loopback_only && parsed.scheme() == "http");
        if !allowed {
            return Err(CatalogError::new(
                source,
                field,
                "must be https (plain http only to a loopback host)",
            ));
        }
    }
    for h in &hosts {
        let bare = h.as_str().trim_start_matches("*.");
        if bare.is_empty() || bare.contains('*') || bare.contains('/') {
            return Err(CatalogError::new(
                source,
                "api_hosts",
                format!("`{}` is not a host pattern", h.as_str()),
            ));
        }
    }
    Ok(hosts)
}

fn validate_oauth2(source: &str, o: &super::model::OAuth2) -> Result<(), CatalogError> {
    if o.refresh_token_idle_days == Some(0) {
        return Err(CatalogError::new(
            source,
            "oauth2.refresh_token_idle_days",
            "must be at least 1",
        ));
    }
    if o.scope_separator.is_empty() {
        return Err(CatalogError::new(
            source,
            "oauth2.scope_separator",
            "must not be empty",
        ));
    }
    Ok(())
}

/// An API-key entry declares its fields once and sends at least one secret one.
fn validate_api_key(source: &str, k: &super::model::ApiKeyAuth) -> Result<(), CatalogError> {
    if k.fields.is_empty() {
        return Err(CatalogError::new(
            source,
            "api_key.fields",
            "declare at least one field",
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, f) in k.fields.iter().enumerate() {
        let field = format!("api_key.fields[{i}].name");
        let ok = !f.name.is_empty()
            && f.name.len() <= 64
            && f.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(CatalogError::new(
                source,
                &field,
                "field names use lower-case letters, digits and `_`",
            ));
        }
        if names.contains(&f.name.as_str()) {
            return Err(CatalogError::new(
                source,
                &field,
                format!("`{}` is declared twice", f.name),
            ));
        }
        if ["csrf", "integration"].contains(&f.name.as_str()) {
            return Err(CatalogError::new(
                source,
                &field,
                format!("`{}` is reserved", f.name),
            ));
        }
        if f.label.trim().is_empty() {
            return Err(CatalogError::new(
                source,
                &format!("api_key.fields[{i}].label"),
                "must not be empty",
            ));
        }
        names.push(&f.name);
    }
    let mut templates: Vec<(String, &str)> = Vec::new();
    for (h, t) in &k.headers {
        templates.push((format!("api_key.headers.{h}"), t));
    }
    for (q, t) in &k.query {
        templates.push((format!("api_key.query.{q}"), t));
    }
    if let Some(b) = &k.basic {
        templates.push(("api_key.basic.username".into(), &b.username));
        templates.push(("api_key.basic.password".into(), &b.password));
    }
    let mut sends_secret = false;
    for (field, t) in &templates {
        for ph in placeholders(t) {
            let Some(f) = k.fields.iter().find(|f| f.name == ph) else {
                return Err(CatalogError::new(
                    source,
                    field,
                    format!("unknown placeholder `{{{ph}}}`"),
                ));
            };
            sends_secret |= f.secret;
        }
    }
    if !sends_secret {
        return Err(CatalogError::new(
            source,
            "api_key",
            "`headers`, `query` or `basic` must send a secret field",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(text: &str) -> BTreeMap<String, toml::Value> {
        let v: toml::Value = toml::from_str(text).expect("toml");
        v.as_table()
            .expect("table")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn builtin_catalog_loads_and_has_required_providers() {
        let c = Catalog::load("http://127.0.0.1:7400", &BTreeMap::new(), true).expect("catalog");
        for id in [
            "slack",
            "linear",
            "github",
            "github-app",
            "google",
            "google-drive",
            "gmail",
            "google-calendar",
            "salesforce",
            "snowflake",
            "microsoft",
            "notion",
            "hubspot",
            "atlassian",
            "jira",
            "confluence",
            "zoom",
            "dropbox",
            "asana",
            "gitlab",
            "box",
            "zendesk",
            "intercom",
            "figma",
            "discord",
            "sandbox",
        ] {
            assert!(c.get(id).is_some(), "missing {id}");
        }
        let sandbox = &c.get("sandbox").expect("sandbox").provider;
        assert!(sandbox
            .oauth()
            .expect("oauth2")
            .token_url
            .starts_with("http://127.0.0.1:7400/sandbox/"));
        let no_sandbox =
            Catalog::load("http://127.0.0.1:7400", &BTreeMap::new(), false).expect("catalog");
        assert!(no_sandbox.get("sandbox").is_none());
    }

    #[test]
    fn aliases_inherit_and_override() {
        let c = Catalog::load("http://127.0.0.1:7400", &BTreeMap::new(), false).expect("catalog");
        let google = &c.get("google").expect("google").provider;
        let drive = &c.get("google-drive").expect("drive").provider;
        assert_eq!(
            drive.oauth().expect("oauth2").token_url,
            google.oauth().expect("oauth2").token_url
        );
        assert_ne!(
            drive.oauth().expect("oauth2").default_scopes,
            google.oauth().expect("oauth2").default_scopes
        );
        assert_eq!(
            drive
                .oauth()
                .expect("oauth2")
                .authorize_params
                .get("access_type")
                .map(String::as_str),
            Some("offline")
        );
    }

    #[test]
    fn custom_provider_with_fixed_field_names() {
        let c = Catalog::load(
            "http://127.0.0.1:7400",
            &custom(
                r#"
                [acme]
                name = "Acme"
                api_base_url = "https://api.acme.test"
                [acme.oauth2]
                authorize_url = "https://acme.test/authorize"
                token_url = "https://acme.test/token"
                revocation_url = "https://acme.test/revoke"
                scope_separator = ","
                pkce = true
                client_auth = "post"
                "#,
            ),
            false,
        )
        .expect("catalog");
        let acme = c.get("acme").expect("acme");
        assert_eq!(acme.provider.oauth().expect("oauth2").scope_separator, ",");
        assert!(acme.provider.oauth().expect("oauth2").pkce);
        assert!(acme.hosts[0].matches("api.acme.test"));
    }

    #[test]
    fn api_key_providers_declare_fields_and_how_they_are_sent() {
        let c = Catalog::load("http://127.0.0.1:7400", &BTreeMap::new(), false).expect("catalog");
        let api_key: Vec<&str> = c
            .iter()
            .filter(|e| e.provider.api_key.is_some())
            .map(|e| e.id.as_str())
            .collect();
        for id in [
            "openai",
            "anthropic",
            "stripe",
            "sendgrid",
            "twilio",
            "airtable",
            "datadog",
            "pagerduty",
            "mailchimp",
            "pinecone",
        ] {
            assert!(api_key.contains(&id), "missing API-key provider {id}");
        }
        assert!(api_key.len() >= 10);
        let twilio = c.get("twilio").expect("twilio");
        let k = twilio.provider.api_key.as_ref().expect("api_key");
        assert!(k.basic.is_some() && !k.fields[0].secret && k.fields[1].secret);
        assert!(twilio.provider.oauth2.is_none() && twilio.provider.oauth().is_err());
        assert!(c.get("mailchimp").expect("mc").hosts[0].matches("us6.api.mailchimp.com"));
    }

    #[test]
    fn built_in_tools_cover_the_main_providers() {
        let c = Catalog::load("http://127.0.0.1:7400", &BTreeMap::new(), true).expect("catalog");
        for (id, tools) in [
            ("slack", &["list_channels", "post_message"][..]),
            ("linear", &["list_issues", "create_issue"][..]),
            ("github", &["list_repos", "list_issues", "create_issue"][..]),
            (
                "github-app",
                &["list_repos", "list_issues", "create_issue"][..],
            ),
            ("google-drive", &["search_files", "get_file_metadata"][..]),
            ("notion", &["search"][..]),
            ("salesforce", &["soql_query"][..]),
            ("snowflake", &["run_query"][..]),
            ("sandbox", &["get_profile", "list_notes"][..]),
        ] {
            let names: Vec<&str> = c
                .get(id)
                .expect(id)
                .provider
                .tools
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            assert_eq!(names, tools, "{id}");
        }
        let snow = &c.get("snowflake").expect("snowflake").provider.tools[0];
        assert_eq!(snow.read_only_sql.as_deref(), Some("statement"));
    }

    #[test]
    fn tools_are_validated() {
        let base = "[bad]\nname='B'\napi_base_url='https://api.b.test'\n[bad.oauth2]\nauthorize_url='https://b.test/a'\ntoken_url='https://b.test/t'\n";
        let tool = |extra: &str| {
            format!("{base}[[bad.tools]]\nname='t'\ndescription='does a thing well'\nmethod='GET'\naccess='read'\n{extra}")
        };
        for (extra, field, message) in [
            ("path='x/{id}'\n", "tools[0].path", "`{id}` must be a required input field"),
            ("path='/abs'\n", "tools[0].path", "relative"),
            ("path='x'\nquery=['nope']\n", "tools[0].query", "`nope`"),
            ("path='x'\ninput_schema={type='object', properties={a={type='string', pattern='x'}}}\n", "tools[0].input_schema", "pattern"),
            ("path='x'\nbody=['a']\ninput_schema={type='object', properties={a={type='string'}}}\n", "tools[0].body", "GET"),
        ] {
            let err = Catalog::load("http://x", &custom(&tool(extra)), false).expect_err(extra);
            assert_eq!(err.field, field, "{extra}: {err}");
            assert!(err.message.contains(message), "{extra}: {err}");
        }
        let err = Catalog::load(
            "http://x",
            &custom(&format!("{base}[[bad.tools]]\nname='call_api'\ndescription='does a thing well'\nmethod='GET'\naccess='read'\npath='x'\n")),
            false,
        )
        .expect_err("reserved");
        assert_eq!(err.field, "tools[0].name");
    }

    #[test]
    fn api_key_entries_are_validated() {
        let base = "[bad]\nname='B'\napi_base_url='https://api.b.test'\n";
        let cases = [
            ("", "-", "needs an `oauth2` or an `api_key`"),
            (
                "[bad.api_key]\nissue_url='https://b.test/keys'\nfields=[{name='api_key',label='Key'}]\nheaders={X='{api_key}'}\n[bad.oauth2]\nauthorize_url='https://b.test/a'\ntoken_url='https://b.test/t'\n",
                "api_key",
                "not both",
            ),
            (
                "[bad.api_key]\nissue_url='https://b.test/keys'\nfields=[]\n",
                "api_key.fields",
                "at least one",
            ),
            (
                "[bad.api_key]\nissue_url='https://b.test/keys'\nfields=[{name='Key',label='Key'}]\n",
                "api_key.fields[0].name",
                "lower-case",
            ),
            (
                "[bad.api_key]\nissue_url='https://b.test/keys'\nfields=[{name='k',label='K'},{name='k',label='K'}]\n",
                "api_key.fields[1].name",
                "twice",
            ),
            (
                "[bad.api_key]\nissue_url='https://b.test/keys'\nfields=[{name='k',label='K'}]\nheaders={X='{nope}'}\n",
                "api_key.headers.X",
                "unknown placeholder",
            ),
            (
                "[bad.api_key]\nissue_url='https://b.test/keys'\nfields=[{name='k',label='K',secret=false}]\nheaders={X='{k}'}\n",
                "api_key",
                "must send a secret field",
            ),
            (
                "[bad.api_key]\nissue_url='http://evil.test/keys'\nfields=[{name='k',label='K'}]\nheaders={X='{k}'}\n",
                "api_key.issue_url",
                "https",
            ),
        ];
        for (extra, field, message) in cases {
            let err = Catalog::load("http://x", &custom(&format!("{base}{extra}")), false)
                .expect_err(extra);
            assert_eq!(err.field, field, "{extra}: {err}");
            assert!(err.message.contains(message), "{extra}: {err}");
        }
        // A secret field may not shape URLs; a non-secret one may, with host patterns.
        let err = Catalog::load(
            "http://x",
            &custom("[bad]\nname='B'\napi_base_url='https://{k}.b.test'\napi_hosts=['*.b.test']\n[bad.api_key]\nissue_url='https://b.test/keys'\nfields=[{name='k',label='K'}]\nheaders={X='{k}'}\n"),
            false,
        )
        .expect_err("secret in URL");
        assert_eq!(err.field, "api_base_url");
        Catalog::load(
            "http://x",
            &custom("[ok]\nname='B'\napi_base_url='https://{dc}.b.test'\napi_hosts=['*.b.test']\n[ok.api_key]\nissue_url='https://b.test/keys'\nfields=[{name='dc',label='DC',secret=false},{name='k',label='K'}]\nbasic={username='x',password='{k}'}\n"),
            false,
        )
        .expect("non-secret field in the host");
    }

    #[test]
    fn errors_name_the_source_and_field() {
        let err = Catalog::load(
            "http://x",
            &custom(
                r#"
                [bad]
                name = "Bad"
                api_base_url = "https://api.bad.test"
                [bad.oauth2]
                authorize_url = "https://bad.test/a"
                token_url = "https://bad.test/t"
                client_auth = "bearer"
                "#,
            ),
            false,
        )
        .expect_err("must fail");
        assert_eq!(err.source_name, "config [providers.bad]");
        assert_eq!(err.field, "oauth2.client_auth");

        let err = Catalog::load(
            "http://x",
            &custom("[bad]\nname='B'\napi_base_url='https://a.test'\ncolour='red'\n[bad.oauth2]\nauthorize_url='https://a.test/a'\ntoken_url='https://a.test/t'\n"),
            false,
        )
        .expect_err("unknown key");
        assert!(err.message.contains("colour"), "{err}");

        let err = Catalog::load(
            "http://x",
            &custom("[bad]\nname='B'\napi_base_url='https://a.test'\n[bad.oauth2]\nauthorize_url='http://evil.test/a'\ntoken_url='https://a.test/t'\n"),
            false,
        )
        .expect_err("plain http");
        assert_eq!(err.field, "oauth2.authorize_url");

        let err = Catalog::load(
            "http://x",
            &custom("[bad]\nname='B'\napi_base_url='https://{tenant}.a.test'\n[bad.oauth2]\nauthorize_url='https://a.test/a'\ntoken_url='https://a.test/t'\n"),
            false,
        )
        .expect_err("placeholder");
        assert_eq!(err.field, "api_base_url");
        assert!(err.message.contains("{tenant}"));

        let err = Catalog::load("http://x", &custom("[bad]\nextends='nope'\n"), false)
            .expect_err("extends");
        assert_eq!(err.field, "extends");
    }
}
