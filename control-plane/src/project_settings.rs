//! Project settings: the JSON object a customer sets with `PATCH /v1/projects/{id}` and where
//! each key lands in the tenant's config. Besides origins, anonymous connect and the options of
//! channels without a namespace, they carry the proxies to the customer's backend:
//!
//! | setting | tenant config |
//! |---|---|
//! | `allowed_origins`, `allow_anonymous_connect_without_token` | `client.*` |
//! | `without_namespace` | `channel.without_namespace` |
//! | `client_proxy` (`connect`, `refresh`) | `client.proxy` |
//! | `channel_proxy` (`subscribe`, `publish`, `sub_refresh`) | `channel.proxy` |
//! | `proxies` (named proxies) | `proxies` |
//! | `rpc` (`proxy`, `without_namespace`, `namespaces`) | `rpc` |
//!
//! Everything is validated by the data plane's own rules together with the project's
//! namespaces, so a namespace cannot point at a proxy that is not configured, and errors name
//! the setting's own path (`settings.client_proxy.connect.endpoint`).

use rotor_tenant_config::TenantConfig;
use serde_json::{json, Map, Value};

/// A setting that is not valid, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// `settings.…` for project settings, the option name for a namespace's own options.
    pub field: String,
    pub message: String,
}

impl SettingsError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
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
            other => {
                return Err(SettingsError::new(
                    format!("settings.{other}"),
                    "unknown setting",
                ))
            }
        }
    }
    top.insert("client".into(), Value::Object(client));
    top.insert("channel".into(), Value::Object(channel));
    Ok(top)
}

/// The settings path for a tenant-config path (`client.proxy.connect.timeout` →
/// `settings.client_proxy.connect.timeout`); `None` for paths outside the settings.
pub fn settings_path(config_path: &str) -> Option<String> {
    const MAP: [(&str, &str); 6] = [
        ("client.proxy", "client_proxy"),
        ("channel.proxy", "channel_proxy"),
        ("channel.without_namespace", "without_namespace"),
        ("client.", ""),
        ("proxies", "proxies"),
        ("rpc", "rpc"),
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
    let config = with_namespaces(settings, namespaces)?;
    let loaded = TenantConfig::from_value(config).map_err(|e| {
        let message = e.to_string();
        let field = e
            .path()
            .map(|p| namespace_path(p, namespaces).or_else(|| settings_path(p)))
            .unwrap_or(None)
            .unwrap_or_else(|| "settings".into());
        SettingsError::new(field, message)
    })?;
    if let Some(w) = loaded.warnings.first() {
        return Err(SettingsError::new("settings", w.clone()));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn errors_name_the_setting_or_namespace_at_fault() {
        let e = validate(
            &json!({"client_proxy": {"connect": {"enabled": true, "endpoint": "grpc://b:1"}}}),
            &[],
        )
        .unwrap_err();
        assert!(e.field.starts_with("settings.client_proxy.connect"), "{e}");
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
