//! Connection tokens of every supported algorithm, signed with real keys (test fixtures), and
//! the refusals that must hold: algorithm confusion, `none`, another project's key, expiry.

mod common;

use common::{now, Client, TestServer};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const RSA_PRIVATE: &str = include_str!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("fixtures/ec_private.pem");
const EC_PUBLIC: &str = include_str!("fixtures/ec_public.pem");

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    encode(&Header::new(alg), &claims, key).unwrap()
}

async fn outcome(s: &TestServer, token: &str) -> Result<Value, u16> {
    let mut c = Client::open(&s.ws_url()).await;
    let id = c.send(json!({"connect": {"token": token}})).await;
    match c.read().await {
        Ok(v) if v["id"] == json!(id) => match v.get("error") {
            Some(e) => Err(e["code"].as_u64().unwrap() as u16),
            None => Ok(v["connect"].clone()),
        },
        Ok(other) => panic!("unexpected {other}"),
        Err(closed) => Err(closed.code),
    }
}

#[tokio::test]
async fn rsa_and_ecdsa_tokens_of_every_size_are_accepted_with_their_public_keys() {
    let s = TestServer::start(
        json!({"client": {"token": {"rsa_public_key": RSA_PUBLIC, "ecdsa_public_key": EC_PUBLIC}}}),
    )
    .await;
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let t = sign(alg, &rsa, json!({"sub": "r", "exp": now() + 60}));
        assert!(outcome(&s, &t).await.is_ok(), "{alg:?}");
    }
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let t = sign(
        Algorithm::ES256,
        &ec,
        json!({"sub": "e", "exp": now() + 60}),
    );
    assert!(outcome(&s, &t).await.is_ok(), "ES256");
    let expired = sign(
        Algorithm::RS256,
        &rsa,
        json!({"sub": "r", "exp": now() - 60}),
    );
    assert_eq!(outcome(&s, &expired).await.unwrap_err(), 109);
}

#[tokio::test]
async fn forged_and_confused_tokens_are_refused() {
    let s = TestServer::start(json!({"client": {"token": {"rsa_public_key": RSA_PUBLIC}}})).await;
    let cases: Vec<(&str, String)> = vec![
        // HMAC signed with the RSA public key as the secret: the classic confusion attack.
        (
            "hs256 with the public key as secret",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
                json!({"sub": "x"}),
            ),
        ),
        (
            "alg none",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.".to_owned(),
        ),
        (
            "another project's HMAC secret",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"other-project"),
                json!({"sub": "x"}),
            ),
        ),
        (
            "ECDSA without an ECDSA key configured",
            sign(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
                json!({"sub": "x"}),
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in cases {
        assert_eq!(outcome(&s, &token).await.unwrap_err(), 3500, "{what}");
    }
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let early = sign(
        Algorithm::RS256,
        &rsa,
        json!({"sub": "x", "nbf": now() + 600}),
    );
    assert_eq!(
        outcome(&s, &early).await.unwrap_err(),
        109,
        "not yet valid counts as expired"
    );
}

#[tokio::test]
async fn audience_and_issuer_rules_apply_to_public_key_tokens() {
    let s = TestServer::start(json!({"client": {"token": {"rsa_public_key": RSA_PUBLIC, "audience": "rotor", "issuer": "https://auth.example"}}})).await;
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let good = sign(
        Algorithm::RS256,
        &rsa,
        json!({"sub": "x", "aud": "rotor", "iss": "https://auth.example"}),
    );
    assert!(outcome(&s, &good).await.is_ok());
    let wrong_aud = sign(
        Algorithm::RS256,
        &rsa,
        json!({"sub": "x", "aud": "other", "iss": "https://auth.example"}),
    );
    assert_eq!(outcome(&s, &wrong_aud).await.unwrap_err(), 3500);
    let wrong_iss = sign(
        Algorithm::RS256,
        &rsa,
        json!({"sub": "x", "aud": "rotor", "iss": "https://evil.example"}),
    );
    assert_eq!(outcome(&s, &wrong_iss).await.unwrap_err(), 3500);
}

#[tokio::test]
async fn a_subscription_token_for_one_channel_does_not_open_another() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u").await;
    let for_a = common::token(json!({"sub": "u", "channel": "$room-a"}));
    assert!(c
        .call(json!({"subscribe": {"channel": "$room-a", "token": for_a}}))
        .await["subscribe"]
        .is_object());
    c.send(json!({"subscribe": {"channel": "$room-b", "token": for_a}}))
        .await;
    assert_eq!(c.closed().await.code, 3500);
}
