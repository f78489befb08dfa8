//! The engine: where publications get their stream position and history lives (`Broker`), and
//! where presence is kept (`Presence`). The memory engine serves one process; the Redis engine
//! (its own module) spreads one tenant over many; the NATS broker (`broker.type: nats`) spreads
//! PUB/SUB without history over many, presence staying with the engine. Each delivers what it
//! publishes to the local [`crate::hub::Hub`] through [`BrokerEvents`].

pub mod memory;
pub(crate) mod nats;
pub mod redis;
pub mod sweep_clock;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::protocol::{ClientError, ClientInfo, Publication, StreamPosition};
use crate::publication::PubMsg;

/// Engine failures, answered to clients and the API as the [`ClientError`] they convert into.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The backing store is unreachable or answered with an error.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The requested stream position belongs to another epoch or is out of range.
    #[error("unrecoverable position")]
    UnrecoverablePosition,
    /// A budget of the tenant refused what the call would add (memory engine).
    #[error(transparent)]
    Budget(#[from] crate::budgets::BudgetError),
    /// The broker does not implement this (history with the NATS broker).
    #[error("not available with this broker")]
    NotAvailable,
    /// The broker cannot carry this channel name (a NATS subject cannot hold it).
    #[error("channel name not supported by the broker")]
    BadChannel,
}

/// The one mapping of engine failures to the protocol error (client protocol and server API
/// alike): an unavailable store is an internal error (temporary, so SDKs retry), a budget is 106.
impl From<EngineError> for ClientError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnrecoverablePosition => ClientError::UNRECOVERABLE_POSITION,
            EngineError::Unavailable(m) => {
                tracing::warn!(error = %m, "engine unavailable");
                ClientError::INTERNAL
            }
            EngineError::Budget(e) => e.into(),
            EngineError::NotAvailable => ClientError::NOT_AVAILABLE,
            EngineError::BadChannel => ClientError::BAD_REQUEST,
        }
    }
}

/// History settings that apply to one publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Publications kept (0 = no history for this publish).
    pub history_size: u32,
    /// How long publications are kept.
    pub history_ttl: Duration,
    /// How long stream meta (epoch, top) is kept.
    pub history_meta_ttl: Duration,
    /// Repeated publishes with the same key (within 5 minutes) return the first result.
    pub idempotency_key: Option<String>,
    /// The publication's version (0 = unversioned). With history, a publication whose version
    /// is not above the channel's last accepted one (in the same `version_epoch`, or any
    /// epoch when this one is empty) is dropped: not stored, not delivered, and the publish
    /// answers the current stream top. Only versioned publishes move the channel's version,
    /// which lives as long as the stream's meta (`history_meta_ttl`).
    pub version: u64,
    /// Scope of `version`: a different epoch starts counting afresh.
    pub version_epoch: String,
    /// Deliver the stream's previous publication along (with history), so subscribers that
    /// negotiated Fossil delta can get a delta against it (`delta` of the API's publish, or
    /// the namespace's `delta_publish`).
    pub delta: bool,
}

impl PublishOptions {
    /// Whether this publish goes into history.
    pub fn uses_history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    /// Whether a publication of `version` is stale next to the channel's last accepted
    /// `(last, last_epoch)` and must be dropped (Centrifugo's rule, both engines).
    pub fn is_stale(&self, last: u64, last_epoch: &str) -> bool {
        self.version > 0
            && (self.version_epoch.is_empty() || self.version_epoch == last_epoch)
            && self.version <= last
    }
}

/// Which part of a stream to read.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Start after (forward) or before (reverse) this position.
    pub since: Option<StreamPosition>,
    /// 0 = none (only the top), negative = all, else at most this many.
    pub limit: i32,
    /// Newest first.
    pub reverse: bool,
    /// Stream meta retention, refreshed by reads.
    pub meta_ttl: Duration,
}

/// A history read: publications and the current stream top.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub publications: Vec<Publication>,
    pub top: StreamPosition,
}

/// Where engine events go (the local hub).
pub trait BrokerEvents: Send + Sync + 'static {
    /// A publication for `channel` (with its offset and epoch set) to deliver locally.
    fn publication(&self, channel: &str, msg: Arc<PubMsg>);
    /// A join to deliver to subscribers that asked for join/leave.
    fn join(&self, channel: &str, info: ClientInfo);
    /// A leave to deliver to subscribers that asked for join/leave.
    fn leave(&self, channel: &str, info: ClientInfo);
    /// Publications of `channel` may have been lost (e.g. the broker reconnected):
    /// positioned subscribers must recover.
    fn lost_continuity(&self, _channel: &str) {}
    /// A control message for every node of the tenant (see [`crate::cluster`]).
    fn control(&self, _payload: &[u8]) {}
}

/// Publications, history and stream positions.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes into a channel: assigns the next offset when history is on, stores it, and
    /// delivers it to every node's subscribers in stream order.
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, EngineError>;
    /// Announces a join to every node.
    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError>;
    /// Announces a leave to every node.
    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError>;
    /// Reads history. An epoch in `since` that differs from the stream's is
    /// [`EngineError::UnrecoverablePosition`].
    async fn history(
        &self,
        channel: &str,
        filter: HistoryFilter,
    ) -> Result<HistoryPage, EngineError>;
    /// Drops a channel's publications (keeps its epoch and top offset).
    async fn remove_history(&self, channel: &str) -> Result<(), EngineError>;
    /// This node gained its first subscriber of `channel` (Redis subscribes to its topic).
    async fn subscribe(&self, channel: &str) -> Result<(), EngineError>;
    /// This node lost its last subscriber of `channel`.
    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError>;
    /// Delivers a control message to every node of the tenant, this one included.
    async fn broadcast_control(&self, payload: bytes::Bytes) -> Result<(), EngineError>;
}

/// Presence: who is in a channel right now.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Adds or refreshes one connection's entry.
    async fn add_presence(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError>;
    /// Removes one connection's entry.
    async fn remove_presence(
        &self,
        channel: &str,
        client_id: &str,
        user: &str,
    ) -> Result<(), EngineError>;
    /// Every entry, keyed by client id.
    async fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, EngineError>;
    /// Number of connections and of distinct users.
    async fn presence_stats(&self, channel: &str) -> Result<(u32, u32), EngineError>;
}

/// Eight random letters: a new stream identity.
pub fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..8)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}
