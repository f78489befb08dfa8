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
use bytes::Bytes;
use futures_util::{Sink, Stream};

use super::driver::{drive, Incoming, Millis, Timing, Wire, WriteError};
use super::origin::origin_allowed;
use super::slot::SocketSlot;
use crate::budgets::SocketPermit;
use crate::node::Node;
use crate::protocol::{Disconnect, ProtocolKind, TransportName};
use crate::session::{Session, TransportInfo};

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
    ws.protocols(SUBPROTOCOLS)
        .read_buffer_size(read_buffer)
        .write_buffer_size(write_buffer)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            // A task of its own: axum's upgrade task keeps its upgrade state (config, protocol,
            // this closure) beside the connection's future for the connection's whole life.
            tokio::spawn(run(node, socket, slot, protocol, native_ping, headers));
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

/// The connection task. Everything the connection keeps is set up before the future starts
/// and captured by it in place (see [`drive`]).
fn run(
    node: Arc<Node>,
    socket: WebSocket,
    slot: SocketPermit,
    protocol: ProtocolKind,
    native_ping: bool,
    headers: HeaderMap,
) -> impl Future<Output = ()> + Send + 'static {
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
    drive(
        node,
        session,
        WsWire::<false>::new(socket, protocol),
        timing,
    )
}

/// A WebSocket as a connection's wire: one frame per message, pings as ping frames, the close
/// frame last. `UNI` for `uni_websocket`: every push goes out bare as a text message, what the
/// client sends is ignored, and the close frame follows a `disconnect` push.
pub(super) struct WsWire<const UNI: bool> {
    socket: WebSocket,
    protocol: ProtocolKind,
}

impl<const UNI: bool> WsWire<UNI> {
    /// A wire over `socket` speaking `protocol`.
    pub(super) fn new(socket: WebSocket, protocol: ProtocolKind) -> Self {
        Self { socket, protocol }
    }

    fn socket(&mut self) -> Pin<&mut WebSocket> {
        Pin::new(&mut self.socket)
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
            Some(Ok(Message::Ping(_))) => Incoming::Ignored,
            Some(Err(e)) if !UNI && is_too_big(&e) => Incoming::TooBig,
            Some(Err(_)) => Incoming::Closed,
        };
        Poll::Ready(incoming)
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        self.socket().poll_ready(cx).map_err(|_| WriteError::Broken)
    }

    fn start_send(&mut self, message: Message) -> Result<(), WriteError> {
        self.socket()
            .start_send(message)
            .map_err(|_| WriteError::Broken)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        self.socket().poll_flush(cx).map_err(|_| WriteError::Broken)
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

    fn run_future_size<F, R>(_: &F) -> usize
    where
        F: FnOnce(Arc<Node>, WebSocket, SocketPermit, ProtocolKind, bool, HeaderMap) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every idle connection holds its task's future: 2.4 KB before the outbox wait, the write
    /// deadline and the arguments stopped taking room of their own; 1040 bytes after (test
    /// profile). Growing it costs idle memory on every connection.
    #[test]
    fn the_connection_task_stays_small() {
        let run = run_future_size(&run);
        assert!(run <= 1088, "websocket::run future is {run} bytes");
        assert!(super::super::driver::conn_size::<WsWire<false>>() <= 640);
        assert!(std::mem::size_of::<Session>() <= 240);
    }
}
