//! Where the tenant process may send its own HTTP requests (proxies to the app backend, JWKS
//! fetches). Standalone, anywhere. A hosted tenant runs with `ROTOR_EGRESS=public` (set by the
//! control plane): customer-configured URLs may then reach only public addresses — never
//! loopback, private networks, link-local (cloud metadata), other special ranges, IPv6 forms
//! that tunnel or translate to IPv4 (6to4, Teredo, IPv4-compatible, NAT64 of a non-public
//! IPv4), nor any address of this host's own interfaces — and only ports 80 and 443 unless
//! the operator widens them with `ROTOR_EGRESS_PORTS` (a comma list, or `any`), so a project
//! cannot use its proxies to probe the machine or network it runs on. Names are checked after
//! resolution (every address a name resolves to must be allowed), literal IPs and ports
//! before the request.
//!
//! The address and port rules themselves are [`rotor_tenant_config::egress`], shared with the
//! control plane's endpoint probe. HTTP clients follow the rule through their resolver
//! ([`Egress::http_client`]); other TCP clients (gRPC proxies) connect through
//! [`Egress::connect`], which checks the port and every resolved address before it dials.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
pub use rotor_tenant_config::egress::{is_allowed, is_public, EgressError, Ports};

/// The process-wide egress rule, from `ROTOR_EGRESS` (`public` or unset/`any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Any address.
    Any,
    /// Public unicast addresses only, not this host's own, on the allowed ports.
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

    /// The HTTP client for customer-configured URLs (proxies, webhooks): this rule on every
    /// name it resolves, no redirects (a redirect could point anywhere), no HTTP proxy from the
    /// environment, idle connections kept a minute. It fails closed: a client that cannot be
    /// built with the rule is never replaced by one without it (the process stops instead —
    /// reqwest fails only when its TLS roots cannot load).
    pub fn http_client(self, user_agent: &str) -> reqwest::Client {
        self.apply(reqwest::Client::builder())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .user_agent(user_agent)
            .build()
            .expect("the HTTP client for customer URLs cannot be built")
    }

    /// Refuses a URL whose port is not allowed ([`Ports::current`]) or whose host is a literal
    /// address that is not allowed (names are checked when resolved).
    pub fn check(self, url: &reqwest::Url) -> Result<(), EgressError> {
        match self {
            Egress::Any => Ok(()),
            Egress::PublicOnly => check_url(url, Ports::current()),
        }
    }
}

impl Egress {
    /// Refuses `host:port` when the port is not allowed or the host is a literal address that
    /// is not (names are checked when [`Egress::connect`] resolves them).
    pub fn check_authority(self, host: &str, port: u16) -> Result<(), EgressError> {
        match self {
            Egress::Any => Ok(()),
            Egress::PublicOnly => {
                rotor_tenant_config::egress::check_host(host, Some(port), Ports::current())
            }
        }
    }

    /// Opens a TCP connection to `host:port` under this rule: the port and a literal host are
    /// checked first, then every address the name resolves to must be allowed, and only then
    /// is an address dialled (the first that answers). Fails closed: nothing is dialled when
    /// any check fails.
    pub async fn connect(self, host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let refused = |e: EgressError| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        self.check_authority(bare, port).map_err(refused)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port)).await?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name resolves to no address",
            ));
        }
        if self == Egress::PublicOnly && !addrs.iter().all(|a| is_allowed(a.ip())) {
            return Err(refused(EgressError::NotPublic));
        }
        let mut last = None;
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address answered")))
    }
}

/// [`Egress::check`] under [`Egress::PublicOnly`] with the port rule `ports`.
fn check_url(url: &reqwest::Url, ports: &Ports) -> Result<(), EgressError> {
    rotor_tenant_config::egress::check_host(
        url.host_str().unwrap_or_default(),
        url.port_or_known_default(),
        ports,
    )
}

/// Resolves with the system resolver and keeps allowed addresses only.
struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || !addrs.iter().all(|a| is_allowed(a.ip())) {
                return Err(Box::new(EgressError::NotPublic) as Box<_>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ports_80_and_443_are_allowed_by_default() {
        let ports = Ports::default();
        for ok in [
            "http://1.1.1.1/c",
            "https://1.1.1.1/c",
            "http://app.example.com:80/c",
            "https://app.example.com:443/c",
        ] {
            assert_eq!(check_url(&ok.parse().unwrap(), &ports), Ok(()), "{ok}");
        }
        for (url, port) in [
            ("http://1.1.1.1:8080/c", 8080),
            ("https://app.example.com:22/c", 22),
            ("http://app.example.com:6379/", 6379),
        ] {
            let err = check_url(&url.parse().unwrap(), &ports).unwrap_err();
            assert_eq!(
                err,
                EgressError::Port {
                    port,
                    allowed: "80, 443".into()
                },
                "{url}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("port {port} is not allowed")),
                "{err}"
            );
        }
    }

    /// Parsing the operator's list is tested with the rule in `rotor_tenant_config::egress`;
    /// here, that a widened list reaches URL checks.
    #[test]
    fn the_operator_widens_ports_with_a_list_or_any() {
        let widened = Ports::Only(vec![8443]);
        assert!(check_url(&"https://1.1.1.1:8443/".parse().unwrap(), &widened).is_ok());
        assert!(check_url(&"https://1.1.1.1/".parse().unwrap(), &widened).is_err());
        assert!(check_url(&"http://1.1.1.1:22/".parse().unwrap(), &Ports::Any).is_ok());
    }

    #[test]
    fn literal_private_hosts_are_refused_under_public_only() {
        let ports = Ports::default();
        for url in [
            "http://127.0.0.1/connect",
            "http://[::1]/x",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost/",
            "http://[2002:7f00:1::1]/",
            "https://[64:ff9b::7f00:1]/",
        ] {
            assert_eq!(
                check_url(&url.parse().unwrap(), &ports),
                Err(EgressError::NotPublic),
                "{url}"
            );
        }
        assert!(check_url(&"https://app.example.com/c".parse().unwrap(), &ports).is_ok());
        assert!(check_url(&"https://1.1.1.1/c".parse().unwrap(), &ports).is_ok());
        assert!(Egress::Any
            .check(&"http://127.0.0.1:5432/".parse().unwrap())
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

    #[tokio::test]
    async fn public_only_connects_dial_nothing_private() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for host in ["127.0.0.1", "localhost", "[::1]"] {
            let err = Egress::PublicOnly.connect(host, port).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{host}");
        }
        // The first connection the listener sees is the one allowed below: none came before.
        let allowed = Egress::Any.connect("127.0.0.1", port).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(
            peer,
            allowed.local_addr().unwrap(),
            "nothing was dialled before"
        );
    }

    use std::str::FromStr;
}
