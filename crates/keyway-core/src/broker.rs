//! The broker: the services every request goes through, wired once at start-up.

use crate::catalog::{Catalog, CatalogEntry};
use crate::clock::Clock;
use crate::error::CoreError;
use crate::model::Integration;
use crate::oauth::ProviderCtx;
use crate::outbound::HttpClient;
use crate::store::Store;
use crate::tokens::TokenCache;
use crate::vault::{FieldRef, Vault};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tunables, with defaults that suit production.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Keyway's public base URL, without a trailing slash.
    pub public_url: String,
    pub connect_session_ttl: time::Duration,
    /// How long an OAuth `state` stays usable.
    pub state_ttl: time::Duration,
    /// Tokens expiring within this window are refreshed before being handed out.
    pub refresh_ahead: time::Duration,
    /// How long a refresh lease is held at most; longer than the worst-case refresh.
    pub lease_ttl: time::Duration,
    /// Attempts at a refresh on transient failures (R3), and the first backoff delay.
    pub refresh_attempts: u32,
    pub retry_base_delay: Duration,
    /// Timeout of each provider call.
    pub provider_timeout: Duration,
    /// `last_used_at` is written at most this often per connection.
    pub usage_write_interval: time::Duration,
    /// A connection unused for longer than this is flagged stale in the inventory.
    pub stale_after: time::Duration,
    /// Keep-alive (R5): refresh tokens expiring within this window...
    pub keepalive_window: time::Duration,
    /// ...on connections used within this period.
    pub keepalive_recent_use: time::Duration,
    /// Validate tokens that never expire this often, where the provider has an identity call.
    pub validate_every: time::Duration,
    /// At most this many keep-alive calls per provider per run (rate limit).
    pub keepalive_per_provider: usize,
}

impl BrokerSettings {
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_string(),
            connect_session_ttl: time::Duration::minutes(15),
            state_ttl: time::Duration::minutes(10),
            refresh_ahead: time::Duration::seconds(60),
            lease_ttl: time::Duration::seconds(45),
            refresh_attempts: 3,
            retry_base_delay: Duration::from_millis(200),
            provider_timeout: Duration::from_secs(10),
            usage_write_interval: time::Duration::seconds(60),
            stale_after: time::Duration::days(90),
            keepalive_window: time::Duration::minutes(5),
            keepalive_recent_use: time::Duration::days(7),
            validate_every: time::Duration::hours(24),
            keepalive_per_provider: 20,
        }
    }

    /// The single OAuth redirect URI registered with every provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth/callback", self.public_url)
    }
}

pub struct Broker {
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    pub catalog: Arc<Catalog>,
    pub http: Arc<dyn HttpClient>,
    pub clock: Arc<dyn Clock>,
    pub settings: BrokerSettings,
    /// Identifies this process as a refresh-lease holder.
    pub holder_id: String,
    pub(crate) cache: Arc<TokenCache>,
    /// Connection changes made by other processes (see [`Changes`]).
    pub(crate) changes: Changes,
    pub(crate) flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) stats: crate::tokens::RefreshStats,
    /// Authenticated API keys by hash.
    pub(crate) auth_cache: crate::cache::TtlCache<String, crate::model::Principal>,
    pub(crate) integration_cache: crate::cache::TtlCache<String, Integration>,
    audit_queue: Option<crate::audit::AuditQueue>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("public_url", &self.settings.public_url)
            .field("holder_id", &self.holder_id)
            .finish()
    }
}

impl Broker {
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        catalog: Arc<Catalog>,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
        settings: BrokerSettings,
    ) -> Self {
        // Group commit needs a runtime to run on; without one (plain unit tests) each
        // event is written on its own.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let audit_queue = runtime
            .as_ref()
            .map(|_| crate::audit::AuditQueue::spawn(store.clone()));
        let cache = Arc::new(TokenCache::default());
        let changes = match (&runtime, store.connection_changes()) {
            (Some(_), Some(feed)) => Changes::follow(feed, cache.clone()),
            _ => Changes::default(),
        };
        Self {
            store,
            vault,
            catalog,
            http,
            clock,
            settings,
            holder_id: crate::ids::new_id("proc"),
            cache,
            changes,
            flights: Mutex::new(HashMap::new()),
            stats: Default::default(),
            auth_cache: crate::cache::TtlCache::new(Duration::from_secs(10), 10_000),
            integration_cache: crate::cache::TtlCache::new(Duration::from_secs(10), 10_000),
            audit_queue,
        }
    }

    pub(crate) fn entry(&self, provider: &str) -> Result<&CatalogEntry, CoreError> {
        self.catalog.get(provider).ok_or_else(|| {
            CoreError::invalid(
                "unknown_provider",
                format!("provider `{provider}` is not in the catalog"),
            )
        })
    }

    /// Appends one event through the group-commit queue and waits until it is durable.
    pub(crate) async fn record(&self, e: crate::audit::AuditEvent) -> Result<(), CoreError> {
        match &self.audit_queue {
            Some(q) => q.record(e).await?,
            None => self.store.append_audit(&[e]).await?,
        }
        Ok(())
    }

    /// Takes this process's turn at a periodic job for `ttl` (the job's period, a little
    /// less): false when another process sharing the database has it. A database error
    /// counts as "not our turn"; the next tick tries again.
    pub async fn take_job_turn(&self, job: &str, ttl: Duration) -> bool {
        let now = self.clock.now();
        let until = now + time::Duration::try_from(ttl).unwrap_or(time::Duration::MINUTE);
        match self
            .store
            .try_job_lease(job, &self.holder_id, now, until)
            .await
        {
            Ok(ours) => ours,
            Err(e) => {
                tracing::warn!(job, error = %e, "cannot take the job lease");
                false
            }
        }
    }

    /// An integration, from a short-lived cache (invalidated by changes made here).
    pub(crate) async fn integration(&self, slug: &str) -> Result<Integration, CoreError> {
        if let Some(i) = self.integration_cache.get(&slug.to_string()) {
            return Ok(i);
        }
        let i = self.store.get_integration(slug).await?.ok_or_else(|| {
            CoreError::invalid(
                "unknown_integration",
                format!("there is no integration `{slug}`"),
            )
        })?;
        self.integration_cache.put(slug.to_string(), i.clone());
        Ok(i)
    }

    pub(crate) fn provider_ctx<'a>(
        &'a self,
        integration: &'a Integration,
    ) -> Result<ProviderCtx<'a>, CoreError> {
        let entry = self.entry(&integration.provider)?;
        let client_secret = match &integration.client_secret_sealed {
            Some(s) => Some(self.vault.open(
                FieldRef::new("integrations", &integration.slug, "client_secret"),
                s,
            )?),
            None => None,
        };
        Ok(ProviderCtx {
            entry,
            integration,
            client_secret,
        })
    }
}

/// Follows the store's feed of connection changes made by any process on the database:
/// drops the affected cached tokens and wakes refresh waiters, so a replica never hands
/// out a token another replica replaced or revoked, and waiters see a refresh at once.
#[derive(Default)]
pub(crate) struct Changes {
    pub(crate) notify: Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Changes {
    fn follow(
        mut feed: tokio::sync::broadcast::Receiver<crate::store::ConnectionChange>,
        cache: Arc<TokenCache>,
    ) -> Self {
        use crate::store::ConnectionChange;
        use tokio::sync::broadcast::error::RecvError;
        let notify = Arc::new(tokio::sync::Notify::new());
        let wake = notify.clone();
        let task = tokio::spawn(async move {
            loop {
                match feed.recv().await {
                    Ok(ConnectionChange::Changed(id)) => cache.forget_connection(&id),
                    Ok(ConnectionChange::Added { application_id }) => {
                        cache.forget_application(&application_id)
                    }
                    // Missed changes: nothing cached can be trusted.
                    Ok(ConnectionChange::Resync) | Err(RecvError::Lagged(_)) => cache.clear(),
                    Err(RecvError::Closed) => break,
                }
                wake.notify_waiters();
            }
        });
        Self {
            notify,
            task: Some(task),
        }
    }

    pub(crate) fn has_feed(&self) -> bool {
        self.task.is_some()
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
