//! What the HTTP streaming transports share: a long-lived response whose body is fed through a
//! bounded channel by the connection's task (the [`BodyWire`] the connection loop writes
//! to), and the browser `Origin` check.

use std::convert::Infallible;
use std::task::{ready, Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

use super::driver::{disconnect_element, Incoming, Wire, WriteError};
use super::origin::origin_allowed;
use crate::node::Node;
use crate::protocol::{Disconnect, ProtocolKind};

/// Chunks a response body holds before the connection's writes wait for the client.
const BODY_CHUNKS: usize = 64;

/// Bytes of frames gathered before they go into the body as a chunk of their own; every batch
/// ends with a chunk anyway, so this bounds one chunk, not a delay.
const CHUNK_BYTES: usize = 64 * 1024;

/// The sending side of a streamed body.
pub struct BodyTx {
    tx: PollSender<Result<Bytes, Infallible>>,
    /// Closed when the response body is dropped (the client went away).
    gone: oneshot::Sender<()>,
}

/// A channel and the 200 response streaming whatever is sent into it, starting with
/// `preamble`.
pub fn response(content_type: &'static str, preamble: &'static [u8]) -> (BodyTx, Response) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(BODY_CHUNKS);
    let (gone, watch) = oneshot::channel::<()>();
    if !preamble.is_empty() {
        let _ = tx.try_send(Ok(Bytes::from_static(preamble)));
    }
    // The watch lives as long as the body: dropping the body closes it.
    let stream = futures_util::stream::unfold((rx, watch), |(mut rx, watch)| async move {
        rx.recv().await.map(|item| (item, (rx, watch)))
    });
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .header("X-Accel-Buffering", "no")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    let body = BodyTx {
        tx: PollSender::new(tx),
        gone,
    };
    (body, response)
}

/// A 403 when the request's `Origin` is not allowed for this tenant.
pub fn refuse_origin(node: &Node, headers: &HeaderMap) -> Option<Response> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let allowed = origin_allowed(&node.config.load().tenant.client.allowed_origins, origin);
    (!allowed).then(|| (StatusCode::FORBIDDEN, "origin not allowed").into_response())
}

/// How frame elements are written into the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// EventSource: `data: <element>\n\n`.
    Sse,
    /// One JSON element per line.
    JsonLines,
    /// Varint-delimited Protobuf (the elements carry their length prefix already).
    Protobuf,
}

impl Framing {
    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Framing::Sse => "text/event-stream",
            Framing::JsonLines => "application/json",
            Framing::Protobuf => "application/octet-stream",
        }
    }

    /// What the body starts with (EventSource gets a line break at once, so browsers open).
    pub fn preamble(self) -> &'static [u8] {
        match self {
            Framing::Sse => b"\r\n",
            Framing::JsonLines | Framing::Protobuf => b"",
        }
    }

    fn frame(self, out: &mut BytesMut, element: &[u8]) {
        match self {
            Framing::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(element);
                out.extend_from_slice(b"\n\n");
            }
            Framing::JsonLines => {
                out.extend_from_slice(element);
                out.extend_from_slice(b"\n");
            }
            Framing::Protobuf => out.extend_from_slice(element),
        }
    }
}

/// A connection carried by a streamed response body: the frames of one batch are framed into
/// one chunk. Commands after the first (bidirectional emulation) come from `/emulation`
/// through `commands`.
pub struct BodyWire {
    body: BodyTx,
    buf: BytesMut,
    framing: Framing,
    protocol: ProtocolKind,
    /// Push-only: every push goes out without its `{"push": …}` envelope.
    bare: bool,
    commands: Option<mpsc::Receiver<Bytes>>,
}

impl BodyWire {
    /// A wire writing `protocol` frames into `body` with `framing`; `bare` for push-only
    /// transports; `commands` for later commands, when the transport takes any.
    pub fn new(
        body: BodyTx,
        framing: Framing,
        protocol: ProtocolKind,
        bare: bool,
        commands: Option<mpsc::Receiver<Bytes>>,
    ) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
            framing,
            protocol,
            bare,
            commands,
        }
    }

    /// Moves the gathered frames into the body as one chunk.
    fn poll_send_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        ready!(self.body.tx.poll_reserve(cx)).map_err(|_| WriteError::Gone)?;
        let chunk = self.buf.split().freeze();
        Poll::Ready(
            self.body
                .tx
                .send_item(Ok(chunk))
                .map_err(|_| WriteError::Gone),
        )
    }

    fn unwrap(&self, element: Bytes) -> Bytes {
        if self.bare {
            super::uni::bare(element)
        } else {
            element
        }
    }
}

impl Wire for BodyWire {
    type Message = Bytes;

    fn frame(&self, frame: Bytes) -> Result<Bytes, Disconnect> {
        Ok(self.unwrap(frame))
    }

    fn ping(&self) -> Option<Bytes> {
        None
    }

    fn farewell(&self, reason: &Disconnect, part: u8) -> Option<Bytes> {
        if part > 0 {
            return None;
        }
        disconnect_element(self.protocol, reason).map(|e| self.unwrap(e))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, accepting: bool) -> Poll<Incoming> {
        if self.body.gone.poll_closed(cx).is_ready() {
            return Poll::Ready(Incoming::Closed);
        }
        match &mut self.commands {
            Some(commands) if accepting => match ready!(commands.poll_recv(cx)) {
                Some(frame) => Poll::Ready(Incoming::Frame(frame)),
                None => Poll::Ready(Incoming::Closed),
            },
            _ => Poll::Pending,
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        if self.buf.len() >= CHUNK_BYTES {
            ready!(self.poll_send_chunk(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(&mut self, element: Bytes) -> Result<(), WriteError> {
        self.framing.frame(&mut self.buf, &element);
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        if !self.buf.is_empty() {
            ready!(self.poll_send_chunk(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}
