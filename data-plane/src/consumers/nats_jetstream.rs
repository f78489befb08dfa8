//! The NATS JetStream consumer: a durable pull consumer (explicit acks, created when missing)
//! on a stream the operator made. Each message is run and acknowledged; one that fails
//! internally is negatively acknowledged with a delay, so JetStream redelivers it, and one
//! never acknowledged (the process died) is redelivered after the consumer's ack wait. Order
//! holds only with one consuming process, as JetStream delivers.
//!
//! A message is a command: with the method in the `method_header` header the payload is the
//! request object; without it the payload is `{"method": …, "payload": {…}}`. In publication
//! data mode the payload is the data and headers say where it goes.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use rotor_tenant_config::NatsJetStreamConsumer;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{dispatch, dispatch_command, pinned, Backoff, Outcome, PublicationFields};
use crate::node::Node;

/// How long JetStream waits for an ack before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Delay before a message that failed internally is redelivered.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Starts the consumer.
pub(super) fn start(
    node: Arc<Node>,
    name: String,
    config: NatsJetStreamConsumer,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        loop {
            let session = tokio::select! {
                _ = stop.cancelled() => return,
                r = consume(&node, &name, &config, &stop) => r,
            };
            match session {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(consumer = %name, error = %e, "NATS JetStream consumer lost its server; retrying");
                    if !backoff.wait(&stop).await {
                        return;
                    }
                }
            }
        }
    });
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn connect(name: &str, config: &NatsJetStreamConsumer) -> Result<async_nats::Client, Error> {
    let url = pinned::nats_url(config).await.inspect_err(|e| {
        if e.is_refusal() {
            pinned::log_failure(name, "nats_jetstream", e);
        }
    })?;
    let mut options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
    if !config.credentials_file.is_empty() {
        options = async_nats::ConnectOptions::with_credentials_file(&config.credentials_file)
            .await?
            .connection_timeout(Duration::from_secs(5));
    } else if !config.username.is_empty() {
        options = options.user_and_password(config.username.clone(), config.password.clone());
    } else if !config.token.is_empty() {
        options = options.token(config.token.clone());
    }
    if pinned::checked() {
        // A server's INFO may advertise other servers: a checked client stays on the checked one.
        options = options.ignore_discovered_servers();
    }
    Ok(options.connect(url.as_str()).await?)
}

async fn consume(
    node: &Node,
    name: &str,
    config: &NatsJetStreamConsumer,
    stop: &CancellationToken,
) -> Result<(), Error> {
    let client = connect(name, config).await?;
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(&config.stream_name).await?;
    let consumer_config = pull::Config {
        durable_name: Some(config.durable_consumer_name.clone()),
        deliver_policy: match config.deliver_policy.as_str() {
            "all" => DeliverPolicy::All,
            _ => DeliverPolicy::New,
        },
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: i64::from(config.max_ack_pending),
        filter_subjects: config.subjects.clone(),
        ..Default::default()
    };
    let consumer = stream
        .get_or_create_consumer(&config.durable_consumer_name, consumer_config)
        .await?;
    let mut messages = consumer.messages().await?;
    tracing::info!(consumer = name, stream = %config.stream_name, "NATS JetStream consumer attached");
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = messages.next() => m,
        };
        let Some(message) = next else {
            return Err("the message stream ended".into());
        };
        let message = message?;
        match run(node, name, config, &message).await {
            Outcome::Done => message.ack().await?,
            Outcome::Retry => message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await?,
        }
    }
}

fn header(message: &async_nats::jetstream::Message, name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    message
        .headers
        .as_ref()?
        .get(name)
        .map(|v| v.as_str().to_owned())
}

async fn run(
    node: &Node,
    name: &str,
    config: &NatsJetStreamConsumer,
    message: &async_nats::jetstream::Message,
) -> Outcome {
    let payload = &message.payload;
    if config.publication_data_mode.enabled {
        return match publication(config, message) {
            Ok((method, request)) => {
                dispatch(node, name, method, request.to_string().as_bytes()).await
            }
            Err(why) => {
                tracing::error!(consumer = name, subject = %message.subject, why, "NATS message skipped");
                Outcome::Done
            }
        };
    }
    if let Some(method) = header(message, &config.method_header) {
        return dispatch(node, name, &method, payload).await;
    }
    dispatch_command(node, name, payload).await
}

/// The publish (one channel) or broadcast (several) a publication-data-mode message asks for.
fn publication(
    config: &NatsJetStreamConsumer,
    message: &async_nats::jetstream::Message,
) -> Result<(&'static str, Value), &'static str> {
    let mode = &config.publication_data_mode;
    let mut tags = Map::new();
    if let (Some(headers), false) = (message.headers.as_ref(), mode.tags_header_prefix.is_empty()) {
        for (key, values) in headers.iter() {
            let key: &str = key.as_ref();
            if let (Some(tag), Some(value)) = (
                key.strip_prefix(mode.tags_header_prefix.as_str()),
                values.first(),
            ) {
                if !tag.is_empty() {
                    tags.insert(tag.to_owned(), value.as_str().into());
                }
            }
        }
    }
    PublicationFields {
        channels: header(message, &mode.channels_header),
        idempotency_key: header(message, &mode.idempotency_key_header),
        delta: header(message, &mode.delta_header),
        version: header(message, &mode.version_header),
        version_epoch: header(message, &mode.version_epoch_header),
        tags,
    }
    .request(&message.payload)
}
