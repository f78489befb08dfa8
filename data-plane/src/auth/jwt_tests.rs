//! Tests of the token verifier (`jwt.rs`): every key family, expiry, audience and issuer,
//! rotation and unsigned tokens.

use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

fn verifier(secret: &str) -> TokenVerifier {
    TokenVerifier::new(&TokenSection {
        hmac_secret_key: secret.into(),
        ..Default::default()
    })
    .unwrap()
}

fn sign(alg: Algorithm, secret: &str, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn hmac_tokens_of_every_size_verify_and_carry_their_claims() {
    let v = verifier("secret");
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = sign(
            alg,
            "secret",
            json!({"sub": "42", "exp": now() + 60, "info": {"name": "Ann"}, "channels": ["news"]}),
        );
        let c = v.verify_connect(&t).await.unwrap();
        assert_eq!(c.user, "42");
        assert_eq!(&c.info[..], br#"{"name":"Ann"}"#);
        assert_eq!(c.channels, vec!["news"]);
        assert!(c.expires_at().is_some());
    }
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_expired_others_invalid() {
    let v = verifier("secret");
    let expired = sign(
        Algorithm::HS256,
        "secret",
        json!({"sub": "1", "exp": now() - 10}),
    );
    assert_eq!(v.verify_connect(&expired).await, Err(TokenError::Expired));
    let early = sign(
        Algorithm::HS256,
        "secret",
        json!({"sub": "1", "nbf": now() + 100}),
    );
    assert_eq!(v.verify_connect(&early).await, Err(TokenError::Expired));
    let wrong = sign(Algorithm::HS256, "other", json!({"sub": "1"}));
    assert!(matches!(
        v.verify_connect(&wrong).await,
        Err(TokenError::Invalid(_))
    ));
    assert!(matches!(
        v.verify_connect("not.a.token").await,
        Err(TokenError::Invalid(_))
    ));
    let with_channel = sign(
        Algorithm::HS256,
        "secret",
        json!({"sub": "1", "channel": "x"}),
    );
    assert!(matches!(
        v.verify_connect(&with_channel).await,
        Err(TokenError::Invalid(_))
    ));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let v = verifier("secret");
    // {"alg":"none","typ":"JWT"} . {"sub":"1"} . (empty signature)
    let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.";
    assert!(matches!(
        v.verify_connect(token).await,
        Err(TokenError::Invalid(_))
    ));
}

#[tokio::test]
async fn an_rsa_algorithm_is_refused_when_only_hmac_is_configured() {
    let v = verifier("secret");
    // A token claiming RS256 must not be checked against the HMAC secret.
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"1"}"#);
    let token = format!("{header}.{body}.c2ln");
    assert!(
        matches!(v.verify_connect(&token).await, Err(TokenError::Invalid(m)) if m.contains("no key"))
    );
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let v = TokenVerifier::new(&TokenSection {
        hmac_secret_key: "s".into(),
        audience: "rotor".into(),
        issuer_regex: "^https://auth\\.".into(),
        ..Default::default()
    })
    .unwrap();
    let good = sign(
        Algorithm::HS256,
        "s",
        json!({"sub": "1", "aud": "rotor", "iss": "https://auth.example"}),
    );
    assert!(v.verify_connect(&good).await.is_ok());
    let bad_aud = sign(
        Algorithm::HS256,
        "s",
        json!({"sub": "1", "aud": "other", "iss": "https://auth.example"}),
    );
    assert!(matches!(
        v.verify_connect(&bad_aud).await,
        Err(TokenError::Invalid(_))
    ));
    let bad_iss = sign(
        Algorithm::HS256,
        "s",
        json!({"sub": "1", "aud": "rotor", "iss": "https://evil"}),
    );
    assert!(matches!(
        v.verify_connect(&bad_iss).await,
        Err(TokenError::Invalid(_))
    ));
}

/// A signed token that leaves out the claim an `audience` or `issuer` rule is configured
/// for, or holds it as something other than a string, is refused: it was not minted for
/// this project (a token another service of the customer's signs with the same secret).
#[tokio::test]
async fn a_token_without_the_configured_audience_or_issuer_is_refused() {
    let v = TokenVerifier::new(&TokenSection {
        hmac_secret_key: "s".into(),
        audience: "rotor".into(),
        issuer: "https://auth.example".into(),
        ..Default::default()
    })
    .unwrap();
    let good = json!({"sub": "1", "aud": ["x", "rotor"], "iss": "https://auth.example"});
    assert!(v
        .verify_connect(&sign(Algorithm::HS256, "s", good.clone()))
        .await
        .is_ok());
    let mut sub = good;
    sub["channel"] = json!("chat");
    assert!(v
        .verify_subscribe(&sign(Algorithm::HS256, "s", sub))
        .await
        .is_ok());
    for claims in [
        json!({"sub": "1", "iss": "https://auth.example"}),
        json!({"sub": "1", "aud": null, "iss": "https://auth.example"}),
        json!({"sub": "1", "aud": 7, "iss": "https://auth.example"}),
        json!({"sub": "1", "aud": {"rotor": true}, "iss": "https://auth.example"}),
        json!({"sub": "1", "aud": "rotor"}),
        json!({"sub": "1", "aud": "rotor", "iss": 1}),
        json!({"sub": "1", "aud": "rotor", "iss": ["https://auth.example"]}),
    ] {
        let token = sign(Algorithm::HS256, "s", claims.clone());
        assert!(
            matches!(v.verify_connect(&token).await, Err(TokenError::Invalid(_))),
            "{claims}"
        );
        let mut sub = claims.clone();
        sub["channel"] = json!("chat");
        let token = sign(Algorithm::HS256, "s", sub);
        assert!(
            matches!(
                v.verify_subscribe(&token).await,
                Err(TokenError::Invalid(_))
            ),
            "{claims}"
        );
    }
}

#[tokio::test]
async fn the_previous_secret_works_only_until_its_deadline() {
    let mk = |until| {
        TokenVerifier::new(&TokenSection {
            hmac_secret_key: "new".into(),
            hmac_previous_secret_key: "old".into(),
            hmac_previous_secret_key_valid_until: until,
            ..Default::default()
        })
        .unwrap()
    };
    let old = sign(Algorithm::HS256, "old", json!({"sub": "1"}));
    assert!(mk(now() + 60).verify_connect(&old).await.is_ok());
    assert!(mk(now() - 60).verify_connect(&old).await.is_err());
}

#[tokio::test]
async fn without_signature_checks_any_signature_passes_but_claims_are_still_checked() {
    let v = TokenVerifier::new(&TokenSection {
        hmac_secret_key: "secret".into(),
        audience: "rotor".into(),
        ..Default::default()
    })
    .unwrap();
    let forged = sign(
        Algorithm::HS256,
        "not-the-secret",
        json!({"sub": "7", "aud": "rotor", "exp": now() + 60}),
    );
    assert!(matches!(
        v.verify_connect(&forged).await,
        Err(TokenError::Invalid(_))
    ));
    let v = v.skip_signature(true);
    assert_eq!(v.verify_connect(&forged).await.unwrap().user, "7");
    let expired = sign(
        Algorithm::HS256,
        "x",
        json!({"sub": "7", "aud": "rotor", "exp": now() - 5}),
    );
    assert_eq!(v.verify_connect(&expired).await, Err(TokenError::Expired));
    let early = sign(
        Algorithm::HS256,
        "x",
        json!({"sub": "7", "aud": "rotor", "nbf": now() + 500}),
    );
    assert_eq!(v.verify_connect(&early).await, Err(TokenError::Expired));
    let wrong_aud = sign(Algorithm::HS256, "x", json!({"sub": "7", "aud": "other"}));
    assert!(matches!(
        v.verify_connect(&wrong_aud).await,
        Err(TokenError::Invalid(_))
    ));
    assert!(matches!(
        v.verify_connect("garbage").await,
        Err(TokenError::Invalid(_))
    ));
    // The token's `alg` no longer matters: an RS256 header with a junk signature passes.
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let body =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"8","aud":"rotor"}"#);
    let token = format!("{header}.{body}.c2ln");
    assert_eq!(v.verify_connect(&token).await.unwrap().user, "8");
}

#[tokio::test]
async fn subscription_tokens_need_a_channel() {
    let v = verifier("s");
    let t = sign(
        Algorithm::HS256,
        "s",
        json!({"sub": "1", "channel": "$room", "info": {"r": 1}}),
    );
    let s = v.verify_subscribe(&t).await.unwrap();
    assert_eq!(s.channel, "$room");
    assert_eq!(&s.info[..], br#"{"r":1}"#);
    let none = sign(Algorithm::HS256, "s", json!({"sub": "1"}));
    assert!(matches!(
        v.verify_subscribe(&none).await,
        Err(TokenError::Invalid(_))
    ));
}
