//! `engine.redis.tls` and `consumers[].redis_stream.tls`: TLS to Redis with Centrifugo v6's
//! option names. A `rediss://` address is TLS on its own (verified against the webpki roots);
//! `enabled: true` turns every `redis://` address of the section into TLS too, and the other
//! options give the server's CA, a client certificate for servers that require one, or turn
//! verification off (`insecure_skip_verify`, only when asked).
//!
//! Centrifugo's `*_pem` options take PEM text, base64 of it or a file path; Rotor's take PEM
//! text only, and files are named by the `*_pem_file` options, which only a standalone data
//! plane may set (a hosted tenant must never make the process read a file of the box). Errors
//! name the option, never what a value or a file holds.

use serde::{Deserialize, Serialize};

use crate::load::ConfigError;

/// A TLS section for Redis connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RedisTls {
    /// TLS on every address of the section (a `rediss://` address is TLS anyway).
    pub enabled: bool,
    /// The client certificate (chain) in PEM, presented to servers that require one.
    pub cert_pem: String,
    /// The client certificate's private key in PEM.
    pub key_pem: String,
    /// The CA certificates (PEM) the server's certificate must chain to, instead of the webpki
    /// roots.
    pub server_ca_pem: String,
    /// `cert_pem` from a file (standalone only).
    pub cert_pem_file: String,
    /// `key_pem` from a file (standalone only).
    pub key_pem_file: String,
    /// `server_ca_pem` from a file (standalone only).
    pub server_ca_pem_file: String,
    /// Accept any server certificate: the connection is encrypted but not authenticated.
    pub insecure_skip_verify: bool,
}

/// The `*_pem_file` options, which read files on the box.
pub const TLS_FILE_OPTIONS: [&str; 3] = ["cert_pem_file", "key_pem_file", "server_ca_pem_file"];

impl RedisTls {
    /// Whether any option besides `enabled` is set.
    fn any_option(&self) -> bool {
        self.sets_a_file()
            || !self.cert_pem.is_empty()
            || !self.key_pem.is_empty()
            || !self.server_ca_pem.is_empty()
            || self.insecure_skip_verify
    }

    /// Whether a `*_pem_file` option is set.
    pub fn sets_a_file(&self) -> bool {
        !self.cert_pem_file.is_empty()
            || !self.key_pem_file.is_empty()
            || !self.server_ca_pem_file.is_empty()
    }

    /// Whether a connection to `address` uses TLS.
    pub fn applies_to(&self, address: &str) -> bool {
        self.enabled || address.trim_start().starts_with("rediss://")
    }

    /// Checks the section at `path` (e.g. `engine.redis.tls`) for `addresses`.
    pub fn validate(&self, path: &str, addresses: &[String]) -> Result<(), ConfigError> {
        let tls_anywhere = addresses.iter().any(|a| self.applies_to(a));
        if self.any_option() && !tls_anywhere {
            return Err(ConfigError::invalid(
                path,
                "TLS options are set but no connection uses TLS: set `enabled: true` or use rediss:// addresses",
            ));
        }
        if self.enabled {
            if let Some(a) = addresses
                .iter()
                .find(|a| a.trim_start().starts_with("unix:") || a.contains("+unix"))
            {
                return Err(ConfigError::invalid(
                    path,
                    format!(
                        "TLS needs TCP addresses; {} is a Unix socket",
                        a.split('?').next().unwrap_or_default()
                    ),
                ));
            }
        }
        for (inline, file, name) in [
            (&self.cert_pem, &self.cert_pem_file, "cert_pem"),
            (&self.key_pem, &self.key_pem_file, "key_pem"),
            (
                &self.server_ca_pem,
                &self.server_ca_pem_file,
                "server_ca_pem",
            ),
        ] {
            if !inline.is_empty() && !file.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{path}.{name}"),
                    format!("set `{name}` or `{name}_file`, not both"),
                ));
            }
            if !inline.is_empty() && !inline.contains("-----BEGIN ") {
                return Err(ConfigError::invalid(
                    format!("{path}.{name}"),
                    format!(
                        "must be PEM text (-----BEGIN …); Rotor does not read a path or base64 here: name a file with `{name}_file` (standalone only)"
                    ),
                ));
            }
        }
        let has_cert = !self.cert_pem.is_empty() || !self.cert_pem_file.is_empty();
        let has_key = !self.key_pem.is_empty() || !self.key_pem_file.is_empty();
        if has_cert != has_key {
            return Err(ConfigError::invalid(
                path,
                "a client certificate needs both `cert_pem` (or `cert_pem_file`) and `key_pem` (or `key_pem_file`)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_without_tls_are_refused() {
        let tls = RedisTls {
            insecure_skip_verify: true,
            ..RedisTls::default()
        };
        let err = tls
            .validate("engine.redis.tls", &addresses(&["redis://h:6379"]))
            .unwrap_err();
        assert!(err.to_string().contains("no connection uses TLS"), "{err}");
        assert!(tls
            .validate("engine.redis.tls", &addresses(&["rediss://h:6379"]))
            .is_ok());
    }

    #[test]
    fn inline_pem_must_be_pem_and_the_error_does_not_echo_it() {
        let tls = RedisTls {
            enabled: true,
            server_ca_pem: "/etc/shadow".into(),
            ..RedisTls::default()
        };
        let err = tls
            .validate("engine.redis.tls", &addresses(&["redis://h:6379"]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("server_ca_pem"), "{msg}");
        assert!(!msg.contains("/etc/shadow"), "{msg}");
    }

    #[test]
    fn a_certificate_needs_its_key_and_one_source_each() {
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let only_cert = RedisTls {
            enabled: true,
            cert_pem: pem.into(),
            ..RedisTls::default()
        };
        let a = addresses(&["redis://h:6379"]);
        assert!(only_cert.validate("t", &a).is_err());
        let both_sources = RedisTls {
            enabled: true,
            server_ca_pem: pem.into(),
            server_ca_pem_file: "/x".into(),
            ..RedisTls::default()
        };
        let err = both_sources.validate("t", &a).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }
}
