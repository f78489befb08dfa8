//! BENCHMARKS.md from `bench/results/`: machine, targets met or missed (with the reason), the
//! Rotor/peer ratios, a table per scenario, the Redis and config-push numbers, the plots and
//! the multi-tenant sections (noisy neighbour, density) and the hand-written profile notes
//! (`bench/profile.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::machine::Machine;
use super::parse::{ConfigPush, RedisResult};
use super::targets::targets;
use super::tenancy;
use super::{load_optional, load_runs, ReportError};
use crate::density::DensityResult;
use crate::noisy::NoisyResult;
use crate::results::{RunResult, Step};

const PEERS: [(&str, &str); 5] = [
    ("rotor", "Rotor JSON"),
    ("rotor-protobuf", "Rotor Protobuf"),
    ("bare", "bare tokio-tungstenite"),
    ("socketio", "Socket.IO 4"),
    ("nchan", "Nchan"),
];

pub(super) fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub(super) fn int(v: f64) -> String {
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

pub(super) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

pub(super) fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// The numbers the summary compares, per target.
#[derive(Default, Clone, Copy)]
pub(super) struct Facts {
    /// Highest deliveries/s with p99 ≤ 50 ms (issue #10's limit).
    pub(super) max_deliveries: Option<f64>,
    /// Highest deliveries/s without loss or drops (p99 up to the stop limit).
    pub(super) saturation: Option<f64>,
    /// p99 at the lowest publish rate, µs.
    pub(super) first_p99: Option<u64>,
    pub(super) cpu_us_best: Option<f64>,
    pub(super) cpu_us_common: Option<f64>,
    pub(super) mem_per_conn: Option<f64>,
    pub(super) storm_per_sec: Option<f64>,
    /// Server CPU per connection opened in the storm, µs.
    pub(super) storm_cpu_us: Option<f64>,
    /// The load generator's CPU per storm connection, µs, and how busy the box was (1.0: all
    /// CPUs) while the storm connected.
    pub(super) storm_loadgen_us: Option<f64>,
    pub(super) storm_busy: Option<f64>,
    /// The storm's round trip without a protocol (upgrade, one frame, its answer): connections/s
    /// and server CPU per connection, µs (bare `/echo`, Nchan pubsub).
    pub(super) echo_per_sec: Option<f64>,
    pub(super) echo_cpu_us: Option<f64>,
    pub(super) lat_p50: Option<u64>,
    pub(super) lat_p99: Option<u64>,
    /// Server CPU at the saturation step (100 = one core).
    pub(super) cpu_pct_best: Option<f64>,
    /// Connections the idle scenario held.
    pub(super) mem_conns: Option<f64>,
    /// 1k msgs/s spread over 1k single-subscriber channels: p50 / p99, µs.
    pub(super) spread_p50: Option<u64>,
    pub(super) spread_p99: Option<u64>,
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
            f.cpu_pct_best = Some(b.server_cpu_pct);
        }
        if let Some(rate) = common {
            f.cpu_us_common = r
                .steps
                .iter()
                .find(|s| s.target_rate == rate)
                .map(|s| s.server_cpu_us_per_delivery);
        }
    }
    if let Some(r) = get("idle") {
        f.mem_per_conn = r.memory.as_ref().map(|m| m.per_conn_bytes);
        f.mem_conns = Some(r.connect.connected as f64);
    }
    if let Some(s) = get("spread").and_then(|r| r.steps.last()) {
        f.spread_p50 = Some(s.latency.p50);
        f.spread_p99 = Some(s.latency.p99);
    }
    if let Some(r) = get("storm").filter(|r| r.connect.connected > 0) {
        f.storm_per_sec = Some(r.connect.per_sec);
        f.storm_cpu_us = r.connect.server_cpu_us_per_conn;
        f.storm_loadgen_us = r.connect.loadgen_cpu_us_per_conn;
        f.storm_busy = r.connect.box_busy;
    }
    if let Some(r) = get("storm-echo").filter(|r| r.connect.connected > 0) {
        f.echo_per_sec = Some(r.connect.per_sec);
        f.echo_cpu_us = r.connect.server_cpu_us_per_conn;
    }
    if let Some(s) = get("latency").and_then(|r| r.steps.last()) {
        f.lat_p50 = Some(s.latency.p50);
        f.lat_p99 = Some(s.latency.p99);
    }
    f
}

fn pair(a: Option<u64>, b: Option<u64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{} / {}", ms(a), ms(b)),
        _ => "–".into(),
    }
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
    let noisy: Option<NoisyResult> = load_optional(&results.join("noisy.json"));
    let noisy_pinned: Option<NoisyResult> = load_optional(&results.join("noisy-pinned.json"));
    let noisy_isolated: Option<NoisyResult> = load_optional(&results.join("noisy-isolated.json"));
    let density: Option<DensityResult> = load_optional(&results.join("density.json"));
    let delta: Option<crate::delta::DeltaResult> = load_optional(&results.join("delta.json"));
    let tags: Option<crate::tags::TagsResult> = load_optional(&results.join("tags.json"));
    let presence: Option<crate::presence::PresenceResult> =
        load_optional(&results.join("presence.json"));
    let grpc: Option<crate::grpc::GrpcResult> = load_optional(&results.join("grpc.json"));
    let engines: Option<crate::engines::EnginesResult> =
        load_optional(&results.join("engines.json"));
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
        "Issue #10's scenarios and targets, numbered as in the issue, then issue #20's \
         multi-tenant ones (noisy neighbour, density). Where an issue gives a number without a \
         target (many channels) or a target this box cannot show (the 50 ms ramp limit), the \
         row says so.\n"
    );
    let _ = writeln!(o, "| what | measured | target | verdict | why it costs what it costs (and the next step where missed) |\n|---|---|---|---|---|");
    let mut rows = targets(&runs, &all, redis.as_ref(), push.as_ref());
    rows.push(tenancy::noisy_target(noisy.as_ref()));
    if noisy_pinned.is_some() {
        rows.push(tenancy::noisy_target(noisy_pinned.as_ref()));
    }
    if noisy_isolated.is_some() {
        rows.push(tenancy::noisy_target(noisy_isolated.as_ref()));
    }
    rows.push(tenancy::density_target(density.as_ref()));
    rows.push(tenancy::wake_target(density.as_ref()));
    rows.push(super::targets::delta_target(delta.as_ref()));
    rows.push(super::filters::target(tags.as_ref()));
    rows.push(super::presence::target(presence.as_ref()));
    rows.push(super::grpc::target(grpc.as_ref()));
    rows.push(super::engines::target(engines.as_ref()));
    for t in rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            t.what,
            t.measured,
            t.goal,
            t.verdict.label(),
            t.explain()
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
            "connect storm: server CPU µs per connection",
            Box::new(|f: &Facts| opt(f.storm_cpu_us, |v| format!("{v:.1}"))),
        ),
        (
            "upgrade + one frame answered (no protocol): server CPU µs per connection",
            Box::new(|f: &Facts| opt(f.echo_cpu_us, |v| format!("{v:.1}"))),
        ),
        (
            "1k msgs/s → 1k subscribers, one channel each: p50 / p99 ms",
            Box::new(|f: &Facts| pair(f.spread_p50, f.spread_p99)),
        ),
        (
            "1k msgs/s → 1k subscribers of one channel: p50 / p99 ms",
            Box::new(|f: &Facts| pair(f.lat_p50, f.lat_p99)),
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
    let _ = writeln!(o, "| peer | fan-out saturation deliveries/s | CPU per delivery (saturation) | memory per connection | connect storm | latency p99 (1k msgs/s, one channel of 1k) |\n|---|---|---|---|---|---|");
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

    let sections: [(&str, &str, &str); 6] = [
        (
            "fanout",
            "Fan-out: 10k connections on one channel",
            "Publish rate raised step by step; a step is within the limits while p99 ≤ 50 ms, and \
             the ramp goes on to saturation (p99 > 1 s, loss > 1 %, a dropped connection or a \
             publisher that cannot keep the rate); each publish reaches every connection.",
        ),
        (
            "spread",
            "Latency at moderate load: 1k msgs/s to 1k subscribers, one channel each",
            "1 000 connections, each subscribed to its own channel; every publish goes to a \
             random one of the 1 000 channels, so at 1 000 publishes/s each subscriber gets \
             about one message a second (1 000 deliveries/s). Servers without channels (the bare \
             floor, the Socket.IO peer's broadcast) cannot run it.",
        ),
        (
            "latency",
            "Latency: 1k msgs/s to 1k subscribers of one channel",
            "The other reading of scenario 5: one channel, steps of 10, 100 and 1 000 \
             publishes/s, the last being 1 M deliveries/s.",
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
        let _ = writeln!(o, "| server | connections | connections/s | server CPU µs per connection | opening p50 ms | opening p99 ms | RSS before → after (MB) | bytes per connection |\n|---|---|---|---|---|---|---|---|");
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
                "| {} | {}/{} | {} | {} | {} | {} | {} | {} |",
                label(&r.target),
                r.connect.connected,
                r.connect.attempted,
                int(r.connect.per_sec),
                opt(r.connect.server_cpu_us_per_conn, |v| format!("{v:.1}")),
                ms(r.connect.latency.p50),
                ms(r.connect.latency.p99),
                mem.0,
                mem.1
            );
        }
        let _ = writeln!(o);
    }

    if let Some(r) = &noisy {
        tenancy::noisy_section(&mut o, r);
    }
    if let Some(r) = &noisy_pinned {
        tenancy::noisy_section(&mut o, r);
    }
    if let Some(r) = &noisy_isolated {
        tenancy::noisy_section(&mut o, r);
    }
    if let Some(r) = &density {
        tenancy::density_section(&mut o, r);
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
    if let Some(d) = &delta {
        delta_section(&mut o, d);
    }
    if let Some(t) = &tags {
        super::filters::section(&mut o, t);
    }
    if let Some(p) = &presence {
        super::presence::section(&mut o, p);
    }
    if let Some(g) = &grpc {
        super::grpc::section(&mut o, g);
    }
    if let Some(e) = &engines {
        super::engines::section(&mut o, e);
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

/// The delta compression scenario's table.
fn delta_section(o: &mut String, d: &crate::delta::DeltaResult) {
    let _ = writeln!(
        o,
        "## Delta compression\n\n`rotor-bench-delta` (scenario `delta`): {} subscribers of one \
         channel (history on, `allowed_delta_types: [\"fossil\"]`), {} JSON documents of {} bytes \
         published at {}/s through the server API with `delta: true`, each changing a few \
         fields from the one before. Bytes are what the subscribers read per delivery \
         (WebSocket payload and frame header); CPU is the data plane's user + system time over \
         the run divided by the deliveries. Every subscriber rebuilds every document and checks \
         it.\n\n| protocol | subscribers | deliveries | sent as deltas | bytes / delivery | server CPU / delivery |\n|---|---|---|---|---|---|",
        d.conns, d.messages, d.doc_bytes, d.rate
    );
    for r in &d.runs {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {:.0} | {:.2} µs |",
            if r.protocol == "json" {
                "JSON"
            } else {
                "Protobuf"
            },
            if r.delta {
                "`delta: \"fossil\"`"
            } else {
                "whole"
            },
            int(r.deliveries as f64),
            int(r.delta_frames as f64),
            r.bytes_per_delivery,
            r.cpu_us_per_delivery
        );
    }
    let _ = writeln!(o);
}
