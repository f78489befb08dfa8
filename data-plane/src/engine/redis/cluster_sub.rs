//! The PUB/SUB side on a Redis Cluster: sharded PUB/SUB (`SSUBSCRIBE`, Redis ≥ 7) over
//! redis-rs's cluster connection with RESP3 pushes, so each channel's topic is subscribed on
//! the node that owns its slot and a publish reaches that node only. The cluster moves a
//! subscription away in two ways: a node connection is lost (a primary killed: every topic
//! may have missed publications) or the server unsubscribes the topics of a slot that left
//! the node (a slot migration, or a primary turned replica by a failover). Either way the
//! affected topics are subscribed again — routed to the slot's owner now, retried until the
//! cluster has one — and only then are their positioned subscribers told to recover, so
//! nothing published after the recovery's history read is missed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::keys::Keys;
use super::subscriber::{deliver, SubCmd};
use crate::engine::BrokerEvents;

/// How long one (re)subscription may take before it counts as failed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest pause between attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// SSUBSCRIBE of `topic`, bounded.
async fn ssubscribe(mut conn: ClusterConnection, topic: String) -> (String, Result<(), String>) {
    let r = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, conn.ssubscribe(&topic)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".to_owned()),
    };
    (topic, r)
}

fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Runs until `stop` or until every sender is gone.
pub async fn run(
    conn: ClusterConnection,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    keys: Keys,
    events: Arc<dyn BrokerEvents>,
    mut rx: mpsc::UnboundedReceiver<SubCmd>,
    stop: CancellationToken,
) {
    // What this node wants, and which of it must be subscribed again before recovery.
    let mut topics: HashSet<String> = HashSet::new();
    let mut lost: HashSet<String> = HashSet::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            cmd = rx.recv() => match cmd {
                None => return,
                Some(SubCmd::Subscribe(topic, ack)) => {
                    let (topic, r) = ssubscribe(conn.clone(), topic).await;
                    if r.is_ok() {
                        topics.insert(topic);
                    }
                    let _ = ack.send(r);
                }
                Some(SubCmd::Unsubscribe(topic)) => {
                    topics.remove(&topic);
                    lost.remove(&topic);
                    let mut conn = conn.clone();
                    let unsubscribe = conn.sunsubscribe(&topic);
                    if let Ok(Err(e)) = tokio::time::timeout(SUBSCRIBE_TIMEOUT, unsubscribe).await {
                        tracing::debug!(error = %e, "redis cluster sunsubscribe failed");
                    }
                }
            },
            push = pushes.recv() => {
                let Some(push) = push else { return };
                match push.kind {
                    PushKind::SMessage => {
                        if let [channel, payload, ..] = push.data.as_slice() {
                            if let (Some(channel), Some(payload)) = (text(channel), text(payload)) {
                                let topic = String::from_utf8_lossy(channel);
                                deliver(&keys, events.as_ref(), &topic, payload);
                            }
                        }
                    }
                    PushKind::Disconnection => {
                        tracing::warn!(
                            channels = topics.len(),
                            "redis cluster pub/sub lost a node; subscribing again"
                        );
                        lost.extend(topics.iter().cloned());
                        backoff = Duration::from_millis(50);
                    }
                    PushKind::SUnsubscribe => {
                        // The server dropped a topic we still want: its slot moved.
                        if let Some(topic) = push.data.first().and_then(text) {
                            let topic = String::from_utf8_lossy(topic).into_owned();
                            if topics.contains(&topic) {
                                lost.insert(topic);
                                backoff = Duration::from_millis(50);
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep(backoff), if !lost.is_empty() => {
                let attempts = lost.iter().cloned().map(|t| ssubscribe(conn.clone(), t));
                let mut failed = 0usize;
                for (topic, r) in futures_util::future::join_all(attempts).await {
                    match r {
                        Ok(()) => {
                            lost.remove(&topic);
                            if let Some(channel) = keys.channel_of(&topic) {
                                events.lost_continuity(channel);
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            tracing::debug!(error = %e, "redis cluster resubscribe failed");
                        }
                    }
                }
                if failed == 0 {
                    tracing::info!("redis cluster pub/sub subscribed again; positioned subscribers recover");
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
