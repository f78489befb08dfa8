//! Options Rotor refuses: every key a config sets must be one Rotor implements, so nothing is
//! accepted and then ignored. A key the schema does not take is refused with its path and, for
//! the Centrifugo v6 options Rotor knows but does not implement, the reason why. The same lists
//! generate `COMPATIBILITY.md` ([`compatibility_markdown`]).

use serde_json::Value;

use crate::channel::{CHANNEL_OPTION_DOCS, REFUSED_CHANNEL_OPTIONS};
use crate::consumers::REFUSED_KINDS;
use crate::load::ConfigError;

/// Why Rotor refuses the Redis options a URL already carries.
const REDIS_URL: &str =
    "give the credentials and database in the address URL (redis://user:password@host:6379/0)";

/// Why Rotor refuses `tls.server_name` for Redis.
const TLS_SERVER_NAME: &str = "the server's certificate is checked against the host of the address: address the server by a name its certificate carries (rediss://redis.internal:6380)";

/// Why Rotor refuses a client CA for Redis connections.
const TLS_CLIENT_CA: &str =
    "a client CA verifies the certificates of clients of a TLS server; a Redis connection is a client";

/// The reason the `*_pem_file` TLS options are standalone only.
const TLS_FILES: &str = "they read files on the box: a hosted project could make its process read the operator's or another tenant's files; give the PEM text in `cert_pem`, `key_pem` and `server_ca_pem` instead";

/// Centrifugo v6 options outside the channel options that Rotor does not implement, by dotted
/// path, each with the reason. Anything under one of these paths is refused with it.
pub const REFUSED_OPTIONS: &[(&str, &str)] = &[
    (
        "log.file",
        "a Rotor data plane logs to standard error (its supervisor or process manager keeps the log)",
    ),
    (
        "broker.redis",
        "a separate Redis broker is not supported: `engine.type: redis` gives Redis PUB/SUB, history and presence",
    ),
    (
        "broker.postgres",
        "the PostgreSQL stream broker is not supported",
    ),
    (
        "broker.redisnats",
        "the experimental Redis + NATS broker is not supported",
    ),
    (
        "broker.nats.allow_wildcards",
        "wildcard subscriptions are not supported: a channel is one NATS subject",
    ),
    (
        "broker.nats.raw_mode",
        "raw mode is not supported: Rotor's NATS messages carry Centrifugo's Push framing",
    ),
    (
        "broker.nats.tls",
        "give a tls:// URL; client certificates are not supported",
    ),
    (
        "presence_manager",
        "a separate presence manager is not supported: `engine` decides where presence is kept",
    ),
    ("engine.redis.user", REDIS_URL),
    ("engine.redis.password", REDIS_URL),
    ("engine.redis.db", REDIS_URL),
    (
        "engine.redis.sentinel_tls",
        "TLS to the Sentinels follows `engine.redis.tls` (the same CA and client certificate as for the primary): set `enabled: true` there or use a rediss+sentinel:// address",
    ),
    (
        "engine.redis.sentinel_client_name",
        "Rotor does not name its connections to the Sentinels",
    ),
    ("engine.redis.tls.server_name", TLS_SERVER_NAME),
    ("engine.redis.tls.client_ca_pem", TLS_CLIENT_CA),
    ("engine.redis.tls.client_ca_pem_file", TLS_CLIENT_CA),
    (
        "uni_grpc",
        "the unidirectional gRPC transport is not supported",
    ),
    ("webtransport", "the WebTransport transport is not supported"),
    ("consumers.kafka", REFUSED_KINDS[0].1),
    ("consumers.google_pub_sub", REFUSED_KINDS[1].1),
    ("consumers.aws_sqs", REFUSED_KINDS[2].1),
    ("consumers.azure_service_bus", REFUSED_KINDS[3].1),
    (
        "consumers.nats_jetstream.tls",
        "give a tls:// URL; client certificates are not supported",
    ),
    (
        "consumers.postgresql.tls",
        "give TLS settings in the DSN (sslmode=require, sslrootcert=…)",
    ),
    ("consumers.redis_stream.tls.server_name", TLS_SERVER_NAME),
    ("consumers.redis_stream.tls.client_ca_pem", TLS_CLIENT_CA),
    ("consumers.redis_stream.tls.client_ca_pem_file", TLS_CLIENT_CA),
    (
        "consumers.redis_stream.cluster_address",
        "Redis Cluster is not supported for stream consumers",
    ),
    (
        "consumers.redis_stream.sentinel_address",
        "Redis Sentinel is not supported for stream consumers",
    ),
    (
        "consumers.redis_stream.sentinel_master_name",
        "Redis Sentinel is not supported for stream consumers",
    ),
    ("consumers.redis_stream.user", REDIS_URL),
    ("consumers.redis_stream.password", REDIS_URL),
    ("consumers.redis_stream.db", REDIS_URL),
];

/// Options a standalone data plane implements but a hosted project may not set, each with the
/// reason: the control plane refuses them in a project's settings (answering 400 with the
/// reason), and a data plane run by the control plane (`ROTOR_EGRESS=public`) refuses a config
/// that sets them.
/// Why a hosted project's gRPC API has no listener of its own.
const GRPC_EDGE: &str = "a hosted project's gRPC API is served at its own host on Rotor's edge (HTTP/2 with prior knowledge, TLS ended in front of the edge), not on a port of the project's";

pub const STANDALONE_ONLY_OPTIONS: &[(&str, &str)] = &[
    (
        "client.user_id_http_header",
        "a hosted project's clients reach it through Rotor's edge, which passes their request headers through: any client could set the header and connect as any user",
    ),
    (
        "client.insecure_skip_token_signature_verify",
        "without signature checks anyone can forge a token for any user of the project",
    ),
    (
        "broker",
        "a broker's address is reached from the service's own network: a hosted project could point it at a NATS server of the operator's or of another tenant and read or inject their messages",
    ),
    (
        "grpc_api.address",
        GRPC_EDGE,
    ),
    (
        "grpc_api.port",
        GRPC_EDGE,
    ),
    (
        "grpc_api.tls",
        GRPC_EDGE,
    ),
    (
        "grpc_api.key",
        "a hosted project's gRPC API takes the project's own API keys (with their scopes), which the dashboard and REST API manage and store only as hashes",
    ),
    (
        "grpc_api.max_receive_message_size",
        "a hosted project's gRPC calls are bounded like its HTTP API calls (4 MiB a message)",
    ),
    ("engine.redis.tls.*_pem_file", TLS_FILES),
    ("consumers[].redis_stream.tls.*_pem_file", TLS_FILES),
    (
        "consumers[].nats_jetstream.credentials_file",
        "a hosted tenant must never make the process read a file of the box: give username and password, or a token",
    ),
];

/// Centrifugo v6 options outside the channel options that Rotor implements with Centrifugo's
/// meaning and that deserve a word here (everything else in the schema simply follows
/// Centrifugo's names and defaults).
pub const NOTED_OPTIONS: &[(&str, &str)] = &[
    (
        "client.subscribe_to_user_personal_channel.enabled",
        "every connection of an authenticated user is subscribed server-side to its personal channel `<personal_channel_namespace>:#<user>` (`#<user>` without a namespace), with that namespace's options (recovery, positioning, presence); it is in the connect reply's `subs`",
    ),
    (
        "client.subscribe_to_user_personal_channel.personal_channel_namespace",
        "must be a defined namespace",
    ),
    (
        "client.subscribe_to_user_personal_channel.single_connection",
        "a user keeps one connection: a new one closes the user's older ones with 3504 (connection limit) on every process of the tenant; needs `enabled` and presence in the personal channels' namespace",
    ),
    (
        "broker",
        "`enabled: true` with `type: \"nats\"` (`nats.url`, `nats.prefix`, `nats.dial_timeout`, `nats.write_timeout`, Centrifugo's defaults): publications, join/leave and node control messages go through NATS subjects `<prefix>.client.<channel>` and `<prefix>.control`, so one tenant runs over several processes; at most once, as Centrifugo documents (a publish while NATS is unreachable fails with a temporary error or is lost). No history, so no recovery or positioning: a namespace with history is refused. Presence stays with the engine: per process with `engine.type: memory`, shared with `engine.type: redis`. Channels with `*` or `>` are refused (107). Standalone only (see below)",
    ),
    (
        "engine.redis.tls",
        "`enabled` (TLS on every address; a `rediss://` address is TLS anyway, verified against the webpki roots), `server_ca_pem` (the CA the server's certificate must chain to, instead of the webpki roots), `cert_pem` and `key_pem` (a client certificate for a server run with `tls-auth-clients yes`), `insecure_skip_verify` (no verification at all: encrypted but not authenticated; logged as a warning at start). The `*_pem` options take PEM text only (Centrifugo also takes base64 or a file path there); `cert_pem_file`, `key_pem_file` and `server_ca_pem_file` name files, standalone only (see below). Verification is on unless asked: a certificate from an unknown CA or for another name than the address's host stops the data plane at start. Also `consumers[].redis_stream.tls`",
    ),
    (
        "engine.redis.cluster_address",
        "seed nodes of a Redis Cluster (`host:port` or `redis://`/`rediss://` URLs, credentials in the URL, TLS from `engine.redis.tls`), instead of `address`. Every key of a channel carries the `{channel}` hash tag, so a publish stays one atomic Lua call on the channel's slot; PUB/SUB is sharded (`SSUBSCRIBE`/`SPUBLISH`, Redis 7 or later), so a publication reaches only the node that owns its slot. After a failover or slot move the subscriptions follow the slot and positioned subscribers are told to recover",
    ),
    (
        "engine.redis.sentinel_address",
        "Sentinels (`host:port` or `redis://`/`rediss://` URLs) of the group `sentinel_master_name`, with `sentinel_user`/`sentinel_password` if the Sentinels require them; instead of `address`. The engine asks the Sentinels for the primary and asks again after losing it: publishes during a failover fail with a temporary error (Centrifugo's internal error), then resume on the new primary, and positioned subscribers are told to recover. The same as one address `redis+sentinel://[user:password@]host:port[,host:port…]/<master name>[/<db>]` (`rediss+sentinel://` for TLS), whose credentials are the primary's; such addresses can also be shards among others in `address`",
    ),
    (
        "client.proxy.connect.endpoint",
        "`http://`/`https://` (JSON over HTTP) or `grpc://host:port` (Centrifugo's `CentrifugoProxy` gRPC service, payloads as native bytes) for every proxy (`client.proxy.*`, `channel.proxy.*`, `rpc.proxy`, `proxies[]`); gRPC proxies take `grpc.tls` (`enabled`, `server_ca_pem`, `cert_pem`, `key_pem`, `server_name`; PEM text only), `grpc.credentials_key`/`credentials_value`, `grpc.compression` and `grpc.static_metadata`, and forward `http_headers`, `grpc_metadata` and `emulated_headers` as metadata; hosted projects may use them (same egress rule as HTTP proxies)",
    ),
    (
        "log.level",
        "`trace`, `debug`, `info` (default), `warn`, `error` or `none`; the `RUST_LOG` environment variable wins when set",
    ),
    ("log_level", "older name of `log.level`, used when `log.level` is not set"),
    (
        "client.concurrency",
        "above 1, `publish`, `rpc`, `history`, `presence`, `presence_stats` and the authorisation of `subscribe` (token or proxy) of one connection run side by side up to this many (at most 1024), each answered when it completes, while the connection keeps reading and delivering; at the limit the connection stops reading until one completes; `connect`, `unsubscribe`, `refresh` and `sub_refresh` run in arrival order between them",
    ),
    (
        "client.connect_include_server_time",
        "the connect reply (and a unidirectional transport's connect push) carries the server's unix time in milliseconds in `time`",
    ),
    (
        "client.user_id_http_header",
        "a connection without a token is authenticated by this request header of its WebSocket, SSE or HTTP-streaming request (the value is the user id), as Centrifugo's middleware does: after the connect proxy and after anonymous access (`allow_anonymous_connect_without_token` or `insecure` win over it, as in Centrifugo), before the connection is refused; standalone only (see below)",
    ),
    (
        "client.insecure_skip_token_signature_verify",
        "connection and subscription tokens are accepted without checking their signature; their claims (`exp`, `nbf`, `aud`, `iss`, `channel`, `sub`) are still checked; standalone only (see below)",
    ),
    (
        "client.connection_rate_limit",
        "new client sockets per second on the node: a request to a connection endpoint past the rate is answered 503 before any upgrade, counted in `rotor_connections_refused_total{reason=\"connection_rate_limit\"}`; the bucket holds one second's worth",
    ),
    (
        "client.token.jwks_public_endpoint",
        "keys chosen by `kid` from a JWKS endpoint; the URL may hold `{{name}}` placeholders filled per token from the named groups of `issuer_regex`/`audience_regex`, as in Centrifugo: each such group must be an explicit list of fixed values (alternatives such as `acme` or `globex`, no classes, wildcards or repetitions), every value a plain path segment, and placeholders may stand only in the URL's path, so a token can only pick one of the endpoints the config lists (also `client.subscription_token.jwks_public_endpoint`)",
    ),
    (
        "user_status",
        "Rotor's own: `enabled` (default `false`) turns on the server API's `user_status` method (online now, connections, last seen, for up to 1000 users a call); `last_seen_ttl` (default `24h`, 1s to 720h; hosted projects 1m to 168h) keeps a user's last-seen time that long; `max_last_seen_bytes` (default 16 MiB) bounds the memory engine's last-seen records, each counting its user id's bytes plus 64",
    ),
    (
        "grpc_api",
        "Centrifugo's gRPC server API (service `centrifugal.centrifugo.api.CentrifugoApi`, proto in `data-plane/proto/api.proto`) on its own listener: `enabled`, `address`, `port` (default 10000), `key` (sent as `authorization: apikey <key>` metadata; empty: the keys of `http_api`, with their scopes), `max_receive_message_size` (default 4 MiB, at most 64 MiB), `tls.enabled` with `tls.cert_pem`/`tls.key_pem` (or `*_pem_file`); every method the HTTP API has, with its semantics and error codes (errors in the reply's `error`, a missing or wrong key as status UNAUTHENTICATED); Centrifugo PRO methods answer error 104 (method not found); `reflection` is refused",
    ),
    (
        "webhooks",
        "Rotor's own: `enabled` (default `false`) POSTs `channel_occupied`, `channel_vacated`, `member_added`, `member_removed` and `client_disconnected` events (the `events` list picks) in batches to `url`, signed with `secret` (`X-Rotor-Signature: sha256=<hex HMAC-SHA256 of the body>`); a removal waits `grace` (default `5s`, 0 to 300s) and is dropped with its matching addition when one comes; failed batches are retried `max_attempts` times (default 8) from `retry_backoff` (1s) doubling to `max_retry_backoff` (60s), each attempt within `timeout` (5s), then kept in a dead-letter ring of `dead_letter_size` (100); at most `queue_size` (10000) events wait, `batch_size` (100) to a request",
    ),
    (
        "prometheus.enabled",
        "`false` closes the public `/metrics`; otherwise it answers (with an API key, or open with `http_api.insecure`) in Rotor's metric families and Centrifugo's (`centrifugo_node_num_clients`, `centrifugo_client_command_duration_seconds`, …)",
    ),
];

/// One step of the path to an ignored key.
enum Step {
    Key(String),
    Index(usize),
}

/// The steps of a `serde_ignored` path, outermost first.
fn steps(path: &serde_ignored::Path<'_>, out: &mut Vec<Step>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            steps(parent, out);
            out.push(Step::Index(*index));
        }
        Path::Map { parent, key } => {
            steps(parent, out);
            out.push(Step::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent, out),
    }
}

/// `channel.namespaces[0].bogus` for the steps of a path.
fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The refusal for a key no field of the schema took, given its `serde_ignored` path.
pub(crate) fn refusal(path: &serde_ignored::Path<'_>) -> ConfigError {
    let mut s = Vec::new();
    steps(path, &mut s);
    let keys: Vec<&str> = s
        .iter()
        .filter_map(|step| match step {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    let in_channel_options = matches!(
        keys.as_slice(),
        ["channel", "without_namespace", _] | ["channel", "namespaces", _]
    );
    let channel_reason = keys
        .last()
        .filter(|_| in_channel_options)
        .and_then(|option| REFUSED_CHANNEL_OPTIONS.iter().find(|(n, _)| n == option));
    let option_reason = REFUSED_OPTIONS.iter().find(|(p, _)| {
        let parts: Vec<&str> = p.split('.').collect();
        keys.starts_with(&parts)
    });
    let (shown, reason) = match (channel_reason, option_reason) {
        (Some((_, reason)), _) => (render(&s), (*reason).to_owned()),
        // Point at the refused section itself, not at a key inside it.
        (None, Some((p, reason))) => ((*p).to_owned(), (*reason).to_owned()),
        (None, None) => (
            render(&s),
            "Rotor does not know this option (see COMPATIBILITY.md for the options it implements)"
                .to_owned(),
        ),
    };
    ConfigError::Unsupported {
        path: shown,
        reason,
    }
}

/// Keys of `client.subscription_token` besides the token options (it flattens them, which
/// hides unknown keys from the general check).
const SUBSCRIPTION_TOKEN_OWN_KEYS: &[&str] = &["enabled"];

/// Refuses unknown keys under `client.subscription_token`, whose token options are flattened
/// into it (serde does not report what a flattened struct leaves over).
pub(crate) fn check_flattened(value: &Value) -> Result<(), ConfigError> {
    let Some(section) = value
        .get("client")
        .and_then(|c| c.get("subscription_token"))
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    for key in section.keys() {
        let known = SUBSCRIPTION_TOKEN_OWN_KEYS.contains(&key.as_str())
            || crate::sections::TOKEN_OPTION_NAMES.contains(&key.as_str());
        if !known {
            return Err(ConfigError::Unsupported {
                path: format!("client.subscription_token.{key}"),
                reason: "Rotor does not know this option (see COMPATIBILITY.md for the options it implements)"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

/// `COMPATIBILITY.md`: the channel options Rotor implements, those it refuses and why, and the
/// other Centrifugo v6 options it refuses. Generated from the schema, checked by a test.
pub fn compatibility_markdown() -> String {
    let mut out = String::from(
        "# Centrifugo v6 option compatibility\n\n\
         Generated from the config schema in `data-plane/tenant-config` \
         (`cargo test -p rotor-tenant-config --test compatibility` checks it; run it with \
         `ROTOR_REGENERATE=1` to rewrite this file). Rotor accepts a Centrifugo v6 config file \
         for what it implements and refuses everything else at load, naming the option's path \
         and the reason: the data plane does not start with such a file, and the control plane \
         answers 400. No option is accepted and then ignored.\n\n\
         ## Channel options (`channel.without_namespace`, `channel.namespaces[]`)\n\n\
         | Option | Rotor |\n|---|---|\n",
    );
    for (name, doc) in CHANNEL_OPTION_DOCS {
        out.push_str(&format!(
            "| `{name}` | supported: {} |\n",
            doc.trim().replace('|', "\\|")
        ));
    }
    for (name, reason) in REFUSED_CHANNEL_OPTIONS {
        out.push_str(&format!("| `{name}` | refused: {reason} |\n"));
    }
    out.push_str(
        "\n## Other Centrifugo v6 options Rotor refuses\n\n\
         Any option not in Rotor's schema is refused; these are the ones with a known reason.\n\n\
         | Option | Reason |\n|---|---|\n",
    );
    for (path, reason) in REFUSED_OPTIONS {
        out.push_str(&format!("| `{path}` | {reason} |\n"));
    }
    out.push_str(
        "\n## Other Centrifugo v6 options of note\n\n\
         | Option | Rotor |\n|---|---|\n",
    );
    for (path, what) in NOTED_OPTIONS {
        out.push_str(&format!("| `{path}` | supported: {what} |\n"));
    }
    out.push_str(
        "\n## Options a hosted project may not set\n\n\
         A standalone data plane implements these; the control plane refuses them in a hosted \
         project's settings, and a data plane the control plane runs refuses a config that sets \
         them.\n\n\
         | Option | Why |\n|---|---|\n",
    );
    for (path, why) in STANDALONE_ONLY_OPTIONS {
        out.push_str(&format!("| `{path}` | {why} |\n"));
    }
    out.push_str(
        "\n## Environment variables\n\n\
         Options outside `channel.namespaces` entries can also be set by an environment variable \
         named after their path, as Centrifugo does: `CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY`, `CENTRIFUGO_LOG_LEVEL`, \
         `CENTRIFUGO_CHANNEL_NAMESPACES` (JSON), `CENTRIFUGO_CLIENT_ALLOWED_ORIGINS` (words \
         separated by spaces). `ROTOR_…` names work the same and win over `CENTRIFUGO_…` ones. A \
         `CENTRIFUGO_…` variable for an option Rotor refuses is refused; one Rotor does not know \
         is logged as a warning. Hosted tenants do not read the control plane's environment.\n",
    );
    out
}
