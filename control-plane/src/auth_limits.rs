//! How often a password may be tried, an account opened and a password reset link asked for,
//! whatever the surface (REST or dashboard): failed logins per email and per client address,
//! sign-ups per client address, reset requests per email and per client address, counted in fixed windows in Postgres (`auth_counters`), so the counts survive a restart and
//! every control-plane process behind a load balancer shares one budget. The one login and
//! sign-up path that applies these is in [`crate::service::accounts`]; this module only counts and
//! keys by client address.
//!
//! Each attempt is one statement: the keys' rows are locked, and unless one is at its limit
//! every key is counted by one upsert (`INSERT … ON CONFLICT … DO UPDATE … RETURNING`).
//! Parallel attempts, in one process or in several, queue on the rows' locks and cannot race
//! past a limit, and a refused attempt counts nothing. Emails are stored only as SHA-256 digests of their normalised form. A refusal is
//! also remembered in memory until its window ends, so a flood on a blocked email or address
//! costs no round trip; that cache can only be stricter than the database, never looser (a
//! take-back or success on a key drops its entry). Without Postgres nothing is admitted: the
//! caller answers 503 (a login needs the database anyway).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use parking_lot::Mutex;
use sqlx::PgPool;

use crate::web::PeerAddr;

/// Failed logins allowed per email address within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_EMAIL: u32 = 5;
/// Failed logins allowed per client address within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_ADDRESS: u32 = 20;
/// How long failed logins are remembered.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sign-ups allowed per client address within [`SIGNUP_WINDOW`].
pub const SIGNUPS_PER_ADDRESS: u32 = 10;
/// How long sign-ups are remembered.
pub const SIGNUP_WINDOW: Duration = Duration::from_secs(3600);
/// Password reset links asked for per email address within [`RESET_WINDOW`] (whether or not
/// an account has that address, so the limit tells nothing about accounts).
pub const RESETS_PER_EMAIL: u32 = 3;
/// Password reset links asked for per client address within [`RESET_WINDOW`].
pub const RESETS_PER_ADDRESS: u32 = 10;
/// How long reset requests are remembered.
pub const RESET_WINDOW: Duration = Duration::from_secs(3600);
/// Keys counted per kind at most (approximately, across processes: each knows the count of
/// its last sweep plus its own inserts since). Past this, new keys wait while known ones keep
/// counting, so a flood from many addresses with ever-new emails cannot grow the table
/// without bound.
pub const MAX_TRACKED_KEYS: usize = 200_000;
/// How often a process deletes ended windows and recounts the table.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Refusals remembered in memory at most.
const MAX_CACHED_REFUSALS: usize = 10_000;

/// A wait as whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Why an attempt was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Over a limit: come back after this long (429 with `Retry-After`).
    #[error("too many attempts; retry in {0:?}")]
    Wait(Duration),
    /// The counters could not be read or written: nothing is admitted (503).
    #[error("login and sign-up counters unavailable: {0}")]
    Db(#[from] sqlx::Error),
}

/// The address a request came from, for the limits: the TCP peer the edge saw ([`PeerAddr`]),
/// else axum's `ConnectInfo` when the app is served directly; `None` when neither is known
/// (in-process callers such as tests and the demo), and then only per-email limits apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ext = &parts.extensions;
        Ok(Self(
            ext.get::<PeerAddr>()
                .map(|PeerAddr(a)| a.ip())
                .or_else(|| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())),
        ))
    }
}

/// The key an address is counted under: IPv4 addresses one by one, IPv6 by /64 (one host
/// usually owns a whole /64, so counting single addresses would not limit it).
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The key an email is counted under: a digest of its normalised form, so a megabyte "email"
/// costs 64 bytes and the table holds no addresses.
fn email_key(email: &str) -> String {
    format!(
        "email:{}",
        crate::secrets::sha256_hex(&email.trim().to_ascii_lowercase())
    )
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Login,
    Signup,
    Reset,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::Signup => "signup",
            Kind::Reset => "reset",
        }
    }

    fn window(self) -> Duration {
        match self {
            Kind::Login => LOGIN_WINDOW,
            Kind::Signup => SIGNUP_WINDOW,
            Kind::Reset => RESET_WINDOW,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One attempt as one statement: the keys' rows are locked (in key order, so concurrent
/// attempts queue instead of deadlocking), and unless one is at its limit (or, when the table
/// is full, one is new) every key is counted by an upsert. Answers the keys at their limit with
/// the seconds until their window ends, or the keys counted and whether each was new. A row
/// that did not exist when the statement began is not locked by it; the upsert checks its
/// limit again, and a key it does not count is left out of the answer.
const TAKE: &str = "\
WITH wanted AS (
  SELECT w.key, w.lim FROM unnest($2::text[], $3::int[]) AS w(key, lim)
), cur AS (
  SELECT c.key, c.count, c.window_ends FROM auth_counters c
   WHERE c.kind = $1::text AND c.key = ANY($2::text[])
   ORDER BY c.key FOR UPDATE
), over AS (
  SELECT cur.key, EXTRACT(EPOCH FROM cur.window_ends - now())::float8 AS wait
    FROM cur JOIN wanted USING (key)
   WHERE cur.window_ends > now() AND cur.count >= wanted.lim
), counted AS (
  INSERT INTO auth_counters AS c (kind, key, count, window_ends)
  SELECT $1::text, wanted.key, 1, now() + make_interval(secs => $4::float8)
    FROM wanted
   WHERE NOT EXISTS (SELECT 1 FROM over)
     AND (NOT $5::bool OR (SELECT count(*) FROM cur) = cardinality($2::text[]))
   ORDER BY wanted.key
  ON CONFLICT (kind, key) DO UPDATE SET
    count = CASE WHEN c.window_ends <= now() THEN 1 ELSE c.count + 1 END,
    window_ends = CASE WHEN c.window_ends <= now() THEN excluded.window_ends
                       ELSE c.window_ends END
  WHERE c.window_ends <= now()
     OR c.count < (SELECT w.lim FROM wanted w WHERE w.key = excluded.key)
  RETURNING c.key, (c.xmax = 0) AS inserted
)
SELECT key, wait, false FROM over
UNION ALL
SELECT key, NULL, inserted FROM counted";

/// Rows per kind as last counted, plus this process's inserts since; and when that was.
#[derive(Default)]
struct Tracked {
    rows: [AtomicUsize; 3],
    swept: Mutex<Option<Instant>>,
    /// Held by a sweep, so an older count never overwrites a newer one.
    sweeping: tokio::sync::Mutex<()>,
}

/// The login and sign-up counters shared by every surface (and every process, through
/// Postgres).
pub struct AuthLimits {
    pool: PgPool,
    capacity: usize,
    tracked: Arc<Tracked>,
    /// Keys the database refused, until their window ends.
    refused: Mutex<HashMap<(Kind, String), Instant>>,
}

impl AuthLimits {
    /// Counters over `pool` (the `auth_counters` table).
    pub fn new(pool: PgPool) -> Self {
        Self::with_capacity(pool, MAX_TRACKED_KEYS)
    }

    /// Counters that track at most `capacity` keys per kind (tests use a small one).
    pub fn with_capacity(pool: PgPool, capacity: usize) -> Self {
        Self {
            pool,
            capacity,
            tracked: Arc::default(),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a login attempt. It counts as a failure from the start (so parallel guesses
    /// cannot check more passwords than the limit allows) until [`LoginAttempt::succeeded`]
    /// or [`LoginAttempt::not_counted`] says otherwise. [`LimitError::Wait`] when this email
    /// or address must wait; the password is then not checked at all.
    pub async fn begin_login(
        &self,
        email: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginAttempt<'_>, LimitError> {
        let email = email_key(email);
        let address = client.map(address_key);
        let mut keys = vec![(email.clone(), LOGIN_FAILURES_PER_EMAIL)];
        if let Some(a) = &address {
            keys.push((a.clone(), LOGIN_FAILURES_PER_ADDRESS));
        }
        self.take(Kind::Login, &keys).await?;
        Ok(LoginAttempt {
            limits: self,
            email,
            address,
        })
    }

    /// Counts a sign-up from `client`; [`LimitError::Wait`] when the address has opened
    /// enough accounts for now. Without a known address there is nothing to count.
    pub async fn begin_signup(&self, client: Option<IpAddr>) -> Result<(), LimitError> {
        match client {
            Some(ip) => {
                self.take(Kind::Signup, &[(address_key(ip), SIGNUPS_PER_ADDRESS)])
                    .await
            }
            None => Ok(()),
        }
    }

    /// Counts a request for a password reset link for `email` from `client`;
    /// [`LimitError::Wait`] when the email or the address has asked often enough for now.
    /// Counted whether or not an account has the email.
    pub async fn begin_reset(&self, email: &str, client: Option<IpAddr>) -> Result<(), LimitError> {
        let mut keys = vec![(email_key(email), RESETS_PER_EMAIL)];
        if let Some(ip) = client {
            keys.push((address_key(ip), RESETS_PER_ADDRESS));
        }
        self.take(Kind::Reset, &keys).await
    }

    /// Forgets the failed logins of `email` (after its password was reset: the owner can log
    /// in with the new one at once).
    pub async fn forget_login_failures(&self, email: &str) {
        self.forget(&email_key(email)).await;
    }

    /// Deletes every ended window and recounts the keys (each process does this at most once
    /// a minute on its own; returns how many rows were deleted).
    pub async fn sweep(&self) -> Result<u64, sqlx::Error> {
        *self.tracked.swept.lock() = Some(Instant::now());
        sweep(&self.pool, &self.tracked).await
    }

    /// Counts one event for every key, unless one of them is at its limit: then nothing is
    /// counted and the wait until the last such window ends is returned.
    async fn take(&self, kind: Kind, keys: &[(String, u32)]) -> Result<(), LimitError> {
        if let Some(wait) = self.cached_refusal(kind, keys) {
            return Err(LimitError::Wait(wait));
        }
        self.sweep_now_and_then();
        let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let limits: Vec<i32> = keys
            .iter()
            .map(|(_, l)| i32::try_from(*l).unwrap_or(i32::MAX))
            .collect();
        // A key whose first rows were written by concurrent attempts can be left uncounted
        // while the others were counted: those are taken back and the attempt asked again
        // (the rows exist then, so it is decided under their locks).
        for _ in 0..3 {
            let full = self.tracked.rows[kind.index()].load(Ordering::Relaxed) >= self.capacity;
            let rows: Vec<(String, Option<f64>, bool)> = sqlx::query_as(TAKE)
                .bind(kind.as_str())
                .bind(&names)
                .bind(&limits)
                .bind(kind.window().as_secs_f64())
                .bind(full)
                .fetch_all(&self.pool)
                .await?;
            let over: Vec<(&str, Duration)> = rows
                .iter()
                .filter_map(|(key, wait, _)| {
                    wait.map(|secs| (key.as_str(), Duration::from_secs_f64(secs.max(1.0))))
                })
                .collect();
            if let Some(wait) = over.iter().map(|(_, w)| *w).max() {
                self.remember_refusals(kind, &over);
                return Err(LimitError::Wait(wait));
            }
            let inserted = rows.iter().filter(|r| r.2).count();
            self.tracked.rows[kind.index()].fetch_add(inserted, Ordering::Relaxed);
            if rows.len() == keys.len() {
                return Ok(());
            }
            if full && rows.is_empty() {
                tracing::warn!(kind = kind.as_str(), "auth counters full: new clients wait");
                return Err(LimitError::Wait(Duration::from_secs(1)));
            }
            let counted: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            self.give_back(kind, &counted).await;
        }
        Err(LimitError::Wait(Duration::from_secs(1)))
    }

    /// The wait a remembered refusal of one of `keys` still imposes.
    fn cached_refusal(&self, kind: Kind, keys: &[(String, u32)]) -> Option<Duration> {
        let now = Instant::now();
        let refused = self.refused.lock();
        keys.iter()
            .filter_map(|(k, _)| refused.get(&(kind, k.clone())))
            .filter_map(|until| until.checked_duration_since(now))
            .filter(|wait| !wait.is_zero())
            .max()
            .map(|wait| wait.max(Duration::from_secs(1)))
    }

    fn remember_refusals(&self, kind: Kind, over: &[(&str, Duration)]) {
        let now = Instant::now();
        let mut refused = self.refused.lock();
        if refused.len() + over.len() > MAX_CACHED_REFUSALS {
            refused.retain(|_, until| *until > now);
        }
        for (key, wait) in over {
            if refused.len() >= MAX_CACHED_REFUSALS {
                return;
            }
            refused.insert((kind, (*key).to_owned()), now + *wait);
        }
    }

    /// Starts a sweep in the background when the last one is a minute old (or none ran).
    fn sweep_now_and_then(&self) {
        {
            let mut swept = self.tracked.swept.lock();
            if swept.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
                return;
            }
            *swept = Some(Instant::now());
        }
        let (pool, tracked) = (self.pool.clone(), self.tracked.clone());
        tokio::spawn(async move {
            if let Err(e) = sweep(&pool, &tracked).await {
                tracing::warn!(error = %e, "auth counter sweep failed");
            }
        });
    }

    /// Takes back one event from each of `keys` (and forgets remembered refusals of them).
    async fn give_back(&self, kind: Kind, keys: &[&str]) {
        if keys.is_empty() {
            return;
        }
        {
            let mut refused = self.refused.lock();
            for key in keys {
                refused.remove(&(kind, (*key).to_owned()));
            }
        }
        let done = sqlx::query(
            "UPDATE auth_counters SET count = greatest(count - 1, 0) \
             WHERE kind = $1 AND key = ANY($2) AND window_ends > now()",
        )
        .bind(kind.as_str())
        .bind(keys)
        .execute(&self.pool)
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "an attempt could not be taken back; it stays counted");
        }
    }

    /// Forgets `key`'s failures.
    async fn forget(&self, key: &str) {
        self.refused.lock().remove(&(Kind::Login, key.to_owned()));
        let done = sqlx::query("DELETE FROM auth_counters WHERE kind = $1 AND key = $2")
            .bind(Kind::Login.as_str())
            .bind(key)
            .execute(&self.pool)
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "failed logins could not be forgotten; they stay counted");
        }
    }
}

async fn sweep(pool: &PgPool, tracked: &Tracked) -> Result<u64, sqlx::Error> {
    let _one_at_a_time = tracked.sweeping.lock().await;
    let deleted = sqlx::query("DELETE FROM auth_counters WHERE window_ends <= now()")
        .execute(pool)
        .await?
        .rows_affected();
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM auth_counters GROUP BY kind")
            .fetch_all(pool)
            .await?;
    for kind in [Kind::Login, Kind::Signup, Kind::Reset] {
        let n = counts
            .iter()
            .find(|(k, _)| k == kind.as_str())
            .map_or(0, |(_, n)| usize::try_from(*n).unwrap_or(usize::MAX));
        tracked.rows[kind.index()].store(n, Ordering::Relaxed);
    }
    Ok(deleted)
}

/// A login attempt in progress (counted as failed unless told otherwise).
#[must_use = "an attempt counts as failed unless resolved"]
pub struct LoginAttempt<'a> {
    limits: &'a AuthLimits,
    email: String,
    address: Option<String>,
}

impl LoginAttempt<'_> {
    /// The password was right: the email's failures are forgotten and this attempt does not
    /// count against the address.
    pub async fn succeeded(self) {
        self.limits.forget(&self.email).await;
        if let Some(address) = &self.address {
            self.limits.give_back(Kind::Login, &[address]).await;
        }
    }

    /// The password was wrong: the attempt stays counted.
    pub fn failed(self) {}

    /// The password could not be checked (busy, database error): the attempt is taken back.
    pub async fn not_counted(self) {
        let mut keys = vec![self.email.as_str()];
        keys.extend(self.address.as_deref());
        self.limits.give_back(Kind::Login, &keys).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        address_key(s.parse().unwrap())
    }

    #[test]
    fn ipv4_counts_per_address_ipv6_per_slash_64_and_mapped_addresses_as_ipv4() {
        assert_eq!(key("10.1.0.1"), "ip:10.1.0.1");
        assert_eq!(key("::ffff:10.1.0.1"), "ip:10.1.0.1");
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        assert!(key("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff").len() <= 100);
    }

    #[test]
    fn emails_are_keyed_by_a_digest_of_their_normalised_form() {
        assert_eq!(email_key(" A@X.io "), email_key("a@x.io"));
        let k = email_key(&"a".repeat(1 << 20));
        assert_eq!(k.len(), "email:".len() + 64);
        assert!(!email_key("a@x.io").contains("x.io"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(900)), 900);
    }
}
