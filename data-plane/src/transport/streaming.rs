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
                extend_one_line(out, element);
                out.extend_from_slice(b"\n\n");
            }
            Framing::JsonLines => {
                extend_one_line(out, element);
                out.extend_from_slice(b"\n");
            }
            Framing::Protobuf => out.extend_from_slice(element),
        }
    }
}

/// Appends a JSON element as one line: a line feed or carriage return in it (only ever
/// insignificant whitespace in valid JSON; the encoder already replaces those of raw payloads)
/// becomes a space, so it can neither end an EventSource line nor split a JSON-lines frame.
fn extend_one_line(out: &mut BytesMut, element: &[u8]) {
    if !element.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend_from_slice(element);
        return;
    }
    out.extend(
        element
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
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

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use futures_util::{FutureExt, StreamExt};

    use super::*;

    /// Writes `frames` as one batch.
    async fn write_batch(wire: &mut BodyWire, frames: &[&'static [u8]]) -> Result<(), WriteError> {
        for frame in frames {
            poll_fn(|cx| wire.poll_ready(cx)).await?;
            let message = wire.frame(Bytes::from_static(frame)).expect("framed");
            wire.start_send(message)?;
        }
        poll_fn(|cx| wire.poll_flush(cx)).await
    }

    #[tokio::test]
    async fn a_batch_is_one_chunk_and_a_dropped_body_ends_the_connection() {
        let framing = Framing::Sse;
        let (body, response) = response(framing.content_type(), framing.preamble());
        let mut wire = BodyWire::new(body, framing, ProtocolKind::Json, true, None);
        let mut chunks = response.into_body().into_data_stream();
        assert_eq!(&chunks.next().await.unwrap().unwrap()[..], b"\r\n");

        let batch: [&'static [u8]; 2] = [br#"{"push":{"channel":"a"}}"#, br#"{"id":2}"#];
        write_batch(&mut wire, &batch).await.unwrap();
        assert_eq!(
            &chunks.next().await.unwrap().unwrap()[..],
            b"data: {\"channel\":\"a\"}\n\ndata: {\"id\":2}\n\n",
            "pushes go out bare, the batch as one chunk"
        );
        assert_eq!(
            &wire.farewell(&Disconnect::SHUTDOWN, 0).unwrap()[..],
            br#"{"disconnect":{"code":3001,"reason":"shutdown"}}"#
        );
        assert!(wire.farewell(&Disconnect::SHUTDOWN, 1).is_none());

        assert!(
            poll_fn(|cx| wire.poll_recv(cx, true))
                .now_or_never()
                .is_none(),
            "nothing received while the client listens"
        );
        drop(chunks);
        assert!(matches!(
            poll_fn(|cx| wire.poll_recv(cx, false)).await,
            Incoming::Closed
        ));
        assert!(matches!(
            write_batch(&mut wire, &batch).await,
            Err(WriteError::Gone)
        ));
    }

    #[tokio::test]
    async fn emulation_frames_keep_their_envelope_and_commands_arrive_while_accepted() {
        let framing = Framing::JsonLines;
        let (body, response) = response(framing.content_type(), framing.preamble());
        let (tx, rx) = mpsc::channel(1);
        let mut wire = BodyWire::new(body, framing, ProtocolKind::Json, false, Some(rx));
        let mut chunks = response.into_body().into_data_stream();
        write_batch(&mut wire, &[br#"{"push":{"channel":"a"}}"#])
            .await
            .unwrap();
        assert_eq!(
            &chunks.next().await.unwrap().unwrap()[..],
            b"{\"push\":{\"channel\":\"a\"}}\n"
        );
        assert_eq!(
            &wire.farewell(&Disconnect::SHUTDOWN, 0).unwrap()[..],
            br#"{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}"#
        );
        tx.send(Bytes::from_static(b"{}")).await.unwrap();
        assert!(
            poll_fn(|cx| wire.poll_recv(cx, false))
                .now_or_never()
                .is_none(),
            "no command is read while the session takes none"
        );
        match poll_fn(|cx| wire.poll_recv(cx, true)).await {
            Incoming::Frame(frame) => assert_eq!(&frame[..], b"{}"),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}
