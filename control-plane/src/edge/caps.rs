//! The edge's connection accounting: one public listener serves every tenant, so no client
//! address and no flood of sockets may exhaust it. Each accepted connection is admitted here
//! or refused:
//!
//! - **per address** ([`EdgeLimits::max_per_address`], `ROTOR_EDGE_MAX_CONNECTIONS_PER_ADDRESS`):
//!   IPv4 addresses one by one, IPv6 by /64 (one host usually owns a whole /64); refused with
//!   429 Too Many Requests, since it is this client that holds too much;
//! - **overall** ([`EdgeLimits::max_connections`], `ROTOR_EDGE_MAX_CONNECTIONS`): refused with
//!   503 Service Unavailable;
//! - **open files**: a reserve of descriptors ([`reserve`]: 5 % of the soft `RLIMIT_NOFILE`, at
//!   least 64) is kept for everything that is not a client connection (upstream and hand-off
//!   sockets, Postgres, tenant admin calls, refusals themselves), so the edge still accepts,
//!   answers 503 and closes instead of failing `accept`. Descriptors are allocated lowest
//!   free first, so an accepted socket numbered `n` proves that `n` others are open: that
//!   number, compared with the limit, costs no system call.
//!
//! A connection counts from accept until the edge lets go of its socket ([`Admitted`] is an RAII
//! guard, so counts never leak): for requests served by the control plane and for spliced
//! (proxied) tenant traffic, until the connection closes; for a request handed to its tenant
//! over SCM_RIGHTS (a WebSocket, or any request the edge read whole), until the hand-off, after which the edge holds no copy and the tenant
//! enforces its own limits (its plan's connection cap and its own open-file reserve).
//! Per-address counts live in a map whose entries are removed at zero, so it never holds more
//! entries than there are admitted connections (at most `max_connections`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// The caps on the edge's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Connections held at once, over all clients.
    pub max_connections: usize,
    /// Connections held at once from one address (IPv4) or /64 (IPv6).
    pub max_per_address: usize,
}

/// Default for [`EdgeLimits::max_per_address`].
pub const DEFAULT_MAX_PER_ADDRESS: usize = 1000;

/// The largest default [`EdgeLimits::max_connections`], for hosts without an open-file limit.
const MAX_DEFAULT_CONNECTIONS: u64 = 1_000_000;

impl EdgeLimits {
    /// Default for [`EdgeLimits::max_connections`] under the soft open-file limit `limit`: 90 %
    /// of what the [`reserve`] leaves (the rest stays for upstream sockets of proxied traffic).
    pub fn default_max_connections(limit: u64) -> usize {
        let usable = limit.saturating_sub(reserve(limit));
        let max = (usable / 10 * 9 + usable % 10 * 9 / 10).clamp(1, MAX_DEFAULT_CONNECTIONS);
        usize::try_from(max).unwrap_or(usize::MAX)
    }

    /// The defaults under the soft open-file limit `limit`.
    pub fn defaults(limit: u64) -> Self {
        Self {
            max_connections: Self::default_max_connections(limit),
            max_per_address: DEFAULT_MAX_PER_ADDRESS,
        }
    }
}

/// Descriptors kept free for everything that is not a client connection: 64, or 5 % of a
/// large limit (the same budget a data plane keeps).
pub fn reserve(limit: u64) -> u64 {
    (limit / 20).max(64)
}

/// Whether a connection whose socket got descriptor number `fd` leaves the reserve free under
/// the soft limit `limit` (the descriptors below `fd` are all open).
pub fn fits_open_files(fd: u64, limit: u64) -> bool {
    fd.saturating_add(reserve(limit)) < limit
}

/// Why a connection was refused at accept; also its metric label and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The client's address (or IPv6 /64) already holds `max_per_address` connections.
    #[error("too many connections from this address")]
    PerAddress,
    /// The edge already holds `max_connections` connections.
    #[error("the edge is at its connection capacity")]
    MaxConnections,
    /// The process is within its reserve of its open-file limit.
    #[error("the edge is near its open-file limit")]
    OpenFiles,
}

impl Refusal {
    /// Every refusal, in metric order.
    pub const ALL: [Refusal; 3] = [Self::PerAddress, Self::MaxConnections, Self::OpenFiles];

    /// The `reason` label of `rotor_edge_connections_refused_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::PerAddress => "per_address",
            Self::MaxConnections => "max_connections",
            Self::OpenFiles => "open_files",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::PerAddress => 0,
            Self::MaxConnections => 1,
            Self::OpenFiles => 2,
        }
    }

    /// The whole HTTP answer: 429 for one address over its cap, 503 for a full edge; always
    /// `Retry-After: 1` and `Connection: close`, with the edge's JSON error body.
    pub fn response(self) -> String {
        let (status, code, message) = match self {
            Self::PerAddress => (
                "429 Too Many Requests",
                "too_many_connections_from_address",
                "too many connections from this address; retry shortly",
            ),
            Self::MaxConnections | Self::OpenFiles => (
                "503 Service Unavailable",
                "too_many_connections",
                "this server is at its connection capacity; retry shortly",
            ),
        };
        let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

/// What a client is counted under: an IPv4 address (IPv4-mapped IPv6 included), or the first
/// 64 bits of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    V4(u32),
    V6Net(u64),
}

impl AddressKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The edge's connection counts and caps; shared by the accept loop and every connection.
#[derive(Debug)]
pub struct Connections {
    limits: EdgeLimits,
    file_limit: u64,
    counts: Mutex<Counts>,
    accepted: AtomicU64,
    refused: [AtomicU64; 3],
    accept_errors: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<AddressKey, usize>,
}

/// The counters and gauges of [`Connections`] at one moment (see [`super::metrics`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub limits: EdgeLimits,
    pub file_limit: u64,
    pub file_reserve: u64,
    /// Connections the edge holds now.
    pub open: usize,
    /// Addresses (IPv6 /64s) with at least one connection.
    pub addresses: usize,
    pub accepted: u64,
    /// Refusals by [`Refusal::ALL`] order.
    pub refused: [u64; 3],
    pub accept_errors: u64,
}

impl Connections {
    /// Caps `limits`, under the soft open-file limit `file_limit`.
    pub fn new(limits: EdgeLimits, file_limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limits,
            file_limit,
            counts: Mutex::new(Counts::default()),
            accepted: AtomicU64::new(0),
            refused: Default::default(),
            accept_errors: AtomicU64::new(0),
        })
    }

    /// Admits a connection from `ip` whose socket is descriptor `fd`, or says why not (and
    /// counts the refusal). The connection counts until the returned guard is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, fd: u64) -> Result<Admitted, Refusal> {
        let admitted = self.try_admit(ip, fd);
        match &admitted {
            Ok(_) => self.accepted.fetch_add(1, Ordering::Relaxed),
            Err(refusal) => self.refused[refusal.index()].fetch_add(1, Ordering::Relaxed),
        };
        admitted
    }

    fn try_admit(self: &Arc<Self>, ip: IpAddr, fd: u64) -> Result<Admitted, Refusal> {
        if !fits_open_files(fd, self.file_limit) {
            return Err(Refusal::OpenFiles);
        }
        let key = AddressKey::of(ip);
        let mut counts = self.counts.lock();
        let of_address = counts.per_address.get(&key).copied().unwrap_or(0);
        if of_address >= self.limits.max_per_address {
            return Err(Refusal::PerAddress);
        }
        if counts.total >= self.limits.max_connections {
            return Err(Refusal::MaxConnections);
        }
        counts.total += 1;
        counts.per_address.insert(key, of_address + 1);
        drop(counts);
        Ok(Admitted {
            connections: self.clone(),
            key,
        })
    }

    /// Counts a failed `accept`.
    pub fn accept_failed(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The caps in force.
    pub fn limits(&self) -> EdgeLimits {
        self.limits
    }

    /// The counters and gauges now.
    pub fn snapshot(&self) -> Snapshot {
        let (open, addresses) = {
            let counts = self.counts.lock();
            (counts.total, counts.per_address.len())
        };
        Snapshot {
            limits: self.limits,
            file_limit: self.file_limit,
            file_reserve: reserve(self.file_limit),
            open,
            addresses,
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.each_ref().map(|c| c.load(Ordering::Relaxed)),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
        }
    }

    fn release(&self, key: AddressKey) {
        let mut counts = self.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        let map = &mut counts.per_address;
        if let Some(n) = map.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&key);
                // Give memory back after a flood from many addresses has gone.
                if map.capacity() > 1024 && map.len() < map.capacity() / 4 {
                    map.shrink_to(map.len() * 2);
                }
            }
        }
    }
}

/// One admitted connection: counted until dropped.
#[derive(Debug)]
pub struct Admitted {
    connections: Arc<Connections>,
    key: AddressKey,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_leave_the_reserve_and_a_tenth_of_the_rest_free() {
        assert_eq!(reserve(256), 64);
        assert_eq!(reserve(20_000), 1_000);
        assert_eq!(EdgeLimits::default_max_connections(256), 172);
        assert_eq!(EdgeLimits::default_max_connections(1024), 864);
        assert_eq!(EdgeLimits::default_max_connections(20_000), 17_100);
        assert_eq!(EdgeLimits::default_max_connections(10), 1);
        assert_eq!(EdgeLimits::default_max_connections(u64::MAX), 1_000_000);
        assert!(fits_open_files(191, 256) && !fits_open_files(192, 256));
        assert!(fits_open_files(1 << 40, u64::MAX));
    }

    #[test]
    fn one_address_is_capped_and_others_still_get_in() {
        let c = Connections::new(
            EdgeLimits {
                max_connections: 10,
                max_per_address: 2,
            },
            1024,
        );
        let a = c.admit(ip("192.0.2.1"), 10).unwrap();
        let _b = c.admit(ip("192.0.2.1"), 11).unwrap();
        assert_eq!(
            c.admit(ip("192.0.2.1"), 12).unwrap_err(),
            Refusal::PerAddress
        );
        assert_eq!(
            c.admit(ip("::ffff:192.0.2.1"), 12).unwrap_err(),
            Refusal::PerAddress,
            "IPv4-mapped addresses are the same client"
        );
        let _other = c.admit(ip("192.0.2.2"), 12).unwrap();
        drop(a);
        let _again = c.admit(ip("192.0.2.1"), 13).unwrap();
        let s = c.snapshot();
        assert_eq!((s.open, s.addresses, s.accepted), (3, 2, 4));
        assert_eq!(s.refused, [2, 0, 0]);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let c = Connections::new(
            EdgeLimits {
                max_connections: 10,
                max_per_address: 2,
            },
            1024,
        );
        let _a = c.admit(ip("2001:db8:1:2::1"), 10).unwrap();
        let _b = c.admit(ip("2001:db8:1:2:ffff::9"), 11).unwrap();
        assert_eq!(
            c.admit(ip("2001:db8:1:2::3"), 12).unwrap_err(),
            Refusal::PerAddress
        );
        let _c = c.admit(ip("2001:db8:1:3::1"), 12).unwrap();
    }

    #[test]
    fn the_overall_cap_and_the_open_file_reserve_refuse_everyone() {
        let c = Connections::new(
            EdgeLimits {
                max_connections: 2,
                max_per_address: 10,
            },
            256,
        );
        let _a = c.admit(ip("192.0.2.1"), 10).unwrap();
        let b = c.admit(ip("192.0.2.2"), 11).unwrap();
        assert_eq!(
            c.admit(ip("192.0.2.3"), 12).unwrap_err(),
            Refusal::MaxConnections
        );
        drop(b);
        assert_eq!(
            c.admit(ip("192.0.2.3"), 192).unwrap_err(),
            Refusal::OpenFiles
        );
        let _c = c.admit(ip("192.0.2.3"), 191).unwrap();
        assert_eq!(c.snapshot().refused, [0, 1, 1]);
    }

    #[test]
    fn counts_return_to_zero_and_the_map_empties() {
        let c = Connections::new(
            EdgeLimits {
                max_connections: 100_000,
                max_per_address: 10,
            },
            u64::MAX,
        );
        let guards: Vec<_> = (0..5000u32)
            .map(|i| c.admit(IpAddr::from(i.to_be_bytes()), 10).unwrap())
            .collect();
        assert_eq!(c.snapshot().addresses, 5000);
        drop(guards);
        let s = c.snapshot();
        assert_eq!((s.open, s.addresses), (0, 0));
        assert!(c.counts.lock().per_address.capacity() <= 1024);
    }

    #[test]
    fn refusals_are_complete_http_answers_that_close() {
        for r in Refusal::ALL {
            let resp = r.response();
            let (head, body) = resp.split_once("\r\n\r\n").unwrap();
            assert!(head.contains("\r\nRetry-After: 1\r\n"), "{head}");
            assert!(head.contains("\r\nConnection: close"), "{head}");
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["error"]["code"].is_string());
        }
        assert!(Refusal::PerAddress.response().starts_with("HTTP/1.1 429 "));
        assert!(Refusal::MaxConnections
            .response()
            .starts_with("HTTP/1.1 503 "));
        assert!(Refusal::OpenFiles.response().starts_with("HTTP/1.1 503 "));
    }
}
