//! The bidirectional WebSocket transport (`/connection/websocket`): JSON as text frames,
//! Protobuf as binary frames when the client asks for `centrifuge-protobuf`. One task per
//! connection runs a `select!` over the socket, the outbox, the session timer and shutdown.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Sink, StreamExt};
use tokio::time::{Instant, Sleep};

use super::origin::origin_allowed;
use super::slot::SocketSlot;
use crate::budgets::SocketPermit;
use crate::client::{ClientHandle, OutItem};
use crate::node::Node;
use crate::protocol::{Disconnect, ProtocolKind};
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
/// and captured by it in place: an `async fn` would keep its arguments (the socket) and the
/// locals built from them side by side in every connection's task.
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
            name: "websocket",
            protocol,
            emulation: false,
            unidirectional: false,
            native_ping,
        },
        slot,
    )
    .with_request_headers(headers);
    // Native pings (`cf_ws_frame_ping_pong=true`) follow the protocol pings' settings: a ping
    // frame every `client.ping_interval`, its pong due within `client.pong_timeout`.
    // Kept as milliseconds: every byte of the task is paid by every idle connection.
    let (write_timeout, ping_every, pong_within) = {
        let config = node.config.load();
        let client = &config.tenant.client;
        (
            Millis::of(config.tenant.websocket.write_timeout.get()),
            Millis::of(client.ping_interval.get()),
            Millis::of(client.pong_timeout.get()),
        )
    };
    let native_ping = native_ping && !ping_every.is_zero();
    let mut conn = Conn {
        handle: session.handle().clone(),
        session,
        socket,
        protocol,
        write_timeout,
        timer_dirty: true,
    };
    async move {
        // One timer for everything: the session's deadline (pings, expiry, presence), the native
        // ping frame's, and while a write blocks, the write's. Idle, the task holds nothing else.
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut session_deadline = conn.session.next_deadline().unwrap_or_else(far);
        // When the next ping frame is due, or with `pong_due`, its pong.
        let mut frame_ping = native_ping.then(|| crate::clock::after(ping_every.get()));
        let mut pong_due = false;

        // The next timer deadline only changes when a frame, a timer or a control request was
        // handled; a plain outbox flush (the whole of fan-out) leaves it as it was.
        let mut deadline_stale = false;
        // A received frame, between the select and the command handling.
        let mut incoming: Option<Bytes> = None;
        let reason = loop {
            if deadline_stale {
                session_deadline = conn.session.next_deadline().unwrap_or_else(far);
                conn.timer_dirty = true;
                deadline_stale = false;
            }
            if conn.timer_dirty {
                let deadline = frame_ping.map_or(session_deadline, |p| p.min(session_deadline));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                conn.timer_dirty = false;
            }
            // The branches only decide what to do next: nothing they bind outlives the select,
            // so the task keeps no received message around while it flushes.
            let step = tokio::select! {
                biased;
                _ = node.shutdown.cancelled() => break Disconnect::SHUTDOWN,
                // With `client.concurrency`, reading pauses while commands wait for a slot.
                msg = conn.socket.next(), if conn.session.accepts_input() => match msg {
                    None | Some(Ok(Message::Close(_))) => break Disconnect::CONNECTION_CLOSED,
                    Some(Ok(Message::Text(text))) => {
                        incoming = Some(Bytes::from(text));
                        Step::Frame
                    }
                    Some(Ok(Message::Binary(bin))) => {
                        incoming = Some(bin);
                        Step::Frame
                    }
                    Some(Ok(Message::Pong(_))) => {
                        if std::mem::take(&mut pong_due) {
                            frame_ping = Some(crate::clock::after(ping_every.get()));
                            conn.timer_dirty = true;
                        }
                        continue;
                    }
                    Some(Ok(Message::Ping(_))) => continue,
                    Some(Err(e)) => {
                        if is_too_big(&e) {
                            node.metrics.malformed_frames.inc();
                            tracing::info!(client = %conn.handle.id, "message too big");
                            break Disconnect::custom(1009, "message too big");
                        }
                        break Disconnect::CONNECTION_CLOSED;
                    }
                },
                _ = poll_fn(|cx| conn.handle.outbox.poll_ready(cx)) => Step::Flush,
                () = poll_fn(|cx| conn.session.poll_completed(cx)) => Step::Completed,
                _ = &mut timer => {
                    let now = Instant::now();
                    if frame_ping.is_some_and(|at| at <= now) {
                        if pong_due {
                            break Disconnect::NO_PONG;
                        }
                        Step::FramePing {
                            session_due: session_deadline <= now,
                        }
                    } else {
                        Step::Timer
                    }
                }
            };
            match step {
                Step::Frame => {
                    if let Some(frame) = incoming.take() {
                        // Command futures (connect, subscribe, proxies, engine calls) are large
                        // and rare: boxed, they do not inflate every idle connection's task.
                        if let Err(d) = Box::pin(conn.session.handle_frame(&frame)).await {
                            break d;
                        }
                    }
                    deadline_stale = true;
                }
                Step::Completed => {
                    if let Err(d) = Box::pin(conn.session.run_completed()).await {
                        break d;
                    }
                    deadline_stale = true;
                }
                Step::Flush => {}
                Step::FramePing { session_due } => {
                    if conn
                        .send(timer.as_mut(), Message::Ping(Bytes::new()))
                        .await
                        .is_err()
                    {
                        break Disconnect::WRITE_ERROR;
                    }
                    let now = Instant::now();
                    if pong_within.is_zero() {
                        frame_ping = Some(crate::clock::coarse_tokio(now, now + ping_every.get()));
                    } else {
                        pong_due = true;
                        frame_ping = Some(now + pong_within.get());
                    }
                    conn.timer_dirty = true;
                    if !session_due {
                        continue;
                    }
                    if let Err(d) = Box::pin(conn.session.on_timer()).await {
                        break d;
                    }
                    deadline_stale = true;
                }
                Step::Timer => {
                    if let Err(d) = Box::pin(conn.session.on_timer()).await {
                        break d;
                    }
                    deadline_stale = true;
                }
            }
            match conn.flush(timer.as_mut()).await {
                Ok(controls) => deadline_stale |= controls,
                Err(d) => break d,
            }
        };

        if reason != Disconnect::CONNECTION_CLOSED && reason.code != Disconnect::WRITE_ERROR.code {
            if reason != Disconnect::SLOW {
                // What was queued before the disconnect (e.g. the error reply) still goes out.
                let _ = conn.flush_frames_only(timer.as_mut()).await;
            }
            let frame = CloseFrame {
                code: reason.code,
                reason: Utf8Bytes::from(reason.reason.to_string()),
            };
            let _ = conn.send(timer.as_mut(), Message::Close(Some(frame))).await;
        }
        tracing::debug!(client = %conn.handle.id, code = reason.code, "connection closed");
        Box::pin(conn.session.close(&reason)).await;
    }
}

/// What the connection task does after its select, before flushing the outbox.
enum Step {
    /// Handle the frame in `incoming`.
    Frame,
    /// Answer commands that finished running apart (`client.concurrency`).
    Completed,
    /// Only flush.
    Flush,
    /// Send a native ping frame; run the session's timer too when it is due.
    FramePing { session_due: bool },
    /// Run the session's timer.
    Timer,
}

/// A duration in whole milliseconds (saturating at ~49 days), 4 bytes instead of 16.
#[derive(Debug, Clone, Copy)]
struct Millis(u32);

impl Millis {
    fn of(d: Duration) -> Self {
        Self(u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
    }

    fn get(self) -> Duration {
        Duration::from_millis(u64::from(self.0))
    }

    fn is_zero(self) -> bool {
        self.0 == 0
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

fn is_too_big(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big")
}

/// A connection's state besides its timer.
struct Conn {
    session: Session,
    handle: Arc<ClientHandle>,
    socket: WebSocket,
    protocol: ProtocolKind,
    write_timeout: Millis,
    /// The timer must be set to the next idle deadline (a write used it, or a deadline moved).
    timer_dirty: bool,
}

impl Conn {
    /// Writes everything queued; runs control requests in queue order. Each frame goes out
    /// as a WebSocket message of its own, and the frames queued together reach the socket in
    /// one write. (centrifuge-js 5.x dispatches the replies inside one message in order, but
    /// starts on the next message before the previous one's second reply: had two messages
    /// of several replies each been read at once, their publications would interleave, and
    /// the SDK's stream position would move backwards — duplicates on its next recovery.)
    /// Tells whether any control request ran.
    async fn flush(&mut self, mut timer: Pin<&mut Sleep>) -> Result<bool, Disconnect> {
        let mut controls = false;
        loop {
            // Once closed, the outbox takes nothing more: the next drain returns the reason,
            // so it need not be kept across the writes.
            let mut items = match self.handle.outbox.drain() {
                (items, None) if items.is_empty() => return Ok(controls),
                (items, Some(d)) if items.is_empty() => return Err(d),
                (items, _) => items,
            };
            while !items.is_empty() {
                self.send_frames(timer.as_mut(), &mut items).await?;
                if let Some(OutItem::Control(c)) = items.pop_front() {
                    if let Err(d) = Box::pin(self.session.handle_control(c)).await {
                        // The connection ends here in its stream: what was queued after the
                        // control (here and in the outbox) must not go out after it.
                        self.handle.outbox.close_discarding(d.clone());
                        return Err(d);
                    }
                    controls = true;
                }
            }
        }
    }

    /// Final flush after a disconnect decision: frames only.
    async fn flush_frames_only(&mut self, timer: Pin<&mut Sleep>) -> Result<(), Disconnect> {
        let (mut items, _) = self.handle.outbox.drain();
        items.retain(|i| matches!(i, OutItem::Frame(_)));
        self.send_frames(timer, &mut items).await
    }

    /// Sends the frames at the front of `items` (up to the first control request), each as
    /// its own message, with one flush.
    fn send_frames<'a>(
        &'a mut self,
        timer: Pin<&'a mut Sleep>,
        items: &'a mut VecDeque<OutItem>,
    ) -> impl Future<Output = Result<(), Disconnect>> + Send + 'a {
        let protocol = self.protocol;
        self.write(timer, move |metrics| match items.front() {
            Some(OutItem::Frame(_)) => match items.pop_front() {
                Some(OutItem::Frame(frame)) => Some(message(protocol, metrics, frame)),
                _ => None,
            },
            _ => None,
        })
    }

    /// Sends one message (the close frame).
    fn send<'a>(
        &'a mut self,
        timer: Pin<&'a mut Sleep>,
        message: Message,
    ) -> impl Future<Output = Result<(), Disconnect>> + Send + 'a {
        let mut message = Some(message);
        self.write(timer, move |_| message.take().map(Ok))
    }

    /// Sends the messages `next` yields, then flushes, within `write_timeout`. A write that
    /// blocks (the peer stopped reading) ends early with 3008 once the outbox overflows
    /// meanwhile, as a queued frame would: a stuck writer must not turn a slow client into a
    /// 3009 a second later. The write deadline uses the connection's one timer, armed only
    /// when the socket does not take the messages at once: a write that completes right away
    /// (all of fan-out on a healthy connection) leaves the timer alone. A plain function
    /// around `poll_fn`, so that what is being sent is stored once in the connection's task.
    fn write<'a>(
        &'a mut self,
        mut timer: Pin<&'a mut Sleep>,
        mut next: impl FnMut(&crate::metrics::Metrics) -> Option<Result<Message, Disconnect>>
            + Send
            + 'a,
    ) -> impl Future<Output = Result<(), Disconnect>> + Send + 'a {
        let mut pending: Option<Message> = None;
        let mut done = false;
        let mut armed = false;
        poll_fn(move |cx| {
            let mut socket = Pin::new(&mut self.socket);
            while !done {
                if pending.is_none() {
                    match next(self.session.node_metrics()) {
                        Some(Ok(m)) => pending = Some(m),
                        Some(Err(d)) => return Poll::Ready(Err(d)),
                        None => {
                            done = true;
                            break;
                        }
                    }
                }
                match socket.as_mut().poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(m) = pending.take() {
                            if socket.as_mut().start_send(m).is_err() {
                                return Poll::Ready(Err(Disconnect::WRITE_ERROR));
                            }
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Disconnect::WRITE_ERROR)),
                    Poll::Pending => break,
                }
            }
            if done {
                match socket.poll_flush(cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Disconnect::WRITE_ERROR)),
                    Poll::Pending => {}
                }
            }
            // Blocked: frames pushed meanwhile are drained by `flush` after this write.
            if self.handle.outbox.poll_slow(cx).is_ready() {
                return Poll::Ready(Err(Disconnect::SLOW));
            }
            if !armed {
                armed = true;
                self.timer_dirty = true;
                timer
                    .as_mut()
                    .reset(Instant::now() + self.write_timeout.get());
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Disconnect::WRITE_ERROR)),
                Poll::Pending => Poll::Pending,
            }
        })
    }
}

/// The message carrying one frame, counted as sent.
fn message(
    protocol: ProtocolKind,
    metrics: &crate::metrics::Metrics,
    frame: Bytes,
) -> Result<Message, Disconnect> {
    metrics.bytes_out.add(frame.len() as u64);
    match protocol {
        ProtocolKind::Json => match Utf8Bytes::try_from(frame) {
            Ok(text) => Ok(Message::Text(text)),
            Err(_) => Err(Disconnect::INAPPROPRIATE_PROTOCOL),
        },
        ProtocolKind::Protobuf => Ok(Message::Binary(frame)),
    }
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
        assert!(std::mem::size_of::<Conn>() <= 640);
        assert!(std::mem::size_of::<Session>() <= 240);
    }
}
