//! Extractors whose rejections are problem+json (S10): JSON bodies, queries, and the
//! API-key principal.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use keyway_core::model::Principal;
use serde::de::DeserializeOwned;

/// A JSON body; malformed JSON is 400 `invalid_json`, a body of the wrong shape 422
/// `invalid_request` naming the field, a wrong content type 415, too large 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            clean(&e.body_text()),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {}", clean(&e.body_text())),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            )
        }
        other => ApiError::bad_request("invalid_request", clean(&other.body_text())),
    }
}

/// serde's messages are useful but can echo input; cut them to a sane length.
fn clean(s: &str) -> String {
    let s = s.replace(
        "Failed to deserialize the JSON body into the target type: ",
        "",
    );
    s.chars().take(300).collect()
}

/// A query string; a malformed one is 400 `invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad_request(
                "invalid_request",
                clean(&e.body_text()),
            )),
            Err(e) => Err(ApiError::bad_request(
                "invalid_request",
                clean(&e.body_text()),
            )),
        }
    }
}

/// The caller, from `Authorization: Bearer <api key>`.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        match state
            .broker
            .authenticate(key, state.config.admin_key_hash.as_deref())
            .await?
        {
            Some(p) => Ok(Auth(p)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

impl Auth {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.0 {
            Principal::Admin { .. } => Ok(()),
            _ => Err(ApiError::forbidden("this call needs an admin key")),
        }
    }

    /// The application the call acts for: an application key's own, or for an admin
    /// key the `application_id` it names.
    pub fn application(&self, named: Option<&str>) -> Result<String, ApiError> {
        match (&self.0, named) {
            (Principal::Application { application_id, .. }, None) => Ok(application_id.clone()),
            (Principal::Application { application_id, .. }, Some(n)) if n == application_id => Ok(application_id.clone()),
            (Principal::Application { .. }, Some(_)) => Err(ApiError::forbidden("an application key acts only for its own application")),
            (Principal::Admin { .. }, Some(n)) => Ok(n.to_string()),
            (Principal::Admin { .. }, None) => Err(ApiError::bad_request(
                "application_required",
                "an admin key must name the application (`application_id`); application keys imply it",
            )),
        }
    }
}
