//! The sections of a tenant config, each with Centrifugo v6's option names and defaults.

use serde::{Deserialize, Serialize};

use crate::channel::{ChannelOptions, Namespace};
use crate::duration::ConfigDuration;
use crate::proxy::{ChannelProxies, ClientProxies, NamedProxy, RpcSection};
use crate::redis_tls::RedisTls;

/// The whole configuration of one tenant's data plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TenantConfig {
    /// Rotor's own settings (tenant identity, config version, plan limits).
    pub rotor: RotorSection,
    pub node: NodeSection,
    pub http_server: HttpServer,
    pub client: ClientSection,
    pub channel: ChannelSection,
    pub http_api: HttpApi,
    /// `grpc_api.*`: the gRPC server API on its own listener (off unless enabled).
    #[serde(skip_serializing_if = "crate::grpc_api::GrpcApi::is_default")]
    pub grpc_api: crate::grpc_api::GrpcApi,
    pub websocket: WebSocketSection,
    pub engine: EngineSection,
    /// `broker.*`: a broker apart from the engine (NATS), standalone only.
    #[serde(skip_serializing_if = "crate::broker::BrokerSection::is_default")]
    pub broker: crate::broker::BrokerSection,
    /// `http_stream.enabled`: bidirectional emulation over HTTP streaming.
    pub http_stream: Toggle,
    /// `sse.enabled`: bidirectional emulation over EventSource.
    pub sse: Toggle,
    /// `uni_sse.enabled`: EventSource streams at `/connection/uni_sse`.
    pub uni_sse: Toggle,
    /// `uni_http_stream.enabled`: streaming responses at `/connection/uni_http_stream`.
    pub uni_http_stream: Toggle,
    /// `uni_websocket.enabled`: push-only WebSocket at `/connection/uni_websocket`.
    pub uni_websocket: Toggle,
    /// Named proxies to the app backend, referred to by `*_proxy_name` options.
    pub proxies: Vec<NamedProxy>,
    /// `rpc.*`: client RPC calls and the proxies that answer them.
    pub rpc: RpcSection,
    /// Asynchronous consumers of server API commands (PostgreSQL outbox, Redis Streams).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<crate::consumers::Consumer>,
    /// `log.level`: how much the process logs (`RUST_LOG`, when set, wins).
    #[serde(skip_serializing_if = "LogSection::is_empty")]
    pub log: LogSection,
    /// Centrifugo's older name for `log.level` (used when `log.level` is not set).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_level: String,
    /// `prometheus.enabled`: whether the public `/metrics` answers.
    #[serde(skip_serializing_if = "PrometheusSection::is_empty")]
    pub prometheus: PrometheusSection,
    /// `user_status.*`: the server API's `user_status` method (Rotor's own, off by default).
    #[serde(skip_serializing_if = "crate::user_status::UserStatusSection::is_default")]
    pub user_status: crate::user_status::UserStatusSection,
    /// `webhooks.*`: channel and connection events POSTed to the backend (Rotor's own, off by
    /// default).
    #[serde(skip_serializing_if = "crate::webhooks::WebhooksSection::is_default")]
    pub webhooks: crate::webhooks::WebhooksSection,
}

/// The levels `log.level` takes, least to most verbose (`none` logs nothing).
pub const LOG_LEVELS: &[&str] = &["none", "error", "warn", "info", "debug", "trace"];

/// `log.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LogSection {
    /// One of [`LOG_LEVELS`]; empty = `info` (or `log_level`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub level: String,
}

impl LogSection {
    fn is_empty(&self) -> bool {
        self.level.is_empty()
    }
}

/// `prometheus.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PrometheusSection {
    /// `false` closes the public `/metrics` (404); unset or `true` keeps it, behind an API key
    /// as always (the admin listener's `/metrics` is not affected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl PrometheusSection {
    fn is_empty(&self) -> bool {
        self.enabled.is_none()
    }
}

/// `client.subscribe_to_user_personal_channel.*`: every connection of an authenticated user is
/// subscribed server-side to its personal channel, `<namespace>:#<user>` (`#<user>` without a
/// namespace; the boundaries are `channel.namespace_boundary` and `channel.user_boundary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PersonalChannelSection {
    pub enabled: bool,
    /// The namespace of personal channels (must be defined); empty = no namespace.
    pub personal_channel_namespace: String,
    /// A user keeps one connection: a new one closes the user's older ones with 3504
    /// ("connection limit"), on every process of the tenant. Needs presence in the personal
    /// channel's namespace.
    pub single_connection: bool,
}

/// A transport switch (Centrifugo: off unless enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Toggle {
    pub enabled: bool,
}

/// Settings Centrifugo has no name for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RotorSection {
    /// The project this process serves (`prj_…`); empty when standalone.
    pub tenant_id: String,
    /// Monotonic version set by the control plane; a push with a lower version is refused.
    pub config_version: u64,
    /// Publications per second accepted for the whole tenant, from clients and the API
    /// together (0 = unlimited); excess publishes get error 111.
    pub publish_rate_limit: u32,
    /// Largest publication payload in bytes accepted from clients and the API (0 = only the
    /// transport's message limit applies).
    pub max_publication_size: u32,
    /// Bytes of history the tenant keeps, across all channels
    /// (0 = unlimited). A publication's stored size is the publication record itself plus
    /// every byte it carries (data, channel, tags, client info). A publish whose history
    /// append would go past it is refused with error 106; space comes back as entries are
    /// trimmed (`history_size`, `max_channel_history_bytes`), expire (`history_ttl`) or are
    /// removed. With the Redis engine each process counts what it writes into Redis, until
    /// the stream key expires.
    pub max_history_bytes: u64,
    /// Bytes of history the tenant keeps per channel, counted as for
    /// `max_history_bytes` (0 = unlimited): the oldest entries of a channel's stream are
    /// trimmed to stay under it (the newest publication is always kept); a single
    /// publication larger than it is refused with error 106. With the Redis engine the stream
    /// is trimmed to the entries this process wrote that fit.
    pub max_channel_history_bytes: u64,
    /// Channels that may exist at once (0 = unlimited): a channel exists while it has a
    /// subscriber on this node or a history stream with publications whose meta has not
    /// expired (`history_meta_ttl`; with the Redis engine, a stream this process published
    /// into). A subscribe or publish that would create a channel past it gets error 106 (a
    /// history read never creates one); existing channels keep working.
    pub max_channels: u32,
    /// Presence entries the tenant holds at once (0 = unlimited): one per subscription to a
    /// presence-enabled channel, counted by this process (with the Redis engine, this
    /// process's own entries only). A subscribe past it gets error 106.
    pub max_presence_entries: u32,
}

/// Node identity shown in `info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NodeSection {
    /// Human-readable node name; defaults to the host name and port.
    pub name: String,
}

/// Where the HTTP server listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpServer {
    /// Host to bind; empty means all interfaces.
    pub address: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
}

impl Default for HttpServer {
    fn default() -> Self {
        Self {
            address: String::new(),
            port: 8000,
        }
    }
}

/// Connection tokens: how JWTs are verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TokenSection {
    /// Secret for HS256/HS384/HS512 tokens.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hmac_secret_key: String,
    /// Previous secret, accepted until `hmac_previous_secret_key_valid_until` (rotation).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hmac_previous_secret_key: String,
    /// Unix seconds after which the previous secret stops working (0 = never accepted).
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub hmac_previous_secret_key_valid_until: i64,
    /// PEM public key for RS256/384/512.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rsa_public_key: String,
    /// PEM public key for ES256/384/512.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ecdsa_public_key: String,
    /// JWKS endpoint URL (keys chosen by `kid`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jwks_public_endpoint: String,
    /// Required `aud` value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub audience: String,
    /// Regular expression `aud` must match.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub audience_regex: String,
    /// Required `iss` value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// Regular expression `iss` must match.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub issuer_regex: String,
    /// Claim holding the user id (default `sub`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_id_claim: String,
}

/// The option names of [`TokenSection`] (they are flattened into
/// `client.subscription_token`, where unknown keys are checked against this list).
pub const TOKEN_OPTION_NAMES: &[&str] = &[
    "hmac_secret_key",
    "hmac_previous_secret_key",
    "hmac_previous_secret_key_valid_until",
    "rsa_public_key",
    "ecdsa_public_key",
    "jwks_public_endpoint",
    "audience",
    "audience_regex",
    "issuer",
    "issuer_regex",
    "user_id_claim",
];

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// Subscription tokens verified with their own keys (when `enabled`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SubscriptionTokenSection {
    pub enabled: bool,
    #[serde(flatten)]
    pub token: TokenSection,
}

/// Client connection behaviour (`client.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientSection {
    pub token: TokenSection,
    pub subscription_token: SubscriptionTokenSection,
    /// Origins allowed to open browser connections; `*` allows all. Empty refuses any request
    /// that carries an `Origin` header.
    pub allowed_origins: Vec<String>,
    /// Development mode: no authentication, every permission granted.
    pub insecure: bool,
    /// Clients without a token connect as anonymous users.
    pub allow_anonymous_connect_without_token: bool,
    /// Refuse connection tokens whose user id is empty.
    pub disallow_anonymous_connection_tokens: bool,
    /// Server ping interval.
    pub ping_interval: ConfigDuration,
    /// How long to wait for a pong after a ping.
    pub pong_timeout: ConfigDuration,
    /// Grace period after a connection's expiry before it is closed.
    pub expired_close_delay: ConfigDuration,
    /// Grace period after a subscription's expiry before it is ended.
    pub expired_sub_close_delay: ConfigDuration,
    /// How long a connection may stay unauthenticated: a socket without a successful
    /// `connect` by then is closed with 3502 (0 = the default 10 s). Rotor also uses it as
    /// the time a TCP connection may take to send each request head.
    pub stale_close_delay: ConfigDuration,
    /// Maximum channels one connection may subscribe to.
    pub channel_limit: u32,
    /// Maximum bytes queued for one connection before it is disconnected as slow.
    pub queue_max_size: u32,
    /// How often presence entries are refreshed.
    pub presence_update_interval: ConfigDuration,
    /// How often positioned subscriptions are compared with the stream top.
    pub channel_position_check_delay: ConfigDuration,
    /// Maximum concurrent client sockets on this node (0 = unlimited), counted from the moment
    /// a request reaches a connection endpoint, authenticated or not: past it a new one is
    /// answered 503 before any upgrade; a `connect` while as many connections are
    /// authenticated (after the limit was lowered) is closed with 3504.
    pub connection_limit: u32,
    /// Maximum concurrent connections of one user (0 = unlimited).
    pub user_connection_limit: u32,
    /// New client sockets accepted per second on this node (0 = unlimited), counted as a
    /// token bucket that holds a second's worth: past it a request to a connection endpoint
    /// is answered 503 before any upgrade, as Centrifugo's option of the same name.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub connection_rate_limit: u32,
    /// The name of a request header that authenticates a connection without a token: its
    /// value is the user id (Centrifugo's option of the same name, for a trusted proxy in
    /// front). Standalone only: a hosted project's edge passes its clients' headers through.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_id_http_header: String,
    /// Connection and subscription tokens are accepted without checking their signature (the
    /// claims still are). For development only; standalone only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_token_signature_verify: bool,
    /// The connect reply (and the unidirectional connect push) carries the server's time,
    /// unix milliseconds, in `time`, as Centrifugo's option of the same name.
    pub connect_include_server_time: bool,
    /// How many commands of one connection may run at once (Centrifugo's `client.concurrency`):
    /// 0 or 1 runs them one at a time, in order; above that, `publish`, `rpc`, `history`,
    /// `presence`, `presence_stats` and the authorisation of `subscribe` run side by side up
    /// to this many, each answered as it completes, while the connection keeps reading.
    pub concurrency: u32,
    /// Cap on publications one client history call returns.
    pub history_max_publication_limit: u32,
    /// Cap on publications one recovery returns.
    pub recovery_max_publication_limit: u32,
    /// `client.proxy.connect` / `client.proxy.refresh`: connection-wide proxies.
    pub proxy: ClientProxies,
    /// Server-side subscription of each user to a personal channel.
    pub subscribe_to_user_personal_channel: PersonalChannelSection,
}

impl Default for ClientSection {
    fn default() -> Self {
        Self {
            token: TokenSection::default(),
            subscription_token: SubscriptionTokenSection::default(),
            allowed_origins: Vec::new(),
            insecure: false,
            allow_anonymous_connect_without_token: false,
            disallow_anonymous_connection_tokens: false,
            ping_interval: ConfigDuration::from_secs(25),
            pong_timeout: ConfigDuration::from_secs(8),
            expired_close_delay: ConfigDuration::from_secs(25),
            expired_sub_close_delay: ConfigDuration::from_secs(25),
            stale_close_delay: ConfigDuration::from_secs(10),
            channel_limit: 128,
            queue_max_size: 1_048_576,
            presence_update_interval: ConfigDuration::from_secs(27),
            channel_position_check_delay: ConfigDuration::from_secs(40),
            connection_limit: 0,
            user_connection_limit: 0,
            connection_rate_limit: 0,
            user_id_http_header: String::new(),
            insecure_skip_token_signature_verify: false,
            connect_include_server_time: false,
            concurrency: 0,
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            proxy: ClientProxies::default(),
            subscribe_to_user_personal_channel: PersonalChannelSection::default(),
        }
    }
}

/// Channels (`channel.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelSection {
    /// Options of channels that have no namespace.
    pub without_namespace: ChannelOptions,
    /// Named namespaces.
    pub namespaces: Vec<Namespace>,
    /// Longest channel name a client may subscribe to.
    pub max_length: u32,
    /// Channels starting with this need a subscription token.
    pub private_prefix: String,
    /// Separates the namespace from the rest of a channel name.
    pub namespace_boundary: String,
    /// Starts the user list of a user-limited channel.
    pub user_boundary: String,
    /// Separates users in a user-limited channel.
    pub user_separator: String,
    /// Default stream meta retention.
    pub history_meta_ttl: ConfigDuration,
    /// `channel.proxy.*`: the proxies namespaces use under the name `default`.
    pub proxy: ChannelProxies,
}

impl Default for ChannelSection {
    fn default() -> Self {
        Self {
            without_namespace: ChannelOptions::default(),
            namespaces: Vec::new(),
            max_length: 255,
            private_prefix: "$".into(),
            namespace_boundary: ":".into(),
            user_boundary: "#".into(),
            user_separator: ",".into(),
            history_meta_ttl: ConfigDuration::from_secs(720 * 3600),
            proxy: ChannelProxies::default(),
        }
    }
}

/// The server HTTP API (`http_api.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HttpApi {
    /// The API key (`X-API-Key` / `Authorization: apikey …`). Empty refuses every call unless
    /// `insecure`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Additional valid keys (Rotor: the control plane's per-key list, stored here as SHA-256
    /// hex digests so the process never holds plain keys it did not need).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_hashes: Vec<String>,
    /// Keys with an identity and a scope (Rotor: what the control plane sends). A key used
    /// since the last report is named by its `id` in the process's usage report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<ApiKeyEntry>,
    /// No API authentication (development only).
    pub insecure: bool,
    /// `transport` maps errors to HTTP statuses; empty keeps 200 with an error body.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_mode: String,
}

/// One API key of `http_api.keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// A name for the key that is not a secret (Rotor: `key_…`), reported when it is used.
    pub id: String,
    /// SHA-256 of the key, lowercase hex.
    pub sha256: String,
    /// What the key may call.
    pub scope: ApiKeyScope,
}

/// What an API key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyScope {
    /// Every server API method (and the public `/metrics`).
    #[default]
    All,
    /// `publish` and `broadcast` only (also inside `batch`); anything else answers error 103
    /// (permission denied).
    Publish,
}

impl ApiKeyScope {
    /// Whether a key of this scope may call server API `method`.
    pub fn allows(self, method: &str) -> bool {
        match self {
            ApiKeyScope::All => true,
            ApiKeyScope::Publish => matches!(method, "publish" | "broadcast"),
        }
    }

    /// `all` or `publish`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::All => "all",
            ApiKeyScope::Publish => "publish",
        }
    }

    /// The scope a name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "all" => Some(ApiKeyScope::All),
            "publish" => Some(ApiKeyScope::Publish),
            _ => None,
        }
    }
}

/// WebSocket transport (`websocket.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebSocketSection {
    /// Largest incoming message in bytes.
    pub message_size_limit: u32,
    /// How long one write may take before the connection is dropped (`websocket` and
    /// `uni_websocket` connections).
    pub write_timeout: ConfigDuration,
    /// Read buffer per connection in bytes (0 = Rotor's small default).
    pub read_buffer_size: u32,
    /// Bytes of outgoing frames a connection gathers before writing them unasked (0 = 64 KiB);
    /// every batch of frames is written at its end anyway, so this bounds one write, not a
    /// delay.
    pub write_buffer_size: u32,
}

impl Default for WebSocketSection {
    fn default() -> Self {
        Self {
            message_size_limit: 65536,
            write_timeout: ConfigDuration::from_secs(1),
            read_buffer_size: 0,
            write_buffer_size: 0,
        }
    }
}

/// Which engine keeps history and presence and spreads publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngineType {
    #[default]
    Memory,
    Redis,
}

impl EngineType {
    /// The engine `engine.type` names (`memory` or `redis`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "memory" => Some(EngineType::Memory),
            "redis" => Some(EngineType::Redis),
            _ => None,
        }
    }
}

/// `engine.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EngineSection {
    #[serde(rename = "type")]
    pub kind: EngineType,
    pub redis: RedisEngine,
}

/// `engine.redis.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisEngine {
    /// One address or several (shards), e.g. `redis://127.0.0.1:6379`.
    pub address: AddressList,
    /// Prefix of every key this tenant writes.
    pub prefix: String,
    /// How long a presence entry lives without a refresh.
    pub presence_ttl: ConfigDuration,
    /// TLS to the servers (`rediss://` addresses are TLS too).
    pub tls: RedisTls,
    /// Seed nodes of a Redis Cluster (`host:port` or `redis://` URLs); when set, the engine
    /// runs on that cluster instead of `address`.
    pub cluster_address: AddressList,
    /// Sentinels (`host:port` or `redis://` URLs) of the group `sentinel_master_name`; when
    /// set, the engine runs on the primary they name instead of `address`.
    pub sentinel_address: AddressList,
    /// The group (master name) the Sentinels of `sentinel_address` monitor.
    pub sentinel_master_name: String,
    /// The user for the Sentinels (ACL), if they require one.
    pub sentinel_user: String,
    /// The password for the Sentinels, if they require one.
    pub sentinel_password: String,
}

impl RedisEngine {
    /// Whether `address` is the default one (not set by the config).
    pub fn address_is_default(&self) -> bool {
        self.address == Self::default().address
    }

    /// The addresses of the data nodes as TLS sees them: the cluster's seeds, the Sentinels'
    /// (whose TLS follows the primary's), or `address`, a `rediss+sentinel://` one counting
    /// as `rediss://`.
    pub fn tls_addresses(&self) -> Vec<String> {
        if !self.cluster_address.0.is_empty() {
            return self.cluster_address.0.clone();
        }
        if !self.sentinel_address.0.is_empty() {
            return self.sentinel_address.0.clone();
        }
        self.address
            .0
            .iter()
            .map(
                |a| match a.trim_start().strip_prefix("rediss+sentinel://") {
                    Some(rest) => format!("rediss://{rest}"),
                    None => a.clone(),
                },
            )
            .collect()
    }
}

impl Default for RedisEngine {
    fn default() -> Self {
        Self {
            address: AddressList(vec!["redis://127.0.0.1:6379".into()]),
            prefix: "centrifugo".into(),
            presence_ttl: ConfigDuration::from_secs(60),
            tls: RedisTls::default(),
            cluster_address: AddressList::default(),
            sentinel_address: AddressList::default(),
            sentinel_master_name: String::new(),
            sentinel_user: String::new(),
            sentinel_password: String::new(),
        }
    }
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct AddressList(pub Vec<String>);

impl<'de> Deserialize<'de> for AddressList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(s) => AddressList(vec![s]),
            OneOrMany::Many(v) => AddressList(v),
        })
    }
}

impl TenantConfig {
    /// Options for channels in namespace `name` (`None` = unknown namespace).
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.channel.namespaces.iter().find(|ns| ns.name == name)
    }

    /// The personal channel of `user` (Centrifugo's rule): `<namespace>:#<user>`, or `#<user>`
    /// without a personal channel namespace.
    pub fn personal_channel(&self, user: &str) -> String {
        let ch = &self.channel;
        let ns = &self
            .client
            .subscribe_to_user_personal_channel
            .personal_channel_namespace;
        if ns.is_empty() {
            format!("{}{user}", ch.user_boundary)
        } else {
            format!("{ns}{}{}{user}", ch.namespace_boundary, ch.user_boundary)
        }
    }

    /// The options of [`crate::STANDALONE_ONLY_OPTIONS`] this config sets (their paths), which
    /// a hosted project may not.
    pub fn standalone_only_options_set(&self) -> Vec<&'static str> {
        let c = &self.client;
        [
            (
                "client.user_id_http_header",
                !c.user_id_http_header.is_empty(),
            ),
            (
                "client.insecure_skip_token_signature_verify",
                c.insecure_skip_token_signature_verify,
            ),
            ("broker", !self.broker.is_default()),
            ("grpc_api.address", !self.grpc_api.address.is_empty()),
            (
                "grpc_api.port",
                self.grpc_api.port != crate::grpc_api::DEFAULT_GRPC_API_PORT,
            ),
            ("grpc_api.tls", !self.grpc_api.tls.is_default()),
            ("grpc_api.key", !self.grpc_api.key.is_empty()),
            (
                "grpc_api.max_receive_message_size",
                self.grpc_api.max_receive_message_size != 0,
            ),
            (
                "engine.redis.tls.*_pem_file",
                self.engine.redis.tls.sets_a_file(),
            ),
            (
                "consumers[].redis_stream.tls.*_pem_file",
                self.consumers.iter().any(|c| {
                    c.redis_stream
                        .as_ref()
                        .is_some_and(|rs| rs.tls.sets_a_file())
                }),
            ),
            (
                "consumers[].nats_jetstream.credentials_file",
                self.consumers.iter().any(|c| {
                    c.nats_jetstream
                        .as_ref()
                        .is_some_and(|n| !n.credentials_file.is_empty())
                }),
            ),
        ]
        .into_iter()
        .filter_map(|(path, set)| set.then_some(path))
        .collect()
    }

    /// The log level the config asks for: `log.level`, else the older `log_level`; `None`
    /// when neither is set.
    pub fn log_level(&self) -> Option<&str> {
        [self.log.level.as_str(), self.log_level.as_str()]
            .into_iter()
            .find(|l| !l.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_option_names_are_the_token_sections_fields() {
        let full = TokenSection {
            hmac_secret_key: "a".into(),
            hmac_previous_secret_key: "a".into(),
            hmac_previous_secret_key_valid_until: 1,
            rsa_public_key: "a".into(),
            ecdsa_public_key: "a".into(),
            jwks_public_endpoint: "a".into(),
            audience: "a".into(),
            audience_regex: "a".into(),
            issuer: "a".into(),
            issuer_regex: "a".into(),
            user_id_claim: "a".into(),
        };
        let value = serde_json::to_value(full).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut names = TOKEN_OPTION_NAMES.to_vec();
        keys.sort_unstable();
        names.sort_unstable();
        assert_eq!(keys, names);
    }
}
