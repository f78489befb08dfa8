//! The Redis Streams consumer. Each stream has `num_workers` workers in the configured
//! consumer group (created at the stream's end, with the stream, when missing). A worker reads
//! new messages (`XREADGROUP … >`), runs each and acknowledges it (`XACK`) once done; a message
//! a worker read but never acknowledged — its process died, or the command keeps failing
//! internally — is taken over by any worker of the group after `visibility_timeout`
//! (`XAUTOCLAIM`), so nothing read is lost.
//!
//! A message is a command in one of three shapes: a `method` field with the request object in
//! `payload` (field names configurable); a `payload` holding `{"method": …, "payload": {…}}`;
//! or, in publication data mode, the data itself in `payload`, with the channels and the
//! publication's other fields (idempotency key, delta, version, tags) in fields of their own.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, RedisResult};
use rotor_tenant_config::{RedisPublicationDataMode, RedisStreamConsumer};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{dispatch, dispatch_command, pinned, Backoff, Outcome, PublicationFields};
use crate::node::Node;

/// Messages taken per read.
const READ_COUNT: usize = 16;
/// How long one read waits for new messages.
const BLOCK: Duration = Duration::from_secs(1);

/// Starts the workers of every stream.
pub(super) fn start(
    node: Arc<Node>,
    name: String,
    config: RedisStreamConsumer,
    stop: CancellationToken,
) {
    let config = Arc::new(config);
    for stream in &config.streams {
        for worker in 0..config.num_workers {
            tokio::spawn(consume(
                node.clone(),
                name.clone(),
                config.clone(),
                stream.clone(),
                format!("rotor-{}-{}-{worker}", std::process::id(), node.name),
                stop.clone(),
            ));
        }
    }
}

async fn connect(name: &str, config: &RedisStreamConsumer) -> RedisResult<MultiplexedConnection> {
    let settings = AsyncConnectionConfig::new()
        .set_connection_timeout(config.connect_timeout.0)
        .set_response_timeout(config.io_timeout.0 + BLOCK);
    pinned::redis_connection(config, settings)
        .await
        .map_err(|e| {
            if e.is_refusal() {
                pinned::log_failure(name, "redis_stream", &e);
            }
            match e {
                pinned::DialError::Redis(e) => e,
                other => redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "consumer connection",
                    other.to_string(),
                )),
            }
        })
}

/// Creates the group at the stream's end (and the stream) unless it exists.
async fn ensure_group(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> RedisResult<()> {
    match conn
        .xgroup_create_mkstream::<_, _, _, ()>(stream, group, "$")
        .await
    {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

async fn consume(
    node: Arc<Node>,
    name: String,
    config: Arc<RedisStreamConsumer>,
    stream: String,
    me: String,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        if stop.is_cancelled() {
            return;
        }
        let session = async {
            let mut conn = connect(&name, &config).await?;
            ensure_group(&mut conn, &stream, &config.consumer_group).await?;
            serve(
                &node,
                &name,
                &config,
                &stream,
                &me,
                &mut conn,
                &stop,
                &mut backoff,
            )
            .await
        };
        match session.await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(consumer = %name, %stream, error = %e, "stream consumer lost Redis; retrying");
                if !backoff.wait(&stop).await {
                    return;
                }
            }
        }
    }
}

/// Reads, runs and acknowledges until `stop` (`Ok`) or a Redis error.
#[allow(clippy::too_many_arguments)]
async fn serve(
    node: &Node,
    name: &str,
    config: &RedisStreamConsumer,
    stream: &str,
    me: &str,
    conn: &mut MultiplexedConnection,
    stop: &CancellationToken,
    backoff: &mut Backoff,
) -> RedisResult<()> {
    let group = config.consumer_group.as_str();
    let idle_ms = config.visibility_timeout.0.as_millis() as usize;
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        // Messages another worker read and never acknowledged, first.
        let claimed: redis::streams::StreamAutoClaimReply = conn
            .xautoclaim_options(
                stream,
                group,
                me,
                idle_ms,
                "0-0",
                StreamAutoClaimOptions::default().count(READ_COUNT),
            )
            .await?;
        let mut messages = claimed.claimed;
        if messages.is_empty() {
            let options = StreamReadOptions::default()
                .group(group, me)
                .count(READ_COUNT)
                .block(BLOCK.as_millis() as usize);
            let (keys, ids) = ([stream], [">"]);
            let read = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = conn.xread_options::<_, _, Option<StreamReadReply>>(&keys, &ids, &options) => r?,
            };
            messages = read
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect();
        }
        for message in messages {
            match run(node, name, config, &message).await {
                Outcome::Done => {
                    conn.xack::<_, _, _, ()>(stream, group, &[&message.id])
                        .await?;
                    backoff.reset();
                }
                Outcome::Retry => {
                    // Left pending: taken over again after the visibility timeout; until then
                    // this worker pauses rather than run the next ones out of order.
                    if !backoff.wait(stop).await {
                        return Ok(());
                    }
                    break;
                }
            }
        }
    }
}

fn field(message: &StreamId, key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    message
        .map
        .get(key)
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
}

/// Runs one message.
async fn run(node: &Node, name: &str, config: &RedisStreamConsumer, message: &StreamId) -> Outcome {
    let mode = &config.publication_data_mode;
    if mode.enabled {
        return match publication(mode, config, message) {
            Ok((method, request)) => {
                dispatch(node, name, method, request.to_string().as_bytes()).await
            }
            Err(why) => {
                tracing::error!(consumer = name, id = %message.id, why, "stream message skipped");
                Outcome::Done
            }
        };
    }
    let Some(payload) = field(message, &config.payload_value) else {
        tracing::error!(consumer = name, id = %message.id, field = %config.payload_value, "stream message without its payload field; skipped");
        return Outcome::Done;
    };
    if let Some(method) = field(message, &config.method_value) {
        return dispatch(node, name, &method, payload.as_bytes()).await;
    }
    // The whole command in the payload: {"method": …, "payload": {…}}.
    dispatch_command(node, name, payload.as_bytes()).await
}

/// The publish (one channel) or broadcast (several) a publication-data-mode message asks for.
fn publication(
    mode: &RedisPublicationDataMode,
    config: &RedisStreamConsumer,
    message: &StreamId,
) -> Result<(&'static str, Value), &'static str> {
    let data = field(message, &config.payload_value).ok_or("no payload field")?;
    let tags: Map<String, Value> = message
        .map
        .keys()
        .filter(|_| !mode.tags_value_prefix.is_empty())
        .filter_map(|k| {
            let tag = k.strip_prefix(mode.tags_value_prefix.as_str())?;
            let value = field(message, k)?;
            (!tag.is_empty()).then(|| (tag.to_owned(), Value::from(value)))
        })
        .collect();
    PublicationFields {
        channels: field(message, &mode.channels_value),
        idempotency_key: field(message, &mode.idempotency_key_value),
        delta: field(message, &mode.delta_value),
        version: field(message, &mode.version_value),
        version_epoch: field(message, &mode.version_epoch_value),
        tags,
    }
    .request(data.as_bytes())
}
