//! The Redis engine: history, stream positions, presence and fan-out shared by every process
//! of one tenant. A publish is one Lua call (idempotency, epoch, version check, offset, XADD
//! with MAXLEN, retention and PUBLISH together) — one round trip; each process keeps one PUB/SUB connection
//! per Redis shard for all its channels. Channels are spread over the shards of
//! `engine.redis.address` by Jump consistent hash, as Centrifugo does ([`shard`]); the node
//! control topic lives on the first shard.
//!
//! History here is Redis's memory, bounded by Redis and the channel's `history_size`: the
//! tenant's history byte budgets (`rotor.max_history_bytes`, `max_channel_history_bytes`) and
//! streams as channels for `rotor.max_channels` apply to the memory engine only. Channels
//! with local subscribers and this process's presence entries are still budgeted
//! ([`crate::budgets`]), in the hub and the session.

mod keys;
mod presence;
pub mod shard;
mod subscriber;
pub mod tls;
pub mod user_status;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message as _;
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    new_epoch, Broker, BrokerEvents, EngineError, HistoryFilter, HistoryPage, PublishOptions,
};
use crate::protocol::{ClientInfo, Publication, StreamPosition};
pub use keys::Keys;
use subscriber::SubCmd;

const OP_TIMEOUT: Duration = Duration::from_secs(3);
const IDEMPOTENCY_TTL_SECS: u64 = 300;

struct Shard {
    conn: ConnectionManager,
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
    /// Connects to every address (one shard each, with the TLS options of `tls`) and starts
    /// their PUB/SUB tasks, which stop with `stop`. A TLS failure (unknown CA, another name,
    /// a refused client certificate) fails here, naming TLS.
    pub async fn connect(
        addresses: &[String],
        tls: &rotor_tenant_config::RedisTls,
        prefix: &str,
        presence_ttl: Duration,
        events: Arc<dyn BrokerEvents>,
        stop: CancellationToken,
    ) -> Result<Self, EngineError> {
        if addresses.is_empty() {
            return Err(unavailable("no redis address configured"));
        }
        let keys = Keys::new(prefix);
        let mut shards = Vec::with_capacity(addresses.len());
        for (i, address) in addresses.iter().enumerate() {
            let client = tls::client(address, tls, "engine.redis.tls").map_err(unavailable)?;
            let over_tls = tls::uses_tls(&client);
            let shown = tls::shown_address(&client);
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_secs(2))
                .set_response_timeout(Duration::from_secs(2))
                .set_number_of_retries(2)
                // Without a cap the retry delays are 1 s then 60 s (redis-rs's factor 100 on
                // backon's 1 s minimum): after an outage of more than a second, every command
                // waited out that minute and timed out although Redis was back.
                .set_max_delay(500);
            // A PING proves the connection (with TLS, a server that wants a client
            // certificate may only close it after the handshake).
            let conn = async {
                let mut conn =
                    within(ConnectionManager::new_with_config(client.clone(), config)).await?;
                let _: String = within(redis::cmd("PING").query_async(&mut conn)).await?;
                Ok::<_, EngineError>(conn)
            }
            .await
            .map_err(|e| match e {
                EngineError::Unavailable(reason) if over_tls => EngineError::Unavailable(format!(
                    "redis {shown}: TLS connection failed: {reason}"
                )),
                EngineError::Unavailable(reason) => {
                    EngineError::Unavailable(format!("redis {shown}: {reason}"))
                }
                other => other,
            })?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(subscriber::run(
                client,
                keys.clone(),
                events.clone(),
                rx,
                stop.clone(),
            ));
            if i == 0 {
                // Every node listens to the tenant's control topic on the first shard.
                let (ack_tx, ack_rx) = oneshot::channel();
                tx.send(SubCmd::Subscribe(keys.control_topic(), ack_tx))
                    .map_err(unavailable)?;
                match tokio::time::timeout(OP_TIMEOUT, ack_rx).await {
                    Ok(Ok(Ok(()))) => {}
                    _ => return Err(unavailable("cannot subscribe to the control topic")),
                }
            }
            shards.push(Shard { conn, sub: tx });
        }
        Ok(Self {
            shards,
            keys,
            presence_ttl,
            publish: Script::new(include_str!("lua/publish.lua")),
            history: Script::new(include_str!("lua/history.lua")),
            presence: presence::Scripts::new(),
            user_status: user_status::Scripts::new(),
        })
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[shard::shard_index(channel, self.shards.len())]
    }

    fn conn(&self, channel: &str) -> ConnectionManager {
        self.shard(channel).conn.clone()
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
        let body = publication.encode_to_vec();
        let mut conn = self.conn(channel);
        if !opts.uses_history() {
            let mut payload = Vec::with_capacity(body.len() + 3);
            payload.extend_from_slice(b"p0::");
            payload.extend_from_slice(&body);
            let _: i64 = within(
                redis::cmd("PUBLISH")
                    .arg(self.keys.topic(channel))
                    .arg(payload)
                    .query_async(&mut conn),
            )
            .await?;
            return Ok(StreamPosition::default());
        }
        let idem = opts.idempotency_key.as_deref().unwrap_or("");
        let meta_ttl = opts.history_meta_ttl.max(opts.history_ttl).as_secs().max(1);
        let result: Vec<String> = within(
            self.publish
                .key(self.keys.stream(channel))
                .key(self.keys.meta(channel))
                .key(self.keys.idempotency(channel, idem))
                .arg(body)
                .arg(opts.history_size)
                .arg(opts.history_ttl.as_secs().max(1))
                .arg(meta_ttl)
                .arg(new_epoch())
                .arg(self.keys.topic(channel))
                .arg(if idem.is_empty() { "0" } else { "1" })
                .arg(IDEMPOTENCY_TTL_SECS)
                .arg(opts.version.to_string())
                .arg(&opts.version_epoch)
                .arg(if opts.delta { "1" } else { "0" })
                .invoke_async(&mut conn),
        )
        .await?;
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

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
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
            redis::cmd("PUBLISH")
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
            redis::cmd("PUBLISH")
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
