//! Server API calls that target connections (subscribe, unsubscribe, disconnect, refresh) go to
//! every node of the tenant: the API node broadcasts a [`ClusterControl`] through the engine
//! (the memory engine hands it straight back; Redis publishes it on the tenant's control
//! topic), and each node applies it to its own matching connections. A single-connection user's
//! new connection replaces its older ones the same way.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::centrifugo_metrics::BrokerMessage;
use crate::client::{Control, ServerRefresh, ServerSubscribe};
use crate::engine::BrokerEvents;
use crate::hub::Hub;
use crate::protocol::{unsubscribe, ClientInfo, Disconnect, StreamPosition};
use crate::publication::PubMsg;
use crate::registry::Registry;

/// A targeted server API operation, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClusterControl {
    Subscribe {
        user: String,
        client: String,
        /// Only the connection of this session id (empty = any).
        #[serde(default)]
        session: String,
        channel: String,
        info: Vec<u8>,
        data: Vec<u8>,
        expire_at: i64,
        recover_since: Option<StreamPosition>,
        /// The request's `override` of the namespace's options.
        #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
        overrides: Option<crate::protocol::Override>,
    },
    Unsubscribe {
        user: String,
        client: String,
        /// Only the connection of this session id (empty = any).
        #[serde(default)]
        session: String,
        channel: String,
    },
    Disconnect {
        user: String,
        client: String,
        /// Only the connection of this session id (empty = any).
        #[serde(default)]
        session: String,
        whitelist: Vec<String>,
        code: u16,
        reason: String,
    },
    Refresh {
        user: String,
        client: String,
        /// Only the connection of this session id (empty = any).
        #[serde(default)]
        session: String,
        expired: bool,
        expire_at: i64,
        info: Vec<u8>,
    },
    /// `client` of `user` connected at `connected_at` (unix microseconds) and its user keeps a
    /// single connection (`client.subscribe_to_user_personal_channel.single_connection`):
    /// every node closes the user's connections from before it with 3504.
    SingleConnection {
        user: String,
        client: String,
        connected_at: i64,
    },
    /// A node's periodic "I am alive" with its `info` entry.
    Heartbeat {
        node: String,
        info: serde_json::Value,
    },
    /// Asks every node for its `channels` or its `info` (answered with `SurveyReply` to
    /// `from`).
    Survey {
        id: String,
        from: String,
        what: String,
    },
    /// One node's answer to a survey.
    SurveyReply {
        id: String,
        to: String,
        data: serde_json::Value,
    },
}

/// How long a node counts as alive after its last heartbeat.
const NODE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a node sends its heartbeat.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

type SurveyReplies = tokio::sync::mpsc::UnboundedSender<serde_json::Value>;

/// What a node knows about the other nodes of its tenant, and its surveys in flight.
pub struct ClusterState {
    pub node_id: String,
    pub node_name: String,
    started: tokio::time::Instant,
    nodes: parking_lot::Mutex<
        std::collections::HashMap<String, (serde_json::Value, tokio::time::Instant)>,
    >,
    surveys: parking_lot::Mutex<std::collections::HashMap<String, SurveyReplies>>,
    /// Messages this node must broadcast (answers to surveys), sent by the node's cluster task.
    pub outgoing: tokio::sync::mpsc::UnboundedSender<ClusterControl>,
}

impl ClusterState {
    /// State for node `node_id`, and the receiver of what it must broadcast.
    pub fn new(
        node_id: String,
        node_name: String,
    ) -> (
        Arc<Self>,
        tokio::sync::mpsc::UnboundedReceiver<ClusterControl>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = Self {
            node_id,
            node_name,
            started: tokio::time::Instant::now(),
            nodes: Default::default(),
            surveys: Default::default(),
            outgoing: tx,
        };
        (Arc::new(state), rx)
    }

    /// `info` entries of every node heard from recently.
    pub fn live_nodes(&self) -> Vec<serde_json::Value> {
        let now = tokio::time::Instant::now();
        let mut nodes = self.nodes.lock();
        nodes.retain(|_, (_, seen)| now.duration_since(*seen) < NODE_TTL);
        nodes.values().map(|(info, _)| info.clone()).collect()
    }

    /// Registers a survey; replies arrive on the returned receiver until it is closed.
    pub fn open_survey(&self, id: &str) -> tokio::sync::mpsc::UnboundedReceiver<serde_json::Value> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.surveys.lock().insert(id.to_owned(), tx);
        rx
    }

    /// Forgets a survey.
    pub fn close_survey(&self, id: &str) {
        self.surveys.lock().remove(id);
    }
}

impl ClusterControl {
    /// Applies the operation on this node.
    pub fn apply(self, events: &NodeEvents) {
        let registry = &events.registry;
        match self {
            ClusterControl::Heartbeat { node, info } => {
                let other = node != events.cluster.node_id;
                let new = events
                    .cluster
                    .nodes
                    .lock()
                    .insert(node, (info, tokio::time::Instant::now()))
                    .is_none();
                let first_sight = other && new;
                if first_sight {
                    // A node that just started missed our earlier heartbeats: answer at once.
                    let hello = ClusterControl::Heartbeat {
                        node: events.cluster.node_id.clone(),
                        info: events.info(),
                    };
                    let _ = events.cluster.outgoing.send(hello);
                }
            }
            ClusterControl::Survey { id, from, what } => {
                let data = if what == "info" {
                    events.info()
                } else {
                    let channels: serde_json::Map<String, serde_json::Value> = events
                        .hub
                        .channels()
                        .into_iter()
                        .map(|(name, n)| (name, serde_json::json!(n)))
                        .collect();
                    serde_json::Value::Object(channels)
                };
                let reply = ClusterControl::SurveyReply { id, to: from, data };
                let _ = events.cluster.outgoing.send(reply);
            }
            ClusterControl::SurveyReply { id, to, data } => {
                if to == events.cluster.node_id {
                    if let Some(tx) = events.cluster.surveys.lock().get(&id) {
                        let _ = tx.send(data);
                    }
                }
            }
            ClusterControl::Subscribe {
                user,
                client,
                session,
                channel,
                info,
                data,
                expire_at,
                recover_since,
                overrides,
            } => {
                let sub = ServerSubscribe {
                    channel,
                    info: Bytes::from(info),
                    data: Bytes::from(data),
                    expire_at,
                    recover_since,
                    overrides,
                };
                for c in registry.find(&user, &client, &session) {
                    c.outbox
                        .push_control(Control::Subscribe(Box::new(sub.clone())));
                }
            }
            ClusterControl::Unsubscribe {
                user,
                client,
                session,
                channel,
            } => {
                let (code, reason) = unsubscribe::SERVER;
                for c in registry.find(&user, &client, &session) {
                    c.outbox.push_control(Control::Unsubscribe {
                        channel: channel.clone(),
                        code,
                        reason: reason.to_owned(),
                    });
                }
            }
            ClusterControl::Disconnect {
                user,
                client,
                session,
                whitelist,
                code,
                reason,
            } => {
                let d = if code == 0 {
                    Disconnect::FORCE_NO_RECONNECT
                } else {
                    Disconnect::custom(code, reason)
                };
                for c in registry.find(&user, &client, &session) {
                    if !whitelist.iter().any(|w| **w == *c.id) {
                        c.outbox.push_control(Control::Disconnect(d.clone()));
                    }
                }
            }
            ClusterControl::SingleConnection {
                user,
                client,
                connected_at,
            } => {
                for c in registry.older(&user, &client, connected_at) {
                    c.outbox
                        .push_control(Control::Disconnect(Disconnect::CONNECTION_LIMIT));
                }
            }
            ClusterControl::Refresh {
                user,
                client,
                session,
                expired,
                expire_at,
                info,
            } => {
                let r = ServerRefresh {
                    expired,
                    expire_at,
                    info: Bytes::from(info),
                };
                for c in registry.find(&user, &client, &session) {
                    c.outbox.push_control(Control::Refresh(Box::new(r.clone())));
                }
            }
        }
    }
}

/// Where a node's engine delivers: publications and join/leave to the hub, control messages
/// to the registry.
pub struct NodeEvents {
    pub hub: Arc<Hub>,
    pub registry: Arc<Registry>,
    pub cluster: Arc<ClusterState>,
}

impl NodeEvents {
    /// This node's `info` entry (server API `info`).
    pub fn info(&self) -> serde_json::Value {
        let (num_clients, num_users) = self.registry.counts();
        let (num_channels, num_subs) = self.hub.counts();
        serde_json::json!({
            "uid": self.cluster.node_id,
            "name": self.cluster.node_name,
            "version": crate::VERSION,
            "num_clients": num_clients,
            "num_users": num_users,
            "num_subs": num_subs,
            "num_channels": num_channels,
            "uptime": self.cluster.started.elapsed().as_secs(),
        })
    }
}

impl NodeEvents {
    fn received(&self, kind: BrokerMessage) {
        self.hub.metrics().centrifugo.broker_received(kind);
    }
}

impl BrokerEvents for NodeEvents {
    fn publication(&self, channel: &str, msg: Arc<PubMsg>) {
        self.received(BrokerMessage::Publication);
        self.hub.publication(channel, msg)
    }
    fn join(&self, channel: &str, info: ClientInfo) {
        self.received(BrokerMessage::Join);
        self.hub.join(channel, info)
    }
    fn leave(&self, channel: &str, info: ClientInfo) {
        self.received(BrokerMessage::Leave);
        self.hub.leave(channel, info)
    }
    fn lost_continuity(&self, channel: &str) {
        self.hub.lost_continuity(channel)
    }
    fn control(&self, payload: &[u8]) {
        self.received(BrokerMessage::Control);
        match serde_json::from_slice::<ClusterControl>(payload) {
            Ok(c) => c.apply(self),
            Err(e) => tracing::warn!(error = %e, "undecodable cluster control message"),
        }
    }
}
