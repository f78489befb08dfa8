//! Each project's request budget at the edge. A tenant's own limits (its publish rate, its
//! connection cap) are enforced inside its process, which means every excess request still
//! costs the shared edge a hand-off and the tenant a parse and an answer: a free project
//! flooded at 2,000 requests/s made its neighbours wait behind that work. So the edge holds
//! each project to what its plan lets through per second ([`EdgeBudget`]: plain requests, and
//! WebSocket handshakes), and answers the excess itself with one small 429 and
//! `Retry-After`, before anything reaches the tenant. The burst is [`BURST_SECONDS`] of the
//! rate, so a whole plan's worth of clients reconnecting at once is let through.
//!
//! A project's budget is not a prize for whoever spends it first:
//! - server API calls that carry one of the project's own API keys ([`Kind::Api`]) have a
//!   budget of their own, at the plan's request rate, so strangers sending requests (with a
//!   made-up key or none) cannot starve the project's backend;
//! - once more than half of a project's burst is spent (it is *contended*), each client
//!   address (IPv6: each /64) may spend only its share of the rate ([`ADDRESS_SHARE`], at
//!   least one a second) and is answered `over_address_share`; one stranger flooding a project
//!   therefore leaves the other half of the burst, and most of the rate, to everyone else.
//!   Addresses are tracked only while their project is contended.
//!
//! The limiter keeps one instant per project and kind (the time at which its budget would be
//! back to full, "GCRA"), so charging is a lookup and a compare under one short lock; entries
//! back at full are dropped when the table grows past [`PRUNE_AT`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::caps::AddressKey;

/// What the edge lets through to one project per second (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EdgeBudget {
    /// Requests that are not WebSocket handshakes: API calls, SSE and HTTP streams. Server API
    /// calls with one of the project's keys have a budget of this rate of their own.
    pub requests_per_second: u32,
    /// WebSocket handshakes.
    pub connects_per_second: u32,
}

impl EdgeBudget {
    fn rate(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Request | Kind::Api => self.requests_per_second,
            Kind::Connect => self.connects_per_second,
        }
    }
}

/// What a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any request that is not a handshake and not a keyed API call.
    Request,
    /// A WebSocket handshake.
    Connect,
    /// A server API call with one of the project's API keys: its backend.
    Api,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Request, Kind::Connect, Kind::Api];

    pub fn index(self) -> usize {
        match self {
            Kind::Request => 0,
            Kind::Connect => 1,
            Kind::Api => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Request => "requests",
            Kind::Connect => "connects",
            Kind::Api => "api",
        }
    }
}

/// Why a request was refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The project spent its budget.
    Project(Duration),
    /// The project is contended and this address spent its share.
    Address(Duration),
}

impl Refusal {
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::Project(d) | Refusal::Address(d) => d,
        }
    }
}

/// Seconds of a project's rate it may spend at once.
pub const BURST_SECONDS: u32 = 2;
/// While its project is contended, one address may spend 1/`ADDRESS_SHARE` of its rate.
pub const ADDRESS_SHARE: u32 = 4;
/// Projects tracked before entries back at full are dropped.
const PRUNE_AT: usize = 20_000;
/// Addresses tracked per project before those back at full are dropped (and, if that is not
/// enough, all of them: a flood from this many addresses is past what shares can answer).
const ADDRESS_PRUNE_AT: usize = 4_096;
/// A project over its budget is logged at most once per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Entry {
    /// Per kind: when the budget is back to full (`None`: full).
    full_at: [Option<Instant>; 3],
    /// While the project is contended: when each address's share (per kind) is full again.
    addresses: HashMap<(AddressKey, usize), Instant>,
    warned_at: Option<Instant>,
}

/// Every project's budget use, and the refusals so far (for the metrics).
#[derive(Default)]
pub struct Budgets {
    table: Mutex<HashMap<String, Entry>>,
    refused: [AtomicU64; 3],
    refused_by_address: [AtomicU64; 3],
}

impl Budgets {
    /// Spends one `kind` of project `slug`'s `budget` for a client at `from`.
    pub fn charge(
        &self,
        slug: &str,
        budget: EdgeBudget,
        kind: Kind,
        from: IpAddr,
    ) -> Result<(), Refusal> {
        self.charge_at(slug, budget, kind, from, Instant::now())
    }

    fn charge_at(
        &self,
        slug: &str,
        budget: EdgeBudget,
        kind: Kind,
        from: IpAddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        let rate = budget.rate(kind);
        if rate == 0 {
            return Ok(());
        }
        let interval = Duration::from_secs(1) / rate;
        let burst = Duration::from_secs(u64::from(BURST_SECONDS));
        let mut table = self.table.lock();
        if table.len() >= PRUNE_AT && !table.contains_key(slug) {
            table.retain(|_, e| e.full_at.iter().flatten().any(|at| *at > now));
        }
        let entry = match table.get_mut(slug) {
            Some(entry) => entry,
            None => table.entry(slug.to_owned()).or_default(),
        };
        let full_at = entry.full_at[kind.index()]
            .filter(|at| *at > now)
            .unwrap_or(now);
        // Spending one more would put the budget more than a burst behind: refused.
        let after = full_at + interval;
        let behind = after.duration_since(now);
        if behind > burst {
            let warn = entry
                .warned_at
                .is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
            if warn {
                entry.warned_at = Some(now);
            }
            drop(table);
            self.refused[kind.index()].fetch_add(1, Ordering::Relaxed);
            if warn {
                tracing::warn!(%slug, kind = kind.label(), per_second = rate, "project over its edge budget; the excess is answered 429 at the edge");
            }
            return Err(Refusal::Project(behind - burst));
        }
        // Contended: from here on each address spends only its share.
        if kind != Kind::Api && behind > burst / 2 {
            let share = (interval * ADDRESS_SHARE).min(Duration::from_secs(1));
            let key = (AddressKey::of(from), kind.index());
            let addresses = &mut entry.addresses;
            if addresses.len() >= ADDRESS_PRUNE_AT && !addresses.contains_key(&key) {
                addresses.retain(|_, at| *at > now);
                if addresses.len() >= ADDRESS_PRUNE_AT {
                    addresses.clear();
                }
            }
            let its_full_at = addresses
                .get(&key)
                .copied()
                .filter(|at| *at > now)
                .unwrap_or(now);
            let its_after = its_full_at + share;
            let its_behind = its_after.duration_since(now);
            if its_behind > burst {
                drop(table);
                self.refused_by_address[kind.index()].fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Address(its_behind - burst));
            }
            addresses.insert(key, its_after);
        }
        entry.full_at[kind.index()] = Some(after);
        Ok(())
    }

    /// Requests of `kind` refused so far because their project spent its budget.
    pub fn refused(&self, kind: Kind) -> u64 {
        self.refused[kind.index()].load(Ordering::Relaxed)
    }

    /// Requests of `kind` refused so far because their address spent its share.
    pub fn refused_by_address(&self, kind: Kind) -> u64 {
        self.refused_by_address[kind.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: EdgeBudget = EdgeBudget {
        requests_per_second: 10,
        connects_per_second: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `n` requests, each from an address of its own (no share applies).
    fn spend(b: &Budgets, slug: &str, kind: Kind, at: Instant, n: usize) -> usize {
        (0..n)
            .filter(|i| {
                let from = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
                b.charge_at(slug, TEN, kind, from, at).is_ok()
            })
            .count()
    }

    /// `n` requests from one address.
    fn spend_from(b: &Budgets, from: &str, kind: Kind, at: Instant, n: usize) -> usize {
        (0..n)
            .filter(|_| b.charge_at("a", TEN, kind, ip(from), at).is_ok())
            .count()
    }

    #[test]
    fn a_burst_of_two_seconds_then_the_rate() {
        let b = Budgets::default();
        let t0 = Instant::now();
        assert_eq!(spend(&b, "a", Kind::Request, t0, 100), 20);
        assert_eq!(b.refused(Kind::Request), 80);
        // A tenth of a second later: one more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(spend(&b, "a", Kind::Request, t1, 5), 1);
        let err = b
            .charge_at("a", TEN, Kind::Request, ip("10.9.9.9"), t1)
            .unwrap_err();
        assert!(matches!(err, Refusal::Project(_)), "{err:?}");
        assert!(err.retry_after() <= Duration::from_millis(100), "{err:?}");
        // Idle for the whole burst: full again, not more.
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(spend(&b, "a", Kind::Request, t2, 100), 20);
    }

    #[test]
    fn projects_and_kinds_spend_their_own_budgets() {
        let b = Budgets::default();
        let t0 = Instant::now();
        assert_eq!(spend(&b, "a", Kind::Request, t0, 50), 20);
        assert_eq!(spend(&b, "a", Kind::Connect, t0, 50), 4);
        assert_eq!(spend(&b, "b", Kind::Request, t0, 50), 20);
        assert_eq!(b.refused(Kind::Connect), 46);
    }

    #[test]
    fn one_address_cannot_spend_a_contended_projects_whole_budget() {
        let b = Budgets::default();
        let t0 = Instant::now();
        // Half the burst (10) is anyone's; then this address gets its share: a quarter of
        // the rate (one per 400 ms) with a burst of two seconds of it (5).
        assert_eq!(spend_from(&b, "203.0.113.7", Kind::Request, t0, 100), 15);
        assert_eq!(b.refused_by_address(Kind::Request), 85);
        assert_eq!(b.refused(Kind::Request), 0);
        let err = b
            .charge_at("a", TEN, Kind::Request, ip("203.0.113.7"), t0)
            .unwrap_err();
        assert!(matches!(err, Refusal::Address(d) if d <= Duration::from_millis(400)));
        // Everyone else still finds the rest of the burst, from their own addresses.
        assert_eq!(spend_from(&b, "198.51.100.1", Kind::Request, t0, 100), 5);
        assert_eq!(spend(&b, "a", Kind::Request, t0, 100), 0);
        // The flooding address earns its share back at its own rate only.
        let t1 = t0 + Duration::from_millis(400);
        assert_eq!(spend_from(&b, "203.0.113.7", Kind::Request, t1, 10), 1);
    }

    #[test]
    fn ipv6_addresses_share_by_their_64() {
        let t0 = Instant::now();
        let host = |net: u16, host: u16| IpAddr::from([0x2001, 0xdb8, 0, net, 0, 0, 0, host]);
        // Hosts of one /64: one share between them.
        let b = Budgets::default();
        let passed = (0..100)
            .filter(|i| {
                b.charge_at("a", TEN, Kind::Request, host(1, *i), t0)
                    .is_ok()
            })
            .count();
        assert_eq!(passed, 15);
        // A /64 each: the whole burst.
        let b = Budgets::default();
        let passed = (0..100)
            .filter(|i| {
                b.charge_at("a", TEN, Kind::Request, host(*i, 1), t0)
                    .is_ok()
            })
            .count();
        assert_eq!(passed, 20);
    }

    #[test]
    fn keyed_api_calls_have_their_own_budget_and_no_share() {
        let b = Budgets::default();
        let t0 = Instant::now();
        // Strangers spend the project's request budget entirely...
        assert_eq!(spend(&b, "a", Kind::Request, t0, 100), 20);
        // ...and the backend, from one address, still gets its whole burst.
        assert_eq!(spend_from(&b, "192.0.2.10", Kind::Api, t0, 100), 20);
        assert_eq!(b.refused(Kind::Api), 80);
        assert_eq!(b.refused_by_address(Kind::Api), 0);
    }

    #[test]
    fn no_rate_is_no_limit() {
        let b = Budgets::default();
        let none = EdgeBudget::default();
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| b
            .charge_at("a", none, Kind::Connect, ip("192.0.2.1"), t0)
            .is_ok()));
        assert!(b.table.lock().is_empty());
    }

    #[test]
    fn entries_back_at_full_are_pruned_when_the_table_is_large() {
        let b = Budgets::default();
        let t0 = Instant::now();
        let from = ip("192.0.2.1");
        for i in 0..PRUNE_AT {
            b.charge_at(&format!("p{i}"), TEN, Kind::Request, from, t0)
                .unwrap();
        }
        let later = t0 + Duration::from_secs(5);
        b.charge_at("busy", TEN, Kind::Request, from, later)
            .unwrap();
        let table = b.table.lock();
        assert_eq!(table.len(), 1);
        assert!(table.contains_key("busy"));
    }

    #[test]
    fn tracked_addresses_stay_bounded() {
        let b = Budgets::default();
        let t0 = Instant::now();
        let big = EdgeBudget {
            requests_per_second: 1_000,
            connects_per_second: 0,
        };
        // Contend the project, then come from more addresses than are tracked.
        for i in 0..(3 * ADDRESS_PRUNE_AT) as u32 {
            let from = IpAddr::from(i.to_be_bytes());
            let _ = b.charge_at("a", big, Kind::Request, from, t0);
        }
        let table = b.table.lock();
        assert!(table["a"].addresses.len() <= ADDRESS_PRUNE_AT);
    }
}
