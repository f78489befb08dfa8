//! What the coordinator and its worker processes say to each other: the worker's spec (one
//! JSON argument), its events (JSON lines on stdout) and the coordinator's commands (lines on
//! stdin: `snapshot <step>`, `stop`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::Protocol;
use crate::histogram::Sparse;

/// Everything a worker needs to open its share of the connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub index: usize,
    pub protocol: Protocol,
    /// WebSocket URL (`{channel}` replaced by the connection's first channel).
    pub ws_url: String,
    /// HS256 secret for connection tokens (Centrifugo protocols).
    pub secret: Option<String>,
    /// Connections this worker opens.
    pub conns: usize,
    /// Global number of this worker's first connection (channel assignment, user ids).
    pub first_conn: usize,
    /// New connections per second (0: as fast as `concurrency` allows).
    pub connect_rate: f64,
    /// Openings in flight at once.
    pub concurrency: usize,
    pub channels_per_conn: usize,
    pub channel_pool: usize,
    pub channel_prefix: String,
    pub handshake_timeout_ms: u64,
    /// Hard bound on the worker's life.
    pub max_secs: u64,
}

/// A worker → coordinator line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// Openings so far.
    Progress { connected: u64, failed: u64 },
    /// Every opening finished (succeeded or failed).
    Ready {
        connected: u64,
        failed: u64,
        /// Wall clock of the first attempt and the last successful opening, µs.
        first_attempt_us: u64,
        last_ready_us: u64,
        /// Opening time per connection (dial + WebSocket + protocol opening), µs.
        connect: Sparse,
        errors: BTreeMap<String, u64>,
    },
    /// What arrived for one step.
    Snapshot {
        step: u32,
        received: u64,
        latency: Sparse,
        /// Connections that ended after opening, since the last snapshot.
        dropped: u64,
        /// Connections open now.
        open: u64,
        errors: BTreeMap<String, u64>,
    },
    /// The worker is exiting.
    Done,
}

/// Parses a coordinator command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Snapshot(u32),
    Stop,
}

impl Command {
    /// The line form.
    pub fn line(&self) -> String {
        match self {
            Command::Snapshot(s) => format!("snapshot {s}\n"),
            Command::Stop => "stop\n".into(),
        }
    }

    /// Parses one line; `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("snapshot"), Some(n)) => n.parse().ok().map(Command::Snapshot),
            (Some("stop"), None) => Some(Command::Stop),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for c in [Command::Snapshot(12), Command::Stop] {
            assert_eq!(Command::parse(&c.line()), Some(c));
        }
        assert_eq!(Command::parse("snapshot x"), None);
    }

    #[test]
    fn events_are_tagged_lines() {
        let e = Event::Progress {
            connected: 3,
            failed: 0,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(line, r#"{"ev":"progress","connected":3,"failed":0}"#);
    }
}
