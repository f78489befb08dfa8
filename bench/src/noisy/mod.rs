//! The noisy-neighbour scenario (issue #20 item 3): two projects on one control plane.
//! Tenant B (plan `pro`) serves a steady publish rate to its subscribers — each on its own
//! channel of namespace `bench`, one delivery per publication — measured publish → deliver
//! over a quiet window; then again while tenant A (plan `free`) is driven to saturation by a
//! separate noise process ([`noise`]: a publish flood far above A's rate limit into a history
//! namespace until its byte budget refuses, and a connection storm far above its connection
//! limit); then once more after the noise. A's refusals (111, 106, 503) and the CPU time of
//! the control plane, both tenants and the load generator are recorded per window.

pub mod noise;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::AsyncReadExt as _;

use crate::client::{subscribers_per_channel, Protocol};
use crate::coordinator::collect;
use crate::cp::{confinement, ControlPlane, CpArgs, Project, TenantRecord};
use crate::histogram::Summary;
use crate::pool::Pool;
use crate::procstat;
use crate::publisher::{PublishVia, Publisher, Target};
use crate::wire::{Event, WorkerSpec};
use noise::{NoiseSpec, NoiseSummary};

/// How B's traffic reaches B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// Through the control plane's edge (`/t/{slug}/…`), like A's traffic.
    Edge,
    /// Straight to B's process (its address from `{run_dir}/{id}.state`).
    Direct,
}

/// Options of the scenario.
#[derive(Debug, Clone, Args)]
pub struct NoisyArgs {
    #[command(flatten)]
    pub cp: CpArgs,
    /// B's subscribers, each on its own channel.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// B's publications per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Length of each measured window.
    #[arg(long, default_value_t = 30.0)]
    pub window_secs: f64,
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    #[arg(long, value_enum, default_value = "edge")]
    pub b_via: Via,
    /// A's publish attempts per second (its plan allows 100).
    #[arg(long, default_value_t = 2000.0)]
    pub flood_rate: f64,
    /// A's payload bytes until its history budget is full.
    #[arg(long, default_value_t = 32768)]
    pub flood_bytes: usize,
    #[arg(long, default_value_t = 64)]
    pub flood_concurrency: usize,
    /// A's history channels (its plan caps each at 1 MiB of history, the project at 16 MiB).
    #[arg(long, default_value_t = 64)]
    pub flood_channels: usize,
    /// A's connections open or opening at most (its plan allows 200).
    #[arg(long, default_value_t = 2000)]
    pub storm_conns: usize,
    /// A's connection attempts per second.
    #[arg(long, default_value_t = 500.0)]
    pub storm_rate: f64,
    /// Run A's noise process at the kernel's idle priority (`SCHED_IDLE`): on a box where the
    /// load generators share CPUs, it then takes only what B's measuring clients leave, as
    /// it would from a machine of its own; the server side is unchanged.
    #[arg(long)]
    pub noise_idle: bool,
    /// Hard bound on the whole run.
    #[arg(long, default_value_t = 400)]
    pub max_secs: u64,
    #[arg(long, default_value = "bench/results/noisy.json")]
    pub out: PathBuf,
}

/// CPU time spent during a window, seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowCpu {
    pub wall_secs: f64,
    /// The control plane alone (edge, REST, reconciler), without its tenants.
    pub control_plane: f64,
    pub tenant_a: f64,
    pub tenant_b: f64,
    /// B's publisher and subscriber processes.
    pub load_b: f64,
    /// The whole machine (all cores), everything included: other work on the box shows as
    /// the rest.
    #[serde(default)]
    pub machine: f64,
}

/// B's deliveries over one window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// `quiet`, `noisy` or `after`.
    pub name: String,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_rate: f64,
    pub expected: u64,
    pub delivered: u64,
    pub loss: f64,
    /// B's subscribers whose connection ended during the window.
    pub dropped_conns: u64,
    /// Publish → receive, µs.
    pub latency: Summary,
    pub cpu: WindowCpu,
}

/// The parameters, as run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NoisyParams {
    pub conns: usize,
    pub rate: f64,
    pub window_secs: f64,
    pub payload_bytes: usize,
    pub b_via: String,
    pub flood_rate: f64,
    pub flood_bytes: usize,
    #[serde(default)]
    pub flood_concurrency: usize,
    pub flood_channels: usize,
    pub storm_conns: usize,
    pub storm_rate: f64,
}

/// `bench/results/noisy.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NoisyResult {
    pub scenario: String,
    pub started_unix: u64,
    pub params: NoisyParams,
    /// How the kernel confines tenants on this machine.
    pub confinement: String,
    /// Where the processes ran when they were pinned to different CPUs (Rotor's and the load
    /// generators'), e.g. `Rotor on CPU 0, load generators on CPU 1`; `None` when unpinned.
    #[serde(default)]
    pub pinning: Option<String>,
    /// A's noise process ran at the idle scheduling priority (`--noise-idle`).
    #[serde(default)]
    pub noise_idle: bool,
    /// Projects were served at their own host (`ROTOR_TENANT_HOST`, this pattern), so each
    /// project's backend kept its API connections in its own process; `None`: `/t/{slug}`.
    #[serde(default)]
    pub tenant_host: Option<String>,
    pub b_connected: u64,
    pub b_connect_failed: u64,
    pub windows: Vec<Window>,
    pub noise: Option<NoiseSummary>,
    /// Whether a tenant's process changed (restarted) during the run.
    pub a_restarted: bool,
    pub b_restarted: bool,
    /// B's p99 in the noisy window against the quiet one, percent.
    pub p99_change_pct: Option<f64>,
    /// p99 moved by < 10 % and B lost nothing (no loss, no dropped subscriber, no failed
    /// publish) while A was saturated.
    pub met: Option<bool>,
}

impl NoisyResult {
    /// The window of this name.
    pub fn window(&self, name: &str) -> Option<&Window> {
        self.windows.iter().find(|w| w.name == name)
    }
}

#[derive(Clone, Copy, Default)]
struct CpuSnap {
    cp: f64,
    a: f64,
    b: f64,
    load: f64,
    machine: f64,
}

fn cpu(pid: u32) -> f64 {
    procstat::cpu_of(pid).map_or(0.0, |d| d.as_secs_f64())
}

struct Bench {
    cp: ControlPlane,
    a_pid: u32,
    b_pid: u32,
    /// B's subscriber processes (with this one, B's load generator; A's noise is not in it).
    workers: Vec<u32>,
}

impl Bench {
    fn snap(&self) -> CpuSnap {
        CpuSnap {
            cp: cpu(self.cp.args.cp_pid),
            a: cpu(self.a_pid),
            b: cpu(self.b_pid),
            load: cpu(std::process::id()) + self.workers.iter().map(|&p| cpu(p)).sum::<f64>(),
            machine: procstat::machine_busy().map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

/// A project of the scenario with what its clients need.
struct Tenant {
    project: Project,
    key: String,
    secret: String,
    record: TenantRecord,
}

async fn tenant(
    cp: &ControlPlane,
    name: &str,
    plan: &str,
    namespace: (&str, serde_json::Value),
) -> anyhow::Result<Tenant> {
    let project = cp.create_project(name).await?;
    cp.operator(&["set-plan", &project.id, plan]).await?;
    cp.namespace(&project.id, namespace.0, namespace.1).await?;
    let key = cp.api_key(&project.id).await?;
    let secret = cp.secret(&project.id).await?;
    cp.wait_applied(&project.id, Duration::from_secs(30))
        .await?;
    // A new project has no process until its first request: this one starts it.
    cp.http
        .post(cp.api_url(&project.slug, "info"))
        .header("X-API-Key", &key)
        .body("{}")
        .timeout(Duration::from_secs(30))
        .send()
        .await?
        .error_for_status()?;
    let record = cp.wait_record(&project.id, Duration::from_secs(30)).await?;
    Ok(Tenant {
        project,
        key,
        secret,
        record,
    })
}

async fn wait_ready(pool: &mut Pool, limit: Duration) -> anyhow::Result<(u64, u64)> {
    let (mut connected, mut failed, mut ready) = (0, 0, 0);
    while ready < pool.len() {
        if let (
            _,
            Event::Ready {
                connected: c,
                failed: f,
                errors,
                ..
            },
        ) = pool.next(limit, "B's subscribers").await?
        {
            ready += 1;
            connected += c;
            failed += f;
            for (k, v) in errors {
                eprintln!("[noisy] B subscriber failed: {k} ×{v}");
            }
        }
    }
    Ok((connected, failed))
}

async fn window(
    bench: &Bench,
    pool: &mut Pool,
    publisher: &mut Publisher,
    args: &NoisyArgs,
    step: u32,
    name: &str,
) -> anyhow::Result<Window> {
    let subs = subscribers_per_channel(args.conns, 1, args.conns);
    let before = bench.snap();
    let started = std::time::Instant::now();
    let sent = publisher
        .run_step(step, args.rate, Duration::from_secs_f64(args.window_secs))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = collect(pool, step).await?;
    let after = bench.snap();
    let expected: u64 = sent.per_channel.iter().zip(&subs).map(|(p, s)| p * s).sum();
    let w = Window {
        name: name.into(),
        published: sent.published,
        publish_errors: sent.errors,
        publish_rate: sent.published as f64 / sent.secs.max(1e-9),
        expected,
        delivered: got.received,
        loss: if expected > 0 {
            (1.0 - got.received as f64 / expected as f64).max(0.0)
        } else {
            0.0
        },
        dropped_conns: got.dropped,
        latency: got.latency.summary(),
        cpu: WindowCpu {
            wall_secs: started.elapsed().as_secs_f64(),
            control_plane: (after.cp - before.cp).max(0.0),
            tenant_a: (after.a - before.a).max(0.0),
            tenant_b: (after.b - before.b).max(0.0),
            load_b: (after.load - before.load).max(0.0),
            machine: (after.machine - before.machine).max(0.0),
        },
    };
    eprintln!(
        "[noisy] {name}: {} published ({} errors), {} of {} delivered, p50 {:.2} ms, p99 {:.2} ms, \
         CPU s: control plane {:.2}, A {:.2}, B {:.2}",
        w.published,
        w.publish_errors,
        w.delivered,
        w.expected,
        w.latency.p50 as f64 / 1e3,
        w.latency.p99 as f64 / 1e3,
        w.cpu.control_plane,
        w.cpu.tenant_a,
        w.cpu.tenant_b
    );
    Ok(w)
}

/// Starts A's noise process; its summary comes on its stdout when it ends.
/// `Some` when the control plane and this load generator may not run on the same CPUs.
fn pinning(cp_pid: u32) -> Option<String> {
    let server = procstat::cpus_allowed(cp_pid).ok()?;
    let load = procstat::cpus_allowed(std::process::id()).ok()?;
    (server != load).then(|| format!("Rotor on CPU {server}, load generators on CPU {load}"))
}

fn spawn_noise(spec: &NoiseSpec, idle: bool) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    let mut command = if idle {
        // util-linux's chrt: SCHED_IDLE for the noise process and everything it runs.
        let mut c = tokio::process::Command::new("chrt");
        c.arg("--idle").arg("0").arg(exe);
        c
    } else {
        tokio::process::Command::new(exe)
    };
    Ok(command
        .arg("noise")
        .arg("--spec")
        .arg(serde_json::to_string(spec)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

async fn noise_summary(child: &mut tokio::process::Child, limit: Duration) -> Option<NoiseSummary> {
    let mut out = String::new();
    let mut stdout = child.stdout.take()?;
    let read = tokio::time::timeout(limit, stdout.read_to_string(&mut out)).await;
    if read.is_err() {
        let _ = child.kill().await;
        eprintln!("[noisy] the noise process did not finish in time");
        return None;
    }
    let _ = child.wait().await;
    serde_json::from_str(out.trim()).ok()
}

async fn measure(args: &NoisyArgs, result: &mut NoisyResult) -> anyhow::Result<()> {
    let cp = ControlPlane::sign_up(&args.cp, "noisy@bench.local").await?;
    let a = tenant(
        &cp,
        "tenant-a",
        "free",
        ("hist", json!({"history_size": 100, "history_ttl": "3600s"})),
    )
    .await?;
    let b = tenant(
        &cp,
        "tenant-b",
        "pro",
        ("bench", json!({"allow_subscribe_for_client": true})),
    )
    .await?;
    result.confinement = confinement(Some(&b.record));
    result.pinning = pinning(cp.args.cp_pid);
    result.noise_idle = args.noise_idle;
    result.tenant_host = cp.args.tenant_host.clone();
    eprintln!(
        "[noisy] A {} (free, pid {}), B {} (pro, pid {}); tenants: {}",
        a.project.slug, a.record.pid, b.project.slug, b.record.pid, result.confinement
    );
    let (b_ws, b_pub) = match args.b_via {
        Via::Edge => (
            cp.ws_url(&b.project.slug),
            cp.api_url(&b.project.slug, "publish"),
        ),
        Via::Direct => (
            format!("ws://{}/connection/websocket", b.record.addr),
            format!("http://{}/api/publish", b.record.addr),
        ),
    };
    let mut bench = Bench {
        a_pid: a.record.pid,
        b_pid: b.record.pid,
        workers: Vec::new(),
        cp,
    };

    let prefix = "bench:b".to_owned();
    let mut pool = Pool::spawn(&[WorkerSpec {
        index: 0,
        protocol: Protocol::Json,
        ws_url: b_ws,
        secret: Some(b.secret.clone()),
        conns: args.conns,
        first_conn: 0,
        connect_rate: 2000.0,
        concurrency: 128,
        channels_per_conn: 1,
        channel_pool: args.conns,
        channel_prefix: prefix.clone(),
        handshake_timeout_ms: 20_000,
        max_secs: args.max_secs + 30,
    }])?;
    bench.workers = pool.pids();
    let (connected, failed) = wait_ready(&mut pool, Duration::from_secs(90)).await?;
    result.b_connected = connected;
    result.b_connect_failed = failed;
    ensure!(connected > 0, "none of B's subscribers connected");
    let mut publisher = Publisher::new(Target {
        via: PublishVia::Api,
        url: b_pub,
        api_key: Some(b.key.clone()),
        protocol: Protocol::Json,
        secret: None,
        concurrency: 64,
        payload_bytes: args.payload_bytes,
        channel_pool: args.conns,
        channel_prefix: prefix,
    })
    .await?;
    // Warm-up (connections of the publisher's client pool), not reported.
    publisher.run_step(0, 50.0, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    collect(&mut pool, 0).await?;

    result
        .windows
        .push(window(&bench, &mut pool, &mut publisher, args, 1, "quiet").await?);

    let ramp = Duration::from_secs(2);
    let spec = NoiseSpec {
        api_url: bench.cp.api_url(&a.project.slug, "publish"),
        api_key: a.key.clone(),
        ws_url: bench.cp.ws_url(&a.project.slug),
        secret: a.secret.clone(),
        flood_rate: args.flood_rate,
        flood_bytes: args.flood_bytes,
        flood_small_bytes: 200,
        flood_concurrency: args.flood_concurrency,
        flood_channels: args.flood_channels,
        channel_prefix: "hist:c".into(),
        storm_conns: args.storm_conns,
        storm_rate: args.storm_rate,
        secs: ramp.as_secs_f64() + args.window_secs + 1.5,
    };
    let mut child = spawn_noise(&spec, args.noise_idle)?;
    tokio::time::sleep(ramp).await;
    let noisy = window(&bench, &mut pool, &mut publisher, args, 2, "noisy").await;
    result.noise = noise_summary(&mut child, Duration::from_secs_f64(spec.secs + 30.0)).await;
    result.windows.push(noisy?);
    if let Some(n) = &result.noise {
        eprintln!(
            "[noisy] A's flood: {} attempts in {:.1} s, {:?}; storm: {} attempts, {} accepted, \
             peak {} open, {:?}",
            n.flood.attempted,
            n.flood.secs,
            n.flood.outcomes,
            n.storm.attempts,
            n.storm.accepted,
            n.storm.peak_open,
            n.storm.outcomes
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    result
        .windows
        .push(window(&bench, &mut pool, &mut publisher, args, 3, "after").await?);
    pool.stop().await;

    result.a_restarted = bench
        .cp
        .record(&a.project.id)
        .is_none_or(|r| r.pid != a.record.pid);
    result.b_restarted = bench
        .cp
        .record(&b.project.id)
        .is_none_or(|r| r.pid != b.record.pid);
    Ok(())
}

/// Runs the scenario and writes its result.
pub async fn run(args: NoisyArgs) -> anyhow::Result<NoisyResult> {
    procstat::raise_fd_limit();
    let mut result = NoisyResult {
        scenario: "noisy".into(),
        started_unix: crate::payload::now_micros() / 1_000_000,
        params: NoisyParams {
            conns: args.conns,
            rate: args.rate,
            window_secs: args.window_secs,
            payload_bytes: args.payload_bytes,
            b_via: format!("{:?}", args.b_via).to_lowercase(),
            flood_rate: args.flood_rate,
            flood_bytes: args.flood_bytes,
            flood_concurrency: args.flood_concurrency,
            flood_channels: args.flood_channels,
            storm_conns: args.storm_conns,
            storm_rate: args.storm_rate,
        },
        ..Default::default()
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(args.max_secs),
        measure(&args, &mut result),
    )
    .await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(_) => Some(format!("run bounded at {} s", args.max_secs)),
    };
    let verdict = match (result.window("quiet"), result.window("noisy")) {
        (Some(q), Some(n)) if q.latency.p99 > 0 => {
            let change = (n.latency.p99 as f64 - q.latency.p99 as f64) / q.latency.p99 as f64;
            let lost = n.loss > 0.0 || n.dropped_conns > 0 || n.publish_errors > 0;
            Some((change * 100.0, change < 0.10 && !lost))
        }
        _ => None,
    };
    result.p99_change_pct = verdict.map(|v| v.0);
    result.met = verdict.map(|v| v.1);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("result: {}", args.out.display());
    if let Some(f) = failure {
        anyhow::bail!("noisy neighbour run failed: {f}");
    }
    Ok(result)
}
