//! One command connection of the Redis engine, whatever the deployment: a standalone server
//! (redis-rs's `ConnectionManager`, which reconnects), a Redis Cluster (redis-rs's cluster
//! connection, which routes each command by its first key's slot and follows MOVED/ASK and
//! failovers), or the primary a group of Sentinels names ([`SentinelConn`]). All three are
//! `ConnectionLike`, so every command and script of the engine is written once.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

/// How long a connection attempt to a primary named by the Sentinels may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A command connection (cheap to clone; clones share the underlying connection).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
    }
}

/// The connection settings for a primary named by the Sentinels.
pub fn primary_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
}

/// The primary of a Sentinel-managed group: asks the Sentinels where it is, keeps one
/// multiplexed connection to it, and forgets that connection after any error that may mean
/// the primary changed (connection lost, timeout, READONLY from a demoted primary), so the
/// next command asks the Sentinels again. A command during a failover fails (the engine's
/// temporary error); the first one after it goes to the new primary.
#[derive(Clone)]
pub struct SentinelConn {
    sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
    current: Arc<parking_lot::Mutex<Option<MultiplexedConnection>>>,
}

impl SentinelConn {
    pub fn new(sentinel: Arc<tokio::sync::Mutex<SentinelClient>>) -> Self {
        Self {
            sentinel,
            current: Arc::default(),
        }
    }

    /// A client for the current primary, as the Sentinels name it (checked with ROLE).
    pub async fn primary_client(
        sentinel: &tokio::sync::Mutex<SentinelClient>,
    ) -> redis::RedisResult<redis::Client> {
        let mut sentinel = sentinel.lock().await;
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, sentinel.async_get_client()).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "sentinels did not name a primary in time",
            ))),
        }
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.current.lock().clone() {
            return Ok(c);
        }
        let client = Self::primary_client(&self.sentinel).await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&primary_config())
            .await?;
        *self.current.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after `e` when it may mean the primary moved.
    fn check<T>(&self, r: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &r {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.kind() == redis::ErrorKind::ReadOnly
            {
                self.current.lock().take();
            }
        }
        r
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.check(self.connection().await)?;
            let r = conn.req_packed_command(cmd).await;
            self.check(r)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.check(self.connection().await)?;
            let r = conn.req_packed_commands(cmd, offset, count).await;
            self.check(r)
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
