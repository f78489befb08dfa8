//! Centrifugo's own metric families, under Centrifugo's names and labels, so a Grafana
//! dashboard built for Centrifugo works on Rotor's `/metrics` unchanged: node gauges
//! (`centrifugo_node_num_clients`, …), client command durations and reply errors, transport
//! messages by frame type, broker messages by type and server API durations.
//!
//! Everything counted on a hot path is a fixed array of atomics indexed by enum (no lock, no
//! allocation); reply errors, which are rare, sit behind a short mutex. Durations are
//! Prometheus summaries as Centrifugo's are: cumulative `_sum` and `_count`, and quantiles
//! 0.5, 0.99 and 0.999 estimated from log-scale buckets (four per power of two of
//! microseconds) over the last five to ten minutes, like Go's default ten-minute summary
//! window.
//!
//! The node gauges go through prometheus-client ([`CentrifugoMetrics::expose_node`]); the other
//! families are written here, because prometheus-client cannot write them under Centrifugo's
//! names: its text encoder appends `_total` to every counter (Centrifugo's are
//! `centrifugo_transport_messages_sent`, `centrifugo_node_messages_sent_count`, …) and it has
//! no summary type. Their label values are fixed names and numeric codes, never escaped text,
//! and the data plane's tests read the whole `/metrics` with a strict parser
//! ([`rotor_exposition::check`]), these lines included.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rotor_exposition::{Exposition, Kind};

use crate::protocol::TransportName;

/// Transports as Centrifugo names them (the `transport` label), in index order.
pub const TRANSPORTS: [&str; TransportName::COUNT] = {
    let mut names = [""; TransportName::COUNT];
    let mut i = 0;
    while i < names.len() {
        names[i] = TransportName::ALL[i].as_str();
        i += 1;
    }
    names
};

/// Centrifugo's frame types (the `frame_type` label of transport messages), in index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Frame {
    ServerPing,
    ClientPong,
    PushConnect,
    PushSubscribe,
    PushPublication,
    PushJoin,
    PushLeave,
    PushUnsubscribe,
    PushMessage,
    PushRefresh,
    PushDisconnect,
    Connect,
    Subscribe,
    Publish,
    Unsubscribe,
    Rpc,
    Presence,
    PresenceStats,
    History,
    Refresh,
    SubRefresh,
    Send,
}

const FRAMES: usize = 22;

/// Label values of [`Frame`], in index order.
const FRAME_NAMES: [&str; FRAMES] = [
    "server_ping",
    "client_pong",
    "push_connect",
    "push_subscribe",
    "push_publication",
    "push_join",
    "push_leave",
    "push_unsubscribe",
    "push_message",
    "push_refresh",
    "push_disconnect",
    "connect",
    "subscribe",
    "publish",
    "unsubscribe",
    "rpc",
    "presence",
    "presence_stats",
    "history",
    "refresh",
    "sub_refresh",
    "send",
];

/// Client commands (the `method` label of command durations and reply errors).
const COMMANDS: [Frame; 11] = [
    Frame::Connect,
    Frame::Subscribe,
    Frame::Unsubscribe,
    Frame::Publish,
    Frame::Presence,
    Frame::PresenceStats,
    Frame::History,
    Frame::Rpc,
    Frame::Refresh,
    Frame::SubRefresh,
    Frame::Send,
];

impl Frame {
    /// The frame type of a client command by its method name (`presence_stats`, …).
    pub fn command(method: &str) -> Option<Frame> {
        COMMANDS
            .iter()
            .copied()
            .find(|f| FRAME_NAMES[*f as usize] == method)
    }

    fn command_index(self) -> Option<usize> {
        COMMANDS.iter().position(|f| *f == self)
    }
}

/// Types of the messages a node exchanges with its broker (the `type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BrokerMessage {
    Publication,
    Join,
    Leave,
    Control,
}

const BROKER_MESSAGE_NAMES: [&str; 4] = ["publication", "join", "leave", "control"];

/// How many buckets a duration summary keeps per window: four per power of two of
/// microseconds, up to 2^25 µs (33 s); the last one takes everything longer.
const BUCKETS: usize = 100;
/// How long one window of a summary collects before it becomes the previous one.
const WINDOW: Duration = Duration::from_secs(300);
/// The quantiles a summary reports (Centrifugo's objectives).
const QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

/// The bucket of a duration in microseconds.
fn bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let msb = 63 - micros.leading_zeros() as usize;
    let sub = ((micros >> (msb - 2)) & 3) as usize;
    (4 * (msb - 1) + sub).min(BUCKETS - 1)
}

/// The smallest duration (µs) of bucket `i` (`i` may be [`BUCKETS`], the end of the last).
fn bucket_start(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let msb = i / 4 + 1;
    let sub = (i % 4) as u64;
    (4 + sub) << (msb - 2)
}

/// A duration summary: cumulative sum and count, and bucket counts of the last two windows
/// for quantiles.
pub struct Summary {
    count: AtomicU64,
    sum_nanos: AtomicU64,
    windows: [[AtomicU64; BUCKETS]; 2],
    /// The window observations go to.
    current: AtomicUsize,
    /// When the current window started (seconds since [`CentrifugoMetrics::started`]).
    window_started: AtomicU64,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            windows: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            current: AtomicUsize::new(0),
            window_started: AtomicU64::new(0),
        }
    }
}

impl Summary {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let window = self.current.load(Ordering::Relaxed) & 1;
        self.windows[window][bucket(d.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Starts a new window when the current one is [`WINDOW`] old (`now`: seconds since the
    /// metrics started). An observation racing the rotation may miss the quantiles; the sum
    /// and count never miss one.
    fn rotate(&self, now: u64) {
        let started = self.window_started.load(Ordering::Acquire);
        let age = now.saturating_sub(started);
        if age < WINDOW.as_secs() {
            return;
        }
        if self
            .window_started
            .compare_exchange(started, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // another scrape rotates
        }
        let current = self.current.load(Ordering::Relaxed) & 1;
        let next = 1 - current;
        for b in &self.windows[next] {
            b.store(0, Ordering::Relaxed);
        }
        if age >= 2 * WINDOW.as_secs() {
            // Nothing of the current window is recent either.
            for b in &self.windows[current] {
                b.store(0, Ordering::Relaxed);
            }
        }
        self.current.store(next, Ordering::Relaxed);
    }

    /// The estimated `q` quantile in seconds over both windows (NaN without observations).
    fn quantile(&self, counts: &[u64; BUCKETS], total: u64, q: f64) -> f64 {
        if total == 0 {
            return f64::NAN;
        }
        let target = q * total as f64;
        let mut seen = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= target {
                let (lo, hi) = (bucket_start(i) as f64, bucket_start(i + 1) as f64);
                let within = ((target - seen as f64) / c as f64).clamp(0.0, 1.0);
                return (lo + within * (hi - lo)) / 1e6;
            }
            seen += c;
        }
        bucket_start(BUCKETS) as f64 / 1e6
    }

    /// Writes the summary's lines for one label set (`labels` without braces).
    fn render(&self, out: &mut String, name: &str, labels: &str, now: u64) {
        self.rotate(now);
        let mut counts = [0u64; BUCKETS];
        for window in &self.windows {
            for (c, b) in counts.iter_mut().zip(window) {
                *c += b.load(Ordering::Relaxed);
            }
        }
        let total: u64 = counts.iter().sum();
        for q in QUANTILES {
            let v = self.quantile(&counts, total, q);
            let _ = writeln!(out, "{name}{{{labels},quantile=\"{q}\"}} {}", float(v));
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", float(sum));
        let _ = writeln!(
            out,
            "{name}_count{{{labels}}} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// A float in Prometheus text format.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{v}")
    }
}

/// Counters of transport messages by transport and frame type.
struct FrameCounters {
    count: [[AtomicU64; FRAMES]; TRANSPORTS.len()],
    bytes: [[AtomicU64; FRAMES]; TRANSPORTS.len()],
}

impl Default for FrameCounters {
    fn default() -> Self {
        Self {
            count: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            bytes: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl FrameCounters {
    fn add(&self, transport: u8, frame: Frame, count: u64, bytes: u64) {
        let t = usize::from(transport).min(TRANSPORTS.len() - 1);
        self.count[t][frame as usize].fetch_add(count, Ordering::Relaxed);
        self.bytes[t][frame as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Writes `{name}` and `{name}_size` for every (transport, frame type) seen.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        for (suffix, table, what) in [
            ("", &self.count, "Number of messages"),
            ("_size", &self.bytes, "Size in bytes of messages"),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name}{suffix} {what} {help}\n# TYPE {name}{suffix} counter"
            );
            for (t, row) in table.iter().enumerate() {
                for (f, v) in row.iter().enumerate() {
                    let v = v.load(Ordering::Relaxed);
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "{name}{suffix}{{transport=\"{}\",frame_type=\"{}\"}} {v}",
                            TRANSPORTS[t], FRAME_NAMES[f]
                        );
                    }
                }
            }
        }
    }
}

/// Deliveries of one fan-out, added up locally and counted once at the end (so a publication
/// to many subscribers costs a few atomic additions, not one per subscriber).
#[derive(Debug, Default)]
pub struct FanOut {
    count: [u64; TRANSPORTS.len()],
    bytes: [u64; TRANSPORTS.len()],
}

impl FanOut {
    /// One frame of `len` bytes queued to a connection of `transport`.
    pub fn add(&mut self, transport: u8, len: usize) {
        let t = usize::from(transport).min(TRANSPORTS.len() - 1);
        self.count[t] += 1;
        self.bytes[t] += len as u64;
    }
}

/// The server API methods (the `method` label of API durations), as the router knows them.
fn api_methods() -> &'static [&'static str] {
    crate::protocol::API_METHODS
}

const API_METHODS: usize = crate::protocol::API_METHODS.len();

/// Everything Centrifugo counts that Rotor's own families do not already say.
pub struct CentrifugoMetrics {
    started: std::time::Instant,
    sent: FrameCounters,
    received: FrameCounters,
    connects: [AtomicU64; TRANSPORTS.len()],
    commands: [Summary; COMMANDS.len()],
    api: [Summary; API_METHODS],
    /// (command index, error code) → replies with that error.
    reply_errors: Mutex<BTreeMap<(usize, u32), u64>>,
    broker_sent: [AtomicU64; 4],
    broker_received: [AtomicU64; 4],
}

impl Default for CentrifugoMetrics {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
            sent: FrameCounters::default(),
            received: FrameCounters::default(),
            connects: Default::default(),
            commands: Default::default(),
            api: Default::default(),
            reply_errors: Mutex::default(),
            broker_sent: Default::default(),
            broker_received: Default::default(),
        }
    }
}

impl std::fmt::Debug for CentrifugoMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CentrifugoMetrics").finish_non_exhaustive()
    }
}

/// What the node knows at scrape time (gauges are read, not counted).
pub struct NodeGauges {
    pub num_clients: usize,
    pub num_users: usize,
    pub num_channels: usize,
    pub num_subscriptions: usize,
    pub num_nodes: usize,
}

impl CentrifugoMetrics {
    /// A frame of `len` bytes queued to a connection of `transport`.
    pub fn sent(&self, transport: u8, frame: Frame, len: usize) {
        self.sent.add(transport, frame, 1, len as u64);
    }

    /// The deliveries of one fan-out of `frame`.
    pub fn sent_fan_out(&self, frame: Frame, fan_out: &FanOut) {
        for (t, (&count, &bytes)) in fan_out.count.iter().zip(&fan_out.bytes).enumerate() {
            if count > 0 {
                self.sent.add(t as u8, frame, count, bytes);
            }
        }
    }

    /// A command (or pong) of `len` bytes received from a connection of `transport`.
    pub fn received(&self, transport: u8, frame: Frame, len: usize) {
        self.received.add(transport, frame, 1, len as u64);
    }

    /// A connection attempt on `transport`.
    pub fn connect_attempt(&self, transport: u8) {
        let t = usize::from(transport).min(TRANSPORTS.len() - 1);
        self.connects[t].fetch_add(1, Ordering::Relaxed);
    }

    /// How long a client command took.
    pub fn command(&self, frame: Frame, took: Duration) {
        if let Some(i) = frame.command_index() {
            self.commands[i].observe(took);
        }
    }

    /// A client command answered with error `code`.
    pub fn reply_error(&self, frame: Frame, code: u32) {
        if let Some(i) = frame.command_index() {
            *self.reply_errors.lock().entry((i, code)).or_default() += 1;
        }
    }

    /// How long a server API call of `method` took.
    pub fn api_command(&self, method: &str, took: Duration) {
        if let Some(i) = api_methods().iter().position(|m| *m == method) {
            self.api[i].observe(took);
        }
    }

    /// A message this node sent to its broker.
    pub fn broker_sent(&self, kind: BrokerMessage) {
        self.broker_sent[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A message this node received from its broker.
    pub fn broker_received(&self, kind: BrokerMessage) {
        self.broker_received[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the node's gauges (`centrifugo_node_num_clients`, …, `centrifugo_node_build`),
    /// read from the node as `gauges`, to `e`.
    pub fn expose_node(&self, e: &mut Exposition, gauges: &NodeGauges) {
        for (name, help, v) in [
            (
                "num_clients",
                "Number of clients connected.",
                gauges.num_clients,
            ),
            (
                "num_users",
                "Number of unique users connected.",
                gauges.num_users,
            ),
            (
                "num_channels",
                "Number of channels with one or more subscribers.",
                gauges.num_channels,
            ),
            (
                "num_subscriptions",
                "Number of subscriptions.",
                gauges.num_subscriptions,
            ),
            (
                "num_nodes",
                "Number of nodes in the cluster.",
                gauges.num_nodes,
            ),
        ] {
            let v = i64::try_from(v).unwrap_or(i64::MAX);
            e.gauge(&format!("centrifugo_node_{name}"), help, v);
        }
        e.family("centrifugo_node_build", "Node build info.", Kind::Gauge)
            .set(&[("version", env!("CARGO_PKG_VERSION"))], 1);
    }

    /// Appends the Prometheus text of the families prometheus-client cannot write (see the
    /// module comment), with `server_disconnects` (code → count) from Rotor's own counters.
    pub fn render(&self, out: &mut String, server_disconnects: &[(String, u64)]) {
        let now = self.started.elapsed().as_secs();
        for (name, help, table) in [
            (
                "messages_sent_count",
                "Number of messages sent by node to broker.",
                &self.broker_sent,
            ),
            (
                "messages_received_count",
                "Number of messages received from broker.",
                &self.broker_received,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP centrifugo_node_{name} {help}\n# TYPE centrifugo_node_{name} counter"
            );
            for (kind, v) in BROKER_MESSAGE_NAMES.iter().zip(table) {
                let _ = writeln!(
                    out,
                    "centrifugo_node_{name}{{type=\"{kind}\"}} {}",
                    v.load(Ordering::Relaxed)
                );
            }
        }

        let name = "centrifugo_client_command_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Client command duration summary.\n# TYPE {name} summary"
        );
        for (frame, summary) in COMMANDS.iter().zip(&self.commands) {
            let labels = format!("method=\"{}\"", FRAME_NAMES[*frame as usize]);
            summary.render(out, name, &labels, now);
        }
        let _ = writeln!(
            out,
            "# HELP centrifugo_client_num_reply_errors Number of errors in replies sent to clients.\n# TYPE centrifugo_client_num_reply_errors counter"
        );
        for ((i, code), v) in self.reply_errors.lock().iter() {
            let _ = writeln!(
                out,
                "centrifugo_client_num_reply_errors{{method=\"{}\",code=\"{code}\"}} {v}",
                FRAME_NAMES[COMMANDS[*i] as usize]
            );
        }
        let _ = writeln!(
            out,
            "# HELP centrifugo_client_num_server_disconnects Number of server initiated disconnects.\n# TYPE centrifugo_client_num_server_disconnects counter"
        );
        for (code, v) in server_disconnects {
            let _ = writeln!(
                out,
                "centrifugo_client_num_server_disconnects{{code=\"{code}\"}} {v}"
            );
        }

        let _ = writeln!(
            out,
            "# HELP centrifugo_transport_connect_count Number of connect attempts to specific transport.\n# TYPE centrifugo_transport_connect_count counter"
        );
        for (t, v) in TRANSPORTS.iter().zip(&self.connects) {
            let v = v.load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(
                    out,
                    "centrifugo_transport_connect_count{{transport=\"{t}\"}} {v}"
                );
            }
        }
        self.sent.render(
            out,
            "centrifugo_transport_messages_sent",
            "sent to client connections over specific transport.",
        );
        self.received.render(
            out,
            "centrifugo_transport_messages_received",
            "received from client connections over specific transport.",
        );

        let name = "centrifugo_api_command_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Duration of API per command.\n# TYPE {name} summary"
        );
        for (method, summary) in api_methods().iter().zip(&self.api) {
            let labels = format!("protocol=\"http\",method=\"{method}\"");
            summary.render(out, name, &labels, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_durations_in_order() {
        let mut last = 0;
        for micros in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            1_000_000,
            1 << 24,
        ] {
            let b = bucket(micros);
            assert!(b >= last, "{micros}");
            assert!(bucket_start(b) <= micros, "{micros} in {b}");
            assert!(micros < bucket_start(b + 1), "{micros} in {b}");
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_follow_the_observations() {
        let s = Summary::default();
        for _ in 0..990 {
            s.observe(Duration::from_micros(100));
        }
        for _ in 0..10 {
            s.observe(Duration::from_millis(50));
        }
        let mut out = String::new();
        s.render(&mut out, "d", "method=\"x\"", 0);
        let value = |q: &str| -> f64 {
            let line = out
                .lines()
                .find(|l| l.contains(&format!("quantile=\"{q}\"")))
                .unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let median = value("0.5");
        assert!((0.000_09..0.000_12).contains(&median), "{out}");
        let tail = value("0.999");
        assert!((0.04..0.07).contains(&tail), "{out}");
        assert!(out.contains("d_count{method=\"x\"} 1000"), "{out}");
    }

    #[test]
    fn old_windows_leave_the_quantiles_but_not_the_count() {
        let s = Summary::default();
        s.observe(Duration::from_millis(10));
        let mut out = String::new();
        s.render(&mut out, "d", "m=\"x\"", 3 * WINDOW.as_secs());
        assert!(out.contains("d{m=\"x\",quantile=\"0.5\"} NaN"), "{out}");
        assert!(out.contains("d_count{m=\"x\"} 1"), "{out}");
    }

    #[test]
    fn frame_types_are_centrifugos() {
        assert_eq!(FRAME_NAMES.len(), FRAMES);
        assert_eq!(Frame::command("presence_stats"), Some(Frame::PresenceStats));
        assert_eq!(Frame::command("sub_refresh"), Some(Frame::SubRefresh));
        assert_eq!(Frame::command("ping"), None);
    }
}
