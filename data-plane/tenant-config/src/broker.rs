//! `broker.*`: a broker configured apart from the engine, as in Centrifugo v6. Rotor implements
//! `broker.type: "nats"` — at-most-once PUB/SUB of publications, join/leave and node control
//! messages through a NATS server, with presence still kept by the engine (memory: per
//! process; Redis: shared). Like Centrifugo's NATS broker it keeps no history, so a config
//! that asks for history in any namespace with it is refused at load. Other broker types are
//! refused with the reason; `engine` chooses memory or Redis.

use serde::{Deserialize, Serialize};

use crate::channel::ChannelOptions;
use crate::duration::ConfigDuration;
use crate::load::ConfigError;
use crate::sections::TenantConfig;

/// `broker.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerSection {
    /// Whether this broker replaces the engine's PUB/SUB.
    pub enabled: bool,
    /// `nats` (Centrifugo's default, `memory`, is what `engine.type: memory` already gives).
    #[serde(rename = "type")]
    pub kind: String,
    pub nats: NatsBroker,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            enabled: false,
            kind: "memory".into(),
            nats: NatsBroker::default(),
        }
    }
}

impl BrokerSection {
    /// Centrifugo's defaults (what a config that leaves the section out has).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The NATS broker's settings when it is the broker in use.
    pub fn nats(&self) -> Option<&NatsBroker> {
        (self.enabled && self.kind == "nats").then_some(&self.nats)
    }
}

/// `broker.nats.*`, with Centrifugo v6's names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsBroker {
    /// `nats://host:port` (or `tls://…`).
    pub url: String,
    /// First token of every subject this tenant uses: `<prefix>.client.<channel>` and
    /// `<prefix>.control`. Processes of one tenant share it; unrelated setups on one NATS
    /// server must not.
    pub prefix: String,
    /// How long connecting may take.
    pub dial_timeout: ConfigDuration,
    /// How long a publish may wait for the connection's writer.
    pub write_timeout: ConfigDuration,
}

impl Default for NatsBroker {
    fn default() -> Self {
        Self {
            url: "nats://localhost:4222".into(),
            prefix: "centrifugo".into(),
            dial_timeout: ConfigDuration::from_secs(1),
            write_timeout: ConfigDuration::from_secs(1),
        }
    }
}

/// Whether `token` may stand in a NATS subject as one token (no wildcards, separators or
/// whitespace).
fn subject_tokens_ok(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
        })
}

/// Where history is asked for in `config` (the path of the first such option).
fn history_asked(config: &TenantConfig) -> Option<String> {
    let asks = |o: &ChannelOptions| o.history_size > 0 || !o.history_ttl.is_zero();
    if asks(&config.channel.without_namespace) {
        return Some("channel.without_namespace.history_size".into());
    }
    config
        .channel
        .namespaces
        .iter()
        .position(|ns| asks(&ns.options()))
        .map(|i| format!("channel.namespaces[{i}].history_size"))
}

/// Checks `broker.*` against the rest of the config.
pub(crate) fn validate(config: &TenantConfig) -> Result<(), ConfigError> {
    let broker = &config.broker;
    if !broker.enabled {
        if !broker.is_default() {
            return Err(ConfigError::invalid(
                "broker.enabled",
                "is false, so nothing else under `broker` would take effect: set it to true or remove the section",
            ));
        }
        return Ok(());
    }
    if broker.kind != "nats" {
        return Err(ConfigError::invalid(
            "broker.type",
            format!(
                "{:?} is not supported as a separate broker: Rotor implements \"nats\" (memory and Redis come with `engine.type`)",
                broker.kind
            ),
        ));
    }
    let nats = &broker.nats;
    if !(nats.url.starts_with("nats://") || nats.url.starts_with("tls://"))
        || nats.url.len() <= "nats://".len()
    {
        return Err(ConfigError::invalid(
            "broker.nats.url",
            "must be a nats:// (or tls://) URL",
        ));
    }
    if !subject_tokens_ok(&nats.prefix) {
        return Err(ConfigError::invalid(
            "broker.nats.prefix",
            "must be NATS subject tokens: not empty, no whitespace, `*` or `>`, no empty token between dots",
        ));
    }
    for (path, value) in [
        ("broker.nats.dial_timeout", nats.dial_timeout),
        ("broker.nats.write_timeout", nats.write_timeout),
    ] {
        if value.is_zero() {
            return Err(ConfigError::invalid(path, "must be positive"));
        }
    }
    if let Some(path) = history_asked(config) {
        return Err(ConfigError::invalid(
            path,
            "history is not available with `broker.type: nats` (at-most-once PUB/SUB that keeps no history, as Centrifugo's NATS broker): remove history_size and history_ttl, or use `engine.type: redis` without the broker",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_support::refused;
    use crate::{Format, TenantConfig};

    #[test]
    fn a_nats_broker_loads_with_centrifugo_names_and_defaults() {
        let c = TenantConfig::parse(
            r#"{"broker": {"enabled": true, "type": "nats", "nats": {"url": "nats://10.0.0.5:4222"}}}"#,
            Format::Json,
        )
        .unwrap()
        .config;
        let nats = c.broker.nats().expect("nats broker");
        assert_eq!(nats.url, "nats://10.0.0.5:4222");
        assert_eq!(nats.prefix, "centrifugo");
        assert_eq!(nats.dial_timeout.get(), std::time::Duration::from_secs(1));
        // Centrifugo's disabled defaults load as they are, and mean no broker.
        let c = TenantConfig::parse(
            r#"{"broker": {"enabled": false, "type": "memory", "nats": {"url": "nats://localhost:4222", "prefix": "centrifugo"}}}"#,
            Format::Json,
        )
        .unwrap()
        .config;
        assert!(c.broker.nats().is_none());
    }

    #[test]
    fn other_broker_types_and_settings_without_enabled_are_refused() {
        let (path, msg) = refused(r#"{"broker": {"enabled": true, "type": "redis"}}"#);
        assert_eq!(path, "broker.type");
        assert!(msg.contains("engine.type"), "{msg}");
        let (path, _) = refused(r#"{"broker": {"type": "nats"}}"#);
        assert_eq!(path, "broker.enabled");
        let (path, msg) = refused(
            r#"{"broker": {"enabled": true, "type": "nats", "nats": {"raw_mode": {"enabled": true}}}}"#,
        );
        assert_eq!(path, "broker.nats.raw_mode");
        assert!(msg.contains("raw mode"), "{msg}");
        let (path, _) = refused(r#"{"broker": {"enabled": true, "type": "nats", "redis": {}}}"#);
        assert_eq!(path, "broker.redis");
        let (path, _) =
            refused(r#"{"broker": {"enabled": true, "type": "nats", "nats": {"prefix": "a.*"}}}"#);
        assert_eq!(path, "broker.nats.prefix");
        let (path, _) = refused(
            r#"{"broker": {"enabled": true, "type": "nats", "nats": {"url": "http://x"}}}"#,
        );
        assert_eq!(path, "broker.nats.url");
    }

    #[test]
    fn history_with_the_nats_broker_is_refused_where_it_is_asked_for() {
        let (path, msg) = refused(
            r#"{"broker": {"enabled": true, "type": "nats"},
                "channel": {"namespaces": [{"name": "ok"}, {"name": "chat", "history_size": 10, "history_ttl": "60s"}]}}"#,
        );
        assert_eq!(path, "channel.namespaces[1].history_size");
        assert!(msg.contains("history is not available"), "{msg}");
        let (path, _) = refused(
            r#"{"broker": {"enabled": true, "type": "nats"},
                "channel": {"without_namespace": {"history_size": 1, "history_ttl": "1s"}}}"#,
        );
        assert_eq!(path, "channel.without_namespace.history_size");
    }
}
