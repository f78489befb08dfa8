//! The shared side of occupancy and membership: whether a local first acquisition or a final
//! release changes anything project-wide, and the version of the change.
//!
//! - Memory engine: this process holds every connection of the tenant, so every change the
//!   tracker reports is a project-wide change; versions come from [`Versions`].
//! - Redis engine: one hash per channel under the tenant's prefix records which processes
//!   hold the channel (and each user in it) and how many do; one Lua call per change marks
//!   or unmarks this process and, when the count crosses zero, takes the next version from
//!   the channel's own counter (`max(last + 1, Redis clock in µs)`, so it only grows even
//!   after the idle hash expired). A user's connections are marked too, so a process can tell
//!   whether a disconnected user connected again anywhere, and each process's holdings and
//!   connections are indexed for the sweep of a process that died ([`super::sweep`]).

use std::sync::Arc;
use std::time::Duration;

use super::event::Versions;
use super::tracker::Key;
use crate::engine::redis::RedisEngine;
use crate::engine::EngineError;

/// How long an idle channel hash (no holder left) keeps its version counter in Redis.
pub const IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where project-wide occupancy is decided.
#[derive(Clone)]
pub enum Ledger {
    Memory,
    Redis {
        engine: Arc<RedisEngine>,
        /// This process (its node id).
        holder: String,
        /// `engine.redis.presence_ttl`: a process silent for longer is swept as dead.
        presence_ttl: Duration,
    },
}

impl Ledger {
    /// Whether other processes share the decisions (connections are then recorded too).
    pub fn is_shared(&self) -> bool {
        matches!(self, Ledger::Redis { .. })
    }

    /// A local first acquisition of `key`: the new version when it is the first project-wide.
    pub async fn acquire(
        &self,
        key: &Key,
        versions: &Versions,
    ) -> Result<Option<u64>, EngineError> {
        self.change(key, true, versions).await
    }

    /// A final local release of `key`: the new version when it was the last project-wide.
    pub async fn release(
        &self,
        key: &Key,
        versions: &Versions,
    ) -> Result<Option<u64>, EngineError> {
        self.change(key, false, versions).await
    }

    async fn change(
        &self,
        key: &Key,
        acquire: bool,
        versions: &Versions,
    ) -> Result<Option<u64>, EngineError> {
        match self {
            Ledger::Memory => Ok(Some(versions.next())),
            Ledger::Redis { engine, holder, .. } => {
                let version = engine
                    .webhook_hold(&key.channel, &key.user, holder, acquire, IDLE_TTL)
                    .await?;
                Ok((version > 0).then_some(version))
            }
        }
    }

    /// Connection `client` of `user` started at `time_ms` (Redis: recorded for the sweep,
    /// and the user's reconnection marked for other processes, long enough for a process
    /// holding a disconnect of it, or sweeping a dead process, to look).
    pub async fn connected(
        &self,
        client: &str,
        user: &str,
        time_ms: u64,
        grace: Duration,
    ) -> Result<(), EngineError> {
        let Ledger::Redis {
            engine,
            holder,
            presence_ttl,
        } = self
        else {
            return Ok(());
        };
        engine.webhook_client(holder, client, Some(user)).await?;
        if !user.is_empty() {
            let keep = (grace * 2).max(*presence_ttl * 3);
            engine
                .webhook_connected(user, holder, time_ms, keep)
                .await?;
        }
        Ok(())
    }

    /// Connection `client` ended (Redis: no longer one to sweep).
    pub async fn disconnected(&self, client: &str) -> Result<(), EngineError> {
        match self {
            Ledger::Memory => Ok(()),
            Ledger::Redis { engine, holder, .. } => {
                engine.webhook_client(holder, client, None).await
            }
        }
    }

    /// This process stopped gracefully, having released everything: nothing to sweep.
    pub async fn retire(&self) -> Result<(), EngineError> {
        match self {
            Ledger::Memory => Ok(()),
            Ledger::Redis { engine, holder, .. } => engine.webhook_forget(holder).await,
        }
    }

    /// Whether `user` connected on any process after `time_ms` (memory engine: the tracker
    /// already knows, so never).
    pub async fn connected_since(&self, user: &str, time_ms: u64) -> Result<bool, EngineError> {
        match self {
            Ledger::Memory => Ok(false),
            Ledger::Redis { engine, .. } => {
                Ok(engine.webhook_connected_at(user).await?.0 > time_ms)
            }
        }
    }
}
