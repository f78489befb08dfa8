//! How often a password may be tried and an account opened, whatever the surface (REST or
//! dashboard): failed logins per email and per client address, sign-ups per client address,
//! counted in memory in fixed windows. The one login and sign-up path that applies these is in
//! [`crate::rest::accounts`]; this module only counts and keys by client address.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use parking_lot::Mutex;
use tokio::time::Instant;

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

/// A wait as whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
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

/// The key an email is counted under: a digest, so a megabyte "email" costs 64 bytes and the
/// map holds no addresses.
fn email_key(email: &str) -> String {
    format!(
        "email:{}",
        crate::secrets::sha256_hex(&email.trim().to_ascii_lowercase())
    )
}

/// Keys a counter remembers at most: a flood from many addresses with ever-new emails must not
/// grow memory without bound, so past this (after forgetting ended windows) new keys wait.
const MAX_TRACKED_KEYS: usize = 200_000;

/// Events per key in fixed windows that start at a key's first event.
struct Counter {
    window: Duration,
    capacity: usize,
    entries: Mutex<Entries>,
}

struct Entries {
    /// Key → (events, start of its window).
    counts: HashMap<String, (u32, Instant)>,
    /// When ended windows were last forgotten.
    swept: Instant,
}

impl Counter {
    fn new(window: Duration) -> Self {
        Self::with_capacity(window, MAX_TRACKED_KEYS)
    }

    fn with_capacity(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            entries: Mutex::new(Entries {
                counts: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Counts one event for every key, unless one of them is already at its limit: then
    /// nothing is counted and the wait until that key's window ends is returned. Checking and
    /// counting under one lock means parallel requests cannot race past a limit.
    fn take(&self, keys: &[(String, u32)]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        // Forget ended windows, at most once a second (a sweep walks every key).
        if now.duration_since(entries.swept) >= Duration::from_secs(1) {
            entries
                .counts
                .retain(|_, (_, since)| now.duration_since(*since) < self.window);
            entries.swept = now;
        }
        let map = &mut entries.counts;
        let wait = keys
            .iter()
            .filter_map(|(key, limit)| {
                map.get(key)
                    .filter(|(count, since)| {
                        *count >= *limit && now.duration_since(*since) < self.window
                    })
                    .map(|(_, since)| self.window.saturating_sub(now.duration_since(*since)))
            })
            .max();
        if let Some(wait) = wait {
            return Err(wait.max(Duration::from_secs(1)));
        }
        let new_keys = keys.iter().filter(|(k, _)| !map.contains_key(k)).count();
        if map.len() + new_keys > self.capacity {
            tracing::warn!(tracked = map.len(), "login limiter full: new clients wait");
            return Err(Duration::from_secs(1));
        }
        for (key, _) in keys {
            let entry = map.entry(key.clone()).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
        Ok(())
    }

    /// Takes back one event from `key`.
    fn give_back(&self, key: &str) {
        if let Some(entry) = self.entries.lock().counts.get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    /// Forgets `key`.
    fn forget(&self, key: &str) {
        self.entries.lock().counts.remove(key);
    }
}

/// The login and sign-up counters shared by every surface.
pub struct AuthLimits {
    logins: Counter,
    signups: Counter,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            logins: Counter::new(LOGIN_WINDOW),
            signups: Counter::new(SIGNUP_WINDOW),
        }
    }
}

impl AuthLimits {
    /// Starts a login attempt. It counts as a failure from the start (so parallel guesses
    /// cannot check more passwords than the limit allows) until [`LoginAttempt::succeeded`]
    /// or [`LoginAttempt::not_counted`] says otherwise. `Err(wait)` when this email or
    /// address must wait; the password is then not checked at all.
    pub fn begin_login(
        &self,
        email: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginAttempt<'_>, Duration> {
        let mut keys = vec![(email_key(email), LOGIN_FAILURES_PER_EMAIL)];
        if let Some(ip) = client {
            keys.push((address_key(ip), LOGIN_FAILURES_PER_ADDRESS));
        }
        self.logins.take(&keys)?;
        Ok(LoginAttempt {
            limits: self,
            email: keys.swap_remove(0).0,
            address: keys.pop().map(|(k, _)| k),
        })
    }

    /// Counts a sign-up from `client`; `Err(wait)` when the address has opened enough
    /// accounts for now. Without a known address there is nothing to count.
    pub fn begin_signup(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        match client {
            Some(ip) => self.signups.take(&[(address_key(ip), SIGNUPS_PER_ADDRESS)]),
            None => Ok(()),
        }
    }
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
    pub fn succeeded(self) {
        self.limits.logins.forget(&self.email);
        self.not_counted_against_address();
    }

    /// The password was wrong: the attempt stays counted.
    pub fn failed(self) {}

    /// The password could not be checked (busy, database error): the attempt is taken back.
    pub fn not_counted(self) {
        self.limits.logins.give_back(&self.email);
        self.not_counted_against_address();
    }

    fn not_counted_against_address(&self) {
        if let Some(address) = &self.address {
            self.limits.logins.give_back(address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_counter_makes_new_keys_wait_and_keeps_counting_known_ones() {
        let c = Counter::with_capacity(Duration::from_secs(60), 3);
        for k in ["a", "b", "c"] {
            c.take(&[(k.to_owned(), 10)]).unwrap();
        }
        assert_eq!(c.take(&[("d".into(), 10)]), Err(Duration::from_secs(1)));
        c.take(&[("a".into(), 10)]).unwrap();
        // Once the windows end, room comes back.
        tokio::time::advance(Duration::from_secs(61)).await;
        c.take(&[("d".into(), 10)]).unwrap();
        assert_eq!(c.entries.lock().counts.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_email_is_blocked_after_five_failures_until_its_window_ends() {
        let l = AuthLimits::default();
        for _ in 0..LOGIN_FAILURES_PER_EMAIL {
            l.begin_login("A@x.io", ip("10.0.0.1")).unwrap().failed();
        }
        let wait = l.begin_login("a@x.io", ip("10.0.0.9")).err().unwrap();
        assert!(wait <= LOGIN_WINDOW && wait > Duration::from_secs(60));
        assert!(
            l.begin_login("b@x.io", ip("10.0.0.1")).is_ok(),
            "other emails from the address still try"
        );
        tokio::time::advance(LOGIN_WINDOW).await;
        assert!(l.begin_login("a@x.io", ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn a_success_forgets_the_emails_failures_and_is_not_counted_against_the_address() {
        let l = AuthLimits::default();
        let addr = ip("10.0.0.2");
        for _ in 0..LOGIN_FAILURES_PER_EMAIL - 1 {
            l.begin_login("a@x.io", addr).unwrap().failed();
        }
        l.begin_login("a@x.io", addr).unwrap().succeeded();
        for _ in 0..LOGIN_FAILURES_PER_EMAIL - 1 {
            l.begin_login("a@x.io", addr).unwrap().failed();
        }
        l.begin_login("a@x.io", addr).unwrap().not_counted();
        assert!(l.begin_login("a@x.io", addr).is_ok());
    }

    #[test]
    fn an_address_trying_many_emails_is_blocked_and_ipv6_counts_by_slash_64() {
        let l = AuthLimits::default();
        for n in 0..LOGIN_FAILURES_PER_ADDRESS {
            l.begin_login(&format!("user{n}@x.io"), ip("2001:db8::1"))
                .unwrap()
                .failed();
        }
        assert!(l.begin_login("fresh@x.io", ip("2001:db8::ffff")).is_err());
        assert!(l.begin_login("fresh@x.io", ip("2001:db8:0:1::1")).is_ok());
        assert!(l.begin_login("fresh@x.io", None).is_ok());
    }

    #[test]
    fn sign_ups_are_counted_per_address_only_when_it_is_known() {
        let l = AuthLimits::default();
        for _ in 0..SIGNUPS_PER_ADDRESS {
            l.begin_signup(ip("10.1.0.1")).unwrap();
        }
        assert!(l.begin_signup(ip("10.1.0.1")).is_err());
        assert!(l.begin_signup(ip("::ffff:10.1.0.1")).is_err(), "v4-mapped");
        assert!(l.begin_signup(ip("10.1.0.2")).is_ok());
        assert!(l.begin_signup(None).is_ok());
    }
}
