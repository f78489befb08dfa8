//! The edge's reading of a request head: which tenant (or the control plane) it is for, and
//! the head the tenant gets instead. This is the trust boundary between Rotor's own origin and
//! tenant traffic, so the rewrite
//! - takes the tenant from its own host (`ROTOR_TENANT_HOST`) or, when none is configured, from
//!   the `/t/{slug}` path prefix (which it strips);
//! - never routes to a tenant's internal surfaces (`/admin…`, `/metrics`): they answer 404;
//! - routes only origin-form targets (`/path?query`); any other (`http://host/path`, `*`, an
//!   authority) is malformed (400), so no spelling of a target slips past that check;
//! - strips Rotor's own credentials (its cookies, `Bearer rtr_…` management tokens) and any
//!   client-supplied forwarding headers, then sets `X-Forwarded-For` from the real peer;
//! - marks only a real WebSocket handshake (GET, `Upgrade: websocket`, `Connection: upgrade`)
//!   as an upgrade, and asks the tenant to close after any plain request, so a keep-alive
//!   follow-up can never reach a tenant without passing through this rewrite (a tenant serves
//!   exactly one request on a socket handed to it) — unless the edge grants the connection for
//!   the project's own API calls at the project's own host ([`grant_keep_alive`]): the tenant
//!   then checks and rewrites each follow-up the same way;
//! - says how long the request's body is ([`Body`]), so the edge hands a plain request's socket
//!   to the tenant only once it holds the whole request;
//! - notes the SHA-256 digest of the API key a server API call presents ([`PresentedKey`]),
//!   so the edge can tell the project's own backend from strangers when it spends budgets.

use std::net::SocketAddr;

use rotor_tenant_config::keep_alive::{self, KeepAlive};
use sha2::{Digest, Sha256};

use crate::settings::TenantHost;

/// The SHA-256 digest of the API key a server API request presents (the tenant's own order
/// of precedence: `X-API-Key`, `Authorization: apikey …`, `?api_key=`). The tenant checks the
/// key itself; the edge uses the digest only to decide whose budget the request spends.
pub type PresentedKey = [u8; 32];

/// Where a request goes.
#[derive(Debug, PartialEq)]
pub enum Target {
    /// To a tenant, with this rewritten head; `websocket` when it is a WebSocket handshake
    /// (the only kind of request whose socket is handed to the tenant).
    Tenant {
        slug: String,
        head: Vec<u8>,
        websocket: bool,
        body: Body,
        /// Set for server API requests (`/api`, `/api/…`) that present a key.
        api_key: Option<PresentedKey>,
        /// HTTP/1.1 without `Connection: close`: the client would send its next request on
        /// this connection (the edge keeps it only after an answer of its own, see
        /// [`super::handle`], or grants it to the tenant, see [`grant_keep_alive`]).
        keeps_alive: bool,
        /// The project's own host as this request named it (lower case), when projects are
        /// served at their own host: a follow-up kept on the connection must name it again.
        own_host: Option<String>,
    },
    /// The control plane's own app (REST API, dashboard).
    ControlPlane,
    /// Refused at the edge with 404: a tenant's internal path, or the `/t/` path form while
    /// tenants have their own hosts.
    NotFound(&'static str),
}

/// The length of a request's body, as its head declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Exactly this many bytes (0 without `Content-Length`).
    Length(usize),
    /// `Content-Length` beyond what the edge reads ahead, `Expect: 100-continue` (the client
    /// waits for the tenant before sending it), or chunked: only the tenant can read it, so
    /// the request is spliced.
    Streamed,
}

/// Largest body the edge reads ahead of a hand-off; longer ones are spliced.
pub const MAX_READ_AHEAD: usize = 48 * 1024;

/// Why a head could not be read.
#[derive(Debug, PartialEq)]
pub enum HeadError {
    /// Not HTTP/1.x, or a malformed tenant path.
    Malformed,
}

/// Parses a complete head at the start of `buf`: `Ok(None)` while it is incomplete, else its
/// length and target.
pub fn route(
    buf: &[u8],
    peer: SocketAddr,
    tenant_host: Option<&TenantHost>,
) -> Result<Option<(usize, Target)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HeadError::Malformed),
    };
    let path = req.path.unwrap_or("/");
    // Only origin-form targets (`/path?query`) are routed. An absolute-form target
    // (`http://host/metrics`) would reach the tenant unfiltered: the internal-path check
    // below reads the path from the first `/`, and the tenant routes on the URI's own path.
    // `OPTIONS *` and the authority form of CONNECT are not served either.
    if !path.starts_with('/') {
        return Err(HeadError::Malformed);
    }
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok());
    let (slug, tail, own_host) = match (tenant_host, host) {
        (Some(pattern), Some(host)) if pattern.slug_of(host).is_some() => {
            let slug = pattern.slug_of(host).unwrap_or_default();
            let own = Some(host.to_ascii_lowercase());
            (slug.to_ascii_lowercase(), path.to_owned(), own)
        }
        _ => {
            let Some(rest) = path.strip_prefix("/t/") else {
                return Ok(Some((len, Target::ControlPlane)));
            };
            if tenant_host.is_some() {
                return Ok(Some((
                    len,
                    Target::NotFound("projects are served at their own host"),
                )));
            }
            let (slug, tail) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if slug.is_empty() || !slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(HeadError::Malformed);
            }
            let tail = if tail.starts_with('?') {
                format!("/{tail}")
            } else {
                tail.to_owned()
            };
            (slug.to_owned(), tail, None)
        }
    };
    if is_internal(&tail) {
        return Ok(Some((len, Target::NotFound("not found"))));
    }
    let websocket = req.method == Some("GET")
        && has_token(req.headers, "upgrade", "websocket")
        && has_token(req.headers, "connection", "upgrade");
    let body = body_of(req.headers);
    let api_key = presented_key(&tail, req.headers);
    let keeps_alive = req.version == Some(1) && !has_token(req.headers, "connection", "close");
    let mut head = Vec::with_capacity(len + 64);
    head.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
    head.push(b' ');
    head.extend_from_slice(tail.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name;
        let dropped = [
            "x-forwarded-for",
            "x-real-ip",
            "forwarded",
            "connection",
            keep_alive::HEADER,
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
            || (!websocket && name.eq_ignore_ascii_case("upgrade"));
        if dropped {
            continue;
        }
        if name.eq_ignore_ascii_case("cookie") {
            if let Some(kept) = tenant_cookies(h.value) {
                push_header(&mut head, name.as_bytes(), &kept);
            }
            continue;
        }
        if name.eq_ignore_ascii_case("authorization") && is_management_token(h.value) {
            continue;
        }
        push_header(&mut head, name.as_bytes(), h.value);
    }
    head.extend_from_slice(format!("X-Forwarded-For: {}\r\n", peer.ip()).as_bytes());
    // One request per connection. A plain request says so itself; a WebSocket handshake
    // cannot (`close` beside `upgrade` makes clients refuse the 101), so the tenant closes a
    // handed-off socket after any answer but a 101 on its own.
    head.extend_from_slice(if websocket {
        b"Connection: Upgrade\r\n\r\n".as_slice()
    } else {
        b"Connection: close\r\n\r\n".as_slice()
    });
    Ok(Some((
        len,
        Target::Tenant {
            slug,
            head,
            websocket,
            body,
            api_key,
            keeps_alive,
            own_host,
        },
    )))
}

/// The end of every plain request's rewritten head.
const CLOSE: &[u8] = b"Connection: close\r\n\r\n";

/// A plain request's rewritten `head` granting its connection to the tenant for follow-up
/// API calls (see [`rotor_tenant_config::keep_alive`]); only for a handed-off socket, never a
/// spliced one (the tenant's TCP listener applies no grant).
pub fn grant_keep_alive(head: &[u8], grant: &KeepAlive) -> Vec<u8> {
    let Some(start) = head
        .len()
        .checked_sub(CLOSE.len())
        .filter(|&i| &head[i..] == CLOSE)
    else {
        return head.to_vec();
    };
    let mut granted = Vec::with_capacity(head.len() + 64);
    granted.extend_from_slice(&head[..start]);
    push_header(
        &mut granted,
        keep_alive::HEADER.as_bytes(),
        grant.header_value().as_bytes(),
    );
    granted.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
    granted
}

/// The digest of the key a server API request (`/api`, `/api/…`) presents, if any.
fn presented_key(path_and_query: &str, headers: &[httparse::Header<'_>]) -> Option<PresentedKey> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    if path != "/api" && !path.starts_with("/api/") {
        return None;
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let key = header("x-api-key")
        .map(str::trim)
        .or_else(|| {
            let v = header("authorization")?.trim();
            let scheme = v.get(..7)?;
            scheme
                .eq_ignore_ascii_case("apikey ")
                .then(|| v[7..].trim())
        })
        .or_else(|| {
            query?
                .split('&')
                .find_map(|pair| pair.strip_prefix("api_key="))
        })?;
    Some(Sha256::digest(key.as_bytes()).into())
}

/// How long the body is: a single valid `Content-Length` (repeated only with the same value)
/// up to [`MAX_READ_AHEAD`], with no `Transfer-Encoding` and no `Expect`.
fn body_of(headers: &[httparse::Header<'_>]) -> Body {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") || h.name.eq_ignore_ascii_case("expect")
        {
            return Body::Streamed;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (parsed, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Body::Streamed,
            }
        }
    }
    match length.unwrap_or(0) {
        n if n <= MAX_READ_AHEAD => Body::Length(n),
        _ => Body::Streamed,
    }
}

fn push_header(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Whether a header's comma-separated value list holds `token` (case-insensitive).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a cookie belongs to Rotor itself (the dashboard's session and CSRF cookies, under
/// any prefix browsers apply) rather than to the tenant's application.
pub fn is_rotor_cookie(name: &str) -> bool {
    let name = name.trim();
    let name = name
        .strip_prefix("__Host-")
        .or_else(|| name.strip_prefix("__Secure-"))
        .unwrap_or(name);
    name.len() >= 6 && name[..6].eq_ignore_ascii_case("rotor_")
}

/// A `Cookie` value without Rotor's own cookies; `None` when nothing is left.
fn tenant_cookies(value: &[u8]) -> Option<Vec<u8>> {
    let kept: Vec<&[u8]> = value
        .split(|&b| b == b';')
        .filter(|pair| {
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            !name.trim().is_empty() && !is_rotor_cookie(&name)
        })
        .map(<[u8]>::trim_ascii)
        .collect();
    (!kept.is_empty()).then(|| kept.join(b"; ".as_slice()))
}

/// Whether an `Authorization` value carries a Rotor management token.
fn is_management_token(value: &[u8]) -> bool {
    let v = value.trim_ascii();
    v.len() > 7
        && v[..7].eq_ignore_ascii_case(b"bearer ")
        && v[7..].trim_ascii().starts_with(b"rtr_")
}

/// Whether a tenant path names its internal surfaces, however it is spelled (percent-encoded,
/// upper case, doubled or dotted segments).
fn is_internal(path_and_query: &str) -> bool {
    let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    let decoded = String::from_utf8_lossy(&crate::percent::decode(path.as_bytes())).into_owned();
    let mut segments = decoded
        .split(['/', '\\'])
        .filter(|s| !s.is_empty() && *s != ".");
    match segments.next() {
        Some(first) if first.eq_ignore_ascii_case("admin") => true,
        Some(first) if first.eq_ignore_ascii_case("metrics") => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "203.0.113.7:5555".parse().unwrap()
    }

    fn tenant(raw: &str, host: Option<&TenantHost>) -> (String, String, bool) {
        match route(raw.as_bytes(), peer(), host) {
            Ok(Some((
                _,
                Target::Tenant {
                    slug,
                    head,
                    websocket,
                    ..
                },
            ))) => (slug, String::from_utf8(head).unwrap(), websocket),
            other => panic!("not a tenant route: {other:?}"),
        }
    }

    fn key_of(raw: &str) -> Option<PresentedKey> {
        match route(raw.as_bytes(), peer(), None) {
            Ok(Some((_, Target::Tenant { api_key, .. }))) => api_key,
            other => panic!("not a tenant route: {other:?}"),
        }
    }

    #[test]
    fn only_an_http_1_1_request_without_connection_close_keeps_alive() {
        let keeps = |raw: &str| match route(raw.as_bytes(), peer(), None) {
            Ok(Some((_, Target::Tenant { keeps_alive, .. }))) => keeps_alive,
            other => panic!("not a tenant route: {other:?}"),
        };
        assert!(keeps("POST /t/a/api HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(keeps(
            "POST /t/a/api HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!keeps(
            "POST /t/a/api HTTP/1.1\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!keeps("POST /t/a/api HTTP/1.0\r\nHost: x\r\n\r\n"));
    }

    #[test]
    fn a_server_api_request_presents_its_key_in_the_tenants_order() {
        let digest = |k: &str| Some(<[u8; 32]>::from(Sha256::digest(k.as_bytes())));
        let post = |path: &str, headers: &str| {
            format!("POST /t/acme{path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\n\r\n")
        };
        assert_eq!(
            key_of(&post("/api/publish", "X-API-Key: k1\r\n")),
            digest("k1")
        );
        assert_eq!(key_of(&post("/api", "X-API-Key:  k1 \r\n")), digest("k1"));
        assert_eq!(
            key_of(&post(
                "/api/publish",
                "Authorization: ApiKey k2\r\nX-API-Key: k1\r\n"
            )),
            digest("k1"),
            "X-API-Key comes first"
        );
        assert_eq!(
            key_of(&post("/api/publish", "Authorization: apikey k2\r\n")),
            digest("k2")
        );
        assert_eq!(
            key_of(&post("/api/publish?x=1&api_key=k3", "")),
            digest("k3")
        );
        // Not the server API, or no key: nothing presented.
        assert_eq!(key_of(&post("/apis/publish", "X-API-Key: k1\r\n")), None);
        assert_eq!(key_of(&post("/connection/sse", "X-API-Key: k1\r\n")), None);
        assert_eq!(
            key_of(&post("/api/publish", "Authorization: Bearer k1\r\n")),
            None
        );
    }

    #[test]
    fn rotor_credentials_never_reach_a_tenant() {
        let (slug, head, _) = tenant(
            "GET /t/acme/connection/uni_sse?cf_connect={} HTTP/1.1\r\nHost: x\r\n\
             Cookie: rotor_session=s1; app=1; __Host-rotor_session=s2;rotor_csrf=c; b=2\r\n\
             Cookie: __Host-Rotor_Login=z\r\n\
             Authorization: Bearer rtr_0123\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=1.2.3.4\r\n\
             X-Real-IP: 10.0.0.2\r\n\r\n",
            None,
        );
        assert_eq!(slug, "acme");
        assert!(head.starts_with("GET /connection/uni_sse?cf_connect={} HTTP/1.1\r\n"));
        assert!(head.contains("\r\nCookie: app=1; b=2\r\n"), "{head}");
        assert_eq!(head.matches("Cookie").count(), 1, "{head}");
        for gone in [
            "rotor_",
            "Rotor_",
            "rtr_",
            "10.0.0",
            "1.2.3.4",
            "Authorization",
        ] {
            assert!(!head.contains(gone), "{gone} leaked: {head}");
        }
        assert!(head.contains("X-Forwarded-For: 203.0.113.7\r\n"));
        assert!(head.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn the_tenants_own_authorization_passes() {
        let (_, head, _) = tenant(
            "POST /t/acme/api/publish HTTP/1.1\r\nAuthorization: apikey rk_1\r\n\r\n",
            None,
        );
        assert!(head.contains("Authorization: apikey rk_1\r\n"));
        let (_, head, _) = tenant(
            "GET /t/acme/x HTTP/1.1\r\nAuthorization: Bearer eyJhbGci\r\n\r\n",
            None,
        );
        assert!(head.contains("Authorization: Bearer eyJhbGci\r\n"));
    }

    #[test]
    fn only_a_real_websocket_handshake_is_an_upgrade() {
        let ws = "GET /t/a/connection/websocket HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        let (_, head, websocket) = tenant(ws, None);
        assert!(websocket);
        assert!(head.contains("Upgrade: WebSocket\r\n"));
        assert!(head.ends_with("Connection: Upgrade\r\n\r\n"));
        for not_ws in [
            "GET /t/a/x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            "GET /t/a/x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "POST /t/a/x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ] {
            let (_, head, websocket) = tenant(not_ws, None);
            assert!(!websocket, "{not_ws}");
            assert!(!head.contains("Upgrade:"), "{head}");
            assert!(head.ends_with("Connection: close\r\n\r\n"));
        }
    }

    #[test]
    fn internal_tenant_paths_are_not_found_however_spelled() {
        for path in [
            "/t/a/admin/status",
            "/t/a/admin",
            "/t/a//admin/config",
            "/t/a/./admin/usage",
            "/t/a/%61dmin/status",
            "/t/a/ADMIN/status",
            "/t/a/metrics",
            "/t/a/metrics?x=1",
            "/t/a/Metrics/",
        ] {
            let raw = format!("GET {path} HTTP/1.1\r\n\r\n");
            assert!(
                matches!(
                    route(raw.as_bytes(), peer(), None),
                    Ok(Some((_, Target::NotFound(_))))
                ),
                "{path}"
            );
        }
        let (_, head, _) = tenant("GET /t/a/api/info HTTP/1.1\r\n\r\n", None);
        assert!(head.starts_with("GET /api/info "));
    }

    #[test]
    fn a_grant_replaces_the_close_and_a_clients_own_grant_is_dropped() {
        let routed =
            |raw: &str, host: Option<&TenantHost>| match route(raw.as_bytes(), peer(), host) {
                Ok(Some((_, Target::Tenant { own_host, head, .. }))) => (own_host, head),
                other => panic!("not a tenant route: {other:?}"),
            };
        let pattern = TenantHost::parse("{slug}.rt.example.com").unwrap();
        let forged = "X-Rotor-Keep: rate=0; host=other.rt.example.com\r\n";
        let (own_host, head) = routed(
            &format!(
                "POST /api/publish HTTP/1.1\r\nHost: Acme.rt.example.com:8443\r\n{forged}\r\n"
            ),
            Some(&pattern),
        );
        assert_eq!(own_host.as_deref(), Some("acme.rt.example.com:8443"));
        let text = String::from_utf8(head.clone()).unwrap();
        assert!(
            !text.to_ascii_lowercase().contains("x-rotor-keep"),
            "{text}"
        );
        assert!(text.ends_with("Connection: close\r\n\r\n"));
        let grant = KeepAlive {
            rate: 200,
            host: own_host.unwrap(),
        };
        let granted = String::from_utf8(grant_keep_alive(&head, &grant)).unwrap();
        assert!(granted.starts_with("POST /api/publish HTTP/1.1\r\n"));
        assert!(granted.ends_with(
            "x-rotor-keep: rate=200; host=acme.rt.example.com:8443\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!granted.contains("close"), "{granted}");
        // The path form shares one origin among projects: it names no host of its own.
        let (own_host, _) = routed("POST /t/acme/api/publish HTTP/1.1\r\nHost: x\r\n\r\n", None);
        assert_eq!(own_host, None);
        // A WebSocket head (no close to replace) is never granted.
        let (_, ws) = routed(
            "GET /t/a/connection/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            None,
        );
        assert_eq!(grant_keep_alive(&ws, &grant), ws);
    }

    #[test]
    fn tenant_hosts_route_by_host_and_close_the_path_form() {
        let pattern = TenantHost::parse("{slug}.rt.example.com").unwrap();
        let (slug, head, _) = tenant(
            "GET /connection/websocket HTTP/1.1\r\nHost: Acme.rt.example.com:8443\r\n\r\n",
            Some(&pattern),
        );
        assert_eq!(slug, "acme");
        assert!(head.starts_with("GET /connection/websocket HTTP/1.1\r\n"));
        assert!(matches!(
            route(
                b"GET /t/acme/api HTTP/1.1\r\nHost: rotor.example.com\r\n\r\n",
                peer(),
                Some(&pattern)
            ),
            Ok(Some((
                _,
                Target::NotFound("projects are served at their own host")
            )))
        ));
        assert!(matches!(
            route(
                b"GET /projects HTTP/1.1\r\nHost: rotor.example.com\r\n\r\n",
                peer(),
                Some(&pattern)
            ),
            Ok(Some((_, Target::ControlPlane)))
        ));
        // On a tenant's host the dashboard is never served, whatever the path.
        let (slug, _, _) = tenant(
            "GET /login HTTP/1.1\r\nHost: evil.rt.example.com\r\n\r\n",
            Some(&pattern),
        );
        assert_eq!(slug, "evil");
    }

    fn body(raw: &str) -> Body {
        match route(raw.as_bytes(), peer(), None) {
            Ok(Some((_, Target::Tenant { body, .. }))) => body,
            other => panic!("not a tenant route: {other:?}"),
        }
    }

    #[test]
    fn only_a_body_of_known_small_length_is_read_ahead() {
        assert_eq!(body("GET /t/a/x HTTP/1.1\r\n\r\n"), Body::Length(0));
        assert_eq!(
            body("POST /t/a/api HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Body::Length(12)
        );
        assert_eq!(
            body("POST /t/a/api HTTP/1.1\r\nContent-Length: 12\r\ncontent-length: 12\r\n\r\n"),
            Body::Length(12)
        );
        for streamed in [
            "POST /t/a/api HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /t/a/api HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /t/a/api HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST /t/a/api HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            "POST /t/a/api HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            "POST /t/a/api HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST /t/a/api HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n",
            "POST /t/a/api HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert_eq!(body(streamed), Body::Streamed, "{streamed}");
        }
    }

    #[test]
    fn incomplete_and_malformed_heads() {
        assert_eq!(route(b"GET /t/a/x HTTP/1.1\r\n", peer(), None), Ok(None));
        assert_eq!(
            route(b"GET /t/a b/x HTTP/1.1\r\n\r\n", peer(), None),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            route(b"GET /t//x HTTP/1.1\r\n\r\n", peer(), None),
            Err(HeadError::Malformed)
        );
    }

    #[test]
    fn targets_that_are_not_a_path_are_malformed_whatever_the_host() {
        let pattern = TenantHost::parse("{slug}.rt.example.com").unwrap();
        for target in [
            "http://x/metrics",
            "http://acme.rt.example.com/admin/config",
            "HTTPS://x/api",
            "*",
            "acme.rt.example.com:443",
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: acme.rt.example.com\r\n\r\n");
            assert_eq!(
                route(head.as_bytes(), peer(), Some(&pattern)),
                Err(HeadError::Malformed),
                "{target}"
            );
            let head = format!("GET {target} HTTP/1.1\r\nHost: rotor.example.com\r\n\r\n");
            assert_eq!(
                route(head.as_bytes(), peer(), None),
                Err(HeadError::Malformed),
                "{target}"
            );
        }
    }
}
