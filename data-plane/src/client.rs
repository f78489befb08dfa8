//! A connected client as the rest of the node sees it: identity plus a bounded outbox. The hub
//! and the server API push into the outbox without locks held across awaits; the connection's
//! own task drains it and coalesces everything queued into one write.
//!
//! A WebSocket connection also lends its socket to the fan-out while its task sleeps with
//! nothing queued and nothing half-written ([`Outbox::lend_or_push`]): a publication then goes
//! straight to the socket from the fan-out, without waking the task. Exactly one party
//! writes at a time: the task runs only while the socket is not lent ([`Outbox::enter`]), and
//! the socket is lent only while the task is parked.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;

mod server_commands;

pub use server_commands::{ServerRefresh, ServerSubscribe};

use crate::protocol::{Disconnect, ProtocolKind, TransportName};

/// Something the server (not the client) asks a connection to do.
#[derive(Debug, Clone)]
pub enum Control {
    /// Close the connection.
    Disconnect(Disconnect),
    /// End one subscription with an Unsubscribe push (server API: 2000).
    Unsubscribe {
        channel: String,
        code: u32,
        reason: String,
    },
    /// The subscription missed publications (2500: the SDK resubscribes and recovers).
    InsufficientState { channel: String },
    /// Subscribe the connection server-side (server API `subscribe`).
    Subscribe(Box<ServerSubscribe>),
    /// Update the connection's expiry and info (server API `refresh`).
    Refresh(Box<ServerRefresh>),
    /// A subscribe stream ([`crate::proxy::stream`]) ended: unsubscribe with `code` if
    /// `stream` is still the channel's stream.
    StreamEnded {
        channel: String,
        stream: u64,
        code: u32,
        reason: String,
    },
}

/// One outbox entry.
#[derive(Debug)]
pub enum OutItem {
    /// An encoded frame element (JSON without newline, Protobuf with length prefix).
    Frame(Bytes),
    /// A request for the connection task.
    Control(Control),
}

/// Who may write to a connection's socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// The connection's task (it runs, or its wire holds unsent bytes, or the connection has
    /// no socket to lend).
    #[default]
    Task,
    /// Nobody: the task sleeps with nothing queued and its wire flushed; the fan-out may
    /// borrow the socket.
    Idle,
    /// The fan-out writes one frame; the task waits until it is given back.
    Lent,
}

/// The socket a WebSocket connection lends to the fan-out.
#[derive(Debug)]
struct Lendable {
    socket: Arc<TcpStream>,
    /// No more lending: the connection is ending.
    retired: bool,
    /// When it was last lent (milliseconds of [`crate::clock::millis`]), if ever.
    last_lent: Option<u32>,
    /// The task woke while the socket was lent: its waker is the outbox's, woken when the
    /// socket comes back.
    parked: bool,
    /// What a lent write left unsent of its frame: the task writes it before anything else.
    /// (Boxed: it is rare, and every WebSocket connection keeps this struct.)
    remainder: Option<Box<Bytes>>,
}

#[derive(Debug, Default)]
struct OutboxState {
    items: VecDeque<OutItem>,
    bytes: usize,
    closed: Option<Disconnect>,
    /// The connection task, when it waits for this outbox. Kept under the queue's own lock
    /// (no `Notify`): waiting takes no room in the connection task's future, and a push wakes
    /// the task at most once per wait.
    waker: Option<Waker>,
    writer: Writer,
    /// Only a bidirectional WebSocket connection has one.
    lendable: Option<Box<Lendable>>,
}

impl OutboxState {
    /// Remembers `cx`'s waker (the connection's task) for the next push.
    fn register(&mut self, cx: &Context<'_>) {
        match &mut self.waker {
            Some(w) => w.clone_from(cx.waker()),
            None => self.waker = Some(cx.waker().clone()),
        }
    }
}

/// A bounded queue of outgoing frames. Pushing never blocks: a client whose queue would exceed
/// its byte limit is marked slow and disconnected (3008) instead of growing memory. One task
/// (the connection's) drains it and waits on it.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    max_bytes: usize,
    /// The wire holds bytes it has not written (set and cleared by the connection's task).
    wire_dirty: AtomicBool,
    /// A lent write left a remainder (see [`Outbox::take_remainder`]).
    has_remainder: AtomicBool,
}

/// What became of a frame offered with [`Outbox::lend_or_push`].
#[derive(Debug)]
pub enum Offered {
    /// The socket is lent for the frame: write it there, then [`Outbox::give_back`].
    Lent(Arc<TcpStream>, Bytes),
    /// The frame is queued for the connection's task.
    Queued,
    /// The connection is closing (or was just found slow).
    Refused,
}

/// How a lent socket comes back (see [`Outbox::give_back`]).
#[derive(Debug)]
pub enum Returned {
    /// The frame was written whole.
    Written,
    /// Part of the frame was written; these bytes must follow before anything else.
    Rest(Bytes),
    /// Nothing was written: the frame goes to the queue's front, for the task.
    Unsent(Bytes),
}

impl Outbox {
    /// An empty outbox that holds at most `max_bytes` of frames.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(OutboxState::default()),
            max_bytes,
            wire_dirty: AtomicBool::new(false),
            has_remainder: AtomicBool::new(false),
        }
    }

    /// Makes `socket` lendable to the fan-out (a bidirectional WebSocket connection). Called
    /// by the connection's task before it first runs [`Outbox::enter`].
    pub fn attach_socket(&self, socket: Arc<TcpStream>) {
        self.state.lock().lendable = Some(Box::new(Lendable {
            socket,
            retired: false,
            last_lent: None,
            parked: false,
            remainder: None,
        }));
    }

    /// The connection's task starts running: false (and the task is woken later) while the
    /// socket is lent.
    pub fn enter(&self, cx: &Context<'_>) -> bool {
        let mut st = self.state.lock();
        match st.writer {
            Writer::Lent => {
                st.register(cx);
                if let Some(l) = st.lendable.as_mut() {
                    l.parked = true;
                }
                false
            }
            Writer::Idle => {
                st.writer = Writer::Task;
                true
            }
            Writer::Task => true,
        }
    }

    /// The connection's task goes to sleep: its socket becomes lendable if nothing waits to be
    /// written.
    pub fn leave(&self) {
        if self.wire_dirty.load(Ordering::Relaxed) || self.has_remainder.load(Ordering::Relaxed) {
            return;
        }
        let mut st = self.state.lock();
        let lendable = st.lendable.as_ref().is_some_and(|l| !l.retired);
        if lendable && st.writer == Writer::Task && st.items.is_empty() && st.closed.is_none() {
            st.writer = Writer::Idle;
        }
    }

    /// The connection is ending: its socket is lent no more.
    pub fn retire(&self) {
        let mut st = self.state.lock();
        if let Some(l) = st.lendable.as_mut() {
            l.retired = true;
        }
        if st.writer == Writer::Idle {
            st.writer = Writer::Task;
        }
    }

    /// The connection's task has ended: lets go of the socket (no lend can be under way).
    pub fn detach(&self) {
        let mut st = self.state.lock();
        st.lendable = None;
        st.writer = Writer::Task;
    }

    /// Records whether the connection's wire holds bytes it has not written yet.
    pub fn set_wire_dirty(&self, dirty: bool) {
        self.wire_dirty.store(dirty, Ordering::Relaxed);
    }

    /// Ends a lend. Whatever was not written goes first on the task's next write, and the
    /// task is woken when it has something to do.
    pub fn give_back(&self, returned: Returned) {
        let mut st = self.state.lock();
        let mut wake_task = !st.items.is_empty() || st.closed.is_some();
        match returned {
            Returned::Written => {}
            Returned::Rest(rest) => {
                if let Some(l) = st.lendable.as_mut() {
                    l.remainder = Some(Box::new(rest));
                    self.has_remainder.store(true, Ordering::Relaxed);
                }
                wake_task = true;
            }
            Returned::Unsent(frame) => {
                st.bytes += frame.len();
                st.items.push_front(OutItem::Frame(frame));
                wake_task = true;
            }
        }
        let parked = st
            .lendable
            .as_mut()
            .is_some_and(|l| std::mem::take(&mut l.parked));
        st.writer = if wake_task || parked {
            Writer::Task
        } else {
            Writer::Idle
        };
        if wake_task || parked {
            wake(st);
        }
    }

    /// Whether a lent write left bytes the task must write first.
    pub fn has_remainder(&self) -> bool {
        self.has_remainder.load(Ordering::Relaxed)
    }

    /// The bytes a lent write left unsent and the socket to write them to; hand back what
    /// is still unsent with [`Outbox::keep_remainder`].
    pub fn take_remainder(&self) -> Option<(Bytes, Arc<TcpStream>)> {
        let mut st = self.state.lock();
        let l = st.lendable.as_mut()?;
        let rest = l.remainder.take()?;
        Some((*rest, l.socket.clone()))
    }

    /// Keeps `rest` (not empty) as the remainder still to write, or clears it (`None`).
    pub fn keep_remainder(&self, rest: Option<Bytes>) {
        let mut st = self.state.lock();
        let done = rest.is_none();
        if let Some(l) = st.lendable.as_mut() {
            l.remainder = rest.map(Box::new);
        }
        if done {
            self.has_remainder.store(false, Ordering::Relaxed);
        }
    }

    /// Queues a frame. Returns false when the connection is closing (or has just been found
    /// slow).
    pub fn push_frame(&self, frame: Bytes) -> bool {
        self.push_locked(self.state.lock(), frame)
    }

    fn push_locked(&self, mut st: parking_lot::MutexGuard<'_, OutboxState>, frame: Bytes) -> bool {
        if st.closed.is_some() {
            return false;
        }
        if st.bytes + frame.len() > self.max_bytes {
            st.items.clear();
            st.bytes = 0;
            st.closed = Some(Disconnect::SLOW);
            wake(st);
            return false;
        }
        st.bytes += frame.len();
        st.items.push_back(OutItem::Frame(frame));
        wake(st);
        true
    }

    /// Lends the socket for `frame` when it can be lent (see [`Outbox::lend_or_push`]), else queues
    /// the frame as [`Outbox::push_frame`] does; one lock either way.
    pub fn lend_or_push(&self, frame: Bytes, now_ms: u32, min_gap_ms: u32) -> Offered {
        let mut st = self.state.lock();
        if st.writer == Writer::Idle && st.items.is_empty() && st.closed.is_none() {
            if let Some(l) = st.lendable.as_mut() {
                let due = l
                    .last_lent
                    .is_none_or(|last| now_ms.wrapping_sub(last) >= min_gap_ms);
                if !l.retired && due {
                    l.last_lent = Some(now_ms);
                    let socket = l.socket.clone();
                    st.writer = Writer::Lent;
                    return Offered::Lent(socket, frame);
                }
            }
        }
        if self.push_locked(st, frame) {
            Offered::Queued
        } else {
            Offered::Refused
        }
    }

    /// Queues a control request behind the frames already queued.
    pub fn push_control(&self, control: Control) {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return;
        }
        st.items.push_back(OutItem::Control(control));
        wake(st);
    }

    /// Marks the connection for closing with `reason`; queued frames still go out first unless
    /// the reason is a slow client.
    pub fn close(&self, reason: Disconnect) {
        let mut st = self.state.lock();
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        wake(st);
    }

    /// Closes for `reason` and drops what is queued: the connection ends at a point in its
    /// stream (a control request decided it), so nothing queued after that point may reach
    /// the client — a later publication without the ones before it would move the client's
    /// stream position past a gap.
    pub fn close_discarding(&self, reason: Disconnect) {
        let mut st = self.state.lock();
        st.items.clear();
        st.bytes = 0;
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        wake(st);
    }

    /// Takes everything queued. Returns the items and, if the connection must close, why.
    pub fn drain(&self) -> (VecDeque<OutItem>, Option<Disconnect>) {
        let mut st = self.state.lock();
        st.bytes = 0;
        (std::mem::take(&mut st.items), st.closed.clone())
    }

    /// Whether the outbox overflowed (the connection must close with 3008).
    pub fn is_slow(&self) -> bool {
        self.state.lock().closed.as_ref() == Some(&Disconnect::SLOW)
    }

    /// Ready when there is something to drain (items, or a reason to close); otherwise the
    /// task of `cx` is woken by the next push or close.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.state.lock();
        if !st.items.is_empty() || st.closed.is_some() || self.has_remainder() {
            return Poll::Ready(());
        }
        st.register(cx);
        Poll::Pending
    }

    /// Ready once the outbox overflowed (the connection must close with 3008); otherwise the
    /// task of `cx` is woken by the next push or close. For a connection blocked in a write.
    pub fn poll_slow(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.state.lock();
        if st.closed.as_ref() == Some(&Disconnect::SLOW) {
            return Poll::Ready(());
        }
        st.register(cx);
        Poll::Pending
    }

    /// Resolves when there is something to drain (see [`Outbox::poll_ready`]).
    pub async fn notified(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}

/// Unlocks the outbox, then wakes the task waiting for it, if any.
fn wake(mut st: parking_lot::MutexGuard<'_, OutboxState>) {
    let waker = st.waker.take();
    drop(st);
    if let Some(w) = waker {
        w.wake();
    }
}

/// A map keyed by client id. Client ids are random UUIDs the server makes, never a peer's
/// choice, so a fast hasher (seeded per process) is safe here, where SipHash guards maps
/// whose keys come from outside (channel and user names).
pub type ByClientId<V> = std::collections::HashMap<Arc<str>, V, foldhash::fast::RandomState>;
/// A set of client ids (see [`ByClientId`]).
pub type ClientIds = std::collections::HashSet<Arc<str>, foldhash::fast::RandomState>;

/// A client connection as the hub and the server API reach it.
#[derive(Debug)]
pub struct ClientHandle {
    /// Client id (UUID v4), unique per connection.
    pub id: Arc<str>,
    /// The connection's wire format.
    pub protocol: ProtocolKind,
    /// The connection's transport, as an index of
    /// [`TransportName::ALL`] (for metrics by transport).
    pub transport: u8,
    /// The outgoing queue.
    pub outbox: Outbox,
    /// Who the connection is for publisher exclusion, set when it connects.
    owner: std::sync::OnceLock<crate::exclusion::Owner>,
}

impl ClientHandle {
    /// A handle for a new connection (of the WebSocket transport until
    /// [`ClientHandle::with_transport`] says otherwise).
    pub fn new(id: Arc<str>, protocol: ProtocolKind, max_queue: usize) -> Self {
        Self {
            id,
            protocol,
            transport: 0,
            outbox: Outbox::new(max_queue),
            owner: std::sync::OnceLock::new(),
        }
    }

    /// Records who connected (once; later calls are ignored).
    pub fn set_owner(&self, owner: crate::exclusion::Owner) {
        let _ = self.owner.set(owner);
    }

    /// Who connected, once the connection has.
    pub fn owner(&self) -> Option<&crate::exclusion::Owner> {
        self.owner.get()
    }

    /// Whether `exclusion` names this connection.
    pub fn is_excluded(&self, exclusion: crate::exclusion::Exclusion<'_>) -> bool {
        exclusion.excludes(&self.id, self.owner())
    }

    /// The same handle for a connection of transport `name`.
    pub fn with_transport(mut self, name: TransportName) -> Self {
        self.transport = name.index();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_outbox_marks_the_client_slow_and_drops_its_queue() {
        let outbox = Outbox::new(10);
        assert!(outbox.push_frame(Bytes::from_static(b"12345")));
        assert!(outbox.push_frame(Bytes::from_static(b"12345")));
        assert!(!outbox.push_frame(Bytes::from_static(b"1")));
        let (items, closed) = outbox.drain();
        assert!(items.is_empty());
        assert_eq!(closed, Some(Disconnect::SLOW));
        assert!(
            !outbox.push_frame(Bytes::from_static(b"1")),
            "closed outbox takes nothing"
        );
    }

    #[test]
    fn closing_at_a_control_drops_what_came_after_it_and_refuses_more() {
        let outbox = Outbox::new(100);
        assert!(outbox.push_frame(Bytes::from_static(b"5")));
        outbox.close_discarding(Disconnect::SHUTDOWN);
        assert!(!outbox.push_frame(Bytes::from_static(b"6")));
        let (items, closed) = outbox.drain();
        assert!(items.is_empty());
        assert_eq!(closed, Some(Disconnect::SHUTDOWN));
    }

    /// A connected pair of loopback sockets: the server side, shared, and the client side.
    async fn socket_pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Arc::new(accepted.unwrap().0), client.unwrap())
    }

    fn lent(offered: Offered) -> Bytes {
        match offered {
            Offered::Lent(_, frame) => frame,
            other => panic!("expected a lend, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_socket_is_lent_only_while_the_task_sleeps_with_nothing_to_write() {
        let (socket, _client) = socket_pair().await;
        let outbox = Outbox::new(1000);
        let frame = || Bytes::from_static(b"f");
        // Without a socket, or while the task runs, frames queue.
        assert!(matches!(
            outbox.lend_or_push(frame(), 1000, 50),
            Offered::Queued
        ));
        outbox.drain();
        outbox.attach_socket(socket);
        assert!(matches!(
            outbox.lend_or_push(frame(), 1000, 50),
            Offered::Queued
        ));
        // The task goes to sleep with something queued: still its own.
        outbox.leave();
        assert!(matches!(
            outbox.lend_or_push(frame(), 1000, 50),
            Offered::Queued
        ));
        outbox.drain();
        // A dirty wire (bytes the task has not written) is not lent either.
        outbox.set_wire_dirty(true);
        outbox.leave();
        assert!(matches!(
            outbox.lend_or_push(frame(), 1000, 50),
            Offered::Queued
        ));
        outbox.drain();
        outbox.set_wire_dirty(false);
        outbox.leave();
        lent(outbox.lend_or_push(frame(), 1000, 50));
        // While lent, frames queue behind the lent one and the task may not run.
        assert!(matches!(
            outbox.lend_or_push(frame(), 2000, 50),
            Offered::Queued
        ));
        let waker = futures_util::task::noop_waker();
        let cx = Context::from_waker(&waker);
        assert!(
            !outbox.enter(&cx),
            "the task waits while the socket is lent"
        );
        outbox.give_back(Returned::Written);
        assert!(outbox.enter(&cx), "the task runs once the socket is back");
        let (items, _) = outbox.drain();
        assert_eq!(items.len(), 1);
        outbox.leave();
        // Within the gap the task writes (it joins what queues meanwhile).
        assert!(matches!(
            outbox.lend_or_push(frame(), 1020, 50),
            Offered::Queued
        ));
        outbox.drain();
        outbox.leave();
        lent(outbox.lend_or_push(frame(), 1050, 50));
        outbox.give_back(Returned::Written);
        // A retired connection lends no more.
        outbox.retire();
        outbox.leave();
        assert!(matches!(
            outbox.lend_or_push(frame(), 9000, 50),
            Offered::Queued
        ));
    }

    #[tokio::test]
    async fn what_a_lent_write_leaves_goes_first() {
        let (socket, _client) = socket_pair().await;
        let outbox = Outbox::new(1000);
        outbox.attach_socket(socket);
        outbox.leave();
        let frame = lent(outbox.lend_or_push(Bytes::from_static(b"first"), 1000, 50));
        assert!(matches!(
            outbox.lend_or_push(Bytes::from_static(b"second"), 1001, 50),
            Offered::Queued
        ));
        // Nothing written: the frame goes back to the front of the queue.
        outbox.give_back(Returned::Unsent(frame));
        let (items, _) = outbox.drain();
        let frames: Vec<_> = items
            .iter()
            .map(|i| match i {
                OutItem::Frame(f) => f.clone(),
                OutItem::Control(_) => panic!("no controls queued"),
            })
            .collect();
        assert_eq!(frames, [&b"first"[..], &b"second"[..]]);
        // Part written: the rest waits for the task, which is told so.
        outbox.leave();
        lent(outbox.lend_or_push(Bytes::from_static(b"third"), 2000, 50));
        outbox.give_back(Returned::Rest(Bytes::from_static(b"rd")));
        assert!(outbox.has_remainder());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(
            outbox.poll_ready(&mut cx).is_ready(),
            "the task must write the rest"
        );
        outbox.leave();
        assert!(
            matches!(
                outbox.lend_or_push(Bytes::from_static(b"x"), 3000, 50),
                Offered::Queued
            ),
            "nothing is lent before the rest is written"
        );
        let (rest, _) = outbox.take_remainder().unwrap();
        assert_eq!(rest, &b"rd"[..]);
        outbox.keep_remainder(None);
        assert!(!outbox.has_remainder());
    }

    #[test]
    fn draining_frees_the_byte_budget() {
        let outbox = Outbox::new(10);
        assert!(outbox.push_frame(Bytes::from_static(b"1234567890")));
        let (items, closed) = outbox.drain();
        assert_eq!(items.len(), 1);
        assert!(closed.is_none());
        assert!(outbox.push_frame(Bytes::from_static(b"1234567890")));
    }
}
