//! Which addresses and ports a hosted project's own HTTP requests may reach: the rule behind
//! the data plane's egress (`ROTOR_EGRESS=public`: proxies to the app backend, JWKS fetches)
//! and the control plane's "Test this endpoint" probe, kept here so both apply the same one.
//! Public unicast addresses only — never loopback, private networks, link-local (cloud
//! metadata), other special ranges, IPv6 forms that tunnel or translate to IPv4 (6to4,
//! Teredo, IPv4-compatible, NAT64 of a non-public IPv4), nor any address of this host's own
//! interfaces — and only ports 80 and 443 unless the operator widens them with
//! `ROTOR_EGRESS_PORTS` (a comma list, or `any`). Names must be checked after resolution by
//! the caller's resolver ([`is_allowed`] for every address), literal hosts and ports before the
//! request ([`check_host`]).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Refuses a `host` (a name, an IP literal, or a bracketed IPv6 literal) and `port` the
/// public-only rule does not allow with the port rule `ports` (names are checked when
/// resolved, literal addresses and `localhost` here).
pub fn check_host(host: &str, port: Option<u16>, ports: &Ports) -> Result<(), EgressError> {
    let port = port.ok_or(EgressError::NoPort)?;
    if !ports.allows(port) {
        return Err(EgressError::Port {
            port,
            allowed: ports.to_string(),
        });
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let refused = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| !is_allowed(ip));
    if refused {
        Err(EgressError::NotPublic)
    } else {
        Ok(())
    }
}

/// A request the egress rule does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("the address is not public; hosted projects may only call public addresses")]
    NotPublic,
    #[error("port {port} is not allowed; hosted projects may only call ports {allowed}")]
    Port { port: u16, allowed: String },
    #[error("the URL has no port and no scheme with a known one")]
    NoPort,
    #[error("ROTOR_EGRESS_PORTS: {0:?} is not a port (expected a comma list of ports, or any)")]
    BadPorts(String),
}

/// The ports hosted projects may call: `ROTOR_EGRESS_PORTS` (a comma list, or `any`), by
/// default 80 and 443.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// Every port.
    Any,
    /// These ports only.
    Only(Vec<u16>),
}

impl Default for Ports {
    fn default() -> Self {
        Ports::Only(vec![80, 443])
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ports::Any => f.write_str("any"),
            Ports::Only(ports) => {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                f.write_str(&list.join(", "))
            }
        }
    }
}

impl Ports {
    /// The rule of this process, read once; a malformed `ROTOR_EGRESS_PORTS` is logged and
    /// the default (80, 443) applies.
    pub fn current() -> &'static Ports {
        static PORTS: OnceLock<Ports> = OnceLock::new();
        PORTS.get_or_init(|| {
            let var = std::env::var("ROTOR_EGRESS_PORTS").ok();
            Ports::parse(var.as_deref()).unwrap_or_else(|e| {
                tracing::error!(error = %e, "egress ports fall back to 80 and 443");
                Ports::default()
            })
        })
    }

    /// Parses `any` or a comma list of ports (unset or blank: the default).
    pub fn parse(value: Option<&str>) -> Result<Self, EgressError> {
        let value = value.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Ok(Ports::default());
        }
        if value.eq_ignore_ascii_case("any") {
            return Ok(Ports::Any);
        }
        let mut ports = Vec::new();
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(EgressError::BadPorts(item.to_owned())),
            }
        }
        if ports.is_empty() {
            return Err(EgressError::BadPorts(value.to_owned()));
        }
        Ok(Ports::Only(ports))
    }

    /// Whether `port` may be called.
    pub fn allows(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Only(ports) => ports.contains(&port),
        }
    }
}

/// Whether a hosted project may call `ip`: public (see [`is_public`]) and none of this host's
/// own addresses.
pub fn is_allowed(ip: IpAddr) -> bool {
    allowed_given(ip, &own_addresses())
}

/// [`is_allowed`] with `own` as this host's addresses.
fn allowed_given(ip: IpAddr, own: &HashSet<IpAddr>) -> bool {
    is_public(ip) && !own.contains(&canonical(ip))
}

/// Public unicast: not loopback, private, shared (CGNAT), link-local, multicast, broadcast,
/// documentation, benchmarking, reserved or unspecified; IPv4-mapped IPv6 and NAT64 by their
/// IPv4; any other IPv6 outside global unicast (`2000::/3`) or inside a tunnelling or special
/// range.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

/// The IPv4 address an IPv6 one stands for when it is IPv4-mapped (`::ffff:a.b.c.d`) or
/// NAT64 of the well-known prefix (`64:ff9b::a.b.c.d`); else the address itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if in_prefix(v6, NAT64, 96) => IpAddr::V4(embedded_v4(v6)),
            None => ip,
        },
        v4 => v4,
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// NAT64's well-known prefix, `64:ff9b::/96` (RFC 6052).
const NAT64: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// Ranges inside global unicast `2000::/3` that are not public: (network, prefix length, what).
const NOT_PUBLIC_V6: [(Ipv6Addr, u32, &str); 6] = [
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "Teredo"),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        "benchmarking",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, "6to4"),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation",
    ),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, "ORCHID"),
];

/// Only global unicast (`2000::/3`) outside [`NOT_PUBLIC_V6`] is public. That leaves out,
/// among others, `::/96` (unspecified, loopback, IPv4-compatible), `fc00::/7` (unique local),
/// `fe80::/10` (link-local), `fec0::/10` (site-local), `ff00::/8` (multicast), `100::/64`
/// (discard) and NAT64 prefixes other than the well-known one (`64:ff9b:1::/48`).
fn public_v6(ip: Ipv6Addr) -> bool {
    in_prefix(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
        && !NOT_PUBLIC_V6
            .iter()
            .any(|(net, len, _)| in_prefix(ip, *net, *len))
}

/// Whether `ip` is inside `net/len`.
fn in_prefix(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// The IPv4 address in the low 32 bits.
fn embedded_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from(u128::from(ip) as u32)
}

/// How long a reading of this host's addresses is trusted before it is read again.
const OWN_ADDRESSES_TTL: Duration = Duration::from_secs(10);

/// This host's own interface addresses (IPv4-mapped forms folded to IPv4), read with
/// `getifaddrs` and cached for [`OWN_ADDRESSES_TTL`]. A failed reading keeps the last one.
fn own_addresses() -> Arc<HashSet<IpAddr>> {
    static CACHE: parking_lot::Mutex<Option<(Instant, Arc<HashSet<IpAddr>>)>> =
        parking_lot::Mutex::new(None);
    let mut cache = CACHE.lock();
    if let Some((read, set)) = cache.as_ref() {
        if read.elapsed() < OWN_ADDRESSES_TTL {
            return set.clone();
        }
    }
    let set = match read_own_addresses() {
        Ok(set) => Arc::new(set),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list this host's addresses");
            cache
                .as_ref()
                .map(|(_, set)| set.clone())
                .unwrap_or_default()
        }
    };
    *cache = Some((Instant::now(), set.clone()));
    set
}

fn read_own_addresses() -> nix::Result<HashSet<IpAddr>> {
    let mut set = HashSet::new();
    for interface in nix::ifaddrs::getifaddrs()? {
        let Some(address) = interface.address else {
            continue;
        };
        if let Some(v4) = address.as_sockaddr_in() {
            set.insert(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = address.as_sockaddr_in6() {
            set.insert(canonical(IpAddr::V6(v6.ip())));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.88.99.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn ipv4_compatible_ipv6_is_refused_whatever_ipv4_it_embeds() {
        for compatible in ["::a00:1", "::7f00:1", "::808:808", "::0.0.0.2"] {
            assert!(!is_public(ip(compatible)), "{compatible}");
        }
    }

    #[test]
    fn six_to_four_is_refused_whatever_ipv4_it_embeds() {
        for six_to_four in [
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2002:808:808::1",
            "2002::",
        ] {
            assert!(!is_public(ip(six_to_four)), "{six_to_four}");
        }
    }

    #[test]
    fn teredo_is_refused() {
        for teredo in ["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"] {
            assert!(!is_public(ip(teredo)), "{teredo}");
        }
        // Right next to Teredo, ordinary global unicast stays public.
        assert!(is_public(ip("2001:4860:4860::8888")));
    }

    #[test]
    fn site_local_ipv6_is_refused() {
        for site_local in ["fec0::1", "fec0:1:2::3", "feff::1"] {
            assert!(!is_public(ip(site_local)), "{site_local}");
        }
    }

    #[test]
    fn nat64_is_judged_by_the_ipv4_it_embeds() {
        for private in [
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::c0a8:101",
            "64:ff9b::",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        assert!(is_public(ip("64:ff9b::808:808")), "NAT64 of 8.8.8.8");
        // The local-use NAT64 prefix may translate to anything: never public.
        assert!(!is_public(ip("64:ff9b:1::808:808")));
    }

    #[test]
    fn other_special_ipv6_ranges_are_refused() {
        for special in [
            "100::1",
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
            "2001:10::1",
            "ff02::1",
            "::ffff:0:a00:1",
            "4000::1",
        ] {
            assert!(!is_public(ip(special)), "{special}");
        }
    }

    #[test]
    fn this_hosts_own_addresses_are_refused_in_every_form() {
        let own = HashSet::from([ip("8.8.4.4"), ip("2606:4700::6810:1")]);
        for mine in [
            "8.8.4.4",
            "::ffff:8.8.4.4",
            "64:ff9b::808:404",
            "2606:4700::6810:1",
        ] {
            assert!(is_public(ip(mine)), "{mine} is public");
            assert!(!allowed_given(ip(mine), &own), "{mine} is this host's");
        }
        assert!(allowed_given(ip("8.8.8.8"), &own));
    }

    #[test]
    fn the_real_interface_addresses_are_read_and_refused() {
        let own = own_addresses();
        assert!(own.contains(&ip("127.0.0.1")), "{own:?}");
        for mine in own.iter() {
            assert!(!is_allowed(*mine), "{mine}");
        }
        assert!(Arc::ptr_eq(&own, &own_addresses()), "cached between reads");
    }

    #[test]
    fn the_operator_widens_ports_with_a_list_or_any() {
        assert_eq!(Ports::parse(None), Ok(Ports::default()));
        assert_eq!(Ports::parse(Some(" ")), Ok(Ports::default()));
        assert_eq!(Ports::parse(Some("any")), Ok(Ports::Any));
        assert_eq!(Ports::parse(Some("ANY")), Ok(Ports::Any));
        assert_eq!(
            Ports::parse(Some("443, 8443,")),
            Ok(Ports::Only(vec![443, 8443]))
        );
        for bad in ["80,x", "0", "70000", ",", "-1"] {
            assert!(
                matches!(Ports::parse(Some(bad)), Err(EgressError::BadPorts(_))),
                "{bad}"
            );
        }
        let widened = Ports::Only(vec![8443]);
        assert!(check_host("1.1.1.1", Some(8443), &widened).is_ok());
        assert!(check_host("1.1.1.1", Some(443), &widened).is_err());
        assert!(check_host("1.1.1.1", Some(22), &Ports::Any).is_ok());
        assert_eq!(
            check_host("localhost", Some(80), &Ports::Any),
            Err(EgressError::NotPublic)
        );
        assert_eq!(
            check_host("[::1]", Some(80), &Ports::Any),
            Err(EgressError::NotPublic)
        );
        assert_eq!(
            check_host("app.example.com", None, &Ports::Any),
            Err(EgressError::NoPort)
        );
    }
}
