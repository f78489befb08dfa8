//! Writes this process's connection counts of its users to Redis for `user_status`: a
//! connection that comes or goes marks its user dirty; one task writes the current counts of
//! the dirty users (read from the registry at write time, so writes never arrive out of
//! order and a failed one is made good by the next), beats this process's heartbeat every
//! third of the node TTL, and writes every user again when Redis lost track of it (a heartbeat
//! older than the TTL, or user status just turned on) and, to keep online users' records from
//! expiring, every half `last_seen_ttl`. Each turn on of `user_status` starts a new
//! contributor id, so counts left from before it was turned off never come back to life. When
//! the node shuts down, its users are written with no connection left before the task ends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::engine::redis::user_status::StoredStatus;
use crate::engine::redis::RedisEngine;
use crate::engine::EngineError;
use crate::node_view::NodeView;
use crate::registry::Registry;

/// Longest a connect or disconnect waits for its count to reach Redis.
const WRITE_WAIT: Duration = Duration::from_secs(2);

/// Dirty users waiting for the writer.
#[derive(Default)]
struct Pending {
    dirty: HashSet<Arc<str>>,
    /// Changes asked for so far (the writer reports how many it has written).
    requested: u64,
}

/// The Redis side of one node's user status.
pub(super) struct RedisStatus {
    engine: Arc<RedisEngine>,
    registry: Arc<Registry>,
    node_ttl: Duration,
    pending: Mutex<Pending>,
    wake: Notify,
    /// Changes written (or given up on) so far.
    written: watch::Sender<u64>,
    /// The writer has stopped (the node shuts down): changes are no longer written.
    stopped: AtomicBool,
}

impl RedisStatus {
    pub(super) fn new(
        engine: Arc<RedisEngine>,
        registry: Arc<Registry>,
        node_ttl: Duration,
    ) -> Self {
        Self {
            engine,
            registry,
            node_ttl,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            written: watch::Sender::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Marks `user` dirty and waits (bounded) until the writer has written it.
    pub(super) async fn changed(&self, user: &str) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let ticket = {
            let mut pending = self.pending.lock();
            pending.dirty.insert(Arc::from(user));
            pending.requested += 1;
            pending.requested
        };
        let mut written = self.written.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(WRITE_WAIT, written.wait_for(|w| *w >= ticket)).await;
    }

    /// The stored status of `users`.
    pub(super) async fn read(
        &self,
        users: &[String],
        keep: Duration,
    ) -> Result<Vec<StoredStatus>, EngineError> {
        self.engine
            .user_status_read(users, self.node_ttl, keep)
            .await
    }

    /// Every user with a connection here, marked dirty.
    fn mark_everyone(&self) {
        let users = self.registry.user_ids();
        let mut pending = self.pending.lock();
        pending
            .dirty
            .extend(users.into_iter().filter(|u| !u.is_empty()));
    }

    /// Writes the dirty users' counts as `contributor`; users whose write failed stay dirty.
    async fn flush(&self, contributor: &str, keep: Duration) {
        let (users, upto) = {
            let mut pending = self.pending.lock();
            (std::mem::take(&mut pending.dirty), pending.requested)
        };
        if !users.is_empty() {
            let counts: Vec<(Arc<str>, usize)> = users
                .into_iter()
                .map(|u| {
                    let n = self.registry.user_connections(&u);
                    (u, n)
                })
                .collect();
            if let Err(e) = self
                .engine
                .user_status_write(contributor, &counts, self.node_ttl, keep)
                .await
            {
                tracing::warn!(error = %e, users = counts.len(), "user status not written; retrying");
                self.pending
                    .lock()
                    .dirty
                    .extend(counts.into_iter().map(|(u, _)| u));
            }
        }
        self.written.send_if_modified(|w| {
            let moved = upto > *w;
            *w = (*w).max(upto);
            moved
        });
    }

    /// The node shuts down: every user with a connection here is written with none left (each
    /// user no process counts any more is last seen now), bounded by [`WRITE_WAIT`], so a
    /// graceful stop does not leave them online until the heartbeat expires.
    async fn goodbye(&self, contributor: &str, keep: Duration) {
        let mut users: HashSet<Arc<str>> = self.registry.user_ids().into_iter().collect();
        users.extend(std::mem::take(&mut self.pending.lock().dirty));
        let counts: Vec<(Arc<str>, usize)> = users
            .into_iter()
            .filter(|u| !u.is_empty())
            .map(|u| (u, 0))
            .collect();
        if counts.is_empty() {
            return;
        }
        let write = self
            .engine
            .user_status_write(contributor, &counts, self.node_ttl, keep);
        match tokio::time::timeout(WRITE_WAIT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "user status not cleared at shutdown"),
            Err(_) => tracing::warn!("user status not cleared at shutdown: timed out"),
        }
    }

    /// Forgets the dirty users (user status is off) and releases their waiters.
    fn drop_pending(&self) {
        let upto = {
            let mut pending = self.pending.lock();
            pending.dirty.clear();
            pending.requested
        };
        self.written.send_if_modified(|w| {
            let moved = upto > *w;
            *w = (*w).max(upto);
            moved
        });
    }
}

/// Runs the writer until the node shuts down.
pub(super) fn spawn<N: NodeView>(status: Arc<RedisStatus>, node: &Arc<N>) {
    let weak: Weak<N> = Arc::downgrade(node);
    let weak: Weak<dyn NodeView> = weak;
    let stop = node.shutdown().clone();
    let node_id = node.id().to_owned();
    tokio::spawn(async move {
        let beat_every = (status.node_ttl / 3).max(Duration::from_millis(100));
        let mut generation = 0u64;
        let mut contributor: Option<String> = None;
        let mut next_beat = Instant::now();
        let mut refresh_at: Option<Instant> = None;
        let mut keep = Duration::ZERO;
        loop {
            let wake_at = refresh_at.map_or(next_beat, |r| r.min(next_beat));
            tokio::select! {
                _ = stop.cancelled() => {
                    if let Some(id) = &contributor {
                        status.goodbye(id, keep).await;
                    }
                    status.stopped.store(true, Ordering::Release);
                    status.release_waiters();
                    break;
                }
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = status.wake.notified() => {}
            }
            let Some(node) = weak.upgrade() else { break };
            let config = node.config();
            drop(node);
            let settings = &config.tenant.user_status;
            let now = Instant::now();
            if !settings.enabled {
                // Looked at again each beat interval, to notice it being turned on.
                contributor = None;
                refresh_at = None;
                next_beat = now + beat_every;
                status.drop_pending();
                continue;
            }
            keep = settings.last_seen_ttl.get();
            let id = contributor.get_or_insert_with(|| {
                generation += 1;
                next_beat = now;
                refresh_at = Some(now + keep / 2);
                format!("{node_id}.{generation}")
            });
            if now >= next_beat {
                let retention = keep + status.node_ttl;
                match status
                    .engine
                    .user_status_beat(id, status.node_ttl, retention)
                    .await
                {
                    Ok(stale) => {
                        next_beat = now + beat_every;
                        if stale {
                            status.mark_everyone();
                        }
                    }
                    Err(e) => {
                        // No write without a live heartbeat (readers would drop it); the
                        // dirty users wait for the next try.
                        tracing::warn!(error = %e, "user status heartbeat failed");
                        next_beat = now + beat_every.min(Duration::from_secs(1));
                        status.release_waiters();
                        continue;
                    }
                }
            }
            if refresh_at.is_some_and(|at| now >= at) {
                status.mark_everyone();
                refresh_at = Some(now + keep / 2);
            }
            status.flush(id, keep).await;
        }
    });
}

impl RedisStatus {
    /// Releases the waiters of the changes asked for so far without writing them (they stay
    /// dirty for the next turn).
    fn release_waiters(&self) {
        let upto = self.pending.lock().requested;
        self.written.send_if_modified(|w| {
            let moved = upto > *w;
            *w = (*w).max(upto);
            moved
        });
    }
}
