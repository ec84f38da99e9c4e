//! `ANY /v1/proxy/{integration}/{path}`: the provider API with the token injected here.

use crate::error::ApiError;
use crate::extract::Auth;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use keyway_core::proxy::{ProxyRequest, MAX_PROXY_BODY};
use keyway_core::tokens::TokenRequest;

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|v| !v.is_empty())
}

/// Calls the integration's API for the user named by `Keyway-User-Id` (and optionally
/// `Keyway-Organization-Id`); the provider token never leaves Keyway. Any method; the
/// provider's answer is returned as it came, less hop-by-hop headers and cookies.
pub async fn proxy(
    State(s): State<AppState>,
    auth: Auth,
    Path((integration, _path)): Path<(String, String)>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body may be at most {MAX_PROXY_BODY} bytes"),
        )
    })?;
    let user_id = header(&headers, "keyway-user-id").ok_or_else(|| {
        ApiError::bad_request("missing_user", "send the user in the Keyway-User-Id header")
    })?;
    let application_id = auth.application(header(&headers, "keyway-application-id").as_deref())?;
    // The raw (still percent-encoded) path after the integration, as the client sent it.
    let prefix = format!("/v1/proxy/{integration}/");
    let raw_path = uri
        .path()
        .strip_prefix(&prefix)
        .unwrap_or_default()
        .to_string();
    let forwarded: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
        .collect();
    let resp = s
        .broker
        .proxy(ProxyRequest {
            token: TokenRequest {
                application_id,
                integration,
                user_id,
                organization_id: header(&headers, "keyway-organization-id"),
                actor: auth.0.actor(),
                connection_id: header(&headers, "keyway-connection-id"),
                label: header(&headers, "keyway-connection-label"),
            },
            method: method.to_string(),
            path: raw_path,
            query: uri.query().map(str::to_string),
            headers: forwarded,
            body: body.to_vec(),
        })
        .await?;
    let mut out = (
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY),
        resp.body,
    )
        .into_response();
    for (k, v) in resp.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(&v)) {
            out.headers_mut().append(k, v);
        }
    }
    Ok(out)
}

/// The proxy's entry in the OpenAPI document (the handler's raw-body signature is not
/// something utoipa can describe).
#[utoipa::path(method(get, post, put, patch, delete), path = "/v1/proxy/{integration}/{path}", tag = "proxy",
    params(("integration" = String, Path), ("path" = String, Path, description = "Path under the provider's API base"),
        ("Keyway-User-Id" = String, Header), ("Keyway-Organization-Id" = Option<String>, Header)),
    responses((status = 200, description = "The provider's answer"), (status = 400, body = crate::error::Problem),
        (status = 403, description = "`host_not_allowed`", body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 413, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("api_key" = [])))]
#[allow(dead_code)]
pub(crate) fn proxy_doc() {}
