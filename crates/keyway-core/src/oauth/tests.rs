use super::*;
use crate::catalog::Catalog;
use crate::model::Integration;
use std::collections::BTreeMap;

fn catalog() -> Catalog {
    Catalog::load("http://127.0.0.1:7400", &BTreeMap::new(), true).expect("catalog")
}

fn integration(provider: &str, settings: &[(&str, &str)]) -> Integration {
    Integration {
        slug: provider.into(),
        provider: provider.into(),
        client_id: "client id/1".into(),
        client_secret_sealed: None,
        scopes: vec![],
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

fn resp(status: u16, ct: &str, body: &str) -> OutboundResponse {
    OutboundResponse {
        status,
        headers: vec![("content-type".into(), ct.into())],
        body: body.as_bytes().to_vec(),
    }
}

fn query(url: &str) -> BTreeMap<String, String> {
    Url::parse(url)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect()
}

#[test]
fn authorize_url_carries_pkce_scopes_and_extra_params() {
    let c = catalog();
    let i = integration("google-drive", &[]);
    let ctx = ProviderCtx {
        entry: c.get("google-drive").expect("entry"),
        integration: &i,
        client_secret: None,
    };
    let u = authorize_url(
        &ctx,
        "st",
        Some("chal"),
        "https://kw.example/oauth/callback",
    )
    .expect("url");
    let q = query(&u);
    assert!(u.starts_with("https://accounts.google.com/o/oauth2/v2/auth?"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert!(q["scope"].contains("drive.readonly"));
    assert_eq!(q["client_id"], "client id/1");
}

#[test]
fn slack_joins_scopes_with_commas() {
    let c = catalog();
    let mut i = integration("slack", &[]);
    i.scopes = vec!["channels:read".into(), "chat:write".into()];
    let ctx = ProviderCtx {
        entry: c.get("slack").expect("entry"),
        integration: &i,
        client_secret: None,
    };
    let q = query(&authorize_url(&ctx, "s", None, "https://x/cb").expect("url"));
    assert_eq!(q["scope"], "channels:read,chat:write");
    assert!(!q.contains_key("code_challenge"));
}

#[test]
fn tenant_host_must_match_the_provider_hosts() {
    let c = catalog();
    let ok = integration("salesforce", &[("host", "acme.my.salesforce.com")]);
    let ctx = ProviderCtx {
        entry: c.get("salesforce").expect("entry"),
        integration: &ok,
        client_secret: None,
    };
    assert!(authorize_url(&ctx, "s", None, "https://x/cb")
        .expect("url")
        .starts_with("https://acme.my.salesforce.com/services/oauth2/authorize"));
    let default = integration("salesforce", &[]);
    let ctx = ProviderCtx {
        entry: c.get("salesforce").expect("entry"),
        integration: &default,
        client_secret: None,
    };
    assert!(authorize_url(&ctx, "s", None, "https://x/cb")
        .expect("url")
        .starts_with("https://login.salesforce.com/"));
    for bad in [
        "evil.com",
        "salesforce.com.evil.com",
        "evil.com/x",
        "a@b.salesforce.com",
    ] {
        let i = integration("salesforce", &[("host", bad)]);
        let ctx = ProviderCtx {
            entry: c.get("salesforce").expect("entry"),
            integration: &i,
            client_secret: None,
        };
        assert!(
            authorize_url(&ctx, "s", None, "https://x/cb").is_err(),
            "{bad}"
        );
    }
    let none = integration("snowflake", &[]);
    let ctx = ProviderCtx {
        entry: c.get("snowflake").expect("entry"),
        integration: &none,
        client_secret: None,
    };
    assert!(matches!(
        authorize_url(&ctx, "s", None, "https://x/cb"),
        Err(CoreError::Invalid {
            code: "missing_setting",
            ..
        })
    ));
}

#[test]
fn basic_client_auth_form_encodes_before_base64() {
    let c = catalog();
    let i = integration("zoom", &[]);
    let ctx = ProviderCtx {
        entry: c.get("zoom").expect("entry"),
        integration: &i,
        client_secret: Some(Secret::new("s:e/cret")),
    };
    let rt = Secret::new("rt1");
    let req = token_request(&ctx, Grant::Refresh { refresh_token: &rt }).expect("req");
    let auth = req
        .headers
        .iter()
        .find(|(k, _)| k == "Authorization")
        .map(|(_, v)| v.clone())
        .expect("auth");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim_start_matches("Basic "))
        .expect("b64");
    assert_eq!(
        String::from_utf8(decoded).expect("utf8"),
        "client+id%2F1:s%3Ae%2Fcret"
    );
    let body = String::from_utf8(req.body.clone().unwrap_or_default()).expect("utf8");
    assert!(
        body.contains("grant_type=refresh_token")
            && body.contains("refresh_token=rt1")
            && !body.contains("client_secret")
    );
    assert!(!format!("{req:?}").contains("rt1"), "Debug hides the body");
}

#[test]
fn notion_posts_json_and_figma_refreshes_elsewhere() {
    let c = catalog();
    let i = integration("notion", &[]);
    let ctx = ProviderCtx {
        entry: c.get("notion").expect("entry"),
        integration: &i,
        client_secret: Some(Secret::new("x")),
    };
    let req = token_request(
        &ctx,
        Grant::AuthorizationCode {
            code: "c",
            redirect_uri: "https://x/cb",
            verifier: None,
        },
    )
    .expect("req");
    let v: serde_json::Value =
        serde_json::from_slice(req.body.as_deref().unwrap_or_default()).expect("json body");
    assert_eq!(v["grant_type"], "authorization_code");
    let f = integration("figma", &[]);
    let ctx = ProviderCtx {
        entry: c.get("figma").expect("entry"),
        integration: &f,
        client_secret: None,
    };
    let rt = Secret::new("r");
    assert_eq!(
        token_request(&ctx, Grant::Refresh { refresh_token: &rt })
            .expect("req")
            .url,
        "https://api.figma.com/v1/oauth/refresh"
    );
}

#[test]
fn parses_quirky_token_responses() {
    let c = catalog();
    let slack = c.get("slack").expect("slack");
    let ok = parse_token_response(slack, &resp(200, "application/json", r#"{"ok":true,"access_token":"xoxb-1","token_type":"bot","scope":"a,b","team":{"id":"T1","name":"Acme"},"bot_user_id":"U1","authed_user":{"id":"U2"}}"#)).expect("ok");
    assert_eq!(ok.access_token.expose(), "xoxb-1");
    assert_eq!(ok.scopes, Some(vec!["a".into(), "b".into()]));
    assert_eq!(
        (ok.account_id.as_deref(), ok.account_name.as_deref()),
        (Some("T1"), Some("Acme"))
    );
    assert_eq!(
        ok.metadata.get("authed_user_id").map(String::as_str),
        Some("U2")
    );
    assert_eq!(
        parse_token_response(
            slack,
            &resp(
                200,
                "application/json",
                r#"{"ok":false,"error":"invalid_refresh_token"}"#
            )
        )
        .err(),
        Some(TokenEndpointError::DeadGrant {
            code: "invalid_refresh_token".into()
        })
    );
    assert!(matches!(
        parse_token_response(
            slack,
            &resp(
                200,
                "application/json",
                r#"{"ok":false,"error":"ratelimited"}"#
            )
        ),
        Err(TokenEndpointError::Transient { .. })
    ));
    assert!(matches!(
        parse_token_response(
            slack,
            &resp(
                200,
                "application/json",
                r#"{"ok":false,"error":"invalid_client_id"}"#
            )
        ),
        Err(TokenEndpointError::Rejected { .. })
    ));

    let gh = c.get("github").expect("github");
    let form = parse_token_response(
        gh,
        &resp(
            200,
            "application/x-www-form-urlencoded",
            "access_token=gho_1&scope=repo%2Cgist&token_type=bearer",
        ),
    )
    .expect("form");
    assert_eq!(form.access_token.expose(), "gho_1");
    assert_eq!(form.scopes, Some(vec!["repo".into(), "gist".into()]));
    assert_eq!(form.expires_in, None);
    assert_eq!(
        parse_token_response(
            gh,
            &resp(200, "application/json", r#"{"error":"bad_refresh_token"}"#)
        )
        .err(),
        Some(TokenEndpointError::DeadGrant {
            code: "bad_refresh_token".into()
        })
    );

    let hs = c.get("hubspot").expect("hubspot");
    assert_eq!(
        parse_token_response(
            hs,
            &resp(
                400,
                "application/json",
                r#"{"status":"BAD_REFRESH_TOKEN","message":"x"}"#
            )
        )
        .err(),
        Some(TokenEndpointError::DeadGrant {
            code: "BAD_REFRESH_TOKEN".into()
        })
    );
    let atl = c.get("atlassian").expect("atlassian");
    assert!(matches!(
        parse_token_response(
            atl,
            &resp(403, "application/json", r#"{"error":"invalid_grant"}"#)
        ),
        Err(TokenEndpointError::DeadGrant { .. })
    ));
    let gl = c.get("gitlab").expect("gitlab");
    assert_eq!(
        parse_token_response(
            gl,
            &resp(
                200,
                "application/json",
                r#"{"access_token":"a","expires_in":"60"}"#
            )
        )
        .expect("ok")
        .expires_in,
        Some(60)
    );
    assert_eq!(
        parse_token_response(
            gl,
            &resp(200, "application/json", r#"{"access_token":"a"}"#)
        )
        .expect("ok")
        .expires_in,
        Some(7200)
    );
    let sf = c.get("salesforce").expect("sf");
    let s = parse_token_response(sf, &resp(200, "application/json", r#"{"access_token":"a","instance_url":"https://acme.my.salesforce.com","id":"https://login.salesforce.com/id/00D/005"}"#)).expect("ok");
    assert_eq!(
        s.metadata.get("instance_url").map(String::as_str),
        Some("https://acme.my.salesforce.com")
    );

    let google = c.get("google").expect("google");
    let t = parse_token_response(google, &resp(503, "text/html", "<html>down</html>")).err();
    assert!(matches!(t, Some(TokenEndpointError::Transient { .. })));
    let mut r429 = resp(429, "application/json", "{}");
    r429.headers.push(("Retry-After".into(), "30".into()));
    assert_eq!(
        parse_token_response(google, &r429).err(),
        Some(TokenEndpointError::Transient {
            detail: "HTTP 429".into(),
            retry_after: Some(30)
        })
    );
    assert!(matches!(
        parse_token_response(google, &resp(200, "text/html", "<html>login</html>")),
        Err(TokenEndpointError::Rejected { .. })
    ));
    assert!(matches!(
        parse_token_response(
            google,
            &resp(200, "application/json", r#"{"token_type":"Bearer"}"#)
        ),
        Err(TokenEndpointError::Rejected { .. })
    ));
}

#[test]
fn revocation_requests_follow_the_catalog() {
    let c = catalog();
    let access = Secret::new("at 1");
    let refresh = Secret::new("rt1");
    let hs = integration("hubspot", &[]);
    let ctx = ProviderCtx {
        entry: c.get("hubspot").expect("e"),
        integration: &hs,
        client_secret: None,
    };
    let r = revocation_request(&ctx, &access, Some(&refresh))
        .expect("ok")
        .expect("supported");
    assert_eq!(
        (r.method.as_str(), r.url.as_str()),
        (
            "DELETE",
            "https://api.hubapi.com/oauth/v1/refresh-tokens/rt1"
        )
    );
    let gh = integration("github", &[]);
    let ctx = ProviderCtx {
        entry: c.get("github").expect("e"),
        integration: &gh,
        client_secret: Some(Secret::new("s")),
    };
    let r = revocation_request(&ctx, &access, None)
        .expect("ok")
        .expect("supported");
    assert_eq!(
        r.url,
        "https://api.github.com/applications/client%20id%2F1/grant"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(r.body.as_deref().unwrap_or_default())
            .expect("json")["access_token"],
        "at 1"
    );
    let google = integration("google", &[]);
    let ctx = ProviderCtx {
        entry: c.get("google").expect("e"),
        integration: &google,
        client_secret: None,
    };
    let r = revocation_request(&ctx, &access, Some(&refresh))
        .expect("ok")
        .expect("supported");
    let body = String::from_utf8(r.body.unwrap_or_default()).expect("utf8");
    assert!(
        body.contains("token=rt1") && body.contains("token_type_hint=refresh_token"),
        "RFC 7009 prefers the refresh token"
    );
    let ms = integration("microsoft", &[]);
    let ctx = ProviderCtx {
        entry: c.get("microsoft").expect("e"),
        integration: &ms,
        client_secret: None,
    };
    assert!(
        revocation_request(&ctx, &access, None)
            .expect("ok")
            .is_none(),
        "no revocation endpoint: unsupported"
    );
    let linear = c.get("linear").expect("linear");
    assert_eq!(
        classify_revocation(linear, &resp(400, "application/json", "{}")),
        RevocationOutcome::Confirmed
    );
    assert_eq!(
        classify_revocation(linear, &resp(500, "application/json", "{}")),
        RevocationOutcome::Failed
    );
    let slack = c.get("slack").expect("slack");
    assert_eq!(
        classify_revocation(slack, &resp(200, "application/json", r#"{"ok":false}"#)),
        RevocationOutcome::Failed
    );
    assert_eq!(
        classify_revocation(slack, &resp(200, "application/json", r#"{"ok":true}"#)),
        RevocationOutcome::Confirmed
    );
}

#[test]
fn paths_and_scope_splitting() {
    let v: serde_json::Value = serde_json::json!({"a": {"b": [{"c": 5}]}});
    assert_eq!(get_path(&v, "a.b.0.c"), Some(&serde_json::json!(5)));
    assert_eq!(get_path(&v, "a.x"), None);
    assert_eq!(split_scopes("a b,c  a", " "), vec!["a", "b", "c"]);
    assert!(valid_setting_value("acme.my.salesforce.com") && valid_setting_value("127.0.0.1:8080"));
    for bad in ["", "a/b", "a..b", ".a", "a:b", "a:123456", "a b", "a@b"] {
        assert!(!valid_setting_value(bad), "{bad}");
    }
}
