//! `rotor-bench-engines` (issue #23): the same cross-process load on each engine form —
//! standalone Redis (`engine.redis.address`), a Redis Cluster of three primaries
//! (`engine.redis.cluster_address`, sharded PUB/SUB) and the NATS broker (memory presence, no
//! history) — beside raw numbers for the same servers measured in the same run
//! (`redis-benchmark` on the standalone Redis and on one cluster primary, a NATS publisher and
//! subscriber with async-nats).
//!
//! Per form it starts the engine's servers and two data planes on them; `subscribers` JSON
//! WebSocket clients subscribe on the second, spread over `channels` channels, and publishes go
//! through the first's HTTP server API, so every delivery crosses from one process to the other
//! through the engine. After a warm-up it publishes at a fixed moderate rate (publish→deliver
//! p50/p99, the server processes' CPU per publish from /proc), then at rising rates to an
//! unpaced last step (publishes/s at saturation: the best step whose deliveries all arrived).

mod deploy;
mod load;
pub mod raw;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::procstat;
pub use deploy::Programs;
use load::{Publisher, Seen};
pub use raw::RawResult;

/// Options of the engines scenario.
#[derive(Debug, Clone, Args)]
pub struct EnginesArgs {
    /// The rotor-data-plane binary.
    #[arg(long, default_value = "target/release/rotor-data-plane")]
    pub data_plane_bin: std::path::PathBuf,
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    #[arg(long, default_value = "redis-cli")]
    pub redis_cli: String,
    #[arg(long, default_value = "redis-benchmark")]
    pub redis_benchmark: String,
    /// nats-server (Debian installs it in /usr/sbin).
    #[arg(long, default_value = "/usr/sbin/nats-server")]
    pub nats_server: String,
    /// The forms to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "standalone,cluster,nats")]
    pub forms: Vec<Form>,
    /// Subscribers on the second data plane.
    #[arg(long, default_value_t = 32)]
    pub subscribers: usize,
    /// Channels the subscribers and publishes are spread over.
    #[arg(long, default_value_t = 16)]
    pub channels: u64,
    /// The fixed moderate rate for latency and CPU, publishes/s.
    #[arg(long, default_value_t = 500.0)]
    pub latency_rate: f64,
    /// The rising rates, publishes/s; an unpaced step follows.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000,8000")]
    pub rates: Vec<f64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 4.0)]
    pub step_secs: f64,
    /// Publishes in flight at most (the unpaced step runs with this many).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Payload size, bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Requests of each raw `redis-benchmark` run (50 clients).
    #[arg(long, default_value_t = 100_000)]
    pub raw_requests: u64,
    /// Messages of the raw NATS run.
    #[arg(long, default_value_t = 200_000)]
    pub raw_nats_messages: u64,
    /// Where the JSON result goes.
    #[arg(long, default_value = "bench/results/engines.json")]
    pub out: std::path::PathBuf,
}

/// An engine form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    Standalone,
    Cluster,
    Nats,
}

impl Form {
    pub fn describe(self) -> &'static str {
        match self {
            Form::Standalone => "Redis standalone (`engine.redis.address`)",
            Form::Cluster => {
                "Redis Cluster, 3 primaries (`engine.redis.cluster_address`, SPUBLISH)"
            }
            Form::Nats => "NATS broker (memory presence, no history)",
        }
    }
}

/// One step of one form.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EngineStep {
    /// Publishes/s asked for (0: unpaced).
    pub rate: f64,
    /// Publishes/s the API acknowledged.
    pub publishes_per_sec: f64,
    pub errors: u64,
    pub deliveries: u64,
    /// 1 − deliveries / (acknowledged publishes × subscribers per channel).
    pub loss: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The two data planes' CPU time per acknowledged publish, µs.
    pub rotor_cpu_us_per_publish: f64,
    /// The engine's servers' CPU time per acknowledged publish, µs.
    pub engine_cpu_us_per_publish: f64,
}

/// One form's measurements.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FormResult {
    pub form: Form,
    /// At the fixed moderate rate.
    pub fixed: EngineStep,
    /// The rising rates, then the unpaced step.
    pub ramp: Vec<EngineStep>,
}

impl FormResult {
    /// The step of the most publishes/s whose deliveries (nearly) all arrived.
    pub fn saturation(&self) -> Option<&EngineStep> {
        self.ramp
            .iter()
            .filter(|s| s.loss <= 0.01 && s.errors == 0)
            .max_by(|a, b| a.publishes_per_sec.total_cmp(&b.publishes_per_sec))
    }
}

/// The scenario's result file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnginesResult {
    pub subscribers: usize,
    pub channels: u64,
    pub payload_bytes: usize,
    pub step_secs: f64,
    pub concurrency: usize,
    pub forms: Vec<FormResult>,
    pub raw: Vec<RawResult>,
}

const API_KEY: &str = "rotor-bench-engines";
const SECRET: &str = "rotor-bench-engines-secret";

/// CPU time of `pids` so far (utime + stime, their exited threads included).
fn cpu(pids: &[u32]) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for pid in pids {
        total += procstat::cpu_of(*pid)?;
    }
    Ok(total)
}

/// The processes of one form, their load and what they measured.
struct Bench<'a> {
    args: &'a EnginesArgs,
    publisher: Publisher,
    seen: Arc<Seen>,
    rotor_pids: Vec<u32>,
    engine_pids: Vec<u32>,
    per_channel: u64,
}

impl Bench<'_> {
    async fn step(&self, step: u32, rate: f64, secs: f64) -> anyhow::Result<EngineStep> {
        let (rotor0, engine0) = (cpu(&self.rotor_pids)?, cpu(&self.engine_pids)?);
        let published = self.publisher.step(step, rate, secs).await?;
        let expected = published.acked * self.per_channel;
        let deliveries = load::drain(&self.seen, step, expected, Duration::from_secs(3)).await;
        let (rotor, engine) = (
            cpu(&self.rotor_pids)? - rotor0,
            cpu(&self.engine_pids)? - engine0,
        );
        let summary =
            self.seen.latency.lock().unwrap_or_else(|e| e.into_inner())[step as usize].summary();
        let per = |d: Duration| d.as_secs_f64() * 1e6 / published.acked.max(1) as f64;
        let s = EngineStep {
            rate,
            publishes_per_sec: published.acked as f64 / published.elapsed.as_secs_f64(),
            errors: published.errors,
            deliveries,
            loss: 1.0 - deliveries.min(expected) as f64 / expected.max(1) as f64,
            p50_us: summary.p50,
            p99_us: summary.p99,
            rotor_cpu_us_per_publish: per(rotor),
            engine_cpu_us_per_publish: per(engine),
        };
        eprintln!(
            "engines bench:   rate {}: {:.0} publishes/s, {} errors, loss {:.2} %, p50 {} µs, p99 {} µs, CPU/publish rotor {:.1} µs, engine {:.1} µs",
            if rate > 0.0 { format!("{rate:.0}") } else { "unpaced".into() },
            s.publishes_per_sec,
            s.errors,
            s.loss * 100.0,
            s.p50_us,
            s.p99_us,
            s.rotor_cpu_us_per_publish,
            s.engine_cpu_us_per_publish
        );
        Ok(s)
    }
}

/// Starts `form`'s servers and two data planes, measures, stops them.
async fn measure(
    a: &EnginesArgs,
    programs: &Programs,
    form: Form,
    dir: &std::path::Path,
    raw: &mut Vec<RawResult>,
) -> anyhow::Result<FormResult> {
    let dir = dir.join(format!("{form:?}").to_lowercase());
    std::fs::create_dir_all(&dir)?;
    let prefix = format!("rotor-bench-{}", crate::payload::now_micros());
    let deployment = match form {
        Form::Standalone => deploy::standalone(programs, &dir, &prefix)?,
        Form::Cluster => deploy::cluster(programs, &dir, 3, &prefix)?,
        Form::Nats => deploy::nats(programs, &dir, &prefix)?,
    };
    eprintln!(
        "engines bench: {} (servers on ports {:?})",
        form.describe(),
        deployment.procs.iter().map(|p| p.port).collect::<Vec<_>>()
    );
    let first = deploy::data_plane(programs, &dir, "first", &deployment.engine, API_KEY, SECRET)?;
    let second = deploy::data_plane(
        programs,
        &dir,
        "second",
        &deployment.engine,
        API_KEY,
        SECRET,
    )?;

    let seen = Seen::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(a.subscribers.max(1));
    let mut subscribers = tokio::task::JoinSet::new();
    let ws_url = format!("ws://127.0.0.1:{}/connection/websocket", second.port);
    for i in 0..a.subscribers {
        subscribers.spawn(load::subscriber(
            ws_url.clone(),
            crate::cp::token(SECRET, &format!("u{i}"), &[])?,
            load::channel(i as u64, a.channels),
            ready_tx.clone(),
            seen.clone(),
        ));
    }
    drop(ready_tx);
    crate::scenario::all_subscribed(&mut ready_rx, a.subscribers).await?;
    let bench = Bench {
        args: a,
        publisher: Publisher {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(a.concurrency)
                .build()?,
            url: format!("http://127.0.0.1:{}/api/publish", first.port),
            api_key: API_KEY.into(),
            channels: a.channels,
            concurrency: a.concurrency,
            payload_bytes: a.payload_bytes,
        },
        seen,
        rotor_pids: vec![first.pid(), second.pid()],
        engine_pids: deployment.pids(),
        per_channel: (a.subscribers as u64).div_ceil(a.channels.max(1)),
    };
    // Warm-up (step 0): connections, scripts and subscriptions in place on every path.
    let warm = bench.step(0, 200.0, 1.0).await?;
    if warm.deliveries == 0 {
        bail!("{form:?}: no delivery crossed from the first data plane to the second");
    }
    let fixed = bench.step(1, a.latency_rate, a.step_secs).await?;
    let mut ramp = Vec::new();
    for (i, rate) in a.rates.iter().copied().chain([0.0]).enumerate() {
        let step = u32::try_from(i + 2)?;
        if step as usize >= load::MAX_STEPS {
            bail!("too many rates");
        }
        ramp.push(bench.step(step, rate, bench.args.step_secs).await?);
    }
    if let Some(e) = subscribers.try_join_next() {
        e??;
        bail!("a subscriber stopped");
    }
    subscribers.abort_all();
    drop((first, second));

    // The raw numbers, on the same servers now idle.
    let requests = a.raw_requests.to_string();
    let payload = "x".repeat(a.payload_bytes);
    let bench_args = |command: &str, channel: &str| -> Vec<String> {
        [
            "-n",
            requests.as_str(),
            "-c",
            "50",
            command,
            channel,
            payload.as_str(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let redis_bench = |what: String, port: u16, args: Vec<String>| -> anyhow::Result<RawResult> {
        let (per_sec, detail) = raw::redis_benchmark(&a.redis_benchmark, port, &args)?;
        eprintln!("engines bench: raw {what}: {per_sec:.0}/s");
        Ok(RawResult {
            what,
            per_sec,
            detail,
        })
    };
    match form {
        Form::Standalone => raw.push(redis_bench(
            "`redis-benchmark PUBLISH`, standalone Redis, 50 clients".into(),
            deployment.procs[0].port,
            bench_args("PUBLISH", "bench"),
        )?),
        Form::Cluster => {
            // The primary that owns the channel's slot takes SPUBLISH; PUBLISH is broadcast
            // over the cluster bus to every node.
            let port = deployment
                .procs
                .iter()
                .map(|p| p.port)
                .find(|p| {
                    deploy::redis_cli(programs, *p, &["SPUBLISH", "bench", "x"])
                        .is_ok_and(|o| !o.contains("MOVED"))
                })
                .context("no primary owns the slot of `bench`")?;
            raw.push(redis_bench(
                "`redis-benchmark SPUBLISH`, one cluster primary (its slot), 50 clients".into(),
                port,
                bench_args("SPUBLISH", "bench"),
            )?);
            raw.push(redis_bench(
                "`redis-benchmark PUBLISH`, one cluster primary (bus to all 3), 50 clients".into(),
                port,
                bench_args("PUBLISH", "bench"),
            )?);
        }
        Form::Nats => {
            let url = format!("nats://127.0.0.1:{}", deployment.procs[0].port);
            for r in raw::nats_pub_sub(&url, a.raw_nats_messages, a.payload_bytes).await? {
                eprintln!("engines bench: raw {}: {:.0}/s", r.what, r.per_sec);
                raw.push(r);
            }
        }
    }
    drop(deployment);
    Ok(FormResult { form, fixed, ramp })
}

/// Runs every form in turn and writes the result.
pub async fn run(args: EnginesArgs) -> anyhow::Result<EnginesResult> {
    if args.subscribers == 0 || args.channels == 0 || args.concurrency == 0 {
        bail!("--subscribers, --channels and --concurrency must be positive");
    }
    procstat::raise_fd_limit();
    let programs = Programs {
        data_plane: args.data_plane_bin.clone(),
        redis_server: args.redis_server.clone(),
        redis_cli: args.redis_cli.clone(),
        nats_server: args.nats_server.clone(),
    };
    let dir = std::env::temp_dir().join(format!(
        "rotor-bench-engines-{}",
        crate::payload::now_micros()
    ));
    std::fs::create_dir_all(&dir)?;
    let mut forms = Vec::new();
    let mut raw = Vec::new();
    let mut outcome = Ok(());
    for form in args.forms.clone() {
        match measure(&args, &programs, form, &dir, &mut raw).await {
            Ok(r) => forms.push(r),
            Err(e) => {
                outcome = Err(e.context(format!("{form:?}")));
                break;
            }
        }
    }
    if outcome.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "engines bench: the servers' logs are kept in {}",
            dir.display()
        );
    }
    outcome?;
    let result = EnginesResult {
        subscribers: args.subscribers,
        channels: args.channels,
        payload_bytes: args.payload_bytes,
        step_secs: args.step_secs,
        concurrency: args.concurrency,
        forms,
        raw,
    };
    crate::scenario::write_result(&args.out, &result)?;
    Ok(result)
}
