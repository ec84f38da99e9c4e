//! API-key credentials: what a user pastes for providers without OAuth, how it is kept
//! (sealed like an access token, as one JSON object) and how it is put on a request
//! (headers, query parameters or HTTP Basic, as the catalog entry says).

use crate::catalog::ApiKeyAuth;
use crate::error::CoreError;
use crate::outbound::OutboundRequest;
use crate::secret::Secret;
use base64::Engine;
use std::collections::BTreeMap;

/// The `token_type` stored with, and answered for, API-key credentials.
pub const API_KEY_TOKEN_TYPE: &str = "api_key";

/// The longest value a credential field takes.
pub const MAX_FIELD_LEN: usize = 4096;

/// The values of one connection's credential fields. `Debug` names the fields only.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, Secret>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    /// Checks a submitted form against the entry's fields: every required field present,
    /// no control characters, bounded length. Surrounding white space (a pasted newline)
    /// is dropped; fields the entry does not declare are ignored.
    pub fn from_form(
        spec: &ApiKeyAuth,
        form: &BTreeMap<String, String>,
    ) -> Result<Self, CoreError> {
        let mut out = BTreeMap::new();
        for f in &spec.fields {
            let v = form.get(&f.name).map(|v| v.trim()).unwrap_or_default();
            if v.is_empty() {
                if f.optional {
                    continue;
                }
                return Err(CoreError::invalid(
                    "invalid_credentials",
                    format!("{} is required.", f.label),
                ));
            }
            if v.len() > MAX_FIELD_LEN || v.chars().any(char::is_control) {
                return Err(CoreError::invalid(
                    "invalid_credentials",
                    format!(
                        "{} must be at most {MAX_FIELD_LEN} characters on one line.",
                        f.label
                    ),
                ));
            }
            out.insert(f.name.clone(), Secret::new(v.to_string()));
        }
        Ok(Self(out))
    }

    /// The sealed form: one JSON object.
    pub fn to_secret(&self) -> Secret {
        let map: BTreeMap<&str, &str> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        Secret::new(serde_json::to_string(&map).unwrap_or_default())
    }

    /// Opens what [`Self::to_secret`] wrote.
    pub fn from_secret(s: &Secret) -> Result<Self, CoreError> {
        let map: BTreeMap<String, String> = serde_json::from_str(s.expose()).map_err(|_| {
            CoreError::Store(crate::error::StoreError::Other(
                "stored credentials are not readable".into(),
            ))
        })?;
        Ok(Self(
            map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
        ))
    }

    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Secret)> {
        self.0.iter()
    }

    /// Substitutes `{field}` placeholders; a missing optional field becomes empty.
    /// The template is scanned once, so a value containing braces is never re-read.
    fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after.find('}') {
                Some(end) => {
                    if let Some(v) = self.0.get(&after[..end]) {
                        out.push_str(v.expose());
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Puts the credential on a request the way the entry says.
    pub fn apply(&self, spec: &ApiKeyAuth, mut req: OutboundRequest) -> OutboundRequest {
        for (h, t) in &spec.headers {
            req = req.header(h, self.render(t));
        }
        if let Some(b) = &spec.basic {
            let pair = format!("{}:{}", self.render(&b.username), self.render(&b.password));
            req = req.header(
                "Authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ),
            );
        }
        if !spec.query.is_empty() {
            if let Ok(mut u) = url::Url::parse(&req.url) {
                {
                    let mut q = u.query_pairs_mut();
                    for (name, t) in &spec.query {
                        q.append_pair(name, &self.render(t));
                    }
                }
                req.url = u.into();
            }
        }
        req
    }

    /// Values of the non-secret fields, kept in the clear as connection metadata.
    pub fn public_values(&self, spec: &ApiKeyAuth) -> BTreeMap<String, String> {
        spec.fields
            .iter()
            .filter(|f| !f.secret)
            .filter_map(|f| {
                self.0
                    .get(&f.name)
                    .map(|v| (f.name.clone(), v.expose().to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BasicCredentials, CredentialField};

    fn spec() -> ApiKeyAuth {
        ApiKeyAuth {
            issue_url: "https://example.test/keys".into(),
            help: None,
            fields: vec![
                CredentialField {
                    name: "account_sid".into(),
                    label: "Account SID".into(),
                    help: None,
                    secret: false,
                    optional: false,
                },
                CredentialField {
                    name: "auth_token".into(),
                    label: "Auth token".into(),
                    help: None,
                    secret: true,
                    optional: false,
                },
                CredentialField {
                    name: "region".into(),
                    label: "Region".into(),
                    help: None,
                    secret: false,
                    optional: true,
                },
            ],
            headers: BTreeMap::from([("X-Region".to_string(), "r-{region}".to_string())]),
            query: BTreeMap::from([("key".to_string(), "{auth_token}".to_string())]),
            basic: Some(BasicCredentials {
                username: "{account_sid}".into(),
                password: "{auth_token}".into(),
            }),
        }
    }

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn form_is_checked_field_by_field() {
        let s = spec();
        let err = Credentials::from_form(&s, &form(&[("account_sid", "AC1")])).expect_err("x");
        assert!(err.to_string().contains("Auth token"), "{err}");
        let err = Credentials::from_form(
            &s,
            &form(&[("account_sid", "AC1"), ("auth_token", "a\u{0}b")]),
        )
        .expect_err("control");
        assert!(err.to_string().contains("one line"));
        let long = "x".repeat(MAX_FIELD_LEN + 1);
        assert!(Credentials::from_form(
            &s,
            &form(&[("account_sid", "AC1"), ("auth_token", &long)])
        )
        .is_err());
        let c = Credentials::from_form(
            &s,
            &form(&[
                ("account_sid", " AC1\n"),
                ("auth_token", "tok"),
                ("csrf", "ignored"),
            ]),
        )
        .expect("ok");
        assert_eq!(
            c.get("account_sid").map(|v| v.expose().to_string()),
            Some("AC1".into())
        );
        assert!(c.get("csrf").is_none());
        assert_eq!(
            c.public_values(&s),
            BTreeMap::from([("account_sid".into(), "AC1".into())])
        );
        assert_eq!(format!("{c:?}"), r#"{"account_sid", "auth_token"}"#);
    }

    #[test]
    fn sealed_form_round_trips_and_applies() {
        let s = spec();
        let c = Credentials::from_form(&s, &form(&[("account_sid", "AC1"), ("auth_token", "t&k")]))
            .expect("ok");
        let back = Credentials::from_secret(&c.to_secret()).expect("open");
        let req = back.apply(
            &s,
            OutboundRequest::new("GET", "https://api.example.test/x?a=1"),
        );
        assert_eq!(req.url, "https://api.example.test/x?a=1&key=t%26k");
        let auth = req
            .headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .map(|(_, v)| v.clone())
            .expect("basic");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim_start_matches("Basic "))
            .expect("b64");
        assert_eq!(decoded, b"AC1:t&k");
        // The optional field was left out: its placeholder renders empty.
        assert!(req
            .headers
            .iter()
            .any(|(k, v)| k == "X-Region" && v == "r-"));
    }
}
