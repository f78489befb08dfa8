//! Asynchronous consumers (Centrifugo's `consumers`): server API commands the application
//! writes to a queue in its own transaction — a PostgreSQL outbox table ([`postgres`]), a
//! Redis stream ([`redis_stream`]) or a NATS JetStream stream ([`nats_jetstream`]) — run
//! through the same executor as `/api/{method}`.
//!
//! Processing is at least once. A command that fails with an internal error (code 100: the
//! engine was unreachable, say) is retried, in order, after a pause; any other error (a bad
//! channel, a malformed payload) is logged and the command counts as done, so one poisoned
//! message never stops a queue. A `broadcast` is retried whole if any of its channels failed
//! internally: give it an `idempotency_key` so channels that succeeded do not publish twice.
//! Read-only methods and `batch` are not run from a queue (logged, then done).
//!
//! The consumers follow the config: after every reload, the running set is compared with the
//! configured one and restarted if it differs. A hosted tenant's consumers connect only to
//! public addresses, each pinned for its connection ([`pinned`]).

mod nats_jetstream;
pub mod pinned;
mod postgres;
mod redis_stream;

use std::sync::Arc;
use std::time::Duration;

use rotor_tenant_config::Consumer;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Methods a consumer runs: those that change state.
const WRITE_METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "history_remove",
];

/// Pause before retrying after an internal error or a lost connection (doubled per failure).
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What became of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or refused for good): acknowledge it.
    Done,
    /// Failed internally: keep it and retry.
    Retry,
}

/// Runs one consumed command (`payload` is its request object).
pub async fn dispatch(node: &Node, consumer: &str, method: &str, payload: &[u8]) -> Outcome {
    if !WRITE_METHODS.contains(&method) {
        tracing::error!(
            consumer,
            method,
            "consumed command skipped: only publish, broadcast, subscribe, unsubscribe, disconnect, refresh and history_remove run from a queue"
        );
        return Outcome::Done;
    }
    let reply = match crate::api::call_internal(node, method, payload).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::error!(consumer, method, error = %e, "consumed command refused");
            return Outcome::Done;
        }
    };
    let outcome = outcome_of(&reply);
    match (outcome, reply.get("error")) {
        (Outcome::Retry, _) => {
            tracing::warn!(consumer, method, %reply, "consumed command failed internally; retrying")
        }
        (Outcome::Done, Some(error)) => {
            tracing::error!(consumer, method, %error, "consumed command failed; skipped")
        }
        (Outcome::Done, None) => {}
    }
    outcome
}

/// Whether a reply asks for the command to be retried: an internal error (code 100), of the
/// command or of any channel of a broadcast.
fn outcome_of(reply: &Value) -> Outcome {
    let internal = |error: &Value| error.get("code").and_then(Value::as_u64) == Some(100);
    let errors = reply.get("error").into_iter().chain(
        reply
            .pointer("/result/responses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("error")),
    );
    let mut retry = false;
    for error in errors {
        retry |= internal(error);
    }
    if retry {
        Outcome::Retry
    } else {
        Outcome::Done
    }
}

/// Runs a command whose payload is `{"method": …, "payload": {…}}` (a queue message without a
/// method of its own).
pub async fn dispatch_command(node: &Node, consumer: &str, message: &[u8]) -> Outcome {
    let command: Value = match serde_json::from_slice(message) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(consumer, error = %e, "consumed message is not a JSON command; skipped");
            return Outcome::Done;
        }
    };
    let method = command.get("method").and_then(Value::as_str).unwrap_or("");
    let request = command.get("payload").cloned().unwrap_or_else(|| json!({}));
    dispatch(node, consumer, method, request.to_string().as_bytes()).await
}

/// What a publication-data-mode message says besides its data (each from a header or field).
#[derive(Debug, Default)]
pub(crate) struct PublicationFields {
    /// Comma-separated channels.
    pub channels: Option<String>,
    pub idempotency_key: Option<String>,
    pub delta: Option<String>,
    pub version: Option<String>,
    pub version_epoch: Option<String>,
    pub tags: Map<String, Value>,
}

impl PublicationFields {
    /// The publish (one channel) or broadcast (several) the message asks for.
    pub(crate) fn request(self, data: &[u8]) -> Result<(&'static str, Value), &'static str> {
        let channels: Vec<&str> = self
            .channels
            .as_deref()
            .ok_or("no channels")?
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if channels.is_empty() {
            return Err("no channels");
        }
        let data: Value = serde_json::from_slice(data).map_err(|_| "the payload is not JSON")?;
        let mut request = Map::new();
        request.insert("data".into(), data);
        if let Some(key) = self.idempotency_key {
            request.insert("idempotency_key".into(), key.into());
        }
        if self.delta.is_some_and(|v| v == "true") {
            request.insert("delta".into(), true.into());
        }
        if let Some(version) = self.version {
            let version: u64 = version.parse().map_err(|_| "the version is not a number")?;
            request.insert("version".into(), version.into());
        }
        if let Some(epoch) = self.version_epoch {
            request.insert("version_epoch".into(), epoch.into());
        }
        if !self.tags.is_empty() {
            request.insert("tags".into(), Value::Object(self.tags));
        }
        if let [channel] = channels.as_slice() {
            request.insert("channel".into(), (*channel).into());
            Ok(("publish", Value::Object(request)))
        } else {
            request.insert("channels".into(), json!(channels));
            Ok(("broadcast", Value::Object(request)))
        }
    }
}

/// A pause that doubles per consecutive failure.
#[derive(Debug, Default)]
pub(crate) struct Backoff(u32);

impl Backoff {
    pub(crate) fn reset(&mut self) {
        self.0 = 0;
    }

    /// Waits the next pause, or until `stop`; `false` when stopped.
    pub(crate) async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let pause = (RETRY_FIRST * 2u32.saturating_pow(self.0.min(10))).min(RETRY_MAX);
        self.0 = self.0.saturating_add(1);
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(pause) => true,
        }
    }
}

/// A kind of queue consumers read. Each broker implements it (and nothing else of this module
/// knows the kinds): [`Source::start`] runs one consumer until `stop`, handing every command it
/// takes to [`dispatch`] or [`dispatch_command`] and acknowledging it only when that says
/// [`Outcome::Done`]. Another broker (Kafka, Google Pub/Sub, …) is one more implementation, its
/// options one more field of [`Consumer`].
pub trait Source {
    /// The consumer's options of this kind.
    type Config: Clone + Send + 'static;

    /// The options of this kind in `consumer`, when it is of this kind.
    fn config(consumer: &Consumer) -> Option<&Self::Config>;

    /// Starts consumer `name` with `config` on its own tasks.
    fn start(node: Arc<Node>, name: String, config: Self::Config, stop: CancellationToken);
}

/// PostgreSQL outbox tables ([`postgres`]).
pub struct Outbox;
/// Redis streams read through a consumer group ([`redis_stream`]).
pub struct RedisStream;
/// NATS JetStream durable pull consumers ([`nats_jetstream`]).
pub struct JetStream;

impl Source for Outbox {
    type Config = rotor_tenant_config::PostgresConsumer;
    fn config(consumer: &Consumer) -> Option<&Self::Config> {
        consumer.postgresql.as_ref()
    }
    fn start(node: Arc<Node>, name: String, config: Self::Config, stop: CancellationToken) {
        postgres::start(node, name, config, stop);
    }
}

impl Source for RedisStream {
    type Config = rotor_tenant_config::RedisStreamConsumer;
    fn config(consumer: &Consumer) -> Option<&Self::Config> {
        consumer.redis_stream.as_ref()
    }
    fn start(node: Arc<Node>, name: String, config: Self::Config, stop: CancellationToken) {
        redis_stream::start(node, name, config, stop);
    }
}

impl Source for JetStream {
    type Config = rotor_tenant_config::NatsJetStreamConsumer;
    fn config(consumer: &Consumer) -> Option<&Self::Config> {
        consumer.nats_jetstream.as_ref()
    }
    fn start(node: Arc<Node>, name: String, config: Self::Config, stop: CancellationToken) {
        nats_jetstream::start(node, name, config, stop);
    }
}

/// Starts `consumer` if it is of kind `S`.
fn launch<S: Source>(node: &Arc<Node>, consumer: &Consumer, stop: &CancellationToken) {
    if let Some(config) = S::config(consumer) {
        S::start(
            node.clone(),
            consumer.name.clone(),
            config.clone(),
            stop.child_token(),
        );
    }
}

/// Starts the enabled consumers of `configs`; they stop when `stop` is cancelled.
fn start(node: &Arc<Node>, configs: &[Consumer], stop: &CancellationToken) {
    for c in configs.iter().filter(|c| c.enabled) {
        launch::<Outbox>(node, c, stop);
        launch::<RedisStream>(node, c, stop);
        launch::<JetStream>(node, c, stop);
        tracing::info!(consumer = %c.name, kind = %c.kind, "consumer started");
    }
}

/// Keeps the running consumers in step with the node's config until `stop`.
pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let mut running: Vec<Consumer> = Vec::new();
    let mut current = stop.child_token();
    loop {
        let changed = node.config.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let wanted = node.config.load().tenant.consumers.clone();
        if wanted != running {
            current.cancel();
            current = stop.child_token();
            start(&node, &wanted, &current);
            running = wanted;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_internal_errors_are_retried() {
        assert_eq!(outcome_of(&json!({"result": {}})), Outcome::Done);
        assert_eq!(
            outcome_of(&json!({"error": {"code": 107, "message": "bad request"}})),
            Outcome::Done
        );
        assert_eq!(
            outcome_of(&json!({"error": {"code": 100, "message": "internal"}})),
            Outcome::Retry
        );
        let broadcast = |code: u64| json!({"result": {"responses": [{"result": {}}, {"error": {"code": code}}]}});
        assert_eq!(outcome_of(&broadcast(102)), Outcome::Done);
        assert_eq!(outcome_of(&broadcast(100)), Outcome::Retry);
    }
}
