//! `grpc.*` of a proxy whose endpoint is `grpc://host:port` (Centrifugo v6's names): TLS to the
//! backend (PEM text only, so a hosted tenant never makes the process read a file), per-call
//! credentials, compression and static metadata, with their validation; and
//! [`grpc_authority`], the one parser of `grpc://` endpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::load::ConfigError;
use crate::proxy::{valid_header_name, valid_header_value};

/// `grpc.*` of a proxy (Centrifugo v6's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProxyGrpc {
    /// TLS to the backend.
    pub tls: ProxyGrpcTls,
    /// Metadata key sent with every call (per-call credentials), with `credentials_value`.
    pub credentials_key: String,
    /// Value of `credentials_key`.
    pub credentials_value: String,
    /// Compress requests with gzip (and accept gzip answers).
    pub compression: bool,
    /// Metadata added to every call (forwarded client headers win).
    pub static_metadata: BTreeMap<String, String>,
}

impl ProxyGrpc {
    /// Whether any option is set.
    pub(crate) fn is_set(&self) -> bool {
        *self != Self::default()
    }
}

/// `grpc.tls` of a proxy. The `*_pem` options take PEM text (Centrifugo also takes a path or
/// base64 there: a hosted tenant must never make the process read a file of the box).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProxyGrpcTls {
    /// Speak TLS to the backend (verified against the webpki roots, or `server_ca_pem`).
    pub enabled: bool,
    /// A client certificate (chain) in PEM, for backends that require one.
    pub cert_pem: String,
    /// The client certificate's private key in PEM.
    pub key_pem: String,
    /// The CA certificates (PEM) the backend's certificate must chain to, instead of the
    /// webpki roots.
    pub server_ca_pem: String,
    /// The name the backend's certificate must be valid for (default: the endpoint's host).
    pub server_name: String,
}

/// Where a `grpc://host:port` endpoint points: its host (brackets kept for IPv6) and port.
/// `None` when `endpoint` is not such an endpoint (no port, a path, credentials or a query).
pub fn grpc_authority(endpoint: &str) -> Option<(&str, u16)> {
    let authority = endpoint.strip_prefix("grpc://")?;
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let valid = match bare {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    };
    valid.then_some((host, port))
}

/// A gRPC metadata key Rotor can send: a lower-case-able header name that is not a binary
/// (`-bin`) key.
pub(crate) fn valid_metadata_key(name: &str) -> bool {
    valid_header_name(name) && !name.to_ascii_lowercase().ends_with("-bin")
}

/// Validates `grpc.*` of a proxy at `path`.
pub(crate) fn validate_grpc(path: &str, g: &ProxyGrpc) -> Result<(), ConfigError> {
    let at = |field: &str| format!("{path}.{field}");
    for (name, value) in &g.static_metadata {
        if !valid_metadata_key(name) || !valid_header_value(value) {
            return Err(ConfigError::invalid(
                format!("{}.{name}", at("static_metadata")),
                "is not valid gRPC metadata (an ASCII key not ending in -bin, a visible ASCII value)",
            ));
        }
    }
    if g.credentials_key.is_empty() {
        if !g.credentials_value.is_empty() {
            return Err(ConfigError::invalid(
                at("credentials_value"),
                "needs `credentials_key`",
            ));
        }
    } else if !valid_metadata_key(&g.credentials_key) {
        return Err(ConfigError::invalid(
            at("credentials_key"),
            "is not a valid gRPC metadata key (a header name, not ending in -bin)",
        ));
    } else if !valid_header_value(&g.credentials_value) {
        return Err(ConfigError::invalid(
            at("credentials_value"),
            "must be visible ASCII",
        ));
    }
    let tls = &g.tls;
    if !tls.enabled && *tls != ProxyGrpcTls::default() {
        return Err(ConfigError::invalid(
            at("tls"),
            "TLS options are set but `enabled` is not",
        ));
    }
    for (value, name) in [
        (&tls.cert_pem, "cert_pem"),
        (&tls.key_pem, "key_pem"),
        (&tls.server_ca_pem, "server_ca_pem"),
    ] {
        if !value.is_empty() && !value.contains("-----BEGIN ") {
            return Err(ConfigError::invalid(
                format!("{}.{name}", at("tls")),
                "must be PEM text (-----BEGIN …); Rotor does not read a path or base64 here",
            ));
        }
    }
    if tls.cert_pem.is_empty() != tls.key_pem.is_empty() {
        return Err(ConfigError::invalid(
            at("tls"),
            "a client certificate needs both `cert_pem` and `key_pem`",
        ));
    }
    if !tls.server_name.is_empty()
        && grpc_authority(&format!("grpc://{}:1", tls.server_name)).is_none()
    {
        return Err(ConfigError::invalid(
            format!("{}.server_name", at("tls")),
            "is not a host name",
        ));
    }
    Ok(())
}
