//! A token in JWS compact form (`header.payload.signature`), read once: the header decoded
//! and parsed once, the signature checked once per candidate key, the claims decoded and parsed
//! once, then the time claims checked by the rules `jsonwebtoken` applies (so a token this
//! module accepts is one `jsonwebtoken::decode` would accept, and the other way round).
//! HMAC secrets keep their key schedule from the config (not redone per token).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::jwt::TokenError;

/// The three parts of a compact token, borrowed from it.
pub(super) struct Compact<'a> {
    /// `header.payload`: what the signature covers.
    message: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

fn invalid(what: impl std::fmt::Display) -> TokenError {
    TokenError::Invalid(what.to_string())
}

impl<'a> Compact<'a> {
    /// Splits `token` at its dots: exactly three parts, or the token is invalid.
    pub(super) fn split(token: &'a str) -> Result<Self, TokenError> {
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| invalid("token is not header.payload.signature"))?;
        let (header, payload) = message
            .split_once('.')
            .ok_or_else(|| invalid("token is not header.payload.signature"))?;
        if payload.contains('.') {
            return Err(invalid("token has more than three parts"));
        }
        Ok(Self {
            message,
            header,
            payload,
            signature,
        })
    }

    /// The header, which must name an algorithm `jsonwebtoken` knows.
    pub(super) fn header(&self) -> Result<Header, TokenError> {
        let json = URL_SAFE_NO_PAD.decode(self.header).map_err(invalid)?;
        serde_json::from_slice(&json).map_err(invalid)
    }

    /// The claims, which must be a JSON object.
    pub(super) fn claims(&self) -> Result<Map<String, Value>, TokenError> {
        let json = URL_SAFE_NO_PAD.decode(self.payload).map_err(invalid)?;
        serde_json::from_slice(&json).map_err(invalid)
    }

    /// Whether `key` signed this token with `alg` (a public key or a JWKS key; `Err` when the
    /// key cannot be used with `alg` or the signature is not base64url).
    pub(super) fn signed_by(&self, key: &DecodingKey, alg: Algorithm) -> Result<bool, TokenError> {
        jsonwebtoken::crypto::verify(self.signature, self.message.as_bytes(), key, alg)
            .map_err(invalid)
    }

    /// Whether `secret` signed this token with the HMAC algorithm `alg`.
    pub(super) fn signed_with(&self, secret: &HmacSecret, alg: Algorithm) -> bool {
        // The longest HMAC output (SHA-512) is 64 bytes; a longer signature cannot match.
        let mut signature = [0u8; 64];
        let Ok(len) = URL_SAFE_NO_PAD.decode_slice(self.signature, &mut signature) else {
            return false;
        };
        let signature = &signature[..len];
        let message = self.message.as_bytes();
        // `verify_slice` compares in constant time and refuses a signature of another length.
        match alg {
            Algorithm::HS256 => secret
                .sha256
                .clone()
                .chain_update(message)
                .verify_slice(signature),
            Algorithm::HS384 => secret
                .sha384
                .clone()
                .chain_update(message)
                .verify_slice(signature),
            Algorithm::HS512 => secret
                .sha512
                .clone()
                .chain_update(message)
                .verify_slice(signature),
            _ => return false,
        }
        .is_ok()
    }
}

/// An HMAC secret with its inner and outer key blocks computed once, for each hash size.
#[derive(Clone)]
pub(super) struct HmacSecret {
    sha256: Hmac<Sha256>,
    sha384: Hmac<Sha384>,
    sha512: Hmac<Sha512>,
}

impl HmacSecret {
    pub(super) fn new(secret: &[u8]) -> Self {
        // HMAC takes a key of any length (a long one is hashed first), so these cannot fail.
        const ANY_LENGTH: &str = "HMAC accepts a key of any length";
        Self {
            sha256: Hmac::new_from_slice(secret).expect(ANY_LENGTH),
            sha384: Hmac::new_from_slice(secret).expect(ANY_LENGTH),
            sha512: Hmac::new_from_slice(secret).expect(ANY_LENGTH),
        }
    }
}

/// `exp` and `nbf` as `jsonwebtoken` reads them: a non-negative integer, or a finite
/// non-negative number (rounded); anything else present (a string, a negative number, `null`)
/// makes the token invalid. Expired when `exp` is before `now`, not yet valid when `nbf` is
/// after it; both are [`TokenError::Expired`], which tells the SDK to fetch a new token.
pub(super) fn check_times(claims: &Map<String, Value>, now: u64) -> Result<(), TokenError> {
    let time = |name: &str| -> Result<Option<u64>, TokenError> {
        let Some(value) = claims.get(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(n) => n.as_u64().or_else(|| {
                let f = n.as_f64().filter(|_| !n.is_i64())?;
                (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
            }),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| invalid(format_args!("claim {name} is not a valid time")))
    };
    let exp = time("exp")?;
    let nbf = time("nbf")?;
    if exp.is_some_and(|exp| exp < now) || nbf.is_some_and(|nbf| nbf > now) {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, EncodingKey, Validation};
    use serde_json::json;
    use std::collections::HashSet;

    /// What `jsonwebtoken::decode` says of `token` with Rotor's rules (exp/nbf, no leeway).
    fn reference(token: &str, secret: &str, alg: Algorithm) -> Result<(), String> {
        let mut v = Validation::new(alg);
        v.leeway = 0;
        v.required_spec_claims = HashSet::new();
        v.validate_nbf = true;
        v.validate_aud = false;
        decode::<Map<String, Value>>(token, &DecodingKey::from_secret(secret.as_bytes()), &v)
            .map(|_| ())
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature
                | jsonwebtoken::errors::ErrorKind::ImmatureSignature => "expired".into(),
                _ => "invalid".into(),
            })
    }

    /// What this module says of it.
    fn ours(token: &str, secret: &str) -> Result<(), String> {
        let class = |e: TokenError| match e {
            TokenError::Expired => "expired".to_string(),
            _ => "invalid".to_string(),
        };
        let parts = Compact::split(token).map_err(class)?;
        let header = parts.header().map_err(class)?;
        if !matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) || !parts.signed_with(&HmacSecret::new(secret.as_bytes()), header.alg)
        {
            return Err("invalid".into());
        }
        let claims = parts.claims().map_err(class)?;
        check_times(&claims, jsonwebtoken::get_current_timestamp()).map_err(class)
    }

    fn sign_raw(alg: Algorithm, secret: &str, payload: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Header::new(alg)).unwrap());
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let message = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(secret.as_bytes()),
            alg,
        )
        .unwrap();
        format!("{message}.{signature}")
    }

    #[test]
    fn agrees_with_jsonwebtoken_on_claims_signatures_and_shapes() {
        let now = jsonwebtoken::get_current_timestamp();
        let payloads = [
            json!({"sub": "1"}).to_string(),
            json!({"sub": "1", "exp": now + 60}).to_string(),
            json!({"sub": "1", "exp": now}).to_string(),
            json!({"sub": "1", "exp": now - 1}).to_string(),
            json!({"sub": "1", "exp": (now + 60) as f64 + 0.4}).to_string(),
            json!({"sub": "1", "exp": (now - 1) as f64 + 0.4}).to_string(),
            json!({"sub": "1", "exp": (now - 1) as f64 + 0.6}).to_string(),
            json!({"sub": "1", "exp": 1e300}).to_string(),
            json!({"sub": "1", "exp": -5}).to_string(),
            json!({"sub": "1", "exp": -0.5}).to_string(),
            json!({"sub": "1", "exp": "9999999999"}).to_string(),
            json!({"sub": "1", "exp": null}).to_string(),
            json!({"sub": "1", "exp": [1]}).to_string(),
            json!({"sub": "1", "exp": true}).to_string(),
            json!({"sub": "1", "nbf": now + 60}).to_string(),
            json!({"sub": "1", "nbf": now}).to_string(),
            json!({"sub": "1", "nbf": now - 60, "exp": now + 60}).to_string(),
            json!({"sub": "1", "nbf": "soon"}).to_string(),
            json!({"sub": "1", "nbf": null}).to_string(),
            json!({"sub": "1", "exp": now - 1, "nbf": "x"}).to_string(),
            format!(r#"{{"sub":"1","exp":{}}}"#, u64::MAX),
            r#"{"sub":"1","exp":18446744073709551616}"#.to_string(),
            r#"{"sub":"1","exp":1e19}"#.to_string(),
            "[1,2]".to_string(),
            "\"text\"".to_string(),
            "{\"sub\":".to_string(),
            "not json".to_string(),
        ];
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            for payload in &payloads {
                for secret in ["secret", "other"] {
                    let token = sign_raw(alg, "secret", payload);
                    assert_eq!(
                        ours(&token, secret),
                        reference(&token, secret, alg),
                        "{alg:?} {payload} checked with {secret:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_tokens_are_invalid_as_jsonwebtoken_says() {
        let good = sign_raw(Algorithm::HS256, "secret", r#"{"sub":"1"}"#);
        let (message, signature) = good.rsplit_once('.').unwrap();
        let (header, payload) = message.split_once('.').unwrap();
        let padded_sig = format!("{message}.{signature}=");
        let cases = [
            String::new(),
            "abc".to_string(),
            "a.b".to_string(),
            "..".to_string(),
            format!("{header}.{payload}"),
            format!("{good}.extra"),
            format!("{header}.{payload}.{signature}.{signature}"),
            format!("{header}..{signature}"),
            format!("{header}.{payload}."),
            format!(".{payload}.{signature}"),
            padded_sig,
            format!("{message}.{}", &signature[..signature.len() - 2]),
            format!("{message}.{signature}AAAA"),
            format!("{message}.!!!!"),
            // A header naming `none`, or an algorithm jsonwebtoken does not know.
            format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#)),
            format!(
                "{}.{payload}.{signature}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"HS999"}"#)
            ),
            format!(
                "{}.{payload}.{signature}",
                URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT"}"#)
            ),
            format!(
                "{}.{payload}.{signature}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":5}"#)
            ),
        ];
        assert_eq!(ours(&good, "secret"), Ok(()));
        for token in &cases {
            assert_eq!(ours(token, "secret"), Err("invalid".to_string()), "{token}");
            assert_eq!(
                reference(token, "secret", Algorithm::HS256),
                Err("invalid".to_string()),
                "{token}"
            );
        }
    }

    #[test]
    fn a_public_key_cannot_be_used_as_an_hmac_secret() {
        let pem = include_str!("../../tests/fixtures/rsa_public.pem");
        let key = DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let forged = sign_raw(Algorithm::HS256, pem, r#"{"sub":"1"}"#);
        let parts = Compact::split(&forged).unwrap();
        assert!(parts.signed_by(&key, Algorithm::HS256).is_err());
        assert_eq!(parts.signed_by(&key, Algorithm::RS256), Ok(false));
    }

    #[test]
    fn a_long_secret_verifies_like_a_short_one() {
        let long = "k".repeat(300);
        let token = sign_raw(Algorithm::HS512, &long, r#"{"sub":"1"}"#);
        assert_eq!(ours(&token, &long), Ok(()));
        assert_eq!(reference(&token, &long, Algorithm::HS512), Ok(()));
    }
}
