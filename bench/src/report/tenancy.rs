//! The multi-tenant parts of BENCHMARKS.md (issue #20): the noisy-neighbour and density
//! sections from `noisy.json` and `density.json`, and their rows in the targets table.

use std::fmt::Write as _;

use super::markdown::{int, ms, opt};
use super::targets::{Target, Verdict};
use crate::density::DensityResult;
use crate::noisy::{NoisyResult, Window};

/// The idle-CPU target is stated for this many projects.
const DENSITY_GOAL_PROJECTS: usize = 10_000;

fn mb(bytes: f64) -> String {
    format!("{:.1}", bytes / (1024.0 * 1024.0))
}

fn pct_of_core(secs: f64, wall: f64) -> String {
    if wall > 0.0 {
        format!("{:.0} %", secs / wall * 100.0)
    } else {
        "–".into()
    }
}

fn count(n: &crate::noisy::noise::NoiseSummary, kind: &str) -> String {
    int(n.count(kind) as f64)
}

fn lost(w: &Window) -> String {
    format!(
        "loss {:.3} %, {} dropped subscribers, {} failed publishes",
        w.loss * 100.0,
        w.dropped_conns,
        w.publish_errors
    )
}

/// How a noisy run was set up, for its row's title (where its processes ran, whether
/// projects had their own host): empty for the plain form.
fn placement(r: &NoisyResult) -> String {
    let mut parts: Vec<String> = Vec::new();
    if r.tenant_host.is_some() {
        parts.push("projects at their own host".into());
    }
    if let Some(p) = &r.pinning {
        parts.push(p.clone());
    }
    if r.noise_idle {
        parts.push("A's noise at idle priority".into());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// The noisy-neighbour row of the targets table.
pub(super) fn noisy_target(r: Option<&NoisyResult>) -> Target {
    let windows = r.and_then(|r| Some((r.window("quiet")?, r.window("noisy")?, r)));
    let measured = match windows {
        Some((q, n, r)) => {
            let refusals = r.noise.as_ref().map_or_else(
                || "A's noise not recorded".to_owned(),
                |x| {
                    format!(
                        "A refused: 111 ×{}, 106 ×{}, 503 ×{}",
                        count(x, "111"),
                        count(x, "106"),
                        count(x, "http 503")
                    )
                },
            );
            format!(
                "B's p99 {} → {} ms ({}), {}; {}",
                ms(q.latency.p99),
                ms(n.latency.p99),
                opt(r.p99_change_pct, |v| format!("{v:+.0} %")),
                lost(n),
                refusals
            )
        }
        None => "–".into(),
    };
    let cpu = windows.map_or_else(String::new, |(_, n, _)| {
        format!(
            "; in the noisy window the control plane used {} of a core, A {}, B {}",
            pct_of_core(n.cpu.control_plane, n.cpu.wall_secs),
            pct_of_core(n.cpu.tenant_a, n.cpu.wall_secs),
            pct_of_core(n.cpu.tenant_b, n.cpu.wall_secs)
        )
    });
    let placement = r.map_or_else(String::new, placement);
    Target {
        what: format!(
            "#20 · noisy neighbour{placement}: tenant B (pro) at 1k msgs/s to 1k subscribers \
             while tenant A (free) is flooded far above its publish rate, stormed far above its \
             connection limit and filled to its history byte budget"
        ),
        measured,
        goal: "B's p99 moves by < 10 % and B loses nothing".into(),
        verdict: match r.and_then(|r| r.met) {
            Some(true) => Verdict::Met,
            Some(false) => Verdict::Missed,
            None => Verdict::NotMeasured,
        },
        why: format!(
            "A's excess is refused before it costs B anything: past its plan's edge budget \
             (free: 200 requests/s and 100 WebSocket handshakes/s, bursts of two seconds) the \
             edge answers 429 itself, and A's backend connections that the edge handed to A's \
             process are refused there at the same rate, inside A's cgroup; what passes is \
             refused by A's rate limiter, history budget and connection limit; A's process is \
             held to its plan's CPU cap (50 % of a core) and weight (100 against B's 400). With \
             projects at their own host, B's publisher keeps its API connections in B's \
             process, so B's traffic no longer passes the edge at all after its first request \
             per connection (the control plane used {} of a core in the quiet window){cpu}. What \
             stays shared is the edge's accept and answer for A's connection storm, the kernel's \
             loopback stack and, on this box, the CPU that B's process shares with A's capped \
             process and the edge; pinning the load generators to the other CPU leaves those",
            windows.map_or_else(
                || "–".to_owned(),
                |(q, _, _)| pct_of_core(q.cpu.control_plane, q.cpu.wall_secs)
            )
        ),
        next: "B's p99 under A's noise is now 0.46–0.75 ms (it was 1.48–1.90 ms with one edge pass per publish), but B's quiet p99 fell further, and quiet windows of the same run differ from each other by up to a quarter (0.29–0.53 ms): the remaining gap is CPU scheduling on a box where B's process, A's capped process (which now refuses A's kept flood itself, ≈7 % of a core) and the edge share one core. Next: measure on a machine where the load generators have cores of their own and Rotor more than one, so B's process never waits behind A's; move a connection that keeps drawing 429s to a low-weight runtime thread in its own cgroup",
    }
}

/// The density row of the targets table.
pub(super) fn density_target(r: Option<&DensityResult>) -> Target {
    let at_goal = r.is_some_and(|r| r.params.projects >= DENSITY_GOAL_PROJECTS);
    let measured = r.filter(|r| r.idle.secs > 0.0).map_or_else(
        || "–".into(),
        |r| {
            format!(
                "{:.2} % of one core over {:.0} s with {} projects ({} running: control plane \
                 {:.2} %, tenants {:.2} %)",
                r.idle.pct_of_core,
                r.idle.secs,
                int(r.create.created as f64),
                int(r.idle.tenants as f64),
                r.idle.control_plane_pct,
                r.idle.tenants_pct
            )
        },
    );
    let verdict = match r.and_then(|r| r.met) {
        None => Verdict::NotMeasured,
        Some(_) if !at_goal => Verdict::Reported,
        Some(true) => Verdict::Met,
        Some(false) => Verdict::Missed,
    };
    let scale = if r.is_some() && !at_goal {
        ". This run had fewer projects than the target's 10 000 (BENCH_QUICK or \
         DENSITY_PROJECTS), so it is reported, not judged"
    } else {
        ""
    };
    Target {
        what: "#20 · density: idle CPU of the tenants and the control plane, most projects \
               parked (`ROTOR_PARK_AFTER_MS`), a tenth live with idle clients"
            .into(),
        measured,
        goal: "< 5 % of one core for 10 000 idle projects".into(),
        verdict,
        why: format!(
            "a parked project has no process: it costs its row in the control plane's route \
             table and nothing per second. A live tenant whose clients are idle wakes for its \
             clients' pings (every 25 s, as Centrifugo) and to compare its counters (every 5 s, \
             every 15 s once its clients have been quiet that long). Those deadlines are put on \
             the start of tokio's coarse timer slots (4.096 s apart), so each costs one wake \
             instead of three or four and every connection of the process due in the same slot \
             shares it; a tenant capped at half a core runs one runtime worker, so no second \
             thread wakes with it (an idle tenant with three clients: 58 context switches a \
             minute before, 14 now). Pings and pongs alone do not count as activity, so it pushes \
             usage only on traffic and once a minute for the connection level, and the control \
             plane writes a second's pushes of every tenant in one transaction{scale}"
        ),
        next: "the idle tenants' share is measured from the scheduler's runtime (`/proc/<pid>/task/*/schedstat`), not from utime + stime: this kernel charges CPU by the timer tick, and a tenant that wakes on a timer and is done before the next tick is charged nothing there. What is left: one wake per ping round of each live tenant (its clients' pings share it), the control plane's look at the project table every 2 s and its full pass every 30 s; a pre-spawned pool of tenant processes would also take the fork and exec out of a wake",
    }
}

/// The wake-up row of the targets table: judged on the cold wake (a project that never ran),
/// the slower of the two.
pub(super) fn wake_target(r: Option<&DensityResult>) -> Target {
    let measured = r.filter(|r| r.wake.count > 0);
    let at_goal = r.is_some_and(|r| r.params.projects >= DENSITY_GOAL_PROJECTS);
    Target {
        what: "#20 · wake-up of a parked project through the edge, with the density scenario's \
               projects on the box"
            .into(),
        measured: measured.map_or_else(
            || "–".into(),
            |r| {
                format!(
                    "cold p99 {:.1} ms (p50 {:.1} ms), warm p99 {:.1} ms (p50 {:.1} ms), {} \
                     projects",
                    r.wake.p99_ms,
                    r.wake.p50_ms,
                    r.warm_wake.p99_ms,
                    r.warm_wake.p50_ms,
                    int(r.create.created as f64)
                )
            },
        ),
        goal: "p99 < 100 ms".into(),
        verdict: match measured {
            None => Verdict::NotMeasured,
            Some(_) if !at_goal => Verdict::Reported,
            Some(r) if r.wake.p99_ms.max(r.warm_wake.p99_ms) < 100.0 => Verdict::Met,
            Some(_) => Verdict::Missed,
        },
        why: "the request waits at the edge while the reconciler starts the process: a project \
              parked after running starts from the config kept in its parking marker; one that \
              never ran has that one project compiled first (a few queries), not a pass over \
              every project. Then a fork and exec, the tenant's cgroups and rlimits, the runtime \
              and its listeners (≈10 ms on a quiet box, of which ≈4 ms is the dynamic loader \
              relocating the binary), and the edge hands the socket over"
            .into(),
        next: "start tenants from a pool of pre-spawned, unconfigured processes (confined and \
               configured on wake), and link the data plane with packed relative relocations",
    }
}

/// One wake-up row: percentiles and the answers by status.
fn wake_row(t: &crate::cp::Timing, statuses: &std::collections::BTreeMap<String, u64>) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} (answers: {})",
        t.p50_ms,
        t.p99_ms,
        t.max_ms,
        t.count,
        statuses
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// "## Noisy neighbour".
pub(super) fn noisy_section(o: &mut String, r: &NoisyResult) {
    let p = &r.params;
    let via = match (&r.tenant_host, p.b_via == "direct") {
        (_, true) => "straight to B's process (its address from the control plane's run \
                      directory); A's traffic goes through the edge"
            .to_owned(),
        (Some(host), false) => format!(
            "through the edge at each project's own host (`{host}`, as hosted projects are \
             served), like all of A's traffic: a project's backend calling its API with its own \
             key keeps its connection in the project's process, so B's publishes and A's \
             flood pass the edge once per connection, not once per request"
        ),
        (None, false) => "through the edge (`/t/{slug}/…`), like all of A's traffic".to_owned(),
    };
    let heading = match (&r.pinning, r.noise_idle) {
        (Some(p), true) => format!("### Noisy neighbour, pinned, A's noise at idle priority: {p}\n\nThe pinned scenario again with A's noise process at the kernel's idle scheduling priority (`chrt --idle`): it still gets every cycle of its CPU that B's publisher and subscribers leave, but can no longer delay them, as a noise generator on a machine of its own could not. Nothing changes on Rotor's side. "),
        (Some(p), false) => format!("### Noisy neighbour, pinned: {p}\n\nThe same scenario with the load generators (B's publisher and subscribers, A's noise) kept off Rotor's CPU, the nearest this 2-core box comes to a load generator on its own machine. "),
        (None, _) => "## Noisy neighbour\n\n".to_owned(),
    };
    let _ = writeln!(
        o,
        "{heading}Two projects on one `rotor-control-plane serve` (fresh database; \
         tenants confined by {}). Tenant B (plan `pro`) serves {} publications/s to {} \
         subscribers, each on its own channel of a namespace (one delivery per publication, \
         {} B payloads), {via}. B's publish → deliver latency is measured over {:.0} s while \
         nothing else runs, {:.0} s while tenant A (plan `free`: 100 publications/s, 200 \
         connections, 16 MiB of history) is driven to saturation by a separate process, and \
         {:.0} s after. A's noise: a publish flood at {} attempts/s ({} KB payloads spread over \
         {} history channels until the history byte budget refuses one, 200 B after) and a \
         connection storm of up to {} connections at {} attempts/s. CPU is the share of one \
         core over each window; the whole box's column adds up every core (so it can pass \
         100 %), and what it holds beyond the columns before it is A's noise process and \
         anything else that ran on the machine.\n",
        r.confinement,
        int(p.rate),
        int(p.conns as f64),
        p.payload_bytes,
        p.window_secs,
        p.window_secs,
        p.window_secs,
        int(p.flood_rate),
        p.flood_bytes / 1024,
        p.flood_channels,
        int(p.storm_conns as f64),
        int(p.storm_rate)
    );
    let _ = writeln!(
        o,
        "| B's window | published (errors) | delivered / expected | loss | dropped subscribers | \
         p50 ms | p99 ms | p99.9 ms | max ms | CPU control plane | CPU tenant A | CPU tenant B \
         | CPU B's load generator | CPU whole box |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for w in &r.windows {
        let c = &w.cpu;
        let _ = writeln!(
            o,
            "| {} | {} ({}) | {} / {} | {:.3} % | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            w.name,
            int(w.published as f64),
            w.publish_errors,
            int(w.delivered as f64),
            int(w.expected as f64),
            w.loss * 100.0,
            w.dropped_conns,
            ms(w.latency.p50),
            ms(w.latency.p99),
            ms(w.latency.p999),
            ms(w.latency.max),
            pct_of_core(c.control_plane, c.wall_secs),
            pct_of_core(c.tenant_a, c.wall_secs),
            pct_of_core(c.tenant_b, c.wall_secs),
            pct_of_core(c.load_b, c.wall_secs),
            pct_of_core(c.machine, c.wall_secs)
        );
    }
    let _ = writeln!(o);
    if let Some(n) = &r.noise {
        let f = &n.flood;
        let outcomes: Vec<String> = f
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} ×{}", int(*v as f64)))
            .collect();
        let storm: Vec<String> = n
            .storm
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} ×{}", int(*v as f64)))
            .collect();
        let _ = writeln!(
            o,
            "A's flood: {} publish attempts in {:.1} s ({} /s; {} skipped while {} were in \
             flight), answered {}; the history byte budget refused its first publication after \
             {} ({} MiB accepted in all). A's storm: {} connection attempts, {} accepted (at \
             most {} open at once), the rest {}. The noise process used {:.1} s of CPU.\n",
            int(f.attempted as f64),
            f.secs,
            int(f.attempted as f64 / f.secs.max(1e-9)),
            int(f.skipped as f64),
            r.params.flood_concurrency,
            outcomes.join(", "),
            opt(f.budget_full_after_secs, |s| format!("{s:.1} s")),
            mb(f.accepted_bytes as f64),
            int(n.storm.attempts as f64),
            int(n.storm.accepted as f64),
            n.storm.peak_open,
            if storm.is_empty() {
                "none".into()
            } else {
                storm.join(", ")
            },
            n.cpu_secs
        );
    }
    let verdict = match r.met {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    };
    if let (Some(q), Some(n)) = (r.window("quiet"), r.window("noisy")) {
        let _ = writeln!(
            o,
            "B's p99 {} ms quiet → {} ms with A saturated ({}); with A saturated B had {}. \
             Target \"B's p99 moves by < 10 % and B loses nothing\": {verdict}. A's process {} \
             during the run, B's {}.\n",
            ms(q.latency.p99),
            ms(n.latency.p99),
            opt(r.p99_change_pct, |v| format!("{v:+.1} %")),
            lost(n),
            if r.a_restarted {
                "was restarted"
            } else {
                "kept running"
            },
            if r.b_restarted {
                "was restarted"
            } else {
                "kept running"
            }
        );
    }
}

/// "## Density".
pub(super) fn density_section(o: &mut String, r: &DensityResult) {
    let p = &r.params;
    let _ = writeln!(
        o,
        "## Density\n\n{} projects on one `rotor-control-plane serve` (fresh database, \
         `ROTOR_PARK_AFTER_MS={}`; tenants confined by {}), created through the REST API {} at \
         a time; {} of them live, each with {} idle WebSocket clients through the edge that \
         answer the server's pings; the others are parked once idle. Then: the running \
         tenants' memory from `/proc/<pid>/smaps_rollup`, the CPU of the tenants and the \
         control plane over an idle window, the control plane's open files, wake-ups of parked \
         projects and project create → first message.\n",
        int(p.projects as f64),
        p.park_after_ms,
        r.confinement,
        p.concurrency,
        int(p.live as f64),
        p.clients
    );
    let c = &r.create;
    let m = &r.memory;
    let rows: Vec<(String, String)> = vec![
        (
            "projects created (REST)".into(),
            format!(
                "{} in {:.1} s ({:.0} /s; {} failed), one creation p50 {:.0} ms, p99 {:.0} ms; \
                 at most {} tenant processes at once while creating and settling (creation \
                 pauses at {} running or starting: about {:.0} s paused)",
                int(c.created as f64),
                c.secs,
                c.per_sec,
                c.failed,
                c.latency.p50_ms,
                c.latency.p99_ms,
                int(c.peak_running as f64),
                int(p.max_processes as f64),
                c.paused_secs
            ),
        ),
        (
            "after settling".into(),
            format!(
                "{} running ({} of them live), {} parked, {:.0} s after the last creation{}",
                int(r.settle.running as f64),
                int(r.settle.live_running as f64),
                int(r.settle.parked as f64),
                r.settle.secs,
                if r.settle.settled {
                    ""
                } else {
                    " (not settled within the bound)"
                }
            ),
        ),
        (
            "idle clients".into(),
            format!(
                "{} of {} connected, {} dropped before the end",
                int(r.live.connected as f64),
                int(r.live.attempted as f64),
                r.live.dropped
            ),
        ),
        (
            "memory per running tenant: PSS".into(),
            format!(
                "mean {} MiB, p50 {} MiB, p90 {} MiB, max {} MiB; {} MiB for all {}",
                mb(m.pss.mean),
                mb(m.pss.p50 as f64),
                mb(m.pss.p90 as f64),
                mb(m.pss.max as f64),
                mb(m.pss.total as f64),
                m.pss.count
            ),
        ),
        (
            "memory per running tenant: private (clean + dirty)".into(),
            format!(
                "mean {} MiB, p50 {} MiB (RSS mean {} MiB: the rest is the shared binary)",
                mb(m.private.mean),
                mb(m.private.p50 as f64),
                mb(m.rss.mean)
            ),
        ),
        (
            "threads per running tenant".into(),
            format!("p50 {}, max {}", m.threads.p50, m.threads.max),
        ),
        (
            "control plane memory".into(),
            format!(
                "PSS {} MiB, RSS {} MiB",
                mb(m.control_plane_pss as f64),
                mb(m.control_plane_rss as f64)
            ),
        ),
        (
            format!("idle CPU over {:.0} s (percent of one core)", r.idle.secs),
            format!(
                "**{:.2} %**: control plane {:.2} %, {} running tenants {:.2} % ({} parked or \
                 gone meanwhile); the whole box meanwhile {:.0} % (every core, the idle clients \
                 and anything else on the machine included)",
                r.idle.pct_of_core,
                r.idle.control_plane_pct,
                r.idle.tenants,
                r.idle.tenants_pct,
                r.idle.vanished,
                r.idle.machine_pct
            ),
        ),
        (
            "control plane open files".into(),
            format!(
                "{} ({:.3} per project, {:.2} per running tenant)",
                int(r.files.control_plane as f64),
                r.files.per_project,
                r.files.per_running_tenant
            ),
        ),
        (
            "wake-up, cold: a request to a project that never ran (created parked) through the \
             edge → its answer"
                .into(),
            wake_row(&r.wake, &r.wake_statuses),
        ),
        (
            "wake-up, warm: the same projects again, parked after running (config kept, no \
             database on the path)"
                .into(),
            wake_row(&r.warm_wake, &r.warm_wake_statuses),
        ),
        (
            "project create → first message delivered through the edge".into(),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} ({} failed; the REST part — \
                 project, API key, secret — p50 {:.1} ms)",
                r.first_message.p50_ms,
                r.first_message.p99_ms,
                r.first_message.max_ms,
                r.first_message.count,
                r.first_message_failures.len(),
                r.first_message_rest.p50_ms
            ),
        ),
    ];
    let _ = writeln!(o, "| | |\n|---|---|");
    for (k, v) in rows {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    if let Some(f) = &r.failure {
        let _ = writeln!(o, "\nThe run stopped early: {f}.");
    }
    let _ = writeln!(
        o,
        "\nTarget: idle CPU of tenants and control plane < 5 % of one core for 10 000 idle \
         projects — {}.\n\nFor comparison, in prose rather than numbers measured here: \
         Centrifugo's FAQ recommends one Centrifugo installation per project, so a host of N \
         projects runs N full server processes whether their projects are busy or idle; \
         shared-process hosted brokers (Pusher- or Ably-style multi-tenant services) keep all \
         tenants in one process, where an idle tenant costs a table entry but one tenant's \
         spike is every tenant's. Rotor keeps a process per active project (the isolation of \
         the noisy-neighbour section) and none per idle one: a parked project costs a route \
         entry and a file in the run directory, and the wake-up above on its next request.\n",
        match (r.met, r.params.projects >= DENSITY_GOAL_PROJECTS) {
            (None, _) => "not measured".to_owned(),
            (Some(met), true) => format!(
                "**{}** ({:.2} %)",
                if met { "met" } else { "missed" },
                r.idle.pct_of_core
            ),
            (Some(_), false) => format!(
                "{:.2} % with {} projects, reported only (the target is for 10 000)",
                r.idle.pct_of_core,
                int(r.params.projects as f64)
            ),
        }
    );
}
