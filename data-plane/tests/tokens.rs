//! Connection tokens of every supported algorithm, signed with real keys (test fixtures), and
//! the refusals that must hold: algorithm confusion, `none`, another project's key, expiry;
//! keys from a JWKS endpoint served in-process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{now, Client, TestServer};
use jsonwebtoken::jwk::Jwk;
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
    // A token minted for no audience (or no issuer) is not minted for this project.
    for claims in [
        json!({"sub": "x", "iss": "https://auth.example"}),
        json!({"sub": "x", "aud": 1, "iss": "https://auth.example"}),
        json!({"sub": "x", "aud": "rotor"}),
    ] {
        let token = sign(Algorithm::RS256, &rsa, claims.clone());
        assert_eq!(outcome(&s, &token).await.unwrap_err(), 3500, "{claims}");
    }
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

/// A JWKS endpoint serving whatever key set the test sets, counting fetches.
struct JwksServer {
    addr: std::net::SocketAddr,
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(set: Value) -> Self {
        let set = Arc::new(Mutex::new(set));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (set.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (s, f) = (s.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = s.lock().unwrap().clone();
                    axum::Json(body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, set, fetches }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The public JWK of a signing key, under `kid`.
fn jwk(kid: &str, key: &EncodingKey, alg: Algorithm) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

fn sign_with_kid(alg: Algorithm, key: &EncodingKey, kid: &str, claims: Value) -> String {
    let header = Header {
        kid: Some(kid.to_owned()),
        ..Header::new(alg)
    };
    encode(&header, &claims, key).unwrap()
}

#[tokio::test]
async fn jwks_keys_are_fetched_once_and_again_only_for_a_new_kid() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let jwks = JwksServer::start(json!({"keys": [jwk("k1", &rsa, Algorithm::RS256)]})).await;
    let s = TestServer::start(json!({"client": {"token": {
        "hmac_secret_key": "", "jwks_public_endpoint": jwks.url()
    }}}))
    .await;
    let claims = || json!({"sub": "j", "exp": now() + 60});

    let t = sign_with_kid(Algorithm::RS256, &rsa, "k1", claims());
    assert!(outcome(&s, &t).await.is_ok());
    assert!(outcome(&s, &t).await.is_ok());
    assert_eq!(jwks.fetches(), 1, "the key set is cached");
    let expired = sign_with_kid(
        Algorithm::RS256,
        &rsa,
        "k1",
        json!({"sub": "j", "exp": now() - 60}),
    );
    assert_eq!(outcome(&s, &expired).await.unwrap_err(), 109);

    // Key rotation: a token naming a key the cache lacks makes the server look again.
    *jwks.set.lock().unwrap() = json!({"keys": [
        jwk("k1", &rsa, Algorithm::RS256), jwk("k2", &ec, Algorithm::ES256)
    ]});
    let t = sign_with_kid(Algorithm::ES256, &ec, "k2", claims());
    assert!(outcome(&s, &t).await.is_ok());
    assert_eq!(jwks.fetches(), 2);

    let refused: Vec<(&str, String)> = vec![
        (
            "hs256 with the public key as secret",
            sign_with_kid(
                Algorithm::HS256,
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
                "k1",
                claims(),
            ),
        ),
        (
            "an RSA algorithm for the EC key",
            sign_with_kid(Algorithm::RS256, &rsa, "k2", claims()),
        ),
        ("no kid", sign(Algorithm::RS256, &rsa, claims())),
    ];
    for (what, token) in refused {
        assert_eq!(outcome(&s, &token).await.unwrap_err(), 3500, "{what}");
    }
    assert_eq!(jwks.fetches(), 2, "known kids need no fetch");

    // Made-up key ids: one more fetch, then the server holds off.
    for kid in ["k3", "k4", "k5"] {
        let t = sign_with_kid(Algorithm::RS256, &rsa, kid, claims());
        assert_eq!(outcome(&s, &t).await.unwrap_err(), 3500, "{kid}");
    }
    assert_eq!(jwks.fetches(), 3);
}

#[tokio::test]
async fn an_unreachable_jwks_endpoint_is_a_temporary_error() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let s = TestServer::start(json!({"client": {"token": {
        "jwks_public_endpoint": format!("http://{addr}/jwks.json")
    }}}))
    .await;
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let t = sign_with_kid(Algorithm::RS256, &rsa, "k1", json!({"sub": "j"}));
    assert_eq!(outcome(&s, &t).await.unwrap_err(), 100);
}

/// An auth service with one key set per tenant at `/{tenant}/jwks`, counting fetches by path.
async fn per_tenant_jwks(sets: Value) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let fetched = Arc::new(Mutex::new(Vec::new()));
    let f = fetched.clone();
    let app = axum::Router::new().route(
        "/{tenant}/jwks",
        axum::routing::get(
            move |axum::extract::Path(tenant): axum::extract::Path<String>| {
                let (f, sets) = (f.clone(), sets.clone());
                async move {
                    f.lock().unwrap().push(tenant.clone());
                    axum::Json(sets.get(&tenant).cloned().unwrap_or(json!({"keys": []})))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, fetched)
}

/// The attack on a templated JWKS endpoint: the `{{tenant}}` value comes from a token nobody
/// has verified yet, so a forged `iss` must not be able to send the key fetch anywhere the
/// operator did not list (another tenant of a shared auth service, another host).
#[tokio::test]
async fn a_jwks_endpoint_template_only_ever_fetches_the_listed_endpoints() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let (addr, fetched) = per_tenant_jwks(json!({
        "acme": {"keys": [jwk("k1", &rsa, Algorithm::RS256)]},
        "globex": {"keys": [jwk("k1", &ec, Algorithm::ES256)]},
        // The attacker's own tenant on the same auth service, with the attacker's key.
        "evil": {"keys": [jwk("k1", &ec, Algorithm::ES256)]},
    }))
    .await;
    let s = TestServer::start(json!({"client": {"token": {
        "hmac_secret_key": "",
        "jwks_public_endpoint": format!("http://{addr}/{{{{tenant}}}}/jwks"),
        "issuer_regex": r"^https://auth\.example/(?P<tenant>acme|globex)$"
    }}}))
    .await;
    let claims = |iss: &str| json!({"sub": "j", "iss": iss, "exp": now() + 60});
    let acme = sign_with_kid(
        Algorithm::RS256,
        &rsa,
        "k1",
        claims("https://auth.example/acme"),
    );
    assert!(outcome(&s, &acme).await.is_ok());
    let globex = sign_with_kid(
        Algorithm::ES256,
        &ec,
        "k1",
        claims("https://auth.example/globex"),
    );
    assert!(outcome(&s, &globex).await.is_ok());
    let attacks = [
        "https://auth.example/evil",
        "https://auth.example/acme/../evil",
        "https://auth.example/acme?x=../evil",
        "https://evil.example/acme",
    ];
    for iss in attacks {
        let t = sign_with_kid(Algorithm::ES256, &ec, "k1", claims(iss));
        assert_eq!(outcome(&s, &t).await.unwrap_err(), 3500, "{iss}");
    }
    // acme's name with globex's key: acme's key set has no such key.
    let crossed = sign_with_kid(
        Algorithm::ES256,
        &ec,
        "k1",
        claims("https://auth.example/acme"),
    );
    assert_eq!(outcome(&s, &crossed).await.unwrap_err(), 3500);
    let mut seen = fetched.lock().unwrap().clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec!["acme", "globex"], "only the listed endpoints");

    // Templates that would let a token choose the host, or any path, are refused at load.
    for (endpoint, regex) in [
        (
            "http://{{tenant}}.example/jwks",
            r"^(?P<tenant>acme|globex)$",
        ),
        (
            "http://auth.example/{{tenant}}/jwks",
            r"^(?P<tenant>[a-z]+)$",
        ),
        ("http://auth.example/{{tenant}}/jwks", r"^(?P<tenant>.+)$"),
        ("http://auth.example/{{nobody}}/jwks", r"^(?P<tenant>acme)$"),
    ] {
        let config = json!({"client": {"token": {
            "jwks_public_endpoint": endpoint, "issuer_regex": regex
        }}});
        let err = rotor_tenant_config::TenantConfig::from_value(config).unwrap_err();
        assert_eq!(
            err.path(),
            Some("client.token.jwks_public_endpoint"),
            "{endpoint} {regex}"
        );
    }
}
