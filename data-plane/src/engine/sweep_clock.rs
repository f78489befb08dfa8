//! When an engine's last sweep of expired history ran, so that callers a full budget would
//! refuse can ask for one first without every one of them sweeping: at most one sweep per
//! interval, however many ask at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// See the module documentation.
pub struct SweepClock {
    started: Instant,
    /// Milliseconds after `started` of the last sweep (0: none yet).
    last: AtomicU64,
}

impl Default for SweepClock {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl SweepClock {
    fn now_ms(&self) -> u64 {
        (Instant::now().duration_since(self.started).as_millis() as u64).max(1)
    }

    /// Records a sweep starting now.
    pub fn mark(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether a sweep is due (none within `every`); the caller that gets `true` has claimed
    /// it, and racing callers get `false`.
    pub fn claim(&self, every: Duration) -> bool {
        let now = self.now_ms();
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + every.as_millis() as u64;
        due && self
            .last
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_caller_claims_a_due_sweep_and_the_next_waits_for_the_interval() {
        let c = SweepClock::default();
        let every = Duration::from_secs(1);
        assert!(c.claim(every), "the first is due");
        assert!(!c.claim(every), "claimed");
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(c.claim(every));
        c.mark();
        assert!(!c.claim(every), "a sweep that just ran counts too");
    }
}
