//! Golden files: the OpenAPI document and the rendered catalog, so contract changes
//! show up in review. `UPDATE_GOLDEN=1 cargo test` rewrites them.

use std::path::PathBuf;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn check(name: &str, actual: &str) {
    let path = docs().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} is out of date; run UPDATE_GOLDEN=1 cargo test -p keyway-server --test it golden",
        path.display()
    );
}

#[test]
fn openapi_document_matches_golden() {
    let doc = keyway_server::openapi::document();
    let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(
        v["openapi"].as_str().map(|s| s.starts_with("3.")),
        Some(true)
    );
    for p in [
        "/v1/token",
        "/v1/connect/sessions",
        "/v1/connections/{id}",
        "/v1/integrations/{slug}/authorize",
    ] {
        assert!(v["paths"].get(p).is_some(), "missing {p}");
    }
    check("openapi.json", &(doc + "\n"));
}

#[test]
fn catalog_list_matches_golden() {
    let c = keyway_core::catalog::Catalog::load("{keyway_url}", &Default::default(), false)
        .expect("catalog");
    let mut out = String::from("# Built-in provider catalog\n\nGenerated from `crates/keyway-core/catalog/*.toml` by the golden test; do not edit.\n\n## OAuth 2.0\n\n| id | name | PKCE | client auth | scope separator | refresh rotation | revocation | settings |\n|---|---|---|---|---|---|---|---|\n");
    let settings = |e: &keyway_core::catalog::CatalogEntry| {
        e.provider
            .tenant
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for e in c.iter() {
        let Some(o) = &e.provider.oauth2 else {
            continue;
        };
        let revocation = if o.revocation.is_some() {
            "custom"
        } else if o.revocation_url.is_some() {
            "RFC 7009"
        } else {
            "none"
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:?} | `{}` | {:?} | {} | {} |\n",
            e.id,
            e.provider.name,
            if o.pkce { "yes" } else { "no" },
            o.client_auth,
            o.scope_separator,
            o.refresh_token_rotation,
            revocation,
            settings(e)
        ));
    }
    out.push_str("\n## API keys\n\n| id | name | fields (secret in bold) | sent as | checked with | settings |\n|---|---|---|---|---|---|\n");
    for e in c.iter() {
        let Some(k) = &e.provider.api_key else {
            continue;
        };
        let fields: Vec<String> = k
            .fields
            .iter()
            .map(|f| {
                if f.secret {
                    format!("**{}**", f.name)
                } else {
                    f.name.clone()
                }
            })
            .collect();
        let mut sent: Vec<String> = k.headers.keys().map(|h| format!("header `{h}`")).collect();
        sent.extend(k.query.keys().map(|q| format!("query `{q}`")));
        if k.basic.is_some() {
            sent.push("HTTP Basic".into());
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            e.id,
            e.provider.name,
            fields.join(", "),
            sent.join(", "),
            e.provider
                .identity
                .as_ref()
                .map(|i| format!("`{} {}`", i.method, i.url))
                .unwrap_or_else(|| "—".into()),
            settings(e)
        ));
    }
    out.push_str("\n## Tools\n\nEvery integration also has the guarded generic `call_api`.\n\n| provider | tool | access | method and path | provider scopes |\n|---|---|---|---|---|\n");
    for e in c.iter() {
        for t in &e.provider.tools {
            out.push_str(&format!(
                "| {} | `{}` | {} | `{} {}` | {} |\n",
                e.id,
                t.name,
                t.access.as_str(),
                t.method,
                t.path,
                t.scopes.join(" ")
            ));
        }
    }
    check("catalog.md", &out);
}
