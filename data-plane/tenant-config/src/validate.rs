//! Whole-config validation: the rules a field's type cannot express, each reported with the
//! dotted path of the field that breaks it.

use std::collections::HashSet;

use regex::Regex;

use crate::channel::ChannelOptions;
use crate::load::ConfigError;
use crate::sections::TenantConfig;

/// The most commands one connection may run at once (`client.concurrency`).
pub const MAX_CLIENT_CONCURRENCY: u32 = 1024;

/// The most entries `client.allowed_origins` may list: every connect compares its `Origin`
/// with each, and the list is stored and pushed with every config change.
pub const MAX_ALLOWED_ORIGINS: usize = 256;

/// The longest entry of `client.allowed_origins` (a scheme, a host name of at most 253 bytes
/// and a port fit well within it).
pub const MAX_ORIGIN_LEN: usize = 512;

/// Namespace names Centrifugo accepts.
pub const NAMESPACE_NAME_PATTERN: &str = "^[-a-zA-Z0-9_]{2,}$";

/// Checks a namespace name; the error says what is wrong.
pub fn validate_namespace_name(name: &str) -> Result<(), String> {
    let ok = name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "namespace name {name:?} must match {NAMESPACE_NAME_PATTERN}"
        ))
    }
}

pub(crate) fn validate(config: &TenantConfig) -> Result<(), ConfigError> {
    config.user_status.validate()?;
    config.grpc_api.validate()?;
    config.webhooks.validate()?;
    let client = &config.client;
    if !client.ping_interval.is_zero()
        && !client.pong_timeout.is_zero()
        && client.pong_timeout >= client.ping_interval
    {
        return Err(ConfigError::invalid(
            "client.pong_timeout",
            "must be shorter than client.ping_interval",
        ));
    }
    let mut key_ids = HashSet::new();
    for (i, key) in config.http_api.keys.iter().enumerate() {
        let is_digest = key.sha256.len() == 64
            && key
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_digest {
            return Err(ConfigError::invalid(
                format!("http_api.keys[{i}].sha256"),
                "must be a SHA-256 digest in lowercase hex (64 characters)",
            ));
        }
        if !key.id.is_empty() && !key_ids.insert(key.id.as_str()) {
            return Err(ConfigError::invalid(
                format!("http_api.keys[{i}].id"),
                format!("duplicate key id {:?}", key.id),
            ));
        }
    }
    if client.queue_max_size == 0 {
        return Err(ConfigError::invalid(
            "client.queue_max_size",
            "must be greater than 0",
        ));
    }
    if client.concurrency > MAX_CLIENT_CONCURRENCY {
        return Err(ConfigError::invalid(
            "client.concurrency",
            format!("must be at most {MAX_CLIENT_CONCURRENCY}: every running command holds memory of its connection's process"),
        ));
    }
    if config.websocket.message_size_limit < 1024 {
        return Err(ConfigError::invalid(
            "websocket.message_size_limit",
            "must be at least 1024 bytes",
        ));
    }
    for (path, pattern) in [
        ("client.token.audience_regex", &client.token.audience_regex),
        ("client.token.issuer_regex", &client.token.issuer_regex),
    ] {
        if !pattern.is_empty() {
            Regex::new(pattern).map_err(|e| ConfigError::invalid(path, e.to_string()))?;
        }
    }
    let header = &client.user_id_http_header;
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !header.is_empty() && !header.bytes().all(is_token) {
        return Err(ConfigError::invalid(
            "client.user_id_http_header",
            "must be an HTTP header name",
        ));
    }
    for (path, token) in [
        ("client.token.jwks_public_endpoint", &client.token),
        (
            "client.subscription_token.jwks_public_endpoint",
            &client.subscription_token.token,
        ),
    ] {
        crate::jwks_template::template_values(token).map_err(|m| ConfigError::invalid(path, m))?;
    }
    if client.allowed_origins.len() > MAX_ALLOWED_ORIGINS {
        return Err(ConfigError::invalid(
            "client.allowed_origins",
            format!("must list at most {MAX_ALLOWED_ORIGINS} origins (use a pattern such as https://*.example.com)"),
        ));
    }
    for (i, origin) in client.allowed_origins.iter().enumerate() {
        if origin.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("client.allowed_origins[{i}]"),
                "must not be empty",
            ));
        }
        if origin.len() > MAX_ORIGIN_LEN {
            return Err(ConfigError::invalid(
                format!("client.allowed_origins[{i}]"),
                format!("must be at most {MAX_ORIGIN_LEN} bytes long"),
            ));
        }
    }
    let ch = &config.channel;
    for (path, value) in [
        ("channel.namespace_boundary", &ch.namespace_boundary),
        ("channel.user_boundary", &ch.user_boundary),
        ("channel.user_separator", &ch.user_separator),
    ] {
        if value.is_empty() {
            return Err(ConfigError::invalid(path, "must not be empty"));
        }
    }
    if ch.max_length == 0 {
        return Err(ConfigError::invalid(
            "channel.max_length",
            "must be greater than 0",
        ));
    }
    validate_options("channel.without_namespace", &ch.without_namespace)?;
    let mut seen = HashSet::new();
    for (i, ns) in ch.namespaces.iter().enumerate() {
        let path = format!("channel.namespaces[{i}]");
        if ns.name.is_empty() {
            return Err(ConfigError::invalid(format!("{path}.name"), "is required"));
        }
        validate_namespace_name(&ns.name)
            .map_err(|m| ConfigError::invalid(format!("{path}.name"), m))?;
        if !seen.insert(ns.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{path}.name"),
                format!("namespace {:?} is defined twice", ns.name),
            ));
        }
        validate_options(&path, &ns.options())?;
    }
    if config
        .engine
        .redis
        .address
        .0
        .iter()
        .any(|a| a.trim().is_empty())
    {
        return Err(ConfigError::invalid(
            "engine.redis.address",
            "must not be empty",
        ));
    }
    crate::redis_deployment::validate(&config.engine.redis)?;
    config
        .engine
        .redis
        .tls
        .validate("engine.redis.tls", &config.engine.redis.tls_addresses())?;
    validate_personal_channel(config)?;
    for (path, level) in [
        ("log.level", &config.log.level),
        ("log_level", &config.log_level),
    ] {
        if !level.is_empty() && !crate::sections::LOG_LEVELS.contains(&level.as_str()) {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "unknown log level {level:?} (use one of {})",
                    crate::sections::LOG_LEVELS.join(", ")
                ),
            ));
        }
    }
    crate::consumers::validate(&config.consumers)?;
    crate::broker::validate(config)?;
    crate::proxy::validate(config)
}

/// `client.subscribe_to_user_personal_channel`: Centrifugo's rules (the namespace must exist;
/// a single connection is kept with presence in the personal channel's namespace), and Rotor's
/// own: nothing in the section is accepted while the feature is off.
fn validate_personal_channel(config: &TenantConfig) -> Result<(), ConfigError> {
    const PATH: &str = "client.subscribe_to_user_personal_channel";
    let personal = &config.client.subscribe_to_user_personal_channel;
    let at = |field: &str| format!("{PATH}.{field}");
    if !personal.enabled {
        if personal.single_connection {
            return Err(ConfigError::invalid(
                at("single_connection"),
                format!("has no effect unless {PATH}.enabled is true"),
            ));
        }
        if !personal.personal_channel_namespace.is_empty() {
            return Err(ConfigError::invalid(
                at("personal_channel_namespace"),
                format!("has no effect unless {PATH}.enabled is true"),
            ));
        }
        return Ok(());
    }
    let ns = &personal.personal_channel_namespace;
    let presence = if ns.is_empty() {
        config.channel.without_namespace.presence
    } else {
        match config.namespace(ns) {
            Some(namespace) => namespace.presence,
            None => {
                return Err(ConfigError::invalid(
                    at("personal_channel_namespace"),
                    format!("namespace {ns:?} is not defined in channel.namespaces"),
                ))
            }
        }
    };
    if personal.single_connection && !presence {
        let options = if ns.is_empty() {
            "channel.without_namespace".to_owned()
        } else {
            format!("namespace {ns:?}")
        };
        return Err(ConfigError::invalid(
            at("single_connection"),
            format!(
                "needs presence in the personal channels' options ({options}): the connections \
                 of a user are counted in its personal channel's presence"
            ),
        ));
    }
    Ok(())
}

/// Validates one set of channel options found at `path`.
pub(crate) fn validate_options(path: &str, o: &ChannelOptions) -> Result<(), ConfigError> {
    let at = |field: &str| format!("{path}.{field}");
    if (o.history_size > 0) == o.history_ttl.is_zero() {
        let field = if o.history_size > 0 {
            "history_ttl"
        } else {
            "history_size"
        };
        return Err(ConfigError::invalid(
            at(field),
            "history_size and history_ttl must be set together",
        ));
    }
    if !o.history_meta_ttl.is_zero() && o.history_meta_ttl < o.history_ttl {
        return Err(ConfigError::invalid(
            at("history_meta_ttl"),
            "must be at least history_ttl",
        ));
    }
    if o.force_recovery && !o.history_enabled() {
        return Err(ConfigError::invalid(
            at("force_recovery"),
            "needs history (history_size and history_ttl)",
        ));
    }
    if !o.channel_regex.is_empty() {
        Regex::new(&o.channel_regex)
            .map_err(|e| ConfigError::invalid(at("channel_regex"), e.to_string()))?;
    }
    if o.auto_cache_recover && (!o.force_recovery || !o.cache_recovery().0) {
        return Err(ConfigError::invalid(
            at("auto_cache_recover"),
            "needs force_recovery and force_recovery_mode \"cache\"",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_support::refused;
    use crate::{Format, TenantConfig};

    #[test]
    fn history_needs_both_size_and_ttl() {
        let (path, _) =
            refused(r#"{"channel": {"namespaces": [{"name": "ab", "history_size": 3}]}}"#);
        assert_eq!(path, "channel.namespaces[0].history_ttl");
    }

    #[test]
    fn force_recovery_without_history_is_refused() {
        let (path, msg) =
            refused(r#"{"channel": {"without_namespace": {"force_recovery": true}}}"#);
        assert_eq!(path, "channel.without_namespace.force_recovery");
        assert!(msg.contains("needs history"));
    }

    #[test]
    fn api_keys_need_a_hex_digest_and_distinct_ids_and_the_old_shape_still_loads() {
        let digest = "a".repeat(64);
        let (path, _) = refused(r#"{"http_api": {"keys": [{"id": "k1", "sha256": "nothex"}]}}"#);
        assert_eq!(path, "http_api.keys[0].sha256");
        let twice = format!(
            r#"{{"http_api": {{"keys": [{{"id": "k1", "sha256": "{digest}"}}, {{"id": "k1", "sha256": "{digest}", "scope": "publish"}}]}}}}"#
        );
        assert_eq!(refused(&twice).0, "http_api.keys[1].id");
        let (path, _) =
            refused(r#"{"http_api": {"keys": [{"id": "k1", "sha256": "x", "scope": "read"}]}}"#);
        assert!(path.starts_with("http_api.keys"), "{path}");
        let old = format!(r#"{{"http_api": {{"key_hashes": ["{digest}"]}}}}"#);
        let loaded = TenantConfig::parse(&old, Format::Json).unwrap();
        assert_eq!(loaded.config.http_api.key_hashes, vec![digest.clone()]);
        let new = format!(
            r#"{{"http_api": {{"keys": [{{"id": "k1", "sha256": "{digest}", "scope": "publish"}}]}}}}"#
        );
        let loaded = TenantConfig::parse(&new, Format::Json).unwrap();
        assert_eq!(
            loaded.config.http_api.keys[0].scope,
            crate::ApiKeyScope::Publish
        );
    }

    #[test]
    fn allowed_origins_are_bounded_in_count_and_length() {
        let many: Vec<String> = (0..=super::MAX_ALLOWED_ORIGINS)
            .map(|i| format!("https://{i}.example.com"))
            .collect();
        let config = serde_json::json!({"client": {"allowed_origins": many}}).to_string();
        assert_eq!(refused(&config).0, "client.allowed_origins");
        let long = format!("https://{}.com", "a".repeat(super::MAX_ORIGIN_LEN));
        let config = serde_json::json!({"client": {"allowed_origins": ["https://ok.com", long]}})
            .to_string();
        assert_eq!(refused(&config).0, "client.allowed_origins[1]");
        let fine = serde_json::json!({"client": {"allowed_origins": ["https://*.example.com"]}});
        TenantConfig::parse(&fine.to_string(), Format::Json).expect("a short list loads");
    }

    #[test]
    fn bad_namespace_names_and_duplicates_are_refused() {
        assert_eq!(
            refused(r#"{"channel": {"namespaces": [{"name": "a"}]}}"#).0,
            "channel.namespaces[0].name"
        );
        assert_eq!(
            refused(r#"{"channel": {"namespaces": [{"name": "a b"}]}}"#).0,
            "channel.namespaces[0].name"
        );
        assert_eq!(
            refused(r#"{"channel": {"namespaces": [{"name": "ab"}, {"name": "ab"}]}}"#).0,
            "channel.namespaces[1].name"
        );
        assert_eq!(
            refused(r#"{"channel": {"namespaces": [{"presence": true}]}}"#).0,
            "channel.namespaces[0].name"
        );
    }

    #[test]
    fn pong_timeout_must_be_shorter_than_ping_interval() {
        let (path, _) = refused(r#"{"client": {"ping_interval": "5s", "pong_timeout": "5s"}}"#);
        assert_eq!(path, "client.pong_timeout");
    }

    #[test]
    fn budgets_default_to_unlimited_and_load_by_name() {
        let defaults = TenantConfig::parse("{}", Format::Json).unwrap().config;
        assert_eq!(
            (
                defaults.rotor.max_history_bytes,
                defaults.rotor.max_channel_history_bytes,
                defaults.rotor.max_channels,
                defaults.rotor.max_presence_entries
            ),
            (0, 0, 0, 0)
        );
        let set = TenantConfig::parse(
            r#"{"rotor": {"max_history_bytes": 5000000000, "max_channel_history_bytes": 65536,
                "max_channels": 1000, "max_presence_entries": 200}}"#,
            Format::Json,
        )
        .unwrap();
        let r = set.config.rotor;
        assert_eq!(r.max_history_bytes, 5_000_000_000);
        assert_eq!(r.max_channel_history_bytes, 65_536);
        assert_eq!((r.max_channels, r.max_presence_entries), (1000, 200));
        assert_eq!(
            refused(r#"{"rotor": {"max_channels": -1}}"#).0,
            "rotor.max_channels"
        );
    }

    #[test]
    fn auto_cache_recover_needs_forced_cache_recovery() {
        let (path, msg) = refused(
            r#"{"channel": {"namespaces": [{"name": "ab", "history_size": 1, "history_ttl": "60s",
                "force_recovery": true, "auto_cache_recover": true}]}}"#,
        );
        assert_eq!(path, "channel.namespaces[0].auto_cache_recover");
        assert!(msg.contains("cache"), "{msg}");
        let ok = TenantConfig::parse(
            r#"{"channel": {"namespaces": [{"name": "ab", "history_size": 1, "history_ttl": "60s",
                "force_recovery": true, "force_recovery_mode": "cache", "auto_cache_recover": true}]}}"#,
            Format::Json,
        )
        .unwrap();
        let o = ok.config.namespace("ab").unwrap().options();
        assert_eq!(o.cache_recovery(), (true, true));
        let blank = TenantConfig::parse(
            r#"{"channel": {"without_namespace": {"force_recovery_mode": ""}}}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(
            blank.config.channel.without_namespace.cache_recovery(),
            (false, false)
        );
    }

    #[test]
    fn personal_channels_need_their_namespace_and_presence_for_a_single_connection() {
        let (path, msg) = refused(
            r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true,
                "personal_channel_namespace": "personal"}}}"#,
        );
        assert_eq!(
            path,
            "client.subscribe_to_user_personal_channel.personal_channel_namespace"
        );
        assert!(msg.contains("not defined"), "{msg}");
        let (path, msg) = refused(
            r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true,
                "personal_channel_namespace": "personal", "single_connection": true}},
                "channel": {"namespaces": [{"name": "personal"}]}}"#,
        );
        assert_eq!(
            path,
            "client.subscribe_to_user_personal_channel.single_connection"
        );
        assert!(msg.contains("presence"), "{msg}");
        let (path, msg) = refused(
            r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true,
                "single_connection": true}}}"#,
        );
        assert_eq!(
            path,
            "client.subscribe_to_user_personal_channel.single_connection"
        );
        assert!(msg.contains("channel.without_namespace"), "{msg}");
        let (path, _) = refused(
            r#"{"client": {"subscribe_to_user_personal_channel": {"single_connection": true}},
                "channel": {"without_namespace": {"presence": true}}}"#,
        );
        assert_eq!(
            path,
            "client.subscribe_to_user_personal_channel.single_connection"
        );
        let ok = TenantConfig::parse(
            r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true,
                "personal_channel_namespace": "personal", "single_connection": true}},
                "channel": {"namespaces": [{"name": "personal", "presence": true}]}}"#,
            Format::Json,
        )
        .unwrap()
        .config;
        assert_eq!(ok.personal_channel("42"), "personal:#42");
        let plain = TenantConfig::parse(
            r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true}}}"#,
            Format::Json,
        )
        .unwrap()
        .config;
        assert_eq!(plain.personal_channel("42"), "#42");
    }

    #[test]
    fn log_levels_are_centrifugos() {
        for level in ["trace", "debug", "info", "warn", "error", "none"] {
            let c = TenantConfig::parse(
                &format!(r#"{{"log": {{"level": "{level}"}}}}"#),
                Format::Json,
            )
            .unwrap()
            .config;
            assert_eq!(c.log_level(), Some(level));
        }
        let legacy = TenantConfig::parse(r#"{"log_level": "debug"}"#, Format::Json)
            .unwrap()
            .config;
        assert_eq!(legacy.log_level(), Some("debug"));
        let both = TenantConfig::parse(
            r#"{"log_level": "debug", "log": {"level": "error"}}"#,
            Format::Json,
        )
        .unwrap()
        .config;
        assert_eq!(both.log_level(), Some("error"));
        assert_eq!(refused(r#"{"log": {"level": "loud"}}"#).0, "log.level");
        assert_eq!(refused(r#"{"log_level": "verbose"}"#).0, "log_level");
        assert_eq!(refused(r#"{"log": {"file": "/tmp/x.log"}}"#).0, "log.file");
    }

    #[test]
    fn invalid_regexes_are_refused() {
        let (path, _) = refused(r#"{"channel": {"without_namespace": {"channel_regex": "("}}}"#);
        assert_eq!(path, "channel.without_namespace.channel_regex");
    }
}
