//! JWT verification for connection and subscription tokens: HMAC (current and, during
//! rotation, previous secret), RSA and ECDSA public keys, or keys from a JWKS endpoint chosen by
//! `kid`; optional `aud`/`iss` checks. The algorithm must belong to a configured key family, so
//! `alg: none` and HMAC-with-public-key confusion are refused by construction. `exp`/`nbf`
//! failures are "expired" (the SDK refreshes its token), a JWKS endpoint that cannot be reached
//! is "unavailable" (the SDK retries), everything else is "invalid". A token is split, decoded
//! and parsed once ([`super::compact`]).

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey};
use regex::Regex;
use rotor_tenant_config::TokenSection;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::compact::{check_times, Compact, HmacSecret};
use crate::protocol::Override;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The keys to check the token could not be fetched (JWKS endpoint down).
    #[error("token keys unavailable: {0}")]
    Unavailable(String),
}

/// Verifies tokens against one key configuration.
pub struct TokenVerifier {
    hmac: Option<HmacSecret>,
    hmac_previous: Option<(HmacSecret, i64)>,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
    /// When set, the only key source (Centrifugo ignores static keys next to a JWKS endpoint).
    jwks: Option<super::jwks_source::JwksSource>,
    audience: Option<String>,
    audience_regex: Option<Regex>,
    issuer: Option<String>,
    issuer_regex: Option<Regex>,
    user_id_claim: String,
    /// `client.insecure_skip_token_signature_verify`: claims are checked, signatures are not.
    skip_signature: bool,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hmac", &self.hmac.is_some())
            .field("rsa", &self.rsa.is_some())
            .field("ecdsa", &self.ecdsa.is_some())
            .field("jwks", &self.jwks.is_some())
            .field("skip_signature", &self.skip_signature)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Builds a verifier; fails on unparsable keys or regexes.
    pub fn new(cfg: &TokenSection) -> Result<Self, String> {
        let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.to_owned());
        let jwks = super::jwks_source::JwksSource::new(cfg)?;
        if jwks.is_some()
            && [
                &cfg.hmac_secret_key,
                &cfg.rsa_public_key,
                &cfg.ecdsa_public_key,
            ]
            .iter()
            .any(|k| !k.trim().is_empty())
        {
            tracing::warn!("jwks_public_endpoint is set: static token keys are ignored");
        }
        let rsa = non_empty(&cfg.rsa_public_key)
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| format!("rsa_public_key: {e}"))
            })
            .transpose()?;
        let ecdsa = non_empty(&cfg.ecdsa_public_key)
            .map(|pem| {
                DecodingKey::from_ec_pem(pem.as_bytes())
                    .map_err(|e| format!("ecdsa_public_key: {e}"))
            })
            .transpose()?;
        let regex = |s: &str, name: &str| {
            non_empty(s)
                .map(|r| Regex::new(&r).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let audience = non_empty(&cfg.audience);
        let issuer = non_empty(&cfg.issuer);
        Ok(Self {
            hmac: non_empty(&cfg.hmac_secret_key).map(|k| HmacSecret::new(k.as_bytes())),
            hmac_previous: non_empty(&cfg.hmac_previous_secret_key).map(|k| {
                (
                    HmacSecret::new(k.as_bytes()),
                    cfg.hmac_previous_secret_key_valid_until,
                )
            }),
            rsa,
            ecdsa,
            jwks,
            audience,
            audience_regex: regex(&cfg.audience_regex, "audience_regex")?,
            issuer,
            issuer_regex: regex(&cfg.issuer_regex, "issuer_regex")?,
            user_id_claim: non_empty(&cfg.user_id_claim).unwrap_or_else(|| "sub".into()),
            skip_signature: false,
        })
    }

    /// The same verifier, accepting tokens without checking their signature when `skip` is
    /// set (`client.insecure_skip_token_signature_verify`): the algorithm and keys no longer
    /// matter, but `exp`/`nbf` and the configured `aud`/`iss` rules still apply.
    pub fn skip_signature(mut self, skip: bool) -> Self {
        self.skip_signature = skip;
        self
    }

    /// Whether any key is configured.
    pub fn has_keys(&self) -> bool {
        self.hmac.is_some() || self.rsa.is_some() || self.ecdsa.is_some() || self.jwks.is_some()
    }

    /// Verifies the signature and standard claims; returns the claims object. The token is
    /// split once, its header and claims each decoded and parsed once.
    async fn verify_raw(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        let parts = Compact::split(token)?;
        let header = parts.header()?;
        let now = now_secs();
        // The claims are parsed after the signature is checked (a forged token costs no JSON
        // parse), unless finding the key needed them first.
        let read_early = if self.skip_signature {
            None
        } else {
            self.check_signature(&parts, &header, now).await?
        };
        let claims = match read_early {
            Some(claims) => claims,
            None => parts.claims()?,
        };
        check_times(&claims, now)?;
        self.check_audience_and_issuer(&claims)?;
        Ok(claims)
    }

    /// Whether a key configured for the header's algorithm signed the token: the HMAC secret
    /// (and, during a rotation, the previous one), the RSA or ECDSA public key, or the JWKS key
    /// the header's `kid` names. An algorithm no configured key belongs to is refused. Returns
    /// the claims when choosing the key had to read them (a templated JWKS endpoint).
    async fn check_signature(
        &self,
        parts: &Compact<'_>,
        header: &jsonwebtoken::Header,
        now: u64,
    ) -> Result<Option<Map<String, Value>>, TokenError> {
        let alg = header.alg;
        let mut read_early = None;
        let signed = match (&self.jwks, alg) {
            (Some(jwks), _) => {
                let vars = if jwks.is_template() {
                    let claims = parts.claims()?;
                    let vars = self.token_vars(&claims)?;
                    read_early = Some(claims);
                    vars
                } else {
                    HashMap::new()
                };
                let key = jwks.key(&vars, header.kid.as_deref(), alg).await?;
                parts.signed_by(&key, alg)?
            }
            (None, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                let previous = self
                    .hmac_previous
                    .as_ref()
                    .filter(|(_, until)| *until == 0 || (now as i64) < *until)
                    .map(|(k, _)| k);
                if self.hmac.is_none() && previous.is_none() {
                    return Err(no_key(alg));
                }
                [self.hmac.as_ref(), previous]
                    .into_iter()
                    .flatten()
                    .any(|secret| parts.signed_with(secret, alg))
            }
            (None, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512) => {
                parts.signed_by(self.rsa.as_ref().ok_or_else(|| no_key(alg))?, alg)?
            }
            (None, Algorithm::ES256 | Algorithm::ES384) => {
                parts.signed_by(self.ecdsa.as_ref().ok_or_else(|| no_key(alg))?, alg)?
            }
            (None, other) => {
                return Err(TokenError::Invalid(format!(
                    "unsupported algorithm {other:?}"
                )))
            }
        };
        if signed {
            Ok(read_early)
        } else {
            Err(TokenError::Invalid("signature does not match".into()))
        }
    }

    /// The configured `audience`, `issuer` and their regexes against the token's claims. A
    /// token that lacks a claim a rule is configured for, or holds it as anything but a string
    /// (or, for `aud`, an array of strings), is refused, as Centrifugo refuses it.
    /// (`jsonwebtoken` checks `aud` and `iss` only when they are present and well formed.)
    fn check_audience_and_issuer(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        if let Some(aud) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(s)) => s == aud,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(aud.as_str())),
                _ => false,
            };
            if !ok {
                return Err(TokenError::Invalid("audience does not match".into()));
            }
        }
        if let Some(iss) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
                return Err(TokenError::Invalid("issuer does not match".into()));
            }
        }
        self.check_regex_claims(claims)
    }

    /// The named groups of the token's `iss` and `aud` matched against `issuer_regex` and
    /// `audience_regex`, read before the signature is checked (a templated JWKS endpoint needs
    /// them to find the key): only ever used to pick one of the endpoints the config lists.
    fn token_vars(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<HashMap<String, String>, TokenError> {
        let mut vars = HashMap::new();
        let mut take = |re: &Regex, text: &str| -> bool {
            let Some(caps) = re.captures(text) else {
                return false;
            };
            for name in re.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    vars.insert(name.to_owned(), m.as_str().to_owned());
                }
            }
            true
        };
        if let Some(re) = &self.issuer_regex {
            let iss = claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !take(re, iss) {
                return Err(TokenError::Invalid("issuer does not match".into()));
            }
        }
        if let Some(re) = &self.audience_regex {
            let auds: Vec<&str> = match claims.get("aud") {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !auds.into_iter().any(|a| take(re, a)) {
                return Err(TokenError::Invalid("audience does not match".into()));
            }
        }
        Ok(vars)
    }

    fn check_regex_claims(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        if let Some(re) = &self.audience_regex {
            let ok = match claims.get("aud") {
                Some(Value::String(s)) => re.is_match(s),
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(|s| re.is_match(s)),
                _ => false,
            };
            if !ok {
                return Err(TokenError::Invalid("audience does not match".into()));
            }
        }
        if let Some(re) = &self.issuer_regex {
            if !claims
                .get("iss")
                .and_then(Value::as_str)
                .is_some_and(|s| re.is_match(s))
            {
                return Err(TokenError::Invalid("issuer does not match".into()));
            }
        }
        Ok(())
    }

    /// Verifies a connection token.
    pub async fn verify_connect(&self, token: &str) -> Result<ConnectToken, TokenError> {
        let mut claims = self.verify_raw(token).await?;
        if claims.contains_key("channel") {
            return Err(TokenError::Invalid(
                "connection token must not have a channel claim".into(),
            ));
        }
        let user = take_user(&mut claims, &self.user_id_claim)?;
        let raw: RawConnectClaims = serde_json::from_value(Value::Object(claims))
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        if raw.session_tag.len() > crate::exclusion::MAX_LEN {
            return Err(TokenError::Invalid(format!(
                "session_tag is longer than {} bytes",
                crate::exclusion::MAX_LEN
            )));
        }
        Ok(ConnectToken {
            user,
            exp: raw.exp,
            expire_at: raw.expire_at,
            info: payload(raw.info, &raw.b64info)?,
            channels: raw.channels,
            subs: raw
                .subs
                .into_iter()
                .map(|(ch, o)| {
                    Ok((
                        ch,
                        SubOptions {
                            info: payload(o.info, &o.b64info)?,
                            data: payload(o.data, &o.b64data)?,
                            overrides: o.overrides,
                        },
                    ))
                })
                .collect::<Result<_, TokenError>>()?,
            meta: raw.meta.map(|m| Bytes::from(m.get().to_owned())),
            session_tag: raw.session_tag,
        })
    }

    /// Verifies a subscription token.
    pub async fn verify_subscribe(&self, token: &str) -> Result<SubscribeToken, TokenError> {
        let mut claims = self.verify_raw(token).await?;
        let user = take_user(&mut claims, &self.user_id_claim)?;
        let raw: RawSubscribeClaims = serde_json::from_value(Value::Object(claims))
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let channel = raw
            .channel
            .filter(|c| !c.is_empty())
            .ok_or_else(|| TokenError::Invalid("subscription token has no channel claim".into()))?;
        Ok(SubscribeToken {
            user,
            channel,
            client: raw.client,
            exp: raw.exp,
            expire_at: raw.expire_at,
            info: payload(raw.info, &raw.b64info)?,
            data: payload(raw.data, &raw.b64data)?,
            overrides: raw.overrides,
        })
    }
}

/// Now, in unix seconds.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn no_key(alg: Algorithm) -> TokenError {
    TokenError::Invalid(format!("no key configured for {alg:?}"))
}

fn take_user(claims: &mut Map<String, Value>, claim: &str) -> Result<String, TokenError> {
    match claims.remove(claim) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(TokenError::Invalid(format!(
            "claim {claim} must be a string"
        ))),
    }
}

/// JSON payload from `info`, or binary from `b64info` (which wins).
fn payload(json: Option<Box<RawValue>>, b64: &str) -> Result<Bytes, TokenError> {
    if !b64.is_empty() {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|_| TokenError::Invalid("malformed base64 payload".into()));
    }
    Ok(json
        .filter(|v| v.get() != "null")
        .map(|v| Bytes::from(String::from(Box::<str>::from(v))))
        .unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSubOptions {
    info: Option<Box<RawValue>>,
    b64info: String,
    data: Option<Box<RawValue>>,
    b64data: String,
    #[serde(rename = "override")]
    overrides: Option<Override>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConnectClaims {
    exp: Option<i64>,
    expire_at: Option<i64>,
    info: Option<Box<RawValue>>,
    b64info: String,
    channels: Vec<String>,
    subs: HashMap<String, RawSubOptions>,
    meta: Option<Box<RawValue>>,
    session_tag: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSubscribeClaims {
    channel: Option<String>,
    client: String,
    exp: Option<i64>,
    expire_at: Option<i64>,
    info: Option<Box<RawValue>>,
    b64info: String,
    data: Option<Box<RawValue>>,
    b64data: String,
    #[serde(rename = "override")]
    overrides: Option<Override>,
}

/// Server-side subscription options from a token's `subs` claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubOptions {
    pub info: Bytes,
    pub data: Bytes,
    /// `override`: changes to the namespace's options for this subscription.
    pub overrides: Option<Override>,
}

/// A verified connection token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectToken {
    pub user: String,
    pub exp: Option<i64>,
    /// Overrides the connection expiry (`0` = never).
    pub expire_at: Option<i64>,
    pub info: Bytes,
    pub channels: Vec<String>,
    pub subs: HashMap<String, SubOptions>,
    pub meta: Option<Bytes>,
    /// Rotor's `session_tag` claim: the session the connection belongs to across reconnects,
    /// for publisher exclusion (see [`crate::exclusion`]); empty when the token has none.
    pub session_tag: String,
}

impl ConnectToken {
    /// When the connection expires (unix seconds), if it does.
    pub fn expires_at(&self) -> Option<i64> {
        match self.expire_at {
            Some(0) => None,
            Some(at) => Some(at),
            None => self.exp.filter(|e| *e > 0),
        }
    }
}

/// A verified subscription token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeToken {
    pub user: String,
    pub channel: String,
    pub client: String,
    pub exp: Option<i64>,
    pub expire_at: Option<i64>,
    pub info: Bytes,
    pub data: Bytes,
    /// `override`: changes to the namespace's options for this subscription.
    pub overrides: Option<Override>,
}

impl SubscribeToken {
    /// When the subscription expires (unix seconds), if it does.
    pub fn expires_at(&self) -> Option<i64> {
        match self.expire_at {
            Some(0) => None,
            Some(at) => Some(at),
            None => self.exp.filter(|e| *e > 0),
        }
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
