//! Keyway's benchmarks (spec section 7). Each prints a markdown table; the figures in
//! docs/benchmarks.md come from `cargo run --release -p keyway-bench -- all`.
//!
//! * P1: `POST /v1/token` on a cached token against a bare endpoint of the same server
//!   stack returning a JSON body of the same size, same load generator, same run,
//!   alternating rounds; medians and their ratio.
//! * P2: 1,000 concurrent calls on one expired connection with a provider that takes
//!   100 ms to refresh: upstream refreshes (must be 1), failures, latency percentiles.
//! * P4: the release `keyway serve` binary: start to ready on a fresh data directory and on
//!   an existing one, and resident memory after idling.

use anyhow::{bail, Context, Result};

/// mimalloc: the token path allocates on several threads at once (Tokio workers, the
/// SQLite writer), where glibc's arena locks showed up as the top cost in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use axum::http::header;
use axum::response::IntoResponse;
use clap::{Parser, ValueEnum};
use keyway_testkit::{FakeProvider, Flavor, TestKeyway, TestOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Which {
    P1,
    P2,
    P4,
    All,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Seconds per P1 round.
    #[arg(long, default_value_t = 3)]
    round_secs: u64,
    /// P1 rounds per endpoint.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrent P1 clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// P2 runs.
    #[arg(long, default_value_t = 5)]
    storms: usize,
    /// P4 runs.
    #[arg(long, default_value_t = 5)]
    starts: usize,
}

static BARE_BODY: OnceLock<Vec<u8>> = OnceLock::new();

async fn bare() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        BARE_BODY.get().cloned().unwrap_or_default(),
    )
}

/// The database the in-process server uses: PostgreSQL when `KW_TEST_PG_URL` names a
/// server (the testkit then creates a database there), SQLite otherwise.
fn database() -> &'static str {
    if std::env::var(keyway_testkit::db::PG_URL_VAR).is_ok() {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn setup(
    fake: &FakeProvider,
    extra: Option<axum::Router<keyway_server::AppState>>,
) -> (TestKeyway, keyway_testkit::App) {
    let mut opts = TestOptions::default().with_provider("fake", fake);
    opts.extra_routes = extra;
    let kw = TestKeyway::start(opts).await;
    kw.create_integration("acme", "fake", &[], serde_json::json!({}))
        .await;
    let app = kw.create_app("Bench", &[]).await;
    kw.connect(&app, "u1", "acme").await;
    (kw, app)
}

/// Requests per second over one round with `concurrency` keep-alive clients.
async fn round(
    client: &reqwest::Client,
    concurrency: usize,
    secs: u64,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, make, done, errors, stop) = (
            client.clone(),
            make.clone(),
            done.clone(),
            errors.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match make(&client).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if errors.load(Ordering::Relaxed) > 0 {
        bail!("{} requests failed", errors.load(Ordering::Relaxed));
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

async fn p1(args: &Args) -> Result<()> {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let extra = axum::Router::new().route("/__bench/bare", axum::routing::get(bare));
    let (kw, app) = setup(&fake, Some(extra)).await;
    let body = serde_json::json!({"integration": "acme", "user_id": "u1"});
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let sample = client
        .post(format!("{}/v1/token", kw.url))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await?
        .bytes()
        .await?;
    let size = sample.len();
    BARE_BODY.set(sample.to_vec()).ok();
    let token_url = format!("{}/v1/token", kw.url);
    let bare_url = format!("{}/__bench/bare", kw.url);
    let key = app.key.clone();
    let token_req: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync> =
        Arc::new(move |c| c.post(&token_url).bearer_auth(&key).json(&body));
    let bare_req: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync> =
        Arc::new(move |c| c.get(&bare_url));
    // Warm-up, then alternate so both endpoints see the same machine noise.
    round(&client, args.concurrency, 1, bare_req.clone()).await?;
    round(&client, args.concurrency, 1, token_req.clone()).await?;
    let (mut bare_rps, mut token_rps) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        bare_rps.push(round(&client, args.concurrency, args.round_secs, bare_req.clone()).await?);
        token_rps.push(
            round(
                &client,
                args.concurrency,
                args.round_secs,
                token_req.clone(),
            )
            .await?,
        );
    }
    let (b, t) = (median(&mut bare_rps), median(&mut token_rps));
    println!(
        "\n### P1: cached token throughput ({}, {} clients, {} x {} s rounds, body {} bytes)\n",
        database(),
        args.concurrency,
        args.rounds,
        args.round_secs,
        size
    );
    println!("| endpoint | median req/s | rounds (req/s) |");
    println!("|---|---|---|");
    println!(
        "| bare JSON endpoint, same stack | {b:.0} | {} |",
        bare_rps
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| `POST /v1/token` (cached) | {t:.0} | {} |",
        token_rps
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "\nratio token / bare: **{:.0}%** (target ≥ 50%)",
        100.0 * t / b
    );
    Ok(())
}

async fn p2(args: &Args) -> Result<()> {
    let fake = FakeProvider::start(Flavor::Standard).await;
    let provider_latency = Duration::from_millis(100);
    let (kw, app) = setup(&fake, None).await;
    fake.set_refresh_delay(provider_latency);
    let kw = Arc::new(kw);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()?;
    println!("\n### P2: 1,000 concurrent calls on one expired connection ({}, provider refresh latency {} ms)\n", database(), provider_latency.as_millis());
    println!("| run | upstream refreshes | successes | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    let mut p99s = Vec::new();
    for run in 1..=args.storms {
        // Warm the connection pool so the storm measures Keyway, not TCP handshakes.
        let warm: Vec<_> = (0..1000)
            .map(|_| client.get(format!("{}/healthz", kw.url)).send())
            .collect();
        for w in futures::future::join_all(warm).await {
            w?;
        }
        kw.clock.advance(time::Duration::hours(2));
        let before = fake.refreshes();
        let body = serde_json::json!({"integration": "acme", "user_id": "u1"});
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (client, url, key, body) = (
                client.clone(),
                format!("{}/v1/token", kw.url),
                app.key.clone(),
                body.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let ok = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                (ok, t.elapsed().as_secs_f64() * 1000.0)
            }));
        }
        let mut lat = Vec::new();
        let mut ok = 0;
        for t in tasks {
            let (s, l) = t.await?;
            ok += usize::from(s);
            lat.push(l);
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        let refreshes = fake.refreshes() - before;
        let p99 = percentile(&lat, 99.0);
        p99s.push(p99);
        println!(
            "| {run} | {refreshes} | {ok}/1000 | {:.1} | {p99:.1} | {:.1} |",
            percentile(&lat, 50.0),
            lat.last().copied().unwrap_or(0.0)
        );
        if refreshes != 1 || ok != 1000 {
            bail!("P2 violated: {refreshes} refreshes, {ok} successes");
        }
    }
    let m = median(&mut p99s);
    println!(
        "\nmedian p99: **{m:.1} ms** (target < provider latency + 50 ms = {} ms)",
        provider_latency.as_millis() + 50
    );
    Ok(())
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .context("no VmRSS")
}

async fn start_to_ready(
    bin: &std::path::Path,
    data: &std::path::Path,
    key: &str,
) -> Result<(f64, std::process::Child, u16)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let client = reqwest::Client::new();
    let started = Instant::now();
    let child = std::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("KEYWAY_MASTER_KEY", key)
        .env("KEYWAY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status().is_success() {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("keyway did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok((started.elapsed().as_secs_f64() * 1000.0, child, port))
}

async fn p4(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("keyway");
    if !bin.exists() {
        bail!("build the release binary first: cargo build --release --bin keyway");
    }
    let key = keyway_core::vault::MasterKey::generate().to_base64();
    let (mut fresh, mut again, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.starts {
        let dir = std::env::temp_dir().join(format!(
            "keyway-bench-{}",
            keyway_core::ids::random_token(6)
        ));
        let (ms, mut child, _) = start_to_ready(&bin, &dir, &key).await?;
        fresh.push(ms);
        child.kill()?;
        child.wait()?;
        let (ms, mut child, _) = start_to_ready(&bin, &dir, &key).await?;
        again.push(ms);
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss.push(rss_kb(child.id())? as f64 / 1024.0);
        child.kill()?;
        child.wait()?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "\n### P4: start to ready and idle memory (release binary, SQLite, {} runs)\n",
        args.starts
    );
    println!("| measure | median | runs |");
    println!("|---|---|---|");
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (f, a, r) = (fresh.clone(), again.clone(), rss.clone());
    println!(
        "| start to ready, new data dir (ms) | {:.1} | {} |",
        median(&mut fresh),
        fmt(&f)
    );
    println!(
        "| start to ready, existing data dir (ms) | {:.1} | {} |",
        median(&mut again),
        fmt(&a)
    );
    println!(
        "| idle resident memory after 2 s (MiB) | {:.1} | {} |",
        median(&mut rss),
        fmt(&r)
    );
    println!("\ntargets: ready < 300 ms, idle < 30 MiB");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "keyway-bench on {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    if matches!(args.which, Which::P1 | Which::All) {
        p1(&args).await?;
    }
    if matches!(args.which, Which::P2 | Which::All) {
        p2(&args).await?;
    }
    if matches!(args.which, Which::P4 | Which::All) {
        p4(&args).await?;
    }
    Ok(())
}
