//! Channel and connection events POSTed to the project's backend (`webhooks.*`):
//! `channel_occupied` / `channel_vacated`, `member_added` / `member_removed` (per user, not per
//! connection) and `client_disconnected`, each with a per-channel version and a time.
//!
//! The session calls the hooks here on subscribe, unsubscribe, connect and disconnect only —
//! never per publication. A hook updates this process's [`tracker::Tracker`] under a short
//! lock and hands what the shared state must hear to a bounded channel, without waiting; the
//! worker task decides project-wide changes with the [`ledger::Ledger`] (Redis or this
//! process), and the delivery task sends them ([`delivery`]). A removal waits `grace` for its
//! matching addition, which cancels both, so a mass reconnect sends nothing.

pub(crate) mod dead_letter;
pub(crate) mod delivery;
pub(crate) mod event;
pub(crate) mod ledger;
pub mod sign;
pub(crate) mod state;
mod sweep;
pub(crate) mod tracker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use rotor_tenant_config::WebhooksSection;
use serde::Serialize;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::node_view::NodeView;
use dead_letter::{DeadLetter, DeadLetters, Reason};
use delivery::Outbox;
use event::{unix_ms, Event, EventKind, Versions};
use ledger::Ledger;
use tracker::{Disconnected, Key, Step, Tracker};

/// Reason of the `client_disconnected` events of a connection whose process died.
pub const PROCESS_LOST: &str = "process lost";

/// Steps waiting for the worker (past it, events are dead-lettered as `queue_full`).
const STEP_QUEUE: usize = 16_384;

/// What the worker hears from the hooks.
enum Op {
    Step(Step),
    /// A connection (client, user) started at this time: recorded in Redis for other
    /// processes and for the sweep.
    Connected(Arc<str>, Arc<str>, u64),
    /// A connection ended: no longer recorded for the sweep.
    Gone(Arc<str>),
}

/// The webhooks of one process.
pub struct Webhooks {
    tracker: Mutex<Tracker>,
    steps: mpsc::Sender<Op>,
    receiver: Mutex<Option<mpsc::Receiver<Op>>>,
    /// Tells the worker a removal was held (its next deadline may be sooner).
    held: Notify,
    outbox: Outbox,
    dead: DeadLetters,
    versions: Versions,
    /// The worker has sent every held removal after the process began stopping.
    flushed: AtomicBool,
    stopping: AtomicBool,
    /// Decisions are shared with other processes (Redis): connections are recorded too.
    shared: AtomicBool,
    /// The tracker may hold something (so turning webhooks off clears it on the next hook).
    tracking: AtomicBool,
    /// Something changed since the state file was written (memory engine).
    dirty: AtomicBool,
    /// Wakes the state file's writer after a change (it sleeps otherwise).
    state_changed: Notify,
    /// A state file is kept and not yet removed by a graceful stop.
    state_open: AtomicBool,
}

impl Default for Webhooks {
    fn default() -> Self {
        let (steps, receiver) = mpsc::channel(STEP_QUEUE);
        Self {
            tracker: Mutex::default(),
            steps,
            receiver: Mutex::new(Some(receiver)),
            held: Notify::new(),
            outbox: Outbox::default(),
            dead: DeadLetters::default(),
            versions: Versions::default(),
            flushed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            shared: AtomicBool::new(false),
            tracking: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            state_changed: Notify::new(),
            state_open: AtomicBool::new(false),
        }
    }
}

/// Why dead letters cannot be sent again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeliverError {
    /// Webhooks are off: there is no URL or secret to send with.
    #[error("webhooks are off: turn them on before sending failed deliveries again")]
    Disabled,
    /// No dead letter has this webhook id (sent again already, or pushed out of the ring).
    #[error("no failed delivery has webhook id {0:?}")]
    NotFound(String),
    /// As many batches as the ring holds already wait to be sent again.
    #[error("{0} failed deliveries are already waiting to be sent again")]
    Busy(usize),
}

/// What a redelivery queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Redelivered {
    pub batches: usize,
    pub events: usize,
}

/// What the admin surface shows.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub enabled: bool,
    /// Events waiting for delivery.
    pub queued: usize,
    /// The dead-letter ring, oldest first.
    pub dead_letters: Vec<DeadLetter>,
}

fn wants_tracking(w: &WebhooksSection) -> (bool, bool) {
    (
        w.wants("channel_occupied") || w.wants("channel_vacated"),
        w.wants("member_added") || w.wants("member_removed"),
    )
}

impl Webhooks {
    /// Starts the worker and the delivery task of `hooks`, the webhooks of `node`, deciding
    /// with `ledger`; they stop with the node.
    pub fn start<N: NodeView>(hooks: &Arc<Self>, node: &Arc<N>, ledger: Ledger) {
        let hooks = hooks.clone();
        let Some(receiver) = hooks.receiver.lock().take() else {
            return;
        };
        let weak = || -> Weak<dyn NodeView> {
            let weak: Weak<N> = Arc::downgrade(node);
            weak
        };
        let node: &dyn NodeView = &**node;
        hooks.shared.store(ledger.is_shared(), Ordering::Release);
        if let Ledger::Redis {
            engine,
            holder,
            presence_ttl,
        } = &ledger
        {
            tokio::spawn(sweep::run(
                weak(),
                hooks.clone(),
                engine.clone(),
                holder.clone(),
                *presence_ttl,
                node.shutdown().clone(),
            ));
        }
        let state = match ledger {
            Ledger::Memory => state::StateFile::from_env(),
            Ledger::Redis { .. } => None,
        };
        tokio::spawn(worker(
            weak(),
            hooks.clone(),
            ledger,
            receiver,
            node.shutdown().clone(),
        ));
        if let Some(file) = state {
            match file.load() {
                Ok(Some(saved)) => hooks.inherit(node, saved),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook state of the previous process not read")
                }
            }
            hooks.state_open.store(true, Ordering::Release);
            tokio::spawn(state::run(
                weak(),
                hooks.clone(),
                file,
                node.shutdown().clone(),
            ));
        }
        tokio::spawn(delivery::run(weak(), hooks, delivery::client()));
    }

    /// Nothing is tracked: forgets what was (webhooks were just turned off). One atomic
    /// load when there is nothing to forget.
    fn idle(&self) {
        if self.tracking.load(Ordering::Acquire) && self.tracking.swap(false, Ordering::AcqRel) {
            self.tracker.lock().clear();
        }
    }

    /// A subscription of `user` to `channel` became active here.
    pub fn subscribed(&self, node: &dyn NodeView, channel: &str, user: &str) {
        let config = node.config();
        if !config.tenant.webhooks.enabled {
            return self.idle();
        }
        let (channels, members) = wants_tracking(&config.tenant.webhooks);
        if !channels && !members {
            return;
        }
        let now = unix_ms();
        self.tracking.store(true, Ordering::Release);
        self.mark_dirty();
        let mut tracker = self.tracker.lock();
        if channels {
            if let Some(step) = tracker.acquire(Key::channel(channel), now) {
                self.send(node, &config.tenant.webhooks, Op::Step(step));
            }
        }
        if members && !user.is_empty() {
            if let Some(step) = tracker.acquire(Key::member(channel, user), now) {
                self.send(node, &config.tenant.webhooks, Op::Step(step));
            }
        }
    }

    /// A subscription of `user` to `channel` ended here.
    pub fn unsubscribed(&self, node: &dyn NodeView, channel: &str, user: &str) {
        let config = node.config();
        let w = &config.tenant.webhooks;
        if !w.enabled {
            return self.idle();
        }
        let (channels, members) = wants_tracking(w);
        if !channels && !members {
            return;
        }
        let grace = self.grace(w);
        let (now, at) = (unix_ms(), Instant::now());
        self.mark_dirty();
        let mut tracker = self.tracker.lock();
        let mut held = false;
        if members && !user.is_empty() {
            match tracker.release(Key::member(channel, user), now, at, grace) {
                Some(step) => self.send(node, w, Op::Step(step)),
                None => held = true,
            }
        }
        if channels {
            match tracker.release(Key::channel(channel), now, at, grace) {
                Some(step) => self.send(node, w, Op::Step(step)),
                None => held = true,
            }
        }
        drop(tracker);
        if held {
            self.held.notify_one();
        }
    }

    /// Connection `client` of `user` was registered here.
    pub fn connected(&self, node: &dyn NodeView, client: &str, user: &str) {
        let config = node.config();
        let w = &config.tenant.webhooks;
        if !w.wants("client_disconnected") {
            return;
        }
        self.tracking.store(true, Ordering::Release);
        self.mark_dirty();
        let mut tracker = self.tracker.lock();
        if !user.is_empty() {
            tracker.connected(user);
        }
        if self.shared.load(Ordering::Acquire) {
            self.send(
                node,
                w,
                Op::Connected(client.into(), user.into(), unix_ms()),
            );
        }
    }

    /// A connection ended (after its subscriptions did).
    pub fn disconnected(
        &self,
        node: &dyn NodeView,
        client: &str,
        user: &str,
        code: u16,
        reason: &str,
    ) {
        let config = node.config();
        let w = &config.tenant.webhooks;
        if !w.wants("client_disconnected") {
            return;
        }
        let d = Disconnected {
            client: client.into(),
            user: user.into(),
            code,
            reason: reason.to_owned(),
            time_ms: unix_ms(),
        };
        let grace = self.grace(w);
        self.tracking.store(true, Ordering::Release);
        self.mark_dirty();
        let mut tracker = self.tracker.lock();
        if self.shared.load(Ordering::Acquire) {
            self.send(node, w, Op::Gone(d.client.clone()));
        }
        match tracker.disconnected(d, Instant::now(), grace) {
            Some(step) => self.send(node, w, Op::Step(step)),
            None => {
                drop(tracker);
                self.held.notify_one();
            }
        }
    }

    /// Takes over what a process killed before this one held (its state file): held
    /// releases and disconnects, sent unless taken again within grace.
    fn inherit(&self, node: &dyn NodeView, saved: state::Saved) {
        let config = node.config();
        let w = &config.tenant.webhooks;
        if !w.enabled {
            return;
        }
        let grace = w.grace.get();
        let now = Instant::now();
        tracing::info!(
            holdings = saved.holdings.len(),
            connections = saved.clients.len(),
            "taking over the webhook state of the previous process"
        );
        self.tracking.store(true, Ordering::Release);
        let mut tracker = self.tracker.lock();
        for (channel, user) in saved.holdings {
            let key = Key {
                channel: channel.into(),
                user: user.into(),
            };
            if let Some(step) = tracker.inherit(key, saved.time_ms, now, grace) {
                self.send(node, w, Op::Step(step));
            }
        }
        for (client, user) in saved.clients {
            let d = Disconnected {
                client: client.into(),
                user: user.into(),
                code: crate::protocol::Disconnect::CONNECTION_CLOSED.code,
                reason: PROCESS_LOST.to_owned(),
                time_ms: saved.time_ms,
            };
            if let Some(step) = tracker.disconnected(d, now, grace) {
                self.send(node, w, Op::Step(step));
            }
        }
        drop(tracker);
        self.held.notify_one();
    }

    /// Marks again everything this process holds (its heartbeat was unknown: it was swept as
    /// dead while alive, or Redis lost it).
    fn remark(&self, node: &dyn NodeView) {
        let config = node.config();
        let w = &config.tenant.webhooks;
        let now = unix_ms();
        let tracker = self.tracker.lock();
        for key in tracker.holdings() {
            self.send(node, w, Op::Step(Step::Acquire(key, now)));
        }
    }

    /// What the admin surface shows.
    pub fn snapshot(&self, node: &dyn NodeView) -> Snapshot {
        Snapshot {
            enabled: node.config().tenant.webhooks.enabled,
            queued: self.outbox.len(),
            dead_letters: self.dead.snapshot(),
        }
    }

    /// Sends dead letters again: the one with webhook id `id`, or all of them (oldest first).
    /// Each leaves the ring and is queued as one batch with its own id, signed with the
    /// current secret when sent; one that fails again comes back to the ring. At most
    /// `webhooks.dead_letter_size` batches wait to be sent again at once.
    pub fn redeliver(
        &self,
        node: &dyn NodeView,
        id: Option<&str>,
    ) -> Result<Redelivered, RedeliverError> {
        let config = node.config();
        let w = &config.tenant.webhooks;
        if !w.enabled {
            return Err(RedeliverError::Disabled);
        }
        let waiting = self.outbox.resend_len();
        let room = (w.dead_letter_size as usize).saturating_sub(waiting);
        if room == 0 {
            return Err(RedeliverError::Busy(waiting));
        }
        let letters = self.dead.take(id, room);
        if let (Some(id), true) = (id, letters.is_empty()) {
            return Err(RedeliverError::NotFound(id.to_owned()));
        }
        let done = Redelivered {
            batches: letters.len(),
            events: letters.iter().map(|l| l.events.len()).sum(),
        };
        tracing::info!(
            batches = done.batches,
            events = done.events,
            "failed webhook deliveries sent again"
        );
        self.outbox
            .push_resend(letters.into_iter().map(|l| (l.webhook_id, l.events)));
        Ok(done)
    }

    /// Resolves once every event of a stopping process was tried (or at `deadline`).
    pub async fn drained(&self, deadline: Instant) {
        while Instant::now() < deadline {
            if self.flushed.load(Ordering::Acquire)
                && self.outbox.is_idle()
                && !self.state_open.load(Ordering::Acquire)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Something the state file holds changed: its writer wakes (memory engine).
    fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
        self.state_changed.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The grace in force: none once the process is stopping (nobody would send what is held).
    fn grace(&self, w: &WebhooksSection) -> Duration {
        if self.stopping() {
            Duration::ZERO
        } else {
            w.grace.get()
        }
    }

    /// Hands `op` to the worker (called under the tracker's lock, so steps keep their order);
    /// a full queue dead-letters its event.
    fn send(&self, node: &dyn NodeView, w: &WebhooksSection, op: Op) {
        if let Err(mpsc::error::TrySendError::Full(op) | mpsc::error::TrySendError::Closed(op)) =
            self.steps.try_send(op)
        {
            if let Op::Step(step) = op {
                let event = match step {
                    Step::Acquire(key, time) => key_event(&key, true, 0, time),
                    Step::Release(key, time) => key_event(&key, false, 0, time),
                    Step::Disconnected(d) => disconnect_event(d, 0),
                };
                self.drop_events(node, w, Reason::QueueFull, vec![event]);
            }
        }
    }

    /// Queues `event` for delivery (a full outbox dead-letters it).
    fn emit(&self, node: &dyn NodeView, w: &WebhooksSection, event: Event) {
        if !w.wants(event.name.as_str()) {
            return;
        }
        if let Err(event) = self.outbox.push(event, w.queue_size as usize) {
            self.drop_events(node, w, Reason::QueueFull, vec![event]);
        }
    }

    fn drop_events(
        &self,
        node: &dyn NodeView,
        w: &WebhooksSection,
        reason: Reason,
        events: Vec<Event>,
    ) {
        self.dead_letter(
            node,
            w,
            DeadLetter {
                time_ms: unix_ms(),
                reason,
                webhook_id: uuid::Uuid::new_v4().to_string(),
                status: None,
                error: None,
                attempts: 0,
                events,
            },
        );
    }

    /// Keeps `letter` in the ring and counts its events as dropped.
    fn dead_letter(&self, node: &dyn NodeView, w: &WebhooksSection, letter: DeadLetter) {
        for _ in 0..letter.events.len() {
            node.metrics()
                .webhook_events_dropped
                .inc(letter.reason.as_str());
        }
        self.dead.push(letter, w.dead_letter_size as usize);
    }
}

fn key_event(key: &Key, added: bool, version: u64, time_ms: u64) -> Event {
    let name = match (key.is_member(), added) {
        (false, true) => EventKind::ChannelOccupied,
        (false, false) => EventKind::ChannelVacated,
        (true, true) => EventKind::MemberAdded,
        (true, false) => EventKind::MemberRemoved,
    };
    Event {
        name,
        channel: Some(key.channel.to_string()),
        user: key.is_member().then(|| key.user.to_string()),
        client: None,
        code: None,
        reason: None,
        version,
        time_ms,
    }
}

fn disconnect_event(d: Disconnected, version: u64) -> Event {
    Event {
        name: EventKind::ClientDisconnected,
        channel: None,
        user: Some(d.user.to_string()),
        client: Some(d.client.to_string()),
        code: Some(d.code),
        reason: Some(d.reason),
        version,
        time_ms: d.time_ms,
    }
}

/// The worker: takes steps from the hooks and held removals as they fall due, decides them
/// with the ledger and queues the events. When the process stops it sends everything held.
async fn worker(
    node: Weak<dyn NodeView>,
    hooks: Arc<Webhooks>,
    ledger: Ledger,
    mut receiver: mpsc::Receiver<Op>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut stopped_at: Option<Instant> = None;
    loop {
        let deadline = hooks.tracker.lock().next_deadline();
        let first = tokio::select! {
            op = receiver.recv() => op,
            _ = hooks.held.notified() => None,
            _ = sleep_until(deadline) => None,
            _ = stop.cancelled(), if stopped_at.is_none() => {
                hooks.stopping.store(true, Ordering::Release);
                stopped_at = Some(Instant::now());
                None
            }
            // While stopping, sessions close and release what they held: keep sending it.
            _ = tokio::time::sleep(Duration::from_millis(50)), if stopped_at.is_some() => None,
        };
        let Some(node) = node.upgrade() else { break };
        let mut ops: Vec<Op> = first.into_iter().collect();
        while let Ok(op) = receiver.try_recv() {
            ops.push(op);
        }
        let config = node.config();
        let w = &config.tenant.webhooks;
        if !w.enabled {
            hooks.tracker.lock().clear();
            if stopped_at.is_some() {
                break;
            }
            continue;
        }
        let due = if stopped_at.is_some() {
            hooks.tracker.lock().flush()
        } else {
            hooks.tracker.lock().due(Instant::now())
        };
        ops.extend(due.into_iter().map(Op::Step));
        for op in ops {
            decide(&*node, &hooks, &ledger, w, op).await;
        }
        if let Some(at) = stopped_at {
            // Sessions get the process's drain time to close; then nothing more comes.
            if node.metrics().connections.get() == 0 || at.elapsed() > Duration::from_secs(10) {
                let rest = hooks.tracker.lock().flush();
                for step in rest {
                    decide(&*node, &hooks, &ledger, w, Op::Step(step)).await;
                }
                // Everything is released: no survivor needs to sweep this process (and the
                // state file, if any, is removed by its writer once this is flushed).
                if let Err(e) = ledger.retire().await {
                    tracing::debug!(error = %e, "webhook holdings not retired");
                }
                hooks.flushed.store(true, Ordering::Release);
                hooks.outbox.ready.notify_one();
                break;
            }
        }
    }
    hooks.flushed.store(true, Ordering::Release);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Decides one op with the ledger and queues its event, if any.
async fn decide(
    node: &dyn NodeView,
    hooks: &Webhooks,
    ledger: &Ledger,
    w: &WebhooksSection,
    op: Op,
) {
    let step = match op {
        Op::Connected(client, user, at) => {
            if let Err(e) = ledger.connected(&client, &user, at, w.grace.get()).await {
                tracing::debug!(error = %e, "webhook connection not recorded");
            }
            return;
        }
        Op::Gone(client) => {
            if let Err(e) = ledger.disconnected(&client).await {
                tracing::debug!(error = %e, "webhook connection not unrecorded");
            }
            return;
        }
        Op::Step(step) => step,
    };
    let (result, fallback) = match step {
        Step::Acquire(key, time) => (
            ledger
                .acquire(&key, &hooks.versions)
                .await
                .map(|v| v.map(|v| key_event(&key, true, v, time))),
            key_event(&key, true, 0, time),
        ),
        Step::Release(key, time) => (
            ledger
                .release(&key, &hooks.versions)
                .await
                .map(|v| v.map(|v| key_event(&key, false, v, time))),
            key_event(&key, false, 0, time),
        ),
        Step::Disconnected(d) => {
            let fallback = disconnect_event(d.clone(), 0);
            let again = if d.user.is_empty() || w.grace.is_zero() {
                Ok(false)
            } else {
                ledger.connected_since(&d.user, d.time_ms).await
            };
            (
                again.map(|again| (!again).then(|| disconnect_event(d, hooks.versions.next()))),
                fallback,
            )
        }
    };
    match result {
        Ok(Some(event)) => hooks.emit(node, w, event),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "webhook event not decided: the engine is unavailable");
            hooks.drop_events(node, w, Reason::EngineUnavailable, vec![fallback]);
        }
    }
}
