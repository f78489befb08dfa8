//! `rotor-loadgen run`: one bounded benchmark run. Spawns worker processes that open the
//! connections, watches the server's RSS while they connect, then (ramp mode) publishes at each
//! rate in turn and collects per-step latency histograms from the workers, with the server's
//! CPU time per delivered message; stops at the first step over the p99 or loss limit. Writes
//! the JSON result and prints a table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use crate::client::{subscribers_per_channel, Protocol};
use crate::histogram::Histogram;
use crate::pool::Pool;
use crate::procstat;
use crate::publisher::{PublishVia, Publisher, Target};
use crate::results::{ConnectPhase, Memory, Mode, Params, RunResult, Step};
use crate::wire::{Command, Event, WorkerSpec};

/// Options of one run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Result name (file name under --out-dir).
    #[arg(long)]
    pub name: String,
    /// Scenario label for the report (fanout, channels, idle, storm, latency, edge, sweep).
    #[arg(long, default_value = "adhoc")]
    pub scenario: String,
    /// Target label for the report (rotor, bare, socketio, nchan, …).
    #[arg(long, default_value = "rotor")]
    pub target: String,
    #[arg(long, value_enum, default_value = "ramp")]
    pub mode: Mode,
    #[arg(long, value_enum, default_value = "json")]
    pub protocol: Protocol,
    /// WebSocket URL of the server (`{channel}` is replaced per connection).
    #[arg(long)]
    pub ws_url: String,
    /// HS256 secret for connection tokens (Centrifugo protocols).
    #[arg(long)]
    pub secret: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Worker processes (each holds conns/workers sockets).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// New connections per second over all workers (0: unpaced).
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Openings in flight per worker.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Distinct channels the subscriptions spread over.
    #[arg(long, default_value_t = 1)]
    pub pool: usize,
    #[arg(long, default_value = "b")]
    pub channel_prefix: String,
    #[arg(long, value_enum, default_value = "api")]
    pub publish_via: PublishVia,
    /// Publish URL (API endpoint, raw POST URL or publisher WebSocket).
    #[arg(long)]
    pub publish_url: Option<String>,
    #[arg(long)]
    pub api_key: Option<String>,
    /// HTTP publishes in flight.
    #[arg(long, default_value_t = 64)]
    pub publish_concurrency: usize,
    /// Publish rates of the ramp, per second.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub rates: Vec<f64>,
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    /// Wait after a step's last publish before collecting.
    #[arg(long, default_value_t = 1000)]
    pub grace_ms: u64,
    /// A step is within the limits when its p99 is at most this.
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
    /// The ramp goes on past --max-p99-ms until p99 exceeds this (0: stop at --max-p99-ms), so
    /// the saturation throughput is measured too.
    #[arg(long, default_value_t = 0.0)]
    pub stop_p99_ms: f64,
    #[arg(long, default_value_t = 0.01)]
    pub max_loss: f64,
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Server processes to sample (CPU and RSS, with their descendants).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Wait after connecting before measuring memory.
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,
    #[arg(long, default_value_t = 20_000)]
    pub handshake_timeout_ms: u64,
    /// Hard bound on the whole run (workers exit by then too).
    #[arg(long, default_value_t = 300)]
    pub max_secs: u64,
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
}

fn specs(a: &RunArgs) -> Vec<WorkerSpec> {
    let workers = a.workers.max(1);
    let mut out = Vec::new();
    let mut first = 0;
    for i in 0..workers {
        let conns = a.conns / workers + usize::from(i < a.conns % workers);
        out.push(WorkerSpec {
            index: i,
            protocol: a.protocol,
            ws_url: a.ws_url.clone(),
            secret: a.secret.clone(),
            conns,
            first_conn: first,
            connect_rate: a.connect_rate / workers as f64,
            concurrency: a.concurrency,
            channels_per_conn: a.channels,
            channel_pool: a.pool,
            channel_prefix: a.channel_prefix.clone(),
            handshake_timeout_ms: a.handshake_timeout_ms,
            max_secs: a.max_secs + 30,
        });
        first += conns;
    }
    out
}

fn sample(pids: &[u32]) -> Option<procstat::Sample> {
    if pids.is_empty() {
        return None;
    }
    match procstat::sample(pids) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("server sample: {e}");
            None
        }
    }
}

/// Waits for every worker's Ready; returns the connect phase and the RSS curve.
async fn connect_phase(
    pool: &mut Pool,
    args: &RunArgs,
) -> anyhow::Result<(ConnectPhase, Vec<(u64, u64)>)> {
    let n = pool.len();
    let mut progress = vec![0u64; n];
    let mut ready = 0;
    let mut phase = ConnectPhase {
        attempted: args.conns as u64,
        ..Default::default()
    };
    let mut connect = Histogram::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut curve = Vec::new();
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let paced = if args.connect_rate > 0.0 {
        args.conns as f64 / args.connect_rate
    } else {
        0.0
    };
    let limit = Duration::from_secs_f64(paced + 60.0);
    let started = Instant::now();
    while ready < n {
        let left = limit.saturating_sub(started.elapsed());
        let (i, ev) = pool.next(left, "connections").await?;
        match ev {
            Event::Progress { connected, .. } => progress[i] = connected,
            Event::Ready {
                connected,
                failed,
                first_attempt_us,
                last_ready_us,
                connect: hist,
                errors,
            } => {
                ready += 1;
                progress[i] = connected;
                phase.connected += connected;
                phase.failed += failed;
                first = first.min(first_attempt_us);
                last = last.max(last_ready_us);
                connect.merge(&Histogram::from_sparse(&hist));
                for (k, v) in errors {
                    *phase.errors.entry(k).or_default() += v;
                }
            }
            _ => continue,
        }
        if last_sample.elapsed() >= Duration::from_millis(200) {
            last_sample = Instant::now();
            if let Some(s) = sample(&args.server_pid) {
                curve.push((progress.iter().sum(), s.rss));
            }
        }
    }
    phase.secs = if last > first {
        (last - first) as f64 / 1e6
    } else {
        0.0
    };
    phase.per_sec = if phase.secs > 0.0 {
        phase.connected as f64 / phase.secs
    } else {
        0.0
    };
    phase.latency = connect.summary();
    Ok((phase, curve))
}

/// What the workers received for one step.
pub struct Collected {
    pub received: u64,
    pub latency: Histogram,
    /// Connections that ended since the last snapshot.
    pub dropped: u64,
    pub errors: BTreeMap<String, u64>,
}

/// Asks every worker for its snapshot of `step` and merges them.
pub async fn collect(pool: &mut Pool, step: u32) -> anyhow::Result<Collected> {
    pool.broadcast(&Command::Snapshot(step)).await?;
    let mut got = 0;
    let mut c = Collected {
        received: 0,
        latency: Histogram::new(),
        dropped: 0,
        errors: BTreeMap::new(),
    };
    while got < pool.len() {
        let (_, ev) = pool.next(Duration::from_secs(30), "snapshot").await?;
        if let Event::Snapshot {
            step: s,
            received,
            latency,
            dropped,
            errors,
            ..
        } = ev
        {
            if s != step {
                continue;
            }
            got += 1;
            c.received += received;
            c.latency.merge(&Histogram::from_sparse(&latency));
            c.dropped += dropped;
            for (k, v) in errors {
                *c.errors.entry(k).or_default() += v;
            }
        }
    }
    Ok(c)
}

/// Runs the ramp; returns the steps, the best one and why it stopped.
async fn ramp(pool: &mut Pool, args: &RunArgs, result: &mut RunResult) -> anyhow::Result<()> {
    let url = args
        .publish_url
        .clone()
        .context("--publish-url is needed for a ramp")?;
    let mut publisher = Publisher::new(Target {
        via: args.publish_via,
        url,
        api_key: args.api_key.clone(),
        protocol: args.protocol,
        secret: args.secret.clone(),
        concurrency: args.publish_concurrency,
        payload_bytes: args.payload_bytes,
        channel_pool: args.pool,
        channel_prefix: args.channel_prefix.clone(),
    })
    .await?;
    let subs = subscribers_per_channel(args.conns, args.channels, args.pool);
    let step_len = Duration::from_secs_f64(args.step_secs);
    let grace = Duration::from_millis(args.grace_ms);

    // Warm-up: five publications, not reported.
    publisher.run_step(0, 5.0, Duration::from_secs(1)).await;
    tokio::time::sleep(grace).await;
    let warm = collect(pool, 0).await?;
    for (k, v) in warm.errors {
        *result.drop_reasons.entry(k).or_default() += v;
    }

    result.stop_reason = "all rates done".into();
    let mut best: Option<(f64, u32)> = None;
    let mut saturation: Option<(f64, u32)> = None;
    for (i, &rate) in args.rates.iter().enumerate() {
        let step = i as u32 + 1;
        let before = sample(&args.server_pid);
        let t0 = Instant::now();
        let sent = publisher.run_step(step, rate, step_len).await;
        tokio::time::sleep(grace).await;
        let got = collect(pool, step).await?;
        let wall = t0.elapsed().as_secs_f64();
        let after = sample(&args.server_pid);
        let expected: u64 = sent.per_channel.iter().zip(&subs).map(|(p, s)| p * s).sum();
        let delivered = got.received;
        let loss = if expected > 0 {
            (1.0 - delivered as f64 / expected as f64).max(0.0)
        } else {
            0.0
        };
        let (cpu_secs, rss) = match (before, after) {
            (Some(b), Some(a)) => ((a.cpu.saturating_sub(b.cpu)).as_secs_f64(), a.rss),
            _ => (0.0, 0),
        };
        let latency = got.latency.summary();
        let publish_rate = sent.published as f64 / sent.secs.max(1e-9);
        let mut s = Step {
            step,
            target_rate: rate,
            published: sent.published,
            publish_errors: sent.errors,
            publish_rate,
            expected,
            delivered,
            loss,
            deliveries_per_sec: delivered as f64 / sent.secs.max(step_len.as_secs_f64()),
            latency,
            server_cpu_secs: cpu_secs,
            server_cpu_pct: cpu_secs / wall * 100.0,
            server_cpu_us_per_delivery: if delivered > 0 {
                cpu_secs * 1e6 / delivered as f64
            } else {
                0.0
            },
            server_rss: rss,
            dropped_conns: got.dropped,
            ok: false,
            histogram: got.latency.to_sparse(),
        };
        for (k, v) in got.errors {
            *result.drop_reasons.entry(k).or_default() += v;
        }
        let p99_ms = latency.p99 as f64 / 1000.0;
        let stop_p99 = if args.stop_p99_ms > 0.0 {
            args.stop_p99_ms
        } else {
            args.max_p99_ms
        };
        let reason = if p99_ms > stop_p99 {
            Some(format!("p99 {p99_ms:.1} ms > {stop_p99} ms at {rate}/s"))
        } else if loss > args.max_loss {
            Some(format!("{:.2} % lost at {rate}/s", loss * 100.0))
        } else if got.dropped > 0 {
            Some(format!("{} connections dropped at {rate}/s", got.dropped))
        } else if sent.errors > sent.published / 100 {
            Some(format!("{} publish errors at {rate}/s", sent.errors))
        } else if publish_rate < rate * 0.9 {
            Some(format!(
                "publisher reached only {publish_rate:.0}/s of {rate}/s"
            ))
        } else {
            None
        };
        s.ok = reason.is_none() && p99_ms <= args.max_p99_ms;
        if s.ok && best.is_none_or(|(d, _)| s.deliveries_per_sec > d) {
            best = Some((s.deliveries_per_sec, step));
        }
        if reason.is_none() && saturation.is_none_or(|(d, _)| s.deliveries_per_sec > d) {
            saturation = Some((s.deliveries_per_sec, step));
        }
        eprintln!(
            "[{}] step {step}: {rate}/s → {:.0} deliveries/s, p99 {p99_ms:.2} ms, loss {:.2} %, cpu {:.0} %",
            args.name,
            s.deliveries_per_sec,
            loss * 100.0,
            s.server_cpu_pct
        );
        result.steps.push(s);
        if let Some(r) = reason {
            result.stop_reason = r;
            break;
        }
    }
    result.best_step = best.map(|(_, s)| s);
    result.saturation_step = saturation.map(|(_, s)| s);
    Ok(())
}

/// Runs one benchmark and writes its result.
pub async fn run(args: RunArgs) -> anyhow::Result<RunResult> {
    procstat::raise_fd_limit();
    let deadline = Duration::from_secs(args.max_secs);
    let started_unix = crate::payload::now_micros() / 1_000_000;
    let mut result = RunResult {
        name: args.name.clone(),
        scenario: args.scenario.clone(),
        target: args.target.clone(),
        protocol: args.protocol.as_str().into(),
        mode: format!("{:?}", args.mode).to_lowercase(),
        params: Params {
            conns: args.conns,
            workers: args.workers,
            connect_rate: args.connect_rate,
            concurrency: args.concurrency,
            channels_per_conn: args.channels,
            channel_pool: args.pool,
            payload_bytes: args.payload_bytes,
            publish_via: format!("{:?}", args.publish_via).to_lowercase(),
            rates: args.rates.clone(),
            step_secs: args.step_secs,
            max_p99_ms: args.max_p99_ms,
            stop_p99_ms: args.stop_p99_ms,
            max_loss: args.max_loss,
        },
        started_unix,
        ..Default::default()
    };
    let work = async {
        let before = sample(&args.server_pid);
        let mut pool = Pool::spawn(&specs(&args))?;
        let workers = pool.pids();
        let workers_before = sample(&workers);
        let (mut phase, curve) = connect_phase(&mut pool, &args).await?;
        let per_conn = |b: procstat::Sample, a: procstat::Sample| {
            a.cpu.saturating_sub(b.cpu).as_secs_f64() * 1e6 / phase.connected.max(1) as f64
        };
        let server = before.zip(sample(&args.server_pid));
        let loadgen = workers_before.zip(sample(&workers));
        phase.server_cpu_us_per_conn = server.map(|(b, a)| per_conn(b, a));
        phase.loadgen_cpu_us_per_conn = loadgen.map(|(b, a)| per_conn(b, a));
        // Over the phase's own span (first attempt to last opening): the CPU spent outside it
        // (workers starting, waiting for their next progress tick) is next to nothing.
        if let (Some((sb, sa)), Some((lb, la)), Some(cpus)) =
            (server, loadgen, std::thread::available_parallelism().ok())
        {
            let busy = sa.cpu.saturating_sub(sb.cpu) + la.cpu.saturating_sub(lb.cpu);
            if phase.secs > 0.0 {
                phase.box_busy = Some(busy.as_secs_f64() / (phase.secs * cpus.get() as f64));
            }
        }
        result.connect = phase;
        tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
        if let (Some(b), Some(a)) = (before, sample(&args.server_pid)) {
            result.memory = Some(Memory {
                rss_before: b.rss,
                rss_after: a.rss,
                per_conn_bytes: (a.rss as f64 - b.rss as f64)
                    / (result.connect.connected.max(1)) as f64,
                curve,
            });
        }
        if args.mode == Mode::Ramp {
            ramp(&mut pool, &args, &mut result).await?;
        }
        pool.stop().await;
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout(deadline, work).await;
    match outcome {
        Ok(r) => r?,
        Err(_) => result.stop_reason = format!("run bounded at {} s", args.max_secs),
    }
    std::fs::create_dir_all(&args.out_dir)?;
    let path = args.out_dir.join(format!("{}.json", args.name));
    std::fs::write(&path, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("writing {}", path.display()))?;
    print!("{}", result.table());
    println!("result: {}", path.display());
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn connections_and_rates_split_over_workers() {
        let cli = Cli::parse_from([
            "x",
            "--name",
            "t",
            "--ws-url",
            "ws://127.0.0.1:1/",
            "--conns",
            "10001",
            "--workers",
            "2",
            "--connect-rate",
            "1000",
        ]);
        let s = specs(&cli.run);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].conns + s[1].conns, 10_001);
        assert_eq!(s[1].first_conn, s[0].conns);
        assert_eq!(s[0].connect_rate, 500.0);
    }
}
