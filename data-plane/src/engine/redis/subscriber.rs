//! The PUB/SUB side of one Redis shard: one dedicated connection for every channel this node
//! has subscribers in. It reconnects with backoff after a failure (to the primary the
//! Sentinels name now, for a Sentinel-managed shard), subscribes again to every topic, and
//! then tells positioned subscribers to recover, since publications may have been missed
//! while it was away.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::keys::Keys;
use crate::engine::BrokerEvents;
use crate::protocol::{ClientInfo, Publication};
use crate::publication::PubMsg;

/// Where the PUB/SUB connection goes.
pub enum Source {
    /// One server.
    Fixed(redis::Client),
    /// The primary the Sentinels name at each (re)connection.
    Sentinel(Arc<tokio::sync::Mutex<redis::sentinel::SentinelClient>>),
}

impl Source {
    async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        match self {
            Source::Fixed(client) => client.get_async_pubsub().await,
            Source::Sentinel(sentinel) => {
                super::conn::SentinelConn::primary_client(sentinel)
                    .await?
                    .get_async_pubsub()
                    .await
            }
        }
    }
}

/// A request to the subscriber task.
pub enum SubCmd {
    Subscribe(String, oneshot::Sender<Result<(), String>>),
    Unsubscribe(String),
}

/// Runs until `stop` or until every sender is gone.
pub async fn run(
    source: Source,
    keys: Keys,
    events: Arc<dyn BrokerEvents>,
    mut rx: mpsc::UnboundedReceiver<SubCmd>,
    stop: CancellationToken,
) {
    let mut topics: HashSet<String> = HashSet::new();
    let mut connected_before = false;
    let mut backoff = Duration::from_millis(100);
    // Asking the Sentinels again is cheap, and a failover is over in seconds: retry often so
    // that subscribers recover soon after the new primary is named.
    let max_backoff = match source {
        Source::Sentinel(_) => Duration::from_millis(250),
        Source::Fixed(_) => Duration::from_secs(2),
    };
    loop {
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(3), source.pubsub()) => match r {
                Ok(Ok(p)) => p,
                failure => {
                    let reason = match failure { Ok(Err(e)) => e.to_string(), _ => "timeout".into() };
                    tracing::warn!(error = %reason, "redis pub/sub unavailable; retrying");
                    // Refuse subscriptions while down (clients retry), track unsubscriptions.
                    let deadline = tokio::time::sleep(backoff);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            _ = &mut deadline => break,
                            _ = stop.cancelled() => return,
                            cmd = rx.recv() => match cmd {
                                None => return,
                                Some(SubCmd::Subscribe(_, ack)) => { let _ = ack.send(Err("redis unavailable".into())); }
                                Some(SubCmd::Unsubscribe(t)) => { topics.remove(&t); }
                            },
                        }
                    }
                    backoff = (backoff * 2).min(max_backoff);
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        let (mut sink, mut stream) = pubsub.split();
        if !topics.is_empty() {
            let all: Vec<&String> = topics.iter().collect();
            if let Err(e) = sink.subscribe(all).await {
                tracing::warn!(error = %e, "redis resubscribe failed");
                continue;
            }
        }
        if connected_before {
            tracing::info!(
                channels = topics.len(),
                "redis pub/sub reconnected; positioned subscribers recover"
            );
            for topic in &topics {
                if let Some(channel) = keys.channel_of(topic) {
                    events.lost_continuity(channel);
                }
            }
        }
        connected_before = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(SubCmd::Subscribe(topic, ack)) => {
                        match sink.subscribe(&topic).await {
                            Ok(()) => {
                                topics.insert(topic);
                                let _ = ack.send(Ok(()));
                            }
                            Err(e) => {
                                let _ = ack.send(Err(e.to_string()));
                                break;
                            }
                        }
                    }
                    Some(SubCmd::Unsubscribe(topic)) => {
                        topics.remove(&topic);
                        if sink.unsubscribe(&topic).await.is_err() {
                            break;
                        }
                    }
                },
                msg = stream.next() => match msg {
                    None => break,
                    Some(msg) => deliver(&keys, events.as_ref(), msg.get_channel_name(), msg.get_payload_bytes()),
                },
            }
        }
        tracing::warn!("redis pub/sub connection lost; reconnecting");
    }
}

/// Decodes one PUB/SUB payload: `p<offset>:<epoch>:<Publication>`, the same with the
/// previous publication for delta subscribers `d<offset>:<epoch>:<prev length>:<prev
/// Publication><Publication>`, `j<ClientInfo>` or `l<ClientInfo>`.
pub fn deliver(keys: &Keys, events: &dyn BrokerEvents, topic: &str, payload: &[u8]) {
    if topic == keys.control_topic() {
        if let Some((b'x', body)) = payload.split_first() {
            events.control(body);
        }
        return;
    }
    let Some(channel) = keys.channel_of(topic) else {
        return;
    };
    let Some((&kind, rest)) = payload.split_first() else {
        return;
    };
    match kind {
        b'p' | b'd' => {
            let Some(Parts {
                offset,
                epoch,
                prev,
                body,
            }) = split_publication(kind == b'd', rest)
            else {
                tracing::warn!(%channel, "malformed publication on pub/sub");
                return;
            };
            let epoch = String::from_utf8_lossy(epoch).into_owned();
            // A previous publication that does not decode only costs its subscribers a delta.
            let prev = prev
                .filter(|p| !p.is_empty())
                .and_then(|p| Publication::decode(p).ok())
                .map(|p| p.data);
            match Publication::decode(body) {
                Ok(mut publication) => {
                    publication.offset = offset;
                    let msg = PubMsg::with_prev(channel, publication, epoch, prev);
                    events.publication(channel, msg);
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "undecodable publication on pub/sub")
                }
            }
        }
        b'j' | b'l' => match ClientInfo::decode(rest) {
            Ok(info) if kind == b'j' => events.join(channel, info),
            Ok(info) => events.leave(channel, info),
            Err(e) => tracing::warn!(%channel, error = %e, "undecodable join/leave on pub/sub"),
        },
        _ => tracing::warn!(%channel, "unknown pub/sub message kind"),
    }
}

/// The parts of a publication message after its kind letter.
#[derive(Debug, PartialEq)]
struct Parts<'a> {
    offset: u64,
    epoch: &'a [u8],
    /// The previous publication (`d` messages; may be empty).
    prev: Option<&'a [u8]>,
    body: &'a [u8],
}

/// Splits a publication message after its kind letter (`with_prev`: the `d` kind).
fn split_publication(with_prev: bool, rest: &[u8]) -> Option<Parts<'_>> {
    let mut parts = rest.splitn(if with_prev { 4 } else { 3 }, |b| *b == b':');
    let offset = parts.next()?;
    let epoch = parts.next()?;
    let offset: u64 = std::str::from_utf8(offset)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if !with_prev {
        let body = parts.next()?;
        return Some(Parts {
            offset,
            epoch,
            prev: None,
            body,
        });
    }
    let len: usize = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let tail = parts.next()?;
    if tail.len() < len {
        return None;
    }
    let (prev, body) = tail.split_at(len);
    Some(Parts {
        offset,
        epoch,
        prev: Some(prev),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(
        offset: u64,
        epoch: &'a [u8],
        prev: Option<&'a [u8]>,
        body: &'a [u8],
    ) -> Parts<'a> {
        Parts {
            offset,
            epoch,
            prev,
            body,
        }
    }

    #[test]
    fn publication_messages_split_with_and_without_the_previous_one() {
        assert_eq!(
            split_publication(false, b"7:ep:a:b"),
            Some(parts(7, b"ep", None, b"a:b"))
        );
        assert_eq!(
            split_publication(true, b"7:ep:3:x:ya:b"),
            Some(parts(7, b"ep", Some(b"x:y"), b"a:b"))
        );
        assert_eq!(
            split_publication(true, b"1:ep:0:body"),
            Some(parts(1, b"ep", Some(b""), b"body"))
        );
        assert_eq!(split_publication(true, b"7:ep:9:short"), None);
        assert_eq!(split_publication(true, b"7:ep:x:short"), None);
        assert_eq!(split_publication(true, b"7:ep"), None);
    }
}
