//! The bidirectional WebSocket transport (`/connection/websocket`): JSON as text frames,
//! Protobuf as binary frames when the client asks for `centrifuge-protobuf`. One task per
//! connection runs a `select!` over the socket, the outbox, the session timer and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use tokio::time::{timeout, Instant};

use super::origin::origin_allowed;
use crate::client::{ClientHandle, OutItem};
use crate::node::Node;
use crate::protocol::{Disconnect, ProtocolKind};
use crate::session::{Session, TransportInfo};

const SUBPROTOCOLS: [&str; 2] = ["centrifuge-json", "centrifuge-protobuf"];
/// Small socket buffers keep idle connections cheap; frames larger than this still work.
const DEFAULT_READ_BUFFER: usize = 1024;

/// Upgrades a request to a WebSocket session.
pub async fn handler(
    State(node): State<Arc<Node>>,
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
    let max_message = ws_cfg.message_size_limit as usize;
    ws.protocols(SUBPROTOCOLS)
        .read_buffer_size(read_buffer)
        .write_buffer_size(ws_cfg.write_buffer_size as usize)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| run(node, socket, protocol, native_ping, headers))
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

async fn run(
    node: Arc<Node>,
    mut socket: WebSocket,
    protocol: ProtocolKind,
    native_ping: bool,
    headers: HeaderMap,
) {
    let mut session = Session::new(
        node.clone(),
        TransportInfo {
            name: "websocket",
            protocol,
            emulation: false,
            unidirectional: false,
            native_ping,
        },
    )
    .with_request_headers(headers);
    let handle = session.handle().clone();
    let write_timeout = node.config.load().tenant.websocket.write_timeout.get();
    let shutdown = node.shutdown.clone();
    let far = || Instant::now() + Duration::from_secs(86_400);
    let timer = tokio::time::sleep_until(session.next_deadline().unwrap_or_else(far));
    tokio::pin!(timer);
    // Native pings (`cf_ws_frame_ping_pong=true`) follow the protocol pings' settings: a ping
    // frame every `client.ping_interval`, its pong due within `client.pong_timeout`.
    let (ping_every, pong_within) = {
        let config = node.config.load();
        let client = &config.tenant.client;
        (client.ping_interval.get(), client.pong_timeout.get())
    };
    let native_ping = native_ping && !ping_every.is_zero();
    let frame_ping = tokio::time::sleep_until(if native_ping {
        Instant::now() + ping_every
    } else {
        far()
    });
    tokio::pin!(frame_ping);
    let mut pong_due: Option<Instant> = None;

    // The next timer deadline only changes when a frame, a timer or a control request was
    // handled; a plain outbox flush (the whole of fan-out) leaves it as it was.
    let mut deadline_stale = false;
    let reason = loop {
        if deadline_stale {
            let deadline = session.next_deadline().unwrap_or_else(far);
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            deadline_stale = false;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break Disconnect::SHUTDOWN,
            msg = socket.recv() => {
                let frame: Bytes = match msg {
                    None | Some(Ok(Message::Close(_))) => break Disconnect::CONNECTION_CLOSED,
                    Some(Ok(Message::Text(text))) => Bytes::from(text),
                    Some(Ok(Message::Binary(bin))) => bin,
                    Some(Ok(Message::Pong(_))) => {
                        if pong_due.take().is_some() {
                            frame_ping.as_mut().reset(Instant::now() + ping_every);
                        }
                        continue;
                    }
                    Some(Ok(Message::Ping(_))) => continue,
                    Some(Err(e)) => {
                        if is_too_big(&e) {
                            node.metrics.malformed_frames.inc();
                            tracing::info!(client = %handle.id, "message too big");
                            break Disconnect::custom(1009, "message too big");
                        }
                        break Disconnect::CONNECTION_CLOSED;
                    }
                };
                // Command futures (connect, subscribe, proxies, engine calls) are large and
                // rare: boxed, they do not inflate every idle connection's task.
                if let Err(d) = Box::pin(session.handle_frame(&frame)).await {
                    break d;
                }
                deadline_stale = true;
                if let Err(d) = flush(&handle, &mut session, &mut socket, protocol, write_timeout).await {
                    break d;
                }
            }
            _ = handle.outbox.notified() => {
                match flush(&handle, &mut session, &mut socket, protocol, write_timeout).await {
                    Ok(controls) => deadline_stale |= controls,
                    Err(d) => break d,
                }
            }
            _ = &mut frame_ping, if native_ping => {
                if pong_due.is_some() {
                    break Disconnect::NO_PONG;
                }
                let sent = timeout(write_timeout, socket.send(Message::Ping(Bytes::new()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break Disconnect::WRITE_ERROR;
                }
                if pong_within.is_zero() {
                    frame_ping.as_mut().reset(Instant::now() + ping_every);
                } else {
                    let due = Instant::now() + pong_within;
                    pong_due = Some(due);
                    frame_ping.as_mut().reset(due);
                }
            }
            _ = &mut timer => {
                if let Err(d) = Box::pin(session.on_timer()).await {
                    break d;
                }
                deadline_stale = true;
                if let Err(d) = flush(&handle, &mut session, &mut socket, protocol, write_timeout).await {
                    break d;
                }
            }
        }
    };

    if reason != Disconnect::CONNECTION_CLOSED && reason.code != 3009 {
        if reason != Disconnect::SLOW {
            // What was queued before the disconnect (e.g. the error reply) still goes out.
            let _ = flush_frames_only(&handle, &mut socket, protocol, &node, write_timeout).await;
        }
        let frame = CloseFrame {
            code: reason.code,
            reason: Utf8Bytes::from(reason.reason.to_string()),
        };
        let _ = timeout(write_timeout, socket.send(Message::Close(Some(frame)))).await;
    }
    tracing::debug!(client = %handle.id, code = reason.code, "connection closed");
    Box::pin(session.close(&reason)).await;
}

fn is_too_big(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big")
}

/// Writes everything queued; runs control requests in queue order. Frames queued together go
/// out as one WebSocket message. Tells whether any control request ran.
async fn flush(
    handle: &ClientHandle,
    session: &mut Session,
    socket: &mut WebSocket,
    protocol: ProtocolKind,
    write_timeout: Duration,
) -> Result<bool, Disconnect> {
    let mut controls = false;
    loop {
        let (items, closed) = handle.outbox.drain();
        if items.is_empty() {
            return closed.map_or(Ok(controls), Err);
        }
        let mut batch: Vec<Bytes> = Vec::new();
        for item in items {
            match item {
                OutItem::Frame(f) => batch.push(f),
                OutItem::Control(c) => {
                    write_batch(
                        handle,
                        socket,
                        protocol,
                        &mut batch,
                        session.node_metrics(),
                        write_timeout,
                    )
                    .await?;
                    Box::pin(session.handle_control(c)).await?;
                    controls = true;
                }
            }
        }
        write_batch(
            handle,
            socket,
            protocol,
            &mut batch,
            session.node_metrics(),
            write_timeout,
        )
        .await?;
        if let Some(d) = closed {
            return Err(d);
        }
    }
}

/// Final flush after a disconnect decision: frames only.
async fn flush_frames_only(
    handle: &ClientHandle,
    socket: &mut WebSocket,
    protocol: ProtocolKind,
    node: &Node,
    write_timeout: Duration,
) -> Result<(), Disconnect> {
    let (items, _) = handle.outbox.drain();
    let mut batch: Vec<Bytes> = items
        .into_iter()
        .filter_map(|i| match i {
            OutItem::Frame(f) => Some(f),
            OutItem::Control(_) => None,
        })
        .collect();
    write_batch(
        handle,
        socket,
        protocol,
        &mut batch,
        &node.metrics,
        write_timeout,
    )
    .await
}

/// Writes the batch as one message within `write_timeout`. A write that blocks (the peer
/// stopped reading) ends early with 3008 once the outbox overflows meanwhile, as a queued
/// frame would: a stuck writer must not turn a slow client into a 3009 a second later.
async fn write_batch(
    handle: &ClientHandle,
    socket: &mut WebSocket,
    protocol: ProtocolKind,
    batch: &mut Vec<Bytes>,
    metrics: &crate::metrics::Metrics,
    write_timeout: Duration,
) -> Result<(), Disconnect> {
    if batch.is_empty() {
        return Ok(());
    }
    let payload = if batch.len() == 1 {
        batch.pop().unwrap_or_default()
    } else {
        let sep = usize::from(protocol == ProtocolKind::Json);
        let total: usize = batch.iter().map(|b| b.len() + sep).sum();
        let mut buf = BytesMut::with_capacity(total);
        for (i, frame) in batch.drain(..).enumerate() {
            if sep == 1 && i > 0 {
                buf.extend_from_slice(b"\n");
            }
            buf.extend_from_slice(&frame);
        }
        buf.freeze()
    };
    metrics.bytes_out.add(payload.len() as u64);
    let message = match protocol {
        ProtocolKind::Json => match Utf8Bytes::try_from(payload) {
            Ok(text) => Message::Text(text),
            Err(_) => return Err(Disconnect::INAPPROPRIATE_PROTOCOL),
        },
        ProtocolKind::Protobuf => Message::Binary(payload),
    };
    let send = timeout(write_timeout, socket.send(message));
    tokio::pin!(send);
    loop {
        tokio::select! {
            biased;
            sent = &mut send => {
                return match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) | Err(_) => Err(Disconnect::WRITE_ERROR),
                };
            }
            // Frames pushed meanwhile are drained by the caller's loop after this write.
            _ = handle.outbox.notified() => {
                if handle.outbox.is_slow() {
                    return Err(Disconnect::SLOW);
                }
            }
        }
    }
}
