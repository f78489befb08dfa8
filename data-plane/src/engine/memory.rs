//! The memory engine: history streams and presence inside this process. Publishing into a
//! channel assigns its offset, appends to the stream and fans out under one per-shard lock, so
//! every subscriber sees one order and offsets are contiguous.
//!
//! Streams are budgeted ([`crate::budgets`]): each keeps the stored size of its publications,
//! trims its oldest ones to `rotor.max_channel_history_bytes` as it trims to `history_size`,
//! and, from its first publication, holds its channel for `rotor.max_channels` until its meta
//! expires; the bytes of every stream count against `rotor.max_history_bytes` and come back
//! when entries are trimmed, expire or are removed. A publish the budgets refuse is
//! [`EngineError::Budget`].
//!
//! Reads never hold the channel budget. Reading the position of a channel that has no stream
//! (a history call, a positioned or recovering subscribe) creates an *empty* stream so that
//! its epoch lasts until the first publication, which keeps that epoch: a positioned
//! subscriber of a new channel sees the first publication at offset 1 of the epoch it was
//! given, never an epoch change. An empty stream is not a channel for the budget; it lives
//! [`EMPTY_STREAM_TTL`] from its last read, and longer only while the channel has local
//! subscribers (whose channel the hub holds in the budget), so the sweep drops the ones
//! nobody watches. Empty streams of channels nobody subscribes to here are at most
//! `rotor.max_channels` (or [`MAX_UNWATCHED_EMPTY`] when that is unlimited); past that, a
//! read of such a channel answers offset 0 in a fresh epoch without keeping anything.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::sweep_clock::SweepClock;
use super::{
    new_epoch, Broker, BrokerEvents, EngineError, HistoryFilter, HistoryPage, Presence,
    PublishOptions,
};
use crate::budgets::{stored_size, BudgetError, Budgets, Holder};
use crate::protocol::{ClientInfo, Publication, StreamPosition};
use crate::publication::PubMsg;

const SHARDS: usize = 64;
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);
/// How long a stream without publications outlives its last read when the channel has no
/// local subscriber.
pub const EMPTY_STREAM_TTL: Duration = Duration::from_secs(60);
/// Most empty streams of channels without local subscribers when `rotor.max_channels` is
/// unlimited.
pub const MAX_UNWATCHED_EMPTY: u64 = 100_000;

#[derive(Debug)]
struct Stream {
    epoch: String,
    top: u64,
    pubs: VecDeque<Publication>,
    /// [`stored_size`] of `pubs`, all counted in the history byte budget.
    bytes: u64,
    data_expires: Instant,
    meta_expires: Instant,
    /// The last accepted publication version and its epoch (see [`PublishOptions::version`]);
    /// reset with the stream when its meta expires.
    version: u64,
    version_epoch: String,
    /// Whether the stream holds its channel in the budget ([`Holder::Stream`]): from its first
    /// publication on. A stream that does not is empty and short-lived (see the module doc).
    held: bool,
}

impl Stream {
    fn new(now: Instant, meta_ttl: Duration) -> Self {
        Self {
            held: false,
            epoch: new_epoch(),
            top: 0,
            pubs: VecDeque::new(),
            bytes: 0,
            data_expires: now,
            meta_expires: now + meta_ttl,
            version: 0,
            version_epoch: String::new(),
        }
    }

    /// Drops expired data (its bytes go back to the budget); reports whether the whole
    /// stream (meta too) has expired.
    fn expire(&mut self, now: Instant, budgets: &Budgets) -> bool {
        if now >= self.data_expires {
            self.clear(budgets);
        }
        now >= self.meta_expires
    }

    /// Drops every publication and frees their memory (the position stays).
    fn clear(&mut self, budgets: &Budgets) {
        if !self.pubs.is_empty() {
            self.pubs = VecDeque::new();
        }
        budgets.release_history(std::mem::take(&mut self.bytes));
    }

    /// How many of the oldest publications an append of `size` bytes pushes out, to keep at
    /// most `max_len` of them and (with `cap` > 0) at most `cap` bytes, and their bytes.
    fn trim_plan(&self, size: u64, max_len: usize, cap: u64) -> (usize, u64) {
        crate::budgets::trim_plan(
            self.pubs.iter().map(stored_size),
            self.pubs.len(),
            self.bytes,
            size,
            max_len,
            cap,
        )
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
    budgets: Arc<Budgets>,
    /// When the last sweep ran: a publish or read that a full budget may refuse sweeps first,
    /// at most once per [`FULL_SWEEP_EVERY`], so expired history does not hold space until
    /// the periodic sweep.
    swept: SweepClock,
    /// Streams without publications, which hold no channel in the budget.
    empty: AtomicU64,
}

/// Least time between two sweeps a full budget triggers.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

impl MemoryBroker {
    /// A broker delivering to `events` (the hub), its history held against `budgets`.
    pub fn new(events: Arc<dyn BrokerEvents>, budgets: Arc<Budgets>) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(StreamShard::default()))
                .collect(),
            hasher: Default::default(),
            events,
            budgets,
            swept: SweepClock::default(),
            empty: AtomicU64::new(0),
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<StreamShard> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Drops expired streams and idempotency records; run periodically to bound memory.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.swept.mark();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.streams.retain(|channel, s| {
                if !self.expire(channel, s, now) {
                    return true;
                }
                self.drop_stream(channel, s);
                false
            });
            shard
                .idempotency
                .retain(|_, (_, at)| now < *at + IDEMPOTENCY_TTL);
        }
    }

    /// Sweeps unless a sweep ran within [`FULL_SWEEP_EVERY`] (or one is running).
    fn sweep_if_due(&self) {
        if self.swept.claim(FULL_SWEEP_EVERY) {
            self.sweep();
        }
    }

    /// Whether `stream` has expired as a whole (its expired data is dropped either way). An
    /// empty stream whose channel still has local subscribers lives on, its epoch with it.
    fn expire(&self, channel: &str, stream: &mut Stream, now: Instant) -> bool {
        if !stream.expire(now, &self.budgets) {
            return false;
        }
        if !stream.held && self.budgets.has_subscribers(channel) {
            stream.meta_expires = now + EMPTY_STREAM_TTL;
            return false;
        }
        true
    }

    /// Gives back what a stream that is being removed holds.
    fn drop_stream(&self, channel: &str, stream: &mut Stream) {
        stream.clear(&self.budgets);
        if stream.held {
            self.budgets.release_channel(channel, Holder::Stream);
        } else {
            self.empty.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A new empty stream for `channel`, counted among the empty ones.
    fn new_empty(&self, now: Instant, meta_ttl: Duration) -> Stream {
        self.empty.fetch_add(1, Ordering::Relaxed);
        Stream::new(now, meta_ttl.min(EMPTY_STREAM_TTL))
    }

    /// Whether a read may keep one more empty stream for `channel`: always when the channel
    /// has local subscribers (the hub holds it in the channel budget), else within the cap on
    /// unwatched empty streams.
    fn may_keep_empty(&self, channel: &str) -> bool {
        if self.budgets.has_subscribers(channel) {
            return true;
        }
        let cap = match self.budgets.channel_limit() {
            0 => MAX_UNWATCHED_EMPTY,
            n => n,
        };
        self.empty.load(Ordering::Relaxed) < cap
    }

    /// Makes the stream of `channel` hold its channel in the budget (a publication is about
    /// to land in it).
    fn hold(&self, channel: &str, stream: &mut Stream) -> Result<(), BudgetError> {
        if !stream.held {
            self.budgets.hold_channel(channel, Holder::Stream)?;
            stream.held = true;
            self.empty.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Appends to the channel's stream and fans out, under the shard lock.
    fn append(
        &self,
        channel: &str,
        mut publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, BudgetError> {
        let now = Instant::now();
        let size = stored_size(&publication);
        self.budgets.check_channel_history(size)?;
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
        let (stream, created) = match shard.streams.entry(channel.to_owned()) {
            Entry::Occupied(e) => {
                let stream = e.into_mut();
                if self.expire(channel, stream, now) {
                    self.drop_stream(channel, stream);
                    *stream = self.new_empty(now, meta_ttl);
                }
                (stream, false)
            }
            Entry::Vacant(e) => (e.insert(self.new_empty(now, meta_ttl)), true),
        };
        if opts.is_stale(stream.version, &stream.version_epoch) {
            // An older version: dropped, and the publisher learns the current top.
            return Ok(stream.position());
        }
        let cap = self.budgets.channel_history_cap();
        let (trim, freed) = stream.trim_plan(size, opts.history_size as usize, cap);
        // The first publication makes the stream a channel for the budget.
        let was_held = stream.held;
        if let Err(e) = self.hold(channel, stream) {
            if created {
                shard.streams.remove(channel);
                self.empty.fetch_sub(1, Ordering::Relaxed);
            }
            return Err(e);
        }
        if let Err(e) = self.budgets.reserve_history(size, freed) {
            if !was_held {
                // Back to an empty stream, which the sweep drops in time.
                self.budgets.release_channel(channel, Holder::Stream);
                stream.held = false;
                self.empty.fetch_add(1, Ordering::Relaxed);
            }
            return Err(e);
        }
        if opts.version > 0 {
            stream.version = opts.version;
            stream.version_epoch.clone_from(&opts.version_epoch);
        }
        // The previous publication, for delta subscribers: only the stream's top itself.
        let prev = stream
            .pubs
            .back()
            .filter(|p| opts.delta && p.offset == stream.top && stream.top > 0)
            .map(|p| p.data.clone());
        stream.pubs.drain(..trim);
        stream.bytes = stream.bytes + size - freed;
        stream.top += 1;
        publication.offset = stream.top;
        stream.pubs.push_back(publication.clone());
        stream.data_expires = now + opts.history_ttl;
        stream.meta_expires = now + meta_ttl;
        let position = stream.position();
        let msg = PubMsg::with_prev(channel, publication, position.epoch.clone(), prev);
        // Fan out while holding the stream lock: offsets reach subscribers in order.
        self.events.publication(channel, msg);
        if let Some(key) = &opts.idempotency_key {
            shard
                .idempotency
                .insert((channel.to_owned(), key.clone()), (position.clone(), now));
        }
        Ok(position)
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        if !opts.uses_history() {
            let msg = PubMsg::new(channel, publication, String::new());
            self.events.publication(channel, msg);
            return Ok(StreamPosition::default());
        }
        // Expired history may hold what this publication needs: sweep it out first.
        if self.budgets.history_full(stored_size(&publication)) || self.budgets.channels_full() {
            self.sweep_if_due();
        }
        Ok(self.append(channel, publication, opts)?)
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
        if let Some(stream) = shard.streams.get_mut(channel) {
            if self.expire(channel, stream, now) {
                self.drop_stream(channel, stream);
                shard.streams.remove(channel);
            }
        }
        // Reading a channel that has no stream keeps an empty one (its epoch must last until
        // the first publication), which holds no channel in the budget; past the cap on
        // empty streams nothing is kept (see the module doc).
        if !shard.streams.contains_key(channel) {
            if !self.may_keep_empty(channel) {
                return Ok(HistoryPage {
                    publications: Vec::new(),
                    top: StreamPosition {
                        offset: 0,
                        epoch: new_epoch(),
                    },
                });
            }
            let stream = self.new_empty(now, filter.meta_ttl);
            shard.streams.insert(channel.to_owned(), stream);
        }
        let Some(stream) = shard.streams.get_mut(channel) else {
            return Err(BudgetError::Channels.into());
        };
        if !filter.meta_ttl.is_zero() {
            let ttl = if stream.held {
                filter.meta_ttl
            } else {
                filter.meta_ttl.min(EMPTY_STREAM_TTL)
            };
            stream.meta_expires = stream.meta_expires.max(now + ttl);
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
            stream.clear(&self.budgets);
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
    channels: Mutex<HashMap<String, ChannelPresence>>,
}

/// One channel's presence: its entries, and how many of them each user has, kept as entries
/// come and go so that `presence_stats` is O(1) however many subscribers the channel has.
#[derive(Default)]
struct ChannelPresence {
    clients: HashMap<String, ClientInfo>,
    users: HashMap<String, u32>,
}

impl ChannelPresence {
    fn count_in(&mut self, user: &str) {
        *self.users.entry(user.to_owned()).or_default() += 1;
    }

    fn count_out(&mut self, user: &str) {
        if let Some(n) = self.users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(user);
            }
        }
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn add_presence(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        let mut channels = self.channels.lock();
        let entry = channels.entry(channel.to_owned()).or_default();
        let user = info.user.clone();
        match entry.clients.insert(info.client.clone(), info) {
            Some(old) if old.user == user => {}
            Some(old) => {
                entry.count_out(&old.user);
                entry.count_in(&user);
            }
            None => entry.count_in(&user),
        }
        Ok(())
    }

    async fn remove_presence(
        &self,
        channel: &str,
        client_id: &str,
        _user: &str,
    ) -> Result<(), EngineError> {
        let mut channels = self.channels.lock();
        if let Some(entry) = channels.get_mut(channel) {
            if let Some(old) = entry.clients.remove(client_id) {
                entry.count_out(&old.user);
            }
            if entry.clients.is_empty() {
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
            .map(|e| e.clients.clone())
            .unwrap_or_default())
    }

    async fn presence_stats(&self, channel: &str) -> Result<(u32, u32), EngineError> {
        Ok(self
            .channels
            .lock()
            .get(channel)
            .map_or((0, 0), |e| (e.clients.len() as u32, e.users.len() as u32)))
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
