//! Admin calls: integrations, applications, API keys, the catalog, vault re-sealing.

use super::types::*;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, Auth};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyway_core::admin::{IntegrationPatch, NewApplication, NewIntegration};
use keyway_core::clock::rfc3339;
use keyway_core::model::Principal;
use keyway_core::secret::Secret;

fn view(s: &AppState, i: &keyway_core::model::Integration) -> IntegrationView {
    let name = s
        .broker
        .catalog
        .get(&i.provider)
        .map(|e| e.provider.name.clone())
        .unwrap_or_else(|| i.provider.clone());
    IntegrationView::new(i, name, s.broker.settings.redirect_uri())
}

/// Create an integration.
#[utoipa::path(post, path = "/v1/integrations", tag = "admin", request_body = CreateIntegration,
    responses((status = 201, body = IntegrationView), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn create_integration(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(b): ApiJson<CreateIntegration>,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    auth.require_admin()?;
    let i = s
        .broker
        .create_integration(
            &auth.0.actor(),
            NewIntegration {
                slug: b.slug,
                provider: b.provider,
                client_id: b.client_id,
                client_secret: b.client_secret.map(Secret::new),
                scopes: b.scopes,
                settings: b.settings,
            },
        )
        .await?;
    tracing::info!(integration = %i.slug, provider = %i.provider, "integration created");
    Ok((StatusCode::CREATED, Json(view(&s, &i))))
}

/// List integrations (never returns secrets).
#[utoipa::path(get, path = "/v1/integrations", tag = "admin", responses((status = 200, body = [IntegrationView])), security(("api_key" = [])))]
pub async fn list_integrations(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<IntegrationView>>, ApiError> {
    let list = s
        .broker
        .store
        .list_integrations()
        .await
        .map_err(keyway_core::CoreError::from)?;
    let allowed = match &auth.0 {
        Principal::Admin { .. } => None,
        Principal::Application { application_id, .. } => s
            .broker
            .store
            .get_application(application_id)
            .await
            .map_err(keyway_core::CoreError::from)?
            .and_then(|a| a.allowed_integrations),
    };
    Ok(Json(
        list.iter()
            .filter(|i| allowed.as_ref().is_none_or(|a| a.contains(&i.slug)))
            .map(|i| view(&s, i))
            .collect(),
    ))
}

/// Read one integration.
#[utoipa::path(get, path = "/v1/integrations/{slug}", tag = "admin", params(("slug" = String, Path)), responses((status = 200, body = IntegrationView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn get_integration(
    State(s): State<AppState>,
    auth: Auth,
    Path(slug): Path<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    auth.require_admin()?;
    Ok(Json(view(&s, &s.broker.get_integration(&slug).await?)))
}

/// Change an integration; a scope change needs a `reason`.
#[utoipa::path(patch, path = "/v1/integrations/{slug}", tag = "admin", params(("slug" = String, Path)), request_body = PatchIntegration,
    responses((status = 200, body = IntegrationView), (status = 400, body = Problem), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn patch_integration(
    State(s): State<AppState>,
    auth: Auth,
    Path(slug): Path<String>,
    ApiJson(b): ApiJson<PatchIntegration>,
) -> Result<Json<IntegrationView>, ApiError> {
    auth.require_admin()?;
    let i = s
        .broker
        .update_integration(
            &auth.0.actor(),
            &slug,
            IntegrationPatch {
                client_id: b.client_id,
                client_secret: b.client_secret.map(Secret::new),
                scopes: b.scopes,
                settings: b.settings,
                reason: b.reason,
            },
        )
        .await?;
    Ok(Json(view(&s, &i)))
}

/// Create an application.
#[utoipa::path(post, path = "/v1/applications", tag = "admin", request_body = CreateApplication,
    responses((status = 201, body = ApplicationView), (status = 400, body = Problem)), security(("api_key" = [])))]
pub async fn create_application(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(b): ApiJson<CreateApplication>,
) -> Result<(StatusCode, Json<ApplicationView>), ApiError> {
    auth.require_admin()?;
    let a = s
        .broker
        .create_application(
            &auth.0.actor(),
            NewApplication {
                name: b.name,
                return_urls: b.return_urls,
                allowed_origins: b.allowed_origins,
                allowed_integrations: b.allowed_integrations,
                agent_session_max_secs: b.agent_session_max,
                agent_session_default_secs: b.agent_session_default,
                login_url: b.login_url,
                branding: b.branding.map(Into::into).unwrap_or_default(),
            },
        )
        .await?;
    tracing::info!(application = %a.id, "application created");
    Ok((StatusCode::CREATED, Json((&a).into())))
}

/// Change an application: name, return URLs, allowed origins, login URL, branding.
#[utoipa::path(patch, path = "/v1/applications/{id}", tag = "admin", request_body = PatchApplication,
    responses((status = 200, body = ApplicationView), (status = 400, body = Problem), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn update_application(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<PatchApplication>,
) -> Result<Json<ApplicationView>, ApiError> {
    auth.require_admin()?;
    let a = s
        .broker
        .update_application(
            &auth.0.actor(),
            &id,
            keyway_core::admin::ApplicationPatch {
                name: b.name,
                return_urls: b.return_urls,
                allowed_origins: b.allowed_origins,
                login_url: b.login_url,
                branding: b.branding.map(Into::into),
            },
        )
        .await?;
    tracing::info!(application = %a.id, "application updated");
    Ok(Json((&a).into()))
}

/// List applications (an application key sees its own).
#[utoipa::path(get, path = "/v1/applications", tag = "admin", responses((status = 200, body = [ApplicationView])), security(("api_key" = [])))]
pub async fn list_applications(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<ApplicationView>>, ApiError> {
    let apps = s
        .broker
        .store
        .list_applications()
        .await
        .map_err(keyway_core::CoreError::from)?;
    Ok(Json(
        apps.iter()
            .filter(|a| auth.0.application_id().is_none_or(|id| id == a.id))
            .map(ApplicationView::from)
            .collect(),
    ))
}

/// Create an API key for an application; the key is in the answer once.
#[utoipa::path(post, path = "/v1/applications/{id}/api-keys", tag = "admin", params(("id" = String, Path)), request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyCreated), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn create_api_key(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ApiKeyCreated>), ApiError> {
    auth.require_admin()?;
    let body: CreateApiKey = if body.iter().all(u8::is_ascii_whitespace) {
        CreateApiKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            )
        })?
    };
    let name = body.name.unwrap_or_else(|| "default".into());
    let (rec, key) = s
        .broker
        .create_api_key(&auth.0.actor(), Some(&id), &name)
        .await?;
    tracing::info!(application = %id, key_id = %rec.id, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            id: rec.id,
            key,
            prefix: rec.prefix,
            application_id: rec.application_id,
            created_at: rfc3339(rec.created_at),
        }),
    ))
}

/// List an application's API keys (prefixes only).
#[utoipa::path(get, path = "/v1/applications/{id}/api-keys", tag = "admin", params(("id" = String, Path)), responses((status = 200, body = [ApiKeyView])), security(("api_key" = [])))]
pub async fn list_api_keys(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    auth.require_admin()?;
    let keys = s
        .broker
        .store
        .list_api_keys(Some(&id))
        .await
        .map_err(keyway_core::CoreError::from)?;
    Ok(Json(keys.iter().map(ApiKeyView::from).collect()))
}

/// Revoke an API key at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "admin", params(("id" = String, Path)), responses((status = 204), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn revoke_api_key(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require_admin()?;
    if s.broker.revoke_api_key(&auth.0.actor(), &id).await? {
        tracing::info!(key_id = %id, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("API key"))
    }
}

/// The provider catalog.
#[utoipa::path(get, path = "/v1/providers", tag = "admin", responses((status = 200, body = [ProviderView])), security(("api_key" = [])))]
pub async fn list_providers(State(s): State<AppState>, _auth: Auth) -> Json<Vec<ProviderView>> {
    Json(
        s.broker
            .catalog
            .iter()
            .map(|e| {
                let o = e.provider.oauth2.as_ref();
                ProviderView {
                    id: e.id.clone(),
                    name: e.provider.name.clone(),
                    kind: match (o, e.provider.is_app_level()) {
                        (None, _) => "api_key",
                        (Some(_), true) => "client_credentials",
                        (Some(_), false) => "oauth2",
                    }
                    .into(),
                    api_base_url: e.provider.api_base_url.clone(),
                    pkce: o.is_some_and(|o| o.pkce),
                    scope_separator: o.map(|o| o.scope_separator.clone()).unwrap_or_default(),
                    default_scopes: e.provider.default_scopes().to_vec(),
                    settings: e.provider.tenant.iter().map(|t| t.name.clone()).collect(),
                    revocation: o
                        .is_some_and(|o| o.revocation.is_some() || o.revocation_url.is_some()),
                    credential_fields: e
                        .provider
                        .api_key
                        .as_ref()
                        .map(|k| k.fields.iter().map(|f| f.name.clone()).collect())
                        .unwrap_or_default(),
                    docs_url: e.provider.docs_url.clone(),
                    notes: e.provider.notes.clone(),
                }
            })
            .collect(),
    )
}

/// Re-seal every stored secret with the active master key (after a key change).
#[utoipa::path(post, path = "/v1/admin/master-key/rotate", tag = "admin", responses((status = 200, body = ResealResponse)), security(("api_key" = [])))]
pub async fn reseal(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<ResealResponse>, ApiError> {
    auth.require_admin()?;
    let r = s.broker.reseal_all(&auth.0.actor()).await?;
    tracing::info!(
        checked = r.checked,
        resealed = r.resealed,
        failed = r.failed,
        "re-sealed stored secrets"
    );
    Ok(Json(ResealResponse {
        checked: r.checked,
        resealed: r.resealed,
        failed: r.failed,
        active_key_id: s.broker.vault.active_key_id().to_string(),
    }))
}
