//! The density scenario (issue #20 item 6): many projects on one control plane that parks idle
//! tenants quickly (`ROTOR_PARK_AFTER_MS`, set by `scripts/bench/run.sh`). Creates N projects
//! through the REST API (bounded concurrency), keeps M of them live with a few idle WebSocket
//! clients each through the edge, waits until the others are parked, then measures the running
//! tenants' memory (PSS and private bytes from `smaps_rollup`), the idle CPU of the tenants and
//! the control plane over a window, the control plane's open files, the wake-up latency of a
//! parked project and the project create → first message latency.

pub mod probes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::cp::{confinement, ControlPlane, CpArgs, Project, Timing};
use crate::procstat;
use probes::{Live, LiveClients};

/// Options of the scenario.
#[derive(Debug, Clone, Args)]
pub struct DensityArgs {
    #[command(flatten)]
    pub cp: CpArgs,
    /// Projects in all.
    #[arg(long, default_value_t = 10_000)]
    pub projects: usize,
    /// Projects kept live by idle clients.
    #[arg(long, default_value_t = 1000)]
    pub live: usize,
    /// Idle WebSocket clients per live project.
    #[arg(long, default_value_t = 3)]
    pub clients: usize,
    /// REST creations in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Create → first message probes.
    #[arg(long, default_value_t = 50)]
    pub probes: usize,
    /// Wake-up probes.
    #[arg(long, default_value_t = 100)]
    pub wakes: usize,
    /// The idle CPU window.
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// Bound on waiting for the idle projects to be parked.
    #[arg(long, default_value_t = 180)]
    pub settle_secs: u64,
    /// Creation pauses while this many tenant processes run or wait to start (every thread
    /// of every tenant takes a pid, and a box has 32 768 by default).
    #[arg(long, default_value_t = 2500)]
    pub max_processes: usize,
    /// The control plane's `ROTOR_PARK_AFTER_MS` (for the report).
    #[arg(long, default_value_t = 5000)]
    pub park_after_ms: u64,
    /// Hard bound on the whole run.
    #[arg(long, default_value_t = 900)]
    pub max_secs: u64,
    #[arg(long, default_value = "bench/results/density.json")]
    pub out: PathBuf,
}

/// The parameters, as run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DensityParams {
    pub projects: usize,
    pub live: usize,
    pub clients: usize,
    pub concurrency: usize,
    pub probes: usize,
    pub wakes: usize,
    pub idle_secs: u64,
    pub park_after_ms: u64,
    #[serde(default)]
    pub max_processes: usize,
}

/// The REST creation of the N projects.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CreatePhase {
    pub created: u64,
    pub failed: u64,
    pub secs: f64,
    pub per_sec: f64,
    /// One `POST /v1/projects` (plus the secret's `GET` for live projects).
    pub latency: Timing,
    /// Most tenant processes running at once while creating and settling (sampled every
    /// 500 ms).
    pub peak_running: usize,
    /// Time creation spent paused at `max_processes`.
    #[serde(default)]
    pub paused_secs: f64,
    pub errors: BTreeMap<String, u64>,
}

/// Waiting for the idle projects to be parked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Settle {
    pub secs: f64,
    /// Running tenants down to the live ones (plus 2 %) within the bound.
    pub settled: bool,
    pub running: usize,
    pub parked: usize,
    pub live_running: usize,
}

/// Percentiles of byte counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub max: u64,
    pub total: u64,
}

impl Spread {
    fn of(mut v: Vec<u64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_unstable();
        let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
        let total: u64 = v.iter().sum();
        Self {
            count: v.len(),
            mean: total as f64 / v.len() as f64,
            p50: at(0.5),
            p90: at(0.9),
            max: at(1.0),
            total,
        }
    }
}

/// Memory of the running tenants and the control plane, bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    pub pss: Spread,
    pub private: Spread,
    pub rss: Spread,
    pub control_plane_pss: u64,
    pub control_plane_rss: u64,
    /// Threads per running tenant.
    #[serde(default)]
    pub threads: Spread,
}

/// CPU over the idle window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IdleCpu {
    pub secs: f64,
    /// Running tenants sampled at the start, and those gone by the end (parked or restarted).
    pub tenants: usize,
    pub vanished: usize,
    pub control_plane_secs: f64,
    pub tenants_secs: f64,
    /// Tenants + control plane, percent of one core.
    pub pct_of_core: f64,
    pub control_plane_pct: f64,
    pub tenants_pct: f64,
    pub running_after: usize,
    /// The whole machine's busy CPU over the window (every core, everything that ran).
    #[serde(default)]
    pub machine_pct: f64,
}

/// The control plane's open files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OpenFiles {
    pub control_plane: usize,
    pub per_project: f64,
    pub per_running_tenant: f64,
}

/// `bench/results/density.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DensityResult {
    pub scenario: String,
    pub started_unix: u64,
    pub params: DensityParams,
    pub confinement: String,
    pub create: CreatePhase,
    pub live: LiveClients,
    pub settle: Settle,
    pub memory: Memory,
    pub idle: IdleCpu,
    pub files: OpenFiles,
    /// A request to a parked project through the edge, to its answer: a project that never
    /// ran (created parked; the wake compiles its config from Postgres).
    pub wake: Timing,
    pub wake_statuses: BTreeMap<String, u64>,
    /// The same projects woken again once parked after running (their compiled config kept
    /// in the parking marker: the wake needs no database).
    #[serde(default)]
    pub warm_wake: Timing,
    #[serde(default)]
    pub warm_wake_statuses: BTreeMap<String, u64>,
    /// Project created through REST → first publication delivered through the edge.
    pub first_message: Timing,
    /// The REST part of it (project, API key, secret).
    pub first_message_rest: Timing,
    pub first_message_failures: Vec<String>,
    /// Idle CPU of tenants + control plane < 5 % of one core.
    pub met: Option<bool>,
    /// Why the run stopped early, if it did.
    pub failure: Option<String>,
}

struct Created {
    project: Project,
    live: bool,
}

/// Holds creation back while too many tenant processes run or wait to start: running ones
/// have a `.state` file, parked ones a `.parked` file, the rest of the created ones are about
/// to be started. The run directory is counted at most every 100 ms.
struct Gate {
    max: usize,
    created: AtomicUsize,
    /// (when counted, running + parked, running).
    counted: tokio::sync::Mutex<(Option<Instant>, usize, usize)>,
    paused: std::sync::Mutex<Duration>,
}

impl Gate {
    fn processes(&self, running: usize, settled: usize) -> usize {
        running + self.created.load(Ordering::Relaxed).saturating_sub(settled)
    }

    async fn wait(&self, cp: &ControlPlane) {
        let started = Instant::now();
        loop {
            let (running, settled) = {
                let mut c = self.counted.lock().await;
                if c.0.is_none_or(|t| t.elapsed() > Duration::from_millis(100)) {
                    let running = cp.ids_with("state").len();
                    *c = (
                        Some(Instant::now()),
                        running + cp.ids_with("parked").len(),
                        running,
                    );
                }
                (c.2, c.1)
            };
            if self.processes(running, settled) < self.max {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) += started.elapsed();
    }
}

async fn create_all(
    cp: &ControlPlane,
    args: &DensityArgs,
    live: &Live,
    result: &mut DensityResult,
) -> Vec<Created> {
    let stride = (args.projects / args.live.max(1)).max(1);
    let started = Instant::now();
    let gate = Gate {
        max: args.max_processes.max(args.concurrency + args.live + 1),
        created: AtomicUsize::new(0),
        counted: tokio::sync::Mutex::new((None, 0, 0)),
        paused: std::sync::Mutex::new(Duration::ZERO),
    };
    let done = AtomicUsize::new(0);
    let outcomes: Vec<(Duration, anyhow::Result<Created>)> =
        futures_util::stream::iter(0..args.projects)
            .map(|i| {
                let (done, gate) = (&done, &gate);
                async move {
                    gate.wait(cp).await;
                    let t0 = Instant::now();
                    let is_live = i % stride == 0 && i / stride < args.live;
                    let made = async {
                        let project = cp.create_project(&format!("density-{i}")).await?;
                        gate.created.fetch_add(1, Ordering::Relaxed);
                        if is_live {
                            let secret = cp.secret(&project.id).await?;
                            live.add(cp, &project, &secret, args.clients);
                        }
                        anyhow::Ok(Created {
                            project,
                            live: is_live,
                        })
                    }
                    .await;
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 1000 == 0 {
                        eprintln!(
                            "[density] {n} projects in {:.0} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    (t0.elapsed(), made)
                }
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect()
            .await;
    let c = &mut result.create;
    c.secs = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut out = Vec::new();
    for (took, made) in outcomes {
        match made {
            Ok(m) => {
                latencies.push(took);
                out.push(m);
            }
            Err(e) => {
                c.failed += 1;
                let kind: String = format!("{e:#}").chars().take(80).collect();
                *c.errors.entry(kind).or_default() += 1;
            }
        }
    }
    c.created = out.len() as u64;
    c.per_sec = c.created as f64 / c.secs.max(1e-9);
    c.latency = Timing::of(&latencies);
    // Summed over the concurrent creations: divided by them, the wall time spent paused.
    c.paused_secs = gate
        .paused
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_secs_f64()
        / args.concurrency.max(1) as f64;
    eprintln!(
        "[density] created {} projects ({} failed) in {:.1} s ({:.0}/s, about {:.0} s paused at \
         {} processes), p99 {:.0} ms",
        c.created, c.failed, c.secs, c.per_sec, c.paused_secs, gate.max, c.latency.p99_ms
    );
    out
}

async fn settle(cp: &ControlPlane, args: &DensityArgs, live: &Live, made: &[Created]) -> Settle {
    let started = Instant::now();
    let live_ids: std::collections::HashSet<&str> = made
        .iter()
        .filter(|c| c.live)
        .map(|c| c.project.id.as_str())
        .collect();
    let allowed = live_ids.len() + live_ids.len() / 50 + 2;
    let mut s = Settle::default();
    loop {
        let running = cp.ids_with("state");
        let (finished, attempted) = live.settled();
        s.running = running.len();
        s.live_running = running
            .iter()
            .filter(|id| live_ids.contains(id.as_str()))
            .count();
        s.parked = cp.ids_with("parked").len();
        s.settled = s.running <= allowed && finished >= attempted;
        if s.settled || started.elapsed() > Duration::from_secs(args.settle_secs) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    s.secs = started.elapsed().as_secs_f64();
    eprintln!(
        "[density] settled={} after {:.0} s: {} running ({} live), {} parked, {} clients open",
        s.settled,
        s.secs,
        s.running,
        s.live_running,
        s.parked,
        live.open()
    );
    s
}

fn memory(cp: &ControlPlane) -> Memory {
    let (mut pss, mut private, mut rss, mut threads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (_, r) in cp.running() {
        if let (Ok(m), Ok(t)) = (procstat::rollup_of(r.pid), procstat::threads_of(r.pid)) {
            pss.push(m.pss);
            private.push(m.private);
            rss.push(m.rss);
            threads.push(t);
        }
    }
    let cpm = procstat::rollup_of(cp.args.cp_pid).unwrap_or_default();
    Memory {
        pss: Spread::of(pss),
        private: Spread::of(private),
        rss: Spread::of(rss),
        control_plane_pss: cpm.pss,
        control_plane_rss: cpm.rss,
        threads: Spread::of(threads),
    }
}

async fn idle_cpu(cp: &ControlPlane, secs: u64) -> IdleCpu {
    // The scheduler's runtime, not tick-sampled utime + stime: idle tenants run for
    // microseconds right after a timer interrupt and are rarely charged a tick for it.
    let cpu = |pid: u32| {
        procstat::runtime_of(pid)
            .or_else(|| procstat::cpu_of(pid).ok())
            .map(|d| d.as_secs_f64())
    };
    let tenants: Vec<(u32, f64)> = cp
        .running()
        .into_iter()
        .filter_map(|(_, r)| Some((r.pid, cpu(r.pid)?)))
        .collect();
    let cp0 = cpu(cp.args.cp_pid).unwrap_or(0.0);
    let machine = || procstat::machine_busy().map_or(0.0, |d| d.as_secs_f64());
    let m0 = machine();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = started.elapsed().as_secs_f64();
    let cp1 = cpu(cp.args.cp_pid).unwrap_or(cp0);
    let m1 = machine();
    let mut out = IdleCpu {
        secs: wall,
        tenants: tenants.len(),
        control_plane_secs: (cp1 - cp0).max(0.0),
        running_after: cp.ids_with("state").len(),
        ..Default::default()
    };
    for (pid, before) in tenants {
        match cpu(pid) {
            Some(after) => out.tenants_secs += (after - before).max(0.0),
            None => out.vanished += 1,
        }
    }
    out.control_plane_pct = out.control_plane_secs / wall * 100.0;
    out.tenants_pct = out.tenants_secs / wall * 100.0;
    out.pct_of_core = out.control_plane_pct + out.tenants_pct;
    out.machine_pct = (m1 - m0).max(0.0) / wall * 100.0;
    eprintln!(
        "[density] idle {:.0} s: control plane {:.2} %, {} tenants {:.2} % of one core",
        wall, out.control_plane_pct, out.tenants, out.tenants_pct
    );
    out
}

async fn wakes(cp: &ControlPlane, made: &[Created], n: usize, result: &mut DensityResult) {
    let probed: Vec<&Project> = made
        .iter()
        .filter(|c| !c.live && cp.is_parked(&c.project.id))
        .take(n)
        .map(|c| &c.project)
        .collect();
    let (cold, statuses) = wake_all(cp, &probed).await;
    result.wake = cold;
    result.wake_statuses = statuses;
    eprintln!(
        "[density] cold wake through the edge: p50 {:.1} ms, p99 {:.1} ms over {} ({:?})",
        result.wake.p50_ms, result.wake.p99_ms, result.wake.count, result.wake_statuses
    );
    // Once they are parked again with their config kept, the same projects wake warm.
    let deadline = Instant::now() + Duration::from_secs(120);
    let warm: Vec<&Project> = loop {
        let ready: Vec<&Project> = probed
            .iter()
            .copied()
            .filter(|p| cp.keeps_config(&p.id))
            .collect();
        if ready.len() == probed.len() || Instant::now() >= deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (timing, statuses) = wake_all(cp, &warm).await;
    result.warm_wake = timing;
    result.warm_wake_statuses = statuses;
    eprintln!(
        "[density] warm wake through the edge: p50 {:.1} ms, p99 {:.1} ms over {} ({:?})",
        result.warm_wake.p50_ms,
        result.warm_wake.p99_ms,
        result.warm_wake.count,
        result.warm_wake_statuses
    );
}

/// Wakes each project in turn; the timings and the answers by status.
async fn wake_all(cp: &ControlPlane, projects: &[&Project]) -> (Timing, BTreeMap<String, u64>) {
    let mut samples = Vec::new();
    let mut statuses = BTreeMap::new();
    for project in projects {
        match probes::wake(cp, project).await {
            Ok((took, status)) => {
                *statuses.entry(status.to_string()).or_default() += 1;
                samples.push(took);
            }
            Err(e) => {
                let kind: String = format!("{e}").chars().take(60).collect();
                *statuses.entry(kind).or_default() += 1;
            }
        }
    }
    (Timing::of(&samples), statuses)
}

async fn first_messages(cp: &ControlPlane, n: usize, result: &mut DensityResult) {
    let (mut total, mut rest) = (Vec::new(), Vec::new());
    for i in 0..n {
        match probes::first_message(cp, &format!("probe-{i}")).await {
            Ok(m) => {
                total.push(m.total);
                rest.push(m.rest);
            }
            Err(e) => result.first_message_failures.push(format!("{e:#}")),
        }
    }
    result.first_message = Timing::of(&total);
    result.first_message_rest = Timing::of(&rest);
    eprintln!(
        "[density] create → first message: p50 {:.1} ms, p99 {:.1} ms over {} ({} failed)",
        result.first_message.p50_ms,
        result.first_message.p99_ms,
        result.first_message.count,
        result.first_message_failures.len()
    );
}

async fn measure(args: &DensityArgs, result: &mut DensityResult) -> anyhow::Result<()> {
    let cp = ControlPlane::sign_up(&args.cp, "density@bench.local").await?;
    // Enough projects and tokens on one account, on a plan without connection caps.
    let max = (args.projects + args.probes + 10).to_string();
    cp.operator(&[
        "set-limits",
        "custom",
        &format!("{{\"max_projects\": {max}}}"),
    ])
    .await?;
    cp.operator(&["set-plan", "density@bench.local", "custom"])
        .await?;
    let live = Live::new();
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (peak, cp) = (peak.clone(), cp.args.clone());
        tokio::spawn(async move {
            loop {
                let running = std::fs::read_dir(&cp.run_dir).map_or(0, |d| {
                    d.flatten()
                        .filter(|e| e.path().extension().is_some_and(|x| x == "state"))
                        .count()
                });
                peak.fetch_max(running, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let made = create_all(&cp, args, &live, result).await;
    anyhow::ensure!(!made.is_empty(), "no project was created");
    result.settle = settle(&cp, args, &live, &made).await;
    watcher.abort();
    result.create.peak_running = peak.load(Ordering::Relaxed);
    result.confinement = confinement(cp.running().first().map(|(_, r)| r));
    // A moment of steady state after the last park.
    tokio::time::sleep(Duration::from_secs(3)).await;
    result.memory = memory(&cp);
    result.idle = idle_cpu(&cp, args.idle_secs).await;
    let files = procstat::open_files(cp.args.cp_pid).unwrap_or(0);
    result.files = OpenFiles {
        control_plane: files,
        per_project: files as f64 / made.len() as f64,
        per_running_tenant: files as f64 / result.idle.running_after.max(1) as f64,
    };
    wakes(&cp, &made, args.wakes, result).await;
    first_messages(&cp, args.probes, result).await;
    result.live = live.stats();
    live.stop();
    Ok(())
}

/// Runs the scenario and writes its result.
pub async fn run(args: DensityArgs) -> anyhow::Result<DensityResult> {
    procstat::raise_fd_limit();
    let mut result = DensityResult {
        scenario: "density".into(),
        started_unix: crate::payload::now_micros() / 1_000_000,
        params: DensityParams {
            projects: args.projects,
            live: args.live,
            clients: args.clients,
            concurrency: args.concurrency,
            probes: args.probes,
            wakes: args.wakes,
            idle_secs: args.idle_secs,
            park_after_ms: args.park_after_ms,
            max_processes: args.max_processes,
        },
        ..Default::default()
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(args.max_secs),
        measure(&args, &mut result),
    )
    .await;
    result.failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(_) => Some(format!("run bounded at {} s", args.max_secs)),
    };
    if result.idle.secs > 0.0 {
        result.met = Some(result.idle.pct_of_core < 5.0);
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("result: {}", args.out.display());
    if let Some(f) = &result.failure {
        anyhow::bail!("density run failed: {f}");
    }
    Ok(result)
}
