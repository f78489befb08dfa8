//! The bidirectional WebSocket transport (`/connection/websocket`): JSON as text frames,
//! Protobuf as binary frames when the client asks for `centrifuge-protobuf`. The socket is a
//! [`WsWire`] (also the push-only `uni_websocket`'s) for the connection loop of
//! [`super::driver`], one task per connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::net::TcpStream;

use super::driver::{drive, Incoming, Millis, Timing, Wire, WriteError};
use super::origin::origin_allowed;
use super::slot::SocketSlot;
use crate::budgets::SocketPermit;
use crate::client::ClientHandle;
use crate::node::Node;
use crate::protocol::{Disconnect, ProtocolKind, TransportName};
use crate::session::{Session, TransportInfo};
use crate::socket::{poll_write_with, DirectSocket};

const SUBPROTOCOLS: [&str; 2] = ["centrifuge-json", "centrifuge-protobuf"];
/// Small socket buffers keep idle connections cheap; frames larger than this still work.
const DEFAULT_READ_BUFFER: usize = 1024;
/// How many bytes of frames tungstenite gathers before it writes them to the socket unasked.
/// Every batch ends with a flush, so this bounds one write, not a delay; the buffer grows only
/// as far as the largest batch a connection was sent, as one joined message did before.
const DEFAULT_WRITE_BUFFER: usize = 64 * 1024;

/// Upgrades a request to a WebSocket session.
pub async fn handler(
    State(node): State<Arc<Node>>,
    SocketSlot(slot): SocketSlot,
    Query(query): Query<HashMap<String, String>>,
    socket: Option<Extension<DirectSocket>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let config = node.config.load();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(&config.tenant.client.allowed_origins, origin) {
        tracing::info!(
            origin = origin.unwrap_or_default(),
            "connection refused: origin not allowed"
        );
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let protocol = select_protocol(&query, &headers);
    // For clients that cannot answer protocol pings (wscat, Postman): WebSocket ping frames.
    let native_ping = query
        .get("cf_ws_frame_ping_pong")
        .is_some_and(|v| v == "true");
    let ws_cfg = &config.tenant.websocket;
    let read_buffer = match ws_cfg.read_buffer_size {
        0 => DEFAULT_READ_BUFFER,
        n => n as usize,
    };
    let write_buffer = match ws_cfg.write_buffer_size {
        0 => DEFAULT_WRITE_BUFFER,
        n => n as usize,
    };
    let max_message = ws_cfg.message_size_limit as usize;
    let direct = socket.map(|Extension(DirectSocket(s))| s);
    ws.protocols(SUBPROTOCOLS)
        .read_buffer_size(read_buffer)
        .write_buffer_size(write_buffer)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            // A task of its own: axum's upgrade task keeps its upgrade state (config, protocol,
            // this closure) beside the connection's future for the connection's whole life.
            let conn = Upgraded {
                socket,
                direct,
                protocol,
                native_ping,
            };
            tokio::spawn(run(node, conn, slot, headers));
            std::future::ready(())
        })
}

/// Query `cf_protocol=protobuf` (or legacy `format=protobuf`) wins; else the first of our
/// subprotocols the client lists.
fn select_protocol(query: &HashMap<String, String>, headers: &HeaderMap) -> ProtocolKind {
    let q = query.get("cf_protocol").or_else(|| query.get("format"));
    if q.is_some_and(|v| v == "protobuf") {
        return ProtocolKind::Protobuf;
    }
    let requested = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| SUBPROTOCOLS.contains(p));
    if requested == Some("centrifuge-protobuf") {
        ProtocolKind::Protobuf
    } else {
        ProtocolKind::Json
    }
}

/// An upgraded connection, before its task starts.
struct Upgraded {
    socket: WebSocket,
    /// The TCP socket under it, which the fan-out may borrow ([`crate::lent_write`]).
    direct: Option<Arc<TcpStream>>,
    protocol: ProtocolKind,
    native_ping: bool,
}

/// The connection task.
fn run(
    node: Arc<Node>,
    conn: Upgraded,
    slot: SocketPermit,
    headers: HeaderMap,
) -> impl Future<Output = ()> + Send + 'static {
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
    let lender = direct.map(|socket| {
        handle.outbox.attach_socket(socket);
        handle
    });
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
    socket: WebSocket,
    protocol: ProtocolKind,
    /// The connection whose socket the fan-out may borrow: the wire tells it when it holds
    /// unsent bytes, and writes what a lent write left unsent before anything of its own.
    lender: Option<Arc<ClientHandle>>,
}

impl<const UNI: bool> WsWire<UNI> {
    /// A wire over `socket` speaking `protocol`.
    pub(super) fn new(socket: WebSocket, protocol: ProtocolKind) -> Self {
        Self {
            socket,
            protocol,
            lender: None,
        }
    }

    fn socket(&mut self) -> Pin<&mut WebSocket> {
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
                code: reason.code,
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

/// Whether a read failed because the message or a frame exceeded the size limits: the
/// WebSocket library's capacity error, found by type under axum's error.
fn is_too_big(e: &axum::Error) -> bool {
    let inner = std::error::Error::source(e);
    matches!(
        inner.and_then(|i| i.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
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
}
