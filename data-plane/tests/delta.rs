//! Fossil delta compression over real WebSockets: negotiation at subscribe, the first
//! publication whole and later ones as deltas (JSON: `data` a JSON string; Protobuf: raw delta
//! bytes), subscribers without delta on the same channel unaffected, recovery whole, and the
//! Redis engine handing the previous publication to every node.

mod common;

use common::{api, Client, TestServer};
use rotor_data_plane::fossil;
use serde_json::{json, Value};

/// A `doc` namespace with history and Fossil delta allowed, and `plain` without delta.
fn config() -> Value {
    json!({"channel": {"namespaces": [
        {"name": "doc", "history_size": 10, "history_ttl": "60s", "allow_subscribe_for_client": true,
         "allow_recovery": true, "allowed_delta_types": ["fossil"]},
        {"name": "auto", "history_size": 10, "history_ttl": "60s", "allow_subscribe_for_client": true,
         "allow_publish_for_subscriber": true, "allowed_delta_types": ["fossil"], "delta_publish": true},
        {"name": "plain", "history_size": 10, "history_ttl": "60s", "allow_subscribe_for_client": true}
    ]}})
}

/// A ~1 KB JSON document that changes by a few fields with `n`.
fn doc(n: u64) -> Value {
    let items: Vec<Value> = (0..12)
        .map(|i| json!({"id": i, "name": format!("item {i}"), "qty": if i == n % 12 { n } else { i }}))
        .collect();
    json!({"version": n, "status": if n.is_multiple_of(2) { "open" } else { "closed" }, "items": items,
           "note": "the rest of the document stays the same from one publication to the next"})
}

/// What a delta subscriber decodes from one JSON publication, given its previous value: the
/// new document's bytes, and whether it came as a delta.
fn apply_json(prev: Option<&[u8]>, publication: &Value) -> (Vec<u8>, bool) {
    let text = publication["data"]
        .as_str()
        .unwrap_or_else(|| panic!("delta subscribers get data as a JSON string: {publication}"));
    if publication["delta"] == true {
        let base = prev.expect("a delta needs a previous publication");
        (
            fossil::apply(base, text.as_bytes()).expect("a valid delta"),
            true,
        )
    } else {
        (text.as_bytes().to_vec(), false)
    }
}

#[tokio::test]
async fn json_delta_subscribers_get_the_first_publication_whole_then_deltas_and_others_get_json() {
    let s = TestServer::start(config()).await;
    let (mut d, _) = Client::connected(&s.ws_url(), "d").await;
    let r = d
        .call(json!({"subscribe": {"channel": "doc:1", "delta": "fossil"}}))
        .await;
    assert_eq!(r["subscribe"]["delta"], true, "{r}");
    let (mut plain, _) = Client::connected(&s.ws_url(), "p").await;
    let r = plain.call(json!({"subscribe": {"channel": "doc:1"}})).await;
    assert!(r["subscribe"].get("delta").is_none(), "{r}");
    for n in 1..=4 {
        let r = api(
            &s,
            "publish",
            json!({"channel": "doc:1", "data": doc(n), "delta": true}),
        )
        .await;
        assert_eq!(r["result"]["offset"], n, "{r}");
    }
    let mut prev: Option<Vec<u8>> = None;
    let mut kinds = Vec::new();
    for n in 1..=4 {
        let p = d.push().await;
        let (bytes, was_delta) = apply_json(prev.as_deref(), &p["pub"]);
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value, doc(n));
        assert_eq!(p["pub"]["offset"], n);
        if was_delta {
            let whole = serde_json::to_string(&doc(n)).unwrap();
            assert!(
                p["pub"]["data"].as_str().unwrap().len() * 4 < whole.len(),
                "the delta is much smaller than the document"
            );
        }
        kinds.push(was_delta);
        prev = Some(bytes);
    }
    assert_eq!(kinds, [false, true, true, true]);
    for n in 1..=4 {
        let p = plain.push().await;
        assert_eq!(
            p["pub"]["data"],
            doc(n),
            "raw JSON for subscribers without delta"
        );
        assert!(p["pub"].get("delta").is_none());
    }
}

#[tokio::test]
async fn without_the_publish_flag_or_in_a_namespace_without_delta_publications_come_whole() {
    let s = TestServer::start(config()).await;
    let (mut d, _) = Client::connected(&s.ws_url(), "d").await;
    let r = d
        .call(json!({"subscribe": {"channel": "doc:2", "delta": "fossil"}}))
        .await;
    assert_eq!(r["subscribe"]["delta"], true);
    let r = d
        .call(json!({"subscribe": {"channel": "plain:2", "delta": "fossil"}}))
        .await;
    assert!(
        r["subscribe"].get("delta").is_none(),
        "not negotiated where the namespace does not allow it: {r}"
    );
    for n in 1..=2 {
        api(&s, "publish", json!({"channel": "doc:2", "data": doc(n)})).await;
    }
    for n in 1..=2 {
        let p = d.push().await;
        assert!(p["pub"].get("delta").is_none());
        let text = p["pub"]["data"].as_str().expect("still a JSON string");
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), doc(n));
    }
    for n in 1..=2 {
        api(
            &s,
            "publish",
            json!({"channel": "plain:2", "data": doc(n), "delta": true}),
        )
        .await;
    }
    for n in 1..=2 {
        let p = d.push().await;
        assert_eq!(p["pub"]["data"], doc(n));
    }
}

#[tokio::test]
async fn an_unknown_delta_type_closes_the_connection_as_a_bad_request() {
    let s = TestServer::start(config()).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "c").await;
    c.send(json!({"subscribe": {"channel": "doc:3", "delta": "xdelta"}}))
        .await;
    assert_eq!(c.closed().await.code, 3501);
}

#[tokio::test]
async fn recovery_delivers_whole_publications_and_delta_resumes_after_the_next_one() {
    let s = TestServer::start(config()).await;
    for n in 1..=3 {
        api(
            &s,
            "publish",
            json!({"channel": "doc:4", "data": doc(n), "delta": true}),
        )
        .await;
    }
    let top = api(&s, "history", json!({"channel": "doc:4", "limit": 0})).await;
    let epoch = top["result"]["epoch"].clone();
    let (mut d, _) = Client::connected(&s.ws_url(), "d").await;
    let r = d
        .call(
            json!({"subscribe": {"channel": "doc:4", "delta": "fossil", "recoverable": true,
                                    "recover": true, "offset": 1, "epoch": epoch}}),
        )
        .await;
    let sub = &r["subscribe"];
    assert_eq!(
        (sub["delta"].clone(), sub["recovered"].clone()),
        (json!(true), json!(true))
    );
    let recovered = sub["publications"].as_array().unwrap();
    assert_eq!(recovered.len(), 2);
    let mut prev = None;
    for (p, n) in recovered.iter().zip(2..) {
        let (bytes, was_delta) = apply_json(prev.as_deref(), p);
        assert!(!was_delta, "recovered publications are whole");
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), doc(n));
        prev = Some(bytes);
    }
    for n in 4..=5 {
        api(
            &s,
            "publish",
            json!({"channel": "doc:4", "data": doc(n), "delta": true}),
        )
        .await;
    }
    let mut kinds = Vec::new();
    for n in 4..=5 {
        let p = d.push().await;
        let (bytes, was_delta) = apply_json(prev.as_deref(), &p["pub"]);
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), doc(n));
        kinds.push(was_delta);
        prev = Some(bytes);
    }
    assert_eq!(
        kinds,
        [false, true],
        "whole after subscribing, then a delta"
    );
}

#[tokio::test]
async fn delta_publish_makes_client_publications_deltas_too() {
    let s = TestServer::start(config()).await;
    let (mut d, _) = Client::connected(&s.ws_url(), "d").await;
    d.call(json!({"subscribe": {"channel": "auto:1", "delta": "fossil"}}))
        .await;
    for n in 1..=3 {
        let r = d
            .call(json!({"publish": {"channel": "auto:1", "data": doc(n)}}))
            .await;
        assert!(r.get("error").is_none(), "{r}");
    }
    let mut prev = None;
    let mut kinds = Vec::new();
    for n in 1..=3 {
        let p = d.push().await;
        let (bytes, was_delta) = apply_json(prev.as_deref(), &p["pub"]);
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), doc(n));
        kinds.push(was_delta);
        prev = Some(bytes);
    }
    assert_eq!(kinds, [false, true, true]);
}

#[tokio::test]
async fn protobuf_delta_subscribers_get_raw_delta_bytes() {
    use rotor_data_plane::protocol::{Command, ConnectRequest, SubscribeRequest};

    let s = TestServer::start(config()).await;
    let mut pb = common::pb::PbClient::open(&s.ws_url()).await;
    pb.send(&[
        Command {
            id: 1,
            connect: Some(ConnectRequest {
                token: common::token(json!({"sub": "pb"})),
                ..Default::default()
            }),
            ..Default::default()
        },
        Command {
            id: 2,
            subscribe: Some(SubscribeRequest {
                channel: "doc:pb".into(),
                delta: "fossil".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ])
    .await;
    let mut subscribed = None;
    while subscribed.is_none() {
        let r = pb.next().await;
        if r.id == 2 {
            subscribed = r.subscribe;
        }
    }
    assert!(subscribed.unwrap().delta);
    for n in 1..=3 {
        api(
            &s,
            "publish",
            json!({"channel": "doc:pb", "data": doc(n), "delta": true}),
        )
        .await;
    }
    let mut prev: Option<Vec<u8>> = None;
    let mut kinds = Vec::new();
    for n in 1..=3 {
        let publication = loop {
            if let Some(p) = pb.next().await.push.and_then(|p| p.r#pub) {
                break p;
            }
        };
        let bytes = if publication.delta {
            fossil::apply(prev.as_deref().unwrap(), &publication.data).unwrap()
        } else {
            publication.data.to_vec()
        };
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), doc(n));
        kinds.push(publication.delta);
        prev = Some(bytes);
    }
    assert_eq!(kinds, [false, true, true]);
}

#[tokio::test]
async fn with_redis_a_node_computes_deltas_for_publications_made_on_another() {
    let prefix = format!("rotor-test:{}:", uuid::Uuid::new_v4().simple());
    let a = TestServer::start_redis(config(), &prefix).await;
    let b = TestServer::start_redis(config(), &prefix).await;
    let (mut d, _) = Client::connected(&a.ws_url(), "d").await;
    let r = d
        .call(json!({"subscribe": {"channel": "doc:r", "delta": "fossil"}}))
        .await;
    assert_eq!(r["subscribe"]["delta"], true);
    let (mut plain, _) = Client::connected(&a.ws_url(), "p").await;
    plain.call(json!({"subscribe": {"channel": "doc:r"}})).await;
    for n in 1..=4 {
        let r = api(
            &b,
            "publish",
            json!({"channel": "doc:r", "data": doc(n), "delta": true}),
        )
        .await;
        assert_eq!(r["result"]["offset"], n, "{r}");
    }
    let mut prev = None;
    let mut kinds = Vec::new();
    for n in 1..=4 {
        let p = d.push().await;
        let (bytes, was_delta) = apply_json(prev.as_deref(), &p["pub"]);
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), doc(n));
        kinds.push(was_delta);
        prev = Some(bytes);
    }
    assert_eq!(kinds, [false, true, true, true]);
    for n in 1..=4 {
        assert_eq!(plain.push().await["pub"]["data"], doc(n));
    }
    common::delete_keys(&prefix);
}
