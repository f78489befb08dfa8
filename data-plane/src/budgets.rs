//! Application budgets: what one tenant's process may hold at once, below the kernel's limits
//! (rlimits) and the plan's rates ([`crate::limits`]). Each budget is a counter of what is held
//! now against a limit from the config's `rotor` section (`client.connection_limit` for
//! sockets), 0 meaning unlimited:
//!
//! - **history bytes** (`rotor.max_history_bytes`): bytes of publications the memory engine
//!   keeps in history, or this process wrote into Redis history (the Redis engine's
//!   [`crate::engine::redis::ledger`]), all channels together ([`stored_size`] says what one costs), and the
//!   per-channel cap `rotor.max_channel_history_bytes` the engine trims streams to;
//! - **channels** (`rotor.max_channels`): channels that exist, i.e. have a local subscriber
//!   (the hub holds them) or a live history stream with publications (the engine holds them;
//!   with Redis, the streams this process published into until their key expires; a stream
//!   only read, never published to, does not count);
//! - **presence entries** (`rotor.max_presence_entries`): subscriptions of this process to
//!   presence-enabled channels (with the memory engine, exactly its presence entries);
//! - **sockets** (`client.connection_limit`): client sockets of the connection endpoints, from
//!   the moment their request is routed there, whether their `connect` came yet or not.
//!
//! Checks are compare-and-swap loops on atomics, so racing callers cannot overshoot a limit;
//! the one map (which holder keeps a channel alive) is touched when a channel appears or goes,
//! never per message, under a short lock never held across an await. Limits live in atomics
//! too, set by [`crate::config::ConfigHandle`] whenever a config is applied, so a pushed plan
//! change binds the very next check. Everything already held stays: a lower limit only
//! refuses new growth. A refusal is a [`BudgetError`], counted in
//! `rotor_budget_refusals_total{budget}` and answered as Centrifugo error 106 (sockets: 503
//! before the upgrade) by the callers, through `From<BudgetError> for ClientError`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rotor_exposition::{Exposition, Kind};
use rotor_tenant_config::TenantConfig;

use crate::metrics::Metrics;
use crate::protocol::{ClientError, Publication};

const SHARDS: usize = 32;

/// Channel → [`Holder`] bits, for the channels of one shard.
type HolderShard = Mutex<HashMap<Box<str>, u8>>;

/// A budget that refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The tenant's history bytes are used up (`rotor.max_history_bytes`).
    #[error("history byte budget exhausted")]
    HistoryBytes,
    /// One publication is larger than the per-channel cap (`rotor.max_channel_history_bytes`).
    #[error("publication larger than the channel's history byte cap")]
    ChannelHistoryBytes,
    /// As many channels exist as the tenant may have (`rotor.max_channels`).
    #[error("channel budget exhausted")]
    Channels,
    /// As many presence entries exist as the tenant may hold (`rotor.max_presence_entries`).
    #[error("presence budget exhausted")]
    PresenceEntries,
    /// As many client sockets are open as `client.connection_limit` allows.
    #[error("connection limit reached")]
    Connections,
}

impl BudgetError {
    const ALL: [BudgetError; 5] = [
        BudgetError::HistoryBytes,
        BudgetError::ChannelHistoryBytes,
        BudgetError::Channels,
        BudgetError::PresenceEntries,
        BudgetError::Connections,
    ];

    /// The `budget` label of its metrics.
    pub fn label(self) -> &'static str {
        match self {
            BudgetError::HistoryBytes => "history_bytes",
            BudgetError::ChannelHistoryBytes => "channel_history_bytes",
            BudgetError::Channels => "channels",
            BudgetError::PresenceEntries => "presence_entries",
            BudgetError::Connections => "connections",
        }
    }
}

/// Centrifugo's 106 "limit exceeded" (not temporary: SDKs do not retry it blindly), with the
/// budget named in the message.
impl From<BudgetError> for ClientError {
    fn from(e: BudgetError) -> Self {
        let message = match e {
            BudgetError::HistoryBytes => "limit exceeded: history bytes",
            BudgetError::ChannelHistoryBytes => "limit exceeded: channel history bytes",
            BudgetError::Channels => "limit exceeded: channels",
            BudgetError::PresenceEntries => "limit exceeded: presence entries",
            BudgetError::Connections => "limit exceeded: connections",
        };
        ClientError {
            message: Cow::Borrowed(message),
            ..ClientError::LIMIT_EXCEEDED
        }
    }
}

/// What keeps a channel in existence (a channel exists while either does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Holder {
    /// It has local subscribers (the hub).
    Subscribers = 1,
    /// It has a history stream with publications: a memory-engine stream whose meta has not
    /// expired, or a Redis stream this process wrote whose key has not expired.
    Stream = 2,
}

/// The bytes a publication kept in history costs: the record itself plus every byte it
/// carries on the heap (data, channel name, tag keys and values, and the publisher's user,
/// client id, connection and channel info). Allocator slack and the stream's ring buffer are
/// not counted.
pub fn stored_size(p: &Publication) -> u64 {
    let mut n = std::mem::size_of::<Publication>() + p.data.len() + p.channel.len();
    n += p.tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if let Some(info) = &p.info {
        n += info.user.len() + info.client.len() + info.conn_info.len() + info.chan_info.len();
    }
    n as u64
}

/// How many of a stream's oldest entries an append of `size` bytes pushes out, and their
/// bytes: the stream holds entries of `sizes` (oldest first, `len` of them, `bytes` in all)
/// and keeps at most `max_len` and (with `cap` > 0) at most `cap` bytes. Both engines plan
/// their trims with it (the memory engine's streams, the Redis engine's ledger).
pub fn trim_plan(
    sizes: impl IntoIterator<Item = u64>,
    len: usize,
    bytes: u64,
    size: u64,
    max_len: usize,
    cap: u64,
) -> (usize, u64) {
    let (mut len, mut bytes) = (len + 1, bytes + size);
    let (mut n, mut freed) = (0, 0);
    for s in sizes {
        if len <= max_len && (cap == 0 || bytes <= cap) {
            break;
        }
        n += 1;
        freed += s;
        len -= 1;
        bytes -= s;
    }
    (n, freed)
}

/// Limits in force (0 = unlimited), replaced whenever a config is applied.
#[derive(Debug, Default)]
struct Limits {
    history_bytes: AtomicU64,
    channel_history_bytes: AtomicU64,
    channels: AtomicU64,
    presence_entries: AtomicU64,
    connections: AtomicU64,
}

/// The budgets of one process.
pub struct Budgets {
    limits: Limits,
    history_bytes: AtomicU64,
    channels: AtomicU64,
    presence_entries: AtomicU64,
    /// Channel → [`Holder`] bits, sharded by channel.
    holders: Box<[HolderShard]>,
    hasher: std::collections::hash_map::RandomState,
    /// Refusals by [`BudgetError`] (in `BudgetError::ALL` order).
    refusals: [AtomicU64; 5],
    /// Sockets are the `client_sockets` gauge (the open-file budget reads it too).
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("history_bytes", &self.history_bytes())
            .field("channels", &self.channels())
            .field("presence_entries", &self.presence_entries())
            .finish_non_exhaustive()
    }
}

impl Default for Budgets {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

/// Adds `n` to `counter` unless the result would pass `limit` (0 = unlimited).
fn try_add(counter: &AtomicU64, n: u64, limit: u64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            let next = cur.saturating_add(n);
            (limit == 0 || next <= limit).then_some(next)
        })
        .is_ok()
}

fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
        Some(cur.saturating_sub(n))
    });
}

impl Budgets {
    /// Budgets counting client sockets in `metrics.sockets`, all unlimited until
    /// [`Budgets::set_limits`].
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            limits: Limits::default(),
            history_bytes: AtomicU64::new(0),
            channels: AtomicU64::new(0),
            presence_entries: AtomicU64::new(0),
            holders: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            refusals: Default::default(),
            metrics,
        }
    }

    /// Takes the limits of `config` (on start and on every applied config).
    pub fn set_limits(&self, config: &TenantConfig) {
        let r = &config.rotor;
        let l = &self.limits;
        l.history_bytes
            .store(r.max_history_bytes, Ordering::Relaxed);
        l.channel_history_bytes
            .store(r.max_channel_history_bytes, Ordering::Relaxed);
        l.channels
            .store(u64::from(r.max_channels), Ordering::Relaxed);
        l.presence_entries
            .store(u64::from(r.max_presence_entries), Ordering::Relaxed);
        l.connections
            .store(u64::from(config.client.connection_limit), Ordering::Relaxed);
    }

    fn refuse(&self, e: BudgetError) -> BudgetError {
        self.refusals[e as usize].fetch_add(1, Ordering::Relaxed);
        e
    }

    /// Refusals so far of one budget.
    pub fn refusals(&self, budget: BudgetError) -> u64 {
        self.refusals[budget as usize].load(Ordering::Relaxed)
    }

    // --- history bytes -------------------------------------------------------------------

    /// The per-channel history cap in bytes (0 = none).
    pub fn channel_history_cap(&self) -> u64 {
        self.limits.channel_history_bytes.load(Ordering::Relaxed)
    }

    /// Refuses a publication of `size` bytes that cannot fit the per-channel cap even alone.
    pub fn check_channel_history(&self, size: u64) -> Result<(), BudgetError> {
        let cap = self.channel_history_cap();
        if cap > 0 && size > cap {
            return Err(self.refuse(BudgetError::ChannelHistoryBytes));
        }
        Ok(())
    }

    /// Accounts for a history append of `added` bytes that trims `freed` bytes of older
    /// entries with it. Refused only when it grows the total past the limit.
    pub fn reserve_history(&self, added: u64, freed: u64) -> Result<(), BudgetError> {
        if added <= freed {
            sub(&self.history_bytes, freed - added);
            return Ok(());
        }
        let limit = self.limits.history_bytes.load(Ordering::Relaxed);
        if try_add(&self.history_bytes, added - freed, limit) {
            Ok(())
        } else {
            Err(self.refuse(BudgetError::HistoryBytes))
        }
    }

    /// Whether `size` more history bytes would pass the limit (a hint to free expired
    /// history first; the check that counts is [`Budgets::reserve_history`]).
    pub fn history_full(&self, size: u64) -> bool {
        let limit = self.limits.history_bytes.load(Ordering::Relaxed);
        limit > 0 && self.history_bytes().saturating_add(size) > limit
    }

    /// Gives back history bytes (entries trimmed, expired or removed).
    pub fn release_history(&self, bytes: u64) {
        if bytes > 0 {
            sub(&self.history_bytes, bytes);
        }
    }

    /// History bytes held now.
    pub fn history_bytes(&self) -> u64 {
        self.history_bytes.load(Ordering::Relaxed)
    }

    // --- channels ------------------------------------------------------------------------

    fn holders(&self, channel: &str) -> &HolderShard {
        &self.holders[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// `holder` starts keeping `channel` alive. A channel that exists already is always
    /// accepted; a new one only within `rotor.max_channels`.
    pub fn hold_channel(&self, channel: &str, holder: Holder) -> Result<(), BudgetError> {
        let mut shard = self.holders(channel).lock();
        if let Some(bits) = shard.get_mut(channel) {
            *bits |= holder as u8;
            return Ok(());
        }
        let limit = self.limits.channels.load(Ordering::Relaxed);
        if !try_add(&self.channels, 1, limit) {
            return Err(self.refuse(BudgetError::Channels));
        }
        shard.insert(channel.into(), holder as u8);
        Ok(())
    }

    /// `holder` no longer keeps `channel` alive; the channel is gone when nothing does.
    pub fn release_channel(&self, channel: &str, holder: Holder) {
        let mut shard = self.holders(channel).lock();
        let Some(bits) = shard.get_mut(channel) else {
            return;
        };
        *bits &= !(holder as u8);
        if *bits == 0 {
            shard.remove(channel);
            sub(&self.channels, 1);
        }
    }

    /// Whether `channel` has local subscribers (the hub holds it).
    pub fn has_subscribers(&self, channel: &str) -> bool {
        let shard = self.holders(channel).lock();
        shard
            .get(channel)
            .is_some_and(|bits| bits & Holder::Subscribers as u8 != 0)
    }

    /// `rotor.max_channels` now (0: unlimited).
    pub fn channel_limit(&self) -> u64 {
        self.limits.channels.load(Ordering::Relaxed)
    }

    /// Whether no new channel fits now (a hint, as [`Budgets::history_full`]).
    pub fn channels_full(&self) -> bool {
        let limit = self.limits.channels.load(Ordering::Relaxed);
        limit > 0 && self.channels() >= limit
    }

    /// Channels that exist now.
    pub fn channels(&self) -> u64 {
        self.channels.load(Ordering::Relaxed)
    }

    // --- presence ------------------------------------------------------------------------

    /// One more presence entry, within `rotor.max_presence_entries`.
    pub fn acquire_presence(&self) -> Result<(), BudgetError> {
        let limit = self.limits.presence_entries.load(Ordering::Relaxed);
        if try_add(&self.presence_entries, 1, limit) {
            Ok(())
        } else {
            Err(self.refuse(BudgetError::PresenceEntries))
        }
    }

    /// A presence entry is gone.
    pub fn release_presence(&self) {
        sub(&self.presence_entries, 1);
    }

    /// Presence entries held now.
    pub fn presence_entries(&self) -> u64 {
        self.presence_entries.load(Ordering::Relaxed)
    }

    // --- sockets -------------------------------------------------------------------------

    /// A slot for one more client socket within `client.connection_limit`.
    pub fn admit_socket(self: &Arc<Self>) -> Result<SocketPermit, BudgetError> {
        let limit = self.limits.connections.load(Ordering::Relaxed);
        if self.metrics.sockets.try_inc_below(limit) {
            Ok(SocketPermit(Some(self.clone())))
        } else {
            Err(self.refuse(BudgetError::Connections))
        }
    }

    /// A socket slot taken over by a session (see [`SocketPermit::keep`]) is given back.
    pub fn release_socket(&self) {
        self.metrics.sockets.dec();
    }

    /// Adds the budgets' families to `e`: what is held, the limits in force and the refusals.
    pub fn expose(&self, e: &mut Exposition) {
        let l = &self.limits;
        let sockets = u64::try_from(self.metrics.sockets.get()).unwrap_or(0);
        let rows = [
            (
                "history_bytes",
                self.history_bytes(),
                l.history_bytes.load(Ordering::Relaxed),
            ),
            (
                "channel_history_bytes",
                0,
                l.channel_history_bytes.load(Ordering::Relaxed),
            ),
            (
                "channels",
                self.channels(),
                l.channels.load(Ordering::Relaxed),
            ),
            (
                "presence_entries",
                self.presence_entries(),
                l.presence_entries.load(Ordering::Relaxed),
            ),
            (
                "connections",
                sockets,
                l.connections.load(Ordering::Relaxed),
            ),
        ];
        let used = e.family(
            "rotor_budget_used",
            "What a budget holds now (connections: client sockets).",
            Kind::Gauge,
        );
        for (name, held, _) in rows.iter().filter(|r| r.0 != "channel_history_bytes") {
            used.set(&[("budget", name)], as_i64(*held));
        }
        let limits = e.family(
            "rotor_budget_limit",
            "A budget's limit (0 = unlimited).",
            Kind::Gauge,
        );
        for (name, _, limit) in rows {
            limits.set(&[("budget", name)], as_i64(limit));
        }
        let refusals = e.family(
            "rotor_budget_refusals_total",
            "Operations refused by a budget.",
            Kind::Counter,
        );
        for err in BudgetError::ALL {
            refusals.count(&[("budget", err.label())], self.refusals(err));
        }
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A client socket counted against `client.connection_limit`; dropping it gives the slot
/// back. A session takes it over for its whole life ([`SocketPermit::keep`]) and gives it back
/// when it is dropped, so a session costs no extra bytes for it.
#[must_use = "a permit not kept by a session gives its slot back at once"]
pub struct SocketPermit(Option<Arc<Budgets>>);

impl SocketPermit {
    /// Hands the slot over to a session, which must call [`Budgets::release_socket`] when
    /// it is dropped.
    pub(crate) fn keep(mut self) {
        self.0.take();
    }
}

impl std::fmt::Debug for SocketPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SocketPermit")
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        if let Some(budgets) = self.0.take() {
            budgets.release_socket();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn with(limits: serde_json::Value) -> Arc<Budgets> {
        let b = Arc::new(Budgets::default());
        b.set_limits(&TenantConfig::from_value(limits).unwrap().config);
        b
    }

    #[test]
    fn history_bytes_are_refused_only_past_the_limit_and_come_back() {
        let b = with(serde_json::json!({"rotor": {"max_history_bytes": 100}}));
        b.reserve_history(60, 0).unwrap();
        b.reserve_history(40, 0).unwrap();
        assert_eq!(
            b.reserve_history(1, 0),
            Err(BudgetError::HistoryBytes),
            "one byte past the limit"
        );
        // An append that trims as much as it adds always fits.
        b.reserve_history(30, 30).unwrap();
        b.reserve_history(30, 50).unwrap();
        assert_eq!(b.history_bytes(), 80);
        b.release_history(80);
        assert_eq!(b.history_bytes(), 0);
        assert_eq!(b.refusals(BudgetError::HistoryBytes), 1);
    }

    #[test]
    fn the_channel_cap_refuses_a_publication_that_cannot_fit_alone() {
        let b = with(serde_json::json!({"rotor": {"max_channel_history_bytes": 500}}));
        assert!(b.check_channel_history(500).is_ok());
        assert_eq!(
            b.check_channel_history(501),
            Err(BudgetError::ChannelHistoryBytes)
        );
    }

    #[test]
    fn a_channel_counts_once_whatever_holds_it() {
        let b = with(serde_json::json!({"rotor": {"max_channels": 2}}));
        b.hold_channel("a", Holder::Subscribers).unwrap();
        b.hold_channel("a", Holder::Stream).unwrap();
        b.hold_channel("b", Holder::Stream).unwrap();
        assert_eq!(b.channels(), 2);
        assert_eq!(
            b.hold_channel("c", Holder::Subscribers),
            Err(BudgetError::Channels)
        );
        // Existing channels keep working at the limit.
        b.hold_channel("b", Holder::Subscribers).unwrap();
        b.release_channel("a", Holder::Subscribers);
        assert_eq!(b.channels(), 2, "its stream still holds `a`");
        b.release_channel("a", Holder::Stream);
        assert_eq!(b.channels(), 1);
        b.hold_channel("c", Holder::Subscribers).unwrap();
        // Releasing what was never held changes nothing.
        b.release_channel("zzz", Holder::Stream);
        assert_eq!(b.channels(), 2);
    }

    #[test]
    fn presence_entries_and_sockets_stop_at_their_limits() {
        let b = with(serde_json::json!({
            "rotor": {"max_presence_entries": 1},
            "client": {"connection_limit": 2}
        }));
        b.acquire_presence().unwrap();
        assert_eq!(b.acquire_presence(), Err(BudgetError::PresenceEntries));
        b.release_presence();
        b.acquire_presence().unwrap();

        let first = b.admit_socket().unwrap();
        let second = b.admit_socket().unwrap();
        assert_eq!(b.admit_socket().unwrap_err(), BudgetError::Connections);
        drop(first);
        let third = b.admit_socket().unwrap();
        // A kept permit stays counted until its session gives it back.
        third.keep();
        drop(second);
        assert_eq!(b.metrics.sockets.get(), 1);
        b.release_socket();
        assert_eq!(b.metrics.sockets.get(), 0);
    }

    #[test]
    fn a_new_limit_binds_the_next_check_and_keeps_what_is_held() {
        let b = with(serde_json::json!({}));
        for c in ["a", "b", "c"] {
            b.hold_channel(c, Holder::Stream).unwrap();
        }
        b.set_limits(
            &TenantConfig::from_value(serde_json::json!({"rotor": {"max_channels": 2}}))
                .unwrap()
                .config,
        );
        assert_eq!(b.channels(), 3);
        assert_eq!(
            b.hold_channel("d", Holder::Stream),
            Err(BudgetError::Channels)
        );
        b.hold_channel("a", Holder::Subscribers).unwrap();
    }

    #[test]
    fn racing_holders_never_overshoot() {
        let b =
            with(serde_json::json!({"rotor": {"max_channels": 100, "max_presence_entries": 100}}));
        std::thread::scope(|s| {
            for t in 0..8 {
                let b = &b;
                s.spawn(move || {
                    for i in 0..100 {
                        let _ = b.hold_channel(&format!("{t}-{i}"), Holder::Stream);
                        let _ = b.acquire_presence();
                    }
                });
            }
        });
        assert_eq!(b.channels(), 100);
        assert_eq!(b.presence_entries(), 100);
        assert_eq!(b.refusals(BudgetError::Channels), 700);
    }

    #[test]
    fn stored_size_counts_the_record_and_what_it_carries() {
        let bare = Publication::default();
        let base = stored_size(&bare);
        assert_eq!(base, std::mem::size_of::<Publication>() as u64);
        let p = Publication {
            data: Bytes::from_static(b"0123456789"),
            tags: [("k".to_owned(), "vv".to_owned())].into_iter().collect(),
            info: Some(crate::protocol::ClientInfo {
                user: "u".into(),
                client: "cc".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(stored_size(&p), base + 10 + 3 + 3);
    }

    #[test]
    fn refusals_render_with_their_budget_label() {
        let b = with(serde_json::json!({"rotor": {"max_channels": 1}}));
        b.hold_channel("a", Holder::Stream).unwrap();
        let _ = b.hold_channel("b", Holder::Stream);
        let mut e = Exposition::default();
        b.expose(&mut e);
        let out = e.encode();
        assert!(out.contains("rotor_budget_refusals_total{budget=\"channels\"} 1"));
        assert!(out.contains("rotor_budget_used{budget=\"channels\"} 1"));
        assert!(out.contains("rotor_budget_limit{budget=\"channels\"} 1"));
        assert_eq!(ClientError::from(BudgetError::Channels).code, 106);
    }
}
