//! Configuration in two steps: a raw struct read from the TOML file with
//! `deny_unknown_fields` (an unknown key is an error that names it), overridden by
//! `KEYWAY_*` variables and flags; then validated into what `serve` needs.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    /// PostgreSQL connections per replica (16).
    pub database_pool_size: Option<u32>,
    /// How long a refresh lease is held at most, in seconds (45): longer than the slowest
    /// provider refresh, short enough that a stuck replica's lease soon passes on.
    pub refresh_lease_secs: Option<i64>,
    /// Base64 master key; prefer `master_key_file` or `KEYWAY_MASTER_KEY`.
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    /// Older master keys that can still open values, during a rotation.
    #[serde(default)]
    pub previous_master_keys: Vec<String>,
    pub admin_key: Option<String>,
    /// Serve the built-in sandbox provider outside `--dev`.
    pub sandbox: Option<bool>,
    /// Connections unused for this many days are flagged stale in the inventory (90).
    pub stale_after_days: Option<i64>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    /// Custom providers, same schema as the built-in catalog.
    #[serde(default)]
    pub providers: BTreeMap<String, toml::Value>,
}

/// Variables `keyway` reads; any other `KEYWAY_*` variable is reported as unknown.
pub const KNOWN_ENV: &[&str] = &[
    "KEYWAY_CONFIG",
    "KEYWAY_LISTEN",
    "KEYWAY_PUBLIC_URL",
    "KEYWAY_DATA_DIR",
    "KEYWAY_DATABASE_URL",
    "KEYWAY_DATABASE_POOL_SIZE",
    "KEYWAY_REFRESH_LEASE_SECS",
    "KEYWAY_MASTER_KEY",
    "KEYWAY_MASTER_KEY_FILE",
    "KEYWAY_PREVIOUS_MASTER_KEYS",
    "KEYWAY_ADMIN_KEY",
    "KEYWAY_SANDBOX",
    "KEYWAY_STALE_AFTER_DAYS",
    "KEYWAY_LOG",
    "KEYWAY_LOG_FORMAT",
    "KEYWAY_URL",
    "KEYWAY_API_KEY",
];

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))
    }

    /// `KEYWAY_*` variables override the file.
    pub fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<()> {
        for k in env.keys() {
            if k.starts_with("KEYWAY_") && !KNOWN_ENV.contains(&k.as_str()) {
                bail!(
                    "unknown environment variable {k} (known: {})",
                    KNOWN_ENV.join(", ")
                );
            }
        }
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        if let Some(v) = get("KEYWAY_LISTEN") {
            self.listen = Some(v);
        }
        if let Some(v) = get("KEYWAY_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("KEYWAY_DATA_DIR") {
            self.data_dir = Some(v.into());
        }
        if let Some(v) = get("KEYWAY_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = get("KEYWAY_DATABASE_POOL_SIZE") {
            self.database_pool_size = Some(v.parse().map_err(|_| {
                anyhow::anyhow!("KEYWAY_DATABASE_POOL_SIZE must be a whole number")
            })?);
        }
        if let Some(v) = get("KEYWAY_REFRESH_LEASE_SECS") {
            self.refresh_lease_secs = Some(v.parse().map_err(|_| {
                anyhow::anyhow!("KEYWAY_REFRESH_LEASE_SECS must be a whole number of seconds")
            })?);
        }
        if let Some(v) = get("KEYWAY_MASTER_KEY") {
            self.master_key = Some(v);
        }
        if let Some(v) = get("KEYWAY_MASTER_KEY_FILE") {
            self.master_key_file = Some(v.into());
        }
        if let Some(v) = get("KEYWAY_PREVIOUS_MASTER_KEYS") {
            self.previous_master_keys = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("KEYWAY_ADMIN_KEY") {
            self.admin_key = Some(v);
        }
        if let Some(v) = get("KEYWAY_SANDBOX") {
            self.sandbox = Some(matches!(v.as_str(), "1" | "true" | "yes" | "on"));
        }
        if let Some(v) = get("KEYWAY_STALE_AFTER_DAYS") {
            self.stale_after_days = Some(v.parse().map_err(|_| {
                anyhow::anyhow!("KEYWAY_STALE_AFTER_DAYS must be a whole number of days")
            })?);
        }
        if let Some(v) = get("KEYWAY_LOG") {
            self.log_level = Some(v);
        }
        if let Some(v) = get("KEYWAY_LOG_FORMAT") {
            self.log_format = Some(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_file_key_is_named() {
        let err = toml::from_str::<RawConfig>("listen = '127.0.0.1:1'\nlisten_adress = 'x'\n")
            .expect_err("unknown");
        assert!(err.message().contains("listen_adress"), "{}", err.message());
    }

    #[test]
    fn env_overrides_file_and_unknown_env_is_named() {
        let mut c: RawConfig =
            toml::from_str("listen = '127.0.0.1:1'\npublic_url = 'http://a'\n").expect("parse");
        let env: BTreeMap<String, String> =
            [("KEYWAY_LISTEN".to_string(), "127.0.0.1:2".to_string())].into();
        c.apply_env(&env).expect("env");
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(c.public_url.as_deref(), Some("http://a"));
        let bad: BTreeMap<String, String> = [("KEYWAY_LISTN".to_string(), "x".to_string())].into();
        let err = c.apply_env(&bad).expect_err("unknown env");
        assert!(err.to_string().contains("KEYWAY_LISTN"));
    }

    #[test]
    fn custom_providers_parse_from_config() {
        let c: RawConfig = toml::from_str(
            "[providers.acme]\nname='Acme'\napi_base_url='https://api.acme.test'\n[providers.acme.oauth2]\nauthorize_url='https://acme.test/a'\ntoken_url='https://acme.test/t'\n",
        )
        .expect("parse");
        assert!(c.providers.contains_key("acme"));
    }
}
