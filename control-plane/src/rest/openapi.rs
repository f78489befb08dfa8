//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of the REST API, built from the route
//! table below and from the channel option schema in `rotor-tenant-config`, so it cannot drift
//! from the namespace fields the API accepts. Every operation has a tag ([`TAGS`]); the
//! dashboard renders this same document as its API reference page.

use axum::Json;
use rotor_tenant_config::{ChannelOptions, CHANNEL_OPTION_NAMES};
use serde_json::{json, Map, Value};

/// (method, path, summary, request body schema, success status).
pub const ROUTES: &[(&str, &str, &str, Option<&str>, u16)] = &[
    (
        "post",
        "/v1/signup",
        "Create an account",
        Some("Credentials"),
        201,
    ),
    (
        "post",
        "/v1/tokens",
        "Exchange email and password for a management token (shown once)",
        Some("TokenRequest"),
        201,
    ),
    ("get", "/v1/tokens", "List management tokens", None, 200),
    (
        "delete",
        "/v1/tokens/{id}",
        "Revoke a management token",
        None,
        204,
    ),
    ("get", "/v1/projects", "List projects", None, 200),
    (
        "post",
        "/v1/projects",
        "Create a project",
        Some("ProjectCreate"),
        201,
    ),
    (
        "get",
        "/v1/projects/{id}",
        "Get a project with its endpoints",
        None,
        200,
    ),
    (
        "patch",
        "/v1/projects/{id}",
        "Rename or change settings (plan and status are the operator's: 403 operator_only)",
        Some("ProjectPatch"),
        200,
    ),
    (
        "delete",
        "/v1/projects/{id}",
        "Delete a project and stop its tenant",
        None,
        204,
    ),
    (
        "get",
        "/v1/projects/{id}/secrets",
        "Reveal the token HMAC secret",
        None,
        200,
    ),
    (
        "post",
        "/v1/projects/{id}/secrets/rotate",
        "Rotate the token HMAC secret",
        Some("Rotate"),
        200,
    ),
    (
        "get",
        "/v1/projects/{id}/api-keys",
        "List API keys",
        None,
        200,
    ),
    (
        "post",
        "/v1/projects/{id}/api-keys",
        "Create an API key (shown once)",
        Some("ApiKeyCreate"),
        201,
    ),
    (
        "delete",
        "/v1/projects/{id}/api-keys/{key_id}",
        "Revoke an API key",
        None,
        204,
    ),
    (
        "get",
        "/v1/projects/{id}/audit",
        "Changes to the project, newest first (?before=<id> for the next page)",
        None,
        200,
    ),
    (
        "get",
        "/v1/projects/{id}/events",
        "What happened to the project's process (restarts after exceeding its memory limit or a crash)",
        None,
        200,
    ),
    (
        "get",
        "/v1/projects/{id}/usage",
        "Usage over time: connections, subscriptions, messages, API calls, errors and bytes per step",
        None,
        200,
    ),
    (
        "get",
        "/v1/projects/{id}/usage/live",
        "The current minute's usage as Server-Sent Events",
        None,
        200,
    ),
    (
        "get",
        "/v1/projects/{id}/namespaces",
        "List namespaces",
        None,
        200,
    ),
    (
        "put",
        "/v1/projects/{id}/namespaces/{name}",
        "Create or replace a namespace",
        Some("ChannelOptions"),
        200,
    ),
    (
        "get",
        "/v1/projects/{id}/namespaces/{name}",
        "Get a namespace",
        None,
        200,
    ),
    (
        "delete",
        "/v1/projects/{id}/namespaces/{name}",
        "Delete a namespace",
        None,
        204,
    ),
    (
        "get",
        "/v1/projects/{id}/webhooks",
        "Webhook deliveries of the running project: events waiting and the failed deliveries it keeps (dead letters)",
        None,
        200,
    ),
    (
        "post",
        "/v1/projects/{id}/consumers/{name}/outbox",
        "Create the outbox table (with its partition index and NOTIFY trigger) of the PostgreSQL consumer `name` in your database, if absent: public addresses only, never the service's own database; 502 when your database is unreachable or refuses",
        None,
        200,
    ),
    (
        "post",
        "/v1/projects/{id}/webhooks/redeliver",
        "Send failed webhook deliveries again, with their webhook ids, signed with the current secret",
        Some("Redeliver"),
        200,
    ),
];

/// The groups operations are listed in: (name, description).
pub const TAGS: &[(&str, &str)] = &[
    (
        "Accounts and tokens",
        "Open an account and exchange its email and password for management tokens.",
    ),
    (
        "Projects",
        "Each project is one isolated real-time server with its own endpoints.",
    ),
    (
        "Keys and secrets",
        "Server API keys for your backend and the secret that signs connection tokens.",
    ),
    (
        "Namespaces",
        "Channel options per namespace (the part of a channel name before the colon).",
    ),
    (
        "Activity",
        "Usage, the audit log and what happened to the project's process.",
    ),
];

/// The tag of an operation on `path`.
pub fn tag_of(path: &str) -> &'static str {
    if path == "/v1/signup" || path.starts_with("/v1/tokens") {
        TAGS[0].0
    } else if path.contains("/api-keys") || path.contains("/secrets") {
        TAGS[2].0
    } else if path.contains("/namespaces") {
        TAGS[3].0
    } else if path.ends_with("/audit") || path.ends_with("/events") || path.contains("/usage") {
        TAGS[4].0
    } else {
        TAGS[1].0
    }
}

/// Query parameters: (path, name, description).
const QUERY: &[(&str, &str, &str)] = &[
    (
        "/v1/projects/{id}/usage",
        "from",
        "RFC 3339 instant; default: one hour before `to`",
    ),
    (
        "/v1/projects/{id}/usage",
        "to",
        "RFC 3339 instant; default: now",
    ),
    (
        "/v1/projects/{id}/usage",
        "step",
        "minute (at most 2 days), hour or day; default: by the span",
    ),
    (
        "/v1/projects/{id}/usage",
        "namespace",
        "one namespace's usage; default: the whole project",
    ),
    (
        "/v1/projects/{id}/audit",
        "before",
        "an entry id: the page of older entries",
    ),
];

fn channel_options_schema() -> Value {
    let defaults = serde_json::to_value(ChannelOptions::default()).unwrap_or_default();
    let mut props = Map::new();
    for name in CHANNEL_OPTION_NAMES {
        let schema = match *name {
            "history_size" => json!({"type": "integer", "minimum": 0, "default": 0}),
            "history_ttl" | "history_meta_ttl" => {
                json!({"type": "string", "description": "Go duration, e.g. \"300s\"", "default": "0s"})
            }
            "force_recovery_mode" => {
                json!({"type": "string", "enum": ["stream", "cache"], "default": "stream"})
            }
            "publication_data_format" => {
                json!({"type": "string", "enum": ["", "json", "json_object", "binary"], "default": ""})
            }
            "channel_regex" => json!({"type": "string", "default": ""}),
            "allowed_delta_types" => json!({
                "type": "array",
                "items": {"type": "string", "enum": ["fossil"]},
                "uniqueItems": true,
                "default": []
            }),
            n if n.ends_with("_proxy_name") => {
                json!({"type": "string", "default": defaults.get(n).cloned().unwrap_or(json!("default"))})
            }
            _ => json!({"type": "boolean", "default": false}),
        };
        props.insert((*name).to_owned(), schema);
    }
    json!({"type": "object", "additionalProperties": false, "properties": props})
}

/// The document.
pub fn spec() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, body, status) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": {
                status.to_string(): {"description": "success"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
            },
        });
        let public = *path == "/v1/signup" || (*path == "/v1/tokens" && *method == "post");
        if !public {
            op["security"] = json!([{"bearer": []}]);
        }
        if let Some(schema) = body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        op["tags"] = json!([tag_of(path)]);
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if *method == "get" {
            params.extend(QUERY.iter().filter(|(p, _, _)| p == path).map(|(_, name, description)| {
                json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
            }));
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Rotor control plane API", "version": env!("CARGO_PKG_VERSION")},
        "tags": TAGS.iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}},
                "Credentials": {"type": "object", "required": ["email", "password"], "properties": {
                    "email": {"type": "string", "format": "email"}, "password": {"type": "string", "minLength": 10}}},
                "TokenRequest": {"type": "object", "required": ["email", "password", "name"], "properties": {
                    "email": {"type": "string"}, "password": {"type": "string"}, "name": {"type": "string"},
                    "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 365,
                        "description": "days until the token stops working; absent or null: never (the token answer and GET /v1/tokens show expires_at)"}}},
                "ProjectCreate": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "engine": {"type": "string", "enum": ["memory", "redis"],
                        "description": "redis needs an open Redis deployment or the installation's Redis; without either, 400 with field engine"}}},
                "ProjectPatch": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "settings": {"type": "object", "properties": {
                        "allowed_origins": {"type": "array", "items": {"type": "string"}},
                        "allow_anonymous_connect_without_token": {"type": "boolean"},
                        "without_namespace": {"$ref": "#/components/schemas/ChannelOptions"},
                        "client_proxy": {"type": "object", "description": "connect and refresh proxies: {\"connect\": {\"enabled\": true, \"endpoint\": \"https://…\", \"timeout\": \"1s\", \"http_headers\": […]}, \"refresh\": {…}}", "properties": {
                            "connect": {"$ref": "#/components/schemas/Proxy"}, "refresh": {"$ref": "#/components/schemas/Proxy"}}},
                        "channel_proxy": {"type": "object", "description": "the proxies namespaces use by default (subscribe_proxy_enabled, …)", "properties": {
                            "subscribe": {"$ref": "#/components/schemas/Proxy"}, "publish": {"$ref": "#/components/schemas/Proxy"}, "sub_refresh": {"$ref": "#/components/schemas/Proxy"}}},
                        "proxies": {"type": "array", "description": "named proxies, referred to by *_proxy_name options", "items": {"$ref": "#/components/schemas/Proxy"}},
                        "rpc": {"type": "object", "description": "rpc.proxy, rpc.without_namespace, rpc.namespaces as in Centrifugo"},
                        "user_status": {"type": "object", "description": "the server API's user_status method (off unless enabled)", "properties": {
                            "enabled": {"type": "boolean"},
                            "last_seen_ttl": {"type": "string", "example": "24h", "description": "how long a user's last-seen time is kept: 1m to 168h (default 24h)"}}},
                        "grpc_api": {"type": "object", "description": "Centrifugo's gRPC server API (api.proto) over HTTP/2 at the project's own host on the edge (or with `rotor-project: <slug>` metadata), with the project's API keys as `authorization: apikey <key>`; off unless enabled", "properties": {
                            "enabled": {"type": "boolean"}}},
                        "webhooks": {"$ref": "#/components/schemas/Webhooks"},
                        "consumers": {"$ref": "#/components/schemas/Consumers"}}}}},
                "Proxy": {"type": "object", "properties": {
                    "name": {"type": "string"}, "enabled": {"type": "boolean"}, "endpoint": {"type": "string", "format": "uri"},
                    "timeout": {"type": "string", "example": "1s"}, "http_headers": {"type": "array", "items": {"type": "string"}},
                    "emulated_headers": {"type": "array", "items": {"type": "string"}},
                    "http": {"type": "object", "properties": {"static_headers": {"type": "object", "additionalProperties": {"type": "string"}}}},
                    "include_connection_meta": {"type": "boolean"}, "binary_encoding": {"type": "boolean"}}},
                "Redeliver": {"type": "object", "description": "one of webhook_id or all", "properties": {
                    "webhook_id": {"type": "string", "description": "the X-Rotor-Webhook-Id of one failed delivery"},
                    "all": {"type": "boolean", "description": "every failed delivery the project keeps"}}},
                "Rotate": {"type": "object", "properties": {"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 604800}}},
                "ApiKeyCreate": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "description": "unique within the project"},
                    "scope": {"type": "string", "enum": ["all", "publish"], "default": "all",
                              "description": "publish: the key may call publish and broadcast only (other methods answer error 103)"}}},
                "ChannelOptions": channel_options_schema(),
                "Webhooks": webhooks_schema(),
                "Consumers": consumers_schema(),
            }
        }
    })
}

/// `settings.webhooks` (its own function: one `json!` of the whole document would be too deep).
fn webhooks_schema() -> Value {
    json!({"type": "object", "description": "channel and connection events POSTed to your backend, signed (X-Rotor-Signature: sha256=HMAC of the body); off unless enabled", "properties": {
        "enabled": {"type": "boolean"},
        "url": {"type": "string", "format": "uri", "description": "https:// or http:// URL at a public address"},
        "secret": {"type": "string", "minLength": 16, "description": "the HMAC key; stored sealed, shown only to the owner"},
        "events": {"type": "array", "items": {"type": "string", "enum": ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_disconnected"]}, "description": "default: all"},
        "grace": {"type": "string", "example": "5s", "description": "how long a removal waits for the matching addition, which cancels both (0 to 300s)"},
        "timeout": {"type": "string", "example": "5s", "description": "deadline of one delivery attempt (at most 10s)"}}})
}

/// `settings.consumers`: Centrifugo's `consumers` list with the hosted bounds.
fn consumers_schema() -> Value {
    json!({"type": "array", "maxItems": 4, "description": "asynchronous consumers (Centrifugo's shape): server API commands your backend writes to a PostgreSQL outbox, a Redis stream or a NATS JetStream stream, run by the project. Servers must be at public addresses (ports 5432, 6379, 6380, 4222 unless the operator says otherwise); DSNs, addresses, URLs, passwords, tokens and client keys are stored sealed and shown only to the owner",
        "items": {"type": "object", "required": ["name", "type"], "properties": {
            "enabled": {"type": "boolean"},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_]{2,}$"},
            "type": {"type": "string", "enum": ["postgresql", "redis_stream", "nats_jetstream"]},
            "postgresql": {"type": "object", "properties": {
                "dsn": {"type": "string", "example": "postgresql://app:password@db.example.com:5432/app", "description": "no sslmode require/verify-* (the consumers' client has no TLS), no file options"},
                "outbox_table_name": {"type": "string", "example": "centrifugo_outbox"},
                "num_partitions": {"type": "integer", "minimum": 1, "maximum": 8},
                "partition_select_limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                "partition_poll_interval": {"type": "string", "example": "300ms", "description": "at least 100ms"},
                "partition_notification_channel": {"type": "string", "description": "LISTEN/NOTIFY channel the outbox trigger notifies (letters, digits, _)"},
                "use_try_lock": {"type": "boolean"}}},
            "redis_stream": {"type": "object", "properties": {
                "address": {"type": "string", "example": "rediss://:password@redis.example.com:6380"},
                "streams": {"type": "array", "maxItems": 8, "items": {"type": "string"}},
                "consumer_group": {"type": "string"},
                "num_workers": {"type": "integer", "minimum": 1, "maximum": 4},
                "visibility_timeout": {"type": "string", "example": "30s"},
                "payload_value": {"type": "string"}, "method_value": {"type": "string"},
                "publication_data_mode": {"type": "object"},
                "tls": {"type": "object", "description": "enabled, server_ca_pem, cert_pem, key_pem (PEM text; no *_file, no insecure_skip_verify)"}}},
            "nats_jetstream": {"type": "object", "required": ["url"], "properties": {
                "url": {"type": "string", "example": "nats://nats.example.com:4222", "description": "one server; tls:// only with an IP address"},
                "username": {"type": "string"}, "password": {"type": "string"}, "token": {"type": "string"},
                "stream_name": {"type": "string"}, "subjects": {"type": "array", "items": {"type": "string"}},
                "durable_consumer_name": {"type": "string"},
                "deliver_policy": {"type": "string", "enum": ["new", "all"]},
                "max_ack_pending": {"type": "integer", "minimum": 1, "maximum": 1000},
                "method_header": {"type": "string"}, "publication_data_mode": {"type": "object"}}}}}})
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
