//! The history ledger: what this process has written into Redis history, held against the
//! tenant's budgets as the memory engine holds its streams ([`crate::budgets`]).
//!
//! Redis is the operator's, often shared by many tenants under their own prefixes, so history
//! a tenant writes there must be bounded as if it were in the tenant's own memory: without it
//! one account publishing large messages to ever new channels (within its publish rate) could
//! fill a shared Redis and take every other tenant's history and presence with it.
//!
//! For each channel this process published into with history, the ledger keeps the stored
//! size ([`stored_size`]) of its entries, oldest first, when the stream key expires
//! (`history_ttl` after the last publish, as the publish script sets it) and when its meta key
//! does (`history_meta_ttl`). A publish:
//!
//! - is refused (106) when the publication alone is larger than
//!   `rotor.max_channel_history_bytes`;
//! - trims, in its plan, the oldest entries past `history_size` and past the per-channel byte
//!   cap, and when the byte cap is what trims, asks the script for that shorter `MAXLEN`;
//! - holds the channel in `rotor.max_channels` from its first publication until the meta key
//!   expires, as the memory engine holds a stream's channel (a stream only read is not a
//!   channel), so the keys a tenant leaves in Redis are bounded by its channels too;
//! - reserves the bytes it adds (less what it trims) in `rotor.max_history_bytes`.
//!
//! Expired streams give their bytes back, and expired metas their channels, on a sweep (about once a minute, and
//! before a refusal). Every process of a tenant keeps its own ledger, so with `n` processes a
//! tenant holds at most `n` budgets in Redis; a hosted tenant runs one process. Publications
//! another process wrote into the same channel, or that Redis dropped as repeated or stale, are
//! not seen: the ledger errs towards counting too much, for at most `history_ttl`.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::budgets::{trim_plan, BudgetError, Budgets, Holder};
use crate::engine::sweep_clock::SweepClock;

const SHARDS: usize = 16;
/// A full sweep runs at most this often when a budget is short.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One channel's entries as this process wrote them.
#[derive(Debug)]
struct Written {
    /// Stored sizes of the entries, oldest first.
    sizes: VecDeque<u32>,
    /// Their sum, held in the history byte budget.
    bytes: u64,
    /// When Redis drops the stream key (its TTL is renewed by every publish).
    data_expires: Instant,
    /// When Redis drops the meta key (epoch and top; renewed by every publish).
    meta_expires: Instant,
}

impl Written {
    /// Gives back the bytes of a stream whose key has expired (its channel stays held).
    fn expire_data(&mut self, now: Instant, budgets: &Budgets) {
        if self.data_expires <= now && self.bytes > 0 {
            budgets.release_history(std::mem::take(&mut self.bytes));
            self.sizes.clear();
        }
    }
}

/// What a publish may do, decided by [`Ledger::admit`]: the `MAXLEN` to hand the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub max_len: u32,
}

/// See the module documentation.
pub struct Ledger {
    budgets: Arc<Budgets>,
    shards: [Mutex<HashMap<Box<str>, Written>>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
    /// When the last full sweep ran.
    swept: SweepClock,
}

impl Ledger {
    pub fn new(budgets: Arc<Budgets>) -> Self {
        Self {
            budgets,
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: Default::default(),
            swept: SweepClock::default(),
        }
    }

    /// The budgets it holds history against.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    fn shard(&self, channel: &str) -> &Mutex<HashMap<Box<str>, Written>> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Accounts for a publication of `size` stored bytes into `channel`'s history, kept
    /// `history_size` deep for `history_ttl` with its meta for `meta_ttl`, or refuses it with
    /// the budget it would pass.
    pub fn admit(
        &self,
        channel: &str,
        size: u64,
        history_size: u32,
        history_ttl: Duration,
        meta_ttl: Duration,
    ) -> Result<Admitted, BudgetError> {
        self.budgets.check_channel_history(size)?;
        if self.budgets.history_full(size) || self.budgets.channels_full() {
            self.sweep_if_due();
        }
        let now = Instant::now();
        let cap = self.budgets.channel_history_cap();
        let mut shard = self.shard(channel).lock();
        if shard.get(channel).is_some_and(|w| w.meta_expires <= now) {
            if let Some(w) = shard.remove(channel) {
                self.give_back(channel, w);
            }
        }
        if let Some(w) = shard.get_mut(channel) {
            w.expire_data(now, &self.budgets);
        }
        let created = !shard.contains_key(channel);
        if created {
            self.budgets.hold_channel(channel, Holder::Stream)?;
        }
        let w = shard.entry(channel.into()).or_insert_with(|| Written {
            sizes: VecDeque::new(),
            bytes: 0,
            data_expires: now,
            meta_expires: now,
        });
        // The oldest entries that go: past the depth, and past the byte cap.
        let depth = history_size.max(1) as usize;
        let (trim, freed) = trim_plan(
            w.sizes.iter().map(|&s| u64::from(s)),
            w.sizes.len(),
            w.bytes,
            size,
            depth,
            cap,
        );
        // More than the depth alone would take: the byte cap trims, and Redis must know.
        let by_bytes = trim > (w.sizes.len() + 1).saturating_sub(depth);
        if let Err(e) = self.budgets.reserve_history(size, freed) {
            if created {
                shard.remove(channel);
                self.budgets.release_channel(channel, Holder::Stream);
            }
            return Err(e);
        }
        w.sizes.drain(..trim);
        w.sizes.push_back(u32::try_from(size).unwrap_or(u32::MAX));
        w.bytes = w.bytes - freed + size;
        w.data_expires = now + history_ttl;
        w.meta_expires = now + meta_ttl.max(history_ttl);
        let max_len = if by_bytes {
            u32::try_from(w.sizes.len()).unwrap_or(history_size)
        } else {
            history_size
        };
        Ok(Admitted { max_len })
    }

    /// Takes back the newest entry of `channel` (`size` bytes), admitted but not written
    /// because the publish failed.
    pub fn undo(&self, channel: &str, size: u64) {
        let mut shard = self.shard(channel).lock();
        let Some(w) = shard.get_mut(channel) else {
            return;
        };
        if w.sizes.back().is_some_and(|s| u64::from(*s) == size) {
            w.sizes.pop_back();
            w.bytes -= size;
            self.budgets.release_history(size);
        }
        if w.sizes.is_empty() {
            if let Some(w) = shard.remove(channel) {
                self.give_back(channel, w);
            }
        }
    }

    /// The channel's history was removed (`history_remove`): its bytes go back; its meta
    /// stays in Redis, and so does its channel until the meta expires.
    pub fn remove(&self, channel: &str) {
        if let Some(w) = self.shard(channel).lock().get_mut(channel) {
            self.budgets.release_history(std::mem::take(&mut w.bytes));
            w.sizes.clear();
        }
    }

    /// Gives back the bytes of every expired stream and the channel of every expired meta.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.swept.mark();
        for shard in &self.shards {
            let mut shard = shard.lock();
            shard.retain(|channel, w| {
                w.expire_data(now, &self.budgets);
                if w.meta_expires > now {
                    return true;
                }
                self.budgets.release_channel(channel, Holder::Stream);
                false
            });
        }
    }

    /// Sweeps unless a sweep ran within [`SWEEP_EVERY`] (or one is running).
    fn sweep_if_due(&self) {
        if self.swept.claim(SWEEP_EVERY) {
            self.sweep();
        }
    }

    fn give_back(&self, channel: &str, w: Written) {
        self.budgets.release_history(w.bytes);
        self.budgets.release_channel(channel, Holder::Stream);
    }

    /// Channels this process holds history in now.
    pub fn channels(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotor_tenant_config::TenantConfig;

    fn ledger(limits: serde_json::Value) -> (Ledger, Arc<Budgets>) {
        let budgets = Arc::new(Budgets::default());
        let config = TenantConfig::from_value(serde_json::json!({ "rotor": limits })).unwrap();
        budgets.set_limits(&config.config);
        (Ledger::new(budgets.clone()), budgets)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn bytes_and_channels_are_held_and_a_refusal_holds_nothing() {
        let (l, b) = ledger(serde_json::json!({"max_history_bytes": 250, "max_channels": 2}));
        assert_eq!(l.admit("a", 100, 10, HOUR, HOUR).unwrap().max_len, 10);
        assert_eq!(l.admit("b", 100, 10, HOUR, HOUR).unwrap().max_len, 10);
        assert_eq!(b.history_bytes(), 200);
        assert_eq!(b.channels(), 2);
        // A third channel passes max_channels, more bytes pass max_history_bytes.
        assert_eq!(
            l.admit("c", 10, 10, HOUR, HOUR).unwrap_err(),
            BudgetError::Channels
        );
        assert_eq!(
            l.admit("a", 100, 10, HOUR, HOUR).unwrap_err(),
            BudgetError::HistoryBytes
        );
        // Nothing of the refusals is held.
        assert_eq!(b.history_bytes(), 200);
        assert_eq!(l.channels(), 2);
        l.remove("a");
        assert_eq!((b.history_bytes(), b.channels()), (100, 2));
        assert!(l.admit("a", 100, 10, HOUR, HOUR).is_ok());
    }

    #[test]
    fn the_depth_trims_the_oldest_entries_and_gives_their_bytes_back() {
        let (l, b) = ledger(serde_json::json!({"max_history_bytes": 1000}));
        for _ in 0..5 {
            l.admit("a", 100, 3, HOUR, HOUR).unwrap();
        }
        assert_eq!(b.history_bytes(), 300, "three entries of 100 kept");
    }

    #[test]
    fn the_channel_byte_cap_shortens_maxlen_and_refuses_a_larger_publication() {
        let (l, b) = ledger(serde_json::json!({"max_channel_history_bytes": 250}));
        l.admit("a", 100, 10, HOUR, HOUR).unwrap();
        assert_eq!(l.admit("a", 100, 10, HOUR, HOUR).unwrap().max_len, 10);
        // A third 100 passes 250: the oldest goes and the script keeps two.
        assert_eq!(l.admit("a", 100, 10, HOUR, HOUR).unwrap().max_len, 2);
        assert_eq!(b.history_bytes(), 200);
        assert_eq!(
            l.admit("a", 251, 10, HOUR, HOUR).unwrap_err(),
            BudgetError::ChannelHistoryBytes
        );
    }

    #[test]
    fn an_expired_stream_gives_its_bytes_back_and_an_expired_meta_its_channel() {
        let (l, b) = ledger(serde_json::json!({"max_channels": 1}));
        // The stream key is gone at once, its meta an hour later: the channel stays held.
        l.admit("a", 100, 10, Duration::ZERO, HOUR).unwrap();
        l.sweep();
        assert_eq!((b.history_bytes(), b.channels(), l.channels()), (0, 1, 1));
        assert_eq!(
            l.admit("z", 1, 10, HOUR, HOUR).unwrap_err(),
            BudgetError::Channels,
            "the meta left in Redis still counts"
        );
        // The channel takes new history without a sweep.
        l.admit("a", 50, 10, Duration::ZERO, Duration::ZERO)
            .unwrap();
        assert_eq!((b.history_bytes(), b.channels()), (50, 1));
        l.sweep();
        assert_eq!((b.history_bytes(), b.channels(), l.channels()), (0, 0, 0));
    }

    #[test]
    fn a_failed_write_is_undone_and_an_expired_meta_is_a_new_channel_on_its_next_publish() {
        let (l, b) = ledger(serde_json::json!({"max_channels": 1}));
        l.admit("b", 100, 10, HOUR, HOUR).unwrap();
        l.undo("b", 100);
        assert_eq!((b.history_bytes(), b.channels(), l.channels()), (0, 0, 0));
        l.admit("c", 100, 10, Duration::ZERO, Duration::ZERO)
            .unwrap();
        l.admit("c", 50, 10, HOUR, HOUR).unwrap();
        assert_eq!((b.history_bytes(), b.channels()), (50, 1));
    }
}
