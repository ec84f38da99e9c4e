//! Template rendering and the headers every HTML page carries (S8).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub struct Pages {
    env: minijinja::Environment<'static>,
}

/// No inline script or style; nothing may frame these pages; forms post to Keyway,
/// which redirects to the provider.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self' https: http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'; base-uri 'none'";

/// What a page relaxes in its headers: the embeddable widget may be framed by the
/// application's allowed origins, and shows the application's logo.
#[derive(Debug, Default, Clone)]
pub struct PageSecurity {
    pub frame_ancestors: Vec<String>,
    pub img_src: Vec<String>,
}

impl PageSecurity {
    fn csp(&self) -> Option<String> {
        if self.frame_ancestors.is_empty() && self.img_src.is_empty() {
            return None;
        }
        let frame = if self.frame_ancestors.is_empty() {
            "'none'".to_string()
        } else {
            self.frame_ancestors.join(" ")
        };
        let img = if self.img_src.is_empty() {
            String::new()
        } else {
            format!(" {}", self.img_src.join(" "))
        };
        Some(format!("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{img}; form-action 'self' https: http://127.0.0.1:* http://localhost:*; frame-ancestors {frame}; base-uri 'none'"))
    }
}

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
            ("approve.html", include_str!("../../templates/approve.html")),
            (
                "dev_login.html",
                include_str!("../../templates/dev_login.html"),
            ),
            (
                "console/layout.html",
                include_str!("../../templates/console/layout.html"),
            ),
            (
                "console/login.html",
                include_str!("../../templates/console/login.html"),
            ),
            (
                "console/error.html",
                include_str!("../../templates/console/error.html"),
            ),
            (
                "console/dashboard.html",
                include_str!("../../templates/console/dashboard.html"),
            ),
            (
                "console/connections.html",
                include_str!("../../templates/console/connections.html"),
            ),
            (
                "console/connection.html",
                include_str!("../../templates/console/connection.html"),
            ),
            (
                "console/integrations.html",
                include_str!("../../templates/console/integrations.html"),
            ),
            (
                "console/applications.html",
                include_str!("../../templates/console/applications.html"),
            ),
            (
                "console/keys.html",
                include_str!("../../templates/console/keys.html"),
            ),
            (
                "console/audit.html",
                include_str!("../../templates/console/audit.html"),
            ),
            (
                "console/webhooks.html",
                include_str!("../../templates/console/webhooks.html"),
            ),
            (
                "console/sessions.html",
                include_str!("../../templates/console/sessions.html"),
            ),
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
        self.render_with(status, name, ctx, &PageSecurity::default())
    }

    /// Renders with relaxed framing or image sources; values come from the application's
    /// checked settings, never from the request.
    pub fn render_with(
        &self,
        status: StatusCode,
        name: &str,
        ctx: minijinja::Value,
        sec: &PageSecurity,
    ) -> Response {
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
        match sec.csp().and_then(|c| HeaderValue::from_str(&c).ok()) {
            Some(v) => {
                // CSP frame-ancestors names who may frame; X-Frame-Options cannot.
                h.insert(header::CONTENT_SECURITY_POLICY, v);
                if sec.frame_ancestors.is_empty() {
                    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
                }
            }
            None => {
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                );
                h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            }
        }
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
