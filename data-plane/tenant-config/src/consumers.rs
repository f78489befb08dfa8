//! `consumers`: asynchronous consumers of server API commands, as Centrifugo v6 configures
//! them. Each enabled consumer reads commands (`publish`, `broadcast`, `unsubscribe`,
//! `disconnect`, …) from a queue the application writes to in its own transaction, and runs
//! them through the same executor as the HTTP API. Rotor implements the PostgreSQL outbox
//! table, Redis Streams and NATS JetStream; the other queue kinds Centrifugo has are refused at
//! load with the reason.

use serde::{Deserialize, Serialize};

use crate::duration::ConfigDuration;
use crate::load::ConfigError;
use crate::redis_tls::RedisTls;
use crate::sections::AddressList;

/// One entry of `consumers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Consumer {
    /// Only enabled consumers run.
    pub enabled: bool,
    /// Unique, `[a-zA-Z0-9_]{2,}`: named in logs and metrics.
    pub name: String,
    /// `postgresql`, `redis_stream` or `nats_jetstream`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<PostgresConsumer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_stream: Option<RedisStreamConsumer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_jetstream: Option<NatsJetStreamConsumer>,
}

/// `consumers[].nats_jetstream`: a durable pull consumer on a stream the operator created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsJetStreamConsumer {
    pub url: String,
    /// A NATS credentials file (JWT and nkey seed); overrides the others.
    pub credentials_file: String,
    pub username: String,
    pub password: String,
    pub token: String,
    /// The stream to consume (never created by Rotor).
    pub stream_name: String,
    /// Subjects of the stream to take (all when empty).
    pub subjects: Vec<String>,
    /// The durable consumer (created when missing).
    pub durable_consumer_name: String,
    /// `new` (default) or `all`: where a new durable consumer starts.
    pub deliver_policy: String,
    pub max_ack_pending: u32,
    /// The header naming the method; without it the payload is `{"method": …, "payload": …}`.
    pub method_header: String,
    pub publication_data_mode: NatsPublicationDataMode,
}

impl Default for NatsJetStreamConsumer {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: String::new(),
            username: String::new(),
            password: String::new(),
            token: String::new(),
            stream_name: String::new(),
            subjects: Vec::new(),
            durable_consumer_name: String::new(),
            deliver_policy: "new".into(),
            max_ack_pending: 100,
            method_header: "centrifugo-method".into(),
            publication_data_mode: NatsPublicationDataMode::default(),
        }
    }
}

/// `consumers[].nats_jetstream.publication_data_mode`: the payload is publication data, the
/// headers say where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsPublicationDataMode {
    pub enabled: bool,
    pub channels_header: String,
    pub idempotency_key_header: String,
    pub delta_header: String,
    pub version_header: String,
    pub version_epoch_header: String,
    pub tags_header_prefix: String,
}

impl Default for NatsPublicationDataMode {
    fn default() -> Self {
        Self {
            enabled: false,
            channels_header: "centrifugo-channels".into(),
            idempotency_key_header: "centrifugo-idempotency-key".into(),
            delta_header: "centrifugo-delta".into(),
            version_header: "centrifugo-version".into(),
            version_epoch_header: "centrifugo-version-epoch".into(),
            tags_header_prefix: "centrifugo-tag-".into(),
        }
    }
}

/// `consumers[].postgresql`: an outbox table (`id BIGSERIAL, method TEXT, payload JSONB,
/// partition INTEGER, created_at TIMESTAMPTZ`), read in id order per partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresConsumer {
    /// `postgresql://user:password@host:5432/db`.
    pub dsn: String,
    /// The outbox table, optionally schema-qualified.
    pub outbox_table_name: String,
    /// Partitions `0..num_partitions`, each consumed in order by its own worker.
    pub num_partitions: u32,
    /// Rows taken per query.
    pub partition_select_limit: u32,
    /// How often an idle partition is polled.
    pub partition_poll_interval: ConfigDuration,
    /// A LISTEN/NOTIFY channel whose payload is the partition that has new rows.
    pub partition_notification_channel: String,
    /// Skip a partition another consumer holds instead of waiting for its lock.
    pub use_try_lock: bool,
}

impl Default for PostgresConsumer {
    fn default() -> Self {
        Self {
            dsn: String::new(),
            outbox_table_name: String::new(),
            num_partitions: 1,
            partition_select_limit: 100,
            partition_poll_interval: ConfigDuration::from_millis(300),
            partition_notification_channel: String::new(),
            use_try_lock: false,
        }
    }
}

/// `consumers[].redis_stream`: streams read through a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisStreamConsumer {
    /// The Redis server (one).
    pub address: AddressList,
    pub connect_timeout: ConfigDuration,
    pub io_timeout: ConfigDuration,
    /// Streams to consume.
    pub streams: Vec<String>,
    /// The consumer group (created at the stream's end when missing).
    pub consumer_group: String,
    /// A message read but not acknowledged for this long is taken over by another worker.
    pub visibility_timeout: ConfigDuration,
    /// Workers per stream.
    pub num_workers: u32,
    /// The message field holding the command (or, in publication data mode, the data).
    pub payload_value: String,
    /// The message field holding the method.
    pub method_value: String,
    pub publication_data_mode: RedisPublicationDataMode,
    /// TLS to the server (`rediss://` in `address` is TLS too).
    pub tls: RedisTls,
}

impl Default for RedisStreamConsumer {
    fn default() -> Self {
        Self {
            address: AddressList(vec!["redis://127.0.0.1:6379".into()]),
            connect_timeout: ConfigDuration::from_secs(1),
            io_timeout: ConfigDuration::from_secs(4),
            streams: Vec::new(),
            consumer_group: String::new(),
            visibility_timeout: ConfigDuration::from_secs(30),
            num_workers: 1,
            payload_value: "payload".into(),
            method_value: "method".into(),
            publication_data_mode: RedisPublicationDataMode::default(),
            tls: RedisTls::default(),
        }
    }
}

/// `consumers[].redis_stream.publication_data_mode`: messages carry publication data, and
/// their other fields say where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisPublicationDataMode {
    pub enabled: bool,
    /// Field with the comma-separated channels.
    pub channels_value: String,
    pub idempotency_key_value: String,
    pub delta_value: String,
    pub version_value: String,
    pub version_epoch_value: String,
    /// Fields starting with this become publication tags (the rest of the name is the tag).
    pub tags_value_prefix: String,
}

impl Default for RedisPublicationDataMode {
    fn default() -> Self {
        Self {
            enabled: false,
            channels_value: "centrifugo-channels".into(),
            idempotency_key_value: "centrifugo-idempotency-key".into(),
            delta_value: "centrifugo-delta".into(),
            version_value: "centrifugo-version".into(),
            version_epoch_value: "centrifugo-version-epoch".into(),
            tags_value_prefix: "centrifugo-tag-".into(),
        }
    }
}

/// Consumer kinds Centrifugo has and Rotor does not, with the reason (their sections are
/// refused with it too, see [`crate::REFUSED_OPTIONS`]).
pub(crate) const REFUSED_KINDS: &[(&str, &str)] = &[
    ("kafka", "Kafka consumers are not supported (there is no Kafka broker to test one against here): use the PostgreSQL outbox, Redis Streams or NATS JetStream consumer"),
    ("google_pub_sub", "Google Cloud Pub/Sub consumers are not supported: use the PostgreSQL outbox, Redis Streams or NATS JetStream consumer"),
    ("aws_sqs", "AWS SQS consumers are not supported: use the PostgreSQL outbox, Redis Streams or NATS JetStream consumer"),
    ("azure_service_bus", "Azure Service Bus consumers are not supported: use the PostgreSQL outbox, Redis Streams or NATS JetStream consumer"),
];

fn valid_name(name: &str) -> bool {
    name.len() >= 2 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A plain SQL identifier, optionally schema-qualified (the table name goes into queries).
fn valid_table(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.as_bytes()[0].is_ascii_digit()
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// Checks every consumer, enabled or not (a disabled one is enabled by editing one word).
pub(crate) fn validate(consumers: &[Consumer]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, c) in consumers.iter().enumerate() {
        let at = |field: &str| format!("consumers[{i}].{field}");
        if !valid_name(&c.name) {
            return Err(ConfigError::invalid(
                at("name"),
                "must be at least two of a-z, A-Z, 0-9 and _",
            ));
        }
        if !names.insert(c.name.as_str()) {
            return Err(ConfigError::invalid(
                at("name"),
                format!("{} names two consumers", c.name),
            ));
        }
        if let Some((_, reason)) = REFUSED_KINDS.iter().find(|(k, _)| *k == c.kind) {
            return Err(ConfigError::Unsupported {
                path: at("type"),
                reason: (*reason).to_owned(),
            });
        }
        let sections = [
            c.postgresql.is_some(),
            c.redis_stream.is_some(),
            c.nats_jetstream.is_some(),
        ];
        let only = |i: usize| sections.iter().enumerate().all(|(j, on)| *on == (i == j));
        match (
            c.kind.as_str(),
            &c.postgresql,
            &c.redis_stream,
            &c.nats_jetstream,
        ) {
            ("postgresql", Some(pg), _, _) if only(0) => validate_postgres(&at, pg)?,
            ("redis_stream", _, Some(rs), _) if only(1) => validate_redis(&at, rs)?,
            ("nats_jetstream", _, _, Some(nats)) if only(2) => validate_nats(&at, nats)?,
            ("postgresql", ..) => {
                return Err(ConfigError::invalid(
                    at("postgresql"),
                    "a postgresql consumer needs a `postgresql` section and no other",
                ))
            }
            ("redis_stream", ..) => {
                return Err(ConfigError::invalid(
                    at("redis_stream"),
                    "a redis_stream consumer needs a `redis_stream` section and no other",
                ))
            }
            ("nats_jetstream", ..) => {
                return Err(ConfigError::invalid(
                    at("nats_jetstream"),
                    "a nats_jetstream consumer needs a `nats_jetstream` section and no other",
                ))
            }
            (other, ..) => {
                return Err(ConfigError::invalid(
                    at("type"),
                    format!(
                    "unknown consumer type {other:?}: postgresql, redis_stream or nats_jetstream"
                ),
                ))
            }
        }
    }
    Ok(())
}

fn validate_postgres(
    at: &dyn Fn(&str) -> String,
    pg: &PostgresConsumer,
) -> Result<(), ConfigError> {
    if !(pg.dsn.starts_with("postgres://") || pg.dsn.starts_with("postgresql://")) {
        return Err(ConfigError::invalid(
            at("postgresql.dsn"),
            "must be a postgresql:// URL",
        ));
    }
    if !valid_table(&pg.outbox_table_name) {
        return Err(ConfigError::invalid(
            at("postgresql.outbox_table_name"),
            "must be a table name ([schema.]name of letters, digits and _)",
        ));
    }
    if !(1..=1024).contains(&pg.num_partitions) {
        return Err(ConfigError::invalid(
            at("postgresql.num_partitions"),
            "must be 1 to 1024",
        ));
    }
    if !(1..=10_000).contains(&pg.partition_select_limit) {
        return Err(ConfigError::invalid(
            at("postgresql.partition_select_limit"),
            "must be 1 to 10000",
        ));
    }
    if pg.partition_poll_interval.is_zero() {
        return Err(ConfigError::invalid(
            at("postgresql.partition_poll_interval"),
            "must be positive",
        ));
    }
    Ok(())
}

fn validate_redis(
    at: &dyn Fn(&str) -> String,
    rs: &RedisStreamConsumer,
) -> Result<(), ConfigError> {
    rs.tls.validate(&at("redis_stream.tls"), &rs.address.0)?;
    if rs.address.0.len() != 1 {
        return Err(ConfigError::Unsupported {
            path: at("redis_stream.address"),
            reason: "one Redis server per stream consumer: configure a consumer per shard".into(),
        });
    }
    let address = &rs.address.0[0];
    if !(address.starts_with("redis://") || address.starts_with("rediss://")) {
        return Err(ConfigError::invalid(
            at("redis_stream.address"),
            "must be a redis:// or rediss:// URL",
        ));
    }
    if rs.streams.is_empty() || rs.streams.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            at("redis_stream.streams"),
            "name at least one stream",
        ));
    }
    if rs.consumer_group.is_empty() {
        return Err(ConfigError::invalid(
            at("redis_stream.consumer_group"),
            "is required",
        ));
    }
    if !(1..=64).contains(&rs.num_workers) {
        return Err(ConfigError::invalid(
            at("redis_stream.num_workers"),
            "must be 1 to 64",
        ));
    }
    if rs.visibility_timeout.is_zero() {
        return Err(ConfigError::invalid(
            at("redis_stream.visibility_timeout"),
            "must be positive",
        ));
    }
    let mode = &rs.publication_data_mode;
    if mode.enabled && mode.channels_value.is_empty() {
        return Err(ConfigError::invalid(
            at("redis_stream.publication_data_mode.channels_value"),
            "is required in publication data mode",
        ));
    }
    if !mode.enabled && (rs.payload_value.is_empty() || rs.method_value.is_empty()) {
        return Err(ConfigError::invalid(
            at("redis_stream.payload_value"),
            "payload_value and method_value are required",
        ));
    }
    Ok(())
}

fn validate_nats(
    at: &dyn Fn(&str) -> String,
    nats: &NatsJetStreamConsumer,
) -> Result<(), ConfigError> {
    if !(nats.url.starts_with("nats://") || nats.url.starts_with("tls://")) {
        return Err(ConfigError::invalid(
            at("nats_jetstream.url"),
            "must be a nats:// URL",
        ));
    }
    if nats.stream_name.is_empty() {
        return Err(ConfigError::invalid(
            at("nats_jetstream.stream_name"),
            "is required (Rotor consumes a stream; it does not create one)",
        ));
    }
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !name_ok(&nats.durable_consumer_name) {
        return Err(ConfigError::invalid(
            at("nats_jetstream.durable_consumer_name"),
            "is required: letters, digits, - and _",
        ));
    }
    if !matches!(nats.deliver_policy.as_str(), "new" | "all") {
        return Err(ConfigError::invalid(
            at("nats_jetstream.deliver_policy"),
            "must be new or all",
        ));
    }
    if nats.max_ack_pending == 0 {
        return Err(ConfigError::invalid(
            at("nats_jetstream.max_ack_pending"),
            "must be positive",
        ));
    }
    if nats.publication_data_mode.enabled && nats.publication_data_mode.channels_header.is_empty() {
        return Err(ConfigError::invalid(
            at("nats_jetstream.publication_data_mode.channels_header"),
            "is required in publication data mode",
        ));
    }
    Ok(())
}
