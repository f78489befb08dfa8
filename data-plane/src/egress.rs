//! Where the tenant process may send its own HTTP requests (proxies to the app backend, JWKS
//! fetches). Standalone, anywhere. A hosted tenant runs with `ROTOR_EGRESS=public` (set by the
//! control plane): customer-configured URLs may then reach only public addresses — never
//! loopback, private networks, link-local (cloud metadata), or other special ranges — so a
//! project cannot use its proxies to probe the machine or network it runs on. Names are
//! checked after resolution (every address a name resolves to must be public), literal IPs
//! before the request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The process-wide egress rule, from `ROTOR_EGRESS` (`public` or unset/`any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Any address.
    Any,
    /// Public unicast addresses only.
    PublicOnly,
}

impl Egress {
    /// The rule of this process, read once.
    pub fn current() -> Self {
        static RULE: OnceLock<Egress> = OnceLock::new();
        *RULE.get_or_init(|| match std::env::var("ROTOR_EGRESS").as_deref() {
            Ok("public") => Egress::PublicOnly,
            _ => Egress::Any,
        })
    }

    /// A client builder that follows this rule for names it resolves.
    pub fn apply(self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        match self {
            Egress::Any => builder,
            Egress::PublicOnly => builder.dns_resolver(Arc::new(PublicResolver)),
        }
    }

    /// Refuses a URL whose host is a literal non-public address (names are checked when
    /// resolved).
    pub fn check(self, url: &reqwest::Url) -> Result<(), EgressError> {
        if self == Egress::Any {
            return Ok(());
        }
        let host = url.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let refused = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| !is_public(ip));
        if refused {
            Err(EgressError::NotPublic)
        } else {
            Ok(())
        }
    }
}

/// A request the egress rule does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("the address is not public; hosted projects may only call public addresses")]
    NotPublic,
}

/// Resolves with the system resolver and keeps public addresses only.
struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || !addrs.iter().all(|a| is_public(a.ip())) {
                return Err(Box::new(EgressError::NotPublic) as Box<_>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Public unicast: not loopback, private, shared (CGNAT), link-local, multicast, broadcast,
/// documentation, benchmarking, reserved or unspecified; IPv4-mapped IPv6 by its IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
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
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 (may map to private IPv4)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_private_hosts_are_refused_under_public_only() {
        let rule = Egress::PublicOnly;
        for url in [
            "http://127.0.0.1:8080/connect",
            "http://[::1]/x",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:5432/",
        ] {
            assert_eq!(
                rule.check(&url.parse().unwrap()),
                Err(EgressError::NotPublic),
                "{url}"
            );
        }
        assert!(rule
            .check(&"https://app.example.com/c".parse().unwrap())
            .is_ok());
        assert!(rule.check(&"https://1.1.1.1/c".parse().unwrap()).is_ok());
        assert!(Egress::Any
            .check(&"http://127.0.0.1/".parse().unwrap())
            .is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let r = PublicResolver;
        let err = r
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .err()
            .expect("localhost is not public");
        assert!(err.to_string().contains("not public"), "{err}");
    }

    use std::str::FromStr;
}
