//! Template rendering and the headers every HTML page carries (S8).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub struct Pages {
    env: minijinja::Environment<'static>,
}

/// No inline script or style; nothing may frame these pages; forms post to Keyway,
/// which redirects to the provider.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https: http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'; base-uri 'none'";

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

impl Pages {
    pub fn new() -> Self {
        let mut env = minijinja::Environment::new();
        for (name, src) in [
            ("layout.html", include_str!("../../templates/layout.html")),
            ("connect.html", include_str!("../../templates/connect.html")),
            ("link.html", include_str!("../../templates/link.html")),
            ("key.html", include_str!("../../templates/key.html")),
            ("message.html", include_str!("../../templates/message.html")),
            (
                "sandbox_authorize.html",
                include_str!("../../templates/sandbox_authorize.html"),
            ),
        ] {
            if let Err(e) = env.add_template(name, src) {
                panic!("template {name} does not parse: {e}");
            }
        }
        Self { env }
    }

    pub fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        let html = match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(template = name, error = %e, "template failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
            }
        };
        let mut resp = (status, html).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        // Connect URLs carry tokens: never send them on to the provider as a Referer.
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}
