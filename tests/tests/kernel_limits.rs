//! Kernel limits per plan (#20 item 1), against the real control plane and tenants: a tenant
//! process runs with its plan's open files as soft and hard `RLIMIT_NOFILE`, no core dumps, and
//! in a control group of its own with the plan's memory, tasks and CPU weight, its threads on the
//! plan's scheduler time slice; a plan change
//! reaches the running process without a restart; and a tenant that goes over its memory is
//! killed by the kernel inside its own group and restarted by the supervisor, with an audit
//! entry and an event its owner can read, while a neighbour keeps its process and connections;
//! its log, in the directory every tenant shares, is held to a byte budget and cut when large.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rotor_e2e::control_plane::ws::Subscriber;
use rotor_e2e::control_plane::{open_chat, ControlPlane};
use serde_json::{json, Value};

/// Bound on polls for a state that has no event to await.
const WAIT: Duration = Duration::from_secs(20);

/// Soft and hard limit of `name` (e.g. "Max open files") from `/proc/<pid>/limits`.
fn proc_limit(pid: i64, name: &str) -> Result<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .with_context(|| format!("{name} not in /proc/{pid}/limits"))?;
    let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
    Ok((fields[0].to_owned(), fields[1].to_owned()))
}

/// Whether this machine offers a memory cgroup controller (v1 or v2) at the usual places.
/// Threads of process `pid` that are tokio runtime workers.
fn runtime_workers(pid: i64) -> Result<usize> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let comm = std::fs::read_to_string(task?.path().join("comm"))?;
        n += usize::from(comm.trim() == "tokio-rt-worker");
    }
    Ok(n)
}

/// The scheduler time slice of every thread of `pid`, in microseconds (`se.slice` of
/// `/proc/<pid>/task/<tid>/sched`; empty where the kernel does not show it).
fn thread_slices(pid: i64) -> Result<Vec<u64>> {
    let mut slices = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(sched) = std::fs::read_to_string(task?.path().join("sched")) else {
            continue;
        };
        if let Some(ns) = sched
            .lines()
            .find(|l| l.starts_with("se.slice "))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            slices.push(ns / 1_000);
        }
    }
    Ok(slices)
}

/// This test's own slice: the kernel's default, which nothing here asked to change.
fn default_slice() -> Option<u64> {
    thread_slices(std::process::id() as i64)
        .ok()
        .and_then(|s| s.first().copied())
}

fn machine_has_memory_cgroup() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|n| n == "memory"))
}

/// The record's group directories.
fn groups(record: &Value) -> Vec<PathBuf> {
    record["cgroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(PathBuf::from)
        .collect()
}

/// The first of `files` found in any of the groups, trimmed.
fn group_file(groups: &[PathBuf], files: &[&str]) -> Option<String> {
    groups.iter().find_map(|g| {
        files
            .iter()
            .find_map(|f| std::fs::read_to_string(g.join(f)).ok())
            .map(|s| s.trim().to_owned())
    })
}

/// Memory, tasks and CPU weight as written in the groups (v1 or v2 names).
fn group_limits(groups: &[PathBuf]) -> (Option<String>, Option<String>, Option<String>) {
    (
        group_file(groups, &["memory.limit_in_bytes", "memory.max"]),
        group_file(groups, &["pids.max"]),
        group_file(groups, &["cpu.shares", "cpu.weight"]),
    )
}

/// The CPU cap's quota per 100 ms period, in µs (`cpu.cfs_quota_us` on v1, the first field
/// of `cpu.max` on v2).
fn cpu_quota(groups: &[PathBuf]) -> Option<String> {
    group_file(groups, &["cpu.cfs_quota_us", "cpu.max"])
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
}

/// User and system CPU time of process `pid` so far (`/proc/<pid>/stat`, in clock ticks of
/// 10 ms).
fn cpu_time(pid: i64) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

async fn poll<T>(what: &str, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(None) => bail!("timed out waiting for {what}"),
            Err(e) => return Err(e.context(format!("waiting for {what}"))),
        }
    }
}

#[tokio::test]
async fn a_tenant_runs_inside_its_plans_kernel_limits_and_a_plan_change_reaches_it_live(
) -> Result<()> {
    let cp = ControlPlane::start_eager().await?;
    let token = cp.account("kernel-limits@example.com").await?;
    let project = cp
        .project(&token, "limited", &[("chat", open_chat())])
        .await?;
    let record = cp.tenant_record(&project.id)?;
    let pid = record["pid"].as_i64().context("pid")?;

    // The free plan: 1,024 files (the soft limit, which the kernel checks on every open), and
    // no core dumps.
    assert_eq!(proc_limit(pid, "Max open files")?.0, "1024");
    assert_eq!(
        proc_limit(pid, "Max core file size")?,
        ("0".into(), "0".into())
    );
    // Held to half a core, it runs one runtime worker (a second would only trade wakes).
    assert_eq!(
        runtime_workers(pid)?,
        1,
        "runtime workers of a half-core tenant"
    );

    // The free plan keeps the kernel's time slice on every thread.
    let default = default_slice();
    if let Some(default) = default {
        let slices = thread_slices(pid)?;
        ensure!(
            !slices.is_empty() && slices.iter().all(|s| *s == default),
            "free tenant's slices {slices:?}, kernel default {default}"
        );
    }

    let dirs = groups(&record);
    if machine_has_memory_cgroup() {
        ensure!(!dirs.is_empty(), "no cgroup for the tenant: {record}");
    }
    if !dirs.is_empty() {
        // The process is in its own group, below ours, named for the project.
        let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        ensure!(
            membership.contains(&format!("/{}\n", project.id)),
            "tenant not in its group:\n{membership}"
        );
        let (memory, tasks, cpu) = group_limits(&dirs);
        assert_eq!(memory.as_deref(), Some("268435456"), "256 MiB");
        assert_eq!(tasks.as_deref(), Some("64"));
        assert!(
            matches!(cpu.as_deref(), Some("1024") | Some("100")),
            "an ordinary CPU share: {cpu:?}"
        );
        // Half a core at the most.
        assert_eq!(cpu_quota(&dirs).as_deref(), Some("50000"));
    }

    // A subscriber is connected while the operator moves the project to pro.
    let mut sub =
        Subscriber::open(&cp.ws_url(&project.slug), &project.secret, "u1", "chat:a").await?;
    cp.operator(&["set-plan", &project.id, "pro"]).await?;
    cp.wait_applied(&token, &project.id).await?;
    poll("pro plan's open files", || {
        Ok((proc_limit(pid, "Max open files")?.0 == "16384").then_some(()))
    })
    .await?;
    if !dirs.is_empty() {
        let (memory, tasks, cpu) = poll("pro plan's group limits", || {
            let limits = group_limits(&dirs);
            Ok((limits.1.as_deref() == Some("256")).then_some(limits))
        })
        .await?;
        assert_eq!(memory.as_deref(), Some("2147483648"), "2 GiB");
        assert_eq!(tasks.as_deref(), Some("256"));
        assert!(
            matches!(cpu.as_deref(), Some("4096") | Some("400")),
            "four ordinary shares: {cpu:?}"
        );
        assert_eq!(cpu_quota(&dirs).as_deref(), Some("200000"), "two cores");
    }
    // Pro's 300 µs slice reaches every thread of the running process.
    if default.is_some() {
        poll("pro plan's time slice on every thread", || {
            let slices = thread_slices(pid)?;
            Ok((!slices.is_empty() && slices.iter().all(|s| *s == 300)).then_some(()))
        })
        .await?;
    }
    // Same process, same connection.
    assert_eq!(cp.tenant_record(&project.id)?["pid"].as_i64(), Some(pid));
    let (status, body) = cp.publish(&project, "chat:a", json!({"n": 1})).await?;
    ensure!(
        status == 200 && body.get("error").is_none(),
        "{status} {body}"
    );
    assert_eq!(sub.publication().await?, json!({"n": 1}));

    // A tenant started on pro runs with the slice from its first thread: the supervisor sets
    // it between fork and exec and every thread the process makes inherits it.
    if default.is_some() {
        let pro_token = cp.account("kernel-limits-pro@example.com").await?;
        cp.operator(&["set-plan", "kernel-limits-pro@example.com", "pro"])
            .await?;
        let born = cp
            .project(&pro_token, "bornpro", &[("chat", open_chat())])
            .await?;
        let born_pid = cp.tenant_record(&born.id)?["pid"].as_i64().context("pid")?;
        let slices = thread_slices(born_pid)?;
        ensure!(
            !slices.is_empty() && slices.iter().all(|s| *s == 300),
            "pro tenant's slices from birth: {slices:?}"
        );
    }
    Ok(())
}

/// GET a project's sub-resource as its owner.
async fn owner_get(cp: &ControlPlane, token: &str, path: &str) -> Result<Value> {
    let (status, body) = cp.call("GET", path, Some(token), None).await?;
    ensure!(status == 200, "GET {path}: {status} {body}");
    Ok(body)
}

#[tokio::test]
async fn a_tenant_over_its_memory_is_restarted_in_its_own_group_and_its_neighbour_is_untouched(
) -> Result<()> {
    if !machine_has_memory_cgroup() {
        eprintln!("no memory cgroup on this machine; the memory limit is RLIMIT_DATA only");
        return Ok(());
    }
    let cp = ControlPlane::start_eager().await?;
    // The operator's custom plan, shrunk to 48 MiB per tenant; history may be large.
    cp.operator(&["set-limits", "custom", r#"{"tenant_memory_mb": 48}"#])
        .await?;
    let hog_token = cp.account("hog@example.com").await?;
    cp.operator(&["set-plan", "hog@example.com", "custom"])
        .await?;
    let history = json!({"history_size": 10000, "history_ttl": "600s"});
    let hog = cp.project(&hog_token, "hog", &[("big", history)]).await?;
    let hog_pid = cp.tenant_record(&hog.id)?["pid"].as_i64().context("pid")?;

    let calm_token = cp.account("calm@example.com").await?;
    let calm = cp
        .project(&calm_token, "calm", &[("chat", open_chat())])
        .await?;
    let calm_pid = cp.tenant_record(&calm.id)?["pid"].as_i64().context("pid")?;
    let mut sub = Subscriber::open(&cp.ws_url(&calm.slug), &calm.secret, "u1", "chat:a").await?;

    // 400 KB publications kept in history: 48 MiB is gone after ~120 of them.
    let payload = json!("x".repeat(400_000));
    let mut killed = false;
    for i in 0..400 {
        match cp
            .publish(&hog, &format!("big:c{}", i % 10), payload.clone())
            .await
        {
            Ok((200, body)) if body.get("error").is_none() => {}
            _ => {
                killed = true;
                break;
            }
        }
    }
    ensure!(killed, "400 × 400 KB of history did not exhaust 48 MiB");

    // The owner is told: an event, and an audit entry by the supervisor.
    let events_path = format!("/v1/projects/{}/events", hog.id);
    let deadline = Instant::now() + WAIT;
    let event = loop {
        let body = owner_get(&cp, &hog_token, &events_path).await?;
        if let Some(e) = body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["kind"] == "restarted_out_of_memory")
        {
            break e.clone();
        }
        ensure!(Instant::now() < deadline, "no out-of-memory event: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event["detail"]["memory_limit_bytes"], json!(48u64 << 20));
    let audit = owner_get(&cp, &hog_token, &format!("/v1/projects/{}/audit", hog.id)).await?;
    let entry = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "tenant.restart_out_of_memory")
        .with_context(|| format!("no audit entry: {audit}"))?;
    assert_eq!(entry["actor"], "system:supervisor");
    // Another account sees none of it.
    let (status, _) = cp
        .call("GET", &events_path, Some(&calm_token), None)
        .await?;
    assert_eq!(status, 404);

    // The hog is back in a new process and serves again.
    let deadline = Instant::now() + WAIT;
    loop {
        let pid = cp
            .tenant_record(&hog.id)
            .ok()
            .and_then(|r| r["pid"].as_i64());
        if pid.is_some_and(|p| p != hog_pid) {
            if let Ok((200, body)) = cp.publish(&hog, "big:again", json!({"ok": true})).await {
                if body.get("error").is_none() {
                    break;
                }
            }
        }
        ensure!(Instant::now() < deadline, "the hog was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The neighbour kept its process and its subscriber.
    assert_eq!(cp.tenant_record(&calm.id)?["pid"].as_i64(), Some(calm_pid));
    let (status, body) = cp
        .publish(&calm, "chat:a", json!({"still": "here"}))
        .await?;
    ensure!(
        status == 200 && body.get("error").is_none(),
        "{status} {body}"
    );
    assert_eq!(sub.publication().await?, json!({"still": "here"}));
    let calm_events = owner_get(
        &cp,
        &calm_token,
        &format!("/v1/projects/{}/events", calm.id),
    )
    .await?;
    assert_eq!(calm_events["events"], json!([]));
    Ok(())
}

#[tokio::test]
async fn a_saturated_tenant_is_held_to_its_cpu_cap_and_its_neighbour_is_not() -> Result<()> {
    // Tenants' CPU counters are sampled every 500 ms (a minute by default).
    let cp = ControlPlane::start_with_env(&[
        ("ROTOR_START_ON_DEMAND", "0"),
        ("ROTOR_CPU_THROTTLE_SAMPLE_MS", "500"),
    ])
    .await?;
    // The operator's custom plan (no edge budget, so the flood reaches the tenant), capped at
    // 5 % of a core.
    cp.operator(&["set-limits", "custom", r#"{"tenant_cpu_max_percent": 5}"#])
        .await?;
    let hog_token = cp.account("cpu-hog@example.com").await?;
    cp.operator(&["set-plan", "cpu-hog@example.com", "custom"])
        .await?;
    let hog = cp
        .project(&hog_token, "cpuhog", &[("chat", open_chat())])
        .await?;
    let record = cp.tenant_record(&hog.id)?;
    let dirs = groups(&record);
    if dirs.is_empty() || cpu_quota(&dirs).is_none() {
        eprintln!("no cpu cgroup on this machine; the CPU cap is not enforced here");
        return Ok(());
    }
    assert_eq!(cpu_quota(&dirs).as_deref(), Some("5000"));
    let hog_pid = record["pid"].as_i64().context("pid")?;
    let calm_token = cp.account("cpu-calm@example.com").await?;
    let calm = cp
        .project(&calm_token, "cpucalm", &[("chat", open_chat())])
        .await?;
    // 50 subscribers of one channel make each of the hog's publications 50 deliveries.
    let mut subs = Vec::new();
    for i in 0..50 {
        subs.push(
            Subscriber::open(
                &cp.ws_url(&hog.slug),
                &hog.secret,
                &format!("u{i}"),
                "chat:all",
            )
            .await?,
        );
    }
    let throttled_before = group_file(&dirs, &["cpu.stat"])
        .and_then(|s| throttled(&s))
        .unwrap_or(0);
    let cpu_before = cpu_time(hog_pid)?;
    let began = Instant::now();
    // Eight publishers flood the hog for two seconds.
    let flood = (0..8).map(|w| {
        let (cp, hog) = (&cp, &hog);
        async move {
            let mut n = 0u32;
            while began.elapsed() < Duration::from_secs(2) {
                let _ = cp
                    .publish(
                        hog,
                        "chat:all",
                        json!({"w": w, "n": n, "pad": "x".repeat(512)}),
                    )
                    .await;
                n += 1;
            }
        }
    });
    let calm_during = async {
        // The neighbour answers while the hog is held down.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let asked = Instant::now();
        let answer = cp.publish(&calm, "chat:a", json!({"calm": true})).await;
        (answer, asked.elapsed())
    };
    let (_, (calm_answer, calm_took)) =
        tokio::join!(futures_util::future::join_all(flood), calm_during);
    let wall = began.elapsed();
    let used = cpu_time(hog_pid)?.saturating_sub(cpu_before);
    let throttled_after = group_file(&dirs, &["cpu.stat"])
        .and_then(|s| throttled(&s))
        .context("nr_throttled in cpu.stat")?;
    ensure!(
        throttled_after > throttled_before,
        "the hog was never held back by its cap ({used:?} of CPU in {wall:?})"
    );
    // 5 % of the wall time, plus a period's overrun and the clock tick.
    let allowed = wall / 20 + Duration::from_millis(120);
    ensure!(
        used <= allowed,
        "the hog used {used:?} of CPU in {wall:?} (cap 5 %: at most {allowed:?})"
    );
    let (status, body) = calm_answer?;
    ensure!(
        status == 200 && body.get("error").is_none(),
        "{status} {body}"
    );
    ensure!(
        calm_took < Duration::from_secs(1),
        "the neighbour took {calm_took:?}"
    );

    // The hog's owner is told why its requests waited: one event and one audit entry, though
    // the hog was held back in several samples; the neighbour's owner hears nothing.
    let events_path = format!("/v1/projects/{}/events", hog.id);
    let deadline = Instant::now() + WAIT;
    let event = loop {
        let body = owner_get(&cp, &hog_token, &events_path).await?;
        let throttled: Vec<&Value> = body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "cpu_throttled")
            .collect();
        ensure!(throttled.len() <= 1, "told more than once: {body}");
        if let Some(e) = throttled.first() {
            break (*e).clone();
        }
        ensure!(Instant::now() < deadline, "no cpu_throttled event: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event["detail"]["cpu_max_percent"], json!(5));
    let share = event["detail"]["throttled_share"]
        .as_f64()
        .context("share")?;
    ensure!((0.1..=1.0).contains(&share), "{event}");
    let audit = owner_get(&cp, &hog_token, &format!("/v1/projects/{}/audit", hog.id)).await?;
    let entry = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "tenant.cpu_throttled")
        .with_context(|| format!("no audit entry: {audit}"))?;
    assert_eq!(entry["actor"], "system:supervisor");
    // Sampled several more times while the hog still runs: no second event.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let body = owner_get(&cp, &hog_token, &events_path).await?;
    let count = body["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "cpu_throttled")
        .count();
    assert_eq!(count, 1, "{body}");
    let calm_events = owner_get(
        &cp,
        &calm_token,
        &format!("/v1/projects/{}/events", calm.id),
    )
    .await?;
    ensure!(
        !calm_events.to_string().contains("cpu_throttled"),
        "{calm_events}"
    );
    Ok(())
}

/// `nr_throttled` of a `cpu.stat`.
fn throttled(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|v| v.trim().parse().ok())
}

/// The attack: much of what a tenant logs is caused by its end users (a refused token, a
/// failed proxy call), one connection can cause a thousand such lines per frame, and the log
/// is a file in the run directory every tenant and the control plane share (usually a tmpfs).
/// The tenant process is started with a log byte budget, and the control plane cuts a log that
/// grew past its bound down to its newest lines anyway.
#[tokio::test]
async fn a_tenants_log_is_held_to_a_byte_budget_and_cut_when_it_grows() -> Result<()> {
    // As control-plane/src/tenant_logs.rs sets them.
    const LOG_BYTES_PER_SECOND: u64 = 32 * 1024;
    const MAX_LOG_BYTES: u64 = 1024 * 1024;
    const KEPT_LOG_BYTES: u64 = 128 * 1024;
    let cp = ControlPlane::start_eager().await?;
    let token = cp.account("tenant-logs@example.com").await?;
    let project = cp.project(&token, "logs", &[("chat", open_chat())]).await?;
    let pid = cp.tenant_record(&project.id)?["pid"]
        .as_i64()
        .context("pid")?;
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let budget = format!("ROTOR_LOG_BYTES_PER_SECOND={LOG_BYTES_PER_SECOND}");
    ensure!(
        environ
            .split(|&b| b == 0)
            .any(|var| var == budget.as_bytes()),
        "the tenant runs without {budget}"
    );
    // Two megabytes arrive between two looks (as from a process without the budget).
    let log = cp.run_dir.join(format!("{}.log", project.id));
    let mut file = std::fs::OpenOptions::new().append(true).open(&log)?;
    let line = format!("{}\n", "x".repeat(99));
    for _ in 0..(2 * 1024 * 1024 / line.len()) {
        std::io::Write::write_all(&mut file, line.as_bytes())?;
    }
    ensure!(std::fs::metadata(&log)?.len() > MAX_LOG_BYTES);
    // Cut within one look (every 10 s) and a little.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let len = std::fs::metadata(&log)?.len();
        if len <= KEPT_LOG_BYTES + 4096 {
            break;
        }
        ensure!(Instant::now() < deadline, "the log is still {len} bytes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = std::fs::read_to_string(&log)?;
    ensure!(
        text.starts_with("[rotor: ") && text.contains("older bytes of this log were dropped"),
        "the cut is said: {}",
        &text[..text.len().min(200)]
    );
    // The tenant keeps writing after the cut: its process is the same.
    ensure!(cp.tenant_record(&project.id)?["pid"].as_i64() == Some(pid));
    Ok(())
}
