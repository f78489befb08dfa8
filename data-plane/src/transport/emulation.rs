//! Bidirectional emulation for clients without WebSocket, as centrifuge-js uses it:
//! `POST /connection/http_stream` (a long response of replies; JSON lines, or varint-delimited
//! Protobuf for `application/octet-stream`) and `/connection/sse` (EventSource, JSON), with later
//! commands posted to `/emulation` and routed to the live session by its emulation session id.
//!
//! That id is not the client id: client ids are visible to other users (presence, join/leave,
//! publication info), so anyone could post commands into someone else's connection with it.
//! Each emulation connection gets its own random session id instead ([`SESSION_ID_BYTES`] from
//! the OS CSPRNG), sent only to that client in its connect result; a post that names an
//! unknown session is a plain 404.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes as AxumBytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::slot::SocketSlot;
use crate::budgets::SocketPermit;
use crate::client::OutItem;
use crate::node::Node;
use crate::protocol::{encode_reply, Disconnect, ProtocolKind, Push, Reply};
use crate::session::{Session, TransportInfo};

/// Largest `/emulation` body.
const MAX_EMULATION_BODY: usize = 64 * 1024;

/// Random bytes in an emulation session id (128 bits).
pub const SESSION_ID_BYTES: usize = 16;

/// A new unguessable emulation session id: [`SESSION_ID_BYTES`] from the OS CSPRNG, hex.
fn new_session_id() -> Result<Arc<str>, getrandom::Error> {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes).into())
}

/// `/emulation` request in Protobuf form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EmulationRequest {
    #[prost(string, tag = "1")]
    pub node: String,
    #[prost(string, tag = "2")]
    pub session: String,
    #[prost(bytes = "bytes", tag = "3")]
    pub data: Bytes,
}

#[derive(serde::Deserialize)]
struct EmulationJson {
    #[serde(default)]
    node: String,
    session: String,
    data: String,
}

fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"))
}

/// How replies are framed on the stream.
#[derive(Clone, Copy)]
enum Framing {
    Sse,
    JsonLines,
    Protobuf,
}

impl Framing {
    fn frame(self, out: &mut Vec<u8>, element: &[u8]) {
        match self {
            Framing::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(element);
                out.extend_from_slice(b"\n\n");
            }
            Framing::JsonLines => {
                out.extend_from_slice(element);
                out.push(b'\n');
            }
            // Protobuf frame elements already carry their length prefix.
            Framing::Protobuf => out.extend_from_slice(element),
        }
    }
}

use super::streaming::BodyTx;

/// Serves one emulation connection: `session` (routed from `/emulation` by `session_id`) runs
/// `first` and every later posted command, its replies framed onto `out`.
async fn run(
    node: Arc<Node>,
    mut session: Session,
    session_id: Arc<str>,
    protocol: ProtocolKind,
    framing: Framing,
    first: Bytes,
    out: BodyTx,
) {
    let handle = session.handle().clone();
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Bytes>(16);
    node.emulation.lock().insert(session_id.clone(), cmd_tx);
    let shutdown = node.shutdown.clone();
    let far = || Instant::now() + Duration::from_secs(86_400);
    let mut pending_input = Some(first);
    let reason = loop {
        if let Some(frame) = pending_input.take() {
            if let Err(d) = Box::pin(session.handle_frame(&frame)).await {
                break d;
            }
        }
        // Write everything queued, running controls in order.
        let (items, closed) = handle.outbox.drain();
        let mut buf = Vec::new();
        let mut ended = None;
        for item in items {
            match item {
                OutItem::Frame(f) => framing.frame(&mut buf, &f),
                OutItem::Control(c) => {
                    if let Err(d) = Box::pin(session.handle_control(c)).await {
                        ended = Some(d);
                        break;
                    }
                }
            }
        }
        if !buf.is_empty() && out.send(Ok(AxumBytes::from(buf))).await.is_err() {
            break Disconnect::CONNECTION_CLOSED;
        }
        if let Some(d) = ended.or(closed) {
            break d;
        }
        let timer = tokio::time::sleep_until(session.next_deadline().unwrap_or_else(far));
        tokio::select! {
            _ = shutdown.cancelled() => break Disconnect::SHUTDOWN,
            _ = out.closed() => break Disconnect::CONNECTION_CLOSED,
            _ = handle.outbox.notified() => {}
            () = std::future::poll_fn(|cx| session.poll_completed(cx)) => {
                if let Err(d) = Box::pin(session.run_completed()).await {
                    break d;
                }
            }
            // With `client.concurrency`, posted commands wait while others wait for a slot.
            cmd = cmd_rx.recv(), if session.accepts_input() => match cmd {
                Some(frame) => pending_input = Some(frame),
                None => break Disconnect::CONNECTION_CLOSED,
            },
            _ = timer => {
                if let Err(d) = Box::pin(session.on_timer()).await {
                    break d;
                }
            }
        }
    };
    node.emulation.lock().remove(&session_id);
    if reason != Disconnect::CONNECTION_CLOSED {
        let reply = Reply {
            push: Some(Push {
                disconnect: Some(reason.to_push()),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Ok(element) = encode_reply(protocol, &reply) {
            let mut buf = Vec::new();
            framing.frame(&mut buf, &element);
            let _ = out.send(Ok(AxumBytes::from(buf))).await;
        }
    }
    Box::pin(session.close(&reason)).await;
}

fn stream(
    node: Arc<Node>,
    slot: SocketPermit,
    name: &'static str,
    protocol: ProtocolKind,
    framing: Framing,
    first: Bytes,
    headers: HeaderMap,
) -> Response {
    let content_type = match framing {
        Framing::Sse => "text/event-stream",
        Framing::JsonLines => "application/json",
        Framing::Protobuf => "application/octet-stream",
    };
    let session_id = match new_session_id() {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "no randomness for an emulation session id");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let session = Session::new(
        node.clone(),
        TransportInfo {
            name,
            protocol,
            emulation: true,
            unidirectional: false,
            native_ping: false,
        },
        slot,
    )
    .with_request_headers(headers)
    .with_emulation_session(session_id.clone());
    let (tx, response) = super::streaming::response(content_type);
    if matches!(framing, Framing::Sse) {
        let _ = tx.try_send(Ok(AxumBytes::from_static(b"\r\n")));
    }
    tokio::spawn(run(node, session, session_id, protocol, framing, first, tx));
    response
}

/// `POST /connection/http_stream` (OPTIONS preflight answers 204).
pub async fn http_stream(
    State(node): State<Arc<Node>>,
    SocketSlot(slot): SocketSlot,
    method: Method,
    headers: HeaderMap,
    body: AxumBytes,
) -> Response {
    if !node.config.load().tenant.http_stream.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if method == Method::OPTIONS {
        return StatusCode::NO_CONTENT.into_response();
    }
    if let Some(r) = super::streaming::refuse_origin(&node, &headers) {
        return r;
    }
    let (protocol, framing) = if is_protobuf(&headers) {
        (ProtocolKind::Protobuf, Framing::Protobuf)
    } else {
        (ProtocolKind::Json, Framing::JsonLines)
    };
    stream(node, slot, "http_stream", protocol, framing, body, headers)
}

/// `GET /connection/sse?cf_connect=…` or `POST` with the commands as body (JSON only).
pub async fn sse(
    State(node): State<Arc<Node>>,
    SocketSlot(slot): SocketSlot,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: AxumBytes,
) -> Response {
    if !node.config.load().tenant.sse.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(r) = super::streaming::refuse_origin(&node, &headers) {
        return r;
    }
    let first = match (method, query.get("cf_connect")) {
        (_, Some(q)) => Bytes::from(q.clone()),
        (Method::POST, None) => body,
        _ => return (StatusCode::BAD_REQUEST, "cf_connect is required").into_response(),
    };
    stream(
        node,
        slot,
        "sse",
        ProtocolKind::Json,
        Framing::Sse,
        first,
        headers,
    )
}

/// `POST /emulation`: commands for a live emulation session, named by its session id (never
/// by its client id); an unknown session or another node is 404.
pub async fn emulation(
    State(node): State<Arc<Node>>,
    method: Method,
    headers: HeaderMap,
    body: AxumBytes,
) -> Response {
    if method == Method::OPTIONS {
        return StatusCode::NO_CONTENT.into_response();
    }
    if body.len() > MAX_EMULATION_BODY {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let (node_id, session, data) = if is_protobuf(&headers) {
        match EmulationRequest::decode(body) {
            Ok(r) => (r.node, r.session, r.data),
            Err(_) => {
                return (StatusCode::BAD_REQUEST, "malformed emulation request").into_response()
            }
        }
    } else {
        match serde_json::from_slice::<EmulationJson>(&body) {
            Ok(r) => (r.node, r.session, Bytes::from(r.data)),
            Err(_) => {
                return (StatusCode::BAD_REQUEST, "malformed emulation request").into_response()
            }
        }
    };
    if !node_id.is_empty() && node_id != node.id {
        return StatusCode::NOT_FOUND.into_response();
    }
    let target = node.emulation.lock().get(session.as_str()).cloned();
    match target {
        Some(tx) => match tx.send(data).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
