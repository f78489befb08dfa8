//! Unidirectional transports: the client sends one bare ConnectRequest and then only listens.
//! `uni_sse` (EventSource: `data: <push>\n\n`), `uni_http_stream` (`<push>\n` chunks) and
//! `uni_websocket` (one push per text frame). Every push goes out bare, without the
//! `{"push": …}` envelope of the bidirectional protocol; disconnects are a `disconnect` push.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes as AxumBytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::slot::SocketSlot;
use crate::budgets::SocketPermit;
use crate::client::OutItem;
use crate::node::Node;
use crate::protocol::{Command, ConnectRequest, Disconnect, ProtocolKind, Push, Reply};
use crate::session::{Session, TransportInfo};

/// Largest connect request accepted from a query string or body.
const MAX_CONNECT_REQUEST: usize = 64 * 1024;

/// A `{"push":{…}}` frame element without its envelope (zero-copy: the hub's frames are
/// `{"push":` + push + `}`); other replies pass unchanged.
fn bare(frame: Bytes) -> Bytes {
    const ENVELOPE: &[u8] = b"{\"push\":";
    if frame.starts_with(ENVELOPE) && frame.ends_with(b"}") {
        frame.slice(ENVELOPE.len()..frame.len() - 1)
    } else {
        frame
    }
}

fn disconnect_push(d: &Disconnect) -> Bytes {
    let reply = Reply {
        push: Some(Push {
            disconnect: Some(d.to_push()),
            ..Default::default()
        }),
        ..Default::default()
    };
    bare(crate::protocol::encode_reply(ProtocolKind::Json, &reply).unwrap_or_default())
}

/// Where a unidirectional session writes.
trait UniSink: Send {
    /// Writes bare pushes; false when the client is gone.
    async fn send(&mut self, pushes: Vec<Bytes>) -> bool;
    /// Ends the stream after a disconnect push.
    async fn finish(&mut self, reason: &Disconnect);
    /// Resolves when the client went away.
    async fn closed(&mut self);
}

/// Runs a unidirectional session until it ends.
async fn run(
    node: Arc<Node>,
    slot: SocketPermit,
    name: &'static str,
    request: ConnectRequest,
    headers: HeaderMap,
    mut sink: impl UniSink,
) {
    let mut session = Session::new(
        node.clone(),
        TransportInfo {
            name,
            protocol: ProtocolKind::Json,
            emulation: false,
            unidirectional: true,
            native_ping: false,
        },
        slot,
    )
    .with_request_headers(headers);
    let handle = session.handle().clone();
    let shutdown = node.shutdown.clone();
    let connect = Command {
        id: 1,
        connect: Some(request),
        ..Default::default()
    };
    let far = || Instant::now() + Duration::from_secs(86_400);
    let reason = match session.handle_command(connect).await {
        Err(d) => d,
        Ok(()) => {
            let timer = tokio::time::sleep_until(session.next_deadline().unwrap_or_else(far));
            tokio::pin!(timer);
            loop {
                // Drain first: the connect push and anything queued with it.
                let (items, closed) = handle.outbox.drain();
                let mut pushes = Vec::new();
                let mut ended = None;
                for item in items {
                    match item {
                        OutItem::Frame(f) => pushes.push(bare(f)),
                        OutItem::Control(c) => {
                            if !pushes.is_empty() && !sink.send(std::mem::take(&mut pushes)).await {
                                ended = Some(Disconnect::CONNECTION_CLOSED);
                                break;
                            }
                            if let Err(d) = Box::pin(session.handle_control(c)).await {
                                ended = Some(d);
                                break;
                            }
                        }
                    }
                }
                if ended.is_none() && !pushes.is_empty() && !sink.send(pushes).await {
                    ended = Some(Disconnect::CONNECTION_CLOSED);
                }
                if let Some(d) = ended.or(closed) {
                    break d;
                }
                let deadline = session.next_deadline().unwrap_or_else(far);
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break Disconnect::SHUTDOWN,
                    _ = handle.outbox.notified() => {}
                    _ = sink.closed() => break Disconnect::CONNECTION_CLOSED,
                    _ = &mut timer => {
                        if let Err(d) = Box::pin(session.on_timer()).await {
                            break d;
                        }
                    }
                }
            }
        }
    };
    if reason != Disconnect::CONNECTION_CLOSED {
        sink.finish(&reason).await;
    }
    Box::pin(session.close(&reason)).await;
}

/// Reads the ConnectRequest from `cf_connect` or the body.
/// Why a unidirectional connection was refused before it started.
type Refusal = (StatusCode, String);

fn connect_request(
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<ConnectRequest, Refusal> {
    let raw: &[u8] = match query.get("cf_connect") {
        Some(q) => q.as_bytes(),
        None => body,
    };
    if raw.len() > MAX_CONNECT_REQUEST {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "connect request too large".into(),
        ));
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(ConnectRequest::default());
    }
    serde_json::from_slice(raw).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("malformed connect request: {e}"),
        )
    })
}

/// Streams bytes into an HTTP response body.
struct BodySink {
    tx: mpsc::Sender<Result<AxumBytes, Infallible>>,
    frame: fn(&Bytes) -> Bytes,
}

impl UniSink for BodySink {
    async fn send(&mut self, pushes: Vec<Bytes>) -> bool {
        let mut buf = Vec::new();
        for p in &pushes {
            buf.extend_from_slice(&(self.frame)(p));
        }
        self.tx.send(Ok(AxumBytes::from(buf))).await.is_ok()
    }
    async fn finish(&mut self, reason: &Disconnect) {
        let _ = self
            .tx
            .send(Ok((self.frame)(&disconnect_push(reason))))
            .await;
    }
    async fn closed(&mut self) {
        self.tx.closed().await
    }
}

fn sse_frame(p: &Bytes) -> Bytes {
    let mut out = Vec::with_capacity(p.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(p);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn line_frame(p: &Bytes) -> Bytes {
    let mut out = Vec::with_capacity(p.len() + 1);
    out.extend_from_slice(p);
    out.push(b'\n');
    Bytes::from(out)
}

fn stream_response(
    node: Arc<Node>,
    slot: SocketPermit,
    name: &'static str,
    request: ConnectRequest,
    headers: HeaderMap,
    sse: bool,
) -> Response {
    let (tx, response) = super::streaming::response(if sse {
        "text/event-stream"
    } else {
        "application/json"
    });
    let frame = if sse { sse_frame } else { line_frame };
    if sse {
        let _ = tx.try_send(Ok(AxumBytes::from_static(b"\r\n")));
    }
    tokio::spawn(run(
        node,
        slot,
        name,
        request,
        headers,
        BodySink { tx, frame },
    ));
    response
}

/// `GET/POST /connection/uni_sse`.
pub async fn sse(
    State(node): State<Arc<Node>>,
    SocketSlot(slot): SocketSlot,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: AxumBytes,
) -> Response {
    if !node.config.load().tenant.uni_sse.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(r) = super::streaming::refuse_origin(&node, &headers) {
        return r;
    }
    let body: &[u8] = if method == Method::POST { &body } else { b"" };
    match connect_request(&query, body) {
        Ok(req) => stream_response(node, slot, "uni_sse", req, headers, true),
        Err(r) => r.into_response(),
    }
}

/// `POST /connection/uni_http_stream`.
pub async fn http_stream(
    State(node): State<Arc<Node>>,
    SocketSlot(slot): SocketSlot,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: AxumBytes,
) -> Response {
    if !node.config.load().tenant.uni_http_stream.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(r) = super::streaming::refuse_origin(&node, &headers) {
        return r;
    }
    match connect_request(&query, &body) {
        Ok(req) => stream_response(node, slot, "uni_http_stream", req, headers, false),
        Err(r) => r.into_response(),
    }
}

/// A WebSocket that carries one push per text frame, and sends WebSocket ping frames every
/// `ping_every` while it is idle (no pong is required: a unidirectional client never writes).
struct WsSink {
    socket: WebSocket,
    ping_every: Duration,
    /// When the next ping frame is due; kept here because `closed` is restarted after every
    /// push.
    next_ping: tokio::time::Instant,
}

impl UniSink for WsSink {
    async fn send(&mut self, pushes: Vec<Bytes>) -> bool {
        for p in pushes {
            let Ok(text) = Utf8Bytes::try_from(p) else {
                return false;
            };
            if self.socket.send(Message::Text(text)).await.is_err() {
                return false;
            }
        }
        true
    }
    async fn finish(&mut self, reason: &Disconnect) {
        if let Ok(text) = Utf8Bytes::try_from(disconnect_push(reason)) {
            let _ = self.socket.send(Message::Text(text)).await;
        }
        let frame = CloseFrame {
            code: reason.code,
            reason: Utf8Bytes::from(reason.reason.to_string()),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }
    async fn closed(&mut self) {
        // Anything the client sends after connecting is ignored; a close or error ends it.
        let pinging = !self.ping_every.is_zero();
        loop {
            tokio::select! {
                msg = self.socket.recv() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                },
                _ = tokio::time::sleep_until(self.next_ping), if pinging => {
                    self.next_ping = crate::clock::after(self.ping_every);
                    if self.socket.send(Message::Ping(Bytes::new())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// `GET /connection/uni_websocket`. Without `cf_connect` the ConnectRequest is the first
/// message, due within `client.stale_close_delay` (else close 3502), the socket counted from
/// the start.
pub async fn websocket(
    State(node): State<Arc<Node>>,
    SocketSlot(slot): SocketSlot,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !node.config.load().tenant.uni_websocket.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(r) = super::streaming::refuse_origin(&node, &headers) {
        return r;
    }
    let from_query = match query.get("cf_connect") {
        Some(_) => match connect_request(&query, b"") {
            Ok(r) => Some(r),
            Err(r) => return r.into_response(),
        },
        None => None,
    };
    let config = node.config.load();
    let max = config.tenant.websocket.message_size_limit as usize;
    let stale = crate::session::stale_close_delay(&config.tenant.client);
    drop(config);
    ws.max_message_size(max)
        .on_upgrade(move |mut socket| async move {
            let request = match from_query {
                Some(r) => r,
                None => match tokio::time::timeout(stale, socket.recv()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        match serde_json::from_str::<ConnectRequest>(&t) {
                            Ok(r) => r,
                            Err(_) => {
                                let _ = socket
                                    .send(Message::Close(Some(CloseFrame {
                                        code: 3501,
                                        reason: "bad request".into(),
                                    })))
                                    .await;
                                return;
                            }
                        }
                    }
                    Err(_) => {
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code: Disconnect::STALE.code,
                                reason: Utf8Bytes::from_static("stale"),
                            })))
                            .await;
                        return;
                    }
                    _ => return,
                },
            };
            let ping_every = node.config.load().tenant.client.ping_interval.get();
            let sink = WsSink {
                socket,
                ping_every,
                next_ping: crate::clock::after(ping_every),
            };
            run(node, slot, "uni_websocket", request, headers, sink).await;
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_lose_their_envelope_without_copying() {
        let framed = Bytes::from_static(br#"{"push":{"channel":"c","pub":{"data":1}}}"#);
        assert_eq!(&bare(framed)[..], br#"{"channel":"c","pub":{"data":1}}"#);
        assert_eq!(&bare(Bytes::from_static(b"{}"))[..], b"{}");
        assert_eq!(
            &disconnect_push(&Disconnect::SHUTDOWN)[..],
            br#"{"disconnect":{"code":3001,"reason":"shutdown"}}"#
        );
    }
}
