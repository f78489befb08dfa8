//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of the REST API, derived from the
//! handlers' `#[utoipa::path]` annotations and their request and response types
//! (`ToSchema`), so it cannot drift from what the handlers take and answer; a test checks it
//! lists exactly the routes the router serves ([`super::ROUTES`]). Free-form parts the
//! service validates itself (a project's `settings`, a namespace's channel options) are
//! described here as JSON Schema, the channel options from `rotor-tenant-config`'s option list.
//! Every operation has a tag ([`TAGS`]); the dashboard renders this same document as its API
//! reference page.

use std::borrow::Cow;

use axum::Json;
use rotor_tenant_config::{ChannelOptions, CHANNEL_OPTION_NAMES};
use serde_json::{json, Map, Value};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ContentBuilder, Info, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use super::{accounts, consumers, namespaces, projects, usage, webhooks, ErrorBody};

/// Tag of sign-up and management tokens.
pub const ACCOUNTS: &str = "Accounts and tokens";
/// Tag of projects and what runs in them.
pub const PROJECTS: &str = "Projects";
/// Tag of API keys and the token secret.
pub const KEYS: &str = "Keys and secrets";
/// Tag of channel namespaces.
pub const NAMESPACES: &str = "Namespaces";
/// Tag of usage, the audit log and process events.
pub const ACTIVITY: &str = "Activity";

/// The groups operations are listed in: (name, description).
pub const TAGS: &[(&str, &str)] = &[
    (
        ACCOUNTS,
        "Open an account, exchange its email and password for management tokens, and read this description of the API.",
    ),
    (
        PROJECTS,
        "Each project is one isolated real-time server with its own endpoints.",
    ),
    (
        KEYS,
        "Server API keys for your backend and the secret that signs connection tokens.",
    ),
    (
        NAMESPACES,
        "Channel options per namespace (the part of a channel name before the colon).",
    ),
    (
        ACTIVITY,
        "Usage, the audit log and what happened to the project's process.",
    ),
];

/// The document's operations (the handlers) and what every operation shares ([`Common`]).
#[derive(OpenApi)]
#[openapi(
    paths(
        accounts::signup,
        accounts::create_token,
        accounts::list_tokens,
        accounts::delete_token,
        projects::list,
        projects::create,
        projects::get,
        projects::patch,
        projects::delete,
        projects::get_secrets,
        projects::rotate_secret,
        projects::list_keys,
        projects::create_key,
        projects::delete_key,
        projects::audit_entries,
        namespaces::list,
        namespaces::put,
        namespaces::get,
        namespaces::delete,
        usage::query,
        usage::live,
        usage::events,
        webhooks::get_deliveries,
        webhooks::post_redeliver,
        consumers::post_outbox,
        document,
    ),
    modifiers(&Common)
)]
pub struct ApiDoc;

/// What every operation shares: the title and version, the tags in [`TAGS`] order, the
/// bearer scheme, the error answers (400, 401, 404 in the `Error` shape) and the schemas
/// `settings` refers to.
struct Common;

impl Modify for Common {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        api.info = Info::new("Rotor control plane API", env!("CARGO_PKG_VERSION"));
        api.tags = Some(
            TAGS.iter()
                .map(|(name, description)| {
                    TagBuilder::new()
                        .name(*name)
                        .description(Some(*description))
                        .build()
                })
                .collect(),
        );
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = ResponseBuilder::new()
            .description("error")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        ErrorBody::name(),
                    ))))
                    .build(),
            )
            .build();
        components.responses.insert("Error".into(), error.into());
        let mut schemas = Vec::new();
        ErrorBody::schemas(&mut schemas);
        schemas.push((ErrorBody::name().into(), ErrorBody::schema()));
        for (name, schema) in [
            (ChannelOptionsSchema::name(), ChannelOptionsSchema::schema()),
            (ProxySchema::name(), ProxySchema::schema()),
            (WebhooksSchema::name(), WebhooksSchema::schema()),
            (ConsumersSchema::name(), ConsumersSchema::schema()),
        ] {
            schemas.push((name.into(), schema));
        }
        components.schemas.extend(schemas);
        for item in api.paths.paths.values_mut() {
            for op in operations(item) {
                for status in ["400", "401", "404"] {
                    op.responses
                        .responses
                        .entry(status.into())
                        .or_insert_with(|| {
                            RefOr::Ref(utoipa::openapi::Ref::from_response_name("Error"))
                        });
                }
            }
        }
    }
}

/// The operations of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// A schema written as JSON Schema (for the free-form parts the service checks itself).
pub fn schema_of(json: Value) -> RefOr<Schema> {
    serde_json::from_value(json).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a JSON Schema of the API document does not read");
        RefOr::T(Schema::default())
    })
}

/// The path's `{id}`: a project of the token's account.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// the project's id (prj_…)
    pub id: String,
}

/// The path's `{name}`: a namespace of the project.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NamespacePath {
    /// the namespace's name (the part of a channel name before the colon)
    pub name: String,
}

/// Declares a named schema written as JSON Schema by `$build`.
macro_rules! json_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $build:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                schema_of($build)
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

json_schema!(
    /// A namespace's channel options (every one of `rotor-tenant-config`'s option names).
    ChannelOptionsSchema,
    "ChannelOptions",
    channel_options_schema()
);
json_schema!(
    /// A proxy of `settings` (connect, refresh, subscribe, publish, named ones).
    ProxySchema,
    "Proxy",
    proxy_schema()
);
json_schema!(
    /// `settings.webhooks`.
    WebhooksSchema,
    "Webhooks",
    webhooks_schema()
);
json_schema!(
    /// `settings.consumers`.
    ConsumersSchema,
    "Consumers",
    consumers_schema()
);

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

/// A project's `settings` (what `PATCH` takes and a project shows).
pub fn settings_schema() -> RefOr<Schema> {
    schema_of(json!({"type": "object", "properties": {
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
        "consumers": {"$ref": "#/components/schemas/Consumers"}}}))
}

fn proxy_schema() -> Value {
    json!({"type": "object", "properties": {
        "name": {"type": "string"}, "enabled": {"type": "boolean"}, "endpoint": {"type": "string", "format": "uri"},
        "timeout": {"type": "string", "example": "1s"}, "http_headers": {"type": "array", "items": {"type": "string"}},
        "emulated_headers": {"type": "array", "items": {"type": "string"}},
        "http": {"type": "object", "properties": {"static_headers": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "include_connection_meta": {"type": "boolean"}, "binary_encoding": {"type": "boolean"}}})
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

/// The document, as JSON.
pub fn spec() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = ACCOUNTS, operation_id = "openapi",
    summary = "This description of the API (OpenAPI 3.1)",
    responses((status = 200, description = "the document", body = Object, content_type = "application/json")))]
pub async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::rest::ROUTES;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves_with_their_methods() {
        let doc = spec();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                METHODS
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(move |m| ((*m).to_owned(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(served.len(), ROUTES.len(), "no route is declared twice");
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let not_served: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && not_served.is_empty(),
            "served but not documented: {undocumented:?}; documented but not served: {not_served:?}"
        );
        // The router is built from the same list (and would panic on a method declared twice
        // for one path).
        let _ = crate::rest::router();
    }

    #[test]
    fn the_document_is_openapi_3_1_with_schemas_for_every_body_and_answer() {
        let doc = spec();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Rotor control plane API");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        // An independent reader takes it as OpenAPI 3.1.
        let text = serde_json::to_string(&doc).expect("serialises");
        let parsed = oas3::from_json(&text).expect("an OpenAPI 3.1 document");
        parsed.validate_version().expect("a supported version");
        let tags: Vec<&str> = TAGS.iter().map(|t| t.0).collect();
        let mut operations = 0;
        for (path, method, op) in parsed.operations() {
            operations += 1;
            let at = format!("{method} {path}");
            assert!(
                op.summary.as_deref().is_some_and(|s| !s.is_empty()),
                "{at}: summary"
            );
            assert_eq!(op.tags.len(), 1, "{at}: one tag");
            assert!(
                tags.contains(&op.tags[0].as_str()),
                "{at}: tag {}",
                op.tags[0]
            );
            for param in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            {
                let declared = op.parameters.iter().any(|p| {
                    p.resolve(&parsed)
                        .is_ok_and(|p| p.name == param && p.required == Some(true))
                });
                assert!(declared, "{at}: path parameter {param}");
            }
            if let Some(body) = &op.request_body {
                let body = body.resolve(&parsed).expect("request body");
                body.content["application/json"]
                    .schema
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: request body schema"))
                    .resolve(&parsed)
                    .unwrap_or_else(|e| panic!("{at}: request body schema: {e}"));
            }
            let responses = op.responses.as_ref().expect("responses");
            for status in ["400", "401", "404"] {
                assert!(responses.contains_key(status), "{at}: {status}");
            }
            let successes: Vec<_> = responses
                .iter()
                .filter(|(s, _)| s.starts_with('2'))
                .collect();
            assert!(!successes.is_empty(), "{at}: a success answer");
            for (status, answer) in responses {
                let answer = answer.resolve(&parsed).expect("answer");
                if status == "204" {
                    assert!(answer.content.is_empty(), "{at}: 204 has no body");
                    continue;
                }
                assert_eq!(answer.content.len(), 1, "{at}: {status} has one body");
                for media in answer.content.values() {
                    media
                        .schema
                        .as_ref()
                        .unwrap_or_else(|| panic!("{at}: {status} schema"))
                        .resolve(&parsed)
                        .unwrap_or_else(|e| panic!("{at}: {status} schema: {e}"));
                }
            }
        }
        assert_eq!(operations, ROUTES.len());
        let ids: BTreeSet<String> = parsed
            .operations()
            .filter_map(|(_, _, op)| op.operation_id.clone())
            .collect();
        assert_eq!(
            ids.len(),
            operations,
            "every operation has its own operationId"
        );
        // Every reference leads somewhere.
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let target = r.strip_prefix('#').and_then(|pointer| doc.pointer(pointer));
            assert!(target.is_some(), "dangling {r}");
        }
        // Public calls need no token; the rest a management token.
        for (method, path) in ROUTES {
            let op = &doc["paths"][*path][*method];
            let public = matches!(
                (*method, *path),
                ("post", "/v1/signup") | ("post", "/v1/tokens") | ("get", "/v1/openapi.json")
            );
            assert_eq!(
                op.get("security").is_none(),
                public,
                "{method} {path}: security"
            );
        }
    }

    #[test]
    fn the_schemas_written_as_json_read_without_loss() {
        for (name, json) in [
            ("ChannelOptions", channel_options_schema()),
            ("Proxy", proxy_schema()),
            ("Webhooks", webhooks_schema()),
            ("Consumers", consumers_schema()),
        ] {
            let read = serde_json::to_value(schema_of(json.clone())).expect("serialises");
            assert_eq!(read, json, "{name}");
        }
        let settings = serde_json::to_value(settings_schema()).expect("serialises");
        assert_eq!(
            settings["properties"]["webhooks"]["$ref"],
            "#/components/schemas/Webhooks"
        );
        assert!(
            settings["properties"]["user_status"]["properties"]["last_seen_ttl"]["example"]
                .is_string()
        );
    }

    #[test]
    fn every_channel_option_and_the_token_expiry_bounds_are_described() {
        let doc = spec();
        let schemas = &doc["components"]["schemas"];
        let props = schemas["ChannelOptions"]["properties"]
            .as_object()
            .expect("channel options");
        for name in CHANNEL_OPTION_NAMES {
            assert!(props.contains_key(*name), "{name} missing");
        }
        let days = &schemas["TokenRequest"]["properties"]["expires_in_days"];
        assert_eq!(
            (&days["minimum"], &days["maximum"]),
            (&json!(1), &json!(365))
        );
        let put = &doc["paths"]["/v1/projects/{id}/namespaces/{name}"]["put"];
        assert_eq!(
            put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ChannelOptions"
        );
    }
}
