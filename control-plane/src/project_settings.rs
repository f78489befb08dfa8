//! Project settings: the JSON object a customer sets with `PATCH /v1/projects/{id}` and where
//! each key lands in the tenant's config. Besides origins, anonymous connect and the options of
//! channels without a namespace, they carry the proxies to the customer's backend:
//!
//! | setting | tenant config |
//! |---|---|
//! | `allowed_origins`, `allow_anonymous_connect_without_token` | `client.*` |
//! | `without_namespace` | `channel.without_namespace` |
//! | `client_proxy` (`connect`, `refresh`) | `client.proxy` |
//! | `channel_proxy` (`subscribe`, `publish`, `sub_refresh`, `subscribe_stream`) | `channel.proxy` |
//! | `proxies` (named proxies) | `proxies` |
//! | `rpc` (`proxy`, `without_namespace`, `namespaces`) | `rpc` |
//! | `user_status` (`enabled`, `last_seen_ttl`) | `user_status` |
//! | `webhooks` (`enabled`, `url`, `secret`, `events`, `grace`, `timeout`) | `webhooks` |
//! | `grpc_api` (`enabled`) | `grpc_api` (served through the edge, see [`crate::edge::h2`]) |
//! | `consumers` (list, Centrifugo's shape; see [`crate::consumers::settings`]) | `consumers` |
//!
//! Everything is validated by the data plane's own rules together with the project's
//! namespaces, so a namespace cannot point at a proxy that is not configured, and errors name
//! the setting's own path (`settings.client_proxy.connect.endpoint`).
//!
//! The values of proxies' `http.static_headers` are credentials for the customer's backend,
//! `webhooks.secret` signs what Rotor sends it, and consumers' DSNs, addresses, URLs, passwords
//! and tokens open the customer's queues: they are stored sealed ([`seal_secrets`],
//! see [`crate::sealed`]), opened for the tenant's config and the owner ([`open_secrets`]) and
//! redacted in the audit log.

use rotor_tenant_config::TenantConfig;
use serde_json::{json, Map, Value};

use crate::ids::ProjectId;
use crate::sealed::{Context, Keyring, Purpose, SealError};

/// A setting that is not valid, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// `settings.…` for project settings, the option name for a namespace's own options.
    pub field: String,
    pub message: String,
}

impl SettingsError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The most a project's settings may take as JSON. Settings are stored, written twice into
/// the audit entry of every change and pushed to the tenant with each config, so their size
/// is bounded far above what real settings take (a few KiB) and far below what would fill
/// the shared database.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

/// The most one namespace's options may take as JSON.
pub const MAX_NAMESPACE_OPTIONS_BYTES: usize = 16 * 1024;

/// Refuses `value` when its JSON is longer than `limit` bytes, naming its largest member
/// (`{path}.{key}`) as the field at fault, or `path` itself when it is not an object.
pub fn check_size(value: &Value, limit: usize, path: &str) -> Result<(), SettingsError> {
    let size = |v: &Value| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    let total = size(value);
    if total <= limit {
        return Ok(());
    }
    let field = match value {
        Value::Object(members) => members
            .iter()
            .max_by_key(|(_, v)| size(v))
            .map(|(k, _)| format!("{path}.{k}"))
            .unwrap_or_else(|| path.to_owned()),
        _ => path.to_owned(),
    };
    Err(SettingsError::new(
        field,
        format!(
            "too large: {path} may take at most {} KiB as JSON ({total} bytes given)",
            limit / 1024
        ),
    ))
}

/// The tenant-config fragment of the settings: an object with (some of) `client`, `channel`,
/// `proxies` and `rpc`.
pub fn to_config(settings: &Value) -> Result<Map<String, Value>, SettingsError> {
    let empty = Map::new();
    let obj = match settings {
        Value::Null => &empty,
        Value::Object(o) => o,
        _ => return Err(SettingsError::new("settings", "must be an object")),
    };
    let mut client = Map::new();
    let mut channel = Map::new();
    let mut top = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "allowed_origins" | "allow_anonymous_connect_without_token" => {
                client.insert(key.clone(), value.clone());
            }
            "client_proxy" => {
                client.insert("proxy".into(), value.clone());
            }
            "without_namespace" => {
                channel.insert(key.clone(), value.clone());
            }
            "channel_proxy" => {
                channel.insert("proxy".into(), value.clone());
            }
            "proxies" | "rpc" => {
                top.insert(key.clone(), value.clone());
            }
            "user_status" => {
                top.insert(key.clone(), hosted_user_status(value)?);
            }
            "webhooks" => {
                top.insert(key.clone(), hosted_webhooks(value)?);
            }
            "grpc_api" => {
                top.insert(key.clone(), hosted_grpc_api(value)?);
            }
            "consumers" => {
                top.insert(
                    key.clone(),
                    crate::consumers::settings::hosted_consumers(value)?,
                );
            }
            other => {
                return Err(SettingsError::new(
                    format!("settings.{other}"),
                    standalone_only(other).unwrap_or_else(|| "unknown setting".into()),
                ))
            }
        }
    }
    top.insert("client".into(), Value::Object(client));
    top.insert("channel".into(), Value::Object(channel));
    Ok(top)
}

/// `settings.user_status` for a hosted project: `enabled` and `last_seen_ttl` only, the TTL
/// within [`rotor_tenant_config::HOSTED_MIN_LAST_SEEN_TTL_SECS`] and
/// [`rotor_tenant_config::HOSTED_MAX_LAST_SEEN_TTL_SECS`]; the memory bound of last-seen
/// records stays the operator's default.
fn hosted_user_status(value: &Value) -> Result<Value, SettingsError> {
    use rotor_tenant_config::{
        ConfigDuration, HOSTED_MAX_LAST_SEEN_TTL_SECS, HOSTED_MIN_LAST_SEEN_TTL_SECS,
    };
    let Value::Object(fields) = value else {
        return Err(SettingsError::new(
            "settings.user_status",
            "must be an object such as {\"enabled\": true}",
        ));
    };
    for (key, field) in fields {
        match key.as_str() {
            "enabled" => {}
            "last_seen_ttl" => {
                let path = "settings.user_status.last_seen_ttl";
                let ttl: ConfigDuration = serde_json::from_value(field.clone()).map_err(|e| {
                    SettingsError::new(path, format!("must be a duration such as \"24h\": {e}"))
                })?;
                let bounds = std::time::Duration::from_secs(HOSTED_MIN_LAST_SEEN_TTL_SECS)
                    ..=std::time::Duration::from_secs(HOSTED_MAX_LAST_SEEN_TTL_SECS);
                if !bounds.contains(&ttl.get()) {
                    return Err(SettingsError::new(
                        path,
                        format!(
                            "must be between {}m and {}h for hosted projects",
                            HOSTED_MIN_LAST_SEEN_TTL_SECS / 60,
                            HOSTED_MAX_LAST_SEEN_TTL_SECS / 3600
                        ),
                    ));
                }
            }
            "max_last_seen_bytes" => {
                return Err(SettingsError::new(
                    "settings.user_status.max_last_seen_bytes",
                    "is set by the operator for hosted projects",
                ))
            }
            other => {
                return Err(SettingsError::new(
                    format!("settings.user_status.{other}"),
                    "unknown setting (user_status takes enabled and last_seen_ttl)",
                ))
            }
        }
    }
    Ok(value.clone())
}

/// `settings.grpc_api` for a hosted project: `enabled` only. The API is served at the
/// project's own host on the edge and takes the project's API keys; the listener, TLS, key and
/// message size options are a standalone data plane's (each refused with its reason).
fn hosted_grpc_api(value: &Value) -> Result<Value, SettingsError> {
    let Value::Object(fields) = value else {
        return Err(SettingsError::new(
            "settings.grpc_api",
            "must be an object such as {\"enabled\": true}",
        ));
    };
    for (key, field) in fields {
        let path = format!("settings.grpc_api.{key}");
        if key == "enabled" {
            if !field.is_boolean() {
                return Err(SettingsError::new(path, "must be true or false"));
            }
            continue;
        }
        let option = format!("grpc_api.{key}");
        let why = rotor_tenant_config::STANDALONE_ONLY_OPTIONS
            .iter()
            .find(|(p, _)| *p == option)
            .map(|(p, why)| format!("`{p}` is not available to hosted projects: {why}"));
        return Err(SettingsError::new(
            path,
            why.unwrap_or_else(|| "unknown setting (grpc_api takes enabled)".into()),
        ));
    }
    Ok(value.clone())
}

pub use rotor_tenant_config::{HOSTED_MAX_WEBHOOK_TIMEOUT_SECS, HOSTED_MIN_WEBHOOK_SECRET_LEN};

/// `settings.webhooks` for a hosted project: `enabled`, `url`, `secret`, `events`, `grace` and
/// `timeout` (at most [`HOSTED_MAX_WEBHOOK_TIMEOUT_SECS`]); the queue, batch, retry and
/// dead-letter bounds stay the operator's defaults, so one project cannot hold more of the
/// machine's memory or retry longer than another. The data plane validates the rest (URL,
/// events, grace) and sends only to public addresses.
fn hosted_webhooks(value: &Value) -> Result<Value, SettingsError> {
    use rotor_tenant_config::ConfigDuration;
    let Value::Object(fields) = value else {
        return Err(SettingsError::new(
            "settings.webhooks",
            "must be an object such as {\"enabled\": true, \"url\": \"https://…\", \"secret\": \"…\"}",
        ));
    };
    for (key, field) in fields {
        match key.as_str() {
            "enabled" | "url" | "events" | "grace" => {}
            "secret" => {
                let len = field.as_str().map_or(0, str::len);
                if field.is_string() && len > 0 && len < HOSTED_MIN_WEBHOOK_SECRET_LEN {
                    return Err(SettingsError::new(
                        "settings.webhooks.secret",
                        format!("must be at least {HOSTED_MIN_WEBHOOK_SECRET_LEN} characters"),
                    ));
                }
            }
            "timeout" => {
                let path = "settings.webhooks.timeout";
                let timeout: ConfigDuration = serde_json::from_value(field.clone())
                    .map_err(|e| SettingsError::new(path, format!("must be a duration: {e}")))?;
                if timeout.get() > std::time::Duration::from_secs(HOSTED_MAX_WEBHOOK_TIMEOUT_SECS) {
                    return Err(SettingsError::new(
                        path,
                        format!(
                            "must be at most {HOSTED_MAX_WEBHOOK_TIMEOUT_SECS}s for hosted projects"
                        ),
                    ));
                }
            }
            "max_attempts" | "retry_backoff" | "max_retry_backoff" | "queue_size"
            | "batch_size" | "dead_letter_size" => {
                return Err(SettingsError::new(
                    format!("settings.webhooks.{key}"),
                    "is set by the operator for hosted projects",
                ))
            }
            other => return Err(SettingsError::new(
                format!("settings.webhooks.{other}"),
                "unknown setting (webhooks takes enabled, url, secret, events, grace and timeout)",
            )),
        }
    }
    Ok(value.clone())
}

/// Why a hosted project may not have setting `key`, when it names one of the options only a
/// standalone data plane takes (`user_id_http_header`, `insecure_skip_token_signature_verify`).
fn standalone_only(key: &str) -> Option<String> {
    rotor_tenant_config::STANDALONE_ONLY_OPTIONS
        .iter()
        // `grpc_api.*` are options of the `grpc_api` setting (see [`hosted_grpc_api`]).
        .filter(|(path, _)| !path.starts_with("grpc_api."))
        .find(|(path, _)| match path.rsplit('.').next() {
            // `engine.redis.tls.*_pem_file`: any key with that ending.
            Some(last) if last.starts_with('*') => key.ends_with(&last[1..]),
            last => last == Some(key),
        })
        .map(|(path, why)| format!("`{path}` is not available to hosted projects: {why}"))
}

/// The settings path for a tenant-config path (`client.proxy.connect.timeout` →
/// `settings.client_proxy.connect.timeout`); `None` for paths outside the settings.
pub fn settings_path(config_path: &str) -> Option<String> {
    const MAP: [(&str, &str); 9] = [
        ("client.proxy", "client_proxy"),
        ("channel.proxy", "channel_proxy"),
        ("channel.without_namespace", "without_namespace"),
        ("client.", ""),
        ("proxies", "proxies"),
        ("rpc", "rpc"),
        ("user_status", "user_status"),
        ("webhooks", "webhooks"),
        ("consumers", "consumers"),
    ];
    MAP.iter().find_map(|(from, to)| {
        config_path
            .strip_prefix(from)
            .map(|rest| format!("settings.{to}{rest}"))
    })
}

/// Checks settings together with the project's namespaces (name, options) by loading them as a
/// tenant config. Errors inside a namespace name it (`namespaces.chat.subscribe_proxy_name`).
pub fn validate(settings: &Value, namespaces: &[(String, Value)]) -> Result<(), SettingsError> {
    check_size(settings, MAX_SETTINGS_BYTES, "settings")?;
    let config = with_namespaces(settings, namespaces)?;
    TenantConfig::from_value(config).map_err(|e| {
        let message = e.to_string();
        let field = e
            .path()
            .map(|p| namespace_path(p, namespaces).or_else(|| settings_path(p)))
            .unwrap_or(None)
            .unwrap_or_else(|| "settings".into());
        SettingsError::new(field, message)
    })?;
    Ok(())
}

/// The settings' config fragment with these namespaces (name, options) in `channel.namespaces`.
pub fn with_namespaces(
    settings: &Value,
    namespaces: &[(String, Value)],
) -> Result<Value, SettingsError> {
    let mut config = to_config(settings)?;
    let list: Vec<Value> = namespaces
        .iter()
        .map(|(name, options)| {
            let mut ns = options.as_object().cloned().unwrap_or_default();
            ns.insert("name".into(), json!(name));
            Value::Object(ns)
        })
        .collect();
    if let Some(Value::Object(channel)) = config.get_mut("channel") {
        channel.insert("namespaces".into(), Value::Array(list));
    }
    Ok(Value::Object(config))
}

/// `channel.namespaces[2].x` → `namespaces.<name of the third>.x`.
fn namespace_path(path: &str, namespaces: &[(String, Value)]) -> Option<String> {
    let rest = path.strip_prefix("channel.namespaces[")?;
    let (index, rest) = rest.split_once(']')?;
    let (name, _) = namespaces.get(index.parse::<usize>().ok()?)?;
    Some(format!("namespaces.{name}{rest}"))
}

/// Applies `f` to every value of every proxy's `http.static_headers` and `grpc.static_metadata`
/// and to its `grpc.credentials_value` (wherever a proxy sits: `client_proxy.*`,
/// `channel_proxy.*`, `proxies[]`, `rpc.proxy`).
fn map_static_headers<E>(
    value: &mut Value,
    f: &mut impl FnMut(&str) -> Result<String, E>,
) -> Result<(), E> {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let (values, single) = match key.as_str() {
                    "http" => ("static_headers", None),
                    "grpc" => ("static_metadata", Some("credentials_value")),
                    _ => {
                        map_static_headers(child, f)?;
                        continue;
                    }
                };
                let Some(section) = child.as_object_mut() else {
                    continue;
                };
                if let Some(Value::Object(headers)) = section.get_mut(values) {
                    for header in headers.values_mut() {
                        if let Value::String(s) = header {
                            *s = f(s)?;
                        }
                    }
                }
                if let Some(Value::String(s)) = single.and_then(|k| section.get_mut(k)) {
                    if !s.is_empty() {
                        *s = f(s)?;
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                map_static_headers(item, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Applies `f` to every secret of the settings, with its purpose: each value of every proxy's
/// `http.static_headers`, `webhooks.secret` and the consumers' credentials.
fn map_secrets<E>(
    value: &mut Value,
    f: &mut impl FnMut(Purpose, &str) -> Result<String, E>,
) -> Result<(), E> {
    map_static_headers(value, &mut |v| f(Purpose::ProxyHeader, v))?;
    let secret = value.get_mut("webhooks").and_then(|w| w.get_mut("secret"));
    if let Some(Value::String(s)) = secret {
        if !s.is_empty() {
            *s = f(Purpose::WebhookSecret, s)?;
        }
    }
    crate::consumers::settings::map_secrets(value, &mut |v| f(Purpose::ConsumerCredential, v))?;
    Ok(())
}

/// Settings as a customer sent them, with every secret sealed for `project`. Values are
/// always sealed, even ones that look sealed already: what a customer sends is plaintext by
/// definition, so a copied ciphertext is never opened on their behalf.
pub fn seal_secrets(keyring: &Keyring, project: &ProjectId, settings: &Value) -> Value {
    let mut out = settings.clone();
    let _ = map_secrets::<std::convert::Infallible>(&mut out, &mut |purpose, v| {
        Ok(keyring.seal(Context::new(purpose, project), v))
    });
    out
}

/// Stored settings with their secrets opened (for the tenant's config and the owner).
pub fn open_secrets(
    keyring: &Keyring,
    project: &ProjectId,
    settings: &Value,
) -> Result<Value, SealError> {
    let mut out = settings.clone();
    map_secrets(&mut out, &mut |purpose, v| {
        keyring.open(Context::new(purpose, project), v)
    })?;
    Ok(out)
}

/// Stored settings left by an older version or sealed under an older key, re-sealed under the
/// current key; `None` when nothing needed it (start-up sealing is idempotent). Values sealed
/// under a key the keyring does not have are left alone.
pub fn reseal_secrets(
    keyring: &Keyring,
    project: &ProjectId,
    settings: &Value,
) -> Result<Option<Value>, SealError> {
    let mut out = settings.clone();
    let mut changed = false;
    map_secrets(&mut out, &mut |purpose, v| {
        let ctx = Context::new(purpose, project);
        if !crate::sealed::is_sealed(v) {
            changed = true;
            Ok(keyring.seal(ctx, v))
        } else if keyring.is_sealed_under_older_key(v) {
            match keyring.open(ctx, v) {
                Ok(plain) => {
                    changed = true;
                    Ok(keyring.seal(ctx, &plain))
                }
                Err(SealError::UnknownKey(_)) => Ok(v.to_owned()),
                Err(e) => Err(e),
            }
        } else {
            Ok(v.to_owned())
        }
    })?;
    Ok(changed.then_some(out))
}

/// Settings with every secret replaced by `"[redacted]"` (for the audit log).
pub fn redact_secrets(settings: &Value) -> Value {
    let mut out = settings.clone();
    let _ = map_secrets::<std::convert::Infallible>(&mut out, &mut |_, _| {
        Ok(crate::audit::REDACTED.to_owned())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_header_values_are_sealed_wherever_a_proxy_sits_and_open_again() {
        let ring = Keyring::from_key([3; 32]);
        let project = ProjectId("prj_x".into());
        let plain = json!({
            "allowed_origins": ["https://a.example"],
            "client_proxy": {"connect": {"enabled": true, "endpoint": "https://b.example/c",
                "http": {"static_headers": {"Authorization": "Bearer one"}}}},
            "channel_proxy": {"subscribe": {"endpoint": "https://b.example/s",
                "http": {"static_headers": {"X-Key": "two"}}}},
            "proxies": [{"name": "billing", "endpoint": "https://b.example/b",
                "http": {"static_headers": {"X-Key": "three"}}}],
            "rpc": {"proxy": {"endpoint": "https://b.example/r",
                "http": {"static_headers": {"X-Key": "four"}}}},
        });
        let mut plain = plain;
        plain["proxies"].as_array_mut().unwrap().push(json!({
            "name": "grpc-billing", "endpoint": "grpc://b.example:443",
            "grpc": {"static_metadata": {"x-key": "five"},
                     "credentials_key": "x-api-key", "credentials_value": "six"}}));
        let sealed = seal_secrets(&ring, &project, &plain);
        let text = sealed.to_string();
        for secret in ["Bearer one", "two", "three", "four", "five", "six"] {
            assert!(
                !text.contains(&format!("\"{secret}\"")),
                "{secret} in {text}"
            );
        }
        assert_eq!(sealed["allowed_origins"], plain["allowed_origins"]);
        assert_eq!(open_secrets(&ring, &project, &sealed).unwrap(), plain);
        assert_eq!(reseal_secrets(&ring, &project, &sealed).unwrap(), None);
        let resealed = reseal_secrets(&ring, &project, &plain).unwrap().unwrap();
        assert_eq!(open_secrets(&ring, &project, &resealed).unwrap(), plain);
        let other = ProjectId("prj_y".into());
        assert_eq!(
            open_secrets(&ring, &other, &sealed),
            Err(SealError::Mismatch)
        );
        let redacted = redact_secrets(&sealed);
        assert_eq!(
            redacted["proxies"][0]["http"]["static_headers"]["X-Key"],
            "[redacted]"
        );
    }

    #[test]
    fn settings_land_in_their_config_sections() {
        let c = to_config(&json!({
            "allowed_origins": ["https://a.example"],
            "client_proxy": {"connect": {"enabled": true, "endpoint": "http://b.example/connect"}},
            "channel_proxy": {"subscribe": {"endpoint": "http://b.example/subscribe"}},
            "proxies": [{"name": "billing", "endpoint": "http://b.example/billing"}],
            "rpc": {"proxy": {"endpoint": "http://b.example/rpc"}},
        }))
        .unwrap();
        assert_eq!(c["client"]["allowed_origins"][0], "https://a.example");
        assert_eq!(c["client"]["proxy"]["connect"]["enabled"], true);
        assert_eq!(
            c["channel"]["proxy"]["subscribe"]["endpoint"],
            "http://b.example/subscribe"
        );
        assert_eq!(c["proxies"][0]["name"], "billing");
        assert_eq!(c["rpc"]["proxy"]["endpoint"], "http://b.example/rpc");
        let e = to_config(&json!({"colour": "red"})).unwrap_err();
        assert_eq!(e.field, "settings.colour");
    }

    #[test]
    fn user_status_is_a_setting_bounded_for_hosted_projects() {
        let c =
            to_config(&json!({"user_status": {"enabled": true, "last_seen_ttl": "48h"}})).unwrap();
        assert_eq!(
            c["user_status"],
            json!({"enabled": true, "last_seen_ttl": "48h"})
        );
        validate(&json!({"user_status": {"enabled": true}}), &[]).unwrap();
        for (settings, field) in [
            (
                json!({"user_status": {"last_seen_ttl": "169h"}}),
                "settings.user_status.last_seen_ttl",
            ),
            (
                json!({"user_status": {"last_seen_ttl": "59s"}}),
                "settings.user_status.last_seen_ttl",
            ),
            (
                json!({"user_status": {"last_seen_ttl": 10_000_000}}),
                "settings.user_status.last_seen_ttl",
            ),
            (
                json!({"user_status": {"last_seen_ttl": "soon"}}),
                "settings.user_status.last_seen_ttl",
            ),
            (
                json!({"user_status": {"max_last_seen_bytes": 1}}),
                "settings.user_status.max_last_seen_bytes",
            ),
            (
                json!({"user_status": {"colour": 1}}),
                "settings.user_status.colour",
            ),
            (json!({"user_status": true}), "settings.user_status"),
        ] {
            let e = validate(&settings, &[]).unwrap_err();
            assert_eq!(e.field, field, "{settings}: {e}");
        }
        let e = validate(&json!({"user_status": {"last_seen_ttl": "200h"}}), &[]).unwrap_err();
        assert!(e.message.contains("between 1m and 168h"), "{e}");
        // A bad type inside is reported on its setting's path by the data plane's rules.
        let e = validate(&json!({"user_status": {"enabled": "yes"}}), &[]).unwrap_err();
        assert_eq!(e.field, "settings.user_status.enabled", "{e}");
    }

    #[test]
    fn errors_name_the_setting_or_namespace_at_fault() {
        // gRPC proxies are allowed (hosted egress rules apply when they are called); a gRPC
        // endpoint without a port is not one.
        validate(
            &json!({"client_proxy": {"connect": {"enabled": true, "endpoint": "grpc://b.example:443"}}}),
            &[],
        )
        .unwrap();
        let e = validate(
            &json!({"client_proxy": {"connect": {"enabled": true, "endpoint": "grpc://b"}}}),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.field, "settings.client_proxy.connect.endpoint", "{e}");
        // A namespace that uses a subscribe proxy needs one configured.
        let ns = vec![("chat".to_owned(), json!({"subscribe_proxy_enabled": true}))];
        let e = validate(&json!({}), &ns).unwrap_err();
        assert_eq!(e.field, "settings.channel_proxy.subscribe.endpoint", "{e}");
        assert!(e.message.contains("required"), "{e}");
        validate(
            &json!({"channel_proxy": {"subscribe": {"endpoint": "http://b.example/s"}}}),
            &ns,
        )
        .unwrap();
        let e = validate(
            &json!({"channel_proxy": {"subscribe": {"endpoint": "http://b.example/s", "timeout": "soon"}}}),
            &ns,
        )
        .unwrap_err();
        assert_eq!(e.field, "settings.channel_proxy.subscribe.timeout", "{e}");
    }
}
