//! The API-key form: for providers without OAuth the widget asks for exactly the fields
//! the catalog entry declares, links to where the provider issues keys, has the provider
//! check the key, and only then stores it. A rejected key shows the form again with the
//! reason; secret fields are never echoed back into the page.

use super::{binding, check_csrf, connected, csrf_for, error_page, set_cookie};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use keyway_core::catalog::CatalogEntry;
use keyway_core::connect::FlowTarget;
use keyway_core::CoreError;
use minijinja::context;
use std::collections::BTreeMap;

/// Whether an integration's provider takes an API key.
pub(super) async fn is_api_key(s: &AppState, slug: &str) -> bool {
    match s.broker.store.get_integration(slug).await {
        Ok(Some(i)) => s
            .broker
            .catalog
            .get(&i.provider)
            .is_some_and(|e| e.provider.api_key.is_some()),
        _ => false,
    }
}

/// Who the form connects for, where it posts and where "Back" goes.
struct FormTarget {
    target: FlowTarget,
    app_name: String,
    branding: keyway_core::model::Branding,
    action: String,
    back: String,
}

async fn from_session(s: &AppState, token: &str, slug: &str) -> Result<FormTarget, CoreError> {
    let session = s.broker.connect_session_by_token(token).await?;
    if session
        .integrations
        .as_ref()
        .is_some_and(|list| !list.iter().any(|i| i == slug))
    {
        return Err(CoreError::invalid(
            "integration_not_allowed",
            "this link does not offer that integration",
        ));
    }
    let app = s
        .broker
        .store
        .get_application(&session.application_id)
        .await?
        .ok_or(CoreError::NotFound {
            what: "application",
        })?;
    Ok(FormTarget {
        app_name: app.name,
        branding: app.branding,
        action: format!("/connect/{token}/key/{slug}"),
        back: format!("/connect/{token}"),
        target: FlowTarget {
            application_id: session.application_id,
            user_id: session.user_id,
            organization_id: session.organization_id,
            integration: slug.to_string(),
            connect_session_id: Some(session.id),
            return_url: session.return_url,
            owner: session.owner,
            purpose: session.purpose,
            shared: session.shared,
        },
    })
}

async fn from_link(s: &AppState, id: &str) -> Result<FormTarget, CoreError> {
    let link = s.broker.authorize_link(id).await?;
    let app = s
        .broker
        .store
        .get_application(&link.application_id)
        .await?
        .ok_or(CoreError::NotFound {
            what: "application",
        })?;
    Ok(FormTarget {
        app_name: app.name,
        branding: app.branding,
        action: format!("/connect/link/{id}/key"),
        back: format!("/connect/link/{id}"),
        target: FlowTarget {
            application_id: link.application_id,
            user_id: link.user_id,
            organization_id: link.organization_id,
            integration: link.integration,
            connect_session_id: link.connect_session_id,
            return_url: link.return_url,
            owner: link.owner,
            purpose: link.purpose,
            shared: false,
        },
    })
}

/// The catalog entry of the target's integration, which must take an API key.
async fn entry_of<'a>(s: &'a AppState, t: &FormTarget) -> Result<&'a CatalogEntry, CoreError> {
    let integration = s
        .broker
        .store
        .get_integration(&t.target.integration)
        .await?
        .ok_or(CoreError::NotFound {
            what: "integration",
        })?;
    s.broker
        .catalog
        .get(&integration.provider)
        .filter(|e| e.provider.api_key.is_some())
        .ok_or_else(|| {
            CoreError::invalid(
                "not_api_key",
                "this integration is not connected with an API key",
            )
        })
}

fn render_form(
    s: &AppState,
    status: StatusCode,
    t: &FormTarget,
    entry: &CatalogEntry,
    csrf: &str,
    error: Option<String>,
    kept: &BTreeMap<String, String>,
) -> Response {
    let Some(spec) = entry.provider.api_key.as_ref() else {
        return error_page(
            s,
            &CoreError::invalid("not_api_key", "not an API-key provider"),
        );
    };
    let fields: Vec<minijinja::Value> = spec
        .fields
        .iter()
        .map(|f| {
            context! {
                name => f.name,
                label => f.label,
                help => f.help,
                secret => f.secret,
                optional => f.optional,
                // Only non-secret values come back after an error.
                value => (!f.secret).then(|| kept.get(&f.name).cloned()).flatten(),
            }
        })
        .collect();
    let th = super::theme(&t.branding);
    s.pages.render_with(
        status,
        "key.html",
        context! {
            theme_css => th.css,
            logo_url => th.logo_url,
            app_name => t.app_name,
            user_id => t.target.user_id,
            organization_id => t.target.organization_id,
            shared => t.target.shared,
            provider_name => entry.provider.name,
            help => spec.help,
            issue_url => spec.issue_url,
            fields,
            csrf,
            action => t.action,
            back => t.back,
            error,
        },
        &super::render::PageSecurity {
            frame_ancestors: Vec::new(),
            img_src: th.img_src,
        },
    )
}

async fn show(s: AppState, headers: HeaderMap, t: Result<FormTarget, CoreError>) -> Response {
    let result = async {
        let t = t?;
        let entry = entry_of(&s, &t).await?;
        Ok::<_, CoreError>((t, entry))
    }
    .await;
    let (t, entry) = match result {
        Ok(v) => v,
        Err(e) => return error_page(&s, &e),
    };
    let (bind, fresh) = binding(&headers);
    let mut resp = render_form(
        &s,
        StatusCode::OK,
        &t,
        entry,
        &csrf_for(&bind),
        None,
        &BTreeMap::new(),
    );
    if fresh {
        set_cookie(&s, &mut resp, &bind);
    }
    resp
}

async fn submit(
    s: AppState,
    headers: HeaderMap,
    t: Result<FormTarget, CoreError>,
    form: Result<Form<BTreeMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(
            &s,
            &CoreError::invalid("invalid_request", "the form is incomplete"),
        );
    };
    let prepared = async {
        let bind = check_csrf(&headers, form.get("csrf").map(String::as_str).unwrap_or(""))?;
        let t = t?;
        let entry = entry_of(&s, &t).await?;
        Ok::<_, CoreError>((bind, t, entry))
    }
    .await;
    let (bind, t, entry) = match prepared {
        Ok(v) => v,
        Err(e) => return error_page(&s, &e),
    };
    match s.broker.connect_api_key(t.target.clone(), &form).await {
        Ok(connection) => connected(&s, &connection, t.target.return_url.clone()).await,
        Err(e) => {
            let status = match &e {
                CoreError::Invalid {
                    code: "invalid_credentials" | "credentials_rejected",
                    ..
                } => StatusCode::UNPROCESSABLE_ENTITY,
                CoreError::ProviderUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => return error_page(&s, &e),
            };
            let message = match &e {
                CoreError::ProviderUnavailable { provider, .. } => format!(
                    "{provider} did not answer, so the key could not be checked. Nothing was saved; try again in a moment."
                ),
                other => format!("{other} Nothing was saved."),
            };
            tracing::info!(integration = %t.target.integration, code = ?status, "API key not connected");
            render_form(
                &s,
                status,
                &t,
                entry,
                &csrf_for(&bind),
                Some(message),
                &form,
            )
        }
    }
}

pub(super) async fn widget_form(
    State(s): State<AppState>,
    Path((token, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let t = from_session(&s, &token, &slug).await;
    show(s, headers, t).await
}

pub(super) async fn widget_submit(
    State(s): State<AppState>,
    Path((token, slug)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<BTreeMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let t = from_session(&s, &token, &slug).await;
    submit(s, headers, t, form).await
}

pub(super) async fn link_form(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let t = from_link(&s, &id).await;
    show(s, headers, t).await
}

pub(super) async fn link_submit(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<BTreeMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let t = from_link(&s, &id).await;
    submit(s, headers, t, form).await
}
