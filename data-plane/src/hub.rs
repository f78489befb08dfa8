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
//! Subscribers that negotiated Fossil delta (`delta: "fossil"`) get their own frames, also
//! built once per publication and protocol, and only when one of them needs it: the delta
//! against the previous publication of the stream when the engine supplied it and the
//! subscriber's last delivered publication is that one, else the whole publication (in JSON
//! with `data` as a JSON string, as Centrifugo sends it to delta subscribers).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::budgets::{BudgetError, Budgets, Holder};
use crate::centrifugo_metrics::{FanOut, Frame};
use crate::client::{ClientHandle, Control};
use crate::engine::BrokerEvents;
use crate::filter::TagsFilter;
use crate::metrics::Metrics;
use crate::protocol::{
    encode_reply, ClientInfo, Disconnect, Join, Leave, ProtocolKind, Publication, Push, Reply,
    StreamPosition,
};

const SHARDS: usize = 64;

/// A publication on its way to subscribers, with its encodings cached.
#[derive(Debug)]
pub struct PubMsg {
    pub channel: String,
    pub publication: Publication,
    /// The stream epoch the offset belongs to ("" without history).
    pub epoch: String,
    /// The data of the stream's previous publication (offset - 1), when the publisher asked
    /// for delta and the engine had it.
    prev: Option<Bytes>,
    json: OnceLock<Option<Bytes>>,
    protobuf: OnceLock<Bytes>,
    /// The Fossil delta from `prev` to this data, when it is smaller than the data.
    patch: OnceLock<Option<Bytes>>,
    /// JSON for delta subscribers: the whole publication with `data` as a JSON string.
    json_text: OnceLock<Option<Bytes>>,
    /// JSON for delta subscribers: the delta as a JSON string (`None`: no usable delta).
    json_patch: OnceLock<Option<Bytes>>,
    /// Protobuf for delta subscribers: the delta bytes (`None`: no usable delta).
    protobuf_patch: OnceLock<Option<Bytes>>,
}

impl PubMsg {
    /// Wraps a publication (offset already assigned) for fan-out.
    pub fn new(channel: impl Into<String>, publication: Publication, epoch: String) -> Arc<Self> {
        Self::with_prev(channel, publication, epoch, None)
    }

    /// The same, with the data of the stream's previous publication for delta subscribers
    /// (see [`PubMsg::delta_frame`]).
    pub fn with_prev(
        channel: impl Into<String>,
        publication: Publication,
        epoch: String,
        prev: Option<Bytes>,
    ) -> Arc<Self> {
        Arc::new(Self {
            channel: channel.into(),
            publication,
            epoch,
            prev,
            json: OnceLock::new(),
            protobuf: OnceLock::new(),
            patch: OnceLock::new(),
            json_text: OnceLock::new(),
            json_patch: OnceLock::new(),
            protobuf_patch: OnceLock::new(),
        })
    }

    /// The push frame for a subscriber that negotiated Fossil delta. With `base_ok` (the
    /// subscriber's last publication is this one's predecessor in the stream) it is the delta
    /// when there is one and it is smaller than the data; otherwise the whole publication —
    /// in JSON with `data` as a JSON string (Centrifugo's form for delta subscriptions), in
    /// Protobuf the same frame everyone gets. `None`: the payload cannot go over JSON.
    pub fn delta_frame(&self, kind: ProtocolKind, base_ok: bool) -> Option<Bytes> {
        if base_ok && self.prev.is_some() {
            let frame = match kind {
                ProtocolKind::Json => self.json_patch.get_or_init(|| {
                    let patch = self.patch()?;
                    // Inserted runs may split a UTF-8 character: such a delta cannot be a JSON
                    // string, and the whole publication goes instead.
                    let text = std::str::from_utf8(&patch).ok()?;
                    encode_push_with(kind, self, json_string(text)?, true)
                }),
                ProtocolKind::Protobuf => self
                    .protobuf_patch
                    .get_or_init(|| encode_push_with(kind, self, self.patch()?, true)),
            };
            if let Some(frame) = frame {
                return Some(frame.clone());
            }
        }
        match kind {
            ProtocolKind::Json => self
                .json_text
                .get_or_init(|| {
                    let text = std::str::from_utf8(&self.publication.data).ok()?;
                    encode_push_with(kind, self, json_string(text)?, false)
                })
                .clone(),
            ProtocolKind::Protobuf => self.frame(kind),
        }
    }

    fn patch(&self) -> Option<Bytes> {
        self.patch
            .get_or_init(|| {
                let prev = self.prev.as_ref()?;
                let data = &self.publication.data;
                let patch = crate::fossil::create(prev, data);
                (patch.len() < data.len()).then(|| Bytes::from(patch))
            })
            .clone()
    }

    /// The stream offset (0 without history).
    pub fn offset(&self) -> u64 {
        self.publication.offset
    }

    /// The push frame for `kind`, encoded on first use. `None`: the payload is binary and
    /// cannot go to a JSON connection.
    pub fn frame(&self, kind: ProtocolKind) -> Option<Bytes> {
        match kind {
            ProtocolKind::Json => self.json.get_or_init(|| encode_push(kind, self)).clone(),
            ProtocolKind::Protobuf => Some(
                self.protobuf
                    .get_or_init(|| encode_push(kind, self).unwrap_or_default())
                    .clone(),
            ),
        }
    }
}

fn encode_push(kind: ProtocolKind, msg: &PubMsg) -> Option<Bytes> {
    encode_push_with(kind, msg, msg.publication.data.clone(), false)
}

/// The push of `msg` with `data` in place of its data and the `delta` flag.
fn encode_push_with(kind: ProtocolKind, msg: &PubMsg, data: Bytes, delta: bool) -> Option<Bytes> {
    let reply = Reply {
        push: Some(Push {
            channel: msg.channel.clone(),
            r#pub: Some(Publication {
                data,
                delta,
                ..msg.publication.clone()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    encode_reply(kind, &reply).ok()
}

/// `text` as a JSON string literal: how a JSON connection with delta receives `data`.
pub fn json_string(text: &str) -> Option<Bytes> {
    serde_json::to_vec(text).ok().map(Bytes::from)
}

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
    subs: HashMap<Arc<str>, SubEntry>,
    /// Distinct tags filters of the subscribers, by normal-form key, with their user count.
    filters: HashMap<Box<[u8]>, (Arc<FilterSlot>, usize)>,
    /// Whether the engine delivers this channel's publications to this node yet: the first
    /// local subscriber subscribes in the engine, later ones wait for it here.
    engine: watch::Sender<EngineSubscription>,
}

impl Default for ChannelSubs {
    fn default() -> Self {
        Self {
            subs: HashMap::new(),
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
        let first = !shard.contains_key(channel);
        if first {
            self.budgets.hold_channel(channel, Holder::Subscribers)?;
        }
        let subs = shard.entry(channel.to_owned()).or_default();
        let joined = if first {
            Joined::First
        } else {
            match *subs.engine.borrow() {
                EngineSubscription::Active => Joined::Active,
                _ => Joined::Wait(subs.engine.subscribe()),
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
        for msg in pending {
            let pass = entry
                .filter
                .as_ref()
                .is_none_or(|slot| slot.filter.matches(&msg.publication.tags));
            delivered += u64::from(deliver(entry, &msg, pass, &self.metrics, &mut fan_out));
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
                None => entry
                    .client
                    .outbox
                    .close(Disconnect::INAPPROPRIATE_PROTOCOL),
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

/// Delivers one publication to one active subscriber, enforcing stream continuity for
/// positioned subscriptions; `pass` is false when the subscriber's tags filter keeps the
/// publication from it (its position still advances). Returns whether it was queued.
fn deliver(
    entry: &mut SubEntry,
    msg: &Arc<PubMsg>,
    pass: bool,
    metrics: &Metrics,
    fan_out: &mut FanOut,
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
    if !pass {
        metrics.tags_filter_dropped.inc();
        return false;
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
            let queued = entry.client.outbox.push_frame(frame);
            if queued {
                metrics.messages_delivered.inc();
                fan_out.add(entry.client.transport, len);
            }
            queued
        }
        None => {
            entry
                .client
                .outbox
                .close(Disconnect::INAPPROPRIATE_PROTOCOL);
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
        let mut delivered = 0;
        let mut fan_out = FanOut::default();
        for entry in subs.subs.values_mut() {
            match &mut entry.pending {
                Some(pending) => pending.push(msg.clone()),
                None => {
                    let pass = entry
                        .filter
                        .as_ref()
                        .is_none_or(|slot| slot.matched.load(Ordering::Relaxed));
                    delivered += u64::from(deliver(entry, &msg, pass, &self.metrics, &mut fan_out));
                }
            }
        }
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
mod tests {
    use super::*;
    use crate::protocol::ProtocolKind;

    fn client(id: &str) -> Arc<ClientHandle> {
        Arc::new(ClientHandle::new(
            Arc::from(id),
            ProtocolKind::Json,
            1 << 20,
        ))
    }

    #[tokio::test]
    async fn later_subscribers_wait_for_the_first_ones_engine_subscription() {
        let hub = Hub::new(Arc::new(Metrics::default()), Arc::default());
        let flags = SubFlags::default();
        assert!(matches!(
            hub.add_pending("c", &client("a"), flags, None).unwrap(),
            Joined::First
        ));
        let Joined::Wait(mut b) = hub.add_pending("c", &client("b"), flags, None).unwrap() else {
            panic!("the second subscriber waits while the engine subscribes");
        };
        assert_eq!(*b.borrow(), EngineSubscription::Pending);
        hub.engine_subscribed("c", true);
        let state = *b
            .wait_for(|s| *s != EngineSubscription::Pending)
            .await
            .unwrap();
        assert_eq!(state, EngineSubscription::Active);
        assert!(matches!(
            hub.add_pending("c", &client("c"), flags, None).unwrap(),
            Joined::Active
        ));
    }

    #[test]
    fn a_channel_is_held_from_its_first_subscriber_to_its_last() {
        let budgets = Arc::new(Budgets::default());
        budgets.set_limits(
            &rotor_tenant_config::TenantConfig::from_value(
                serde_json::json!({"rotor": {"max_channels": 1}}),
            )
            .unwrap()
            .config,
        );
        let hub = Hub::new(Arc::new(Metrics::default()), budgets.clone());
        let flags = SubFlags::default();
        hub.add_pending("c", &client("a"), flags, None).unwrap();
        hub.add_pending("c", &client("b"), flags, None).unwrap();
        assert!(matches!(
            hub.add_pending("d", &client("a"), flags, None),
            Err(BudgetError::Channels)
        ));
        assert!(!hub.remove("c", "a"));
        assert_eq!(budgets.channels(), 1);
        assert!(hub.remove("c", "b"));
        assert_eq!(budgets.channels(), 0);
        hub.add_pending("d", &client("a"), flags, None).unwrap();
    }

    #[tokio::test]
    async fn a_failed_engine_subscription_fails_the_waiting_subscribers() {
        let hub = Hub::new(Arc::new(Metrics::default()), Arc::default());
        let flags = SubFlags::default();
        assert!(matches!(
            hub.add_pending("c", &client("a"), flags, None).unwrap(),
            Joined::First
        ));
        let Joined::Wait(mut b) = hub.add_pending("c", &client("b"), flags, None).unwrap() else {
            panic!("waits");
        };
        hub.engine_subscribed("c", false);
        let state = *b
            .wait_for(|s| *s != EngineSubscription::Pending)
            .await
            .unwrap();
        assert_eq!(state, EngineSubscription::Failed);
        // Once every subscriber left, the next one subscribes in the engine again.
        hub.remove("c", "a");
        hub.remove("c", "b");
        assert!(matches!(
            hub.add_pending("c", &client("d"), flags, None).unwrap(),
            Joined::First
        ));
    }

    #[test]
    fn join_and_leave_pushes_count_in_their_namespace_as_in_the_project() {
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(metrics.clone(), Arc::default());
        let flags = SubFlags {
            push_join_leave: true,
            ..Default::default()
        };
        for id in ["a", "b"] {
            let _ = hub.add_pending("chat:r", &client(id), flags, None).unwrap();
            assert!(hub.activate("chat:r", id, None, None));
        }
        let info = ClientInfo {
            user: "u".into(),
            client: "b".into(),
            ..Default::default()
        };
        hub.join("chat:r", info.clone());
        hub.leave("chat:r", info);
        assert_eq!(metrics.messages_delivered.get(), 4);
        assert_eq!(metrics.namespaces.snapshot()["chat"].delivered, 4);
    }

    fn frames(c: &ClientHandle) -> (Vec<String>, usize) {
        let (items, _) = c.outbox.drain();
        let mut out = Vec::new();
        let mut controls = 0;
        for item in items {
            match item {
                crate::client::OutItem::Frame(f) => out.push(String::from_utf8_lossy(&f).into()),
                crate::client::OutItem::Control(_) => controls += 1,
            }
        }
        (out, controls)
    }

    #[test]
    fn delta_subscribers_get_whole_first_then_deltas_and_share_one_encoding() {
        let hub = Hub::new(Arc::new(Metrics::default()), Arc::default());
        let delta = SubFlags {
            delta: true,
            ..Default::default()
        };
        let (d1, d2, plain) = (client("d1"), client("d2"), client("plain"));
        let pb = Arc::new(ClientHandle::new(
            Arc::from("pb"),
            ProtocolKind::Protobuf,
            1 << 20,
        ));
        for (c, flags) in [
            (&d1, delta),
            (&d2, delta),
            (&plain, SubFlags::default()),
            (&pb, delta),
        ] {
            hub.add_pending("c", c, flags, None).unwrap();
            assert!(hub.activate("c", &c.id, None, None));
        }
        let doc = |n: u32| format!(r#"{{"n":{n},"padding":"{}"}}"#, "x".repeat(200));
        let mut sent = Vec::new();
        let mut prev: Option<Bytes> = None;
        for n in 1..=3u64 {
            let data = Bytes::from(doc(n as u32));
            let publication = Publication {
                data: data.clone(),
                offset: n,
                ..Default::default()
            };
            let msg = PubMsg::with_prev("c", publication, "e".into(), prev.take());
            hub.publication("c", msg.clone());
            sent.push(msg);
            prev = Some(data);
        }
        // One delta encoding per protocol, shared by every delta subscriber.
        let json_patch = sent[1].json_patch.get().cloned().flatten().unwrap();
        let (d1_frames, _) = frames(&d1);
        let (d2_frames, _) = frames(&d2);
        assert_eq!(d1_frames, d2_frames);
        assert_eq!(d1_frames[1].as_bytes(), &json_patch[..]);
        let pubs: Vec<serde_json::Value> = d1_frames
            .iter()
            .map(|f| serde_json::from_str::<serde_json::Value>(f).unwrap()["push"]["pub"].clone())
            .collect();
        // First whole, as a JSON string; then deltas that rebuild each document.
        assert_eq!(pubs[0]["delta"], serde_json::Value::Null);
        let mut base = pubs[0]["data"].as_str().unwrap().as_bytes().to_vec();
        assert_eq!(base, doc(1).as_bytes());
        for (i, p) in pubs.iter().enumerate().skip(1) {
            assert_eq!(p["delta"], true);
            let patch = p["data"].as_str().unwrap().as_bytes();
            base = crate::fossil::apply(&base, patch).unwrap();
            assert_eq!(base, doc(i as u32 + 1).as_bytes());
        }
        // The plain subscriber gets the usual frames, data as raw JSON.
        let (plain_frames, _) = frames(&plain);
        for (i, f) in plain_frames.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(f).unwrap();
            assert_eq!(v["push"]["pub"]["data"]["n"], i as u64 + 1);
        }
        // Protobuf: whole bytes, then raw delta bytes.
        use prost::Message as _;
        let (items, _) = pb.outbox.drain();
        let pb_pubs: Vec<Publication> = items
            .into_iter()
            .map(|item| match item {
                crate::client::OutItem::Frame(f) => Reply::decode_length_delimited(&f[..])
                    .unwrap()
                    .push
                    .unwrap()
                    .r#pub
                    .unwrap(),
                crate::client::OutItem::Control(_) => panic!("no control expected"),
            })
            .collect();
        assert!(!pb_pubs[0].delta);
        assert_eq!(pb_pubs[0].data, doc(1).as_bytes());
        let mut base = pb_pubs[0].data.to_vec();
        for (i, p) in pb_pubs.iter().enumerate().skip(1) {
            assert!(p.delta);
            base = crate::fossil::apply(&base, &p.data).unwrap();
            assert_eq!(base, doc(i as u32 + 1).as_bytes());
        }
    }

    #[test]
    fn a_delta_subscriber_that_missed_the_previous_publication_gets_the_next_whole() {
        let hub = Hub::new(Arc::new(Metrics::default()), Arc::default());
        let d = client("d");
        let flags = SubFlags {
            delta: true,
            ..Default::default()
        };
        hub.add_pending("c", &d, flags, None).unwrap();
        assert!(hub.activate("c", &d.id, None, None));
        let publish = |n: u64, prev: &str| {
            let publication = Publication {
                data: Bytes::from(format!(r#"{{"n":{n},"pad":"{}"}}"#, "y".repeat(100))),
                offset: n,
                ..Default::default()
            };
            let prev = Bytes::from(format!(r#"{{"n":{prev},"pad":"{}"}}"#, "y".repeat(100)));
            hub.publication(
                "c",
                PubMsg::with_prev("c", publication, "e".into(), Some(prev)),
            );
        };
        publish(4, "3"); // first after subscribing: whole
        publish(6, "5"); // offset 5 never arrived: whole
        publish(7, "6"); // delta
        let (f, _) = frames(&d);
        let delta: Vec<bool> = f
            .iter()
            .map(|f| {
                serde_json::from_str::<serde_json::Value>(f).unwrap()["push"]["pub"]["delta"]
                    == true
            })
            .collect();
        assert_eq!(delta, [false, false, true]);
    }

    #[test]
    fn each_distinct_filter_is_checked_once_and_positions_advance_past_filtered_publications() {
        use crate::protocol::FilterNode;
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(metrics.clone(), Arc::default());
        let eq = |v: &str| FilterNode {
            key: "t".into(),
            cmp: "eq".into(),
            val: v.into(),
            ..Default::default()
        };
        // Three subscribers share the `t == a` filter (one written as an `or` of itself), one
        // filters `t == b`, one has no filter.
        let or_a = FilterNode {
            op: "or".into(),
            nodes: vec![eq("a"), eq("a")],
            ..Default::default()
        };
        let filters = [Some(eq("a")), Some(eq("a")), Some(eq("b")), None];
        let positioned = SubFlags {
            positioned: true,
            ..Default::default()
        };
        let clients: Vec<_> = ["a1", "a2", "b", "all"]
            .iter()
            .map(|id| client(id))
            .collect();
        for (c, f) in clients.iter().zip(filters) {
            let f = f.map(|f| TagsFilter::compile(&f).unwrap());
            hub.add_pending("c", c, positioned, f).unwrap();
        }
        let or = client("a3");
        let or_filter = TagsFilter::compile(&or_a).unwrap();
        hub.add_pending("c", &or, positioned, Some(or_filter))
            .unwrap();
        let top = StreamPosition {
            offset: 0,
            epoch: "e".into(),
        };
        for c in clients.iter().chain([&or]) {
            assert!(hub.activate("c", &c.id, Some(&top), None));
        }
        for (offset, tag) in [(1, "a"), (2, "b"), (3, "a")] {
            let publication = Publication {
                data: bytes::Bytes::from(format!("{offset}")),
                offset,
                tags: [("t".to_owned(), tag.to_owned())].into(),
                ..Default::default()
            };
            hub.publication("c", PubMsg::new("c", publication, "e".into()));
        }
        // Two distinct filters, three publications.
        assert_eq!(metrics.tags_filter_evaluations.get(), 6);
        let offsets = |c: &ClientHandle| {
            let (frames, controls) = frames(c);
            assert_eq!(controls, 0, "no gap is reported for filtered publications");
            frames
                .iter()
                .map(|f| {
                    serde_json::from_str::<serde_json::Value>(f).unwrap()["push"]["pub"]["offset"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(offsets(&clients[0]), vec![1, 3]);
        assert_eq!(offsets(&clients[1]), vec![1, 3]);
        assert_eq!(offsets(&or), vec![1, 3]);
        assert_eq!(offsets(&clients[2]), vec![2]);
        assert_eq!(offsets(&clients[3]), vec![1, 2, 3]);
        assert_eq!(metrics.tags_filter_dropped.get(), 5);
        // The last user of a filter takes its slot along.
        for id in ["a1", "a2", "a3"] {
            hub.remove("c", id);
        }
        let shard = hub.shard("c").lock();
        assert_eq!(shard["c"].filters.len(), 1);
    }
}
