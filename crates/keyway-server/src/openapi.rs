//! The OpenAPI document, generated from the handlers' annotations. A golden-file test
//! keeps `docs/openapi.json` equal to it, so contract changes show up in review.

use crate::api::{
    admin, agents, connect, connections, governance, import, proxy, tokens, tools, types, webhooks,
};
use crate::error::Problem;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin or application API key"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Keyway", description = "Self-hosted delegated-access broker: connect accounts, get fresh tokens, govern every connection.", version = "1"),
    paths(
        admin::create_integration, admin::list_integrations, admin::get_integration, admin::patch_integration,
        admin::create_application, admin::update_application, admin::list_applications, admin::create_api_key, admin::list_api_keys, admin::revoke_api_key,
        admin::list_providers, admin::reseal,
        connect::create_session, connect::authorize,
        tokens::issue,
        connections::list, connections::get, connections::patch, connections::delete, import::import,
        governance::inventory, governance::offboard, governance::audit, governance::verify,
        proxy::proxy_doc,
        tools::list, tools::call,
        agents::identify, agents::list, agents::get, agents::revoke,
        webhooks::create, webhooks::list, webhooks::delete, webhooks::deliveries,
    ),
    components(schemas(Problem, types::ProviderAccount)),
    modifiers(&ApiKeyAuth),
    tags((name = "tokens"), (name = "connect"), (name = "connections"), (name = "governance"), (name = "webhooks"), (name = "proxy"), (name = "tools"), (name = "agents"), (name = "admin"))
)]
pub struct ApiDoc;

/// The document as served at `/openapi.json`.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}
