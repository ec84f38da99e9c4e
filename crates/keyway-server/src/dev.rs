//! `serve --dev`: a working demo on a fresh machine. Creates the default application,
//! an admin key and an application key (shown once), the `sandbox` integration, and a
//! connect link for the user `demo`.

use crate::sandbox::CLIENT_ID;
use keyway_core::admin::{IntegrationPatch, NewApplication, NewIntegration};
use keyway_core::connect::NewConnectSession;
use keyway_core::secret::Secret;
use keyway_core::{Broker, CoreError};

#[derive(Debug)]
pub struct DevBootstrap {
    /// Set only on the first start: keys are shown once.
    pub admin_key: Option<String>,
    pub application_key: Option<String>,
    pub application_id: String,
    pub connect_url: String,
}

pub const DEMO_USER: &str = "demo";
const DEV_ACTOR: &str = "system:dev";

pub async fn bootstrap(
    broker: &Broker,
    sandbox_secret: &Secret,
) -> Result<DevBootstrap, CoreError> {
    let apps = broker.store.list_applications().await?;
    let (app, admin_key, application_key) = match apps.into_iter().next() {
        Some(app) => (app, None, None),
        None => {
            let app = broker
                .create_application(
                    DEV_ACTOR,
                    NewApplication {
                        name: "Demo application".into(),
                        allowed_origins: vec![broker.settings.public_url.clone()],
                        // The clearly marked dev login stands in for the application's own.
                        login_url: Some(format!("{}/dev/login", broker.settings.public_url)),
                        ..Default::default()
                    },
                )
                .await?;
            let (_, admin) = broker.create_api_key(DEV_ACTOR, None, "dev admin").await?;
            let (_, appkey) = broker
                .create_api_key(DEV_ACTOR, Some(&app.id), "dev application")
                .await?;
            (app, Some(admin), Some(appkey))
        }
    };
    match broker.store.get_integration("sandbox").await? {
        None => {
            broker
                .create_integration(
                    DEV_ACTOR,
                    NewIntegration {
                        slug: "sandbox".into(),
                        provider: "sandbox".into(),
                        client_id: CLIENT_ID.into(),
                        client_secret: Some(sandbox_secret.clone()),
                        scopes: vec!["profile".into(), "notes:read".into()],
                        settings: Default::default(),
                    },
                )
                .await?;
        }
        Some(_) => {
            // The sandbox keeps its state in memory and draws a new client secret at each
            // start; keep the integration in step.
            broker
                .update_integration(
                    DEV_ACTOR,
                    "sandbox",
                    IntegrationPatch {
                        client_secret: Some(sandbox_secret.clone()),
                        ..Default::default()
                    },
                )
                .await?;
        }
    }
    let mut session = NewConnectSession {
        user_id: DEMO_USER.into(),
        ..Default::default()
    };
    session.purpose = Some("Keyway dev demo".into());
    let (_, _, connect_url) = broker.create_connect_session(&app.id, session).await?;
    Ok(DevBootstrap {
        admin_key,
        application_key,
        application_id: app.id,
        connect_url,
    })
}
