//! Reports from a supervised tenant to its supervisor, pushed instead of scraped: a datagram
//! to the supervisor's Unix socket (`ROTOR_REPORT_SOCKET`) carrying the usage counters when
//! they changed (and at least every [`HEARTBEAT`] while clients are connected, so per-minute
//! connection levels stay filled), and an `idle` notice when the process has held no socket and
//! seen no traffic for `ROTOR_PARK_AFTER_MS` and could be stopped without losing anything
//! ([`parkable`]). Traffic refused for authentication (failed connects, API calls with a
//! wrong key) is not activity (see [`activity`]). An idle tenant whose counters do not move sends nothing.
//!
//! Each datagram is one JSON object: `{"tenant", "token", "kind": "usage" | "idle", "usage"?,
//! "keys_used"?}`; the token is the process's admin token, which only the supervisor knows.
//! `keys_used` names the API keys (by id) used since the last usage report that was sent,
//! each with the minute of its last use (unix seconds), so the control plane can show when a
//! key was last used with one write per report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::UnixDatagram;

use crate::node::Node;

/// Longest silence while clients are connected.
pub const HEARTBEAT: Duration = Duration::from_secs(50);
/// How often counters are compared.
const USAGE_EVERY: Duration = Duration::from_secs(5);
/// How often they are compared while clients are connected but nothing has moved for as long:
/// idle clients (their pings aside) then wake the process a third as often, and the first
/// traffic after such a lull is reported within this.
const QUIET_EVERY: Duration = Duration::from_secs(15);

/// Where and as whom this process reports.
#[derive(Debug, Clone)]
pub struct Reporter {
    socket: PathBuf,
    tenant: String,
    token: String,
    park_after: Option<Duration>,
}

static REPORTER: OnceLock<Reporter> = OnceLock::new();

/// Why a process cannot be parked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("client sockets are open")]
    Sockets,
    #[error("the memory engine holds history that has not expired")]
    History,
    #[error("this process does not report to a supervisor")]
    Unsupervised,
}

/// The counters since the process started, as the supervisor meters them.
pub fn usage(node: &Node) -> Value {
    let (clients, users) = node.registry.counts();
    let m = &node.metrics;
    json!({
        "node": node.id,
        "connections": clients,
        "users": users,
        "connections_accepted": m.connections_accepted.get(),
        "messages_published": m.messages_published.get(),
        "messages_delivered": m.messages_delivered.get(),
        "bytes_in": m.bytes_in.get(),
        "bytes_out": m.bytes_out.get(),
        "api_calls": m.api_calls.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "errors": m.client_errors.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "disconnects": m.disconnects.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "namespaces": m.namespaces.snapshot(),
    })
}

/// Whether stopping this process now loses nothing: no client socket is open (connected or
/// not), and with the memory engine no history is held (a Redis-engine tenant's state lives
/// in Redis).
pub fn parkable(node: &Node) -> Result<(), Busy> {
    if node.metrics.sockets.get() > 0 || node.registry.counts().0 > 0 {
        return Err(Busy::Sockets);
    }
    let memory = matches!(
        node.config.load().tenant.engine.kind,
        rotor_tenant_config::EngineType::Memory
    );
    if memory && node.budgets.history_bytes() > 0 {
        return Err(Busy::History);
    }
    Ok(())
}

/// A cheap summary of activity (a few atomic loads and the registry's counts): changes
/// whenever anything is served to someone who proved who they are, so it stands in for
/// comparing whole usage snapshots and decides how long the process has been idle.
///
/// Bytes are left out: an idle client's pings and pongs move them every few seconds, and a
/// tenant whose clients only ping has nothing new to report (the bytes ride along with the
/// next report or the heartbeat). Traffic refused for authentication is left out too, so a
/// stranger cannot keep a project from being parked: a failed connect moves only
/// `client_errors` and, while it lasts, the raw socket count (which is why connected clients
/// are counted here instead of sockets), and an API call with a wrong key is refused before
/// `api_calls` counts it. A socket left open still forbids parking ([`parkable`]); errors of
/// connected clients come with a connection that does.
fn activity(node: &Node) -> [u64; 5] {
    let m = &node.metrics;
    [
        m.connections_accepted.get(),
        m.messages_published.get(),
        m.messages_delivered.get(),
        m.api_calls.total(),
        node.registry.counts().0 as u64,
    ]
}

impl Reporter {
    /// From the environment the supervisor sets (`ROTOR_REPORT_SOCKET`, `ROTOR_TENANT_ID`,
    /// `ROTOR_ADMIN_TOKEN`, `ROTOR_PARK_AFTER_MS`); `None` for a standalone process.
    pub fn from_env() -> Option<Self> {
        let socket = std::env::var_os("ROTOR_REPORT_SOCKET").filter(|s| !s.is_empty())?;
        let token = std::env::var("ROTOR_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())?;
        let tenant = std::env::var("ROTOR_TENANT_ID").unwrap_or_default();
        let park_after = std::env::var("ROTOR_PARK_AFTER_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        Some(Self {
            socket: socket.into(),
            tenant,
            token,
            park_after,
        })
    }

    fn message(&self, kind: &str, usage: Option<Value>) -> Vec<u8> {
        self.message_with_keys(kind, usage, &[])
    }

    fn message_with_keys(
        &self,
        kind: &str,
        usage: Option<Value>,
        keys: &[(String, u64)],
    ) -> Vec<u8> {
        let mut v = json!({"tenant": self.tenant, "token": self.token, "kind": kind});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        if !keys.is_empty() {
            let used: serde_json::Map<String, Value> = keys
                .iter()
                .map(|(id, at)| (id.clone(), json!(at)))
                .collect();
            v["keys_used"] = Value::Object(used);
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }

    async fn send(&self, socket: &UnixDatagram, bytes: &[u8]) -> bool {
        match socket.send_to(bytes, &self.socket).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, socket = %self.socket.display(), "report not delivered");
                false
            }
        }
    }

    /// Reports until the process stops.
    pub async fn run(self, node: Arc<Node>) {
        let _ = REPORTER.set(self.clone());
        let Ok(socket) = UnixDatagram::unbound() else {
            tracing::warn!("cannot open a report socket; usage is not pushed");
            return;
        };
        // Idleness is sampled often enough to park close to `park_after` only while no socket
        // is open (an open socket forbids parking); otherwise the process wakes once per
        // [`USAGE_EVERY`], or [`QUIET_EVERY`] once its clients have been quiet that long, so a
        // tenant whose clients are idle costs almost nothing.
        let idle_tick = self.park_after.map_or(USAGE_EVERY, |p| {
            (p / 4).clamp(Duration::from_millis(50), USAGE_EVERY)
        });
        let mut last_activity = None;
        let mut idle_since = Instant::now();
        let mut last_usage_check = Instant::now() - USAGE_EVERY;
        // The activity the last pushed usage reflected: nothing is built or sent while it
        // has not moved (but for the heartbeat while clients are connected).
        let mut pushed: Option<[u64; 5]> = None;
        let mut last_push = Instant::now();
        // The last-use minute of each key as last sent.
        let mut keys_sent = KeysSent::default();
        loop {
            tokio::select! {
                _ = node.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(crate::clock::after(next_check(&node, idle_since, idle_tick))) => {}
            }
            let now = activity(&node);
            if last_activity != Some(now) {
                last_activity = Some(now);
                idle_since = Instant::now();
            }
            if last_usage_check.elapsed() >= USAGE_EVERY {
                last_usage_check = Instant::now();
                let connected = node.registry.counts().0 > 0;
                if pushed != Some(now) || (connected && last_push.elapsed() >= HEARTBEAT) {
                    let keys = keys_sent.fresh(&node);
                    let message = self.message_with_keys("usage", Some(usage(&node)), &keys);
                    if self.send(&socket, &message).await {
                        pushed = Some(now);
                        last_push = Instant::now();
                        keys_sent.sent(keys);
                    }
                }
            }
            if let Some(after) = self.park_after {
                if idle_since.elapsed() >= after && parkable(&node).is_ok() {
                    self.send(&socket, &self.message("idle", None)).await;
                    // Told again only after as much idleness more (the supervisor may have
                    // found it busy, or missed it).
                    idle_since = Instant::now();
                }
            }
        }
    }
}

/// How long the reporter sleeps: `idle_tick` while no socket is open (parking depends on
/// it), else [`USAGE_EVERY`], stretched to [`QUIET_EVERY`] after as long without activity.
fn next_check(node: &Node, idle_since: Instant, idle_tick: Duration) -> Duration {
    if node.metrics.sockets.get() <= 0 {
        idle_tick
    } else if idle_since.elapsed() >= QUIET_EVERY {
        QUIET_EVERY
    } else {
        USAGE_EVERY
    }
}

/// What the reporter last sent of each key's last use.
#[derive(Debug, Default)]
struct KeysSent(HashMap<String, u64>);

impl KeysSent {
    /// The keys used since their use was last sent.
    fn fresh(&self, node: &Node) -> Vec<(String, u64)> {
        let mut keys = node.config.load().api_keys.used();
        keys.retain(|(id, at)| self.0.get(id).is_none_or(|sent| sent < at));
        keys
    }

    fn sent(&mut self, keys: Vec<(String, u64)>) {
        self.0.extend(keys);
    }
}

/// The supervisor asks this process to stop because it is idle: refused while anything would
/// be lost; otherwise the last usage is pushed and the process begins a graceful stop.
pub async fn park(node: &Arc<Node>) -> Result<(), Busy> {
    let reporter = REPORTER.get().ok_or(Busy::Unsupervised)?;
    parkable(node)?;
    if let Ok(socket) = UnixDatagram::unbound() {
        // Every key's last use: what the running reporter already sent is only repeated.
        let keys = node.config.load().api_keys.used();
        let message = reporter.message_with_keys("usage", Some(usage(node)), &keys);
        reporter.send(&socket, &message).await;
    }
    tracing::info!("parking: idle, stopping until the next request wakes this project");
    let node = node.clone();
    tokio::spawn(async move {
        // Let the reply leave first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        node.shutdown.cancel();
    });
    Ok(())
}
