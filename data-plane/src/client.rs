//! A connected client as the rest of the node sees it: identity plus a bounded outbox. The hub
//! and the server API push into the outbox without locks held across awaits; the connection's
//! own task drains it and coalesces everything queued into one write.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;

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
    Subscribe(Box<crate::session::ServerSubscribe>),
    /// Update the connection's expiry and info (server API `refresh`).
    Refresh(Box<crate::session::ServerRefresh>),
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

#[derive(Debug, Default)]
struct OutboxState {
    items: VecDeque<OutItem>,
    bytes: usize,
    closed: Option<Disconnect>,
    /// The connection task, when it waits for this outbox. Kept under the queue's own lock
    /// (no `Notify`): waiting takes no room in the connection task's future, and a push wakes
    /// the task at most once per wait.
    waker: Option<Waker>,
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
}

impl Outbox {
    /// An empty outbox that holds at most `max_bytes` of frames.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(OutboxState::default()),
            max_bytes,
        }
    }

    /// Queues a frame. Returns false when the connection is closing (or has just been found
    /// slow).
    pub fn push_frame(&self, frame: Bytes) -> bool {
        let mut st = self.state.lock();
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
        if !st.items.is_empty() || st.closed.is_some() {
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
