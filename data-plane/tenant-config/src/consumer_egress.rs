//! Where a hosted project's consumers may connect: the queue servers the customer runs
//! (PostgreSQL, Redis, NATS), shared by the data plane's consumers and the control plane's
//! outbox provisioning. The address rule is [`crate::egress`]'s (public unicast only, none of
//! this host's own addresses); the ports are the consumers' own, `ROTOR_CONSUMER_EGRESS_PORTS`
//! (a comma list, or `any`; by default 5432, 6379, 6380 and 4222); and the addresses of the
//! service's own databases, which the control plane hands its tenants in `ROTOR_EGRESS_DENY`
//! (a comma list of `ip:port`), are refused even when public. An address matches a listed one
//! by its port and by the IPv4 address it stands for ([`crate::egress::canonical`]): the
//! IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) forms reach the same server.
//!
//! [`pin`] resolves a name once, checks every address it resolves to and returns the one
//! address to dial, so the connection goes where the check looked: no second resolution, no
//! window for a name to change its answer (DNS rebinding) between check and connect.

use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::egress::{canonical, check_host, is_allowed, EgressError, Ports};

/// Ports consumers may reach when the operator sets none.
pub const DEFAULT_CONSUMER_PORTS: [u16; 4] = [5432, 6379, 6380, 4222];

/// Why a consumer's server may not be dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The address or port rule refused it.
    #[error("{0}")]
    Refused(EgressError),
    /// One of the service's own databases.
    #[error("the address is one of the service's own; hosted projects may not connect to it")]
    ServiceAddress,
    #[error("{host} could not be resolved: {reason}")]
    Resolve { host: String, reason: String },
}

impl PinError {
    /// Whether the rule refused the address (rather than the name failing to resolve).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, PinError::Resolve { .. })
    }
}

/// The consumers' port rule: `ROTOR_CONSUMER_EGRESS_PORTS`, read once (a malformed value is
/// logged and the default applies).
pub fn consumer_ports() -> &'static Ports {
    static PORTS: OnceLock<Ports> = OnceLock::new();
    PORTS.get_or_init(|| {
        let var = std::env::var("ROTOR_CONSUMER_EGRESS_PORTS").ok();
        match var.as_deref().map(str::trim) {
            None | Some("") => Ports::Only(DEFAULT_CONSUMER_PORTS.to_vec()),
            value => Ports::parse(value).unwrap_or_else(|e| {
                tracing::error!(error = %e, "consumer egress ports fall back to the default");
                Ports::Only(DEFAULT_CONSUMER_PORTS.to_vec())
            }),
        }
    })
}

/// Parses a `ROTOR_EGRESS_DENY` value: socket addresses separated by commas (blank items are
/// skipped; anything else that is not `ip:port` is an error naming it).
pub fn parse_denied(value: &str) -> Result<Vec<SocketAddr>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| item.parse::<SocketAddr>().map_err(|_| item.to_owned()))
        .collect()
}

/// The service's own addresses this process refuses (`ROTOR_EGRESS_DENY`), read once.
pub fn denied() -> &'static [SocketAddr] {
    static DENIED: OnceLock<Vec<SocketAddr>> = OnceLock::new();
    DENIED.get_or_init(|| {
        let value = std::env::var("ROTOR_EGRESS_DENY").unwrap_or_default();
        parse_denied(&value).unwrap_or_else(|item| {
            // Failing closed on a bad list would stop every consumer; failing open would drop
            // the rule. The operator's list is rebuilt at every spawn, so this is a bug: say it.
            tracing::error!(
                item,
                "ROTOR_EGRESS_DENY holds an item that is not ip:port; it is ignored"
            );
            parse_denied(
                &value
                    .split(',')
                    .filter(|i| i.trim().parse::<SocketAddr>().is_ok())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .unwrap_or_default()
        })
    })
}

/// Whether `addr` is one of `denied`: the same port, and the same IP once IPv4-mapped and NAT64
/// IPv6 addresses are read as the IPv4 address they carry (on both sides).
pub fn is_denied(addr: SocketAddr, denied: &[SocketAddr]) -> bool {
    let ip = canonical(addr.ip());
    denied
        .iter()
        .any(|d| d.port() == addr.port() && canonical(d.ip()) == ip)
}

/// Checks the addresses `host` resolved to: every one public and none of `denied` (this
/// host's own addresses, where a database bound to `0.0.0.0` also answers, are refused by the
/// address rule already). Returns the one to dial: the first IPv4 address, else the first.
pub fn check_resolved(addrs: &[SocketAddr], denied: &[SocketAddr]) -> Result<SocketAddr, PinError> {
    if addrs.is_empty() || !addrs.iter().all(|a| is_allowed(a.ip())) {
        return Err(PinError::Refused(EgressError::NotPublic));
    }
    if addrs.iter().any(|a| is_denied(*a, denied)) {
        return Err(PinError::ServiceAddress);
    }
    Ok(addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0]))
}

/// Resolves `host` (a name or an IP literal, bracketed or not) once and checks it for a hosted
/// project's consumer with `ports` and `denied`: the address to connect to, and only that one.
pub async fn pin(
    host: &str,
    port: u16,
    ports: &Ports,
    denied: &[SocketAddr],
) -> Result<SocketAddr, PinError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    check_host(bare, Some(port), ports).map_err(PinError::Refused)?;
    let addrs = resolve(bare, port).await?;
    check_resolved(&addrs, denied)
}

/// Every address `host` (without brackets) resolves to on `port`; at least one.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, PinError> {
    let failed = |reason: String| PinError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(failed("no address".into()));
    }
    Ok(addrs)
}

/// [`pin`] for a tenant the operator lets reach private addresses (`ROTOR_TENANT_PRIVATE_EGRESS`):
/// any address on any port, but never one of `denied`. Resolves `host` once and returns the
/// address to dial (the first IPv4 one, else the first).
pub async fn pin_private(
    host: &str,
    port: u16,
    denied: &[SocketAddr],
) -> Result<SocketAddr, PinError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = resolve(bare, port).await?;
    if addrs.iter().any(|a| is_denied(*a, denied)) {
        return Err(PinError::ServiceAddress);
    }
    // `resolve` returns at least one address.
    Ok(*addrs.iter().find(|a| a.is_ipv4()).unwrap_or(&addrs[0]))
}

/// Why `sslmode` that needs TLS is refused for hosted PostgreSQL consumers.
pub const SSLMODE_REFUSED: &str =
    "sslmode require, verify-ca and verify-full are not available to hosted projects: Rotor's PostgreSQL client for consumers has no TLS (use prefer or disable, and a network path you trust)";

/// Why a Unix socket is refused for hosted consumers.
pub const SOCKET_REFUSED: &str = "a Unix socket is a file of the box: give a host name";

/// Why a DSN with a parameter the PostgreSQL client does not know is refused.
pub const UNKNOWN_PARAMETER_REFUSED: &str = "the DSN has a parameter Rotor's PostgreSQL client does not know (known: sslmode, host, hostaddr, port, dbname, user, password, application_name, options, options[name], statement-cache-capacity)";

/// Why a DSN with a control character is refused.
pub const CONTROL_CHARACTER_REFUSED: &str =
    "the DSN holds a control character (after percent-decoding): not in a user, password, database or parameter";

/// The query parameters the PostgreSQL client (sqlx) reads; it logs any other, raw.
fn known_parameter(key: &str) -> bool {
    matches!(
        key,
        "sslmode"
            | "ssl-mode"
            | "sslrootcert"
            | "ssl-root-cert"
            | "ssl-ca"
            | "sslcert"
            | "ssl-cert"
            | "sslkey"
            | "ssl-key"
            | "statement-cache-capacity"
            | "host"
            | "hostaddr"
            | "port"
            | "dbname"
            | "user"
            | "password"
            | "application_name"
            | "options"
    ) || (key.starts_with("options[") && key.ends_with(']'))
}

/// Whether `text`, percent-decoded, holds a control character (a line break would let it
/// forge a line in a log).
fn has_control(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded)
        .chars()
        .any(char::is_control)
}

/// Why a hosted PostgreSQL consumer may not use `dsn`, if it may not: a DSN must be a
/// `postgres(ql)://` URL with a host; the parameters naming files (`sslrootcert`, `sslcert`,
/// `sslkey`, `passfile`), a socket host and the `sslmode`s needing TLS are refused, and so are
/// parameters the client does not know and control characters anywhere (the client logs
/// unknown parameters as they are, so either could write lines into the service's logs).
pub fn hosted_dsn_refusal(dsn: &str) -> Option<&'static str> {
    let Ok(url) = url::Url::parse(dsn) else {
        return Some("must be a postgresql://user:password@host:port/database URL");
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Some(
            "must name the database server's host (postgresql://user:password@host:port/database)",
        );
    }
    if [url.username(), url.password().unwrap_or(""), url.path()]
        .iter()
        .any(|part| has_control(part))
    {
        return Some(CONTROL_CHARACTER_REFUSED);
    }
    for (key, value) in url.query_pairs() {
        if key.chars().chain(value.chars()).any(char::is_control) {
            return Some(CONTROL_CHARACTER_REFUSED);
        }
        match &*key {
            "sslrootcert" | "ssl-root-cert" | "ssl-ca" | "sslcert" | "ssl-cert" | "sslkey"
            | "ssl-key" | "passfile" => {
                return Some("DSN options naming files (sslrootcert, sslcert, sslkey, passfile) are not available to hosted projects")
            }
            "host" | "hostaddr" if value.starts_with('/') => return Some(SOCKET_REFUSED),
            "sslmode" | "ssl-mode"
                if matches!(&*value, "require" | "verify-ca" | "verify-full") =>
            {
                return Some(SSLMODE_REFUSED)
            }
            key if !known_parameter(key) => return Some(UNKNOWN_PARAMETER_REFUSED),
            _ => {}
        }
    }
    None
}

/// Why `tls://` with a host name is refused for hosted NATS consumers.
pub const NATS_TLS_NAME_REFUSED: &str =
    "tls:// with a host name is not available to hosted projects: the NATS client verifies the certificate against the host it dials, so the checked address cannot be pinned without losing verification (use nats://, or tls:// with an IP address the certificate names)";

/// Why a hosted NATS consumer may not use `url`, if it may not: one server, and no `tls://`
/// with a host name (see [`NATS_TLS_NAME_REFUSED`]).
pub fn hosted_nats_url_refusal(nats_url: &str) -> Option<&'static str> {
    if nats_url.contains(',') {
        return Some("give one NATS server URL");
    }
    let Ok(url) = url::Url::parse(nats_url) else {
        return Some("must be a nats://host:port URL");
    };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Some("must name the NATS server's host");
    };
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok();
    (url.scheme() == "tls" && !literal).then_some(NATS_TLS_NAME_REFUSED)
}

/// Why a hosted Redis consumer may not skip certificate checks.
pub const REDIS_INSECURE_REFUSED: &str =
    "insecure_skip_verify is not available to hosted projects: give the server's CA in tls.server_ca_pem";

#[cfg(test)]
mod tests {
    #[test]
    fn hosted_dsns_and_nats_urls_that_escape_the_check_are_refused() {
        for dsn in [
            "postgresql://u:p@db.example.com/app?sslrootcert=/etc/ssl/private/x.pem",
            "postgresql://u:p@db.example.com/app?sslkey=/root/key",
            "postgresql://u:p@db.example.com/app?host=/var/run/postgresql",
            "postgresql://u:p@db.example.com/app?sslmode=verify-full",
            "postgresql:///app",
            "not a url",
        ] {
            assert!(hosted_dsn_refusal(dsn).is_some(), "{dsn}");
        }
        assert_eq!(
            hosted_dsn_refusal("postgresql://u:p@db.example.com:5432/app?sslmode=prefer"),
            None
        );
        assert_eq!(
            hosted_dsn_refusal(
                "postgresql://u:p@db.example.com/app?application_name=shop&options[search_path]=app&statement-cache-capacity=10"
            ),
            None
        );
    }

    #[test]
    fn dsns_that_could_forge_log_lines_are_refused() {
        for dsn in [
            "postgresql://u:p@db.example.com/app?unknown=plain",
            "postgresql://u:p@db.example.com/app?sslmode=prefer&application-name=x",
        ] {
            assert_eq!(
                hosted_dsn_refusal(dsn),
                Some(UNKNOWN_PARAMETER_REFUSED),
                "{dsn}"
            );
        }
        for dsn in [
            "postgresql://u:p@db.example.com/app?x=1%0A2026-12-05T00:00:00Z%20ERROR%20forged",
            "postgresql://u:p@db.example.com/app?application_name=a%0Ab",
            "postgresql://u:p@db.example.com/app?options=%1b%5b31m",
            "postgresql://u%0A:p@db.example.com/app",
            "postgresql://u:p%0D@db.example.com/app",
            "postgresql://u:p@db.example.com/app%0Aforged",
        ] {
            assert_eq!(
                hosted_dsn_refusal(dsn),
                Some(CONTROL_CHARACTER_REFUSED),
                "{dsn}"
            );
        }
        assert_eq!(
            hosted_nats_url_refusal("tls://nats.example.com:4222"),
            Some(NATS_TLS_NAME_REFUSED)
        );
        assert!(hosted_nats_url_refusal("nats://a:4222,nats://b:4222").is_some());
        assert_eq!(hosted_nats_url_refusal("tls://93.184.215.14:4222"), None);
        assert_eq!(
            hosted_nats_url_refusal("nats://u:p@nats.example.com:4222"),
            None
        );
    }

    use super::*;

    #[test]
    fn only_public_addresses_outside_the_service_are_pinned() {
        let public: SocketAddr = "93.184.215.14:5432".parse().unwrap();
        let v6: SocketAddr = "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:5432"
            .parse()
            .unwrap();
        assert_eq!(check_resolved(&[v6, public], &[]), Ok(public), "IPv4 first");
        assert_eq!(check_resolved(&[v6], &[]), Ok(v6));
        let private: SocketAddr = "10.0.0.5:5432".parse().unwrap();
        assert_eq!(
            check_resolved(&[public, private], &[]),
            Err(PinError::Refused(EgressError::NotPublic)),
            "one private answer refuses the name"
        );
        assert_eq!(
            check_resolved(&[], &[]),
            Err(PinError::Refused(EgressError::NotPublic))
        );
        assert_eq!(
            check_resolved(&[public], &[public]),
            Err(PinError::ServiceAddress)
        );
        let other_port: SocketAddr = "93.184.215.14:5433".parse().unwrap();
        assert_eq!(check_resolved(&[other_port], &[public]), Ok(other_port));
    }

    #[test]
    fn the_deny_list_matches_ipv4_mapped_and_nat64_forms_of_its_addresses() {
        let denied: Vec<SocketAddr> = vec![
            "93.184.215.14:5432".parse().unwrap(),
            "[::ffff:203.0.113.9]:6379".parse().unwrap(),
        ];
        for addr in [
            "93.184.215.14:5432",
            "[::ffff:93.184.215.14]:5432",
            "[64:ff9b::93.184.215.14]:5432",
            "[64:ff9b::5db8:d70e]:5432",
            "203.0.113.9:6379",
            "[::ffff:203.0.113.9]:6379",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert!(is_denied(addr, &denied), "{addr}");
        }
        for addr in [
            "[::ffff:93.184.215.14]:5433",
            "[::ffff:93.184.215.15]:5432",
            "[2001:db8::5db8:d70e]:5432",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert!(!is_denied(addr, &denied), "{addr}");
        }
        let mapped: SocketAddr = "[::ffff:93.184.215.14]:5432".parse().unwrap();
        assert_eq!(
            check_resolved(&[mapped], &denied[..1]),
            Err(PinError::ServiceAddress)
        );
    }

    #[tokio::test]
    async fn with_private_egress_only_the_service_addresses_are_refused() {
        let denied: Vec<SocketAddr> = vec!["127.0.0.1:5432".parse().unwrap()];
        for host in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "localhost",
        ] {
            assert_eq!(
                pin_private(host, 5432, &denied).await,
                Err(PinError::ServiceAddress),
                "{host}"
            );
        }
        assert_eq!(
            pin_private("127.0.0.1", 5433, &denied).await,
            Ok("127.0.0.1:5433".parse().unwrap())
        );
    }

    #[test]
    fn the_deny_list_is_a_comma_list_of_socket_addresses() {
        assert_eq!(
            parse_denied(" 203.0.113.9:5432, [2001:db8::1]:6379 ,"),
            Ok(vec![
                "203.0.113.9:5432".parse().unwrap(),
                "[2001:db8::1]:6379".parse().unwrap()
            ])
        );
        assert_eq!(
            parse_denied("db.internal:5432"),
            Err("db.internal:5432".into())
        );
        assert_eq!(parse_denied(""), Ok(vec![]));
    }

    #[tokio::test]
    async fn loopback_names_and_literals_are_refused_before_any_connection() {
        for host in ["127.0.0.1", "localhost", "[::1]", "::1", "10.1.2.3"] {
            let err = pin(host, 5432, &Ports::Any, &[]).await.unwrap_err();
            assert_eq!(err, PinError::Refused(EgressError::NotPublic), "{host}");
        }
        let err = pin("93.184.215.14", 22, consumer_ports(), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, PinError::Refused(EgressError::Port { .. })),
            "{err}"
        );
        assert_eq!(
            pin("93.184.215.14", 5432, &Ports::Any, &[]).await,
            Ok("93.184.215.14:5432".parse().unwrap())
        );
    }
}
