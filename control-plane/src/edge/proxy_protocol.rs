//! The PROXY protocol (versions 1 and 2) from the operator's own load balancers or TLS
//! terminators. Behind one, every client's TCP peer is the balancer, so every per-address
//! limit of the edge (connection caps, wake budgets, project budget shares) and of the
//! dashboard (login and sign-up limits) would count all clients as one: a single stranger could
//! spend everyone's share. A balancer listed in `ROTOR_EDGE_TRUSTED_PROXIES` (addresses or CIDR
//! blocks) sends the client's address in a PROXY header ahead of the client's bytes; the edge
//! reads it before anything else and uses that address everywhere it would use the peer's.
//!
//! Only listed peers are asked for a header, and a listed peer must send one: a connection from
//! it without a valid header is closed unanswered, since nothing on it can be attributed to a
//! client. Anyone else who sends a PROXY header just sent a malformed request (answered 400 by
//! the head parser): a stranger cannot claim an address. A `LOCAL` header (the balancer's own
//! health check) and one that names no internet address (`UNKNOWN`, `AF_UNSPEC`, `AF_UNIX`)
//! leave the balancer's address in place. Version 2's TLVs are skipped.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Version 2's signature: the twelve bytes every binary header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's prefix.
const V1_PREFIX: &[u8] = b"PROXY ";
/// A version 1 line is at most 107 bytes with its CRLF (the protocol's own bound).
const V1_MAX: usize = 107;
/// Largest version 2 body (addresses and TLVs) accepted; balancers send a few dozen bytes.
const V2_MAX_BODY: usize = 2048;

/// The peers whose PROXY headers are believed (`ROTOR_EDGE_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Why `ROTOR_EDGE_TRUSTED_PROXIES` could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is neither an IP address nor a CIDR block")]
pub struct TrustedProxiesError(String);

impl TrustedProxies {
    /// Parses a list of addresses and CIDR blocks separated by commas or white space.
    pub fn parse(list: &str) -> Result<Self, TrustedProxiesError> {
        let mut nets = Vec::new();
        for item in list.split(|c: char| c == ',' || c.is_whitespace()) {
            if item.is_empty() {
                continue;
            }
            let net = match IpNet::from_str(item) {
                Ok(net) => net.trunc(),
                Err(_) => IpAddr::from_str(item)
                    .map(|ip| IpNet::from(ip.to_canonical()))
                    .map_err(|_| TrustedProxiesError(item.to_owned()))?,
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// Whether no peer is trusted (the edge then reads no PROXY header at all).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted balancer (an IPv4-mapped IPv6 peer matches its IPv4 form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`.
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// What a PROXY header says about the connection it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The balancer relays this client.
    Client(SocketAddr),
    /// The balancer's own connection, or a client it cannot name: keep the balancer's address.
    Local,
}

/// Why a trusted peer's connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("the connection closed before its PROXY header was complete")]
    Closed,
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads the PROXY header at the start of `stream` within `timeout`, leaving whatever follows
/// it (the client's first bytes, if they came in the same segment) in `buf`.
pub async fn read(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<Source, HeaderError> {
    let work = async {
        loop {
            if let Some((source, len)) = parse(buf)? {
                buf.advance(len);
                return Ok(source);
            }
            if stream.read_buf(buf).await? == 0 {
                return Err(HeaderError::Closed);
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| HeaderError::Timeout(timeout))?
}

/// Parses a header at the start of `buf`: the source and the header's length, `None` while
/// it is incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(Source, usize)>, HeaderError> {
    if is_prefix(buf, &V2_SIGNATURE) {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    if is_prefix(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(None)
        } else {
            parse_v1(buf)
        };
    }
    Err(HeaderError::Missing)
}

/// Whether `buf` and `of` agree on their common length.
fn is_prefix(buf: &[u8], of: &[u8]) -> bool {
    let n = buf.len().min(of.len());
    buf[..n] == of[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Source, usize)>, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if buf.len() >= V1_MAX {
            Err(HeaderError::Malformed("version 1 line too long"))
        } else {
            Ok(None)
        };
    };
    match window.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(HeaderError::Malformed("version 1 line not ended by CRLF")),
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..cr])
        .map_err(|_| HeaderError::Malformed("version 1 line not ASCII"))?;
    let len = cr + 2;
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        return Ok(Some((Source::Local, len)));
    }
    let (src, _dst, sport, _dport) = match (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (Some(s), Some(d), Some(sp), Some(dp), None) => (s, d, sp, dp),
        _ => return Err(HeaderError::Malformed("version 1 line needs four fields")),
    };
    let ip: IpAddr = match family {
        "TCP4" => Ipv4Addr::from_str(src)
            .map_err(|_| HeaderError::Malformed("bad TCP4 source address"))?
            .into(),
        "TCP6" => Ipv6Addr::from_str(src)
            .map_err(|_| HeaderError::Malformed("bad TCP6 source address"))?
            .into(),
        _ => return Err(HeaderError::Malformed("unknown version 1 family")),
    };
    let port = port_v1(sport)?;
    Ok(Some((Source::Client(SocketAddr::new(ip, port)), len)))
}

/// A version 1 port: decimal, no sign, no leading zeros.
fn port_v1(text: &str) -> Result<u16, HeaderError> {
    let bad = HeaderError::Malformed("bad version 1 port");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(bad);
    }
    text.parse().map_err(|_| bad)
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Source, usize)>, HeaderError> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(None);
    };
    let version = fixed[12] >> 4;
    let command = fixed[12] & 0x0f;
    if version != 2 {
        return Err(HeaderError::Malformed("unknown version 2 version"));
    }
    let body_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if body_len > V2_MAX_BODY {
        return Err(HeaderError::Malformed("version 2 header too long"));
    }
    let len = 16 + body_len;
    let Some(body) = buf.get(16..len) else {
        return Ok(None);
    };
    match command {
        0 => return Ok(Some((Source::Local, len))),
        1 => {}
        _ => return Err(HeaderError::Malformed("unknown version 2 command")),
    }
    let family = fixed[13] >> 4;
    let source = match family {
        // AF_INET: source, destination, source port, destination port.
        1 => {
            let a = body
                .get(..12)
                .ok_or(HeaderError::Malformed("version 2 IPv4 addresses cut short"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Source::Client(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        // AF_INET6.
        2 => {
            let a = body
                .get(..36)
                .ok_or(HeaderError::Malformed("version 2 IPv6 addresses cut short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Source::Client(SocketAddr::new(
                IpAddr::from(ip).to_canonical(),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // AF_UNSPEC, AF_UNIX: nothing to attribute.
        0 | 3 => Source::Local,
        _ => return Err(HeaderError::Malformed("unknown version 2 family")),
    };
    Ok(Some((source, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push((family << 4) | 1);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn client(text: &str) -> Source {
        Source::Client(text.parse().unwrap())
    }

    #[test]
    fn version_1_names_the_client_and_leaves_what_follows() {
        let raw = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (source, len) = parse(raw).unwrap().unwrap();
        assert_eq!(source, client("203.0.113.7:51234"));
        assert_eq!(&raw[len..], b"GET / HTTP/1.1\r\n");
        let raw = b"PROXY TCP6 2001:db8::7 2001:db8::1 8 443\r\n";
        assert_eq!(
            parse(raw).unwrap().unwrap(),
            (client("[2001:db8::7]:8"), raw.len())
        );
        let raw = b"PROXY UNKNOWN whatever\r\n";
        assert_eq!(parse(raw).unwrap().unwrap(), (Source::Local, raw.len()));
    }

    #[test]
    fn an_incomplete_header_waits_for_more_at_every_cut() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n".to_vec();
        let tlv = [0x04, 0x00, 0x01, 0xaa];
        let mut body = vec![203, 0, 113, 7, 10, 0, 0, 1, 0xc8, 0x22, 0x01, 0xbb];
        body.extend_from_slice(&tlv);
        let v2 = v2(1, 1, &body);
        for whole in [&v1, &v2] {
            for cut in 0..whole.len() {
                assert!(
                    parse(&whole[..cut]).unwrap().is_none(),
                    "cut at {cut} of {whole:?}"
                );
            }
            let (source, len) = parse(whole).unwrap().unwrap();
            assert_eq!(len, whole.len());
            assert!(matches!(source, Source::Client(_)));
        }
    }

    #[test]
    fn version_2_names_ipv4_and_ipv6_clients_and_skips_tlvs() {
        let body = [
            198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb, 0x03, 0, 0,
        ];
        let raw = v2(1, 1, &body);
        assert_eq!(
            parse(&raw).unwrap().unwrap(),
            (client("198.51.100.9:8080"), raw.len())
        );
        let mut body = Ipv6Addr::from_str("2001:db8::9").unwrap().octets().to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0, 80, 1, 187]);
        let raw = v2(1, 2, &body);
        assert_eq!(
            parse(&raw).unwrap().unwrap(),
            (client("[2001:db8::9]:80"), raw.len())
        );
        // An IPv4 client a dual-stack balancer reports in its mapped form counts as IPv4.
        let mut body = Ipv4Addr::new(192, 0, 2, 1)
            .to_ipv6_mapped()
            .octets()
            .to_vec();
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&[0, 1, 0, 2]);
        assert_eq!(
            parse(&v2(1, 2, &body)).unwrap().unwrap().0,
            client("192.0.2.1:1")
        );
    }

    #[test]
    fn health_checks_and_unnamed_clients_keep_the_balancers_address() {
        assert_eq!(parse(&v2(0, 0, &[])).unwrap().unwrap().0, Source::Local);
        assert_eq!(
            parse(&v2(0, 1, &[0; 12])).unwrap().unwrap().0,
            Source::Local
        );
        assert_eq!(
            parse(&v2(1, 3, &[0; 216])).unwrap().unwrap().0,
            Source::Local
        );
        assert_eq!(parse(&v2(1, 0, &[])).unwrap().unwrap().0, Source::Local);
    }

    #[test]
    fn anything_else_is_refused() {
        for raw in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PRIX",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443 extra\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP5 203.0.113.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 +1 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 01 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\rX",
        ] {
            assert!(parse(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert!(parse(&long).is_err());
        // Version 2: a wrong version, command or family, a body too short or too long.
        let mut wrong_version = v2(1, 1, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(parse(&wrong_version).is_err());
        assert!(parse(&v2(2, 1, &[0; 12])).is_err());
        assert!(parse(&v2(1, 4, &[0; 12])).is_err());
        assert!(parse(&v2(1, 1, &[0; 8])).is_err());
        assert!(parse(&v2(1, 2, &[0; 20])).is_err());
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn the_trusted_list_takes_addresses_and_blocks_and_matches_mapped_peers() {
        let list = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7 2001:db8::/32").unwrap();
        assert!(list.contains("10.200.0.1".parse().unwrap()));
        assert!(list.contains("192.0.2.7".parse().unwrap()));
        assert!(!list.contains("192.0.2.8".parse().unwrap()));
        assert!(list.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(list.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!list.contains("2001:db9::1".parse().unwrap()));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/8,localhost"),
            Err(TrustedProxiesError("localhost".into()))
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }
}
