//! Rate limits enforced inside the tenant, each a token bucket: publications per second for
//! the whole tenant (a plan limit; clients and the server API share it, but clients stop short
//! of the last [`API_RESERVE`] of the bucket, so end users publishing all they may cannot
//! starve the customer's backend) and new client sockets per second
//! (`client.connection_rate_limit`). Connection, channel and message-size
//! limits map onto Centrifugo's own options and are enforced where those are; what the tenant
//! may hold at once (history bytes, channels, presence entries, sockets) is
//! [`crate::budgets`].

use parking_lot::Mutex;
use tokio::time::Instant;

/// The share of a full publish bucket that only the server API may take: a client publish is
/// refused (111) while fewer tokens than this are left, so the backend's publishes get through
/// even while clients use up everything else (a bucket of fewer than 4 tokens keeps none).
pub const API_RESERVE: f64 = 0.25;

/// A token bucket refilled at `rate` per second with a burst of `rate`.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// (tokens, last refill, rate the bucket was filled for).
    state: Mutex<Option<(f64, Instant, u32)>>,
}

impl RateLimiter {
    /// Takes one token; false when the tenant is over `rate` per second.
    /// `rate == 0` means unlimited.
    pub fn try_acquire(&self, rate: u32) -> bool {
        self.try_acquire_leaving(rate, 0.0)
    }

    /// Takes one token only if `reserve` (a share of the full bucket, rounded down to whole
    /// tokens) is still left after it; false otherwise, or when over `rate` per second.
    pub fn try_acquire_leaving(&self, rate: u32, reserve: f64) -> bool {
        if rate == 0 {
            return true;
        }
        let now = Instant::now();
        let mut state = self.state.lock();
        // A new limit (a plan change) starts with a full bucket at the new rate.
        if state.is_none_or(|(_, _, r)| r != rate) {
            *state = Some((f64::from(rate), now, rate));
        }
        let rate = f64::from(rate);
        let Some((tokens, last, _)) = state.as_mut() else {
            return true;
        };
        let refill = now.duration_since(*last).as_secs_f64() * rate;
        *tokens = (*tokens + refill).min(rate);
        *last = now;
        if *tokens >= 1.0 + (rate * reserve).floor() {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_admits_exactly_the_rate_then_refills() {
        let l = RateLimiter::default();
        for _ in 0..5 {
            assert!(l.try_acquire(5));
        }
        assert!(
            !l.try_acquire(5),
            "the sixth within the same instant is refused"
        );
        tokio::time::advance(std::time::Duration::from_millis(200)).await;
        assert!(l.try_acquire(5), "one token back after 1/5 s");
        assert!(!l.try_acquire(5));
        assert!(l.try_acquire(0), "0 = unlimited");
        for _ in 0..10 {
            assert!(l.try_acquire(10), "a new rate starts with a full bucket");
        }
        assert!(!l.try_acquire(10));
    }

    #[tokio::test(start_paused = true)]
    async fn takers_leaving_a_reserve_stop_short_of_it_and_the_rest_take_it() {
        let l = RateLimiter::default();
        let taken = (0..100)
            .filter(|_| l.try_acquire_leaving(100, API_RESERVE))
            .count();
        assert_eq!(taken, 75, "clients stop at the last quarter");
        for _ in 0..25 {
            assert!(l.try_acquire(100), "the API takes the reserve");
        }
        assert!(!l.try_acquire(100));
        // Refilled tokens go to the API first: clients wait until the reserve is back.
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        assert!(
            !l.try_acquire_leaving(100, API_RESERVE),
            "10 left, under the reserve"
        );
        assert!(l.try_acquire(100));
        tokio::time::advance(std::time::Duration::from_millis(200)).await;
        assert!(l.try_acquire_leaving(100, API_RESERVE), "29 left, above it");
        // A small bucket keeps no reserve: a rate of 3 is all the clients'.
        let small = RateLimiter::default();
        assert_eq!(
            (0..3)
                .filter(|_| small.try_acquire_leaving(3, API_RESERVE))
                .count(),
            3
        );
    }
}
