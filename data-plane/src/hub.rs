//! The hub: which local connections are subscribed to which channel, and fan-out. Each
//! publication is encoded at most once per protocol and the same `Bytes` go to every
//! subscriber's outbox. The index is sharded by channel; no lock is held across an await.
//!
//! Subscribers with a tags filter ([`crate::filter`]) share one [`FilterSlot`] per distinct
//! filter of their channel: a publication is checked once per slot, then every subscriber reads
//! its slot's verdict. Channels without filtered subscribers skip all of it. A positioned
//! subscriber's position still advances over the publications its filter keeps from it, so
//! stream continuity is checked as without a filter.
//!
//! A publication that excludes its publisher ([`crate::exclusion`]) skips the subscribers it
//! names the same way: not delivered, position advanced. So does a publication (or join/leave)
//! a JSON connection cannot carry (binary data from a Protobuf client): unlike Centrifugo,
//! which closes such a connection with 3506, the hub never ends a connection because of
//! someone else's payload; the skip is counted in `json_unwritable_dropped_total`.
//!
//! Subscribers that negotiated Fossil delta (`delta: "fossil"`) get their own frames (see
//! [`crate::publication`]), also built once per publication and protocol, and only when one of
//! them needs it: the delta
//! against the previous publication of the stream when the engine supplied it and the
//! subscriber's last delivered publication is that one, else the whole publication (in JSON
//! with `data` as a JSON string, as Centrifugo sends it to delta subscribers).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::budgets::{BudgetError, Budgets, Holder};
use crate::centrifugo_metrics::{FanOut, Frame};
use crate::client::{ByClientId, ClientHandle, Control};
use crate::engine::BrokerEvents;
use crate::exclusion::Exclusion;
use crate::filter::TagsFilter;
use crate::lent_write::{InFlight, Lends, CHANNEL_GAP_MS};
use crate::metrics::Metrics;
use crate::protocol::{
    encode_reply, ClientInfo, Join, Leave, ProtocolKind, Push, Reply, StreamPosition,
};
use crate::publication::PubMsg;

const SHARDS: usize = 64;

/// How a subscription receives publications.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubFlags {
    /// Deliver join/leave pushes.
    pub push_join_leave: bool,
    /// Check stream continuity and ask the client to recover on a gap.
    pub positioned: bool,
    /// The subscriber negotiated Fossil delta.
    pub delta: bool,
}

/// One distinct tags filter of a channel, shared by its local subscribers that use it.
#[derive(Debug)]
struct FilterSlot {
    filter: TagsFilter,
    /// The verdict on the publication being fanned out: written once per publication, read by
    /// each subscriber of the slot, all under the channel's shard lock.
    matched: AtomicBool,
}

#[derive(Debug)]
struct SubEntry {
    client: Arc<ClientHandle>,
    flags: SubFlags,
    /// The subscriber's tags filter, if it has one.
    filter: Option<Arc<FilterSlot>>,
    last_offset: u64,
    epoch: String,
    /// Publications that arrived while the subscribe reply was being prepared.
    pending: Option<Vec<Arc<PubMsg>>>,
    /// Delta subscribers: the offset and epoch of the last publication delivered to them
    /// since they subscribed (0: none yet), the base the next delta must be against.
    delta_base: u64,
    delta_epoch: String,
}

#[derive(Debug)]
struct ChannelSubs {
    subs: ByClientId<SubEntry>,
    /// Distinct tags filters of the subscribers, by normal-form key, with their user count.
    filters: HashMap<Box<[u8]>, (Arc<FilterSlot>, usize)>,
    /// Whether the engine delivers this channel's publications to this node yet: the first
    /// local subscriber subscribes in the engine, later ones wait for it here.
    engine: watch::Sender<EngineSubscription>,
    /// When the channel's last publication was fanned out here ([`crate::clock::millis`]).
    last_publication: Option<u32>,
}

impl Default for ChannelSubs {
    fn default() -> Self {
        Self {
            last_publication: None,
            subs: ByClientId::default(),
            filters: HashMap::new(),
            engine: watch::Sender::new(EngineSubscription::Pending),
        }
    }
}

/// The engine subscription of a channel with local subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineSubscription {
    /// The first subscriber is subscribing in the engine.
    Pending,
    /// Publications flow to this node.
    Active,
    /// The engine subscription failed; subscribers waiting for it fail too.
    Failed,
}

/// How a new subscriber joined a channel (see [`Hub::add_pending`]).
#[derive(Debug)]
pub enum Joined {
    /// The first local subscriber: it subscribes in the engine and reports the outcome with
    /// [`Hub::engine_subscribed`].
    First,
    /// Another subscriber is subscribing in the engine; wait for the outcome.
    Wait(watch::Receiver<EngineSubscription>),
    /// The engine subscription is already active.
    Active,
}

/// Channel → local subscribers.
pub struct Hub {
    shards: Box<[Mutex<HashMap<String, ChannelSubs>>]>,
    hasher: std::collections::hash_map::RandomState,
    metrics: Arc<Metrics>,
    /// A channel with local subscribers exists for the channel budget: held by its first
    /// subscriber, released with its last, under the channel's shard lock.
    budgets: Arc<Budgets>,
    /// Whether fan-out writes to idle WebSocket connections itself ([`crate::lent_write`]);
    /// `ROTOR_LENT_WRITES=off` turns it off (to compare).
    lent_writes: bool,
    lent_in_flight: Arc<InFlight>,
}

impl Hub {
    /// The metrics the hub counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>, budgets: Arc<Budgets>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            metrics,
            budgets,
            lent_writes: std::env::var_os("ROTOR_LENT_WRITES").is_none_or(|v| v != "off"),
            lent_in_flight: Arc::default(),
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<HashMap<String, ChannelSubs>> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Adds a subscriber in the pending state: publications are held back until
    /// [`Hub::activate`]. With `filter` it receives only publications whose tags pass. The
    /// first local subscriber of a channel that does not exist yet may be refused by the
    /// channel budget.
    pub fn add_pending(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        flags: SubFlags,
        filter: Option<TagsFilter>,
    ) -> Result<Joined, BudgetError> {
        let mut shard = self.shard(channel).lock();
        // One lookup; the channel's name is copied only for its first subscriber, whom the
        // channel budget may refuse before anything is added.
        let (subs, joined) = match shard.get_mut(channel) {
            Some(subs) => {
                let joined = match *subs.engine.borrow() {
                    EngineSubscription::Active => Joined::Active,
                    _ => Joined::Wait(subs.engine.subscribe()),
                };
                (subs, joined)
            }
            None => {
                self.budgets.hold_channel(channel, Holder::Subscribers)?;
                (shard.entry(channel.to_owned()).or_default(), Joined::First)
            }
        };
        let filter = filter.map(|filter| {
            let (slot, users) = subs.filters.entry(filter.key().into()).or_insert_with(|| {
                let slot = FilterSlot {
                    filter,
                    matched: AtomicBool::new(false),
                };
                (Arc::new(slot), 0)
            });
            *users += 1;
            slot.clone()
        });
        let replaced = subs.subs.insert(
            client.id.clone(),
            SubEntry {
                client: client.clone(),
                flags,
                filter,
                last_offset: 0,
                epoch: String::new(),
                pending: Some(Vec::new()),
                delta_base: 0,
                delta_epoch: String::new(),
            },
        );
        if let Some(old) = replaced {
            release_filter(subs, &old);
        }
        Ok(joined)
    }

    /// The first subscriber's engine subscription of `channel` succeeded or failed; wakes
    /// the subscribers waiting for it.
    pub fn engine_subscribed(&self, channel: &str, ok: bool) {
        let shard = self.shard(channel).lock();
        if let Some(subs) = shard.get(channel) {
            subs.engine.send_replace(if ok {
                EngineSubscription::Active
            } else {
                EngineSubscription::Failed
            });
        }
    }

    /// Ends the pending state: queues `reply` (the subscribe reply or push, already encoded for
    /// this client; `None` when it went out earlier), then the held-back publications newer than `position`, atomically with respect
    /// to fan-out, so the reply precedes every publication and none is lost or repeated.
    /// Returns false if the subscriber is gone (the connection closed meanwhile).
    pub fn activate(
        &self,
        channel: &str,
        client_id: &str,
        position: Option<&StreamPosition>,
        reply: Option<Bytes>,
    ) -> bool {
        let mut shard = self.shard(channel).lock();
        let Some(entry) = shard
            .get_mut(channel)
            .and_then(|c| c.subs.get_mut(client_id))
        else {
            return false;
        };
        if let Some(reply) = reply {
            if !entry.client.outbox.push_frame(reply) {
                return false;
            }
        }
        if let Some(pos) = position {
            entry.last_offset = pos.offset;
            entry.epoch = pos.epoch.clone();
        }
        let pending = entry.pending.take().unwrap_or_default();
        let mut delivered = 0;
        let mut fan_out = FanOut::default();
        // Catch-up publications follow the reply through the queue, in order.
        let mut lends = Lends::off();
        for msg in pending {
            let pass = entry
                .filter
                .as_ref()
                .is_none_or(|slot| slot.filter.matches(&msg.publication.tags));
            let verdict = Verdict::of(pass, Exclusion::of(&msg.publication), &entry.client);
            delivered += u64::from(deliver(
                entry,
                &msg,
                verdict,
                &self.metrics,
                &mut fan_out,
                &mut lends,
            ));
        }
        self.metrics
            .namespaces
            .delivered(crate::metrics::namespace_of(channel), delivered);
        self.metrics
            .centrifugo
            .sent_fan_out(Frame::PushPublication, &fan_out);
        true
    }

    /// Removes a subscriber. Returns true when the channel has no local subscribers left.
    pub fn remove(&self, channel: &str, client_id: &str) -> bool {
        let mut shard = self.shard(channel).lock();
        let Some(subs) = shard.get_mut(channel) else {
            return false;
        };
        let Some(entry) = subs.subs.remove(client_id) else {
            return false;
        };
        release_filter(subs, &entry);
        if subs.subs.is_empty() {
            shard.remove(channel);
            self.budgets.release_channel(channel, Holder::Subscribers);
            return true;
        }
        false
    }

    /// Local subscribers of one channel.
    pub fn num_subscribers(&self, channel: &str) -> usize {
        self.shard(channel)
            .lock()
            .get(channel)
            .map_or(0, |c| c.subs.len())
    }

    /// Every channel with at least one local subscriber, with its subscriber count.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            out.extend(
                shard
                    .iter()
                    .map(|(name, subs)| (name.clone(), subs.subs.len())),
            );
        }
        out
    }

    /// Number of channels and of subscriptions on this node.
    pub fn counts(&self) -> (usize, usize) {
        let mut channels = 0;
        let mut subs = 0;
        for shard in self.shards.iter() {
            let shard = shard.lock();
            channels += shard.len();
            subs += shard.values().map(|c| c.subs.len()).sum::<usize>();
        }
        (channels, subs)
    }

    fn broadcast_join_leave(&self, channel: &str, push: Push, kind: Frame) {
        let shard = self.shard(channel).lock();
        let Some(subs) = shard.get(channel) else {
            return;
        };
        let reply = Reply {
            push: Some(push),
            ..Default::default()
        };
        let mut json: Option<Option<Bytes>> = None;
        let mut protobuf: Option<Option<Bytes>> = None;
        let mut delivered = 0;
        let mut fan_out = FanOut::default();
        for entry in subs.subs.values() {
            if !entry.flags.push_join_leave || entry.pending.is_some() {
                continue;
            }
            let kind = entry.client.protocol;
            let slot = match kind {
                ProtocolKind::Json => &mut json,
                ProtocolKind::Protobuf => &mut protobuf,
            };
            let frame = slot.get_or_insert_with(|| encode_reply(kind, &reply).ok());
            match frame {
                Some(frame) => {
                    if entry.client.outbox.push_frame(frame.clone()) {
                        self.metrics.messages_delivered.inc();
                        fan_out.add(entry.client.transport, frame.len());
                        delivered += 1;
                    }
                }
                // Another client's info JSON cannot carry: this connection goes without it.
                None => {
                    self.metrics.json_unwritable_dropped.inc();
                    tracing::debug!(client = %entry.client.id, channel, "join/leave JSON cannot carry skipped");
                }
            }
        }
        // Counted in the channel's namespace too, so the namespaces' deliveries add up to the
        // project's.
        self.metrics
            .namespaces
            .delivered(crate::metrics::namespace_of(channel), delivered);
        self.metrics.centrifugo.sent_fan_out(kind, &fan_out);
    }
}

/// Forgets a removed subscriber's use of its filter slot (the slot goes with its last user).
fn release_filter(subs: &mut ChannelSubs, entry: &SubEntry) {
    let Some(slot) = &entry.filter else { return };
    let key = slot.filter.key();
    if let Some((_, users)) = subs.filters.get_mut(key) {
        *users -= 1;
        if *users == 0 {
            subs.filters.remove(key);
        }
    }
}

/// Whether one subscriber gets one publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Deliver,
    /// Its tags filter keeps the publication from it.
    Filtered,
    /// It is the publisher the publication excludes.
    Excluded,
}

impl Verdict {
    fn of(filter_pass: bool, exclusion: Option<Exclusion<'_>>, client: &ClientHandle) -> Self {
        if !filter_pass {
            Verdict::Filtered
        } else if exclusion.is_some_and(|e| client.is_excluded(e)) {
            Verdict::Excluded
        } else {
            Verdict::Deliver
        }
    }
}

/// Delivers one publication to one active subscriber, enforcing stream continuity for
/// positioned subscriptions; a subscriber that does not get it by `verdict` still advances its
/// position. Returns whether it was queued.
fn deliver(
    entry: &mut SubEntry,
    msg: &Arc<PubMsg>,
    verdict: Verdict,
    metrics: &Metrics,
    fan_out: &mut FanOut,
    lends: &mut Lends,
) -> bool {
    let offset = msg.offset();
    if entry.flags.positioned && offset > 0 {
        if !entry.epoch.is_empty() && entry.epoch != msg.epoch {
            entry
                .client
                .outbox
                .push_control(Control::InsufficientState {
                    channel: msg.channel.clone(),
                });
            return false;
        }
        if offset <= entry.last_offset {
            return false; // already delivered (recovery overlap)
        }
        if offset > entry.last_offset + 1 {
            entry
                .client
                .outbox
                .push_control(Control::InsufficientState {
                    channel: msg.channel.clone(),
                });
            return false;
        }
        entry.last_offset = offset;
        if entry.epoch.is_empty() {
            entry.epoch = msg.epoch.clone();
        }
    } else if offset > 0 && offset <= entry.last_offset && entry.epoch == msg.epoch {
        return false; // part of what the subscribe reply already carried
    }
    match verdict {
        Verdict::Deliver => {}
        Verdict::Filtered => {
            metrics.tags_filter_dropped.inc();
            return false;
        }
        Verdict::Excluded => {
            metrics.publisher_excluded.inc();
            return false;
        }
    }
    let frame = if entry.flags.delta {
        // The first publication after subscribing, and any after one this subscriber did not
        // get, goes whole: the client has no base for a delta.
        let base_ok =
            offset > 1 && entry.delta_base == offset - 1 && entry.delta_epoch == msg.epoch;
        entry.delta_base = offset;
        if entry.delta_epoch != msg.epoch {
            entry.delta_epoch.clone_from(&msg.epoch);
        }
        msg.delta_frame(entry.client.protocol, base_ok)
    } else {
        msg.frame(entry.client.protocol)
    };
    match frame {
        Some(frame) => {
            let len = frame.len();
            let queued = lends.offer(&entry.client, frame);
            if queued {
                metrics.messages_delivered.inc();
                fan_out.add(entry.client.transport, len);
            }
            queued
        }
        // Someone else's payload JSON cannot carry (binary from a Protobuf publisher): this
        // connection goes without it, its position advanced as for a filtered publication.
        None => {
            metrics.json_unwritable_dropped.inc();
            tracing::debug!(
                client = %entry.client.id,
                channel = %msg.channel,
                offset,
                "publication JSON cannot carry skipped"
            );
            false
        }
    }
}

impl BrokerEvents for Hub {
    fn publication(&self, channel: &str, msg: Arc<PubMsg>) {
        let mut shard = self.shard(channel).lock();
        let Some(subs) = shard.get_mut(channel) else {
            return;
        };
        // Each distinct filter is checked once; its subscribers read the verdict below.
        for (slot, _) in subs.filters.values() {
            let matched = slot.filter.matches(&msg.publication.tags);
            slot.matched.store(matched, Ordering::Relaxed);
            self.metrics.tags_filter_evaluations.inc();
        }
        // The publisher it is not for, if any: checked per subscriber, like a filter verdict.
        let exclusion = Exclusion::of(&msg.publication);
        let mut delivered = 0;
        let mut fan_out = FanOut::default();
        let now_ms = crate::clock::millis();
        let quiet = subs
            .last_publication
            .is_none_or(|last| now_ms.wrapping_sub(last) >= CHANNEL_GAP_MS);
        subs.last_publication = Some(now_ms);
        let mut lends = Lends::new(self.lent_writes && quiet, &self.lent_in_flight, now_ms);
        for entry in subs.subs.values_mut() {
            match &mut entry.pending {
                Some(pending) => pending.push(msg.clone()),
                None => {
                    let pass = entry
                        .filter
                        .as_ref()
                        .is_none_or(|slot| slot.matched.load(Ordering::Relaxed));
                    let verdict = Verdict::of(pass, exclusion, &entry.client);
                    delivered += u64::from(deliver(
                        entry,
                        &msg,
                        verdict,
                        &self.metrics,
                        &mut fan_out,
                        &mut lends,
                    ));
                }
            }
        }
        drop(shard);
        lends.finish(&self.metrics, &self.lent_in_flight);
        self.metrics
            .namespaces
            .delivered(crate::metrics::namespace_of(channel), delivered);
        self.metrics
            .centrifugo
            .sent_fan_out(Frame::PushPublication, &fan_out);
    }

    fn lost_continuity(&self, channel: &str) {
        let shard = self.shard(channel).lock();
        let Some(subs) = shard.get(channel) else {
            return;
        };
        for entry in subs.subs.values() {
            if entry.flags.positioned {
                entry
                    .client
                    .outbox
                    .push_control(Control::InsufficientState {
                        channel: channel.to_owned(),
                    });
            }
        }
    }

    fn join(&self, channel: &str, info: ClientInfo) {
        self.broadcast_join_leave(
            channel,
            Push {
                channel: channel.to_owned(),
                join: Some(Join { info: Some(info) }),
                ..Default::default()
            },
            Frame::PushJoin,
        );
    }

    fn leave(&self, channel: &str, info: ClientInfo) {
        self.broadcast_join_leave(
            channel,
            Push {
                channel: channel.to_owned(),
                leave: Some(Leave { info: Some(info) }),
                ..Default::default()
            },
            Frame::PushLeave,
        );
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
