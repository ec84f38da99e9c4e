//! `keyway`: the server (`keyway serve`) and the operators' and agents' CLI.

mod client;
mod config;
mod serve;

use anyhow::{Context, Result};

/// mimalloc: the token path allocates on several threads at once (Tokio workers, the
/// SQLite writer), where glibc's arena locks showed up as the top cost in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Args, Parser, Subcommand};
use client::{print, Client};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "keyway",
    version,
    about = "Self-hosted delegated-access broker for applications and AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Remote {
    /// Keyway server URL.
    #[arg(
        long,
        env = "KEYWAY_URL",
        default_value = "http://127.0.0.1:7400",
        global = true
    )]
    url: String,
    /// API key (admin or application).
    #[arg(long, env = "KEYWAY_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (API, connect pages, background jobs).
    Serve {
        /// A demo on this machine: generated master key, demo application, sandbox provider.
        #[arg(long)]
        dev: bool,
        /// Test only, with --dev: /mcp also answers requests without a token, as the demo
        /// user's sandbox session, so the MCP conformance suite can reach it.
        #[arg(long, requires = "dev")]
        mcp_conformance: bool,
        #[arg(long, env = "KEYWAY_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        listen: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long)]
        public_url: Option<String>,
    },
    /// Apply pending database migrations and exit (`serve` also applies them at start).
    Migrate {
        #[arg(long, env = "KEYWAY_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Get a fresh access token for a user's connection.
    Token {
        #[arg(long)]
        integration: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        organization: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List, show, annotate or disconnect connections.
    Connections {
        #[command(subcommand)]
        cmd: ConnectionsCmd,
    },
    /// Agent sessions: list, show, revoke.
    Sessions {
        #[command(subcommand)]
        cmd: SessionsCmd,
    },
    /// Create a connect session and print its widget URL.
    ConnectSession {
        #[arg(long)]
        user: String,
        #[arg(long)]
        organization: Option<String>,
        #[arg(long = "integration")]
        integrations: Vec<String>,
        #[arg(long)]
        return_url: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        purpose: Option<String>,
        /// With an admin key: the application to act for.
        #[arg(long)]
        application: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage applications.
    Applications {
        #[command(subcommand)]
        cmd: ApplicationsCmd,
    },
    /// Manage API keys.
    ApiKeys {
        #[command(subcommand)]
        cmd: ApiKeysCmd,
    },
    /// Manage integrations.
    Integrations {
        #[command(subcommand)]
        cmd: IntegrationsCmd,
    },
    /// Show the provider catalog.
    Providers {
        #[command(flatten)]
        remote: Remote,
    },
    /// Generate or rotate the master key.
    MasterKey {
        #[command(subcommand)]
        cmd: MasterKeyCmd,
    },
    /// Every connection with owner, scopes, activity and a stale flag.
    Inventory {
        /// `table` (default), or `csv`.
        #[arg(long, default_value = "table")]
        format: String,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        integration: Option<String>,
        #[arg(long)]
        application: Option<String>,
        /// Only stale connections.
        #[arg(long)]
        stale: bool,
        /// Only connections without an owner.
        #[arg(long)]
        no_owner: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Offboard users.
    Users {
        #[command(subcommand)]
        cmd: UsersCmd,
    },
    /// Verify or export the audit chain.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Revoke every connection of a user in every application (admin key).
    Offboard {
        user: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Recompute the chain; exits non-zero and names the first bad sequence number if it
    /// was tampered with.
    Verify {
        /// A head recorded from an earlier verification (`--anchor-seq N --anchor-hash H`).
        #[arg(long, requires = "anchor_hash")]
        anchor_seq: Option<i64>,
        #[arg(long, requires = "anchor_seq")]
        anchor_hash: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write the chain as JSON Lines to standard output.
    Export {
        #[arg(long, default_value_t = 0)]
        after_seq: i64,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum SessionsCmd {
    /// Sessions, newest first.
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        application: Option<String>,
        /// active, expired or revoked
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    Show {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// End a session at once.
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum ConnectionsCmd {
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        organization: Option<String>,
        #[arg(long)]
        integration: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    Show {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    Update {
        id: String,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        purpose: Option<String>,
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Disconnect: revoke at the provider and erase the tokens.
    Delete {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum ApplicationsCmd {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long = "return-url")]
        return_urls: Vec<String>,
        #[arg(long = "origin")]
        origins: Vec<String>,
        #[arg(long = "integration")]
        integrations: Vec<String>,
        #[arg(long)]
        login_url: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum ApiKeysCmd {
    /// Create a key for an application; it is printed once.
    Create {
        #[arg(long)]
        application: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[arg(long)]
        application: String,
        #[command(flatten)]
        remote: Remote,
    },
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum IntegrationsCmd {
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        client_id: String,
        /// Read the client secret from this environment variable (keeps it out of shell history).
        #[arg(long, default_value = "KEYWAY_CLIENT_SECRET")]
        client_secret_env: String,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Tenant settings as name=value (host=acme.my.salesforce.com).
        #[arg(long = "setting")]
        settings: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Change scopes (needs --reason) or settings.
    Update {
        slug: String,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum MasterKeyCmd {
    /// Print a new random master key (base64).
    Generate,
    /// After starting the server with a new KEYWAY_MASTER_KEY and the old one in
    /// KEYWAY_PREVIOUS_MASTER_KEYS: re-encrypt every stored secret with the new key.
    Rotate {
        #[command(flatten)]
        remote: Remote,
    },
}

fn init_tracing(level: Option<&str>, format: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info,sqlx=warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == Some("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn remote(r: &Remote) -> Result<Client> {
    Client::new(r.url.clone(), r.api_key.clone())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const CONN_COLS: &[(&str, &str)] = &[
    ("id", "/id"),
    ("user", "/user_id"),
    ("integration", "/integration"),
    ("status", "/status"),
    ("account", "/provider_account/name"),
    ("owner", "/owner"),
    ("last used", "/last_used_at"),
];

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The config file (if any) with `KEYWAY_*` variables applied over it.
fn load_config(path: Option<&std::path::Path>) -> Result<config::RawConfig> {
    let mut raw = match path {
        Some(p) => config::RawConfig::from_file(p)?,
        None => config::RawConfig::default(),
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    raw.apply_env(&env)?;
    Ok(raw)
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            dev,
            mcp_conformance,
            config,
            listen,
            data_dir,
            database_url,
            public_url,
        } => {
            let mut raw = load_config(config.as_deref())?;
            raw.listen = listen.or(raw.listen);
            raw.data_dir = data_dir.or(raw.data_dir);
            raw.database_url = database_url.or(raw.database_url);
            raw.public_url = public_url.or(raw.public_url);
            init_tracing(raw.log_level.as_deref(), raw.log_format.as_deref());
            serve::run(
                raw,
                serve::ServeArgs {
                    dev,
                    mcp_conformance,
                },
            )
            .await
        }
        Command::Migrate {
            config,
            data_dir,
            database_url,
        } => {
            let mut raw = load_config(config.as_deref())?;
            raw.data_dir = data_dir.or(raw.data_dir);
            raw.database_url = database_url.or(raw.database_url);
            init_tracing(raw.log_level.as_deref(), raw.log_format.as_deref());
            serve::migrate(raw).await
        }
        Command::Token {
            integration,
            user,
            organization,
            remote: r,
        } => {
            let v = remote(&r)?
                .call(Method::POST, "/v1/token", Some(json!({"integration": integration, "user_id": user, "organization_id": organization})))
                .await?;
            if r.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}",
                    v.get("access_token")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Sessions { cmd } => match cmd {
            SessionsCmd::List {
                user,
                application,
                state,
                remote: r,
            } => {
                let q: Vec<String> = [
                    ("user_id", user),
                    ("application_id", application),
                    ("state", state),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(&v))))
                .collect();
                let path = format!("/v1/agent-sessions?{}", q.join("&"));
                let v = remote(&r)?.call(Method::GET, &path, None).await?;
                print(
                    &v,
                    r.json,
                    &[
                        ("id", "/id"),
                        ("user", "/user_id"),
                        ("client", "/client_name"),
                        ("integrations", "/integrations"),
                        ("access", "/access"),
                        ("state", "/state"),
                        ("expires", "/expires_at"),
                    ],
                );
                Ok(())
            }
            SessionsCmd::Show { id, remote: r } => {
                let v = remote(&r)?
                    .call(
                        Method::GET,
                        &format!("/v1/agent-sessions/{}", enc(&id)),
                        None,
                    )
                    .await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            SessionsCmd::Revoke { id, remote: r } => {
                let v = remote(&r)?
                    .call(
                        Method::DELETE,
                        &format!("/v1/agent-sessions/{}", enc(&id)),
                        None,
                    )
                    .await?;
                if r.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("session {id} ended");
                }
                Ok(())
            }
        },
        Command::Connections { cmd } => match cmd {
            ConnectionsCmd::List {
                user,
                organization,
                integration,
                status,
                cursor,
                remote: r,
            } => {
                let mut q = Vec::new();
                for (k, v) in [
                    ("user_id", user),
                    ("organization_id", organization),
                    ("integration", integration),
                    ("status", status),
                    ("cursor", cursor),
                ] {
                    if let Some(v) = v {
                        q.push(format!("{k}={}", enc(&v)));
                    }
                }
                let path = if q.is_empty() {
                    "/v1/connections".to_string()
                } else {
                    format!("/v1/connections?{}", q.join("&"))
                };
                let v = remote(&r)?.call(Method::GET, &path, None).await?;
                print(&v, r.json, CONN_COLS);
                Ok(())
            }
            ConnectionsCmd::Show { id, remote: r } => {
                let v = remote(&r)?
                    .call(Method::GET, &format!("/v1/connections/{}", enc(&id)), None)
                    .await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            ConnectionsCmd::Update {
                id,
                owner,
                purpose,
                label,
                remote: r,
            } => {
                let mut body = serde_json::Map::new();
                for (k, v) in [("owner", owner), ("purpose", purpose), ("label", label)] {
                    if let Some(v) = v {
                        body.insert(k.into(), Value::String(v));
                    }
                }
                let v = remote(&r)?
                    .call(
                        Method::PATCH,
                        &format!("/v1/connections/{}", enc(&id)),
                        Some(Value::Object(body)),
                    )
                    .await?;
                print(&v, r.json, CONN_COLS);
                Ok(())
            }
            ConnectionsCmd::Delete { id, remote: r } => {
                let v = remote(&r)?
                    .call(
                        Method::DELETE,
                        &format!("/v1/connections/{}", enc(&id)),
                        None,
                    )
                    .await?;
                if r.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!(
                        "disconnected {id}; revocation at the provider: {}",
                        v.get("revocation").and_then(Value::as_str).unwrap_or("-")
                    );
                }
                Ok(())
            }
        },
        Command::ConnectSession {
            user,
            organization,
            integrations,
            return_url,
            owner,
            purpose,
            application,
            remote: r,
        } => {
            let body = json!({
                "user_id": user, "organization_id": organization,
                "integrations": if integrations.is_empty() { Value::Null } else { json!(integrations) },
                "return_url": return_url, "owner": owner, "purpose": purpose, "application_id": application,
            });
            let v = remote(&r)?
                .call(Method::POST, "/v1/connect/sessions", Some(body))
                .await?;
            if r.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}",
                    v.get("url").and_then(Value::as_str).unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Applications { cmd } => match cmd {
            ApplicationsCmd::Create {
                name,
                return_urls,
                origins,
                integrations,
                login_url,
                remote: r,
            } => {
                let body = json!({
                    "name": name, "return_urls": return_urls, "allowed_origins": origins,
                    "allowed_integrations": if integrations.is_empty() { Value::Null } else { json!(integrations) },
                    "login_url": login_url,
                });
                let v = remote(&r)?
                    .call(Method::POST, "/v1/applications", Some(body))
                    .await?;
                print(
                    &v,
                    r.json,
                    &[
                        ("id", "/id"),
                        ("name", "/name"),
                        ("return urls", "/return_urls"),
                    ],
                );
                Ok(())
            }
            ApplicationsCmd::List { remote: r } => {
                let v = remote(&r)?
                    .call(Method::GET, "/v1/applications", None)
                    .await?;
                print(
                    &v,
                    r.json,
                    &[
                        ("id", "/id"),
                        ("name", "/name"),
                        ("return urls", "/return_urls"),
                        ("created", "/created_at"),
                    ],
                );
                Ok(())
            }
        },
        Command::ApiKeys { cmd } => match cmd {
            ApiKeysCmd::Create {
                application,
                name,
                remote: r,
            } => {
                let v = remote(&r)?
                    .call(
                        Method::POST,
                        &format!("/v1/applications/{}/api-keys", enc(&application)),
                        Some(json!({"name": name})),
                    )
                    .await?;
                if r.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!(
                        "{}",
                        v.get("key").and_then(Value::as_str).unwrap_or_default()
                    );
                    eprintln!(
                        "(shown once; id {})",
                        v.get("id").and_then(Value::as_str).unwrap_or_default()
                    );
                }
                Ok(())
            }
            ApiKeysCmd::List {
                application,
                remote: r,
            } => {
                let v = remote(&r)?
                    .call(
                        Method::GET,
                        &format!("/v1/applications/{}/api-keys", enc(&application)),
                        None,
                    )
                    .await?;
                print(
                    &v,
                    r.json,
                    &[
                        ("id", "/id"),
                        ("name", "/name"),
                        ("prefix", "/prefix"),
                        ("created", "/created_at"),
                        ("revoked", "/revoked_at"),
                    ],
                );
                Ok(())
            }
            ApiKeysCmd::Revoke { id, remote: r } => {
                remote(&r)?
                    .call(Method::DELETE, &format!("/v1/api-keys/{}", enc(&id)), None)
                    .await?;
                println!("revoked {id}");
                Ok(())
            }
        },
        Command::Integrations { cmd } => match cmd {
            IntegrationsCmd::Create {
                slug,
                provider,
                client_id,
                client_secret_env,
                scopes,
                settings,
                remote: r,
            } => {
                let secret = std::env::var(&client_secret_env).ok();
                let settings: BTreeMap<String, String> = settings
                    .iter()
                    .map(|s| {
                        s.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .context("--setting takes name=value")
                    })
                    .collect::<Result<_>>()?;
                let body = json!({"slug": slug, "provider": provider, "client_id": client_id, "client_secret": secret, "scopes": scopes, "settings": settings});
                let v = remote(&r)?
                    .call(Method::POST, "/v1/integrations", Some(body))
                    .await?;
                print(
                    &v,
                    r.json,
                    &[
                        ("slug", "/slug"),
                        ("provider", "/provider"),
                        ("scopes", "/scopes"),
                        ("redirect uri", "/redirect_uri"),
                    ],
                );
                Ok(())
            }
            IntegrationsCmd::List { remote: r } => {
                let v = remote(&r)?
                    .call(Method::GET, "/v1/integrations", None)
                    .await?;
                print(
                    &v,
                    r.json,
                    &[
                        ("slug", "/slug"),
                        ("provider", "/provider"),
                        ("client id", "/client_id"),
                        ("scopes", "/scopes"),
                        ("secret", "/has_client_secret"),
                    ],
                );
                Ok(())
            }
            IntegrationsCmd::Update {
                slug,
                scopes,
                reason,
                remote: r,
            } => {
                let body = json!({"scopes": if scopes.is_empty() { Value::Null } else { json!(scopes) }, "reason": reason});
                let v = remote(&r)?
                    .call(
                        Method::PATCH,
                        &format!("/v1/integrations/{}", enc(&slug)),
                        Some(body),
                    )
                    .await?;
                print(
                    &v,
                    r.json,
                    &[
                        ("slug", "/slug"),
                        ("provider", "/provider"),
                        ("scopes", "/scopes"),
                    ],
                );
                Ok(())
            }
        },
        Command::Providers { remote: r } => {
            let v = remote(&r)?.call(Method::GET, "/v1/providers", None).await?;
            print(
                &v,
                r.json,
                &[
                    ("id", "/id"),
                    ("name", "/name"),
                    ("kind", "/kind"),
                    ("pkce", "/pkce"),
                    ("revocation", "/revocation"),
                    ("settings", "/settings"),
                ],
            );
            Ok(())
        }
        Command::Inventory {
            format,
            status,
            integration,
            application,
            stale,
            no_owner,
            remote: r,
        } => {
            let mut q = Vec::new();
            for (k, v) in [
                ("status", status),
                ("integration", integration),
                ("application_id", application),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            if stale {
                q.push("stale=true".into());
            }
            if no_owner {
                q.push("no_owner=true".into());
            }
            let client = remote(&r)?;
            if format == "csv" {
                q.push("format=csv".into());
                let v = client
                    .call(Method::GET, &format!("/v1/inventory?{}", q.join("&")), None)
                    .await?;
                print!("{}", v.as_str().unwrap_or_default());
                return Ok(());
            }
            let mut rows = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut page_q = q.clone();
                if let Some(c) = &cursor {
                    page_q.push(format!("cursor={}", enc(c)));
                }
                let v = client
                    .call(
                        Method::GET,
                        &format!("/v1/inventory?{}", page_q.join("&")),
                        None,
                    )
                    .await?;
                rows.extend(v["data"].as_array().cloned().unwrap_or_default());
                match v["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            print(
                &Value::Array(rows),
                r.json,
                &[
                    ("application", "/application_name"),
                    ("user", "/user_id"),
                    ("integration", "/integration"),
                    ("account", "/provider_account_name"),
                    ("owner", "/owner"),
                    ("status", "/status"),
                    ("missing scopes", "/missing_scopes"),
                    ("last used", "/last_used_at"),
                    ("stale", "/stale"),
                ],
            );
            Ok(())
        }
        Command::Users {
            cmd: UsersCmd::Offboard { user, remote: r },
        } => {
            let v = remote(&r)?
                .call(
                    Method::POST,
                    &format!("/v1/users/{}/offboard", enc(&user)),
                    None,
                )
                .await?;
            if r.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print(
                    &v["connections"],
                    false,
                    &[
                        ("connection", "/connection_id"),
                        ("application", "/application_id"),
                        ("integration", "/integration"),
                        ("account", "/provider_account_name"),
                        ("revocation", "/revocation"),
                    ],
                );
            }
            Ok(())
        }
        Command::Audit {
            cmd:
                AuditCmd::Verify {
                    anchor_seq,
                    anchor_hash,
                    remote: r,
                },
        } => {
            let v = remote(&r)?
                .call(
                    Method::POST,
                    "/v1/audit/verify",
                    Some(json!({"anchor_seq": anchor_seq, "anchor_hash": anchor_hash})),
                )
                .await?;
            if r.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if v["valid"] == Value::Bool(true) {
                println!(
                    "audit chain valid: {} records; head {} {}",
                    v["checked"],
                    v["head_seq"],
                    v["head_hash"].as_str().unwrap_or("-")
                );
            }
            if v["valid"] != Value::Bool(true) {
                anyhow::bail!(
                    "audit chain is broken at sequence number {} ({} records checked)",
                    v["first_bad_seq"],
                    v["checked"]
                );
            }
            Ok(())
        }
        Command::Audit {
            cmd:
                AuditCmd::Export {
                    after_seq,
                    remote: r,
                },
        } => {
            let client = remote(&r)?;
            let mut after = after_seq;
            loop {
                let v = client
                    .call(
                        Method::GET,
                        &format!("/v1/audit?after_seq={after}&limit=1000"),
                        None,
                    )
                    .await?;
                for e in v["data"].as_array().cloned().unwrap_or_default() {
                    println!("{}", serde_json::to_string(&e)?);
                }
                match v["next_after_seq"].as_i64() {
                    Some(n) => after = n,
                    None => break,
                }
            }
            Ok(())
        }
        Command::MasterKey { cmd } => match cmd {
            MasterKeyCmd::Generate => {
                println!("{}", keyway_core::vault::MasterKey::generate().to_base64());
                Ok(())
            }
            MasterKeyCmd::Rotate { remote: r } => {
                let v = remote(&r)?
                    .call(Method::POST, "/v1/admin/master-key/rotate", None)
                    .await?;
                print(
                    &v,
                    r.json,
                    &[
                        ("checked", "/checked"),
                        ("resealed", "/resealed"),
                        ("failed", "/failed"),
                        ("active key", "/active_key_id"),
                    ],
                );
                Ok(())
            }
        },
    }
}
