//! Query parameters shared by list endpoints: status filters, opaque cursors, page sizes.

use crate::error::ApiError;
use base64::Engine;
use keyway_core::model::ConnectionStatus;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn status(v: Option<&str>) -> Result<Option<ConnectionStatus>, ApiError> {
    v.map(|v| {
        ConnectionStatus::parse(v).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                "`status` must be active, needs_reauthorization or revoked",
            )
        })
    })
    .transpose()
}

/// The id a cursor stands for; cursors are opaque to clients.
pub fn decode_cursor(v: Option<&str>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some("") => Ok(None),
        Some(c) => B64
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "`cursor` is not a cursor this API returned",
                )
            }),
    }
}

pub fn encode_cursor(id: &str) -> String {
    B64.encode(id.as_bytes())
}

pub fn limit(v: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    let l = v.unwrap_or(default);
    if (1..=max).contains(&l) {
        Ok(l)
    } else {
        Err(ApiError::bad_request(
            "invalid_request",
            format!("`limit` must be between 1 and {max}"),
        ))
    }
}
