//! Reading a config: parse JSON, TOML or YAML, overlay `ROTOR_…` and `CENTRIFUGO_…` environment
//! variables, and refuse a bad config with the path of the bad field, including any option
//! Rotor does not implement (see [`crate::refuse`]).

use std::path::Path;

use serde_json::{Map, Value};

use crate::refuse;
use crate::sections::TenantConfig;
use crate::validate;

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid JSON, TOML or YAML.
    #[error("config is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    /// A field has the wrong type or a bad value.
    #[error("invalid config at `{path}`: {message}")]
    Invalid { path: String, message: String },
    /// The config sets an option Rotor does not implement.
    #[error("unsupported option `{path}`: {reason}")]
    Unsupported { path: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The dotted path of the bad field, when the error is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Invalid { path, .. } | Self::Unsupported { path, .. } => Some(path),
            _ => None,
        }
    }

    /// What is wrong, without the path (for callers that show the path separately).
    pub fn reason(&self) -> String {
        match self {
            Self::Invalid { message, .. } => message.clone(),
            Self::Unsupported { reason, .. } => format!("not supported by Rotor: {reason}"),
            other => other.to_string(),
        }
    }
}

/// Config file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
    Yaml,
}

impl Format {
    /// The format a file name suggests (JSON when unsure).
    pub fn from_path(path: &Path) -> Self {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("toml") => Format::Toml,
            Some("yaml") | Some("yml") => Format::Yaml,
            _ => Format::Json,
        }
    }
}

/// A validated config.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: TenantConfig,
    /// `CENTRIFUGO_…` variables of the environment that name no option (to warn about).
    pub unknown_env: Vec<String>,
}

impl Loaded {
    /// What the loader warns about but accepted, one sentence each (empty for a config that
    /// loaded cleanly). Unknown and refused options are errors, not warnings.
    pub fn warnings(&self) -> Vec<String> {
        self.unknown_env
            .iter()
            .map(|name| format!("environment variable {name} names no option Rotor knows"))
            .collect()
    }
}

impl TenantConfig {
    /// Reads, overlays the process environment (`ROTOR_…`, `CENTRIFUGO_…`) and validates a
    /// config file.
    pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::with_env(parse_text(&text, Format::from_path(path))?)
    }

    /// The defaults with the process environment (`ROTOR_…`, `CENTRIFUGO_…`) overlaid and
    /// validated: what a data plane started without a config file runs.
    pub fn load_env() -> Result<Loaded, ConfigError> {
        Self::with_env(Value::Object(Map::new()))
    }

    /// `value` with the process environment overlaid, validated.
    fn with_env(mut value: Value) -> Result<Loaded, ConfigError> {
        let unknown_env = overlay_env(&mut value, std::env::vars())?;
        let mut loaded = Self::from_value(value)?;
        loaded.unknown_env = unknown_env;
        Ok(loaded)
    }

    /// Parses and validates config text in the given format (no environment overlay).
    pub fn parse(text: &str, format: Format) -> Result<Loaded, ConfigError> {
        Self::from_value(parse_text(text, format)?)
    }

    /// Deserialises and validates an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Loaded, ConfigError> {
        let config = Self::from_value_unvalidated(&value)?;
        validate::validate(&config)?;
        Ok(Loaded {
            config,
            unknown_env: Vec::new(),
        })
    }

    /// Deserialises an already parsed JSON value as [`Self::from_value`] does (an unknown or
    /// refused option is an error naming its path) but without the validation pass: for a
    /// caller that builds a config from stored pieces, completes it in its own fields, and then
    /// loads the whole with [`Self::from_value`] (the control plane's compile).
    pub fn from_value_unvalidated(value: &Value) -> Result<Self, ConfigError> {
        let mut refused = None;
        // serde_path_to_error tracks the path; serde_ignored reports keys no field took.
        let mut track = serde_path_to_error::Track::new();
        let inner = serde_path_to_error::Deserializer::new(value, &mut track);
        let result: Result<TenantConfig, _> = serde_ignored::deserialize(inner, |ignored| {
            refused.get_or_insert_with(|| refuse::refusal(&ignored));
        });
        let config = result.map_err(|err| {
            ConfigError::invalid(track.path().to_string(), strip_position(&err.to_string()))
        })?;
        if let Some(err) = refused {
            return Err(err);
        }
        refuse::check_flattened(value)?;
        Ok(config)
    }

    /// The config as pretty JSON (what the control plane pushes).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn parse_text(text: &str, format: Format) -> Result<Value, ConfigError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            format: "JSON",
            message: e.to_string(),
        }),
        Format::Toml => toml::from_str::<toml::Value>(text)
            .map_err(|e| ConfigError::Syntax {
                format: "TOML",
                message: e.to_string(),
            })
            .and_then(|v| {
                serde_json::to_value(v).map_err(|e| ConfigError::Syntax {
                    format: "TOML",
                    message: e.to_string(),
                })
            }),
        Format::Yaml => serde_yaml::from_str::<Value>(text).map_err(|e| ConfigError::Syntax {
            format: "YAML",
            message: e.to_string(),
        }),
    }
}

/// Applies the environment's config variables: `ROTOR_<PATH>` and, for a Centrifugo
/// deployment's environment, `CENTRIFUGO_<PATH>`, where PATH is an option's dotted path
/// upper-cased with `_` for `.` (e.g. `ROTOR_CLIENT_TOKEN_HMAC_SECRET_KEY`,
/// `CENTRIFUGO_HTTP_SERVER_PORT`). When both name one option, `ROTOR_…` wins. Values are read
/// as Centrifugo reads them, by the option's type: booleans as Go's `ParseBool` does (`1`,
/// `t`, `true`, `0`, `f`, `false`, …), lists as JSON or as words separated by spaces, strings
/// as they are, anything else as JSON (else as a string). Only paths the schema knows are
/// considered, so underscores inside names are unambiguous.
///
/// A `CENTRIFUGO_…` variable naming an option Rotor refuses is refused like the option in a
/// file; one naming nothing Rotor knows is returned (the caller warns about it, as Centrifugo
/// does) and otherwise ignored. Unknown `ROTOR_…` names are Rotor's own process settings.
pub(crate) fn overlay_env(
    value: &mut Value,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut rotor = std::collections::BTreeMap::new();
    let mut centrifugo = std::collections::BTreeMap::new();
    for (name, raw) in vars {
        if let Some(rest) = name.strip_prefix("ROTOR_") {
            rotor.insert(rest.to_owned(), raw);
        } else if let Some(rest) = name.strip_prefix("CENTRIFUGO_") {
            centrifugo.insert(rest.to_owned(), raw);
        }
    }
    for (path, kind) in known_paths() {
        let name = env_name(&path);
        // One variable sets one option (the longest path of that name: they come first).
        let raw = match (rotor.remove(&name), centrifugo.remove(&name)) {
            (Some(raw), _) | (None, Some(raw)) => raw,
            (None, None) => continue,
        };
        set_path(value, &path, kind.parse(raw))
            .map_err(|m| ConfigError::invalid(path.clone(), m))?;
    }
    let mut unknown = Vec::new();
    for name in centrifugo.into_keys() {
        let refused = crate::refuse::REFUSED_OPTIONS.iter().find(|(path, _)| {
            let prefix = env_name(path);
            name == prefix || name.starts_with(&format!("{prefix}_"))
        });
        if let Some((path, reason)) = refused {
            return Err(ConfigError::Unsupported {
                path: (*path).to_owned(),
                reason: format!("(set by CENTRIFUGO_{name}) {reason}"),
            });
        }
        unknown.push(format!("CENTRIFUGO_{name}"));
    }
    Ok(unknown)
}

fn env_name(path: &str) -> String {
    path.replace('.', "_").to_ascii_uppercase()
}

/// What an environment variable's text becomes, by the type of the option it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvKind {
    Bool,
    List,
    Text,
    /// Numbers and anything else: JSON, else a string.
    Json,
}

impl EnvKind {
    fn of(default: &Value) -> Self {
        match default {
            Value::Bool(_) => EnvKind::Bool,
            Value::Array(_) => EnvKind::List,
            Value::String(_) => EnvKind::Text,
            _ => EnvKind::Json,
        }
    }

    fn parse(self, raw: String) -> Value {
        match self {
            EnvKind::Bool => match raw.trim() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Value::Bool(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Value::Bool(false),
                // Left as text, so the option's path is named in the error.
                _ => Value::String(raw),
            },
            EnvKind::List if raw.trim_start().starts_with('[') => {
                serde_json::from_str(&raw).unwrap_or(Value::String(raw))
            }
            EnvKind::List => Value::Array(
                raw.split_whitespace()
                    .map(|w| Value::String(w.to_owned()))
                    .collect(),
            ),
            EnvKind::Text => Value::String(raw),
            EnvKind::Json => serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
        }
    }
}

/// Every leaf (and list) path of the default config, with the kind of value it takes; longest
/// first.
fn known_paths() -> Vec<(String, EnvKind)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, EnvKind)>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, child, out);
                }
            }
            _ => out.push((prefix.to_owned(), EnvKind::of(v))),
        }
    }
    let mut defaults = serde_json::to_value(TenantConfig::default()).unwrap_or(Value::Null);
    // Options that are skipped when empty still deserve an env name.
    for extra in [
        "client.token.hmac_secret_key",
        "client.token.rsa_public_key",
        "client.token.ecdsa_public_key",
        "client.token.jwks_public_endpoint",
        "client.token.audience",
        "client.token.issuer",
        "client.token.user_id_claim",
        "http_api.key",
        "http_api.error_mode",
        "log.level",
    ] {
        let _ = set_path(&mut defaults, extra, Value::String(String::new()));
    }
    let _ = set_path(&mut defaults, "prometheus.enabled", Value::Bool(false));
    let _ = set_path(&mut defaults, "consumers", Value::Array(Vec::new()));
    let _ = set_path(
        &mut defaults,
        "broker",
        serde_json::to_value(crate::broker::BrokerSection::default()).unwrap_or(Value::Null),
    );
    let _ = set_path(
        &mut defaults,
        "user_status",
        serde_json::to_value(crate::user_status::UserStatusSection::default())
            .unwrap_or(Value::Null),
    );
    let _ = set_path(
        &mut defaults,
        "grpc_api",
        serde_json::to_value(crate::grpc_api::GrpcApi::default()).unwrap_or(Value::Null),
    );
    for extra in ["grpc_api.key", "grpc_api.address"] {
        let _ = set_path(&mut defaults, extra, Value::String(String::new()));
    }
    let _ = set_path(
        &mut defaults,
        "webhooks",
        serde_json::to_value(crate::webhooks::WebhooksSection::default()).unwrap_or(Value::Null),
    );
    let mut out = Vec::new();
    walk("", &defaults, &mut out);
    // Longest first, so `client.token.hmac_secret_key` wins over a shorter accidental match.
    out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    out
}

fn set_path(root: &mut Value, path: &str, new: Value) -> Result<(), String> {
    let mut cur = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let map = cur.as_object_mut().ok_or("not an object")?;
        if i == parts.len() - 1 {
            map.insert((*part).to_owned(), new);
            return Ok(());
        }
        cur = map
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_centrifugo_v6_config_loads_with_its_option_names() {
        let text = r#"{
            "http_server": {"port": 9000},
            "client": {"token": {"hmac_secret_key": "s3cret"}, "allowed_origins": ["*"]},
            "http_api": {"key": "api"},
            "channel": {
                "without_namespace": {"allow_subscribe_for_client": true},
                "namespaces": [{"name": "chat", "history_size": 10, "history_ttl": "300s",
                                "force_recovery": true, "presence": true, "join_leave": true}]
            }
        }"#;
        let c = TenantConfig::parse(text, Format::Json).unwrap().config;
        assert_eq!(c.http_server.port, 9000);
        assert_eq!(c.client.token.hmac_secret_key, "s3cret");
        let chat = c.namespace("chat").unwrap();
        assert_eq!(chat.history_ttl.get().as_secs(), 300);
        assert!(chat.options().history_enabled());
        assert_eq!(c.client.ping_interval.get().as_secs(), 25);
    }

    #[test]
    fn unknown_options_are_refused_with_their_path() {
        for (text, path) in [
            (
                r#"{"client": {"insecure": true, "frobnicate": 1}}"#,
                "client.frobnicate",
            ),
            (
                r#"{"channel": {"namespaces": [{"name": "ns"}, {"name": "ns2", "bogus": true}]}}"#,
                "channel.namespaces[1].bogus",
            ),
            (
                r#"{"engine": {"type": "redis", "redis": {"sentinel_tls": {"enabled": true}}}}"#,
                "engine.redis.sentinel_tls",
            ),
            (
                r#"{"client": {"subscription_token": {"enabled": true, "hmac_secret": "x"}}}"#,
                "client.subscription_token.hmac_secret",
            ),
            (
                r#"{"log": {"file": "/var/log/centrifugo.log"}}"#,
                "log.file",
            ),
            (
                r#"{"prometheus": {"instrument_http_handlers": true}}"#,
                "prometheus.instrument_http_handlers",
            ),
            (r#"{"admin": {"enabled": true}}"#, "admin"),
        ] {
            let err = TenantConfig::parse(text, Format::Json).unwrap_err();
            assert!(
                matches!(err, ConfigError::Unsupported { .. }),
                "{text}: {err}"
            );
            assert_eq!(err.path(), Some(path), "{text}: {err}");
        }
        let err = TenantConfig::parse(
            r#"{"engine": {"redis": {"sentinel_client_name": "rotor"}}}"#,
            Format::Json,
        )
        .unwrap_err();
        assert!(err.to_string().contains("Sentinels"), "{err}");
    }

    #[test]
    fn an_unknown_channel_option_is_refused_with_its_path() {
        let text = r#"{"channel": {"without_namespace": {"subscribe_stream_proxy_frob": true}}}"#;
        let err = TenantConfig::parse(text, Format::Json).unwrap_err();
        assert_eq!(
            err.path(),
            Some("channel.without_namespace.subscribe_stream_proxy_frob"),
            "{err}"
        );
        assert!(err.reason().contains("COMPATIBILITY.md"), "{err}");
    }

    #[test]
    fn delta_options_load_and_an_unknown_delta_type_is_refused_with_its_path() {
        let ok = TenantConfig::parse(
            r#"{"channel": {"namespaces": [{"name": "docs", "allowed_delta_types": ["fossil"], "delta_publish": true}]}}"#,
            Format::Json,
        )
        .unwrap();
        let ns = &ok.config.channel.namespaces[0];
        assert_eq!(ns.allowed_delta_types, vec![crate::DeltaType::Fossil]);
        assert!(ns.delta_publish);
        let err = TenantConfig::parse(
            r#"{"channel": {"namespaces": [{"name": "docs", "allowed_delta_types": ["xdelta"]}]}}"#,
            Format::Json,
        )
        .unwrap_err();
        assert_eq!(
            err.path(),
            Some("channel.namespaces[0].allowed_delta_types[0]"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_field_is_refused_with_its_path() {
        let err = TenantConfig::parse(
            r#"{"channel": {"namespaces": [{"name": "ok"}, {"name": "x", "history_ttl": "5d"}]}}"#,
            Format::Json,
        )
        .unwrap_err();
        assert_eq!(
            err.path(),
            Some("channel.namespaces[1].history_ttl"),
            "{err}"
        );
        let err =
            TenantConfig::parse(r#"{"http_server": {"port": "high"}}"#, Format::Json).unwrap_err();
        assert_eq!(err.path(), Some("http_server.port"), "{err}");
    }

    #[test]
    fn toml_and_yaml_give_the_same_config_as_json() {
        let json = TenantConfig::parse(
            r#"{"client": {"insecure": true}, "channel": {"namespaces": [{"name": "chat", "presence": true}]}}"#,
            Format::Json,
        )
        .unwrap()
        .config;
        let toml = TenantConfig::parse(
            "[client]\ninsecure = true\n[[channel.namespaces]]\nname = \"chat\"\npresence = true\n",
            Format::Toml,
        )
        .unwrap()
        .config;
        let yaml = TenantConfig::parse(
            "client:\n  insecure: true\nchannel:\n  namespaces:\n    - name: chat\n      presence: true\n",
            Format::Yaml,
        )
        .unwrap()
        .config;
        assert_eq!(json, toml);
        assert_eq!(json, yaml);
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut value = serde_json::json!({"client": {"token": {"hmac_secret_key": "file"}}});
        overlay_env(
            &mut value,
            vec![
                (
                    "ROTOR_CLIENT_TOKEN_HMAC_SECRET_KEY".to_owned(),
                    "env".to_owned(),
                ),
                ("ROTOR_HTTP_SERVER_PORT".to_owned(), "9100".to_owned()),
                ("ROTOR_CLIENT_INSECURE".to_owned(), "true".to_owned()),
                ("UNRELATED".to_owned(), "x".to_owned()),
            ]
            .into_iter(),
        )
        .unwrap();
        let c = TenantConfig::from_value(value).unwrap().config;
        assert_eq!(c.client.token.hmac_secret_key, "env");
        assert_eq!(c.http_server.port, 9100);
        assert!(c.client.insecure);
    }

    fn overlaid(
        file: Value,
        vars: &[(&str, &str)],
    ) -> Result<(TenantConfig, Vec<String>), ConfigError> {
        let mut value = file;
        let unknown = overlay_env(
            &mut value,
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )?;
        Ok((TenantConfig::from_value(value)?.config, unknown))
    }

    #[test]
    fn centrifugo_environment_variables_set_options_and_rotor_ones_win() {
        let (c, unknown) = overlaid(
            serde_json::json!({"client": {"token": {"hmac_secret_key": "file"}}}),
            &[
                ("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY", "centrifugo"),
                ("CENTRIFUGO_HTTP_SERVER_PORT", "9200"),
                ("ROTOR_HTTP_SERVER_PORT", "9300"),
                ("CENTRIFUGO_HTTP_API_KEY", "12345"),
                ("CENTRIFUGO_CLIENT_INSECURE", "1"),
                (
                    "CENTRIFUGO_CLIENT_ALLOWED_ORIGINS",
                    "https://a.example https://b.example",
                ),
                ("CENTRIFUGO_LOG_LEVEL", "debug"),
                (
                    "CENTRIFUGO_CLIENT_SUBSCRIBE_TO_USER_PERSONAL_CHANNEL_ENABLED",
                    "true",
                ),
                (
                    "CENTRIFUGO_CHANNEL_NAMESPACES",
                    r#"[{"name": "chat", "presence": true}]"#,
                ),
                ("CENTRIFUGO_ADMIN_PASSWORD", "secret"),
            ],
        )
        .unwrap();
        assert_eq!(c.client.token.hmac_secret_key, "centrifugo");
        assert_eq!(c.http_server.port, 9300, "ROTOR_ wins");
        assert_eq!(c.http_api.key, "12345", "a string option stays a string");
        assert!(c.client.insecure);
        assert_eq!(
            c.client.allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
        assert_eq!(c.log_level(), Some("debug"));
        assert!(c.client.subscribe_to_user_personal_channel.enabled);
        assert!(c.namespace("chat").unwrap().presence);
        assert_eq!(unknown, vec!["CENTRIFUGO_ADMIN_PASSWORD".to_owned()]);

        let (c, _) = overlaid(
            serde_json::json!({}),
            &[
                ("CENTRIFUGO_CLIENT_INSECURE", "true"),
                ("ROTOR_CLIENT_INSECURE", "false"),
            ],
        )
        .unwrap();
        assert!(!c.client.insecure, "ROTOR_ wins over CENTRIFUGO_");
    }

    #[test]
    fn a_centrifugo_variable_for_a_refused_option_is_refused() {
        let err = overlaid(
            serde_json::json!({}),
            &[("CENTRIFUGO_ENGINE_REDIS_SENTINEL_CLIENT_NAME", "rotor")],
        )
        .unwrap_err();
        assert_eq!(
            err.path(),
            Some("engine.redis.sentinel_client_name"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("CENTRIFUGO_ENGINE_REDIS_SENTINEL_CLIENT_NAME"),
            "{err}"
        );
        // Cluster seeds are an implemented option now, a list of words.
        let (c, _) = overlaid(
            serde_json::json!({}),
            &[(
                "CENTRIFUGO_ENGINE_REDIS_CLUSTER_ADDRESS",
                "10.0.0.1:7000 10.0.0.2:7000",
            )],
        )
        .unwrap();
        assert_eq!(
            c.engine.redis.cluster_address.0,
            vec!["10.0.0.1:7000".to_owned(), "10.0.0.2:7000".to_owned()]
        );
        let err = overlaid(
            serde_json::json!({}),
            &[("CENTRIFUGO_UNI_GRPC_ENABLED", "true")],
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("uni_grpc"), "{err}");
        let (c, _) = overlaid(
            serde_json::json!({}),
            &[
                ("CENTRIFUGO_GRPC_API_ENABLED", "true"),
                ("CENTRIFUGO_GRPC_API_PORT", "10001"),
            ],
        )
        .unwrap();
        assert!(c.grpc_api.enabled);
        assert_eq!(c.grpc_api.port, 10001);
        let err = overlaid(
            serde_json::json!({}),
            &[("CENTRIFUGO_CLIENT_INSECURE", "maybe")],
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("client.insecure"), "{err}");
    }

    #[test]
    fn rendering_and_reloading_gives_the_same_config() {
        let mut c = TenantConfig::default();
        c.channel.namespaces.push(crate::Namespace::new(
            "chat",
            crate::ChannelOptions {
                presence: true,
                history_size: 5,
                history_ttl: crate::ConfigDuration::from_secs(60),
                ..Default::default()
            },
        ));
        let back = TenantConfig::parse(&c.to_json(), Format::Json).unwrap();
        assert_eq!(back.config, c);
    }
}
