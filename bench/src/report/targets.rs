//! The targets table of BENCHMARKS.md: issue #10's targets, one row each, with the measured
//! value, the verdict and — for every target — why it costs what it costs and, when missed,
//! the next step.

use std::collections::BTreeMap;

use super::markdown::{int, ms, opt, ratio, Facts};
use super::parse::{ConfigPush, RedisResult};
use crate::results::{RunResult, Step};

/// One row.
pub struct Target {
    pub what: String,
    pub measured: String,
    pub goal: String,
    pub verdict: Verdict,
    pub why: String,
    /// What to do next, shown when the target is missed.
    pub next: &'static str,
}

impl Target {
    /// The last column: why, plus the next step when missed.
    pub fn explain(&self) -> String {
        if self.verdict == Verdict::Missed && !self.next.is_empty() {
            format!("{}. **Next step:** {}", self.why, self.next)
        } else {
            self.why.clone()
        }
    }
}

/// Met, missed, not measured by this run, or a number the issue asks for without a target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Met,
    Missed,
    NotMeasured,
    Reported,
}

impl Verdict {
    fn from(met: Option<bool>) -> Self {
        match met {
            Some(true) => Verdict::Met,
            Some(false) => Verdict::Missed,
            None => Verdict::NotMeasured,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Met => "**met**",
            Verdict::Missed => "**missed**",
            Verdict::NotMeasured => "not measured",
            Verdict::Reported => "reported (no target)",
        }
    }
}

fn at_least(a: Option<f64>, b: Option<f64>, factor: f64) -> Option<bool> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a >= factor * b),
        _ => None,
    }
}

fn latency_cell(s: Option<&Step>) -> String {
    s.map(|s| {
        format!(
            "p50 {} ms, p99 {} ms, {} deliveries/s, loss {:.2} %",
            ms(s.latency.p50),
            ms(s.latency.p99),
            int(s.deliveries_per_sec),
            s.loss * 100.0
        )
    })
    .unwrap_or_else(|| "–".into())
}

/// The step a run is judged by: its saturation step, else its best one.
fn top(runs: &BTreeMap<String, RunResult>, name: &str) -> Option<Step> {
    let r = runs.get(name)?;
    r.saturation().or_else(|| r.best()).cloned()
}

/// Every row, in the order.
pub fn targets(
    runs: &BTreeMap<String, RunResult>,
    all: &BTreeMap<&str, Facts>,
    redis: Option<&RedisResult>,
    push: Option<&ConfigPush>,
) -> Vec<Target> {
    let get = |t: &str| all.get(t).copied().unwrap_or_default();
    let (rotor, sio, nchan) = (get("rotor"), get("socketio"), get("nchan"));
    let mut out = Vec::new();

    out.push(Target {
        what: "1 · fan-out, 10k connections on one channel: max deliveries/s with p99 ≤ 50 ms"
            .into(),
        measured: match (rotor.max_deliveries, rotor.first_p99) {
            (Some(d), _) => int(d),
            (None, Some(p)) => format!(
                "none: p99 {} ms already at 1 publish/s (bare tokio-tungstenite {} ms, Nchan {} ms)",
                ms(p),
                opt(get("bare").first_p99.map(|v| v as f64), |v| ms(v as u64)),
                opt(nchan.first_p99.map(|v| v as f64), |v| ms(v as u64)),
            ),
            _ => "–".into(),
        },
        goal: "the ramp's limit (no target of its own)".into(),
        verdict: Verdict::Reported,
        why: "one publication is 10 000 socket writes by the server and 10 000 reads by the load \
              generator on the same 2 cores. On loopback each `send()` also runs the receiver's \
              TCP input and wakes it (≈65 % of the server's samples, see the profile), so the \
              last copy of a single message lands ≈100 ms after the first for every server \
              measured, the bare floor included. The ratios below are therefore taken at \
              saturation. To see this limit: the load generator on its own machine over a real \
              NIC, where the receive path is not the server's to pay"
            .into(),
        next: "",
    });
    // Rotor's fan-out saturation against a peer's, `factor` times at least.
    let versus = |what: &str, peer: &Facts, factor: f64, goal: &str, why: &str| {
        Target {
        what: what.into(),
        measured: format!(
            "{} vs {} (×{})",
            opt(rotor.saturation, int),
            opt(peer.saturation, int),
            ratio(rotor.saturation, peer.saturation)
        ),
        goal: goal.into(),
        verdict: Verdict::from(at_least(rotor.saturation, peer.saturation, factor)),
        why: why.into(),
        next: "profile the saturation step (scripts/bench/profile.sh) and cut what the server does per write",
    }
    };
    out.push(versus(
        "1 · fan-out 10k vs Socket.IO 4 (deliveries/s at saturation: no loss, p99 ≤ 1 s, since \
         no server stays within 50 ms here)",
        &sio,
        10.0,
        "≥ 10 × Socket.IO",
        "Socket.IO encodes and writes per socket on one Node thread; Rotor encodes a \
         publication once and its two runtime threads write the same bytes",
    ));
    out.push(versus(
        "1 · fan-out 10k vs Nchan (deliveries/s at saturation)",
        &nchan,
        2.0,
        "≥ 2 × Nchan",
        "Nchan writes one WebSocket frame per message per socket; under load Rotor joins the \
         frames queued for a connection into one write, so a `send()` carries several \
         publications",
    ));
    let per_core = rotor.cpu_us_best.filter(|v| *v > 0.0).map(|v| 1e6 / v);
    // The lowest rate at which a delivery costs ≤ 2 µs of server CPU (500k per core-second).
    let first_at_goal = runs.get("fanout-rotor").and_then(|r| {
        r.steps
            .iter()
            .find(|s| s.server_cpu_us_per_delivery > 0.0 && s.server_cpu_us_per_delivery <= 2.0)
            .map(|s| {
                format!(
                    "; the rate first reaches 500 000 per core-second at {} deliveries/s, p99 {} ms",
                    int(s.deliveries_per_sec),
                    ms(s.latency.p99)
                )
            })
    });
    out.push(Target {
        what: "1 · fan-out 10k: deliveries/s per core".into(),
        measured: format!(
            "{} per core-second of server CPU at saturation ({} deliveries/s on {} cores, {} µs \
             each); {} per core of the whole box, load generator included{}",
            opt(per_core, int),
            opt(rotor.saturation, int),
            opt(rotor.cpu_pct_best.map(|p| p / 100.0), |v| format!("{v:.2}")),
            opt(rotor.cpu_us_best, |v| format!("{v:.2}")),
            opt(rotor.saturation.map(|d| d / 2.0), int),
            first_at_goal.unwrap_or_default(),
        ),
        goal: "≥ 500 000 per core".into(),
        verdict: Verdict::from(per_core.map(|v| v >= 500_000.0)),
        why: "at saturation each write carries several publications, so the per-write kernel \
              cost (≈70 % of the server's CPU) is shared; at 1–10 publishes/s every delivery is \
              its own `send()`, written by the fan-out itself to idle connections (next row)"
            .into(),
        next: "a per-connection write delay (Centrifugo PRO's `client.write_delay`) so that frames coalesce at lower rates too",
    });

    out.push(single_deliveries(runs));

    let ch = top(runs, "channels-rotor");
    out.push(Target {
        what: "2 · many channels: 10k connections × 10 of 1 000 channels, random publishes".into(),
        measured: ch
            .as_ref()
            .map(|s| {
                format!(
                    "{} deliveries/s at {} publishes/s, p99 {} ms",
                    int(s.deliveries_per_sec),
                    int(s.publish_rate),
                    ms(s.latency.p99)
                )
            })
            .unwrap_or_else(|| "–".into()),
        goal: "deliveries/s and p99".into(),
        verdict: if ch.is_some() {
            Verdict::Reported
        } else {
            Verdict::NotMeasured
        },
        why: "each publish is one HTTP API request reaching 100 subscribers, so the API request \
              (parse, auth, JSON, response) weighs 100× more per delivery than in the \
              one-channel fan-out; the publisher's HTTP client shares the cores too"
            .into(),
        next: "",
    });

    out.push(Target {
        what: "3 · idle memory per subscribed WebSocket connection (RSS delta / N)".into(),
        measured: format!(
            "{} (Protobuf {}) with {} connections",
            opt(rotor.mem_per_conn, |v| format!("{:.2} KB", v / 1000.0)),
            opt(get("rotor-protobuf").mem_per_conn, |v| format!(
                "{:.2} KB",
                v / 1000.0
            )),
            opt(rotor.mem_conns, int)
        ),
        goal: "≤ 5 KB (Centrifugo: ~27 KB default, ~11 KB tuned)".into(),
        verdict: Verdict::from(rotor.mem_per_conn.map(|v| v <= 5000.0)),
        why: "the issue asks for 50k connections; one process may hold at most 20 000 open \
              files on this machine, so the scenario opens 18 000 (the bytes per connection do \
              not depend on N). The same WebSocket stack with no protocol (bare \
              tokio-tungstenite) needs ≈2.9 KB; the rest is the connection task, session, \
              subscription and outbox (bench/profile.md)"
            .into(),
        next: "measure the remaining per-connection heap with `valgrind --tool=dhat` on 1 000 idle connections and move what only active connections need out of the resident task",
    });

    out.push(Target {
        what: "4 · connect storm: HS256 JWT connect + one subscribe, connections/s".into(),
        measured: format!(
            "{} (bare WebSocket upgrade only {}, Nchan {}); server CPU {} µs per connection, \
             i.e. {} connections per core-second of server CPU (bare {} µs, Nchan {} µs)",
            opt(rotor.storm_per_sec, int),
            opt(get("bare").storm_per_sec, int),
            opt(nchan.storm_per_sec, int),
            opt(rotor.storm_cpu_us, |v| format!("{v:.1}")),
            opt(
                rotor.storm_cpu_us.filter(|v| *v > 0.0).map(|v| 1e6 / v),
                int
            ),
            opt(get("bare").storm_cpu_us, |v| format!("{v:.1}")),
            opt(nchan.storm_cpu_us, |v| format!("{v:.1}")),
        ),
        goal: "≥ 20 000 /s".into(),
        verdict: Verdict::from(rotor.storm_per_sec.map(|v| v >= 20_000.0)),
        why: "each connection is a TCP handshake, an HTTP upgrade, an HS256 verification, a \
              connect and a subscribe (sent in one frame) — for the load generator as well as \
              the server, on the same 2 cores, so the load generator holds one core and the rate \
              moves with the run (compare the server CPU per connection; the #25 row gives the \
              load generator's beside it). A connection's first request that opens a WebSocket \
              is upgraded before hyper and the router, in the task that accepted it; a token is \
              parsed once and a short read drains the socket (8.4 system calls per connection); what \
              is left is about half kernel (accept, the 101 and the reply written, reads, \
              epoll, close), then the WebSocket frame handling, the connect command (JWT ≈3 %), \
              the subscribe, the registry and malloc/free, none above 4 % (bench/profile.md)"
            .into(),
        next: "the load generator on its own machine, where the reply's write no longer runs \
               the load generator's TCP receive on the server's core",
    });
    let bare = get("bare");
    out.push(Target {
        what: "#25 · connections: server CPU per HS256 JWT connect + subscribe, and \
               connections/s, Rotor JSON vs the bare upgrade and Nchan (same run)"
            .into(),
        measured: format!(
            "{} µs at {}/s (bare upgrade only {} µs at {}/s, Nchan {} µs at {}/s). Like for \
             like — upgrade, one frame in, one answer out: bare echo {} µs at {}/s, Nchan \
             (the frame published to the connection's own channel and delivered back) {} µs \
             at {}/s. The load generator spent {} µs per Rotor connection; server and load \
             generator kept {} of the box busy",
            opt(rotor.storm_cpu_us, |v| format!("{v:.1}")),
            opt(rotor.storm_per_sec, int),
            opt(bare.storm_cpu_us, |v| format!("{v:.1}")),
            opt(bare.storm_per_sec, int),
            opt(nchan.storm_cpu_us, |v| format!("{v:.1}")),
            opt(nchan.storm_per_sec, int),
            opt(bare.echo_cpu_us, |v| format!("{v:.1}")),
            opt(bare.echo_per_sec, int),
            opt(nchan.echo_cpu_us, |v| format!("{v:.1}")),
            opt(nchan.echo_per_sec, int),
            opt(rotor.storm_loadgen_us, |v| format!("{v:.1}")),
            opt(rotor.storm_busy, |v| format!("{:.0} %", v * 100.0)),
        ),
        goal: "≤ 25 µs per connection and connections/s ≥ Nchan's".into(),
        verdict: Verdict::from(
            match (rotor.storm_cpu_us, rotor.storm_per_sec, nchan.storm_per_sec) {
                (Some(cpu), Some(r), Some(n)) => Some(cpu <= 25.0 && r >= n),
                _ => None,
            },
        ),
        why: format!(
            "the upgrade-only runs of the bare server and Nchan are done at the 101; a Rotor \
             connection, as every Centrifugo SDK opens one, then reads the connect + subscribe \
             frame and writes the reply, a second round trip (on loopback the reply's write \
             also runs the load generator's TCP receive). The like-for-like runs make that \
             round trip without a protocol, so what separates Rotor from the bare echo is its \
             own work: the JWT check, the connect, the subscribe and the client's \
             registration{}. The rate follows the load generator, which does the second round \
             trip, the JSON and the token for Rotor only{}{}",
            match (rotor.storm_cpu_us, nchan.echo_cpu_us) {
                (Some(r), Some(n)) if r <= n => {
                    "; Nchan's publish to a connection's own channel costs more than all of that"
                        .to_owned()
                }
                (Some(r), Some(n)) => format!(
                    "; Nchan's publish to a connection's own channel costs {:.1} µs less",
                    r - n
                ),
                _ => String::new(),
            },
            match (rotor.storm_loadgen_us, rotor.storm_cpu_us) {
                (Some(l), Some(s)) if l > s => {
                    " and spends more CPU per connection than the server does"
                }
                _ => "",
            },
            match (
                rotor.storm_loadgen_us,
                nchan.storm_cpu_us.zip(nchan.storm_loadgen_us),
                bare.storm_cpu_us,
            ) {
                (Some(l), Some((ns, nl)), Some(b)) if ns + nl - l < b => format!(
                    ". Both share the box's cores, so a rate is about the busy cores over the \
                     server's and the load generator's CPU per connection together: Nchan's \
                     {ns:.1} + {nl:.1} µs against the load generator's {l:.1} µs per Rotor \
                     connection leave a server {:.1} µs to match Nchan's rate at the same \
                     utilisation, less than the bare upgrade alone costs ({b:.1} µs)",
                    (ns + nl - l).max(0.0)
                ),
                _ => String::new(),
            },
        ),
        next: "what is left above the bare echo is spread thin (no Rotor function above 2 % of \
               the samples: registry, hub, timers, malloc; bench/profile.md). The rate needs \
               the load generator on its own machine, where the client's second round trip no \
               longer takes CPU from the server's cores",
    });

    let spread = top(runs, "spread-rotor");
    out.push(Target {
        what: "5 · latency at moderate load: 1k msgs/s to 1k subscribers (1 000 channels, one \
               subscriber each; 1k deliveries/s)"
            .into(),
        measured: latency_cell(spread.as_ref()),
        goal: "p99 < 1 ms".into(),
        verdict: Verdict::from(
            spread
                .as_ref()
                .map(|s| s.latency.p99 < 1_000 && s.loss <= 0.001),
        ),
        why: "one HTTP API request per message: parse, JSON, channel lookup, one frame written; \
              the clock is read by the publisher before the request and by the subscriber \
              after the frame"
            .into(),
        next: "profile the API publish path at this rate (scripts/bench/profile.sh) for what sits between the request and the write",
    });
    let one = runs.get("latency-rotor").and_then(|r| r.steps.last());
    out.push(Target {
        what: "5 · the other reading: 1k msgs/s to 1k subscribers of one channel (1 M \
               deliveries/s)"
            .into(),
        measured: latency_cell(one),
        goal: "p99 < 1 ms".into(),
        verdict: Verdict::from(one.map(|s| s.latency.p99 < 1_000 && s.loss <= 0.001)),
        why: "that is the saturation rate of the fan-out scenario on this box (server and load \
              generator both busy on 2 cores), not a moderate load: every message waits for \
              1 000 writes and 1 000 reads"
            .into(),
        next: "the load generator on its own machine; on this box this reading measures the saturation point, not latency",
    });

    out.push(Target {
        what: "6 · Redis engine publishes/s (history on) vs `redis-benchmark PUBLISH`".into(),
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
        verdict: Verdict::from(redis.map(|r| r.ratio >= 0.5)),
        why: "one Lua call per publish (history append, offset, PUBLISH) against a bare PUBLISH; \
              Redis's single thread runs the script"
            .into(),
        next: "batch the publishes that arrive together into one pipelined script call per batch",
    });

    let (edge, direct) = (top(runs, "edge-through-edge"), top(runs, "edge-direct"));
    let (e, d) = (
        edge.as_ref().map(|s| s.deliveries_per_sec),
        direct.as_ref().map(|s| s.deliveries_per_sec),
    );
    out.push(Target {
        what: "7 · edge: fan-out through the control plane's public endpoint vs straight to the \
               tenant process (deliveries/s at saturation)"
            .into(),
        measured: format!(
            "{} vs {} (ratio {}), {} connections on one channel",
            opt(e, int),
            opt(d, int),
            ratio(e, d),
            runs.get("edge-through-edge")
                .map(|r| int(r.params.conns as f64))
                .unwrap_or_else(|| "–".into())
        ),
        goal: "overhead < 10 % (ratio ≥ 0.9)".into(),
        verdict: Verdict::from(at_least(e, d, 0.9)),
        why: "the edge reads the request head, routes it and hands the client's socket to the \
              tenant process (SCM_RIGHTS over a Unix socket); from then on the edge is out of \
              the data path"
            .into(),
        next: "profile the edge path at saturation; check that the hand-off happened (the control plane holds no socket for a WebSocket client)",
    });

    out.push(Target {
        what: "8 · config change → applied on the tenant, p99".into(),
        measured: push
            .map(|p| format!("p50 {:.1} ms, p99 {:.1} ms", p.p50_ms, p.p99_ms))
            .unwrap_or_else(|| "–".into()),
        goal: "< 200 ms".into(),
        verdict: Verdict::from(push.map(|p| p.p99_ms < 200.0)),
        why: "REST → Postgres → reconciler → the tenant's admin endpoint (debug build, polled \
              every 5 ms)"
            .into(),
        next: "profile the reconciler: the change waits on a poll or a lock",
    });
    let first = push.and_then(|p| p.first_connection.as_ref());
    out.push(Target {
        what: "8 · project created → first connection accepted through the edge".into(),
        measured: first
            .map(|t| {
                format!(
                    "p50 {:.1} ms, max {:.1} ms over {} projects",
                    t.p50_ms, t.max_ms, t.count
                )
            })
            .unwrap_or_else(|| "–".into()),
        goal: "< 1 s".into(),
        verdict: Verdict::from(first.map(|t| t.max_ms < 1000.0)),
        why: "REST → Postgres → the reconciler spawns the tenant process, which listens within \
              milliseconds; the client retries the 503 the edge answers meanwhile (every 5 ms)"
            .into(),
        next: "have the edge wait for the new tenant's listener instead of answering 503",
    });
    out
}

/// Issue #22's delta compression: bytes and server CPU per delivery, with and without.
pub fn delta_target(delta: Option<&crate::delta::DeltaResult>) -> Target {
    let find = |protocol: &str, with: bool| {
        delta.and_then(|d| {
            d.runs
                .iter()
                .find(|r| r.protocol == protocol && r.delta == with)
        })
    };
    let cell = |protocol: &str, label: &str| match (find(protocol, false), find(protocol, true)) {
        (Some(whole), Some(d)) => format!(
            "{label}: {:.0} → {:.0} B per delivery ({:+.0} %), server CPU {:.2} → {:.2} µs",
            whole.bytes_per_delivery,
            d.bytes_per_delivery,
            (d.bytes_per_delivery / whole.bytes_per_delivery.max(1.0) - 1.0) * 100.0,
            whole.cpu_us_per_delivery,
            d.cpu_us_per_delivery
        ),
        _ => format!("{label}: –"),
    };
    let measured = match delta {
        Some(_) => format!("{}; {}", cell("json", "JSON"), cell("protobuf", "Protobuf")),
        None => "–".into(),
    };
    let size = delta
        .map(|d| {
            format!(
                "{} subscribers, {} documents of {} B at {}/s",
                d.conns, d.messages, d.doc_bytes, d.rate
            )
        })
        .unwrap_or_else(|| "1 KB documents".into());
    Target {
        what: format!(
            "#22 · Fossil delta compression: bytes on the wire and server CPU per delivery, \
             whole vs `delta: \"fossil\"` subscribers ({size}, each changing a few fields)"
        ),
        measured,
        goal: "measure".into(),
        verdict: if delta.is_some() {
            Verdict::Reported
        } else {
            Verdict::NotMeasured
        },
        why: "the delta against the previous publication is computed once per publication and \
              encoded once per protocol; every delta subscriber gets the same bytes. The first \
              publication after subscribing goes whole, the rest are a few dozen bytes of copy \
              and insert commands. JSON carries the delta as a JSON string, Protobuf as raw \
              bytes; the server's CPU per delivery is dominated by the socket write, which a \
              smaller frame makes a little cheaper"
            .into(),
        next: "",
    }
}

/// Issue #25's single deliveries: at 1, 2, 5 and 10 publishes/s to 10k subscribers, Rotor's
/// server CPU per delivery and p99 against Nchan's in the same run.
fn single_deliveries(runs: &BTreeMap<String, RunResult>) -> Target {
    const RATES: [f64; 4] = [1.0, 2.0, 5.0, 10.0];
    let step = |run: &str, rate: f64| {
        runs.get(run)?
            .steps
            .iter()
            .find(|s| (s.target_rate - rate).abs() < 0.5)
            .cloned()
    };
    let mut cells = Vec::new();
    let mut met = Some(true);
    for rate in RATES {
        match (step("fanout-rotor", rate), step("fanout-nchan", rate)) {
            (Some(r), Some(n)) => {
                let ok = r.server_cpu_us_per_delivery <= n.server_cpu_us_per_delivery
                    && r.latency.p99 <= n.latency.p99;
                met = met.map(|m| m && ok);
                cells.push(format!(
                    "{rate}/s: {:.2} vs {:.2} µs, p99 {} vs {} ms",
                    r.server_cpu_us_per_delivery,
                    n.server_cpu_us_per_delivery,
                    ms(r.latency.p99),
                    ms(n.latency.p99)
                ));
            }
            _ => met = None,
        }
    }
    Target {
        what: "#25 · single deliveries: fan-out to 10k at 1, 2, 5, 10 publishes/s, server CPU per \
               delivery and p99, Rotor JSON vs Nchan (same run)"
            .into(),
        measured: if cells.is_empty() {
            "–".into()
        } else {
            cells.join("; ")
        },
        goal: "≤ Nchan at every step (CPU and p99)".into(),
        verdict: Verdict::from(met),
        why: "at these rates every delivery is its own `send()`. The fan-out writes a publication \
              straight to the socket of each connection whose task sleeps with nothing queued \
              (one `sendmsg` of the WebSocket header and the shared frame; no wake-up, no copy), \
              so what is left is the kernel's send and, on loopback, the receiver's TCP input and \
              wake-up that every server pays (bench/profile.md). Rotor also pings each \
              connection every 25 s (the Centrifugo protocol), which Nchan does not"
            .into(),
        next: "measure with the load generator on its own machine, where the receiver's cost \
               leaves the server's CPU; on this box the steps differ by ±10 % between runs",
    }
}
