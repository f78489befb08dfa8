//! Who may wake a parked project, and how often. A parked (or never started) project is woken
//! by its first request, before any key or token is checked: a WebSocket's credentials arrive
//! in its `connect` command, after the upgrade, so the edge cannot ask for them first. Anyone
//! who knows or guesses a slug can therefore make the box start a process. Two bounds keep that
//! from becoming an attack on the box or on other customers:
//!
//! - **per client address** (this module): each address (IPv6: each /64, as for the edge's
//!   connection caps) may cause [`WakeLimits::burst`] wakes at once and then
//!   [`WakeLimits::per_minute`] a minute (a token bucket; `ROTOR_EDGE_WAKE_BURST`,
//!   `ROTOR_EDGE_WAKES_PER_MINUTE`). Only requests that find their project parked are charged:
//!   traffic to running projects never is, so one busy NAT does not lock its users out. Past
//!   it: 429 with `Retry-After`.
//! - **per box** ([`crate::reconciler`]: `ROTOR_MAX_RUNNING_TENANTS`): at most that many tenant
//!   processes run; a wake past it parks the longest-idle tenant that can be parked without
//!   loss, or is refused with 503 when none can.
//!
//! The per-address table is bounded ([`MAX_TRACKED`]): entries whose bucket has refilled are
//! dropped when it is full, and if it is still full every new address is refused (fail closed:
//! running projects keep serving; only wakes wait).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::caps::AddressKey;
use crate::settings::positive_env;

/// Addresses tracked at once (about 5 MB at the most).
pub const MAX_TRACKED: usize = 100_000;

/// The per-address wake budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WakeLimits {
    /// Wakes one address may cause back to back.
    pub burst: u32,
    /// Wakes one address may cause per minute once its burst is spent.
    pub per_minute: u32,
}

impl Default for WakeLimits {
    fn default() -> Self {
        Self {
            burst: 20,
            per_minute: 30,
        }
    }
}

impl WakeLimits {
    /// From `ROTOR_EDGE_WAKE_BURST` and `ROTOR_EDGE_WAKES_PER_MINUTE` (positive integers;
    /// anything else keeps the default, with an error logged).
    pub fn from_env() -> Self {
        let d = Self::default();
        Self {
            burst: positive_env("ROTOR_EDGE_WAKE_BURST", d.burst),
            per_minute: positive_env("ROTOR_EDGE_WAKES_PER_MINUTE", d.per_minute),
        }
    }

    fn refill_every(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
}

/// Why a wake was refused; also its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeRefusal {
    /// This address spent its wake budget.
    Rate,
    /// The box runs as many tenants as it may and none could be parked to make room.
    Capacity,
}

impl WakeRefusal {
    pub const ALL: [WakeRefusal; 2] = [Self::Rate, Self::Capacity];

    /// The `reason` label of `rotor_edge_wakes_refused_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::Capacity => "capacity",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Rate => 0,
            Self::Capacity => 1,
        }
    }
}

/// Distinct projects remembered per address: a request for one of them is not charged again.
const RECENT: usize = 8;

/// One address's bucket: `tokens` as of `at`, and the projects it woke last.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    at: Instant,
    recent: [u64; RECENT],
    next: usize,
}

impl Bucket {
    fn full(limits: &WakeLimits, at: Instant) -> Self {
        Self {
            tokens: limits.burst,
            at,
            recent: [0; RECENT],
            next: 0,
        }
    }
}

/// The edge's wake budget per address, and its counters.
#[derive(Debug)]
pub struct Wakes {
    limits: WakeLimits,
    buckets: Mutex<HashMap<AddressKey, Bucket>>,
    capacity: usize,
    /// Hashes project slugs for [`Bucket::recent`] (keyed per process).
    hasher: RandomState,
    allowed: AtomicU64,
    refused: [AtomicU64; 2],
}

impl Wakes {
    pub fn new(limits: WakeLimits) -> Self {
        Self::with_capacity(limits, MAX_TRACKED)
    }

    fn with_capacity(limits: WakeLimits, capacity: usize) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
            capacity,
            hasher: RandomState::new(),
            allowed: AtomicU64::new(0),
            refused: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    pub fn limits(&self) -> WakeLimits {
        self.limits
    }

    /// Charges `ip` for waking the project `slug`: `Err(retry_after)` when its budget is
    /// spent. A project this address woke among its last few is not charged again, so the
    /// clients of one office reconnecting to their parked project together cost one wake.
    pub fn charge(&self, ip: IpAddr, slug: &str) -> Result<(), Duration> {
        self.charge_at(ip, slug, Instant::now())
    }

    fn charge_at(&self, ip: IpAddr, slug: &str, now: Instant) -> Result<(), Duration> {
        let key = AddressKey::of(ip);
        // Never 0, which marks an empty slot.
        let project = self.hasher.hash_one(slug) | 1;
        let every = self.limits.refill_every();
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.capacity {
            let (burst, limits) = (self.limits.burst, self.limits);
            buckets.retain(|_, b| refilled(b, now, &limits).tokens < burst);
            if buckets.len() >= self.capacity {
                drop(buckets);
                self.refused(WakeRefusal::Rate);
                return Err(every);
            }
        }
        let bucket = buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(&self.limits, now));
        if bucket.recent.contains(&project) {
            return Ok(());
        }
        *bucket = refilled(bucket, now, &self.limits);
        if bucket.tokens == 0 {
            let wait = every.saturating_sub(now.saturating_duration_since(bucket.at));
            drop(buckets);
            self.refused(WakeRefusal::Rate);
            return Err(wait.max(Duration::from_secs(1)));
        }
        bucket.tokens -= 1;
        bucket.recent[bucket.next] = project;
        bucket.next = (bucket.next + 1) % RECENT;
        drop(buckets);
        self.allowed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Counts a refused wake.
    pub fn refused(&self, why: WakeRefusal) {
        self.refused[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes let through so far.
    pub fn allowed(&self) -> u64 {
        self.allowed.load(Ordering::Relaxed)
    }

    /// Wakes refused so far, for `why`.
    pub fn refused_total(&self, why: WakeRefusal) -> u64 {
        self.refused[why.index()].load(Ordering::Relaxed)
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().len()
    }
}

/// `b` with the tokens earned since `b.at` added (capped at the burst); `at` moves forward by
/// whole refill periods only, so partial progress towards the next token is kept.
fn refilled(b: &Bucket, now: Instant, limits: &WakeLimits) -> Bucket {
    let every = limits.refill_every();
    let elapsed = now.saturating_duration_since(b.at);
    let earned = u32::try_from(elapsed.as_nanos() / every.as_nanos().max(1)).unwrap_or(u32::MAX);
    if earned == 0 {
        return *b;
    }
    let tokens = b.tokens.saturating_add(earned).min(limits.burst);
    let at = if tokens == limits.burst {
        now
    } else {
        b.at + every * earned
    };
    Bucket { tokens, at, ..*b }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const LIMITS: WakeLimits = WakeLimits {
        burst: 3,
        per_minute: 60,
    };

    /// A fresh project name each call, so every charge is a new wake.
    fn fresh() -> String {
        use std::sync::atomic::AtomicUsize;
        static N: AtomicUsize = AtomicUsize::new(0);
        format!("p{}", N.fetch_add(1, Ordering::Relaxed))
    }

    #[test]
    fn an_address_gets_its_burst_then_one_wake_per_refill_period() {
        let w = Wakes::new(LIMITS);
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        for _ in 0..3 {
            w.charge_at(a, &fresh(), t0).unwrap();
        }
        let wait = w.charge_at(a, &fresh(), t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Another address is not affected.
        w.charge_at(ip("192.0.2.2"), &fresh(), t0).unwrap();
        // One period later, exactly one more.
        let t1 = t0 + Duration::from_millis(1000);
        w.charge_at(a, &fresh(), t1).unwrap();
        assert!(w.charge_at(a, &fresh(), t1).is_err());
        // Long idle refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            w.charge_at(a, &fresh(), t2).unwrap();
        }
        assert!(w.charge_at(a, &fresh(), t2).is_err());
        assert_eq!(w.allowed(), 8);
        assert_eq!(w.refused_total(WakeRefusal::Rate), 3);
    }

    #[test]
    fn the_same_project_again_is_not_charged() {
        let w = Wakes::new(WakeLimits {
            burst: 2,
            per_minute: 1,
        });
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        // A stampede of one office's clients onto its own parked project: one wake.
        for _ in 0..50 {
            w.charge_at(a, "office", t0).unwrap();
        }
        w.charge_at(a, "other", t0).unwrap();
        assert!(w.charge_at(a, "third", t0).is_err());
        // Both woken projects stay free to ask for.
        w.charge_at(a, "office", t0).unwrap();
        w.charge_at(a, "other", t0).unwrap();
        assert_eq!(w.allowed(), 2);
    }

    #[test]
    fn partial_refill_progress_is_kept() {
        let w = Wakes::new(WakeLimits {
            burst: 1,
            per_minute: 60,
        });
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        w.charge_at(a, &fresh(), t0).unwrap();
        // 0.6 s: nothing earned yet.
        let wait = w
            .charge_at(a, &fresh(), t0 + Duration::from_millis(600))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(1), "rounded up to a whole second");
        w.charge_at(a, &fresh(), t0 + Duration::from_millis(1000))
            .unwrap();
    }

    #[test]
    fn ipv6_addresses_share_the_budget_of_their_64() {
        let w = Wakes::new(LIMITS);
        let t0 = Instant::now();
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"] {
            w.charge_at(ip(host), &fresh(), t0).unwrap();
        }
        assert!(w.charge_at(ip("2001:db8::9"), &fresh(), t0).is_err());
        w.charge_at(ip("2001:db8:0:1::1"), &fresh(), t0).unwrap();
    }

    #[test]
    fn a_full_table_drops_refilled_entries_and_otherwise_fails_closed() {
        let w = Wakes::with_capacity(LIMITS, 2);
        let t0 = Instant::now();
        w.charge_at(ip("192.0.2.1"), &fresh(), t0).unwrap();
        w.charge_at(ip("192.0.2.2"), &fresh(), t0).unwrap();
        // Full, and neither entry has refilled: a third address is refused.
        assert!(w.charge_at(ip("192.0.2.3"), &fresh(), t0).is_err());
        // Known addresses still spend their own budget.
        w.charge_at(ip("192.0.2.1"), &fresh(), t0).unwrap();
        // Once the others refilled they are dropped and the newcomer gets in.
        let later = t0 + Duration::from_secs(10);
        w.charge_at(ip("192.0.2.3"), &fresh(), later).unwrap();
        assert!(w.tracked() <= 2);
    }
}
