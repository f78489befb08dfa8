//! Unidirectional transports: the client sends one bare ConnectRequest and then only listens.
//! `uni_sse` (EventSource: `data: <push>\n\n`), `uni_http_stream` (`<push>\n` chunks) and
//! `uni_websocket` (one push per text frame). Every push goes out bare, without the
//! `{"push": …}` envelope of the bidirectional protocol; disconnects are a `disconnect` push.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes as AxumBytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

use super::driver::{disconnect_element, drive, Incoming, Millis, Primed, Timing};
use super::slot::SocketSlot;
use super::streaming::{BodyWire, Framing};
use super::upgrade::Handshake;
use super::websocket::WsWire;
use crate::budgets::SocketPermit;
use crate::node::Node;
use crate::protocol::{Command, ConnectRequest, Disconnect, ProtocolKind, TransportName};
use crate::session::{Session, TransportInfo};

/// Largest connect request accepted from a query string or body.
const MAX_CONNECT_REQUEST: usize = 64 * 1024;

/// A `{"push":{…}}` frame element without its envelope (zero-copy: the hub's frames are
/// `{"push":` + push + `}`); other replies pass unchanged.
pub(super) fn bare(frame: Bytes) -> Bytes {
    const ENVELOPE: &[u8] = b"{\"push\":";
    if frame.starts_with(ENVELOPE) && frame.ends_with(b"}") {
        frame.slice(ENVELOPE.len()..frame.len() - 1)
    } else {
        frame
    }
}

/// A bare `disconnect` push (JSON).
pub(super) fn disconnect_push(d: &Disconnect) -> Bytes {
    bare(disconnect_element(ProtocolKind::Json, d).unwrap_or_default())
}

/// A new push-only session of transport `name`.
fn session(
    node: &Arc<Node>,
    slot: SocketPermit,
    name: TransportName,
    headers: HeaderMap,
) -> Session {
    Session::new(
        node.clone(),
        TransportInfo {
            name,
            protocol: ProtocolKind::Json,
            native_ping: false,
        },
        slot,
    )
    .with_request_headers(headers)
}

/// The connect request as the connection's first command.
fn connect_command(request: ConnectRequest) -> Incoming {
    Incoming::Command(Box::new(Command {
        id: 1,
        connect: Some(request),
        ..Default::default()
    }))
}

/// Why a unidirectional connection was refused before it started.
type Refusal = (StatusCode, String);

/// Reads the ConnectRequest from `cf_connect` or the body.
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

/// Starts a push-only session streamed into a response body (SSE or JSON lines).
fn stream_response(
    node: Arc<Node>,
    slot: SocketPermit,
    name: TransportName,
    request: ConnectRequest,
    headers: HeaderMap,
    framing: Framing,
) -> Response {
    let (body, response) = super::streaming::response(framing.content_type(), framing.preamble());
    let session = session(&node, slot, name, headers);
    let wire = BodyWire::new(body, framing, ProtocolKind::Json, true, None);
    let wire = Primed::new(wire, connect_command(request));
    let timing = Timing {
        write_timeout: None,
        ping_every: Millis::ZERO,
        pong_within: Millis::ZERO,
    };
    tokio::spawn(drive(node, session, wire, timing));
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
        Ok(req) => stream_response(
            node,
            slot,
            TransportName::UniSse,
            req,
            headers,
            Framing::Sse,
        ),
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
        Ok(req) => stream_response(
            node,
            slot,
            TransportName::UniHttpStream,
            req,
            headers,
            Framing::JsonLines,
        ),
        Err(r) => r.into_response(),
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
    handshake: Handshake,
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
    let ws_config = WebSocketConfig::default().max_message_size(Some(max));
    handshake.accept(None, ws_config, move |mut socket| async move {
        let request = match from_query {
            Some(r) => r,
            None => match tokio::time::timeout(stale, socket.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    match serde_json::from_str::<ConnectRequest>(&t) {
                        Ok(r) => r,
                        Err(_) => {
                            let _ = socket
                                .send(Message::Close(Some(CloseFrame {
                                    code: CloseCode::from(3501),
                                    reason: Utf8Bytes::from_static("bad request"),
                                })))
                                .await;
                            return;
                        }
                    }
                }
                Err(_) => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(Disconnect::STALE.code),
                            reason: Utf8Bytes::from_static("stale"),
                        })))
                        .await;
                    return;
                }
                _ => return,
            },
        };
        // WebSocket ping frames every `client.ping_interval`, no pong required: a
        // push-only client never writes.
        let timing = {
            let config = node.config.load();
            Timing {
                write_timeout: Some(Millis::of(config.tenant.websocket.write_timeout.get())),
                ping_every: Millis::of(config.tenant.client.ping_interval.get()),
                pong_within: Millis::ZERO,
            }
        };
        let session = session(&node, slot, TransportName::UniWebSocket, headers);
        let wire = WsWire::<true>::new(socket, ProtocolKind::Json);
        let wire = Primed::new(wire, connect_command(request));
        drive(node, session, wire, timing).await;
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
