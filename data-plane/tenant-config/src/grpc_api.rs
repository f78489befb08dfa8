//! `grpc_api.*`: Centrifugo v6's gRPC server API (service `centrifugal.centrifugo.api.CentrifugoApi`)
//! on a listener of its own. Option names and defaults are Centrifugo's (`enabled: false`,
//! `port: 10000`); the key is sent as `authorization: apikey <key>` metadata. An empty `key`
//! falls back to the HTTP API's keys (`http_api.key`, and a hosted project's hashed keys with
//! their scopes), so one set of keys opens both APIs. TLS is optional: PEM text in
//! `tls.cert_pem`/`tls.key_pem`, or files (`*_pem_file`, standalone only). Errors name the
//! option, never what a value holds.

use serde::{Deserialize, Serialize};

use crate::load::ConfigError;

/// Centrifugo's default gRPC API port.
pub const DEFAULT_GRPC_API_PORT: u16 = 10_000;

/// gRPC's usual limit on one received message (4 MiB), used when
/// `max_receive_message_size` is 0.
pub const DEFAULT_MAX_RECEIVE_MESSAGE_SIZE: u64 = 4 << 20;

/// Largest `max_receive_message_size` accepted (64 MiB).
pub const MAX_RECEIVE_MESSAGE_SIZE_LIMIT: u64 = 64 << 20;

/// `grpc_api.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcApi {
    /// Whether the gRPC API listens.
    pub enabled: bool,
    /// Host to bind; empty binds `http_server.address` (all interfaces when that is empty too).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Port to listen on (0 picks a free one).
    pub port: u16,
    /// The key (`authorization: apikey <key>`); empty: the keys of `http_api`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Largest request message in bytes (0: 4 MiB).
    pub max_receive_message_size: u64,
    /// Centrifugo's server reflection switch. Rotor serves no reflection service, so `true`
    /// is refused at load with that reason (clients use `data-plane/proto/api.proto`).
    pub reflection: bool,
    /// TLS for the listener.
    #[serde(skip_serializing_if = "GrpcTls::is_default")]
    pub tls: GrpcTls,
}

impl Default for GrpcApi {
    fn default() -> Self {
        Self {
            enabled: false,
            address: String::new(),
            port: DEFAULT_GRPC_API_PORT,
            key: String::new(),
            max_receive_message_size: 0,
            reflection: false,
            tls: GrpcTls::default(),
        }
    }
}

/// `grpc_api.tls.*`: the server's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcTls {
    /// Serve TLS.
    pub enabled: bool,
    /// The certificate chain in PEM.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cert_pem: String,
    /// The certificate's private key in PEM.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_pem: String,
    /// `cert_pem` from a file (standalone only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cert_pem_file: String,
    /// `key_pem` from a file (standalone only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_pem_file: String,
}

impl GrpcTls {
    /// Whether nothing differs from the defaults.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a `*_pem_file` option is set.
    pub fn sets_a_file(&self) -> bool {
        !self.cert_pem_file.is_empty() || !self.key_pem_file.is_empty()
    }
}

impl GrpcApi {
    /// Whether nothing differs from the defaults (left out of a rendered config).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The request size limit in force.
    pub fn receive_limit(&self) -> usize {
        let n = if self.max_receive_message_size == 0 {
            DEFAULT_MAX_RECEIVE_MESSAGE_SIZE
        } else {
            self.max_receive_message_size
        };
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// The rules the types cannot say, with the path of the bad field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.reflection {
            return Err(ConfigError::invalid(
                "grpc_api.reflection",
                "gRPC server reflection is not supported: give clients the proto file (data-plane/proto/api.proto)",
            ));
        }
        if self.max_receive_message_size > MAX_RECEIVE_MESSAGE_SIZE_LIMIT {
            return Err(ConfigError::invalid(
                "grpc_api.max_receive_message_size",
                format!("must be at most {MAX_RECEIVE_MESSAGE_SIZE_LIMIT} bytes (64 MiB)"),
            ));
        }
        let tls = &self.tls;
        if !tls.enabled {
            if !tls.is_default() {
                return Err(ConfigError::invalid(
                    "grpc_api.tls",
                    "TLS options are set but `grpc_api.tls.enabled` is false",
                ));
            }
            return Ok(());
        }
        for (name, text, file) in [
            ("cert_pem", &tls.cert_pem, &tls.cert_pem_file),
            ("key_pem", &tls.key_pem, &tls.key_pem_file),
        ] {
            match (text.is_empty(), file.is_empty()) {
                (true, true) => {
                    return Err(ConfigError::invalid(
                        format!("grpc_api.tls.{name}"),
                        format!("TLS needs `{name}` (PEM text) or `{name}_file`"),
                    ))
                }
                (false, false) => {
                    return Err(ConfigError::invalid(
                        format!("grpc_api.tls.{name}"),
                        format!("give `{name}` or `{name}_file`, not both"),
                    ))
                }
                (false, true) if !text.contains("-----BEGIN ") => {
                    return Err(ConfigError::invalid(
                        format!("grpc_api.tls.{name}"),
                        "must be PEM text (-----BEGIN …)",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(api: &GrpcApi) -> String {
        api.validate()
            .unwrap_err()
            .path()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn defaults_are_centrifugos_and_valid() {
        let api = GrpcApi::default();
        assert!(!api.enabled);
        assert_eq!(api.port, 10_000);
        assert_eq!(api.receive_limit(), 4 << 20);
        api.validate().unwrap();
    }

    #[test]
    fn tls_needs_a_certificate_and_a_key_in_one_form() {
        let mut api = GrpcApi {
            enabled: true,
            ..Default::default()
        };
        api.tls.enabled = true;
        assert_eq!(path_of(&api), "grpc_api.tls.cert_pem");
        api.tls.cert_pem = "-----BEGIN CERTIFICATE-----".into();
        assert_eq!(path_of(&api), "grpc_api.tls.key_pem");
        api.tls.key_pem = "not pem".into();
        assert_eq!(path_of(&api), "grpc_api.tls.key_pem");
        api.tls.key_pem = "-----BEGIN PRIVATE KEY-----".into();
        api.validate().unwrap();
        api.tls.key_pem_file = "/k.pem".into();
        assert_eq!(path_of(&api), "grpc_api.tls.key_pem");
        api.tls = GrpcTls {
            cert_pem: "x".into(),
            ..Default::default()
        };
        assert_eq!(path_of(&api), "grpc_api.tls");
    }

    #[test]
    fn a_hosted_project_may_switch_it_on_but_not_give_it_a_listener_or_key() {
        let mut config = crate::TenantConfig::default();
        config.grpc_api.enabled = true;
        assert!(config.standalone_only_options_set().is_empty());
        for (path, change) in [
            (
                "grpc_api.address",
                (|a: &mut GrpcApi| a.address = "0.0.0.0".into()) as fn(&mut GrpcApi),
            ),
            ("grpc_api.port", |a| a.port = 10_001),
            ("grpc_api.tls", |a| a.tls.enabled = true),
            ("grpc_api.key", |a| a.key = "k".into()),
            ("grpc_api.max_receive_message_size", |a| {
                a.max_receive_message_size = 1 << 20
            }),
        ] {
            let mut config = config.clone();
            change(&mut config.grpc_api);
            assert_eq!(config.standalone_only_options_set(), vec![path]);
        }
    }

    #[test]
    fn reflection_and_huge_messages_are_refused() {
        let api = GrpcApi {
            reflection: true,
            ..Default::default()
        };
        assert_eq!(path_of(&api), "grpc_api.reflection");
        let api = GrpcApi {
            max_receive_message_size: 1 << 30,
            ..Default::default()
        };
        assert_eq!(path_of(&api), "grpc_api.max_receive_message_size");
    }
}
