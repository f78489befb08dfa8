//! The result of one load-generator run as written to `bench/results/<name>.json`, and its
//! readable table. The report generator reads the same types back.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::histogram::{Sparse, Summary};

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Connect, then publish at increasing rates until latency or loss gives out.
    Ramp,
    /// Connect and measure memory per connection.
    Idle,
    /// Connect as fast as possible: connections per second.
    Storm,
}

/// The parameters of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Params {
    pub conns: usize,
    pub workers: usize,
    pub connect_rate: f64,
    pub concurrency: usize,
    pub channels_per_conn: usize,
    pub channel_pool: usize,
    pub payload_bytes: usize,
    pub publish_via: String,
    pub rates: Vec<f64>,
    pub step_secs: f64,
    pub max_p99_ms: f64,
    #[serde(default)]
    pub stop_p99_ms: f64,
    pub max_loss: f64,
}

/// The connection phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectPhase {
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
    /// First attempt to last successful opening.
    pub secs: f64,
    pub per_sec: f64,
    /// Opening time of one connection (dial, upgrade, protocol opening), µs.
    pub latency: Summary,
    pub errors: BTreeMap<String, u64>,
    /// Server CPU time (user + system, the server's process tree) spent per opened connection
    /// during the phase, µs; absent when no server was sampled.
    #[serde(default)]
    pub server_cpu_us_per_conn: Option<f64>,
    /// The load generator's CPU time (its worker processes) per opened connection during the
    /// phase, µs, and the share of the box's CPUs the server and the load generator used
    /// together (1.0: every CPU busy), so a reader sees which side set the rate.
    #[serde(default)]
    pub loadgen_cpu_us_per_conn: Option<f64>,
    #[serde(default)]
    pub box_busy: Option<f64>,
}

/// Server memory around the connection phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    pub rss_before: u64,
    pub rss_after: u64,
    pub per_conn_bytes: f64,
    /// (connections open, server RSS bytes) while connecting.
    pub curve: Vec<(u64, u64)>,
}

/// One publish-rate step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Step {
    pub step: u32,
    pub target_rate: f64,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_rate: f64,
    pub expected: u64,
    pub delivered: u64,
    pub loss: f64,
    pub deliveries_per_sec: f64,
    /// Publish → receive, µs.
    pub latency: Summary,
    pub server_cpu_secs: f64,
    /// Server CPU over the step's wall time (100 = one core).
    pub server_cpu_pct: f64,
    pub server_cpu_us_per_delivery: f64,
    pub server_rss: u64,
    pub dropped_conns: u64,
    pub ok: bool,
    pub histogram: Sparse,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub name: String,
    pub scenario: String,
    pub target: String,
    pub protocol: String,
    pub mode: String,
    pub params: Params,
    pub started_unix: u64,
    pub connect: ConnectPhase,
    pub memory: Option<Memory>,
    pub steps: Vec<Step>,
    /// The best step within the limits (highest deliveries/s).
    pub best_step: Option<u32>,
    /// The highest deliveries/s without loss or drops, p99 up to the stop limit.
    #[serde(default)]
    pub saturation_step: Option<u32>,
    pub stop_reason: String,
    pub drop_reasons: BTreeMap<String, u64>,
}

impl RunResult {
    /// The best step within the limits.
    pub fn best(&self) -> Option<&Step> {
        let id = self.best_step?;
        self.steps.iter().find(|s| s.step == id)
    }

    /// The saturation step (throughput without loss, latency up to the stop limit).
    pub fn saturation(&self) -> Option<&Step> {
        let id = self.saturation_step?;
        self.steps.iter().find(|s| s.step == id)
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.connect;
        let _ = writeln!(
            out,
            "== {} ({} / {} / {}) ==",
            self.name, self.target, self.protocol, self.mode
        );
        let _ = writeln!(
            out,
            "connections: {}/{} in {:.2} s ({:.0}/s), opening p50 {:.1} ms p99 {:.1} ms, failed {}",
            c.connected,
            c.attempted,
            c.secs,
            c.per_sec,
            c.latency.p50 as f64 / 1000.0,
            c.latency.p99 as f64 / 1000.0,
            c.failed
        );
        for (k, v) in &c.errors {
            let _ = writeln!(out, "  connect error {k}: {v}");
        }
        if let Some(us) = c.server_cpu_us_per_conn {
            let _ = writeln!(out, "server CPU {us:.1} µs per connection opened");
        }
        if let Some(us) = c.loadgen_cpu_us_per_conn {
            let _ = writeln!(out, "load generator CPU {us:.1} µs per connection opened");
        }
        if let Some(b) = c.box_busy {
            let _ = writeln!(
                out,
                "server + load generator used {:.0} % of the box's CPUs while connecting",
                b * 100.0
            );
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(
                out,
                "server RSS {:.1} MB -> {:.1} MB: {:.0} bytes per connection",
                m.rss_before as f64 / 1e6,
                m.rss_after as f64 / 1e6,
                m.per_conn_bytes
            );
        }
        if !self.steps.is_empty() {
            let _ = writeln!(
                out,
                "{:>8} {:>9} {:>11} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>4}",
                "rate/s",
                "publ/s",
                "deliv/s",
                "loss%",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "cpu%",
                "µs/msg",
                "ok"
            );
            for s in &self.steps {
                let _ = writeln!(
                    out,
                    "{:>8.0} {:>9.0} {:>11.0} {:>7.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.0} {:>8.2} {:>4}",
                    s.target_rate,
                    s.publish_rate,
                    s.deliveries_per_sec,
                    s.loss * 100.0,
                    s.latency.p50 as f64 / 1000.0,
                    s.latency.p99 as f64 / 1000.0,
                    s.latency.p999 as f64 / 1000.0,
                    s.latency.max as f64 / 1000.0,
                    s.server_cpu_pct,
                    s.server_cpu_us_per_delivery,
                    if s.ok { "yes" } else { "no" }
                );
            }
            let _ = writeln!(out, "stopped: {}", self.stop_reason);
        }
        for (k, v) in &self.drop_reasons {
            let _ = writeln!(out, "  dropped connection {k}: {v}");
        }
        out
    }
}
