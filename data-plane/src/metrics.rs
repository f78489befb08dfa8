//! Process counters, exposed in Prometheus text format at `/metrics`. Plain atomics on the hot
//! path; labelled counters (by code or method) sit behind a short mutex on the error path only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters keyed by a label value.
#[derive(Debug, Default)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    pub fn inc(&self, label: impl Into<String>) {
        *self.0.lock().entry(label.into()).or_default() += 1;
    }
    pub fn get(&self, label: &str) -> u64 {
        self.0.lock().get(label).copied().unwrap_or(0)
    }
    fn snapshot(&self) -> Vec<(String, u64)> {
        self.0.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Everything this process counts.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: Gauge,
    pub connections_accepted: Counter,
    pub subscriptions: Gauge,
    pub commands: LabeledCounter,
    pub messages_published: Counter,
    pub messages_delivered: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub api_calls: LabeledCounter,
    pub client_errors: LabeledCounter,
    pub disconnects: LabeledCounter,
    pub malformed_frames: Counter,
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut gauge = |name: &str, help: &str, v: i64| {
            let _ = writeln!(
                out,
                "# HELP rotor_{name} {help}\n# TYPE rotor_{name} gauge\nrotor_{name} {v}"
            );
        };
        gauge(
            "connections",
            "Current client connections.",
            self.connections.get(),
        );
        gauge(
            "subscriptions",
            "Current channel subscriptions.",
            self.subscriptions.get(),
        );
        for (name, help, v) in [
            (
                "connections_accepted_total",
                "Client connections accepted.",
                &self.connections_accepted,
            ),
            (
                "messages_published_total",
                "Publications accepted (client and API).",
                &self.messages_published,
            ),
            (
                "messages_delivered_total",
                "Pushes queued to subscribers.",
                &self.messages_delivered,
            ),
            (
                "bytes_in_total",
                "Bytes received from clients.",
                &self.bytes_in,
            ),
            (
                "bytes_out_total",
                "Bytes written to clients.",
                &self.bytes_out,
            ),
            (
                "malformed_frames_total",
                "Frames that could not be decoded.",
                &self.malformed_frames,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP rotor_{name} {help}\n# TYPE rotor_{name} counter\nrotor_{name} {}",
                v.get()
            );
        }
        for (name, label, help, c) in [
            (
                "commands_total",
                "method",
                "Client commands by method.",
                &self.commands,
            ),
            (
                "api_calls_total",
                "method",
                "Server API calls by method.",
                &self.api_calls,
            ),
            (
                "client_errors_total",
                "code",
                "Command errors by code.",
                &self.client_errors,
            ),
            (
                "disconnects_total",
                "code",
                "Disconnects by code.",
                &self.disconnects,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP rotor_{name} {help}\n# TYPE rotor_{name} counter"
            );
            for (k, v) in c.snapshot() {
                let _ = writeln!(out, "rotor_{name}{{{label}=\"{k}\"}} {v}");
            }
        }
        out
    }
}
