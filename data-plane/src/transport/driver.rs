//! The one connection loop every transport runs. A transport only says how its connection
//! reads and writes (a [`Wire`]: Centrifugo's transport interface is `Write`, `WriteMany` and
//! `Close`); the loop here is the same for all of them: read commands, drain the outbox into
//! one coalesced write, run control requests in queue order, keep the session's timer, send
//! transport pings, notice slow consumers and end with the transport's close.
//!
//! The loop is generic over the wire (no dynamic call per frame or per batch), and everything
//! a connection keeps lives in its task's future, which every idle connection pays for: see the
//! size test in [`super::websocket`].

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use crate::client::{ClientHandle, OutItem};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::protocol::{encode_reply, Command, Disconnect, ProtocolKind, Push, Reply};
use crate::session::Session;

/// Why a write did not go out.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The peer went away (the connection ends as closed by the client).
    #[error("the peer went away")]
    Gone,
    /// The socket failed (the connection ends with a write error).
    #[error("the connection cannot be written")]
    Broken,
}

impl WriteError {
    /// How the connection ends after this error.
    fn disconnect(&self) -> Disconnect {
        match self {
            WriteError::Gone => Disconnect::CONNECTION_CLOSED,
            WriteError::Broken => Disconnect::WRITE_ERROR,
        }
    }
}

/// What a connection received.
#[derive(Debug)]
pub enum Incoming {
    /// A frame of commands, in the session's protocol.
    Frame(Bytes),
    /// One command already decoded (a unidirectional transport's connect request).
    Command(Box<Command>),
    /// The answer to a transport ping.
    Pong,
    /// Nothing for the session (a transport ping, or whatever a push-only client sends).
    Ignored,
    /// A message larger than `websocket.message_size_limit`.
    TooBig,
    /// The peer went away.
    Closed,
}

/// How one connection reads and writes. Writing is a sink of messages: every batch of frames
/// queued together goes out as `poll_ready`/`start_send` per message and one `poll_flush`
/// (Centrifugo's `WriteMany`), so a wire coalesces a batch into as few writes as it can.
pub trait Wire: Send {
    /// One message on the wire.
    type Message: Send;

    /// The message carrying one outbox frame (Centrifugo's `Write`).
    fn frame(&self, frame: Bytes) -> Result<Self::Message, Disconnect>;

    /// A transport-level ping, when the transport has one.
    fn ping(&self) -> Option<Self::Message>;

    /// Message number `part` (from 0) of what ends the connection for `reason` (Centrifugo's
    /// `Close`); `None` past the last. Made one at a time: nothing of the close is stored in
    /// the connection's task before it is sent.
    fn farewell(&self, reason: &Disconnect, part: u8) -> Option<Self::Message>;

    /// The next thing the peer sent. With `accepting` false the session takes no commands
    /// now (`client.concurrency`): the wire reads none, but still reports the peer leaving
    /// when it can tell without reading.
    fn poll_recv(&mut self, cx: &mut Context<'_>, accepting: bool) -> Poll<Incoming>;

    /// Ready to take one more message.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>>;

    /// Takes one message (after `poll_ready`).
    fn start_send(&mut self, message: Self::Message) -> Result<(), WriteError>;

    /// Writes out everything taken.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>>;
}

/// A duration in whole milliseconds (saturating at ~49 days), 4 bytes instead of 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(u32);

impl Millis {
    /// No time at all (for "none").
    pub const ZERO: Millis = Millis(0);

    /// `d` in whole milliseconds.
    pub fn of(d: Duration) -> Self {
        Self(u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
    }

    fn get(self) -> Duration {
        Duration::from_millis(u64::from(self.0))
    }

    fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// The times a connection keeps besides the session's own.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long one blocked write may take (`websocket.write_timeout`); `None`: as long as the
    /// peer needs (the HTTP streams, whose writes only wait for room in the response body).
    pub write_timeout: Option<Millis>,
    /// How often a transport ping goes out; zero for none.
    pub ping_every: Millis,
    /// How soon its pong is due; zero when none is required.
    pub pong_within: Millis,
}

/// The reply element of a disconnect push, in `protocol`.
pub fn disconnect_element(protocol: ProtocolKind, reason: &Disconnect) -> Option<Bytes> {
    let reply = Reply {
        push: Some(Push {
            disconnect: Some(reason.to_push()),
            ..Default::default()
        }),
        ..Default::default()
    };
    encode_reply(protocol, &reply).ok()
}

/// Runs a connection until it ends. Everything the connection keeps is set up before
/// the future starts and captured by it in place: an `async fn` would keep its arguments and
/// the locals built from them side by side in every connection's task.
pub fn drive<W: Wire + 'static>(
    node: Arc<Node>,
    session: Session,
    wire: W,
    timing: Timing,
) -> impl Future<Output = ()> + Send + 'static {
    let (ping_every, pong_within) = (timing.ping_every, timing.pong_within);
    let mut conn = Conn {
        handle: session.handle().clone(),
        session,
        wire,
        write_timeout: timing.write_timeout,
        timer_dirty: true,
    };
    async move {
        // One timer for everything: the session's deadline (pings, expiry, presence), the
        // transport ping's, and while a write blocks, the write's. Idle, the task holds nothing
        // else.
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut session_deadline = conn.session.next_deadline().unwrap_or_else(far);
        // When the next transport ping is due, or with `pong_due`, its pong.
        let mut frame_ping = (!ping_every.is_zero()).then(|| crate::clock::after(ping_every.get()));
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
            // With `client.concurrency`, reading pauses while commands wait for a slot.
            let accepting = conn.session.accepts_input();
            // The branches only decide what to do next: nothing they bind outlives the select,
            // so the task keeps no received message around while it flushes.
            let step = tokio::select! {
                    biased;
                    _ = node.shutdown.cancelled() => break Disconnect::SHUTDOWN,
                    input = poll_fn(|cx| conn.wire.poll_recv(cx, accepting)) => match input {
                        Incoming::Closed => break Disconnect::CONNECTION_CLOSED,
                        Incoming::TooBig => {
                            node.metrics.malformed_frames.inc();
                            tracing::info!(client = %conn.handle.id, "message too big");
                            break Disconnect::custom(1009, "message too big");
                        }
                        Incoming::Pong => {
                            if std::mem::take(&mut pong_due) {
                                frame_ping = Some(crate::clock::after(ping_every.get()));
                                conn.timer_dirty = true;
                            }
                            continue;
                        }
                        Incoming::Ignored => continue,
                        Incoming::Frame(frame) => {
                            incoming = Some(frame);
                            Step::Frame
                        }
                        Incoming::Command(command) => Step::Command(command),
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
                Step::Command(command) => {
                    if let Err(d) = Box::pin(conn.session.handle_command(*command)).await {
                        break d;
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
                    if conn.send_ping(timer.as_mut()).await.is_err() {
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

        // The connection ends: from here on only its task writes to it.
        conn.handle.outbox.retire();
        if reason != Disconnect::CONNECTION_CLOSED && reason.code != Disconnect::WRITE_ERROR.code {
            if reason != Disconnect::SLOW {
                // What was queued before the disconnect (e.g. the error reply) still goes out.
                let _ = conn.flush_frames_only(timer.as_mut()).await;
            }
            let _ = conn.send_farewell(timer.as_mut(), &reason).await;
        }
        tracing::debug!(client = %conn.handle.id, code = reason.code, "connection closed");
        Box::pin(conn.session.close(&reason)).await;
    }
}

/// What the connection task does after its select, before flushing the outbox.
enum Step {
    /// Handle the frame in `incoming`.
    Frame,
    /// Handle a command the transport decoded itself.
    Command(Box<Command>),
    /// Answer commands that finished running apart (`client.concurrency`).
    Completed,
    /// Only flush.
    Flush,
    /// Send a transport ping; run the session's timer too when it is due.
    FramePing { session_due: bool },
    /// Run the session's timer.
    Timer,
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// A connection's state besides its timer.
pub(super) struct Conn<W> {
    session: Session,
    handle: Arc<ClientHandle>,
    wire: W,
    write_timeout: Option<Millis>,
    /// The timer must be set to the next idle deadline (a write used it, or a deadline moved).
    timer_dirty: bool,
}

impl<W: Wire> Conn<W> {
    /// Writes everything queued; runs control requests in queue order. Each frame goes out
    /// as a message of its own, and the frames queued together reach the peer in one write.
    /// (centrifuge-js 5.x dispatches the replies inside one message in order, but starts on
    /// the next message before the previous one's second reply: had two messages of several
    /// replies each been read at once, their publications would interleave, and the SDK's
    /// stream position would move backwards — duplicates on its next recovery.) Tells
    /// whether any control request ran.
    async fn flush(&mut self, mut timer: Pin<&mut Sleep>) -> Result<bool, Disconnect> {
        let mut controls = false;
        if self.handle.outbox.has_remainder() {
            // The rest of a frame the fan-out wrote in part ([`crate::lent_write`]): the wire
            // sends it before anything else, so a write of nothing sends just that.
            self.write(timer.as_mut(), |_, _| None).await?;
        }
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
        self.write(timer, move |metrics, wire| match items.front() {
            Some(OutItem::Frame(_)) => match items.pop_front() {
                Some(OutItem::Frame(frame)) => {
                    metrics.bytes_out.add(frame.len() as u64);
                    Some(wire.frame(frame))
                }
                _ => None,
            },
            _ => None,
        })
    }

    /// Sends a transport ping.
    fn send_ping<'a>(
        &'a mut self,
        timer: Pin<&'a mut Sleep>,
    ) -> impl Future<Output = Result<(), Disconnect>> + Send + 'a {
        let mut message = self.wire.ping();
        self.write(timer, move |_, _| message.take().map(Ok))
    }

    /// Sends what ends the connection for `reason`.
    fn send_farewell<'a>(
        &'a mut self,
        timer: Pin<&'a mut Sleep>,
        reason: &'a Disconnect,
    ) -> impl Future<Output = Result<(), Disconnect>> + Send + 'a {
        let mut part = 0;
        self.write(timer, move |_, wire| {
            let message = wire.farewell(reason, part)?;
            part += 1;
            Some(Ok(message))
        })
    }

    /// Sends the messages `next` yields, then flushes, within `write_timeout`. A write that
    /// blocks (the peer stopped reading) ends early with 3008 once the outbox overflows
    /// meanwhile, as a queued frame would: a stuck writer must not turn a slow client into a
    /// 3009 a second later. The write deadline uses the connection's one timer, armed only
    /// when the wire does not take the messages at once: a write that completes right away
    /// (all of fan-out on a healthy connection) leaves the timer alone. A plain function
    /// around `poll_fn`, so that what is being sent is stored once in the connection's task.
    fn write<'a>(
        &'a mut self,
        mut timer: Pin<&'a mut Sleep>,
        mut next: impl FnMut(&Metrics, &W) -> Option<Result<W::Message, Disconnect>> + Send + 'a,
    ) -> impl Future<Output = Result<(), Disconnect>> + Send + 'a {
        let mut pending: Option<W::Message> = None;
        let mut done = false;
        let mut armed = false;
        poll_fn(move |cx| {
            while !done {
                if pending.is_none() {
                    match next(self.session.node_metrics(), &self.wire) {
                        Some(Ok(m)) => pending = Some(m),
                        Some(Err(d)) => return Poll::Ready(Err(d)),
                        None => {
                            done = true;
                            break;
                        }
                    }
                }
                match self.wire.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(m) = pending.take() {
                            if let Err(e) = self.wire.start_send(m) {
                                return Poll::Ready(Err(e.disconnect()));
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.disconnect())),
                    Poll::Pending => break,
                }
            }
            if done {
                match self.wire.poll_flush(cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.disconnect())),
                    Poll::Pending => {}
                }
            }
            // Blocked: frames pushed meanwhile are drained by `flush` after this write.
            if self.handle.outbox.poll_slow(cx).is_ready() {
                return Poll::Ready(Err(Disconnect::SLOW));
            }
            let Some(write_timeout) = self.write_timeout else {
                return Poll::Pending;
            };
            if !armed {
                armed = true;
                self.timer_dirty = true;
                timer.as_mut().reset(Instant::now() + write_timeout.get());
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Disconnect::WRITE_ERROR)),
                Poll::Pending => Poll::Pending,
            }
        })
    }
}

/// A wire whose first request was read before its connection started (the body of the
/// request that opened it): the connection handles it before anything else.
pub struct Primed<W> {
    wire: W,
    first: Option<Incoming>,
}

impl<W> Primed<W> {
    /// `wire`, with `first` as the first thing received.
    pub fn new(wire: W, first: Incoming) -> Self {
        Self {
            wire,
            first: Some(first),
        }
    }
}

impl<W: Wire> Wire for Primed<W> {
    type Message = W::Message;

    fn frame(&self, frame: Bytes) -> Result<Self::Message, Disconnect> {
        self.wire.frame(frame)
    }

    fn ping(&self) -> Option<Self::Message> {
        self.wire.ping()
    }

    fn farewell(&self, reason: &Disconnect, part: u8) -> Option<Self::Message> {
        self.wire.farewell(reason, part)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, accepting: bool) -> Poll<Incoming> {
        match self.first.take() {
            Some(first) => Poll::Ready(first),
            None => self.wire.poll_recv(cx, accepting),
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        self.wire.poll_ready(cx)
    }

    fn start_send(&mut self, message: Self::Message) -> Result<(), WriteError> {
        self.wire.start_send(message)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        self.wire.poll_flush(cx)
    }
}

/// The size of a connection's state on `W` (for the size test).
#[cfg(test)]
pub(super) const fn conn_size<W>() -> usize {
    std::mem::size_of::<Conn<W>>()
}
