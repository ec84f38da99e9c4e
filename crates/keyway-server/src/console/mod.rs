//! The admin console at `/admin`: server-rendered pages over the same domain calls as
//! the API. Sign in with an admin key (exchanged for a session cookie), every form carries
//! the session's CSRF token, every change is audited as the admin key that signed in.

mod charts;
pub mod session;

use crate::pages::render::PageSecurity;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use keyway_core::clock::rfc3339;
use keyway_core::governance::InventoryFilter;
use keyway_core::model::{ConnectionStatus, Principal};
use keyway_core::CoreError;
use minijinja::context;
use serde::Deserialize;
use session::{ConsoleSession, COOKIE};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin", get(dashboard))
        .route("/admin/connections", get(connections))
        .route("/admin/connections.csv", get(connections_csv))
        .route("/admin/connections/{id}", get(connection))
        .route("/admin/connections/{id}/revoke", post(revoke))
        .route("/admin/integrations", get(integrations))
        .route("/admin/integrations/{slug}/scopes", post(change_scopes))
        .route("/admin/applications", get(applications))
        .route("/admin/api-keys/{id}/revoke", post(revoke_key))
        .route("/admin/audit", get(audit))
        .route("/admin/audit/verify", post(verify))
        .route("/admin/webhooks", get(webhooks))
        .route("/admin/sessions", get(agent_sessions))
        .route("/admin/sessions/{id}/revoke", post(revoke_session))
}

/// A console request's signed-in session (console actions act as that admin key);
/// requests without one are sent to the sign-in page.
struct Signed {
    sess: ConsoleSession,
    principal: Principal,
}

impl axum::extract::FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &AppState,
    ) -> Result<Self, Response> {
        signed_in(s, &parts.headers).map(|(sess, principal)| Signed { sess, principal })
    }
}

/// The signed-in console session, or a redirect to the sign-in page.
#[allow(clippy::result_large_err)]
fn signed_in(s: &AppState, headers: &HeaderMap) -> Result<(ConsoleSession, Principal), Response> {
    match crate::web::cookie(headers, COOKIE).and_then(|t| s.console.get(&t)) {
        Some(sess) => {
            let p = Principal::Admin {
                key_id: sess.key_id.clone(),
            };
            Ok((sess, p))
        }
        None => Err(Redirect::to("/admin/login").into_response()),
    }
}

#[allow(clippy::result_large_err)]
fn check_csrf(sess: &ConsoleSession, form_csrf: Option<&str>) -> Result<(), Response> {
    if form_csrf.is_some_and(|c| crate::web::same_secret(c, &sess.csrf)) {
        Ok(())
    } else {
        Err((StatusCode::FORBIDDEN, "The form expired; reload the page.").into_response())
    }
}

fn render(s: &AppState, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    s.pages
        .render_with(status, name, ctx, &PageSecurity::default())
}

/// A page of the console with the common context (navigation, CSRF).
fn view(
    s: &AppState,
    sess: &ConsoleSession,
    section: &str,
    name: &str,
    ctx: minijinja::Value,
) -> Response {
    let ctx = context! { section, csrf => sess.csrf, key_id => sess.key_id, ..ctx };
    render(s, StatusCode::OK, name, ctx)
}

fn failure(s: &AppState, sess: &ConsoleSession, e: &CoreError) -> Response {
    let status = match e {
        CoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        CoreError::Invalid { .. } => StatusCode::BAD_REQUEST,
        CoreError::Conflict { .. } => StatusCode::CONFLICT,
        CoreError::Forbidden { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "console page failed");
    }
    let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
        "Keyway could not finish this step. Try again shortly.".to_string()
    } else {
        e.to_string()
    };
    let ctx = context! { section => "", csrf => sess.csrf, key_id => sess.key_id, message };
    render(s, status, "console/error.html", ctx)
}

// --- sign-in -------------------------------------------------------------------------

async fn login_page(State(s): State<AppState>) -> Response {
    render(
        &s,
        StatusCode::OK,
        "console/login.html",
        context! { error => None::<String> },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(
    State(s): State<AppState>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let key = form.map(|Form(f)| f.key).unwrap_or_default();
    let principal = s
        .broker
        .authenticate(key.trim(), s.config.admin_key_hash.as_deref())
        .await
        .ok()
        .flatten();
    let Some(Principal::Admin { key_id }) = principal else {
        tracing::info!("console sign-in refused");
        return render(
            &s,
            StatusCode::UNAUTHORIZED,
            "console/login.html",
            context! { error => "That is not an admin key. Application keys cannot sign in here." },
        );
    };
    let token = s.console.create(&key_id);
    tracing::info!(%key_id, "console sign-in");
    let mut resp = Redirect::to("/admin").into_response();
    let secure = if s.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let c = format!(
        "{COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        session::LIFETIME.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let (Some(t), Ok((sess, _))) = (
        crate::web::cookie(&headers, COOKIE),
        signed_in(&s, &headers),
    ) {
        if check_csrf(&sess, f.csrf.as_deref()).is_ok() {
            s.console.end(&t);
        }
    }
    let mut resp = Redirect::to("/admin/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}=; Path=/admin; Max-Age=0")) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

// --- dashboard -----------------------------------------------------------------------

async fn dashboard(State(s): State<AppState>, Signed { sess, principal: p }: Signed) -> Response {
    let result = async {
        let (rows, _) = s
            .broker
            .inventory(
                &p,
                InventoryFilter {
                    limit: 10_000,
                    ..Default::default()
                },
            )
            .await?;
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_integration: BTreeMap<String, u64> = BTreeMap::new();
        let mut stale = 0;
        for r in &rows {
            *by_status.entry(r.connection.status.as_str()).or_default() += 1;
            if r.connection.status != ConnectionStatus::Revoked {
                *by_integration.entry(r.connection.integration.clone()).or_default() += 1;
                if r.stale {
                    stale += 1;
                }
            }
        }
        let status_colour = |st: &str| match st {
            "active" => charts::PALETTE[2],
            "needs_reauthorization" => charts::PALETTE[1],
            _ => charts::PALETTE[5],
        };
        let status_items: Vec<(String, u64, &str)> = ["active", "needs_reauthorization", "revoked"]
            .iter()
            .map(|st| {
                (
                    st.replace('_', " "),
                    by_status.get(st).copied().unwrap_or(0),
                    status_colour(st),
                )
            })
            .collect();
        let integration_items: Vec<(String, u64, &str)> = by_integration
            .into_iter()
            .map(|(k, v)| (k, v, charts::PALETTE[0]))
            .collect();
        // The last 24 hours from the audit chain, by hour.
        let now = s.broker.now();
        let start = now - time::Duration::hours(23);
        let start = start
            - time::Duration::minutes(i64::from(start.minute()))
            - time::Duration::seconds(i64::from(start.second()))
            - time::Duration::nanoseconds(i64::from(start.nanosecond()));
        let activity = s
            .broker
            .store
            .audit_activity(
                start,
                &[
                    "token.issued",
                    "connection.refreshed",
                    "connection.needs_reauthorization",
                ],
            )
            .await?;
        let hours: Vec<time::OffsetDateTime> =
            (0..24).map(|h| start + time::Duration::hours(h)).collect();
        let series = |action: &str| -> Vec<u64> {
            hours
                .iter()
                .map(|h| {
                    activity
                        .iter()
                        .filter(|(t, a, _)| a == action && (*t - *h).whole_minutes().abs() < 60 && *t >= *h)
                        .map(|x| x.2)
                        .sum()
                })
                .collect()
        };
        let labels: Vec<String> = hours
            .iter()
            .map(|h| format!("{:02}:00", h.hour()))
            .collect();
        let calls = series("token.issued");
        let refreshes = series("connection.refreshed");
        let dead = series("connection.needs_reauthorization");
        let totals = context! {
            connections => rows.iter().filter(|r| r.connection.status != ConnectionStatus::Revoked).count(),
            needs_reauthorization => by_status.get("needs_reauthorization").copied().unwrap_or(0),
            stale,
            token_calls_24h => calls.iter().sum::<u64>(),
            refresh_failures_24h => dead.iter().sum::<u64>(),
        };
        Ok::<_, CoreError>(context! {
            totals,
            chart_status => minijinja::Value::from_safe_string(charts::bars("Connections by status", &status_items)),
            chart_integrations => minijinja::Value::from_safe_string(charts::bars("Live connections by integration", &integration_items)),
            chart_activity => minijinja::Value::from_safe_string(charts::hourly(
                "Token calls, refreshes and grants found dead, last 24 hours (UTC)",
                &labels,
                &[
                    ("token calls".into(), calls, charts::PALETTE[0]),
                    ("refreshes".into(), refreshes, charts::PALETTE[2]),
                    ("refresh failed: grant dead".into(), dead, charts::PALETTE[3]),
                ],
            )),
        })
    }
    .await;
    match result {
        Ok(ctx) => view(&s, &sess, "dashboard", "console/dashboard.html", ctx),
        Err(e) => failure(&s, &sess, &e),
    }
}

// --- inventory -----------------------------------------------------------------------

#[derive(Deserialize, Default, Clone)]
struct InventoryQuery {
    status: Option<String>,
    integration: Option<String>,
    application: Option<String>,
    stale: Option<String>,
    no_owner: Option<String>,
}

fn filter_of(q: &InventoryQuery) -> Result<InventoryFilter, CoreError> {
    let nonempty = |v: &Option<String>| v.clone().filter(|x| !x.is_empty());
    let status = match nonempty(&q.status) {
        Some(st) => Some(
            ConnectionStatus::parse(&st)
                .ok_or_else(|| CoreError::invalid("invalid_request", "unknown status"))?,
        ),
        None => None,
    };
    Ok(InventoryFilter {
        application_id: nonempty(&q.application),
        integration: nonempty(&q.integration),
        status,
        stale: match q.stale.as_deref() {
            Some("yes") => Some(true),
            Some("no") => Some(false),
            _ => None,
        },
        no_owner: q.no_owner.as_deref() == Some("yes"),
        after_id: None,
        limit: 10_000,
    })
}

async fn connections(
    State(s): State<AppState>,
    Signed { sess, principal: p }: Signed,
    q: Result<Query<InventoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let result = async {
        let filter = filter_of(&q)?;
        let (rows, _) = s.broker.inventory(&p, filter).await?;
        let integrations = s.broker.store.list_integrations().await?;
        let apps = s.broker.store.list_applications().await?;
        let items: Vec<minijinja::Value> = rows
            .iter()
            .map(|r| {
                let c = &r.connection;
                context! {
                    id => c.id,
                    application => r.application_name,
                    user_id => c.user_id,
                    organization_id => c.organization_id,
                    integration => c.integration,
                    account => c.account_name.clone().or(c.account_id.clone()),
                    owner => c.owner,
                    status => c.status.as_str(),
                    missing => r.missing_scopes,
                    stale => r.stale,
                    last_used => c.last_used_at.map(rfc3339),
                    shared => c.shared,
                }
            })
            .collect();
        let query = serde_urlencoded::to_string([
            ("status", q.status.clone().unwrap_or_default()),
            ("integration", q.integration.clone().unwrap_or_default()),
            ("application", q.application.clone().unwrap_or_default()),
            ("stale", q.stale.clone().unwrap_or_default()),
            ("no_owner", q.no_owner.clone().unwrap_or_default()),
        ])
        .unwrap_or_default();
        Ok::<_, CoreError>(context! {
            items,
            count => rows.len(),
            q => context! {
                status => q.status, integration => q.integration, application => q.application,
                stale => q.stale, no_owner => q.no_owner,
            },
            integrations => integrations.iter().map(|i| i.slug.clone()).collect::<Vec<_>>(),
            applications => apps.iter().map(|a| context! { id => a.id, name => a.name }).collect::<Vec<_>>(),
            csv_url => format!("/admin/connections.csv?{query}"),
        })
    }
    .await;
    match result {
        Ok(ctx) => view(&s, &sess, "connections", "console/connections.html", ctx),
        Err(e) => failure(&s, &sess, &e),
    }
}

async fn connections_csv(
    State(s): State<AppState>,
    Signed { sess, principal: p }: Signed,
    q: Result<Query<InventoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let result = async {
        let filter = filter_of(&q)?;
        let (rows, _) = s.broker.inventory(&p, filter).await?;
        Ok::<_, CoreError>(rows)
    }
    .await;
    match result {
        Ok(rows) => {
            crate::api::governance::csv_response(&rows).unwrap_or_else(|e| e.into_response())
        }
        Err(e) => failure(&s, &sess, &e),
    }
}

async fn connection(
    State(s): State<AppState>,
    Signed { sess, principal: p }: Signed,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let c = s.broker.connection_for(&p, &id).await?;
        let integration = s.broker.store.get_integration(&c.integration).await?;
        let configured: Vec<String> = match &integration {
            Some(i) if !i.scopes.is_empty() => i.scopes.clone(),
            Some(i) => s
                .broker
                .catalog
                .get(&i.provider)
                .map(|e| e.provider.default_scopes().to_vec())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let history = s.broker.store.audit_for_connection(&c.id, 200).await?;
        let history: Vec<minijinja::Value> = history
            .iter()
            .map(|r| {
                context! {
                    seq => r.seq,
                    at => rfc3339(r.event.at),
                    action => r.event.action,
                    actor => r.event.actor,
                    user_id => r.event.user_id,
                    details => r.event.details,
                }
            })
            .collect();
        let scopes: Vec<minijinja::Value> = configured
            .iter()
            .map(|sc| context! { name => sc, granted => c.scopes.contains(sc), configured => true })
            .chain(
                c.scopes
                    .iter()
                    .filter(|sc| !configured.contains(sc))
                    .map(|sc| context! { name => sc, granted => true, configured => false }),
            )
            .collect();
        Ok::<_, CoreError>(context! {
            c => context! {
                id => c.id, application_id => c.application_id, user_id => c.user_id,
                organization_id => c.organization_id, integration => c.integration,
                provider => c.provider, status => c.status.as_str(),
                account_id => c.account_id, account_name => c.account_name,
                owner => c.owner, purpose => c.purpose, label => c.label, shared => c.shared,
                created_at => rfc3339(c.created_at),
                last_used_at => c.last_used_at.map(rfc3339),
                last_refreshed_at => c.last_refreshed_at.map(rfc3339),
                last_validated_at => c.last_validated_at.map(rfc3339),
                revoked_at => c.revoked_at.map(rfc3339),
                revocation => c.revocation.map(|r| format!("{r:?}").to_lowercase()),
                expires_at => c.tokens.as_ref().and_then(|t| t.expires_at).map(rfc3339),
            },
            scopes,
            history,
        })
    }
    .await;
    match result {
        Ok(ctx) => view(&s, &sess, "connections", "console/connection.html", ctx),
        Err(e) => failure(&s, &sess, &e),
    }
}

async fn revoke(
    State(s): State<AppState>,
    Signed { sess, principal: p }: Signed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&sess, f.csrf.as_deref()) {
        return r;
    }
    match s.broker.disconnect(&p, &id).await {
        Ok((c, outcome)) => {
            tracing::info!(connection = %c.id, revocation = ?outcome, "revoked from the console");
            Redirect::to(&format!("/admin/connections/{}", c.id)).into_response()
        }
        Err(e) => failure(&s, &sess, &e),
    }
}

// --- integrations, applications ------------------------------------------------------

async fn integrations(State(s): State<AppState>, Signed { sess, .. }: Signed) -> Response {
    let result = async {
        let list = s.broker.store.list_integrations().await?;
        let items: Vec<minijinja::Value> = list
            .iter()
            .map(|i| {
                let entry = s.broker.catalog.get(&i.provider);
                let api_key = entry.is_some_and(|e| e.provider.api_key.is_some());
                let credentials = if api_key {
                    "each user brings a key"
                } else if i.client_secret_sealed.is_some() {
                    "client id and secret stored"
                } else {
                    "client id only (public client)"
                };
                context! {
                    slug => i.slug,
                    provider => entry.map(|e| e.provider.name.clone()).unwrap_or_else(|| i.provider.clone()),
                    client_id => i.client_id,
                    credentials,
                    scopes => i.scopes.join(" "),
                    default_scopes => entry.map(|e| e.provider.default_scopes().join(" ")).unwrap_or_default(),
                    api_key,
                    updated_at => rfc3339(i.updated_at),
                }
            })
            .collect();
        Ok::<_, CoreError>(context! { items, redirect_uri => s.broker.settings.redirect_uri() })
    }
    .await;
    match result {
        Ok(ctx) => view(&s, &sess, "integrations", "console/integrations.html", ctx),
        Err(e) => failure(&s, &sess, &e),
    }
}

#[derive(Deserialize)]
struct ScopesForm {
    csrf: Option<String>,
    scopes: String,
    reason: Option<String>,
}

async fn change_scopes(
    State(s): State<AppState>,
    Signed { sess, principal: p }: Signed,
    Path(slug): Path<String>,
    Form(f): Form<ScopesForm>,
) -> Response {
    if let Err(r) = check_csrf(&sess, f.csrf.as_deref()) {
        return r;
    }
    let scopes: Vec<String> = f.scopes.split_whitespace().map(str::to_string).collect();
    let patch = keyway_core::admin::IntegrationPatch {
        scopes: Some(scopes),
        reason: f.reason.filter(|r| !r.trim().is_empty()),
        ..Default::default()
    };
    match s.broker.update_integration(&p.actor(), &slug, patch).await {
        Ok(_) => Redirect::to("/admin/integrations").into_response(),
        Err(e) => failure(&s, &sess, &e),
    }
}

async fn applications(State(s): State<AppState>, Signed { sess, .. }: Signed) -> Response {
    let result = async {
        let apps = s.broker.store.list_applications().await?;
        let keys = s.broker.store.list_api_keys(None).await?;
        let items: Vec<minijinja::Value> = apps
            .iter()
            .map(|a| {
                let app_keys: Vec<minijinja::Value> = keys
                    .iter()
                    .filter(|k| k.application_id.as_deref() == Some(a.id.as_str()))
                    .map(|k| context! { id => k.id, name => k.name, prefix => k.prefix, created_at => rfc3339(k.created_at), revoked => k.revoked_at.is_some() })
                    .collect();
                context! {
                    id => a.id, name => a.name, return_urls => a.return_urls,
                    allowed_origins => a.allowed_origins,
                    allowed_integrations => a.allowed_integrations,
                    accent => a.branding.accent_color, keys => app_keys,
                }
            })
            .collect();
        let admin_keys: Vec<minijinja::Value> = keys
            .iter()
            .filter(|k| k.application_id.is_none())
            .map(|k| context! { id => k.id, name => k.name, prefix => k.prefix, created_at => rfc3339(k.created_at), revoked => k.revoked_at.is_some() })
            .collect();
        Ok::<_, CoreError>(context! { items, admin_keys })
    }
    .await;
    match result {
        Ok(ctx) => view(&s, &sess, "applications", "console/applications.html", ctx),
        Err(e) => failure(&s, &sess, &e),
    }
}

async fn revoke_key(
    State(s): State<AppState>,
    Signed { sess, principal: p }: Signed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&sess, f.csrf.as_deref()) {
        return r;
    }
    match s.broker.revoke_api_key(&p.actor(), &id).await {
        Ok(true) => {
            s.console.end_for_key(&id);
            Redirect::to("/admin/applications").into_response()
        }
        Ok(false) => failure(&s, &sess, &CoreError::NotFound { what: "API key" }),
        Err(e) => failure(&s, &sess, &e),
    }
}

// --- audit, webhooks, agent sessions -------------------------------------------------

#[derive(Deserialize, Default)]
struct AuditQuery {
    /// Show records before this sequence number (newest first, 100 per page).
    before: Option<i64>,
}

async fn audit_view(
    s: &AppState,
    sess: &ConsoleSession,
    before: Option<i64>,
    verified: Option<keyway_core::audit::VerifyReport>,
) -> Response {
    let result = async {
        let page = s.broker.store.list_audit_desc(before, 100).await?;
        let oldest = page.last().map(|r| r.seq);
        let items: Vec<minijinja::Value> = page
            .iter()
            .map(|r| {
                context! {
                    seq => r.seq, at => rfc3339(r.event.at), action => r.event.action,
                    actor => r.event.actor, application_id => r.event.application_id,
                    user_id => r.event.user_id, connection_id => r.event.connection_id,
                    integration => r.event.integration, details => r.event.details,
                    hash => r.hash.chars().take(12).collect::<String>(),
                }
            })
            .collect();
        Ok::<_, CoreError>(context! {
            items,
            older => oldest.filter(|o| *o > 1 && page.len() == 100).map(|o| format!("/admin/audit?before={o}")),
            verified => verified.map(|v| context! {
                valid => v.valid, checked => v.checked, first_bad_seq => v.first_bad_seq,
                head_seq => v.head_seq, head_hash => v.head_hash,
            }),
        })
    }
    .await;
    match result {
        Ok(ctx) => view(s, sess, "audit", "console/audit.html", ctx),
        Err(e) => failure(s, sess, &e),
    }
}

async fn audit(
    State(s): State<AppState>,
    Signed { sess, .. }: Signed,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let before = q.ok().and_then(|Query(q)| q.before);
    audit_view(&s, &sess, before, None).await
}

async fn verify(
    State(s): State<AppState>,
    Signed { sess, .. }: Signed,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&sess, f.csrf.as_deref()) {
        return r;
    }
    match s.broker.verify_audit(None).await {
        Ok(report) => audit_view(&s, &sess, None, Some(report)).await,
        Err(e) => failure(&s, &sess, &e),
    }
}

async fn webhooks(State(s): State<AppState>, Signed { sess, .. }: Signed) -> Response {
    let result = async {
        let hooks = s.broker.list_webhooks(None).await?;
        let mut items = Vec::new();
        for h in &hooks {
            let deliveries = s.broker.webhook_deliveries(&h.id, 20).await?;
            items.push(context! {
                id => h.id, url => h.url, application_id => h.application_id,
                events => h.events.join(", "), created_at => rfc3339(h.created_at),
                deliveries => deliveries.iter().map(|d| context! {
                    event_type => d.event_type, state => d.state, attempts => d.attempts,
                    last_status => d.last_status, last_error => d.last_error,
                    created_at => rfc3339(d.created_at), delivered_at => d.delivered_at.map(rfc3339),
                }).collect::<Vec<_>>(),
            });
        }
        Ok::<_, CoreError>(context! { items })
    }
    .await;
    match result {
        Ok(ctx) => view(&s, &sess, "webhooks", "console/webhooks.html", ctx),
        Err(e) => failure(&s, &sess, &e),
    }
}

async fn agent_sessions(
    State(s): State<AppState>,
    Signed { sess, principal: p }: Signed,
) -> Response {
    let now = s.broker.now();
    match s.broker.agent_sessions(&p, None, None).await {
        Ok(list) => {
            let mut items: Vec<minijinja::Value> = Vec::new();
            for a in &list {
                let calls = s
                    .broker
                    .store
                    .list_agent_calls(&a.id, 200)
                    .await
                    .unwrap_or_default();
                let calls: Vec<minijinja::Value> = calls
                    .iter()
                    .map(|c| context! {
                        at => rfc3339(c.at), tool => c.tool, integration => c.integration,
                        method => c.method, path => c.path, status => c.status, outcome => c.outcome,
                    })
                    .collect();
                items.push(context! {
                    id => a.id, user_id => a.user_id, application_id => a.application_id,
                    client_name => a.client_name, integrations => a.integrations.join(", "),
                    access => a.access.as_str(), state => a.state(now),
                    created_at => rfc3339(a.created_at), expires_at => rfc3339(a.expires_at),
                    calls,
                });
            }
            view(
                &s,
                &sess,
                "sessions",
                "console/sessions.html",
                context! { items },
            )
        }
        Err(e) => failure(&s, &sess, &e),
    }
}

async fn revoke_session(
    State(s): State<AppState>,
    Signed { sess, principal: p }: Signed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&sess, f.csrf.as_deref()) {
        return r;
    }
    match s.broker.revoke_agent_session(&p, &id).await {
        Ok(_) => Redirect::to("/admin/sessions").into_response(),
        Err(e) => failure(&s, &sess, &e),
    }
}
