//! Public keys from the tenant's JWKS endpoint (`client.token.jwks_public_endpoint`), chosen by
//! a token's `kid`. The key set is fetched on first use, cached for an hour, and fetched again
//! when a token names a key the cache does not hold (key rotation). Concurrent callers share one
//! fetch; a fetch that finds nothing new holds off further unknown-`kid` fetches for a few
//! seconds, so tokens with made-up ids cannot hammer the endpoint. Only asymmetric keys (RSA,
//! EC, Ed25519) are taken, each with the algorithms its type allows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::jwt::TokenError;

/// How long a fetched key set is used before it is fetched again.
const KEYS_TTL: Duration = Duration::from_secs(3600);
/// After a fetch that did not have the wanted `kid`, unknown ids wait this long for another.
const MISS_BACKOFF: Duration = Duration::from_secs(5);
/// After a failed fetch, callers get an error (or stale keys) for this long without a retry.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// Deadline of one fetch attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts per fetch.
const ATTEMPTS: usize = 2;
/// Largest key set accepted.
const MAX_BODY: usize = 1024 * 1024;

/// One usable key and the algorithms it may verify.
#[derive(Clone)]
struct Key {
    key: Arc<DecodingKey>,
    algorithms: Vec<Algorithm>,
}

type KeySet = Arc<HashMap<String, Key>>;
type Fetch = Shared<BoxFuture<'static, Result<KeySet, String>>>;

#[derive(Default)]
struct State {
    keys: KeySet,
    fetched_at: Option<Instant>,
    last_miss: Option<Instant>,
    last_failure: Option<Instant>,
    inflight: Option<Fetch>,
}

/// A JWKS endpoint and its cached keys.
pub struct Jwks {
    url: reqwest::Url,
    http: reqwest::Client,
    state: Mutex<State>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").finish_non_exhaustive()
    }
}

impl Jwks {
    /// A key source for `url` (http or https); nothing is fetched yet.
    pub fn new(url: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("jwks_public_endpoint: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("jwks_public_endpoint must be an http:// or https:// URL".into());
        }
        let http = crate::egress::Egress::current()
            .apply(reqwest::Client::builder())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("jwks_public_endpoint: {e}"))?;
        Ok(Self {
            url,
            http,
            state: Mutex::new(State::default()),
        })
    }

    /// The key a token names, checked against the token's algorithm. A key set that cannot be
    /// fetched is [`TokenError::Unavailable`] (the client retries), an unknown `kid` or a
    /// mismatching algorithm is invalid.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, TokenError> {
        let kid = kid
            .filter(|k| !k.is_empty())
            .ok_or_else(|| TokenError::Invalid("token has no kid".into()))?;
        let pending = {
            let mut st = self.state.lock();
            let fresh = st.fetched_at.is_some_and(|t| t.elapsed() < KEYS_TTL);
            let recent =
                |at: Option<Instant>, within: Duration| at.is_some_and(|t| t.elapsed() < within);
            match st.keys.get(kid) {
                Some(key) if fresh => return usable(key, alg),
                None if fresh && recent(st.last_miss, MISS_BACKOFF) => {
                    return Err(TokenError::Invalid(format!("unknown kid {kid:?}")))
                }
                _ => {}
            }
            if recent(st.last_failure, FAILURE_BACKOFF) {
                return match st.keys.get(kid) {
                    Some(stale) => usable(stale, alg),
                    None => Err(TokenError::Unavailable("JWKS endpoint unavailable".into())),
                };
            }
            st.inflight
                .get_or_insert_with(|| fetch(self.http.clone(), self.url.clone()).boxed().shared())
                .clone()
        };
        let outcome = pending.clone().await;
        let mut st = self.state.lock();
        // The first caller back records the outcome for everyone.
        if st.inflight.as_ref().is_some_and(|f| f.ptr_eq(&pending)) {
            st.inflight = None;
            let now = Instant::now();
            match &outcome {
                Ok(keys) => {
                    st.keys = keys.clone();
                    st.fetched_at = Some(now);
                    st.last_failure = None;
                    if !keys.contains_key(kid) {
                        st.last_miss = Some(now);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS fetch failed");
                    st.last_failure = Some(now);
                }
            }
        }
        match st.keys.get(kid) {
            Some(key) => usable(key, alg),
            None if outcome.is_err() => {
                Err(TokenError::Unavailable("JWKS endpoint unavailable".into()))
            }
            None => Err(TokenError::Invalid(format!("unknown kid {kid:?}"))),
        }
    }
}

fn usable(key: &Key, alg: Algorithm) -> Result<Arc<DecodingKey>, TokenError> {
    if key.algorithms.contains(&alg) {
        Ok(key.key.clone())
    } else {
        Err(TokenError::Invalid(format!(
            "algorithm {alg:?} does not match the JWKS key"
        )))
    }
}

/// Fetches and parses the key set, retrying once.
async fn fetch(http: reqwest::Client, url: reqwest::Url) -> Result<KeySet, String> {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, get(&http, &url)).await {
            Ok(Ok(body)) => return parse(&body),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
        }
    }
    Err(last)
}

async fn get(http: &reqwest::Client, url: &reqwest::Url) -> Result<BytesMut, String> {
    crate::egress::Egress::current()
        .check(url)
        .map_err(|e| e.to_string())?;
    let mut response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!("unexpected HTTP status {}", response.status()));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err("key set is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a key set. Keys without `kid`, symmetric keys and keys this build cannot use are
/// skipped rather than failing the whole set.
fn parse(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet =
        serde_json::from_slice(body).map_err(|e| format!("malformed key set: {e}"))?;
    let mut keys = HashMap::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let mut algorithms = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            _ => continue,
        };
        // A key that names its algorithm is good for that one only.
        if let Some(named) = &jwk.common.key_algorithm {
            let named = named.to_string().parse::<Algorithm>().ok();
            algorithms.retain(|a| Some(*a) == named);
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        if !algorithms.is_empty() {
            keys.insert(
                kid,
                Key {
                    key: Arc::new(key),
                    algorithms,
                },
            );
        }
    }
    Ok(Arc::new(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_keep_asymmetric_keys_with_their_algorithms() {
        let set = parse(
            br#"{"keys": [
                {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
                {"kty": "EC", "kid": "ec", "crv": "P-256",
                 "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                 "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
                {"kty": "RSA", "kid": "rsa", "alg": "RS384", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
                 "e": "AQAB"},
                {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
                {"kty": "weird", "kid": "w"}
            ]}"#,
        )
        .unwrap();
        let mut kids: Vec<&String> = set.keys().collect();
        kids.sort();
        assert_eq!(kids, ["ec", "rsa"]);
        assert_eq!(set["ec"].algorithms, [Algorithm::ES256]);
        assert_eq!(set["rsa"].algorithms, [Algorithm::RS384]);
        assert!(usable(&set["rsa"], Algorithm::RS256).is_err());
        assert!(parse(b"[]").is_err());
    }
}
