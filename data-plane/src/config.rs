//! The live config: a validated [`TenantConfig`] compiled into what the hot path needs
//! (namespace lookup, regexes, token keys), swapped atomically so a new config applies to the
//! very next command without touching existing connections.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use regex::Regex;
use rotor_tenant_config::{ChannelOptions, PublicationDataFormat, TenantConfig};

use crate::auth::apikey::ApiKeys;
use crate::auth::jwt::TokenVerifier;
use crate::budgets::Budgets;
use crate::protocol::ClientError;
use crate::proxy::Proxies;

/// A namespace's options with its regex compiled.
#[derive(Debug)]
pub struct ChannelRules {
    pub options: ChannelOptions,
    pub regex: Option<Regex>,
}

impl ChannelRules {
    /// Checks a publication payload against `publication_data_format`.
    pub fn check_data(&self, data: &[u8]) -> Result<(), ClientError> {
        check_data_format(self.options.publication_data_format, data)
    }
}

/// Checks a payload against the namespace's `publication_data_format`.
pub(crate) fn check_data_format(
    format: PublicationDataFormat,
    data: &[u8],
) -> Result<(), ClientError> {
    let bad = |m: &str| Err(ClientError::BAD_REQUEST.with_message(m.to_owned()));
    match format {
        PublicationDataFormat::Default | PublicationDataFormat::Binary => {
            if data.is_empty() {
                return bad("data is required");
            }
        }
        PublicationDataFormat::Json => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
                return bad("data must be JSON");
            }
        }
        PublicationDataFormat::JsonObject => {
            if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data).is_err() {
                return bad("data must be a JSON object");
            }
        }
    }
    Ok(())
}

/// A config ready for use.
pub struct RuntimeConfig {
    pub tenant: TenantConfig,
    namespaces: HashMap<String, Arc<ChannelRules>>,
    without_namespace: Arc<ChannelRules>,
    pub token_verifier: TokenVerifier,
    pub subscription_token_verifier: Option<TokenVerifier>,
    /// Proxies to the tenant's backend.
    pub proxies: Proxies,
    /// The server API keys, with their scopes and last use.
    pub api_keys: ApiKeys,
}

/// Why a config could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("config version {offered} is older than the running version {running}")]
    Stale { offered: u64, running: u64 },
    #[error("{0}")]
    Invalid(String),
    /// The change takes a new process (the engine and the broker are connected at start);
    /// a supervisor restarts the tenant with the new config.
    #[error("{0}")]
    Restart(String),
}

impl RuntimeConfig {
    /// Compiles a validated config.
    pub fn compile(tenant: TenantConfig) -> Result<Self, ApplyError> {
        let compile_rules = |path: &str, options: ChannelOptions| {
            let regex = if options.channel_regex.is_empty() {
                None
            } else {
                Some(
                    Regex::new(&options.channel_regex)
                        .map_err(|e| ApplyError::Invalid(format!("{path}.channel_regex: {e}")))?,
                )
            };
            Ok::<_, ApplyError>(Arc::new(ChannelRules { options, regex }))
        };
        let without_namespace = compile_rules(
            "channel.without_namespace",
            tenant.channel.without_namespace.clone(),
        )?;
        let mut namespaces = HashMap::new();
        for (i, ns) in tenant.channel.namespaces.iter().enumerate() {
            namespaces.insert(
                ns.name.clone(),
                compile_rules(&format!("channel.namespaces[{i}]"), ns.options())?,
            );
        }
        if crate::egress::Egress::current() == crate::egress::Egress::PublicOnly {
            // Run by the control plane for a hosted project: its settings never carry these,
            // and a config that does is refused rather than trusted.
            if let Some(path) = tenant.standalone_only_options_set().first() {
                return Err(ApplyError::Invalid(format!(
                    "{path}: a hosted project may not set this option"
                )));
            }
        }
        let skip_signature = tenant.client.insecure_skip_token_signature_verify;
        let token_verifier = TokenVerifier::new(&tenant.client.token)
            .map_err(|e| ApplyError::Invalid(format!("client.token: {e}")))?
            .skip_signature(skip_signature);
        let subscription_token_verifier = if tenant.client.subscription_token.enabled {
            Some(
                TokenVerifier::new(&tenant.client.subscription_token.token)
                    .map_err(|e| ApplyError::Invalid(format!("client.subscription_token: {e}")))?
                    .skip_signature(skip_signature),
            )
        } else {
            None
        };
        if tenant.webhooks.enabled {
            reqwest::Url::parse(&tenant.webhooks.url)
                .map_err(|e| ApplyError::Invalid(format!("webhooks.url: {e}")))?;
        }
        let proxies = Proxies::compile(&tenant).map_err(ApplyError::Invalid)?;
        let api_keys = ApiKeys::compile(&tenant.http_api);
        Ok(Self {
            tenant,
            namespaces,
            without_namespace,
            token_verifier,
            subscription_token_verifier,
            proxies,
            api_keys,
        })
    }

    /// The rules for a channel: strips the private prefix, takes the text before the first
    /// namespace boundary as the namespace. Unknown namespace → 102.
    pub fn channel_rules(&self, channel: &str) -> Result<Arc<ChannelRules>, ClientError> {
        let ch = &self.tenant.channel;
        let name = channel
            .strip_prefix(ch.private_prefix.as_str())
            .unwrap_or(channel);
        match name.split_once(ch.namespace_boundary.as_str()) {
            Some((ns, _)) => self
                .namespaces
                .get(ns)
                .cloned()
                .ok_or(ClientError::UNKNOWN_CHANNEL),
            None => Ok(self.without_namespace.clone()),
        }
    }

    /// The part of the channel name after its namespace (what `channel_regex` matches).
    pub fn channel_rest<'a>(&self, channel: &'a str) -> &'a str {
        let ch = &self.tenant.channel;
        let name = channel
            .strip_prefix(ch.private_prefix.as_str())
            .unwrap_or(channel);
        name.split_once(ch.namespace_boundary.as_str())
            .map_or(name, |(_, rest)| rest)
    }

    /// Whether the channel starts with the private prefix (`$`).
    pub fn is_private(&self, channel: &str) -> bool {
        let prefix = &self.tenant.channel.private_prefix;
        !prefix.is_empty() && channel.starts_with(prefix.as_str())
    }

    /// For user-limited channels (`…#u1,u2`): whether `user` is listed.
    pub fn user_allowed(&self, channel: &str, user: &str) -> Option<bool> {
        let ch = &self.tenant.channel;
        let (_, users) = channel.rsplit_once(ch.user_boundary.as_str())?;
        Some(!user.is_empty() && users.split(ch.user_separator.as_str()).any(|u| u == user))
    }
}

/// The config in force, replaced atomically.
pub struct ConfigHandle {
    current: ArcSwap<RuntimeConfig>,
    /// Takes the budget limits of every config applied (see [`crate::budgets`]).
    budgets: Arc<Budgets>,
    /// Notified after each config swapped in (for what runs beside the requests, such as the
    /// consumers).
    changed: tokio::sync::Notify,
}

impl ConfigHandle {
    /// A handle holding `config`, whose limits bind `budgets` from now on.
    pub fn new(config: RuntimeConfig, budgets: Arc<Budgets>) -> Self {
        budgets.set_limits(&config.tenant);
        Self {
            current: ArcSwap::from_pointee(config),
            budgets,
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Resolves after the next config is swapped in (create it before reading the config, so
    /// a change in between is not missed).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The config in force now (cheap; hold it for one operation, not across a session).
    pub fn load(&self) -> Arc<RuntimeConfig> {
        self.current.load_full()
    }

    /// Validates, compiles and swaps in a new config; a version lower than the running one is
    /// refused (a late, reordered push must not roll back a newer config).
    pub fn apply(&self, tenant: TenantConfig) -> Result<u64, ApplyError> {
        let running = self.current.load().tenant.rotor.config_version;
        let offered = tenant.rotor.config_version;
        if offered < running {
            return Err(ApplyError::Stale { offered, running });
        }
        if tenant.broker != self.current.load().tenant.broker {
            // The broker's connection and subscriptions are made at start.
            return Err(ApplyError::Restart(
                "broker: the broker is chosen at start; restart the process to change it".into(),
            ));
        }
        if tenant.engine != self.current.load().tenant.engine {
            // So is the engine (e.g. a project moved to another Redis deployment).
            return Err(ApplyError::Restart(
                "engine: the engine is connected at start; restart the process to change it".into(),
            ));
        }
        let compiled = RuntimeConfig::compile(tenant)?;
        compiled.api_keys.carry_usage(&self.current.load().api_keys);
        self.budgets.set_limits(&compiled.tenant);
        self.current.store(Arc::new(compiled));
        self.changed.notify_waiters();
        Ok(offered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn payload_formats_are_enforced() {
        let json = Bytes::from_static(b"[1]");
        let obj = Bytes::from_static(br#"{"a":1}"#);
        let bin = Bytes::from_static(&[0, 159]);
        assert!(check_data_format(PublicationDataFormat::Default, &Bytes::new()).is_err());
        assert!(check_data_format(PublicationDataFormat::Default, &bin).is_ok());
        assert!(check_data_format(PublicationDataFormat::Json, &json).is_ok());
        assert!(check_data_format(PublicationDataFormat::Json, &bin).is_err());
        assert!(check_data_format(PublicationDataFormat::JsonObject, &json).is_err());
        assert!(check_data_format(PublicationDataFormat::JsonObject, &obj).is_ok());
    }
}
