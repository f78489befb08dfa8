//! Rate limits enforced inside the tenant, each a token bucket: publications per second for
//! the whole tenant (a plan limit; clients and the server API share it) and new client sockets
//! per second (`client.connection_rate_limit`). Connection, channel and message-size
//! limits map onto Centrifugo's own options and are enforced where those are; what the tenant
//! may hold at once (history bytes, channels, presence entries, sockets) is
//! [`crate::budgets`].

use parking_lot::Mutex;
use tokio::time::Instant;

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
        if *tokens >= 1.0 {
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
}
