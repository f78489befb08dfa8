//! Who may call the gRPC API: `authorization: apikey <key>` metadata, as Centrifugo's. With
//! `grpc_api.key` set only that key is admitted (every method); otherwise the keys of the HTTP
//! API are, each with its scope (a hosted project's hashed keys included), and
//! `http_api.insecure` admits every call. Keys are compared in constant time and never logged.

use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::handed::HandedCall;

use crate::config::RuntimeConfig;
use rotor_tenant_config::secret_eq::secret_eq;
use rotor_tenant_config::ApiKeyScope;

/// The key in `authorization: apikey <key>` (scheme case-insensitive).
fn presented(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?.trim();
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("apikey")
        .then_some(key.trim())
        .filter(|k| !k.is_empty())
}

/// Whether a call may run, and with which key's scope: the API must be enabled in the config
/// in force (UNIMPLEMENTED otherwise: a project can switch it off while connections stay
/// open), a call on a connection the edge handed over must be within the project's rate
/// (RESOURCE_EXHAUSTED) before its key is even looked at, so calls with a bad key cost the
/// rate too, and the key must open the API ([`scope`]). A handed-over connection's failed
/// authentications are counted on it, and end it at
/// [`MAX_AUTH_FAILURES`](super::handed::MAX_AUTH_FAILURES).
pub(super) fn admit<T>(
    config: &RuntimeConfig,
    request: &Request<T>,
) -> Result<ApiKeyScope, Status> {
    if !config.tenant.grpc_api.enabled {
        return Err(Status::unimplemented(
            "the gRPC API is not enabled for this project",
        ));
    }
    let handed = request.extensions().get::<HandedCall>();
    if let Some(call) = handed {
        if !call.follow_ups.admit_call(call.rate) {
            return Err(Status::resource_exhausted(
                "this project receives more requests per second than its plan allows; retry later",
            ));
        }
    }
    scope(config, request.metadata()).inspect_err(|_| {
        if let Some(call) = handed {
            call.guard.auth_failed(call.peer);
        }
    })
}

/// The scope of the call's key, or UNAUTHENTICATED.
fn scope(config: &RuntimeConfig, metadata: &MetadataMap) -> Result<ApiKeyScope, Status> {
    let grpc_key = &config.tenant.grpc_api.key;
    let scope = if !grpc_key.is_empty() {
        presented(metadata)
            .filter(|k| secret_eq(k.as_bytes(), grpc_key.as_bytes()))
            .map(|_| ApiKeyScope::All)
    } else if config.tenant.http_api.insecure {
        Some(ApiKeyScope::All)
    } else {
        presented(metadata).and_then(|k| config.api_keys.check(k))
    };
    scope.ok_or_else(|| Status::unauthenticated("unauthenticated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn only_the_apikey_scheme_carries_a_key() {
        assert_eq!(presented(&metadata("apikey k1")), Some("k1"));
        assert_eq!(presented(&metadata("APIKEY  k1 ")), Some("k1"));
        assert_eq!(presented(&metadata("bearer k1")), None);
        assert_eq!(presented(&metadata("apikey ")), None);
        assert_eq!(presented(&MetadataMap::new()), None);
    }
}
