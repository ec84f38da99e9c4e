//! Several `keyway serve` processes on one PostgreSQL database (spec P5, R1 across
//! replicas): exactly one upstream refresh for a storm spread over three replicas; a
//! replica paused while holding the refresh lease cannot overwrite the newer token when it
//! resumes; a replica killed mid-load loses nothing the others or the audit chain need.
//!
//! Needs `KW_TEST_PG_URL` (a PostgreSQL server; `scripts/test` starts a throwaway cluster);
//! without it the test says so and passes.

use keyway_testkit::{FakeProvider, Flavor};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LEASE_SECS: u64 = 3;

struct Replica {
    url: String,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

struct Cluster {
    replicas: Vec<Replica>,
    admin_key: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(db_url: &str, fake: &FakeProvider, n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut providers = toml::map::Map::new();
        providers.insert("fake".into(), fake.provider_toml());
        let mut cfg = toml::map::Map::new();
        cfg.insert("providers".into(), toml::Value::Table(providers));
        let cfg_path = dir.path().join("keyway.toml");
        std::fs::write(&cfg_path, toml::to_string(&cfg).expect("toml")).expect("config");
        let admin_key = format!("admin-{}", keyway_core::ids::random_token(32));
        let master = keyway_core::vault::MasterKey::generate().to_base64();
        let mut replicas = Vec::new();
        for i in 0..n {
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}");
            let child = Command::new(env!("CARGO_BIN_EXE_keyway"))
                .arg("serve")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("KEYWAY_CONFIG", &cfg_path)
                .env("KEYWAY_LISTEN", format!("127.0.0.1:{port}"))
                .env("KEYWAY_PUBLIC_URL", &url)
                .env("KEYWAY_DATA_DIR", dir.path().join(format!("r{i}")))
                .env("KEYWAY_DATABASE_URL", db_url)
                .env("KEYWAY_DATABASE_POOL_SIZE", "8")
                .env("KEYWAY_MASTER_KEY", &master)
                .env("KEYWAY_ADMIN_KEY", &admin_key)
                .env("KEYWAY_REFRESH_LEASE_SECS", LEASE_SECS.to_string())
                .env("KEYWAY_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("keyway serve");
            replicas.push(Replica { url, child });
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        // Started together: they migrate under the lock, then all report ready.
        for r in &replicas {
            let mut ready = false;
            for _ in 0..300 {
                if let Ok(resp) = http.get(format!("{}/readyz", r.url)).send().await {
                    if resp.status() == StatusCode::OK {
                        ready = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ready, "replica {} became ready", r.url);
        }
        Self {
            replicas,
            admin_key,
            http,
            _dir: dir,
        }
    }

    async fn call(&self, i: usize, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.replicas[i].url))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An application, its key, and the `acme` integration on the fake provider.
    async fn app(&self) -> String {
        let admin = self.admin_key.clone();
        let (s, app) = self
            .call(0, &admin, "/v1/applications", json!({"name": "P5"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{app}");
        let id = app["id"].as_str().expect("id").to_string();
        let (s, key) = self
            .call(
                1,
                &admin,
                &format!("/v1/applications/{id}/api-keys"),
                json!({"name": "k"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{key}");
        let (s, i) = self
            .call(2, &admin, "/v1/integrations", json!({"slug": "acme", "provider": "fake",
                "client_id": keyway_testkit::fake::CLIENT_ID, "client_secret": keyway_testkit::fake::CLIENT_SECRET, "scopes": []}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        key["key"].as_str().expect("key").to_string()
    }

    /// A connection whose access token has expired, with a refresh token the fake honours.
    async fn expired_connection(&self, fake: &FakeProvider, key: &str, user: &str) {
        let (access, refresh) = fake.mint(user);
        let (s, c) = self
            .call(0, key, "/v1/connections/import", json!({"user_id": user, "integration": "acme",
                "access_token": access, "refresh_token": refresh, "expires_at": "2020-01-01T00:00:00Z"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
    }

    async fn token(&self, i: usize, key: &str, user: &str) -> (StatusCode, Value) {
        self.call(
            i,
            key,
            "/v1/token",
            json!({"integration": "acme", "user_id": user}),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_refresh_once_fence_a_paused_holder_and_survive_a_kill() {
    let Some(db_url) = keyway_testkit::db::fresh_postgres_url().await else {
        eprintln!("KW_TEST_PG_URL is not set: the replica test is skipped");
        return;
    };
    let fake = FakeProvider::start(Flavor::Standard).await;
    let cluster = Cluster::start(&db_url, &fake, 3).await;
    let key = cluster.app().await;

    // P5: 1,000 concurrent token calls over three replicas, one expired connection with a
    // rotating refresh token: one upstream refresh, 1,000 successes, one token.
    cluster.expired_connection(&fake, &key, "storm").await;
    fake.set_refresh_delay(Duration::from_millis(200));
    let calls: Vec<_> = (0..1000)
        .map(|n| {
            let (c, key) = (cluster.http.clone(), key.clone());
            let url = format!("{}/v1/token", cluster.replicas[n % 3].url);
            tokio::spawn(async move {
                let r = c
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"integration": "acme", "user_id": "storm"}))
                    .send()
                    .await
                    .expect("token call");
                (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut tokens = HashSet::new();
    for c in calls {
        let (status, body) = c.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.insert(
            body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(fake.refreshes(), 1, "exactly one upstream refresh");
    assert_eq!(tokens.len(), 1, "every caller got the one new token");

    // A replica paused (SIGSTOP) while it holds the lease, inside the upstream call; the
    // lease expires, another replica refreshes; resumed, the paused one must not
    // overwrite the newer token. The provider lets a refresh token be reused here, so
    // both refreshes succeed upstream and only the fence decides.
    cluster.expired_connection(&fake, &key, "paused").await;
    fake.set_rotate(false);
    fake.set_refresh_delay(Duration::from_millis(1500));
    let before = fake.refreshes();
    let paused_call = {
        let (c, key) = (cluster.http.clone(), key.clone());
        let url = format!("{}/v1/token", cluster.replicas[0].url);
        tokio::spawn(async move {
            let r = c
                .post(url)
                .bearer_auth(key)
                .json(&json!({"integration": "acme", "user_id": "paused"}))
                .send()
                .await
                .expect("token call");
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    // Wait until replica 0 has taken the lease and is waiting on the provider.
    for _ in 0..1000 {
        if fake.refreshes() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.refreshes(), before + 1, "replica 0 is refreshing");
    cluster.replicas[0].signal("-STOP");
    fake.set_refresh_delay(Duration::ZERO);
    // Replica 1 waits out the lease, then refreshes itself.
    let (s, newer) = cluster.token(1, &key, "paused").await;
    assert_eq!(s, StatusCode::OK, "{newer}");
    assert_eq!(fake.refreshes(), before + 2, "the lease passed on");
    let newer = newer["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    cluster.replicas[0].signal("-CONT");
    let (s, resumed) = paused_call.await.expect("task");
    assert_eq!(s, StatusCode::OK, "{resumed}");
    assert_eq!(
        resumed["access_token"], newer,
        "the resumed replica answers the newer token, its own result discarded"
    );
    for i in 0..3 {
        let (s, t) = cluster.token(i, &key, "paused").await;
        assert_eq!(s, StatusCode::OK, "{t}");
        assert_eq!(
            t["access_token"], newer,
            "replica {i} serves the newer token"
        );
    }
    fake.set_rotate(true);

    // Kill -9 one replica in the middle of a load run: the others keep serving and every
    // answered token call is on the audit chain, which stays valid.
    let pool = sqlx::PgPool::connect(&db_url).await.expect("db");
    let issued_before: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'token.issued'")
            .fetch_one(&pool)
            .await
            .expect("count");
    let load: Vec<_> = (0..600)
        .map(|n| {
            let (c, key) = (cluster.http.clone(), key.clone());
            let i = n % 3;
            let url = format!("{}/v1/token", cluster.replicas[i].url);
            tokio::spawn(async move {
                if i == 2 {
                    tokio::time::sleep(Duration::from_millis((n as u64 % 50) * 4)).await;
                }
                let r = c
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"integration": "acme", "user_id": "storm"}))
                    .send()
                    .await;
                (i, r.map(|r| r.status()).ok())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    cluster.replicas[2].signal("-KILL");
    let mut answered = 0i64;
    for l in load {
        let (i, status) = l.await.expect("task");
        match (i, status) {
            (2, Some(s)) => {
                assert_eq!(s, StatusCode::OK);
                answered += 1;
            }
            (2, None) => {}
            (_, s) => {
                assert_eq!(s, Some(StatusCode::OK), "replicas 0 and 1 keep serving");
                answered += 1;
            }
        }
    }
    let issued_after: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'token.issued'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert!(
        issued_after - issued_before >= answered,
        "every answered call was recorded: {answered} answered, {} recorded",
        issued_after - issued_before
    );
    let admin = cluster.admin_key.clone();
    let (s, v) = cluster.call(0, &admin, "/v1/audit/verify", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    let (s, t) = cluster.token(1, &key, "storm").await;
    assert_eq!(s, StatusCode::OK, "{t}");

    // Revoked through replica 0, the token replica 1 has cached stops being handed out:
    // the change feed reaches it (moments after the commit), long before the token expires.
    let list = cluster
        .http
        .get(format!(
            "{}/v1/connections?user_id=storm&integration=acme",
            cluster.replicas[0].url
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("list");
    let list: Value = list.json().await.expect("json");
    let id = list["data"][0]["id"]
        .as_str()
        .expect("connection id")
        .to_string();
    let r = cluster
        .http
        .delete(format!("{}/v1/connections/{id}", cluster.replicas[0].url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("revoke");
    assert!(r.status().is_success(), "{}", r.status());
    let mut refused = None;
    for _ in 0..100 {
        let (s, _) = cluster.token(1, &key, "storm").await;
        if s != StatusCode::OK {
            refused = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        refused,
        Some(StatusCode::NOT_FOUND),
        "replica 1 stops serving the revoked connection"
    );
}

/// `keyway migrate` applies the schema once and is idempotent; serve finds it done.
#[tokio::test]
async fn keyway_migrate_prepares_a_postgres_database() {
    let Some(db_url) = keyway_testkit::db::fresh_postgres_url().await else {
        eprintln!("KW_TEST_PG_URL is not set: skipped");
        return;
    };
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_keyway"))
            .arg("migrate")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KEYWAY_DATABASE_URL", &db_url)
            .env("KEYWAY_LOG", "warn")
            .output()
            .expect("keyway migrate");
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    }
    let pool = sqlx::PgPool::connect(&db_url).await.expect("db");
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&pool)
        .await
        .expect("versions");
    assert_eq!(versions, vec![1]);
    // A schema from a newer Keyway is refused, not guessed at.
    sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)")
        .execute(&pool)
        .await
        .expect("newer");
    let out = Command::new(env!("CARGO_BIN_EXE_keyway"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYWAY_DATABASE_URL", &db_url)
        .output()
        .expect("keyway migrate");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("newer than this Keyway"),
        "{out:?}"
    );
}
