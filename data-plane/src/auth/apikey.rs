//! Server API authentication: `X-API-Key`, then `Authorization: apikey …`, then `?api_key=`.
//! Keys are compared in constant time; the control plane may hand keys over as SHA-256 digests.

use axum::http::HeaderMap;
use rotor_tenant_config::HttpApi;
use sha2::{Digest, Sha256};

/// Extracts the key a request presents, in Centrifugo's order of precedence.
pub fn presented_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("apikey ") {
            return Some(v[7..].trim().to_owned());
        }
    }
    query.and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "api_key").then(|| v.to_owned())
        })
    })
}

/// Whether `key` is one of the configured keys. An empty configuration admits nobody.
pub fn key_is_valid(config: &HttpApi, key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    if !config.key.is_empty() && constant_time_eq(config.key.as_bytes(), key.as_bytes()) {
        return true;
    }
    if config.key_hashes.is_empty() {
        return false;
    }
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    config
        .key_hashes
        .iter()
        .any(|h| constant_time_eq(h.as_bytes(), digest.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_in_centrifugo_order() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "ApiKey second".parse().unwrap());
        assert_eq!(
            presented_key(&h, Some("api_key=third")).as_deref(),
            Some("second")
        );
        h.insert("x-api-key", "first".parse().unwrap());
        assert_eq!(presented_key(&h, None).as_deref(), Some("first"));
        assert_eq!(
            presented_key(&HeaderMap::new(), Some("a=1&api_key=third")).as_deref(),
            Some("third")
        );
    }

    #[test]
    fn plain_and_hashed_keys_are_accepted_and_nothing_else() {
        let cfg = HttpApi {
            key: "plain".into(),
            key_hashes: vec![hex::encode(Sha256::digest(b"hashed"))],
            ..Default::default()
        };
        assert!(key_is_valid(&cfg, "plain"));
        assert!(key_is_valid(&cfg, "hashed"));
        assert!(!key_is_valid(&cfg, "other"));
        assert!(!key_is_valid(&cfg, ""));
        assert!(!key_is_valid(&HttpApi::default(), "plain"));
    }
}
