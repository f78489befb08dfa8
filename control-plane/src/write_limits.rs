//! The per-account budget of management writes: every authenticated request that may change
//! something (any method but GET, HEAD and OPTIONS, on the REST API and the dashboard alike)
//! takes a token from its account's bucket, and an empty bucket answers 429 with the wait
//! before the next token. The bucket refills at [`RATE_PER_SEC`] up to [`BURST`], which a
//! `terraform apply` of a few hundred resources stays within (the provider sends at most ten
//! requests at once, each a round trip to Postgres) while a loop hammering settings updates
//! is held to a rate Postgres shrugs off (the operator may set other numbers, see
//! [`WriteLimits::from_env`]). Buckets live in this process's memory: a restart or
//! another control-plane replica starts full, which is harmless for a rate limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::ids::AccountId;

/// Writes per second an account earns.
pub const RATE_PER_SEC: f64 = 20.0;
/// The most writes an account may make at once after a quiet spell.
pub const BURST: f64 = 100.0;
/// Buckets kept before full ones (accounts quiet for a while) are dropped.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Every account's bucket.
#[derive(Debug)]
pub struct WriteLimits {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<AccountId, Bucket>>,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self::new(RATE_PER_SEC, BURST)
    }
}

impl WriteLimits {
    /// The operator's budget: `ROTOR_ACCOUNT_WRITES_PER_SECOND` (default [`RATE_PER_SEC`]) and
    /// `ROTOR_ACCOUNT_WRITE_BURST` (default [`BURST`]).
    pub fn from_env() -> Self {
        let rate =
            crate::settings::positive_env("ROTOR_ACCOUNT_WRITES_PER_SECOND", RATE_PER_SEC as u32);
        let burst = crate::settings::positive_env("ROTOR_ACCOUNT_WRITE_BURST", BURST as u32);
        Self::new(f64::from(rate), f64::from(burst))
    }

    /// Buckets refilling at `rate` per second up to `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one write from `account`'s bucket, or says how long until one is there.
    pub fn charge(&self, account: &AccountId) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(account.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let earned = now.duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + earned).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

/// Whether a request of this method may change something (and so is charged).
pub fn is_write(method: &axum::http::Method) -> bool {
    use axum::http::Method;
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limits = WriteLimits::new(20.0, 100.0);
        let a = AccountId::generate();
        let b = AccountId::generate();
        for _ in 0..100 {
            limits.charge(&a).expect("within the burst");
        }
        let wait = limits.charge(&a).expect_err("the burst is spent");
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        // Another account's bucket is its own.
        limits.charge(&b).expect("b is untouched");
        tokio::time::advance(Duration::from_millis(100)).await;
        limits.charge(&a).expect("refilled");
        limits.charge(&a).expect("refilled");
        assert!(limits.charge(&a).is_err());
    }
}
