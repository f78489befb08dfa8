//! The bidirectional WebSocket transport (`/connection/websocket`): JSON as text frames,
//! Protobuf as binary frames when the client asks for `centrifuge-protobuf`. The socket is a
//! [`WsWire`] (also the push-only `uni_websocket`'s) for the connection loop of
//! [`super::driver`], one task per connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::net::TcpStream;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

use super::driver::{drive, Incoming, Millis, Timing, Wire, WriteError};
use super::origin::origin_allowed;
use super::slot::SocketSlot;
use super::upgrade::{self, Handshake, Socket};
use crate::budgets::SocketPermit;
use crate::client::ClientHandle;
use crate::node::Node;
use crate::protocol::{Disconnect, ProtocolKind, TransportName};
use crate::session::{Session, TransportInfo};
use crate::socket::poll_write_with;

const SUBPROTOCOLS: [&str; 2] = ["centrifuge-json", "centrifuge-protobuf"];
/// Small socket buffers keep idle connections cheap; frames larger than this still work.
const DEFAULT_READ_BUFFER: usize = 1024;
/// How many bytes of frames tungstenite gathers before it writes them to the socket unasked.
/// Every batch ends with a flush, so this bounds one write, not a delay; the buffer grows only
/// as far as the largest batch a connection was sent, as one joined message did before.
const DEFAULT_WRITE_BUFFER: usize = 64 * 1024;

/// Upgrades a request to a WebSocket session: a request on a kept-alive connection, or one
/// [`super::early`] left to the router; a connection's first request usually opens there.
pub async fn handler(
    State(node): State<Arc<Node>>,
    SocketSlot(slot): SocketSlot,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    handshake: Handshake,
) -> Response {
    let config = node.config.load();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(&config.tenant.client.allowed_origins, origin) {
        return origin_refused(origin);
    }
    let params = Params::from_query(query.as_deref().unwrap_or_default(), &headers);
    let ws_config = socket_config(&config.tenant.websocket);
    handshake.accept(params.subprotocol, ws_config, move |ws| {
        run(node, ws, params, slot, headers)
    })
}

/// The answer to a WebSocket from an origin the project does not allow.
pub(super) fn origin_refused(origin: Option<&str>) -> Response {
    tracing::info!(
        origin = origin.unwrap_or_default(),
        "connection refused: origin not allowed"
    );
    (StatusCode::FORBIDDEN, "origin not allowed").into_response()
}

/// The WebSocket library's limits and buffers from the project's `websocket` options.
pub(super) fn socket_config(ws: &rotor_tenant_config::WebSocketSection) -> WebSocketConfig {
    let read_buffer = match ws.read_buffer_size {
        0 => DEFAULT_READ_BUFFER,
        n => n as usize,
    };
    let write_buffer = match ws.write_buffer_size {
        0 => DEFAULT_WRITE_BUFFER,
        n => n as usize,
    };
    let max_message = ws.message_size_limit as usize;
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(write_buffer)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// What the request asks of the connection besides the upgrade.
#[derive(Debug, Clone, Copy)]
pub(super) struct Params {
    pub(super) protocol: ProtocolKind,
    /// For clients that cannot answer protocol pings (wscat, Postman): WebSocket ping frames.
    pub(super) native_ping: bool,
    /// The subprotocol the answer names.
    pub(super) subprotocol: Option<&'static str>,
}

impl Params {
    /// Query `cf_protocol=protobuf` (or legacy `format=protobuf`) wins; else the first of our
    /// subprotocols the client lists. `cf_ws_frame_ping_pong=true` asks for ping frames.
    pub(super) fn from_query(query: &str, headers: &HeaderMap) -> Self {
        let (mut cf_protocol, mut format, mut native_ping) = (None, None, false);
        // As a map of the query would hold them: the last of a repeated name counts.
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "cf_protocol" => cf_protocol = Some(v == "protobuf"),
                "format" => format = Some(v == "protobuf"),
                "cf_ws_frame_ping_pong" => native_ping = v == "true",
                _ => {}
            }
        }
        // The subprotocol named in the answer decides the format, so the two never differ.
        let subprotocol = upgrade::subprotocol(headers, &SUBPROTOCOLS);
        let protocol =
            if cf_protocol.or(format) == Some(true) || subprotocol == Some("centrifuge-protobuf") {
                ProtocolKind::Protobuf
            } else {
                ProtocolKind::Json
            };
        Self {
            protocol,
            native_ping,
            subprotocol,
        }
    }
}

/// An upgraded connection, before its task starts.
struct Upgraded {
    socket: Socket,
    /// The TCP socket under it, which the fan-out may borrow ([`crate::lent_write`]).
    direct: Arc<TcpStream>,
    protocol: ProtocolKind,
    native_ping: bool,
}

/// The connection's session on `ws`, to its end.
pub(super) fn run(
    node: Arc<Node>,
    ws: Socket,
    params: Params,
    slot: SocketPermit,
    headers: HeaderMap,
) -> impl Future<Output = ()> + Send + 'static {
    let conn = Upgraded {
        direct: ws.get_ref().share(),
        socket: ws,
        protocol: params.protocol,
        native_ping: params.native_ping,
    };
    let (lender, connection) = connection(node, conn, slot, headers);
    lending(lender, connection)
}

/// The connection's loop, and its handle when the fan-out may borrow its socket. Everything
/// the connection keeps is set up before the future starts and captured by it in place (see
/// [`drive`]).
fn connection(
    node: Arc<Node>,
    conn: Upgraded,
    slot: SocketPermit,
    headers: HeaderMap,
) -> (
    Option<Arc<ClientHandle>>,
    impl Future<Output = ()> + Send + 'static,
) {
    let Upgraded {
        socket,
        direct,
        protocol,
        native_ping,
    } = conn;
    let session = Session::new(
        node.clone(),
        TransportInfo {
            name: TransportName::WebSocket,
            protocol,
            native_ping,
        },
        slot,
    )
    .with_request_headers(headers);
    // Native pings (`cf_ws_frame_ping_pong=true`) follow the protocol pings' settings: a ping
    // frame every `client.ping_interval`, its pong due within `client.pong_timeout`.
    let timing = {
        let config = node.config.load();
        let client = &config.tenant.client;
        Timing {
            write_timeout: Some(Millis::of(config.tenant.websocket.write_timeout.get())),
            ping_every: if native_ping {
                Millis::of(client.ping_interval.get())
            } else {
                Millis::ZERO
            },
            pong_within: Millis::of(client.pong_timeout.get()),
        }
    };
    let handle = session.handle().clone();
    handle.outbox.attach_socket(direct);
    let lender = Some(handle);
    let mut wire = WsWire::<false>::new(socket, protocol);
    wire.lender = lender.clone();
    (lender, drive(node, session, wire, timing))
}

/// Runs `connection` (boxed: the spawned task holds a pointer, the connection's state is
/// allocated once either way). With a socket the fan-out may borrow, the connection runs only
/// while the socket is not lent, and offers it whenever it goes to sleep with nothing to
/// write ([`crate::client::Outbox::enter`], [`crate::client::Outbox::leave`]).
fn lending<F: Future<Output = ()> + Send + 'static>(
    lender: Option<Arc<ClientHandle>>,
    connection: F,
) -> impl Future<Output = ()> + Send + 'static {
    let mut connection = Box::pin(connection);
    std::future::poll_fn(move |cx| {
        let Some(handle) = &lender else {
            return connection.as_mut().poll(cx);
        };
        if !handle.outbox.enter(cx) {
            return Poll::Pending;
        }
        let step = connection.as_mut().poll(cx);
        match step {
            Poll::Pending => handle.outbox.leave(),
            Poll::Ready(()) => handle.outbox.detach(),
        }
        step
    })
}

/// A WebSocket as a connection's wire: one frame per message, pings as ping frames, the close
/// frame last. `UNI` for `uni_websocket`: every push goes out bare as a text message, what the
/// client sends is ignored, and the close frame follows a `disconnect` push.
pub(super) struct WsWire<const UNI: bool> {
    socket: Socket,
    protocol: ProtocolKind,
    /// The connection whose socket the fan-out may borrow: the wire tells it when it holds
    /// unsent bytes, and writes what a lent write left unsent before anything of its own.
    lender: Option<Arc<ClientHandle>>,
}

impl<const UNI: bool> WsWire<UNI> {
    /// A wire over `socket` speaking `protocol`.
    pub(super) fn new(socket: Socket, protocol: ProtocolKind) -> Self {
        Self {
            socket,
            protocol,
            lender: None,
        }
    }

    fn socket(&mut self) -> Pin<&mut Socket> {
        Pin::new(&mut self.socket)
    }

    /// Writes what a lent write left unsent, if anything: the rest of a frame that is already
    /// partly on the wire must come first.
    fn poll_remainder(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        let Some(handle) = &self.lender else {
            return Poll::Ready(Ok(()));
        };
        if !handle.outbox.has_remainder() {
            return Poll::Ready(Ok(()));
        }
        let Some((mut rest, socket)) = handle.outbox.take_remainder() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            match poll_write_with(&socket, cx, |s| s.try_write(&rest)) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    rest.advance(n);
                    if rest.is_empty() {
                        handle.outbox.keep_remainder(None);
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(_) => {
                    handle.outbox.keep_remainder(None);
                    return Poll::Ready(Err(WriteError::Broken));
                }
                Poll::Pending => {
                    handle.outbox.keep_remainder(Some(rest));
                    return Poll::Pending;
                }
            }
        }
    }

    fn set_dirty(&self, dirty: bool) {
        if let Some(handle) = &self.lender {
            handle.outbox.set_wire_dirty(dirty);
        }
    }
}

impl<const UNI: bool> Wire for WsWire<UNI> {
    type Message = Message;

    fn frame(&self, frame: Bytes) -> Result<Message, Disconnect> {
        match self.protocol {
            ProtocolKind::Json if UNI => text(super::uni::bare(frame)),
            ProtocolKind::Json => text(frame),
            ProtocolKind::Protobuf => Ok(Message::Binary(frame)),
        }
    }

    fn ping(&self) -> Option<Message> {
        Some(Message::Ping(Bytes::new()))
    }

    fn farewell(&self, reason: &Disconnect, part: u8) -> Option<Message> {
        // Push-only clients read the reason from a `disconnect` push before the close frame.
        let close_part = u8::from(UNI);
        if part < close_part {
            let push = super::uni::disconnect_push(reason);
            return Some(
                Utf8Bytes::try_from(push)
                    .map_or(Message::Text(Utf8Bytes::default()), Message::Text),
            );
        }
        (part == close_part).then(|| {
            Message::Close(Some(CloseFrame {
                code: CloseCode::from(reason.code),
                reason: Utf8Bytes::from(reason.reason.to_string()),
            }))
        })
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, accepting: bool) -> Poll<Incoming> {
        if !accepting {
            return Poll::Pending;
        }
        let incoming = match ready!(self.socket().poll_next(cx)) {
            None | Some(Ok(Message::Close(_))) => Incoming::Closed,
            Some(Ok(Message::Text(_) | Message::Binary(_))) if UNI => Incoming::Ignored,
            Some(Ok(Message::Text(text))) => Incoming::Frame(Bytes::from(text)),
            Some(Ok(Message::Binary(bin))) => Incoming::Frame(bin),
            Some(Ok(Message::Pong(_))) => Incoming::Pong,
            // Raw frames are what a writer sends, never what a read returns.
            Some(Ok(Message::Frame(_))) => Incoming::Ignored,
            Some(Ok(Message::Ping(_))) => {
                // The library queued the pong: send it now, so the wire is clean again.
                if self.lender.is_some() {
                    self.set_dirty(true);
                    let _ = self.poll_flush(cx);
                }
                Incoming::Ignored
            }
            Some(Err(e)) if !UNI && is_too_big(&e) => Incoming::TooBig,
            Some(Err(_)) => Incoming::Closed,
        };
        Poll::Ready(incoming)
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        ready!(self.poll_remainder(cx))?;
        self.socket().poll_ready(cx).map_err(|_| WriteError::Broken)
    }

    fn start_send(&mut self, message: Message) -> Result<(), WriteError> {
        self.set_dirty(true);
        self.socket()
            .start_send(message)
            .map_err(|_| WriteError::Broken)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        ready!(self.poll_remainder(cx))?;
        let flushed = ready!(self.socket().poll_flush(cx)).map_err(|_| WriteError::Broken);
        if flushed.is_ok() {
            self.set_dirty(false);
        }
        Poll::Ready(flushed)
    }
}

/// A JSON frame as a text message.
fn text(frame: Bytes) -> Result<Message, Disconnect> {
    Utf8Bytes::try_from(frame)
        .map(Message::Text)
        .map_err(|_| Disconnect::INAPPROPRIATE_PROTOCOL)
}

/// Whether a read failed because the message or a frame exceeded the size limits.
fn is_too_big(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Capacity(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the connection's loop (what `connection` returns besides the handle).
    fn run_future_size<F, H, R>(_: &F) -> usize
    where
        F: FnOnce(Arc<Node>, Upgraded, SocketPermit, HeaderMap) -> (H, R),
    {
        std::mem::size_of::<R>()
    }

    /// Every idle connection holds its loop's future: 2.4 KB before the outbox wait, the write
    /// deadline and the arguments stopped taking room of their own; 1040 bytes after (test
    /// profile). Growing it costs idle memory on every connection. (The spawned task itself
    /// holds the loop boxed, beside the handle of the socket it lends: two pointers.)
    #[test]
    fn the_connection_task_stays_small() {
        let run = run_future_size(&connection);
        assert!(run <= 1088, "the connection loop's future is {run} bytes");
        assert!(super::super::driver::conn_size::<WsWire<false>>() <= 640);
        assert!(std::mem::size_of::<Session>() <= 240);
    }

    fn params(query: &str, offered: &str) -> Params {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            offered.parse().expect("header value"),
        );
        Params::from_query(query, &headers)
    }

    #[test]
    fn the_format_is_the_subprotocol_the_answer_names() {
        for (offered, named, kind) in [
            (
                "centrifuge-protobuf, centrifuge-json",
                "centrifuge-protobuf",
                ProtocolKind::Protobuf,
            ),
            (
                "centrifuge-json, centrifuge-protobuf",
                "centrifuge-json",
                ProtocolKind::Json,
            ),
            (
                "x, centrifuge-protobuf",
                "centrifuge-protobuf",
                ProtocolKind::Protobuf,
            ),
        ] {
            let p = params("", offered);
            assert_eq!(p.subprotocol, Some(named), "{offered}");
            assert_eq!(p.protocol, kind, "{offered}");
        }
        assert_eq!(params("", "x").protocol, ProtocolKind::Json);
        assert_eq!(params("", "x").subprotocol, None);
    }

    #[test]
    fn the_query_asks_for_protobuf_over_any_subprotocol() {
        let p = params("cf_protocol=protobuf", "centrifuge-json");
        assert_eq!(p.protocol, ProtocolKind::Protobuf);
        let p = params("format=protobuf&cf_ws_frame_ping_pong=true", "x");
        assert_eq!(p.protocol, ProtocolKind::Protobuf);
        assert!(p.native_ping);
    }
}
