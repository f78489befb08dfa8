//! Server API authentication: `X-API-Key`, then `Authorization: apikey …`, then `?api_key=`.
//! Keys are compared in constant time; the control plane hands keys over as SHA-256 digests
//! (`http_api.keys`, each with an id and a scope; the older `http_api.key_hashes` list is still
//! accepted and grants every method). A key with an id remembers the minute it was last used
//! in one atomic (a load, and a store at most once a minute: no lock on the request path), so
//! the process can report which keys were used ([`ApiKeys::used`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use rotor_tenant_config::secret_eq::secret_eq;
use rotor_tenant_config::{ApiKeyScope, HttpApi};
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

/// One configured key, by digest.
#[derive(Debug)]
struct Entry {
    /// SHA-256 hex of the key.
    digest: String,
    /// Reported when used; empty for keys without one (`key_hashes`).
    id: String,
    scope: ApiKeyScope,
    /// Unix seconds of the minute the key was last used (0: not since this process started).
    last_used: AtomicU64,
}

/// The keys of a config, compiled for the request path.
#[derive(Debug, Default)]
pub struct ApiKeys {
    /// `http_api.key` (plain, standalone).
    plain: String,
    entries: Vec<Entry>,
}

impl ApiKeys {
    /// The keys `config` admits.
    pub fn compile(config: &HttpApi) -> Self {
        let hashed = config.key_hashes.iter().map(|h| Entry {
            digest: h.to_ascii_lowercase(),
            id: String::new(),
            scope: ApiKeyScope::All,
            last_used: AtomicU64::new(0),
        });
        let scoped = config.keys.iter().map(|k| Entry {
            digest: k.sha256.to_ascii_lowercase(),
            id: k.id.clone(),
            scope: k.scope,
            last_used: AtomicU64::new(0),
        });
        Self {
            plain: config.key.clone(),
            entries: hashed.chain(scoped).collect(),
        }
    }

    /// The scope of `key`, or `None` when it is not one of the configured keys (an empty
    /// configuration admits nobody). Notes the use of a key with an id.
    pub fn check(&self, key: &str) -> Option<ApiKeyScope> {
        if key.is_empty() {
            return None;
        }
        if secret_eq(self.plain.as_bytes(), key.as_bytes()) {
            return Some(ApiKeyScope::All);
        }
        if self.entries.is_empty() {
            return None;
        }
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        let entry = self
            .entries
            .iter()
            .find(|e| secret_eq(e.digest.as_bytes(), digest.as_bytes()))?;
        if !entry.id.is_empty() {
            let minute = this_minute();
            if entry.last_used.load(Ordering::Relaxed) < minute {
                entry.last_used.store(minute, Ordering::Relaxed);
            }
        }
        Some(entry.scope)
    }

    /// Keys with an id used since this process started: (id, unix seconds of the minute of
    /// their last use).
    pub fn used(&self) -> Vec<(String, u64)> {
        self.entries
            .iter()
            .filter(|e| !e.id.is_empty())
            .filter_map(|e| {
                let at = e.last_used.load(Ordering::Relaxed);
                (at > 0).then(|| (e.id.clone(), at))
            })
            .collect()
    }

    /// Keeps what `old` (the config being replaced) knew of the keys that stay.
    pub fn carry_usage(&self, old: &ApiKeys) {
        for e in self.entries.iter().filter(|e| !e.id.is_empty()) {
            if let Some(o) = old.entries.iter().find(|o| o.id == e.id) {
                e.last_used
                    .fetch_max(o.last_used.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }
}

/// Unix seconds at the start of the current minute.
fn this_minute() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs - secs % 60
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotor_tenant_config::ApiKeyEntry;

    fn digest(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

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

    fn key_is_valid(config: &HttpApi, key: &str) -> bool {
        ApiKeys::compile(config).check(key).is_some()
    }

    #[test]
    fn plain_and_hashed_keys_are_accepted_and_nothing_else() {
        let cfg = HttpApi {
            key: "plain".into(),
            key_hashes: vec![digest("hashed")],
            ..Default::default()
        };
        assert!(key_is_valid(&cfg, "plain"));
        assert!(key_is_valid(&cfg, "hashed"));
        assert!(!key_is_valid(&cfg, "other"));
        assert!(!key_is_valid(&cfg, ""));
        assert!(!key_is_valid(&HttpApi::default(), "plain"));
    }

    #[test]
    fn scoped_keys_answer_their_scope_and_remember_their_last_minute_across_configs() {
        let cfg = HttpApi {
            key_hashes: vec![digest("old")],
            keys: vec![
                ApiKeyEntry {
                    id: "key_pub".into(),
                    sha256: digest("publisher"),
                    scope: ApiKeyScope::Publish,
                },
                ApiKeyEntry {
                    id: "key_all".into(),
                    sha256: digest("admin"),
                    scope: ApiKeyScope::All,
                },
            ],
            ..Default::default()
        };
        let keys = ApiKeys::compile(&cfg);
        assert_eq!(keys.used(), vec![]);
        assert_eq!(keys.check("old"), Some(ApiKeyScope::All));
        assert_eq!(keys.check("publisher"), Some(ApiKeyScope::Publish));
        assert_eq!(keys.check("nobody"), None);
        let used = keys.used();
        assert_eq!(used.len(), 1, "keys without an id are not reported");
        assert_eq!(used[0].0, "key_pub");
        assert_eq!(used[0].1 % 60, 0, "minute resolution");
        assert!(used[0].1 + 120 > this_minute());
        // A new config keeps what the old one knew of the keys that stay.
        let next = ApiKeys::compile(&cfg);
        next.carry_usage(&keys);
        assert_eq!(next.used(), used);
        assert!(ApiKeyScope::Publish.allows("broadcast"));
        for method in ["history", "presence", "info", "channels", "rpc", "batch"] {
            assert!(!ApiKeyScope::Publish.allows(method), "{method}");
            assert!(ApiKeyScope::All.allows(method), "{method}");
        }
    }
}
