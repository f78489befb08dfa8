//! The half of [`super::compile`] that reads no database: the rows one transaction read, with
//! their secrets opened, become the tenant's typed [`TenantConfig`] of the contract crate
//! (`rotor-tenant-config`). The customer's stored pieces (project settings, namespaces'
//! options, a Redis deployment's options) are read strictly by the contract, so an option it
//! does not know is refused with its path; everything the control plane decides itself (identity,
//! plan limits, token keys, API keys, listener, engine, transports) is set in typed fields. The
//! result is then serialised and loaded by the data plane's own loader ([`load`]), which must
//! accept it without a warning: what the tenant receives is exactly what loads.

use rotor_tenant_config::{
    ApiKeyEntry, ApiKeyScope, ConfigDuration, EngineSection, HttpServer, RotorSection,
    TenantConfig, Toggle, TokenSection,
};
use serde_json::Value;

use super::{CompileError, PlanLimits, TenantRow};
use crate::ids::ProjectId;

/// What a tenant's config is built from, secrets opened.
pub(super) struct Parts<'a> {
    pub row: &'a TenantRow,
    /// `client.token`: the project's token keys.
    pub token: TokenSection,
    /// `(id, sha256, scope)` of each API key, oldest first.
    pub api_keys: &'a [(String, String, String)],
    pub limits: &'a PlanLimits,
    /// The project's settings, secrets opened ([`crate::project_settings`]).
    pub settings: &'a Value,
    /// `(name, options)` of each namespace, by name.
    pub namespaces: &'a [(String, Value)],
    /// `engine.*`: the engine and, for Redis, where it is.
    pub engine: EngineSection,
    /// The dashboard's origin, always allowed besides the customer's own.
    pub dashboard_origin: Option<&'a str>,
}

/// The tenant's config from its parts (not yet loaded: see [`load`]).
pub(super) fn assemble(parts: Parts<'_>) -> Result<TenantConfig, CompileError> {
    let Parts {
        row,
        token,
        api_keys,
        limits,
        settings,
        namespaces,
        engine,
        dashboard_origin,
    } = parts;
    let invalid = |message: String| CompileError::Invalid {
        project: row.id.clone(),
        message,
    };
    // Settings were validated when set; one that no longer loads fails the compile here.
    let stored = crate::project_settings::with_namespaces(settings, namespaces)
        .map_err(|e| invalid(e.to_string()))?;
    let mut config =
        TenantConfig::from_value_unvalidated(&stored).map_err(|e| invalid(e.to_string()))?;

    // Channels without a namespace are held to the plan like namespaces (after a downgrade
    // too).
    let channel = &mut config.channel;
    let options = &mut channel.without_namespace;
    limits.clamp_history(&mut options.history_size, &mut options.history_ttl);
    for ns in &mut channel.namespaces {
        limits.clamp_history(&mut ns.history_size, &mut ns.history_ttl);
    }

    let client = &mut config.client;
    client.token = token;
    // The dashboard's debug console connects from the control plane's own origin, so it is
    // always allowed besides the customer's own (with none, browsers are refused otherwise, as
    // in Centrifugo).
    if let Some(origin) = dashboard_origin {
        if !client.allowed_origins.iter().any(|o| o == origin) {
            client.allowed_origins.push(origin.to_owned());
        }
    }
    if limits.max_connections > 0 {
        client.connection_limit = limits.max_connections;
    }
    if limits.max_channels_per_connection > 0 {
        client.channel_limit = limits.max_channels_per_connection;
    }

    let config_version = u64::try_from(row.config_version)
        .map_err(|_| invalid(format!("config version {} is negative", row.config_version)))?;
    config.rotor = RotorSection {
        tenant_id: row.id.0.clone(),
        config_version,
        publish_rate_limit: limits.publish_rate,
        max_publication_size: limits.max_message_size,
        max_history_bytes: limits.max_history_bytes,
        max_channel_history_bytes: limits.max_channel_history_bytes,
        max_channels: limits.max_channels,
        max_presence_entries: limits.max_presence_entries,
    };
    config.websocket.message_size_limit = limits.max_message_size.max(65536);
    config.node.name = row.slug.clone();
    config.http_server = HttpServer {
        address: "127.0.0.1".into(),
        port: 0,
    };
    config.http_api.keys = api_keys
        .iter()
        .map(|(id, sha256, scope)| {
            let scope = ApiKeyScope::parse(scope)
                .ok_or_else(|| invalid(format!("API key {id} has an unknown scope {scope:?}")))?;
            Ok(ApiKeyEntry {
                id: id.clone(),
                sha256: sha256.clone(),
                scope,
            })
        })
        .collect::<Result<_, CompileError>>()?;
    config.engine = engine;
    let on = Toggle { enabled: true };
    config.http_stream = on;
    config.sse = on;
    config.uni_sse = on;
    config.uni_http_stream = on;
    config.uni_websocket = on;
    Ok(config)
}

/// `config` as its tenant loads it: serialised, then read and validated by the data plane's
/// own loader. Any refusal or warning of the loader fails the compile.
pub(super) fn load(
    project: &ProjectId,
    config: &TenantConfig,
) -> Result<TenantConfig, CompileError> {
    let value = serde_json::to_value(config).map_err(|e| CompileError::Invalid {
        project: project.clone(),
        message: format!("config does not serialise: {e}"),
    })?;
    let loaded = TenantConfig::from_value(value).map_err(|e| CompileError::Invalid {
        project: project.clone(),
        message: e.to_string(),
    })?;
    let warnings = loaded.warnings();
    if !warnings.is_empty() {
        return Err(CompileError::Warnings {
            project: project.clone(),
            warnings: warnings.join("; "),
        });
    }
    Ok(loaded.config)
}

impl PlanLimits {
    /// Lowers history settings to the plan's maxima (after a downgrade).
    fn clamp_history(&self, size: &mut u32, ttl: &mut ConfigDuration) {
        if self.max_history_size > 0 {
            *size = (*size).min(self.max_history_size);
        }
        if self.max_history_ttl_seconds > 0 {
            let max = ConfigDuration::from_secs(self.max_history_ttl_seconds);
            if *ttl > max {
                *ttl = max;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rotor_tenant_config::{EngineType, CHANNEL_OPTION_NAMES};
    use serde_json::json;

    use super::*;

    const DIGEST_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn row() -> TenantRow {
        TenantRow {
            id: ProjectId("prj_contract".into()),
            slug: "contract".into(),
            status: "active".into(),
            engine: "memory".into(),
            redis_url: None,
            redis_prefix: None,
            redis_deployment: None,
            settings: Value::Null,
            config_version: 7,
            applied_version: 0,
        }
    }

    fn limits() -> PlanLimits {
        PlanLimits {
            max_connections: 500,
            max_channels_per_connection: 64,
            publish_rate: 100,
            max_message_size: 131_072,
            max_history_size: 100,
            max_history_ttl_seconds: 3600,
            max_history_bytes: 1 << 20,
            max_channel_history_bytes: 1 << 16,
            max_channels: 1000,
            max_presence_entries: 2000,
            ..PlanLimits::default()
        }
    }

    fn settings() -> Value {
        json!({
            "allowed_origins": ["https://app.example.com"],
            "without_namespace": {"allow_subscribe_for_client": true, "history_size": 1000,
                                  "history_ttl": "48h"},
            "proxies": [
                {"name": "backend", "endpoint": "https://backend.example.com/rotor"},
                {"name": "stream", "endpoint": "grpc://backend.example.com:9000"},
            ],
        })
    }

    /// Every channel option set, over two namespaces (a namespace that streams takes no
    /// subscribe, publish or sub_refresh proxy); the history above the plan's maxima.
    fn namespaces() -> Vec<(String, Value)> {
        vec![
            (
                "full".into(),
                json!({
                    "presence": true, "join_leave": true, "force_push_join_leave": true,
                    "history_size": 500, "history_ttl": "2h", "history_meta_ttl": "720h",
                    "force_positioning": true, "allow_positioning": true,
                    "force_recovery": true, "allow_recovery": true,
                    "force_recovery_mode": "cache", "auto_cache_recover": true,
                    "allow_subscribe_for_anonymous": true, "allow_subscribe_for_client": true,
                    "allow_publish_for_anonymous": true, "allow_publish_for_subscriber": true,
                    "allow_publish_for_client": true,
                    "allow_presence_for_anonymous": true, "allow_presence_for_subscriber": true,
                    "allow_presence_for_client": true,
                    "allow_history_for_anonymous": true, "allow_history_for_subscriber": true,
                    "allow_history_for_client": true,
                    "allow_user_limited_channels": true, "channel_regex": "^[a-z0-9_]+$",
                    "publication_data_format": "json_object", "allowed_delta_types": ["fossil"],
                    "delta_publish": true, "allow_tags_filter": true, "exclude_publisher": true,
                    "subscribe_proxy_enabled": true, "subscribe_proxy_name": "backend",
                    "publish_proxy_enabled": true, "publish_proxy_name": "backend",
                    "sub_refresh_proxy_enabled": true, "sub_refresh_proxy_name": "backend",
                }),
            ),
            (
                "streamed".into(),
                json!({
                    "subscribe_stream_proxy_enabled": true,
                    "subscribe_stream_proxy_name": "stream",
                    "subscribe_stream_proxy_bidirectional": true,
                }),
            ),
        ]
    }

    fn token() -> TokenSection {
        TokenSection {
            hmac_secret_key: "current".into(),
            hmac_previous_secret_key: "previous".into(),
            hmac_previous_secret_key_valid_until: 4_102_444_800,
            rsa_public_key: "-----BEGIN PUBLIC KEY-----".into(),
            ..TokenSection::default()
        }
    }

    fn keys() -> Vec<(String, String, String)> {
        vec![
            ("key_a".into(), DIGEST_A.into(), "all".into()),
            ("key_b".into(), DIGEST_B.into(), "publish".into()),
        ]
    }

    fn compiled(
        settings: &Value,
        namespaces: &[(String, Value)],
    ) -> Result<TenantConfig, CompileError> {
        let (row, limits, keys) = (row(), limits(), keys());
        let config = assemble(Parts {
            row: &row,
            token: token(),
            api_keys: &keys,
            limits: &limits,
            settings,
            namespaces,
            engine: EngineSection::default(),
            dashboard_origin: Some("https://rotor.example.com"),
        })?;
        let loaded = load(&row.id, &config)?;
        assert_eq!(
            loaded, config,
            "the config the tenant loads is the one assembled"
        );
        Ok(loaded)
    }

    #[test]
    fn a_config_with_every_namespace_option_round_trips_through_the_loader_without_warnings() {
        let config = compiled(&settings(), &namespaces()).unwrap();

        let reloaded = TenantConfig::parse(&config.to_json(), rotor_tenant_config::Format::Json)
            .expect("the data plane loads what it receives");
        assert_eq!(reloaded.warnings(), Vec::<String>::new());
        assert_eq!(reloaded.config, config);

        // Every channel option the contract knows is set (serialised) in some namespace.
        let mut set = BTreeSet::new();
        for ns in &config.channel.namespaces {
            let value = serde_json::to_value(ns).unwrap();
            set.extend(value.as_object().unwrap().keys().cloned());
        }
        let missing: Vec<&&str> = CHANNEL_OPTION_NAMES
            .iter()
            .filter(|name| !set.contains(**name))
            .collect();
        assert!(
            missing.is_empty(),
            "options not set by this test: {missing:?}"
        );

        // The plan's history maxima hold namespaces and channels without one.
        let full = config.namespace("full").unwrap();
        assert_eq!(full.history_size, 100);
        assert_eq!(full.history_ttl, ConfigDuration::from_secs(3600));
        let without = &config.channel.without_namespace;
        assert_eq!(without.history_size, 100);
        assert_eq!(without.history_ttl, ConfigDuration::from_secs(3600));
    }

    /// What the control plane sent before it built the typed config: the same parts as JSON
    /// with string keys. The typed build loads to the same config.
    #[test]
    fn the_typed_config_is_the_one_the_string_keyed_json_gave() {
        let config = compiled(&settings(), &namespaces()).unwrap();
        let mut namespaces: Vec<Value> = namespaces()
            .into_iter()
            .map(|(name, mut options)| {
                options["name"] = json!(name);
                options
            })
            .collect();
        namespaces[0]["history_size"] = json!(100);
        namespaces[0]["history_ttl"] = json!("1h");
        let before = json!({
            "rotor": {
                "tenant_id": "prj_contract", "config_version": 7, "publish_rate_limit": 100,
                "max_publication_size": 131_072, "max_history_bytes": 1 << 20,
                "max_channel_history_bytes": 1 << 16, "max_channels": 1000,
                "max_presence_entries": 2000,
            },
            "websocket": {"message_size_limit": 131_072},
            "node": {"name": "contract"},
            "http_server": {"address": "127.0.0.1", "port": 0},
            "client": {
                "allowed_origins": ["https://app.example.com", "https://rotor.example.com"],
                "token": {
                    "hmac_secret_key": "current", "hmac_previous_secret_key": "previous",
                    "hmac_previous_secret_key_valid_until": 4_102_444_800_i64,
                    "rsa_public_key": "-----BEGIN PUBLIC KEY-----",
                },
                "connection_limit": 500,
                "channel_limit": 64,
            },
            "http_api": {"keys": [
                {"id": "key_a", "sha256": DIGEST_A, "scope": "all"},
                {"id": "key_b", "sha256": DIGEST_B, "scope": "publish"},
            ]},
            "channel": {
                "without_namespace": {"allow_subscribe_for_client": true, "history_size": 100,
                                      "history_ttl": "1h"},
                "namespaces": namespaces,
            },
            "engine": {"type": "memory"},
            "http_stream": {"enabled": true},
            "sse": {"enabled": true},
            "uni_sse": {"enabled": true},
            "uni_http_stream": {"enabled": true},
            "uni_websocket": {"enabled": true},
            "proxies": settings()["proxies"],
        });
        let before = TenantConfig::from_value(before).unwrap().config;
        assert_eq!(config, before);
        assert_eq!(config.engine.kind, EngineType::Memory);
    }

    #[test]
    fn an_option_the_contract_does_not_know_is_refused_with_its_path() {
        let mut ns = namespaces();
        ns[1].1["subscribe_stream_proxy_frobnicate"] = json!(true);
        let err = compiled(&settings(), &ns).unwrap_err();
        let CompileError::Invalid { message, .. } = &err else {
            panic!("not refused as invalid: {err}");
        };
        assert!(
            message.contains("channel.namespaces[1].subscribe_stream_proxy_frobnicate"),
            "{message}"
        );

        let mut s = settings();
        s["without_namespace"]["colour"] = json!("blue");
        let err = compiled(&s, &namespaces()).unwrap_err();
        assert!(
            err.to_string().contains("channel.without_namespace.colour"),
            "{err}"
        );
        s = settings();
        s["proxies"][0]["frob"] = json!(1);
        let err = compiled(&s, &namespaces()).unwrap_err();
        assert!(err.to_string().contains("proxies[0].frob"), "{err}");
    }

    #[test]
    fn a_key_of_an_unknown_scope_is_refused() {
        let (row, limits) = (row(), limits());
        let keys = vec![("key_a".to_owned(), DIGEST_A.to_owned(), "read".to_owned())];
        let err = assemble(Parts {
            row: &row,
            token: token(),
            api_keys: &keys,
            limits: &limits,
            settings: &Value::Null,
            namespaces: &[],
            engine: EngineSection::default(),
            dashboard_origin: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("key_a"), "{err}");
    }
}
