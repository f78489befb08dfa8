//! Each project's request budget at the edge. A tenant's own limits (its publish rate, its
//! connection cap) are enforced inside its process, which means every excess request still
//! costs the shared edge a hand-off and the tenant a parse and an answer: a free project
//! flooded at 2,000 requests/s made its neighbours wait behind that work. So the edge holds
//! each project to what its plan lets through per second ([`EdgeBudget`]: plain requests, and
//! WebSocket handshakes), and answers the excess itself with one small 429 and
//! `Retry-After`, before anything reaches the tenant. The burst is [`BURST_SECONDS`] of the
//! rate, so a whole plan's worth of clients reconnecting at once is let through.
//!
//! The limiter keeps one instant per project and kind (the time at which its budget would be
//! back to full, "GCRA"), so charging is a lookup and a compare under one short lock; entries
//! back at full are dropped when the table grows past [`PRUNE_AT`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What the edge lets through to one project per second (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EdgeBudget {
    /// Requests that are not WebSocket handshakes: API calls, SSE and HTTP streams.
    pub requests_per_second: u32,
    /// WebSocket handshakes.
    pub connects_per_second: u32,
}

impl EdgeBudget {
    fn rate(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Request => self.requests_per_second,
            Kind::Connect => self.connects_per_second,
        }
    }
}

/// What a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Connect,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Request, Kind::Connect];

    pub fn index(self) -> usize {
        match self {
            Kind::Request => 0,
            Kind::Connect => 1,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Request => "requests",
            Kind::Connect => "connects",
        }
    }
}

/// Seconds of a project's rate it may spend at once.
pub const BURST_SECONDS: u32 = 2;
/// Projects tracked before entries back at full are dropped.
const PRUNE_AT: usize = 20_000;
/// A project over its budget is logged at most once per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Entry {
    /// Per kind: when the budget is back to full (`None`: full).
    full_at: [Option<Instant>; 2],
    warned_at: Option<Instant>,
}

/// Every project's budget use, and the refusals so far (for the metrics).
#[derive(Default)]
pub struct Budgets {
    table: Mutex<HashMap<String, Entry>>,
    refused: [AtomicU64; 2],
}

impl Budgets {
    /// Spends one `kind` of project `slug`'s `budget`: `Err(retry_after)` when it is spent.
    pub fn charge(&self, slug: &str, budget: EdgeBudget, kind: Kind) -> Result<(), Duration> {
        self.charge_at(slug, budget, kind, Instant::now())
    }

    fn charge_at(
        &self,
        slug: &str,
        budget: EdgeBudget,
        kind: Kind,
        now: Instant,
    ) -> Result<(), Duration> {
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
        if after.duration_since(now) > burst {
            let retry = after.duration_since(now) - burst;
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
            return Err(retry);
        }
        entry.full_at[kind.index()] = Some(after);
        Ok(())
    }

    /// Requests of `kind` refused so far.
    pub fn refused(&self, kind: Kind) -> u64 {
        self.refused[kind.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: EdgeBudget = EdgeBudget {
        requests_per_second: 10,
        connects_per_second: 2,
    };

    fn spend(b: &Budgets, slug: &str, kind: Kind, at: Instant, n: usize) -> usize {
        (0..n)
            .filter(|_| b.charge_at(slug, TEN, kind, at).is_ok())
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
        let err = b.charge_at("a", TEN, Kind::Request, t1).unwrap_err();
        assert!(err <= Duration::from_millis(100), "{err:?}");
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
    fn no_rate_is_no_limit() {
        let b = Budgets::default();
        let none = EdgeBudget::default();
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| b.charge_at("a", none, Kind::Connect, t0).is_ok()));
        assert!(b.table.lock().is_empty());
    }

    #[test]
    fn entries_back_at_full_are_pruned_when_the_table_is_large() {
        let b = Budgets::default();
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            b.charge_at(&format!("p{i}"), TEN, Kind::Request, t0)
                .unwrap();
        }
        let later = t0 + Duration::from_secs(5);
        b.charge_at("busy", TEN, Kind::Request, later).unwrap();
        let table = b.table.lock();
        assert_eq!(table.len(), 1);
        assert!(table.contains_key("busy"));
    }
}
