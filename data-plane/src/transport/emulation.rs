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

use axum::body::Bytes as AxumBytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;

use super::driver::{drive, Incoming, Millis, Primed, Timing};
use super::slot::SocketSlot;
use super::streaming::{BodyWire, Framing};
use crate::budgets::SocketPermit;
use crate::node::Node;
use crate::protocol::{ProtocolKind, TransportName};
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

/// Commands posted to `/emulation` reach a live session through its route, registered under
/// its session id for as long as the connection runs.
struct Route {
    node: Arc<Node>,
    session_id: Arc<str>,
}

impl Route {
    /// Registers the session; its commands come out of the returned receiver.
    fn register(node: &Arc<Node>, session_id: Arc<str>) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        node.emulation.lock().insert(session_id.clone(), tx);
        let route = Route {
            node: node.clone(),
            session_id,
        };
        (route, rx)
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        self.node.emulation.lock().remove(&self.session_id);
    }
}

/// Starts an emulation connection: its session runs `first` and every command posted for it
/// later, its replies framed into the response.
fn stream(
    node: Arc<Node>,
    slot: SocketPermit,
    name: TransportName,
    protocol: ProtocolKind,
    framing: Framing,
    first: Bytes,
    headers: HeaderMap,
) -> Response {
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
            native_ping: false,
        },
        slot,
    )
    .with_request_headers(headers)
    .with_emulation_session(session_id.clone());
    let (body, response) = super::streaming::response(framing.content_type(), framing.preamble());
    let (route, commands) = Route::register(&node, session_id);
    let wire = BodyWire::new(body, framing, protocol, false, Some(commands));
    let wire = Primed::new(wire, Incoming::Frame(first));
    let timing = Timing {
        write_timeout: None,
        ping_every: Millis::ZERO,
        pong_within: Millis::ZERO,
    };
    let connection = drive(node, session, wire, timing);
    tokio::spawn(async move {
        connection.await;
        drop(route);
    });
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
    stream(
        node,
        slot,
        TransportName::HttpStream,
        protocol,
        framing,
        body,
        headers,
    )
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
        TransportName::Sse,
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
