//! Online status of users, for the server API's `user_status` (`user_status.enabled`): per
//! user, whether it has an authenticated connection now, how many, and when its last one
//! ended. Kept from connection state as connections come and go, so a query costs O(1) per
//! user and never scans connections or presence:
//!
//! - memory engine (also beside the NATS broker): the node's registry already counts each
//!   user's connections; [`last_seen::LastSeen`] adds the bounded last-seen records. Exact,
//!   for this process's connections.
//! - Redis engine: each process writes its users' counts to Redis ([`redis_writer`]), where
//!   every process of the tenant reads them; a process that dies without cleaning up stops
//!   counting once its heartbeat is older than `engine.redis.presence_ttl`.
//!
//! The anonymous user (`""`) is never tracked or reported.

pub mod last_seen;
mod redis_writer;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::engine::redis::user_status::unix_now_ms;
use crate::engine::redis::RedisEngine;
use crate::engine::EngineError;
use crate::node_view::NodeView;
use crate::registry::Registry;
use last_seen::LastSeen;

/// Most users one `user_status` call may ask about.
pub const MAX_USERS_PER_CALL: usize = 1000;

/// One user's status as `user_status` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub user: String,
    /// At least one connection now.
    pub online: bool,
    /// Connections now (over every process with the Redis engine).
    pub connections: u64,
    /// When the user's last connection ended (unix ms); 0 while online, when never seen, or
    /// when the record expired (`user_status.last_seen_ttl`).
    pub last_seen: u64,
}

/// Where statuses are kept.
enum Backend {
    Memory(Mutex<LastSeen>),
    Redis(Arc<redis_writer::RedisStatus>),
}

/// The node's user status tracker.
pub struct UserStatus {
    backend: Backend,
}

impl UserStatus {
    /// Status kept in this process (memory engine).
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(Mutex::new(LastSeen::default())),
        }
    }

    /// Status kept in Redis, shared by every process of the tenant; a contributor silent for
    /// longer than `node_ttl` counts for nothing.
    pub fn redis(engine: Arc<RedisEngine>, registry: Arc<Registry>, node_ttl: Duration) -> Self {
        Self {
            backend: Backend::Redis(Arc::new(redis_writer::RedisStatus::new(
                engine, registry, node_ttl,
            ))),
        }
    }

    /// Starts what runs beside the requests (the Redis writer and heartbeat), stopped with
    /// the node.
    pub fn start<N: NodeView>(&self, node: &Arc<N>) {
        if let Backend::Redis(status) = &self.backend {
            redis_writer::spawn(status.clone(), node);
        }
    }

    /// A connection of `user` was registered. With the Redis engine this returns once the
    /// new count is in Redis (or after a short bound when Redis is slow), so the connection
    /// reads as online on every process by the time its connect reply leaves.
    pub async fn connected(&self, node: &dyn NodeView, user: &str) {
        if user.is_empty() || !node.config().tenant.user_status.enabled {
            return;
        }
        if let Backend::Redis(status) = &self.backend {
            status.changed(user).await;
        }
    }

    /// A connection of `user` left the registry.
    pub async fn disconnected(&self, node: &dyn NodeView, user: &str) {
        if user.is_empty() {
            return;
        }
        let config = node.config();
        let settings = &config.tenant.user_status;
        match &self.backend {
            Backend::Memory(records) if !settings.enabled => {
                let mut records = records.lock();
                if !records.is_empty() {
                    records.clear();
                }
            }
            Backend::Memory(records) => {
                if node.registry().user_connections(user) == 0 {
                    records.lock().record(
                        user,
                        unix_now_ms(),
                        millis(settings.last_seen_ttl.get()),
                        settings.max_last_seen_bytes,
                    );
                }
            }
            Backend::Redis(_) if !settings.enabled => {}
            Backend::Redis(status) => status.changed(user).await,
        }
    }

    /// The status of each of `users`, in their order (none empty: the caller checks).
    pub async fn query(
        &self,
        node: &dyn NodeView,
        users: &[String],
    ) -> Result<Vec<Status>, EngineError> {
        let config = node.config();
        let ttl = config.tenant.user_status.last_seen_ttl.get();
        match &self.backend {
            Backend::Memory(records) => {
                let now = unix_now_ms();
                let records = records.lock();
                Ok(users
                    .iter()
                    .map(|user| {
                        let connections = node.registry().user_connections(user) as u64;
                        let last_seen = if connections > 0 {
                            0
                        } else {
                            records.get(user, now, millis(ttl)).unwrap_or(0)
                        };
                        Status {
                            user: user.clone(),
                            online: connections > 0,
                            connections,
                            last_seen,
                        }
                    })
                    .collect())
            }
            Backend::Redis(status) => {
                let stored = status.read(users, ttl).await?;
                Ok(users
                    .iter()
                    .zip(stored)
                    .map(|(user, s)| Status {
                        user: user.clone(),
                        online: s.connections > 0,
                        connections: s.connections,
                        last_seen: if s.connections > 0 { 0 } else { s.last_seen },
                    })
                    .collect())
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
