//! Server API calls that target connections (subscribe, unsubscribe, disconnect, refresh) go to
//! every node of the tenant: the API node broadcasts a [`ClusterControl`] through the engine
//! (the memory engine hands it straight back; Redis publishes it on the tenant's control
//! topic), and each node applies it to its own matching connections.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::client::Control;
use crate::engine::BrokerEvents;
use crate::hub::{Hub, PubMsg};
use crate::node::Registry;
use crate::protocol::{unsubscribe, ClientInfo, Disconnect, StreamPosition};
use crate::session::{ServerRefresh, ServerSubscribe};

/// A targeted server API operation, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClusterControl {
    Subscribe {
        user: String,
        client: String,
        channel: String,
        info: Vec<u8>,
        data: Vec<u8>,
        expire_at: i64,
        recover_since: Option<StreamPosition>,
    },
    Unsubscribe {
        user: String,
        client: String,
        channel: String,
    },
    Disconnect {
        user: String,
        client: String,
        whitelist: Vec<String>,
        code: u16,
        reason: String,
    },
    Refresh {
        user: String,
        client: String,
        expired: bool,
        expire_at: i64,
        info: Vec<u8>,
    },
}

impl ClusterControl {
    /// Applies the operation to this node's matching connections.
    pub fn apply(self, registry: &Registry) {
        match self {
            ClusterControl::Subscribe {
                user,
                client,
                channel,
                info,
                data,
                expire_at,
                recover_since,
            } => {
                let sub = ServerSubscribe {
                    channel,
                    info: Bytes::from(info),
                    data: Bytes::from(data),
                    expire_at,
                    recover_since,
                };
                for c in registry.find(&user, &client) {
                    c.outbox
                        .push_control(Control::Subscribe(Box::new(sub.clone())));
                }
            }
            ClusterControl::Unsubscribe {
                user,
                client,
                channel,
            } => {
                let (code, reason) = unsubscribe::SERVER;
                for c in registry.find(&user, &client) {
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
                whitelist,
                code,
                reason,
            } => {
                let d = if code == 0 {
                    Disconnect::FORCE_NO_RECONNECT
                } else {
                    Disconnect::custom(code, reason)
                };
                for c in registry.find(&user, &client) {
                    if !whitelist.iter().any(|w| **w == *c.id) {
                        c.outbox.push_control(Control::Disconnect(d.clone()));
                    }
                }
            }
            ClusterControl::Refresh {
                user,
                client,
                expired,
                expire_at,
                info,
            } => {
                let r = ServerRefresh {
                    expired,
                    expire_at,
                    info: Bytes::from(info),
                };
                for c in registry.find(&user, &client) {
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
}

impl BrokerEvents for NodeEvents {
    fn publication(&self, channel: &str, msg: Arc<PubMsg>) {
        self.hub.publication(channel, msg)
    }
    fn join(&self, channel: &str, info: ClientInfo) {
        self.hub.join(channel, info)
    }
    fn leave(&self, channel: &str, info: ClientInfo) {
        self.hub.leave(channel, info)
    }
    fn lost_continuity(&self, channel: &str) {
        self.hub.lost_continuity(channel)
    }
    fn control(&self, payload: &[u8]) {
        match serde_json::from_slice::<ClusterControl>(payload) {
            Ok(c) => c.apply(&self.registry),
            Err(e) => tracing::warn!(error = %e, "undecodable cluster control message"),
        }
    }
}
