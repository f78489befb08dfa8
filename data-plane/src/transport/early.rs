//! A connection whose first request opens `/connection/websocket` becomes a WebSocket before
//! hyper, the router and its middleware see it: the head is read and parsed here, the same
//! checks run in the same order (open files, `client.connection_rate_limit` and
//! `client.connection_limit`, the handshake, allowed origins), the `101` is written straight
//! to the socket and the session runs in the task that accepted the connection. A connection
//! opens the way a connect storm opens thousands: one task, no router, no upgrade hand-over.
//!
//! Anything else, or anything this path is unsure of (another path or method, a malformed or
//! incomplete head, one larger than [`MAX_HEAD`], a header hyper would refuse), goes on to
//! hyper with the bytes read so far put back in front of the socket, and is served exactly as
//! before. Refusals are the router's answers, written here and followed by closing the
//! connection.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpStream;

use super::origin::origin_allowed;
use super::upgrade::{self, Socket};
use super::websocket::{self, Params};
use crate::node::Node;
use crate::socket::SharedSocket;

/// The largest request head read here; a larger one is hyper's to read.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// The most headers a head read here may have.
const MAX_HEADERS: usize = 48;
/// Where the head is read into at first: an SDK's upgrade request is 200–600 bytes.
const FIRST_READ: usize = 1024;

/// A WebSocket session, to be run to its end.
pub(crate) type Session = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What became of a connection's first request.
pub(crate) enum Opened {
    /// A WebSocket session, to be run to its end by the caller.
    Session(Session),
    /// Not for this path: hyper serves the socket, which replays what was read.
    Http(SharedSocket),
    /// Nothing more to do (the peer left, the head did not come in time, or a refusal was
    /// written).
    Done,
}

/// Reads the first request head off a freshly accepted socket (within `head_timeout`, as
/// hyper bounds a head) and opens a WebSocket if it asks for one.
pub(crate) async fn accepted(
    node: &Arc<Node>,
    stream: TcpStream,
    head_timeout: Duration,
) -> Opened {
    let mut head = Vec::with_capacity(FIRST_READ);
    match tokio::time::timeout(head_timeout, read_head(&stream, &mut head)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Opened::Http(SharedSocket::new(head, stream)),
        Ok(Err(_)) | Err(_) => return Opened::Done,
    }
    open(node, stream, head, None).await
}

/// Opens a WebSocket if the request head the edge handed over with `stream` asks for one;
/// `strip` is a header only the edge may set (its keep-alive grant), not the client's to
/// pass on.
pub(crate) async fn handed(
    node: &Arc<Node>,
    stream: TcpStream,
    head: Vec<u8>,
    strip: &HeaderName,
) -> Opened {
    open(node, stream, head, Some(strip)).await
}

/// Reads until `head` holds a whole request head: true then; false when it will not be one
/// this path takes (too large); an error when the peer left first.
async fn read_head(stream: &TcpStream, head: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut scanned: usize = 0;
    loop {
        stream.readable().await?;
        let start = head.len();
        head.resize(head.capacity(), 0);
        let read = crate::socket::read_draining(stream, &mut head[start..]);
        head.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        // The end of the head may straddle two reads.
        let from = scanned.saturating_sub(3);
        if head[from..].windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(true);
        }
        scanned = head.len();
        if head.len() >= MAX_HEAD {
            return Ok(false);
        }
        if head.len() == head.capacity() {
            head.reserve(head.len().min(MAX_HEAD - head.len()));
        }
    }
}

/// A WebSocket request head, parsed.
struct Request {
    /// Where the head ends in the bytes read (after it: the client's first frames, if any).
    len: usize,
    headers: HeaderMap,
    params: Params,
}

/// Parses `bytes` as a request to open `/connection/websocket`; `None` for anything else.
fn parse(bytes: &[u8], strip: Option<&HeaderName>) -> Option<Request> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let target = req.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/connection/websocket" {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if strip == Some(&name) {
            continue;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    // A body on a GET is hyper's to read (or refuse).
    if headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING)
    {
        return None;
    }
    upgrade::check(&Method::GET, &headers).ok()?;
    let params = Params::from_query(query, &headers);
    Some(Request {
        len,
        headers,
        params,
    })
}

async fn open(
    node: &Arc<Node>,
    stream: TcpStream,
    head: Vec<u8>,
    strip: Option<&HeaderName>,
) -> Opened {
    let Some(request) = parse(&head, strip) else {
        return Opened::Http(SharedSocket::new(head, stream));
    };
    // The router's order: open files, then the socket slot, then the handler's checks.
    let slot = match crate::files::room(node).and_then(|()| super::slot::take(node)) {
        Ok(slot) => slot,
        Err(refusal) => return refuse(stream, refusal.into_response()).await,
    };
    let Request {
        len,
        headers,
        params,
    } = request;
    let config = node.config.load();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(&config.tenant.client.allowed_origins, origin) {
        return refuse(stream, websocket::origin_refused(origin)).await;
    }
    let ws_config = websocket::socket_config(&config.tenant.websocket);
    drop(config);
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let answer = upgrade::switching_protocols(key, params.subprotocol);
    if write_all(&stream, &answer).await.is_err() {
        return Opened::Done;
    }
    let socket = SharedSocket::new(Vec::new(), stream);
    let first_frames = &head[len..];
    let ws: Socket = upgrade::open(socket, first_frames, ws_config).await;
    drop(head);
    Opened::Session(Box::pin(websocket::run(
        node.clone(),
        ws,
        params,
        slot,
        headers,
    )))
}

/// Writes the router's `refusal` and closes the connection.
async fn refuse(stream: TcpStream, refusal: Response) -> Opened {
    let (parts, body) = refusal.into_parts();
    // The router's refusals are a few dozen bytes.
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    let status = parts.status;
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in parts.headers.iter() {
        if name == header::CONNECTION || name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    if write_all(&stream, &out).await.is_ok() {
        let _ = socket2::SockRef::from(&stream).shutdown(std::net::Shutdown::Write);
    }
    Opened::Done
}

/// Writes `bytes` whole (a few hundred bytes: one write, as a rule).
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status a written answer carries.
    fn status_line(bytes: &[u8]) -> Option<axum::http::StatusCode> {
        use axum::http::StatusCode;
        let text = std::str::from_utf8(bytes).ok()?;
        let code = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
        StatusCode::from_bytes(code.as_bytes()).ok()
    }

    const HEAD: &str = "GET /connection/websocket?cf_protocol=protobuf HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Rotor-Grant: 1\r\n\r\n";

    #[test]
    fn an_upgrade_to_the_websocket_endpoint_is_taken_here() {
        let mut bytes = HEAD.as_bytes().to_vec();
        bytes.extend_from_slice(b"\x81\x80");
        let grant = HeaderName::from_static("x-rotor-grant");
        let req = parse(&bytes, Some(&grant)).expect("taken");
        assert_eq!(req.len, HEAD.len());
        assert!(
            !req.headers.contains_key(&grant),
            "the edge's header is stripped"
        );
        assert!(req.headers.contains_key("host"));
        assert_eq!(req.params.protocol, crate::protocol::ProtocolKind::Protobuf);
        assert!(parse(&bytes, None).unwrap().headers.contains_key(&grant));
    }

    #[test]
    fn everything_else_goes_on_to_hyper() {
        let other = |from: &str, to: &str| parse(HEAD.replacen(from, to, 1).as_bytes(), None);
        assert!(other("/connection/websocket", "/connection/uni_websocket").is_none());
        assert!(other("/connection/websocket", "/connection/websocketx").is_none());
        assert!(other("GET", "POST").is_none());
        assert!(other("HTTP/1.1", "HTTP/1.0").is_none());
        assert!(other("Upgrade: websocket", "Upgrade: h2c").is_none());
        assert!(other("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8").is_none());
        assert!(other("Host: x", "Content-Length: 3").is_none());
        assert!(other("Host: x", "Bad Header: x").is_none());
        assert!(parse(&HEAD.as_bytes()[..40], None).is_none(), "incomplete");
        assert!(other(
            "/connection/websocket?cf_protocol=protobuf",
            "/connection/websocket"
        )
        .is_some());
    }

    #[test]
    fn a_refusal_is_written_as_the_router_answers_it() {
        let out = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let client = tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut c = TcpStream::connect(addr).await.unwrap();
                    let mut out = Vec::new();
                    c.read_to_end(&mut out).await.unwrap();
                    out
                });
                let (server, _) = listener.accept().await.unwrap();
                refuse(server, crate::files::at_capacity()).await;
                tokio::time::timeout(Duration::from_secs(5), client)
                    .await
                    .unwrap()
                    .unwrap()
            });
        assert_eq!(
            status_line(&out),
            Some(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("retry-after: 1\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with("too_many_connections\",\"message\":\"this server is at its connection capacity; retry shortly\"}}"), "{text}");
    }
}
