//! `soak`: a long run of steady mixed traffic against one `rotor-data-plane` (`make soak`),
//! failing if the server's resources are not flat at the end.
//!
//! It spawns the data plane (memory engine, or `--engine redis` on a private redis-server) and
//! drives, for `--secs` (SOAK_SECS, default 600): steady subscribers that stay connected and
//! must keep receiving; connect/disconnect churn (subscribe, history, presence, a client
//! publish, then a clean close or a dropped socket); API publishes, history and presence
//! reads. Every
//! `--sample-ms` it samples the server's RSS (`/proc/<pid>/status`), open fds
//! (`/proc/<pid>/fd`), threads, and the `rotor_connections` / `rotor_subscriptions` gauges
//! (the data plane exposes no tokio task count; threads plus the connection gauges stand in).
//!
//! Verdict: the mean of the last `--window-secs` (default 60, at most a quarter of the run) is
//! compared with the mean of the same length right after `--warmup-secs` (default 60, at most a
//! quarter of the run): RSS may grow by `--rss-tolerance` (10 %) + `--rss-slack-mib` (4 MiB),
//! fds by 10 % + 16, threads by 2, the gauges by 10 % + 10. After the load stops every
//! connection must be gone from the gauges and fds must be back near the level before the load.
//! Errors above 1 % of operations also fail the run. Prints a table of samples and a JSON
//! summary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rotor_bench::procstat;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SECRET: &str = "rotor-soak-secret";
const API_KEY: &str = "rotor-soak-api-key";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "soak",
    about = "Soak test of rotor-data-plane: flat memory, fds and threads"
)]
struct Args {
    /// How long the load runs, seconds.
    #[arg(long, env = "SOAK_SECS", default_value_t = 600)]
    secs: u64,
    /// Seconds of load before the baseline window (default min(60, secs/4)).
    #[arg(long, env = "SOAK_WARMUP_SECS")]
    warmup_secs: Option<u64>,
    /// Length of the baseline and final windows, seconds (default min(60, secs/4)).
    #[arg(long, env = "SOAK_WINDOW_SECS")]
    window_secs: Option<u64>,
    /// The data-plane binary (default: rotor-data-plane next to this executable).
    #[arg(long, env = "SOAK_SERVER")]
    server: Option<PathBuf>,
    /// `memory` or `redis`.
    #[arg(long, env = "SOAK_ENGINE", default_value = "memory")]
    engine: String,
    /// Redis for `--engine redis`; by default a private `redis-server` (no persistence) is
    /// started on a free port and stopped afterwards, so no keys are left anywhere.
    #[arg(long, env = "SOAK_REDIS_URL")]
    redis_url: Option<String>,
    /// Subscribers connected for the whole run.
    #[arg(long, env = "SOAK_STEADY", default_value_t = 200)]
    steady: usize,
    /// Channels (`chat:c0…`) the load spreads over.
    #[arg(long, default_value_t = 20)]
    channels: usize,
    /// Concurrent churning clients (each: connect, work 0.2–2 s, disconnect, again).
    #[arg(long, env = "SOAK_CHURNERS", default_value_t = 50)]
    churners: usize,
    /// API publishes per second.
    #[arg(long, env = "SOAK_PUBLISH_RATE", default_value_t = 200)]
    publish_rate: u64,
    /// API history + presence reads per second.
    #[arg(long, default_value_t = 40)]
    read_rate: u64,
    /// Sampling period, milliseconds.
    #[arg(long, default_value_t = 1000)]
    sample_ms: u64,
    /// Allowed relative RSS growth of the final window over the baseline.
    #[arg(long, default_value_t = 0.10)]
    rss_tolerance: f64,
    /// Allowed absolute RSS growth on top of the relative one, MiB (allocator noise).
    #[arg(long, default_value_t = 4.0)]
    rss_slack_mib: f64,
    /// Also write the summary JSON here.
    #[arg(long, env = "SOAK_JSON_OUT")]
    json_out: Option<PathBuf>,
}

/// Counters shared by the load tasks.
#[derive(Default)]
struct Stats {
    publishes: AtomicU64,
    publish_errors: AtomicU64,
    reads: AtomicU64,
    read_errors: AtomicU64,
    sessions: AtomicU64,
    session_errors: AtomicU64,
    received: AtomicU64,
    steady_drops: AtomicU64,
    /// Unsubscribe pushes (2500 "insufficient state") the server sent; steady subscribers
    /// subscribe again, as an SDK would.
    resubscribes: AtomicU64,
}

impl Stats {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Sample {
    t: f64,
    rss_mib: f64,
    fds: f64,
    threads: f64,
    connections: f64,
    subscriptions: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    procstat::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ok = rt.block_on(run(args))?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(args: Args) -> Result<bool> {
    let warmup = args.warmup_secs.unwrap_or((args.secs / 4).min(60));
    let window = args.window_secs.unwrap_or((args.secs / 4).min(60)).max(1);
    ensure!(
        warmup + window <= args.secs,
        "warm-up ({warmup} s) and window ({window} s) do not fit in {} s",
        args.secs
    );
    // Held until the end: a private Redis for `--engine redis` without `--redis-url`.
    let mut _redis = None;
    let mut args = args;
    if args.engine == "redis" && args.redis_url.is_none() {
        let (child, url) = private_redis().await?;
        _redis = Some(child);
        args.redis_url = Some(url);
    }
    let (mut server, addr) = spawn_server(&args).await?;
    let pid = server.id().context("server pid")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let idle = sample(pid, &http, &addr, 0.0).await?;
    eprintln!(
        "soak: rotor-data-plane pid {pid} on {addr}, {} engine; {} s of load (warm-up {warmup} s, \
         windows {window} s): {} steady subscribers, {} churners, {} publishes/s, {} reads/s \
         over {} channels",
        args.engine,
        args.secs,
        args.steady,
        args.churners,
        args.publish_rate,
        args.read_rate,
        args.channels
    );

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..args.steady {
        tasks.push(tokio::spawn(steady(
            addr.clone(),
            i,
            args.clone(),
            stats.clone(),
            stop.clone(),
        )));
    }
    for i in 0..args.churners {
        tasks.push(tokio::spawn(churner(
            addr.clone(),
            i,
            args.clone(),
            stats.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(publisher(
        http.clone(),
        addr.clone(),
        args.clone(),
        stats.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(reader(
        http.clone(),
        addr.clone(),
        args.clone(),
        stats.clone(),
        stop.clone(),
    )));

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = started;
    println!(
        "{:>7} {:>9} {:>6} {:>7} {:>6} {:>6} {:>9} {:>10} {:>8} {:>6}",
        "t(s)",
        "rss(MiB)",
        "fds",
        "threads",
        "conns",
        "subs",
        "published",
        "delivered",
        "sessions",
        "errors"
    );
    let mut last_print = -1000.0;
    while started.elapsed() < Duration::from_secs(args.secs) {
        next += Duration::from_millis(args.sample_ms);
        tokio::time::sleep_until(next.into()).await;
        if let Some(status) = server.try_wait()? {
            bail!("the server exited during the soak: {status}");
        }
        let s = sample(pid, &http, &addr, started.elapsed().as_secs_f64()).await?;
        samples.push(s);
        if s.t - last_print >= 10.0 {
            last_print = s.t;
            println!(
                "{:>7.0} {:>9.1} {:>6.0} {:>7.0} {:>6.0} {:>6.0} {:>9} {:>10} {:>8} {:>6}",
                s.t,
                s.rss_mib,
                s.fds,
                s.threads,
                s.connections,
                s.subscriptions,
                Stats::get(&stats.publishes),
                Stats::get(&stats.received),
                Stats::get(&stats.sessions),
                errors(&stats)
            );
        }
    }
    stop.store(true, Ordering::Release);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    // Every client is gone: the gauges must say so, and fds return to about the idle level.
    let drained = Instant::now();
    let mut after = sample(pid, &http, &addr, started.elapsed().as_secs_f64()).await?;
    while (after.connections > 0.0 || after.subscriptions > 0.0 || after.fds > idle.fds + 8.0)
        && drained.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = sample(pid, &http, &addr, started.elapsed().as_secs_f64()).await?;
    }
    let _ = server.kill().await;

    let mean = |from: f64, to: f64| {
        let w: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.t >= from && s.t <= to)
            .collect();
        let n = w.len().max(1) as f64;
        Sample {
            t: to,
            rss_mib: w.iter().map(|s| s.rss_mib).sum::<f64>() / n,
            fds: w.iter().map(|s| s.fds).sum::<f64>() / n,
            threads: w.iter().map(|s| s.threads).sum::<f64>() / n,
            connections: w.iter().map(|s| s.connections).sum::<f64>() / n,
            subscriptions: w.iter().map(|s| s.subscriptions).sum::<f64>() / n,
        }
    };
    let secs = args.secs as f64;
    let base = mean(warmup as f64, (warmup + window) as f64);
    let end = mean(secs - window as f64, secs);
    let ops = Stats::get(&stats.publishes)
        + Stats::get(&stats.reads)
        + Stats::get(&stats.sessions)
        + Stats::get(&stats.publish_errors)
        + Stats::get(&stats.read_errors)
        + Stats::get(&stats.session_errors);
    let error_ratio = errors(&stats) as f64 / ops.max(1) as f64;
    let checks =
        [
            (
                "rss",
                end.rss_mib <= base.rss_mib * (1.0 + args.rss_tolerance) + args.rss_slack_mib,
                format!(
                    "{:.1} MiB at the end vs {:.1} MiB after warm-up (limit +{:.0} % + {:.0} MiB)",
                    end.rss_mib,
                    base.rss_mib,
                    args.rss_tolerance * 100.0,
                    args.rss_slack_mib
                ),
            ),
            (
                "fds",
                end.fds <= base.fds * 1.10 + 16.0,
                format!(
                    "{:.0} at the end vs {:.0} after warm-up (limit +10 % + 16)",
                    end.fds, base.fds
                ),
            ),
            (
                "threads",
                end.threads <= base.threads + 2.0,
                format!("{:.1} vs {:.1} (limit +2)", end.threads, base.threads),
            ),
            (
                "connections",
                (end.connections - base.connections).abs() <= base.connections * 0.10 + 10.0,
                format!(
                    "{:.0} vs {:.0} (±10 % + 10)",
                    end.connections, base.connections
                ),
            ),
            (
                "subscriptions",
                (end.subscriptions - base.subscriptions).abs() <= base.subscriptions * 0.10 + 10.0,
                format!(
                    "{:.0} vs {:.0} (±10 % + 10)",
                    end.subscriptions, base.subscriptions
                ),
            ),
            (
                "drained",
                after.connections == 0.0
                    && after.subscriptions == 0.0
                    && after.fds <= idle.fds + 8.0,
                format!(
                "after the load: {:.0} connections, {:.0} subscriptions, {:.0} fds (idle before: \
                 {:.0}), rss {:.1} MiB (idle before: {:.1})",
                after.connections, after.subscriptions, after.fds, idle.fds, after.rss_mib,
                idle.rss_mib
            ),
            ),
            (
                "errors",
                error_ratio <= 0.01,
                format!(
                    "{} errors in {ops} operations ({:.3} %); publish {}, read {}, session {}, \
                 steady drops {}",
                    errors(&stats),
                    error_ratio * 100.0,
                    Stats::get(&stats.publish_errors),
                    Stats::get(&stats.read_errors),
                    Stats::get(&stats.session_errors),
                    Stats::get(&stats.steady_drops)
                ),
            ),
            (
                "delivery",
                Stats::get(&stats.received) > 0,
                format!(
                    "{} publications delivered to subscribers",
                    Stats::get(&stats.received)
                ),
            ),
        ];
    let ok = checks.iter().all(|(_, pass, _)| *pass);
    let resubscribes = Stats::get(&stats.resubscribes);
    println!("\nsoak verdict: {}", if ok { "FLAT" } else { "NOT FLAT" });
    for (name, pass, detail) in &checks {
        println!(
            "  {:<13} {}  {detail}",
            name,
            if *pass { "ok  " } else { "FAIL" }
        );
    }
    // Not a resource leak, so not part of the verdict, but worth seeing: each one is a
    // subscription the server found a gap in (the client recovers by subscribing again).
    println!("  (insufficient-state unsubscribes, answered by subscribing again: {resubscribes})");
    let summary = json!({
        "secs": args.secs,
        "warmup_secs": warmup,
        "window_secs": window,
        "engine": args.engine,
        "load": {
            "steady": args.steady, "churners": args.churners,
            "publish_rate": args.publish_rate, "read_rate": args.read_rate,
            "channels": args.channels,
        },
        "idle": idle,
        "baseline": base,
        "end": end,
        "after": after,
        "totals": {
            "publishes": Stats::get(&stats.publishes),
            "reads": Stats::get(&stats.reads),
            "sessions": Stats::get(&stats.sessions),
            "delivered": Stats::get(&stats.received),
            "errors": errors(&stats),
            "insufficient_state_unsubscribes": Stats::get(&stats.resubscribes),
        },
        "checks": checks.iter().map(|(n, p, d)| json!({"check": n, "ok": p, "detail": d})).collect::<Vec<_>>(),
        "ok": ok,
    });
    println!("{summary}");
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)?;
    }
    Ok(ok)
}

fn errors(stats: &Stats) -> u64 {
    Stats::get(&stats.publish_errors)
        + Stats::get(&stats.read_errors)
        + Stats::get(&stats.session_errors)
        + Stats::get(&stats.steady_drops)
}

/// Writes a config and starts the server; returns it and its address once it listens.
async fn spawn_server(args: &Args) -> Result<(tokio::process::Child, String)> {
    let bin = match &args.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("rotor-data-plane"),
    };
    ensure!(
        bin.is_file(),
        "no data-plane binary at {} (build it, or pass --server)",
        bin.display()
    );
    let mut config = json!({
        "client": {"token": {"hmac_secret_key": SECRET}},
        "http_api": {"key": API_KEY},
        "channel": {"namespaces": [{
            "name": "chat",
            "presence": true,
            "join_leave": true,
            "history_size": 100,
            "history_ttl": "300s",
            "force_recovery": true,
            "allow_subscribe_for_client": true,
            "allow_publish_for_subscriber": true,
            "allow_history_for_subscriber": true,
            "allow_presence_for_subscriber": true
        }]}
    });
    if args.engine == "redis" {
        config["engine"] = json!({"type": "redis", "redis": {
            "address": args.redis_url.as_deref().unwrap_or("redis://127.0.0.1:6379"),
            "prefix": format!("rotor-soak:{}:", std::process::id()),
        }});
    } else {
        ensure!(args.engine == "memory", "--engine is memory or redis");
    }
    let path = std::env::temp_dir().join(format!("rotor-soak-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&config)?)?;
    let mut child = tokio::process::Command::new(&bin)
        .arg("--config")
        .arg(&path)
        .args(["--address", "127.0.0.1", "--port", "0"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.split("listening on ").nth(1) {
                return Ok::<_, anyhow::Error>(addr.trim().to_owned());
            }
        }
        bail!("the server exited before listening")
    })
    .await
    .context("the server did not listen within 20 s")??;
    let _ = std::fs::remove_file(&path);
    // Keep draining stdout so the server never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

/// `redis-server` on a free port, without persistence; ready once it answers.
async fn private_redis() -> Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server (is it on PATH?)")?;
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not listen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((child, format!("redis://127.0.0.1:{port}")))
}

async fn sample(pid: u32, http: &reqwest::Client, addr: &str, t: f64) -> Result<Sample> {
    let rss = procstat::rss_of(pid)? as f64 / (1024.0 * 1024.0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as f64;
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .header("X-API-Key", API_KEY)
        .send()
        .await?
        .text()
        .await?;
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    Ok(Sample {
        t,
        rss_mib: rss,
        fds,
        threads,
        connections: gauge("rotor_connections "),
        subscriptions: gauge("rotor_subscriptions "),
    })
}

include!("soak/traffic.rs");
