//! The configuration a Rotor data plane accepts: the contract between the two planes.
//!
//! Option names are Centrifugo v6's (`client.token.hmac_secret_key`, `channel.namespaces`, …) so
//! an existing Centrifugo config file works unchanged for everything Rotor supports. The data
//! plane owns this crate; the control plane renders the same [`TenantConfig`] from Postgres.
//! Loading is: defaults → file (JSON, TOML or YAML) → environment (`ROTOR_…`, `CENTRIFUGO_…`),
//! then one validation pass that names the path of the first bad field. An option Rotor does not
//! implement is refused, never ignored.

mod broker;
mod channel;
pub mod consumer_egress;
mod consumers;
mod duration;
pub mod egress;
pub mod fdlimit;
mod grpc_api;
mod grpc_proxy;
pub mod jwks_template;
pub mod keep_alive;
pub mod listen;
mod load;
pub mod prefixed;
mod proxy;
pub mod redis_deployment;
mod redis_tls;
mod refuse;
pub mod secret_eq;
mod sections;
mod stream_proxy;
#[cfg(test)]
mod test_support;
mod user_status;
mod validate;
mod webhooks;

pub use broker::{BrokerSection, NatsBroker};
pub use channel::{
    ChannelOptions, DeltaType, Namespace, PublicationDataFormat, RecoveryMode, CHANNEL_OPTION_DOCS,
    CHANNEL_OPTION_NAMES, REFUSED_CHANNEL_OPTIONS,
};
pub use consumers::{
    Consumer, NatsJetStreamConsumer, NatsPublicationDataMode, PostgresConsumer,
    RedisPublicationDataMode, RedisStreamConsumer,
};
pub use duration::{format_go_duration, parse_go_duration, ConfigDuration};
pub use grpc_api::{
    GrpcApi, GrpcTls, DEFAULT_GRPC_API_PORT, DEFAULT_MAX_RECEIVE_MESSAGE_SIZE,
    MAX_RECEIVE_MESSAGE_SIZE_LIMIT,
};
pub use load::{ConfigError, Format, Loaded};
pub use proxy::*;
pub use redis_tls::{RedisTls, TLS_FILE_OPTIONS};
pub use refuse::{compatibility_markdown, NOTED_OPTIONS, REFUSED_OPTIONS, STANDALONE_ONLY_OPTIONS};
pub use sections::*;
pub use user_status::*;
pub use validate::{
    validate_namespace_name, MAX_ALLOWED_ORIGINS, MAX_ORIGIN_LEN, NAMESPACE_NAME_PATTERN,
};
pub use webhooks::*;
