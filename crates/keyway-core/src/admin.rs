//! Operators' objects: applications, API keys, integrations; authentication of API keys
//! (S3) and online re-sealing after a master-key change (S2).

use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::connect::{check_id, check_text};
use crate::error::{CoreError, StoreError};
use crate::ids::{new_id, random_token, sha256_hex};
use crate::model::*;
use crate::oauth::valid_setting_value;
use crate::vault::FieldRef;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Default)]
pub struct NewApplication {
    pub name: String,
    pub return_urls: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_integrations: Option<Vec<String>>,
    pub agent_session_max_secs: Option<i64>,
    pub agent_session_default_secs: Option<i64>,
    pub login_url: Option<String>,
    pub branding: Branding,
}

/// `PATCH /v1/applications/{id}`: only the fields given change.
#[derive(Debug, Clone, Default)]
pub struct ApplicationPatch {
    pub name: Option<String>,
    pub return_urls: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub login_url: Option<String>,
    pub branding: Option<Branding>,
}

/// The widget's colour goes into CSS and the logo's origin into a CSP header: both are
/// held to exact shapes.
fn check_branding(b: &Branding) -> Result<(), CoreError> {
    if let Some(c) = &b.accent_color {
        let ok =
            c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit());
        if !ok {
            return Err(CoreError::invalid(
                "invalid_request",
                "`branding.accent_color` must be a colour like #3a5bd9",
            ));
        }
    }
    if let Some(l) = &b.logo_url {
        let parsed = url::Url::parse(l).ok().filter(|u| {
            l.len() <= 2048
                && u.username().is_empty()
                && u.fragment().is_none()
                && crate::catalog::load_url_allowed(u)
        });
        if parsed.is_none() {
            return Err(CoreError::invalid(
                "invalid_request",
                "`branding.logo_url` must be an https URL (plain http only on loopback)",
            ));
        }
    }
    Ok(())
}

/// The checks every application's fields pass, at creation and on change.
fn check_application_fields(
    name: &str,
    return_urls: &[String],
    allowed_origins: &[String],
    login_url: Option<&String>,
    branding: &Branding,
) -> Result<(), CoreError> {
    check_id("name", name)?;
    if return_urls.len() > 50 || allowed_origins.len() > 50 {
        return Err(CoreError::invalid(
            "invalid_request",
            "at most 50 return URLs and 50 origins",
        ));
    }
    for u in return_urls {
        check_url("return_urls", u, false)?;
    }
    for o in allowed_origins {
        check_url("allowed_origins", o, true)?;
    }
    if let Some(l) = login_url {
        check_url("login_url", l, false)?;
    }
    check_branding(branding)
}

#[derive(Debug, Clone, Default)]
pub struct NewIntegration {
    pub slug: String,
    pub provider: String,
    pub client_id: String,
    pub client_secret: Option<crate::secret::Secret>,
    pub scopes: Vec<String>,
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct IntegrationPatch {
    pub client_id: Option<String>,
    pub client_secret: Option<crate::secret::Secret>,
    pub scopes: Option<Vec<String>>,
    pub settings: Option<BTreeMap<String, String>>,
    /// Required when `scopes` changes; recorded with the change.
    pub reason: Option<String>,
}

/// Report of a re-seal pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealReport {
    pub checked: u64,
    pub resealed: u64,
    pub failed: u64,
}

fn check_url(field: &str, u: &str, allow_path_only_origin: bool) -> Result<(), CoreError> {
    let parsed = url::Url::parse(u).map_err(|_| {
        CoreError::invalid(
            "invalid_request",
            format!("`{field}` has an invalid URL: {u}"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
    {
        return Err(CoreError::invalid(
            "invalid_request",
            format!("`{field}` must hold absolute http(s) URLs without fragments: {u}"),
        ));
    }
    if allow_path_only_origin
        && (parsed.path() != "/" || parsed.query().is_some() || u.ends_with('/'))
    {
        return Err(CoreError::invalid(
            "invalid_request",
            format!("`{field}` must hold origins like https://app.example.com: {u}"),
        ));
    }
    Ok(())
}

fn check_slug(field: &str, s: &str) -> Result<(), CoreError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(CoreError::invalid(
            "invalid_request",
            format!("`{field}` must be 1-64 lower-case letters, digits, `-` or `_`"),
        ));
    }
    Ok(())
}

fn check_scopes(scopes: &[String]) -> Result<(), CoreError> {
    if scopes.len() > 100
        || scopes.iter().any(|s| {
            s.is_empty()
                || s.len() > 200
                || s.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        })
    {
        return Err(CoreError::invalid(
            "invalid_request",
            "`scopes` must be at most 100 non-empty scope names without spaces or commas",
        ));
    }
    Ok(())
}

impl Broker {
    /// S3: keys are looked up by SHA-256 and the digest compared in constant time.
    /// `env_admin_hash` is the digest of `KEYWAY_ADMIN_KEY`, when set.
    pub async fn authenticate(
        &self,
        presented: &str,
        env_admin_hash: Option<&str>,
    ) -> Result<Option<Principal>, CoreError> {
        if presented.is_empty() || presented.len() > 256 {
            return Ok(None);
        }
        let hash = sha256_hex(presented);
        if let Some(env) = env_admin_hash {
            if bool::from(env.as_bytes().ct_eq(hash.as_bytes())) {
                return Ok(Some(Principal::Admin {
                    key_id: "admin_env".into(),
                }));
            }
        }
        if let Some(p) = self.auth_cache.get(&hash) {
            return Ok(Some(p));
        }
        let Some(rec) = self.store.find_api_key_by_hash(&hash).await? else {
            return Ok(None);
        };
        if !bool::from(rec.hash.as_bytes().ct_eq(hash.as_bytes())) || rec.revoked_at.is_some() {
            return Ok(None);
        }
        let principal = match rec.application_id {
            Some(application_id) => Principal::Application {
                key_id: rec.id,
                application_id,
            },
            None => Principal::Admin { key_id: rec.id },
        };
        self.auth_cache.put(hash, principal.clone());
        Ok(Some(principal))
    }

    pub async fn create_application(
        &self,
        actor: &str,
        input: NewApplication,
    ) -> Result<Application, CoreError> {
        check_application_fields(
            &input.name,
            &input.return_urls,
            &input.allowed_origins,
            input.login_url.as_ref(),
            &input.branding,
        )?;
        if let Some(list) = &input.allowed_integrations {
            for s in list {
                check_slug("allowed_integrations", s)?;
            }
        }
        let max = input.agent_session_max_secs.unwrap_or(8 * 3600);
        let default = input.agent_session_default_secs.unwrap_or(max.min(3600));
        if !(60..=30 * 86400).contains(&max) || default < 60 || default > max {
            return Err(CoreError::invalid("invalid_request", "agent session lifetimes must be between 60 s and 30 days, default no longer than max"));
        }
        let app = Application {
            id: new_id("app"),
            name: input.name,
            return_urls: input.return_urls,
            allowed_origins: input.allowed_origins,
            allowed_integrations: input.allowed_integrations,
            agent_session_max_secs: max,
            agent_session_default_secs: default,
            login_url: input.login_url,
            branding: input.branding,
            created_at: self.clock.now(),
        };
        let event = AuditEvent::new(app.created_at, "application.created", actor)
            .application(&app.id)
            .details(serde_json::json!({"name": app.name, "return_urls": app.return_urls, "allowed_integrations": app.allowed_integrations}));
        self.store.insert_application(&app, &[event]).await?;
        Ok(app)
    }

    /// Changes an application's name, URLs, origins or branding; audited with the fields
    /// that changed.
    pub async fn update_application(
        &self,
        actor: &str,
        id: &str,
        patch: ApplicationPatch,
    ) -> Result<Application, CoreError> {
        let mut app = self.application(id).await?;
        let mut changed = Vec::new();
        if let Some(v) = patch.name {
            app.name = v;
            changed.push("name");
        }
        if let Some(v) = patch.return_urls {
            app.return_urls = v;
            changed.push("return_urls");
        }
        if let Some(v) = patch.allowed_origins {
            app.allowed_origins = v;
            changed.push("allowed_origins");
        }
        if let Some(v) = patch.login_url {
            app.login_url = Some(v);
            changed.push("login_url");
        }
        if let Some(v) = patch.branding {
            app.branding = v;
            changed.push("branding");
        }
        if changed.is_empty() {
            return Err(CoreError::invalid("invalid_request", "nothing to change"));
        }
        check_application_fields(
            &app.name,
            &app.return_urls,
            &app.allowed_origins,
            app.login_url.as_ref(),
            &app.branding,
        )?;
        let event = AuditEvent::new(self.clock.now(), "application.updated", actor)
            .application(&app.id)
            .details(serde_json::json!({"changed": changed, "return_urls": app.return_urls, "allowed_origins": app.allowed_origins, "branding": app.branding}));
        if !self.store.update_application(&app, &[event]).await? {
            return Err(CoreError::NotFound {
                what: "application",
            });
        }
        Ok(app)
    }

    /// Creates an API key; the key is returned once and only its hash is stored.
    pub async fn create_api_key(
        &self,
        actor: &str,
        application_id: Option<&str>,
        name: &str,
    ) -> Result<(ApiKeyRecord, String), CoreError> {
        check_id("name", name)?;
        if let Some(app) = application_id {
            self.application(app).await?;
        }
        let key = match application_id {
            Some(_) => format!("kw_app_{}", random_token(32)),
            None => format!("kw_admin_{}", random_token(32)),
        };
        let rec = ApiKeyRecord {
            id: new_id("key"),
            application_id: application_id.map(str::to_string),
            name: name.to_string(),
            hash: sha256_hex(&key),
            prefix: key.chars().take(12).collect(),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        let mut event = AuditEvent::new(rec.created_at, "api_key.created", actor)
            .details(serde_json::json!({"key_id": rec.id, "name": rec.name, "prefix": rec.prefix, "admin": application_id.is_none()}));
        if let Some(app) = application_id {
            event = event.application(app);
        }
        self.store.insert_api_key(&rec, &[event]).await?;
        Ok((rec, key))
    }

    fn check_settings(
        &self,
        provider: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<(), CoreError> {
        let entry = self.entry(provider)?;
        for (k, v) in settings {
            if !entry.provider.tenant.iter().any(|t| &t.name == k) {
                return Err(CoreError::invalid(
                    "invalid_setting",
                    format!("provider `{provider}` has no setting `{k}`"),
                ));
            }
            if !valid_setting_value(v) {
                return Err(CoreError::invalid(
                    "invalid_setting",
                    format!("setting `{k}` must be a host name or label"),
                ));
            }
        }
        for t in &entry.provider.tenant {
            if t.default.is_none() && !settings.contains_key(&t.name) {
                return Err(CoreError::invalid(
                    "missing_setting",
                    format!(
                        "provider `{provider}` needs the setting `{}` ({})",
                        t.name, t.description
                    ),
                ));
            }
        }
        Ok(())
    }

    pub async fn create_integration(
        &self,
        actor: &str,
        input: NewIntegration,
    ) -> Result<Integration, CoreError> {
        check_slug("slug", &input.slug)?;
        // API-key providers have no OAuth client: each user brings their own key.
        let api_key = self
            .catalog
            .get(&input.provider)
            .is_some_and(|e| e.provider.api_key.is_some());
        if !(api_key && input.client_id.is_empty()) {
            check_id("client_id", &input.client_id)?;
        }
        check_scopes(&input.scopes)?;
        self.check_settings(&input.provider, &input.settings)?;
        if input
            .client_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() > 4096)
        {
            return Err(CoreError::invalid(
                "invalid_request",
                "`client_secret` is too long",
            ));
        }
        let now = self.clock.now();
        let integration =
            Integration {
                client_secret_sealed: input.client_secret.as_ref().filter(|s| !s.is_empty()).map(
                    |s| {
                        self.vault.seal(
                            FieldRef::new("integrations", &input.slug, "client_secret"),
                            s.expose(),
                        )
                    },
                ),
                slug: input.slug,
                provider: input.provider,
                client_id: input.client_id,
                scopes: input.scopes,
                settings: input.settings,
                created_at: now,
                updated_at: now,
            };
        let event = AuditEvent::new(now, "integration.created", actor)
            .integration(&integration.slug)
            .details(serde_json::json!({"provider": integration.provider, "client_id": integration.client_id, "scopes": integration.scopes, "settings": integration.settings}));
        match self.store.insert_integration(&integration, &[event]).await {
            Ok(()) => {
                self.integration_cache.remove(&integration.slug);
                Ok(integration)
            }
            Err(StoreError::Conflict(_)) => Err(CoreError::Conflict {
                code: "integration_exists",
                detail: format!("integration `{}` already exists", integration.slug),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_integration(&self, slug: &str) -> Result<Integration, CoreError> {
        self.store
            .get_integration(slug)
            .await?
            .ok_or(CoreError::NotFound {
                what: "integration",
            })
    }

    /// Changes an integration. A scope change needs a reason; it is logged with it.
    pub async fn update_integration(
        &self,
        actor: &str,
        slug: &str,
        patch: IntegrationPatch,
    ) -> Result<Integration, CoreError> {
        let mut i = self.get_integration(slug).await?;
        check_text("reason", &patch.reason)?;
        if let Some(scopes) = &patch.scopes {
            check_scopes(scopes)?;
            if scopes != &i.scopes && patch.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(CoreError::invalid(
                    "reason_required",
                    "changing an integration's scopes needs a `reason`",
                ));
            }
        }
        if let Some(c) = &patch.client_id {
            check_id("client_id", c)?;
            i.client_id = c.clone();
        }
        if let Some(s) = &patch.settings {
            self.check_settings(&i.provider, s)?;
            i.settings = s.clone();
        }
        if let Some(s) = &patch.client_secret {
            i.client_secret_sealed = (!s.is_empty()).then(|| {
                self.vault.seal(
                    FieldRef::new("integrations", slug, "client_secret"),
                    s.expose(),
                )
            });
        }
        let mut changed: Vec<&str> = Vec::new();
        let before_scopes = i.scopes.clone();
        if let Some(scopes) = patch.scopes {
            if scopes != i.scopes {
                tracing::info!(integration = slug, from = ?i.scopes, to = ?scopes, reason = patch.reason.as_deref().unwrap_or(""), "integration scopes changed");
                changed.push("scopes");
            }
            i.scopes = scopes;
        }
        if patch.client_id.is_some() {
            changed.push("client_id");
        }
        if patch.client_secret.is_some() {
            changed.push("client_secret");
        }
        if patch.settings.is_some() {
            changed.push("settings");
        }
        i.updated_at = self.clock.now();
        let mut details = serde_json::json!({"changed": changed});
        if changed.contains(&"scopes") {
            details["scopes_before"] = serde_json::json!(before_scopes);
            details["scopes_after"] = serde_json::json!(i.scopes);
            details["reason"] = serde_json::json!(patch.reason);
        }
        let action = if changed.contains(&"scopes") {
            "integration.scopes_changed"
        } else {
            "integration.updated"
        };
        let event = AuditEvent::new(i.updated_at, action, actor)
            .integration(slug)
            .details(details);
        self.store.update_integration(&i, &[event]).await?;
        self.integration_cache.remove(&i.slug);
        Ok(i)
    }

    /// Revokes an API key; it stops working in this process at once.
    pub async fn revoke_api_key(&self, actor: &str, id: &str) -> Result<bool, CoreError> {
        let now = self.clock.now();
        let event = AuditEvent::new(now, "api_key.revoked", actor)
            .details(serde_json::json!({"key_id": id}));
        let revoked = self.store.revoke_api_key(id, now, &[event]).await?;
        self.auth_cache.clear();
        Ok(revoked)
    }

    /// Re-seals every value not sealed with the active key. Safe to run while serving:
    /// each value is swapped only if unchanged since it was read.
    pub async fn reseal_all(&self, actor: &str) -> Result<ResealReport, CoreError> {
        let mut report = ResealReport::default();
        self.integration_cache.clear();
        for v in self.store.list_sealed_values().await? {
            report.checked += 1;
            if !self.vault.needs_reseal(&v.value) {
                continue;
            }
            let field = FieldRef::new(v.table, &v.record_id, v.field);
            match self.vault.reseal(field, &v.value) {
                Ok(new) => {
                    if self.store.replace_sealed_value(&v, &new).await? {
                        report.resealed += 1;
                    }
                }
                Err(e) => {
                    tracing::error!(table = v.table, record = %v.record_id, field = v.field, error = %e, "could not re-seal");
                    report.failed += 1;
                }
            }
        }
        self.record(
            AuditEvent::new(self.clock.now(), "master_key.resealed", actor).details(serde_json::json!({
                "active_key_id": self.vault.active_key_id(), "checked": report.checked, "resealed": report.resealed, "failed": report.failed,
            })),
        )
        .await?;
        Ok(report)
    }
}
