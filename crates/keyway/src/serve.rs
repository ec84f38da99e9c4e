//! `keyway serve`.

use crate::config::RawConfig;
use anyhow::{bail, Context, Result};
use keyway_core::secret::Secret;
use keyway_core::store::Store;
use keyway_core::vault::MasterKey;
use keyway_server::app::{build, spawn_housekeeping, StartOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub struct ServeArgs {
    pub dev: bool,
    /// Test only (with `dev`): unauthenticated `/mcp` as the demo user's session.
    pub mcp_conformance: bool,
}

fn read_master_key(raw: &RawConfig, data_dir: &Path, dev: bool) -> Result<MasterKey> {
    if let Some(k) = &raw.master_key {
        return MasterKey::from_base64(k).context("KEYWAY_MASTER_KEY / master_key");
    }
    if let Some(f) = &raw.master_key_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading master key file {}", f.display()))?;
        return MasterKey::from_base64(&text)
            .with_context(|| format!("master key file {}", f.display()));
    }
    if !dev {
        bail!(
            "no master key. Set KEYWAY_MASTER_KEY (base64 of 32 random bytes; `keyway master-key generate` prints one) \
             or master_key_file in the config. `keyway serve --dev` makes one for you, for trying Keyway only."
        );
    }
    let path = data_dir.join("master.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_base64(&text)
            .with_context(|| format!("dev master key {}", path.display()));
    }
    if !data_dir.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        // The data directory holds the database and, in dev mode, the master key.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let key = MasterKey::generate();
    write_private(&path, &key.to_base64())?;
    eprintln!(
        "Generated a dev master key in {} (mode 0600).",
        path.display()
    );
    Ok(key)
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, content: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// `postgres://` (or `postgresql://`) selects PostgreSQL; unset keeps the embedded SQLite.
fn check_database_url(raw: &RawConfig) -> Result<()> {
    if let Some(url) = &raw.database_url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("unsupported database URL scheme in KEYWAY_DATABASE_URL (expected postgres://)");
        }
    }
    if let Some(n) = raw.database_pool_size {
        if !(2..=1000).contains(&n) {
            bail!("database_pool_size must be between 2 and 1000");
        }
    }
    Ok(())
}

/// Opens the configured database and applies pending migrations (under a lock, so
/// replicas starting together take turns).
pub async fn open_store(raw: &RawConfig, data_dir: &Path) -> Result<Arc<dyn Store>> {
    check_database_url(raw)?;
    Ok(match &raw.database_url {
        Some(url) => {
            let mut settings = keyway_store::PgSettings::default();
            if let Some(n) = raw.database_pool_size {
                settings.max_connections = n;
            }
            Arc::new(
                keyway_store::PgStore::connect(url, &settings)
                    .await
                    .context("opening the PostgreSQL database")?,
            )
        }
        None => Arc::new(
            keyway_store::SqliteStore::open(data_dir)
                .await
                .context("opening the database")?,
        ),
    })
}

/// `keyway migrate`: applies pending migrations and exits.
pub async fn migrate(raw: RawConfig) -> Result<()> {
    let data_dir = raw
        .data_dir
        .clone()
        .unwrap_or_else(|| "./keyway-data".into());
    open_store(&raw, &data_dir).await?;
    match &raw.database_url {
        Some(_) => println!("PostgreSQL database is up to date"),
        None => println!("{} is up to date", data_dir.join("keyway.db").display()),
    }
    Ok(())
}

pub async fn run(raw: RawConfig, args: ServeArgs) -> Result<()> {
    let listen = raw
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:7400".into());
    let data_dir = raw
        .data_dir
        .clone()
        .unwrap_or_else(|| "./keyway-data".into());
    if raw.admin_key.as_ref().is_some_and(|k| k.len() < 32) {
        bail!("KEYWAY_ADMIN_KEY must be at least 32 characters");
    }
    let master_key = read_master_key(&raw, &data_dir, args.dev)?;
    let previous = raw
        .previous_master_keys
        .iter()
        .map(|k| MasterKey::from_base64(k))
        .collect::<Result<Vec<_>, _>>()
        .context("KEYWAY_PREVIOUS_MASTER_KEYS")?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let public_url = raw
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let store = open_store(&raw, &data_dir).await?;
    let mut opts = StartOptions::new(&public_url, store, master_key);
    opts.previous_master_keys = previous;
    opts.admin_key = raw.admin_key.clone().map(Secret::new);
    opts.dev = args.dev;
    opts.mcp_conformance = args.dev && args.mcp_conformance;
    opts.sandbox = raw.sandbox.unwrap_or(false);
    opts.custom_providers = raw.providers.clone();
    let mut settings = keyway_core::BrokerSettings::new(&public_url);
    if let Some(days) = raw.stale_after_days {
        if !(1..=3650).contains(&days) {
            bail!("stale_after_days must be between 1 and 3650");
        }
        settings.stale_after = time::Duration::days(days);
    }
    if let Some(secs) = raw.refresh_lease_secs {
        if !(2..=600).contains(&secs) {
            bail!("refresh_lease_secs must be between 2 and 600");
        }
        settings.lease_ttl = time::Duration::seconds(secs);
    }
    opts.settings = Some(settings);
    let built = build(opts).await?;
    spawn_housekeeping(built.broker.clone());
    tracing::info!(%addr, %public_url, providers = built.broker.catalog.len(), "keyway is listening");
    if let Some(dev) = &built.dev {
        print_dev_banner(dev, &public_url);
    }
    axum::serve(listener, built.router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server")?;
    tracing::info!("keyway stopped");
    Ok(())
}

fn print_dev_banner(dev: &keyway_server::dev::DevBootstrap, public_url: &str) {
    let line = "=".repeat(78);
    eprintln!("\n{line}\n  KEYWAY DEV MODE — NOT FOR PRODUCTION\n  A generated master key, a demo application and the built-in sandbox provider.\n{line}");
    if let (Some(admin), Some(app)) = (&dev.admin_key, &dev.application_key) {
        eprintln!("  These keys are shown once. Keep them:");
        eprintln!("    admin key:        {admin}");
        eprintln!("    application key:  {app}");
        eprintln!("  Try it:");
        eprintln!("    export KEYWAY_URL={public_url} KEYWAY_API_KEY={app}");
    } else {
        eprintln!("  The admin and application keys were shown at the first start.");
    }
    eprintln!(
        "  1. Open this connect link for the user `demo` (valid 15 minutes):\n       {}",
        dev.connect_url
    );
    eprintln!("  2. Then:  keyway token --integration sandbox --user demo");
    eprintln!("{line}\n");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
