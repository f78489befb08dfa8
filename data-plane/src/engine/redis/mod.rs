//! The Redis engine: history, stream positions, presence and fan-out shared by every process
//! of one tenant. A publish is one Lua call (idempotency, epoch, version check, offset, XADD
//! with MAXLEN, retention and PUBLISH together) — one round trip; each process keeps one PUB/SUB connection
//! per Redis shard for all its channels. Channels are spread over the shards of
//! `engine.redis.address` by Jump consistent hash, as Centrifugo does ([`shard`]); the node
//! control topic lives on the first shard. A shard may be the primary a group of Sentinels
//! names; on a Redis Cluster the cluster does the sharding, PUB/SUB is sharded
//! (SPUBLISH/SSUBSCRIBE) and [`connect`] says how the pieces are made.
//!
//! History here is Redis's memory, often shared by many tenants: what this process writes is
//! held against the tenant's history byte budgets (`rotor.max_history_bytes`,
//! `max_channel_history_bytes`) and streams count as channels for `rotor.max_channels`, by the
//! [`ledger`], as the memory engine holds its own. Channels with local subscribers and this
//! process's presence entries are budgeted ([`crate::budgets`]) in the hub and the session.

mod cluster_sub;
mod conn;
mod connect;
mod keys;
pub mod ledger;
mod presence;
pub mod shard;
mod subscriber;
pub mod tls;
mod unpublished;
pub use unpublished::REFRESH_EVERY;
pub(crate) mod user_status;
pub(crate) mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message as _;
use redis::{Script, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    new_epoch, Broker, BrokerEvents, EngineError, HistoryFilter, HistoryPage, PublishOptions,
};
use crate::protocol::{ClientInfo, Publication, StreamPosition};
use conn::Conn;
pub use keys::Keys;
use subscriber::SubCmd;

const OP_TIMEOUT: Duration = Duration::from_secs(3);
const IDEMPOTENCY_TTL_SECS: u64 = 300;

/// One shard: its command connection and its PUB/SUB task. On a cluster every bucket is a
/// shard sharing the cluster's connection and its one sharded PUB/SUB task.
struct Shard {
    conn: Conn,
    sub: mpsc::UnboundedSender<SubCmd>,
}

/// Broker and presence over Redis.
pub struct RedisEngine {
    shards: Vec<Shard>,
    keys: Keys,
    presence_ttl: Duration,
    publish: Script,
    history: Script,
    presence: presence::Scripts,
    user_status: user_status::Scripts,
    /// History this process wrote, held against the tenant's budgets (none: unbudgeted).
    ledger: Option<ledger::Ledger>,
    /// Channels read while nobody had published into them (see [`unpublished`]).
    unpublished: unpublished::Unpublished,
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

async fn within<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(unavailable("redis timeout")),
    }
}

impl RedisEngine {
    /// Connects to the deployment `engine.redis` names — standalone servers (one shard each),
    /// a Redis Cluster, or Sentinel-managed primaries — with the TLS options of its `tls`,
    /// and starts the PUB/SUB tasks, which stop with `stop`. A TLS failure (unknown CA,
    /// another name, a refused client certificate) fails here, naming TLS.
    pub async fn connect(
        config: &rotor_tenant_config::RedisEngine,
        events: Arc<dyn BrokerEvents>,
        stop: CancellationToken,
    ) -> Result<Self, EngineError> {
        let (shards, keys) = connect::shards(config, events, stop).await?;
        Ok(Self {
            shards,
            keys,
            presence_ttl: config.presence_ttl.get(),
            publish: Script::new(include_str!("lua/publish.lua")),
            history: Script::new(include_str!("lua/history.lua")),
            presence: presence::Scripts::new(),
            user_status: user_status::Scripts::new(),
            ledger: None,
            unpublished: Default::default(),
        })
    }

    /// Holds the history this engine writes against `budgets` (see [`ledger`]).
    pub fn with_history_budgets(mut self, budgets: Arc<crate::budgets::Budgets>) -> Self {
        self.ledger = Some(ledger::Ledger::new(budgets));
        self
    }

    /// Gives back the budgets of history that has expired in Redis (about once a minute).
    pub fn sweep_history_budgets(&self) {
        if let Some(ledger) = &self.ledger {
            ledger.sweep();
        }
    }

    /// A history read; a stream nobody published into keeps its epoch `empty_ttl` past it.
    async fn read_history(
        &self,
        channel: &str,
        filter: HistoryFilter,
        empty_ttl: Duration,
    ) -> Result<HistoryPage, EngineError> {
        let mut conn = self.conn(channel);
        let bound = filter
            .since
            .as_ref()
            .filter(|s| s.offset > 0 || filter.reverse)
            .map(|s| s.offset.to_string())
            .unwrap_or_default();
        let count = if filter.limit < 0 {
            "-1".to_owned()
        } else {
            filter.limit.to_string()
        };
        let reply: Value = within(
            self.history
                .key(self.keys.stream(channel))
                .key(self.keys.meta(channel))
                .arg(new_epoch())
                .arg(filter.meta_ttl.as_secs())
                .arg(if filter.limit == 0 { "0" } else { "1" })
                .arg(bound)
                .arg(count)
                .arg(if filter.reverse { "1" } else { "0" })
                .arg(empty_ttl.as_secs())
                .invoke_async(&mut conn),
        )
        .await?;
        let Value::Array(parts) = reply else {
            return Err(unavailable("unexpected history reply"));
        };
        let top: u64 = parts
            .first()
            .and_then(as_string)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let epoch = parts.get(1).and_then(as_string).unwrap_or_default();
        if top == 0 && self.ledger.is_some() {
            self.unpublished.note(channel);
        }
        if let Some(since) = &filter.since {
            if !since.epoch.is_empty() && since.epoch != epoch {
                return Err(EngineError::UnrecoverablePosition);
            }
        }
        let publications = parts.get(2).map(parse_entries).unwrap_or_default();
        Ok(HistoryPage {
            publications,
            top: StreamPosition { offset: top, epoch },
        })
    }

    /// Keeps the epochs of never-published streams this process's subscribers were given
    /// (see [`unpublished`]); run every [`unpublished::REFRESH_EVERY`].
    pub async fn refresh_unpublished(&self) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        let now = std::time::Instant::now();
        for channel in self.unpublished.due(now) {
            if !ledger.budgets().has_subscribers(&channel) {
                continue;
            }
            // Meta TTL 0: a stream published into since keeps the TTL its publish gave it.
            let top = HistoryFilter {
                limit: 0,
                ..Default::default()
            };
            match self
                .read_history(&channel, top, unpublished::KEPT_TTL)
                .await
            {
                Ok(page) if page.top.offset == 0 => self.unpublished.kept(&channel, now),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = ?e, "keeping an unpublished stream failed");
                    self.unpublished.note(&channel);
                }
            }
        }
    }

    /// [`Self::connect`] to standalone servers `addresses` (one shard each).
    pub async fn connect_standalone(
        addresses: &[String],
        tls: &rotor_tenant_config::RedisTls,
        prefix: &str,
        presence_ttl: Duration,
        events: Arc<dyn BrokerEvents>,
        stop: CancellationToken,
    ) -> Result<Self, EngineError> {
        let config = rotor_tenant_config::RedisEngine {
            address: rotor_tenant_config::AddressList(addresses.to_vec()),
            prefix: prefix.to_owned(),
            presence_ttl: rotor_tenant_config::ConfigDuration::from_millis(
                u64::try_from(presence_ttl.as_millis()).unwrap_or(u64::MAX),
            ),
            tls: tls.clone(),
            ..Default::default()
        };
        Self::connect(&config, events, stop).await
    }

    /// The shard (on a cluster: the bucket) of `channel` or of a user id.
    fn shard_of(&self, channel: &str) -> usize {
        shard::shard_index(channel, self.shards.len())
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[self.shard_of(channel)]
    }

    fn conn(&self, channel: &str) -> Conn {
        self.shard(channel).conn.clone()
    }

    /// The command that publishes on a topic: sharded on a cluster.
    fn publish_command(&self) -> &'static str {
        if self.keys.is_clustered() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Parses XRANGE entries `[[id, [field, value, …]], …]` into publications.
fn parse_entries(v: &Value) -> Vec<Publication> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else { continue };
        let (Some(id), Some(Value::Array(fields))) =
            (parts.first().and_then(as_string), parts.get(1))
        else {
            continue;
        };
        let offset: u64 = id
            .split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let data =
            fields
                .chunks(2)
                .find_map(|kv| match (kv.first().and_then(as_string), kv.get(1)) {
                    (Some(k), Some(Value::BulkString(b))) if k == "d" => Some(b.clone()),
                    _ => None,
                });
        if let Some(Ok(mut p)) = data.map(|d| Publication::decode(d.as_slice())) {
            p.offset = offset;
            out.push(p);
        }
    }
    out
}

#[async_trait]
impl Broker for RedisEngine {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let mut conn = self.conn(channel);
        if !opts.uses_history() {
            let body = publication.encode_to_vec();
            let mut payload = Vec::with_capacity(body.len() + 3);
            payload.extend_from_slice(b"p0::");
            payload.extend_from_slice(&body);
            let _: i64 = within(
                redis::cmd(self.publish_command())
                    .arg(self.keys.topic(channel))
                    .arg(payload)
                    .query_async(&mut conn),
            )
            .await?;
            return Ok(StreamPosition::default());
        }
        let idem = opts.idempotency_key.as_deref().unwrap_or("");
        let meta_ttl = opts.history_meta_ttl.max(opts.history_ttl).as_secs().max(1);
        let history_ttl = opts.history_ttl.as_secs().max(1);
        let size = crate::budgets::stored_size(&publication);
        let max_len = match &self.ledger {
            Some(l) => {
                l.admit(
                    channel,
                    size,
                    opts.history_size,
                    Duration::from_secs(history_ttl),
                    Duration::from_secs(meta_ttl),
                )?
                .max_len
            }
            None => opts.history_size,
        };
        let body = publication.encode_to_vec();
        let result: Result<Vec<String>, EngineError> = within(
            self.publish
                .key(self.keys.stream(channel))
                .key(self.keys.meta(channel))
                .key(self.keys.idempotency(channel, idem))
                .arg(body)
                .arg(max_len)
                .arg(history_ttl)
                .arg(meta_ttl)
                .arg(new_epoch())
                .arg(self.keys.topic(channel))
                .arg(if idem.is_empty() { "0" } else { "1" })
                .arg(IDEMPOTENCY_TTL_SECS)
                .arg(opts.version.to_string())
                .arg(&opts.version_epoch)
                .arg(if opts.delta { "1" } else { "0" })
                .arg(self.publish_command())
                .invoke_async(&mut conn),
        )
        .await;
        let result = match (result, &self.ledger) {
            (Err(e), Some(l)) => {
                l.undo(channel, size);
                return Err(e);
            }
            (r, _) => r?,
        };
        let offset = result.first().and_then(|s| s.parse().ok()).unwrap_or(0);
        let epoch = result.get(1).cloned().unwrap_or_default();
        Ok(StreamPosition { offset, epoch })
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        self.publish_control(channel, b'j', &info).await
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        self.publish_control(channel, b'l', &info).await
    }

    async fn history(
        &self,
        channel: &str,
        filter: HistoryFilter,
    ) -> Result<HistoryPage, EngineError> {
        self.read_history(channel, filter, unpublished::EMPTY_STREAM_TTL)
            .await
    }

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        if let Some(ledger) = &self.ledger {
            ledger.remove(channel);
        }
        let mut conn = self.conn(channel);
        let _: i64 = within(
            redis::cmd("DEL")
                .arg(self.keys.stream(channel))
                .query_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.shard(channel)
            .sub
            .send(SubCmd::Subscribe(self.keys.topic(channel), tx))
            .map_err(unavailable)?;
        match tokio::time::timeout(OP_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(unavailable(e)),
            _ => Err(unavailable("pub/sub subscribe timed out")),
        }
    }

    async fn broadcast_control(&self, payload: bytes::Bytes) -> Result<(), EngineError> {
        // Control goes through the first shard, whose subscriber always listens to it.
        let mut conn = self.shards[0].conn.clone();
        let mut message = Vec::with_capacity(payload.len() + 1);
        message.push(b'x');
        message.extend_from_slice(&payload);
        let _: i64 = within(
            redis::cmd(self.publish_command())
                .arg(self.keys.control_topic())
                .arg(message)
                .query_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.shard(channel)
            .sub
            .send(SubCmd::Unsubscribe(self.keys.topic(channel)))
            .map_err(unavailable)
    }
}

impl RedisEngine {
    async fn publish_control(
        &self,
        channel: &str,
        kind: u8,
        info: &ClientInfo,
    ) -> Result<(), EngineError> {
        let mut payload = vec![kind];
        info.encode(&mut payload).map_err(unavailable)?;
        let mut conn = self.conn(channel);
        let _: i64 = within(
            redis::cmd(self.publish_command())
                .arg(self.keys.topic(channel))
                .arg(payload)
                .query_async(&mut conn),
        )
        .await?;
        Ok(())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
