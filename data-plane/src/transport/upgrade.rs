//! The WebSocket opening handshake (RFC 6455) for both WebSocket endpoints, done here rather
//! than by axum's extractor so that every WebSocket ends up on the client's own
//! [`SharedSocket`] whichever way it opened: before the router ([`super::early`], a
//! connection's first request) or through hyper's upgrade ([`Handshake::accept`], a request
//! on a kept-alive connection, or a head too large for the early path).
//!
//! What is checked, and the answers, are the same either way: `GET` (405), `Connection:
//! upgrade` (400), `Upgrade: websocket` (400), `Sec-WebSocket-Version: 13` (400) and a
//! `Sec-WebSocket-Key` (400). The early path takes only requests that pass, and leaves the
//! others to this module's refusals through the router.

use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::socket::SharedSocket;

/// A WebSocket over the client's socket.
pub(crate) type Socket = WebSocketStream<SharedSocket>;

/// Why a request cannot become a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("a WebSocket opens with GET")]
    NotGet,
    #[error("the Connection header does not include 'upgrade'")]
    Connection,
    #[error("the Upgrade header is not 'websocket'")]
    Upgrade,
    #[error("the Sec-WebSocket-Version header is not '13'")]
    Version,
    #[error("the Sec-WebSocket-Key header is missing")]
    Key,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, self.to_string()).into_response()
    }
}

/// Checks that a request asks to open a WebSocket.
pub(crate) fn check(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if method != Method::GET {
        return Err(Refusal::NotGet);
    }
    let connection = headers
        .get(header::CONNECTION)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let upgrade = connection
        .split(|&b| b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    if !upgrade {
        return Err(Refusal::Connection);
    }
    if !header_is(headers, &header::UPGRADE, b"websocket") {
        return Err(Refusal::Upgrade);
    }
    if !header_is(headers, &header::SEC_WEBSOCKET_VERSION, b"13") {
        return Err(Refusal::Version);
    }
    if !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
        return Err(Refusal::Key);
    }
    Ok(())
}

fn header_is(headers: &HeaderMap, name: &header::HeaderName, value: &[u8]) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(value))
}

/// The first subprotocol the client offers in `Sec-WebSocket-Protocol` (in the client's
/// order) that is one of `ours`, to be named in the answer and to decide the wire format
/// (none: the answer names none, and the client decides whether to go on).
pub(crate) fn subprotocol(headers: &HeaderMap, ours: &[&'static str]) -> Option<&'static str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .find_map(|o| ours.iter().copied().find(|p| o == p.as_bytes()))
}

/// The `101 Switching Protocols` head answering `key`, naming `protocol` when one was chosen.
pub(crate) fn switching_protocols(key: &[u8], protocol: Option<&str>) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key);
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: ",
    );
    head.extend_from_slice(accept.as_bytes());
    if let Some(p) = protocol {
        head.extend_from_slice(b"\r\nsec-websocket-protocol: ");
        head.extend_from_slice(p.as_bytes());
    }
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// The WebSocket over `socket`, whose handshake is done; `read` holds bytes of the client's
/// first frames already taken off the socket.
pub(crate) async fn open(mut socket: SharedSocket, read: &[u8], config: WebSocketConfig) -> Socket {
    socket.unread(read);
    WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await
}

/// A request that passed [`check`], for the endpoints reached through the router: answered
/// by [`Handshake::accept`], which takes the socket back from hyper once it lets go.
pub(crate) struct Handshake {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        check(&parts.method, &parts.headers)?;
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(Refusal::Key)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Refusal::NotUpgradable)?;
        Ok(Self { key, on_upgrade })
    }
}

impl Handshake {
    /// Answers `101`, naming `protocol`; once hyper hands the connection over, `session` runs
    /// on the WebSocket (in a task of its own: hyper needs the answer first).
    pub(crate) fn accept<F, Fut>(
        self,
        protocol: Option<&'static str>,
        config: WebSocketConfig,
        session: F,
    ) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            // Every listener serves a `SharedSocket` (see `crate::server`, `crate::handoff`).
            match upgraded.downcast::<TokioIo<SharedSocket>>() {
                Ok(parts) => {
                    session(open(parts.io.into_inner(), &parts.read_buf, config).await).await
                }
                Err(_) => tracing::warn!("WebSocket upgrade on a connection of another kind"),
            }
        });
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(p) = protocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_websocket_request_passes_and_each_missing_part_is_named() {
        assert_eq!(check(&Method::GET, &headers(&GOOD)), Ok(()));
        assert_eq!(check(&Method::POST, &headers(&GOOD)), Err(Refusal::NotGet));
        for (i, want) in [
            Refusal::Connection,
            Refusal::Upgrade,
            Refusal::Version,
            Refusal::Key,
        ]
        .into_iter()
        .enumerate()
        {
            let mut partial = GOOD.to_vec();
            partial.remove(i);
            assert_eq!(check(&Method::GET, &headers(&partial)), Err(want));
        }
        let upgrades_to_something_else = headers(&[
            ("connection", "upgradeable"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "x"),
        ]);
        assert_eq!(
            check(&Method::GET, &upgrades_to_something_else),
            Err(Refusal::Connection)
        );
        assert_eq!(
            Refusal::NotGet.into_response().status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            Refusal::Key.into_response().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn the_clients_first_subprotocol_we_speak_is_chosen() {
        let ours = ["centrifuge-json", "centrifuge-protobuf"];
        let h = headers(&[("sec-websocket-protocol", "x, centrifuge-protobuf")]);
        assert_eq!(subprotocol(&h, &ours), Some("centrifuge-protobuf"));
        let h = headers(&[(
            "sec-websocket-protocol",
            "centrifuge-protobuf, centrifuge-json",
        )]);
        assert_eq!(subprotocol(&h, &ours), Some("centrifuge-protobuf"));
        let h = headers(&[
            ("sec-websocket-protocol", "centrifuge-protobuf"),
            ("sec-websocket-protocol", "centrifuge-json"),
        ]);
        assert_eq!(subprotocol(&h, &ours), Some("centrifuge-protobuf"));
        assert_eq!(subprotocol(&HeaderMap::new(), &ours), None);
    }

    #[test]
    fn the_answer_carries_the_rfc_accept_value() {
        // RFC 6455 section 1.3's example.
        let head = switching_protocols(b"dGhlIHNhbXBsZSBub25jZQ==", Some("centrifuge-json"));
        let text = String::from_utf8(head).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("sec-websocket-protocol: centrifuge-json\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
