//! The memory engine: history streams and presence inside this process. Publishing into a
//! channel assigns its offset, appends to the stream and fans out under one per-shard lock, so
//! every subscriber sees one order and offsets are contiguous.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{
    new_epoch, Broker, BrokerEvents, EngineError, HistoryFilter, HistoryPage, Presence,
    PublishOptions,
};
use crate::hub::PubMsg;
use crate::protocol::{ClientInfo, Publication, StreamPosition};

const SHARDS: usize = 64;
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Stream {
    epoch: String,
    top: u64,
    pubs: VecDeque<Publication>,
    data_expires: Instant,
    meta_expires: Instant,
}

impl Stream {
    fn new(now: Instant, meta_ttl: Duration) -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            pubs: VecDeque::new(),
            data_expires: now,
            meta_expires: now + meta_ttl,
        }
    }

    /// Drops expired data; reports whether the whole stream (meta too) has expired.
    fn expire(&mut self, now: Instant) -> bool {
        if now >= self.data_expires {
            self.pubs.clear();
        }
        now >= self.meta_expires
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }
}

#[derive(Default)]
struct StreamShard {
    streams: HashMap<String, Stream>,
    idempotency: HashMap<(String, String), (StreamPosition, Instant)>,
}

/// History, positions and fan-out for one process.
pub struct MemoryBroker {
    shards: Box<[Mutex<StreamShard>]>,
    hasher: std::collections::hash_map::RandomState,
    events: Arc<dyn BrokerEvents>,
}

impl MemoryBroker {
    /// A broker delivering to `events` (the hub).
    pub fn new(events: Arc<dyn BrokerEvents>) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(StreamShard::default()))
                .collect(),
            hasher: Default::default(),
            events,
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<StreamShard> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Drops expired streams and idempotency records; run periodically to bound memory.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.streams.retain(|_, s| !s.expire(now));
            shard
                .idempotency
                .retain(|_, (_, at)| now < *at + IDEMPOTENCY_TTL);
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        if !opts.uses_history() {
            let msg = PubMsg::new(channel, publication, String::new());
            self.events.publication(channel, msg);
            return Ok(StreamPosition::default());
        }
        let now = Instant::now();
        let mut shard = self.shard(channel).lock();
        if let Some(key) = &opts.idempotency_key {
            let k = (channel.to_owned(), key.clone());
            if let Some((pos, at)) = shard.idempotency.get(&k) {
                if now < *at + IDEMPOTENCY_TTL {
                    return Ok(pos.clone());
                }
            }
        }
        let meta_ttl = opts.history_meta_ttl.max(opts.history_ttl);
        let stream = shard
            .streams
            .entry(channel.to_owned())
            .or_insert_with(|| Stream::new(now, meta_ttl));
        if stream.expire(now) {
            *stream = Stream::new(now, meta_ttl);
        }
        stream.top += 1;
        publication.offset = stream.top;
        stream.pubs.push_back(publication.clone());
        while stream.pubs.len() > opts.history_size as usize {
            stream.pubs.pop_front();
        }
        stream.data_expires = now + opts.history_ttl;
        stream.meta_expires = now + meta_ttl;
        let position = stream.position();
        let msg = PubMsg::new(channel, publication, position.epoch.clone());
        // Fan out while holding the stream lock: offsets reach subscribers in order.
        self.events.publication(channel, msg);
        if let Some(key) = &opts.idempotency_key {
            shard
                .idempotency
                .insert((channel.to_owned(), key.clone()), (position.clone(), now));
        }
        Ok(position)
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        self.events.join(channel, info);
        Ok(())
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        self.events.leave(channel, info);
        Ok(())
    }

    async fn history(
        &self,
        channel: &str,
        filter: HistoryFilter,
    ) -> Result<HistoryPage, EngineError> {
        let now = Instant::now();
        let mut shard = self.shard(channel).lock();
        let stream = shard
            .streams
            .entry(channel.to_owned())
            .or_insert_with(|| Stream::new(now, filter.meta_ttl));
        if stream.expire(now) {
            *stream = Stream::new(now, filter.meta_ttl);
        }
        if !filter.meta_ttl.is_zero() {
            stream.meta_expires = stream.meta_expires.max(now + filter.meta_ttl);
        }
        let top = stream.position();
        if let Some(since) = &filter.since {
            if !since.epoch.is_empty() && since.epoch != stream.epoch {
                return Err(EngineError::UnrecoverablePosition);
            }
        }
        if filter.limit == 0 {
            return Ok(HistoryPage {
                publications: Vec::new(),
                top,
            });
        }
        let limit = if filter.limit < 0 {
            usize::MAX
        } else {
            filter.limit as usize
        };
        let publications: Vec<Publication> = if filter.reverse {
            let before = filter.since.as_ref().map_or(u64::MAX, |s| s.offset);
            stream
                .pubs
                .iter()
                .rev()
                .filter(|p| p.offset < before)
                .take(limit)
                .cloned()
                .collect()
        } else {
            let after = filter.since.as_ref().map_or(0, |s| s.offset);
            stream
                .pubs
                .iter()
                .filter(|p| p.offset > after)
                .take(limit)
                .cloned()
                .collect()
        };
        Ok(HistoryPage { publications, top })
    }

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        if let Some(stream) = self.shard(channel).lock().streams.get_mut(channel) {
            stream.pubs.clear();
        }
        Ok(())
    }

    async fn subscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn broadcast_control(&self, payload: bytes::Bytes) -> Result<(), EngineError> {
        self.events.control(&payload);
        Ok(())
    }
}

/// Presence for one process.
#[derive(Default)]
pub struct MemoryPresence {
    channels: Mutex<HashMap<String, HashMap<String, ClientInfo>>>,
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn add_presence(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        self.channels
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .insert(info.client.clone(), info);
        Ok(())
    }

    async fn remove_presence(
        &self,
        channel: &str,
        client_id: &str,
        _user: &str,
    ) -> Result<(), EngineError> {
        let mut channels = self.channels.lock();
        if let Some(entries) = channels.get_mut(channel) {
            entries.remove(client_id);
            if entries.is_empty() {
                channels.remove(channel);
            }
        }
        Ok(())
    }

    async fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, EngineError> {
        Ok(self
            .channels
            .lock()
            .get(channel)
            .cloned()
            .unwrap_or_default())
    }

    async fn presence_stats(&self, channel: &str) -> Result<(u32, u32), EngineError> {
        let channels = self.channels.lock();
        let Some(entries) = channels.get(channel) else {
            return Ok((0, 0));
        };
        let users: std::collections::HashSet<&str> =
            entries.values().map(|i| i.user.as_str()).collect();
        Ok((entries.len() as u32, users.len() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(String, u64, String)>>);
    impl BrokerEvents for Collect {
        fn publication(&self, channel: &str, msg: Arc<PubMsg>) {
            self.0
                .lock()
                .push((channel.to_owned(), msg.offset(), msg.epoch.clone()));
        }
        fn join(&self, _: &str, _: ClientInfo) {}
        fn leave(&self, _: &str, _: ClientInfo) {}
    }

    fn opts(size: u32, ttl: u64) -> PublishOptions {
        PublishOptions {
            history_size: size,
            history_ttl: Duration::from_secs(ttl),
            history_meta_ttl: Duration::from_secs(3600),
            idempotency_key: None,
        }
    }

    fn publication(n: u8) -> Publication {
        Publication {
            data: Bytes::from(format!("{{\"n\":{n}}}")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn offsets_are_contiguous_and_history_is_capped_by_size() {
        let events = Arc::new(Collect::default());
        let broker = MemoryBroker::new(events.clone());
        for n in 1..=5 {
            let pos = broker
                .publish("c", publication(n), &opts(3, 60))
                .await
                .unwrap();
            assert_eq!(pos.offset, n as u64);
        }
        let page = broker
            .history(
                "c",
                HistoryFilter {
                    limit: -1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page.publications
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(page.top.offset, 5);
        assert_eq!(events.0.lock().len(), 5);
    }

    #[tokio::test]
    async fn history_reads_forward_and_reverse_from_a_position() {
        let broker = MemoryBroker::new(Arc::new(Collect::default()));
        let mut epoch = String::new();
        for n in 1..=6 {
            epoch = broker
                .publish("c", publication(n), &opts(10, 60))
                .await
                .unwrap()
                .epoch;
        }
        let since = Some(StreamPosition {
            offset: 2,
            epoch: epoch.clone(),
        });
        let fwd = broker
            .history(
                "c",
                HistoryFilter {
                    since: since.clone(),
                    limit: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            fwd.publications
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            vec![3, 4]
        );
        let rev = broker
            .history(
                "c",
                HistoryFilter {
                    since: Some(StreamPosition {
                        offset: 5,
                        epoch: epoch.clone(),
                    }),
                    limit: -1,
                    reverse: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            rev.publications
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            vec![4, 3, 2, 1]
        );
        let wrong = broker
            .history(
                "c",
                HistoryFilter {
                    since: Some(StreamPosition {
                        offset: 1,
                        epoch: "other".into(),
                    }),
                    limit: 1,
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(wrong, Err(EngineError::UnrecoverablePosition)));
    }

    #[tokio::test(start_paused = true)]
    async fn history_expires_after_its_ttl_but_the_position_survives() {
        let broker = MemoryBroker::new(Arc::new(Collect::default()));
        broker
            .publish("c", publication(1), &opts(10, 5))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        let page = broker
            .history(
                "c",
                HistoryFilter {
                    limit: -1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(page.publications.is_empty());
        assert_eq!(page.top.offset, 1);
        let pos = broker
            .publish("c", publication(2), &opts(10, 5))
            .await
            .unwrap();
        assert_eq!(pos.offset, 2);
    }

    #[tokio::test]
    async fn idempotent_publishes_are_stored_once() {
        let events = Arc::new(Collect::default());
        let broker = MemoryBroker::new(events.clone());
        let mut o = opts(10, 60);
        o.idempotency_key = Some("k1".into());
        let a = broker.publish("c", publication(1), &o).await.unwrap();
        let b = broker.publish("c", publication(1), &o).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(events.0.lock().len(), 1);
    }

    #[tokio::test]
    async fn presence_counts_clients_and_distinct_users() {
        let p = MemoryPresence::default();
        for (client, user) in [("a", "u1"), ("b", "u1"), ("c", "u2")] {
            let info = ClientInfo {
                user: user.into(),
                client: client.into(),
                ..Default::default()
            };
            p.add_presence("ch", info).await.unwrap();
        }
        assert_eq!(p.presence_stats("ch").await.unwrap(), (3, 2));
        p.remove_presence("ch", "a", "u1").await.unwrap();
        assert_eq!(p.presence_stats("ch").await.unwrap(), (2, 2));
        assert_eq!(p.presence("ch").await.unwrap().len(), 2);
    }
}
