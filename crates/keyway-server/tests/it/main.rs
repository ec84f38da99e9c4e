//! Integration tests: a real Keyway on port 0 against the testkit's fake provider.
//! One binary for the crate (each file in tests/ would link separately).

mod agents;
mod api_keys;
mod app_tokens;
mod bad_input;
mod connect;
mod console;
mod dev;
mod golden;
mod governance;
mod import;
mod isolation;
mod keepalive;
mod labels;
mod ops;
mod proxy;
mod refresh;
mod security;
mod shared;
mod tools;
mod webhooks;
mod widget;

use keyway_testkit::{App, FakeProvider, Flavor, TestKeyway, TestOptions};

/// Decodes the HTML entities minijinja writes into attribute values.
pub fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// A Keyway with one fake provider registered as `fake` and an integration `acme`.
pub async fn setup(flavor: Flavor) -> (TestKeyway, FakeProvider, App) {
    setup_with(flavor, &[]).await
}

pub async fn setup_with(flavor: Flavor, scopes: &[&str]) -> (TestKeyway, FakeProvider, App) {
    let fake = FakeProvider::start(flavor).await;
    let kw = TestKeyway::start(TestOptions::default().with_provider("fake", &fake)).await;
    let settings = if flavor == Flavor::Salesforce {
        serde_json::json!({"host": fake.url.trim_start_matches("http://")})
    } else {
        serde_json::json!({})
    };
    kw.create_integration("acme", "fake", scopes, settings)
        .await;
    let app = kw
        .create_app("App One", &["https://app.example/done"])
        .await;
    (kw, fake, app)
}
