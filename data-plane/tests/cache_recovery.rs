//! Cache recovery mode (`force_recovery_mode: "cache"`): a recovering subscriber gets only the
//! channel's latest publication, as its initial state; with `auto_cache_recover` every
//! subscribe (server-side ones too) recovers without the client asking. Checked with the
//! memory engine and with the Redis engine across two nodes.

mod common;

use common::{delete_keys, token, Client, TestServer};
use serde_json::{json, Value};

/// `state`: cache mode, forced recovery, recovered automatically. `latest`: cache mode,
/// recovery only when the client asks.
fn namespaces() -> Value {
    json!({"channel": {"namespaces": [
        {"name": "state", "history_size": 1, "history_ttl": "60s", "force_recovery": true,
         "force_recovery_mode": "cache", "auto_cache_recover": true,
         "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true},
        {"name": "latest", "history_size": 5, "history_ttl": "60s", "allow_recovery": true,
         "force_recovery_mode": "cache",
         "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}
    ]}})
}

/// The offsets and `n` payload values of a subscribe result's publications.
fn pubs(result: &Value) -> Vec<(u64, u64)> {
    result["publications"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["offset"].as_u64().unwrap_or(0),
                        p["data"]["n"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn subscribe(url: &str, sub: Value) -> Value {
    let (mut c, _) = Client::connected(url, "reader").await;
    let r = c.call(json!({ "subscribe": sub })).await;
    assert!(r.get("subscribe").is_some(), "{sub} → {r}");
    r["subscribe"].clone()
}

/// Publishes `n` = 1..=count into `channel` from a client on `url`.
async fn publish(url: &str, channel: &str, count: u64) {
    let (mut p, _) = Client::connected(url, "writer").await;
    p.call(json!({"subscribe": {"channel": channel}})).await;
    for n in 1..=count {
        let r = p
            .call(json!({"publish": {"channel": channel, "data": {"n": n}}}))
            .await;
        assert_eq!(r["publish"], json!({}), "{r}");
    }
}

/// The whole behaviour; subscribers use `sub_url`, the publisher `pub_url` (another node of
/// the same tenant with Redis).
async fn cache_mode_gives_the_latest_publication(sub_url: &str, pub_url: &str) {
    // An empty cache: the attempt is made, nothing is recovered, and that is no error even
    // for a client that asks for error 112 on unrecovered positions.
    let empty = subscribe(sub_url, json!({"channel": "state:a", "flag": 2})).await;
    assert_eq!(empty["was_recovering"], true, "{empty}");
    assert_eq!(empty["recovered"], Value::Null, "{empty}");
    assert_eq!(pubs(&empty), vec![]);
    assert_eq!(empty["recoverable"], true, "{empty}");
    let epoch = empty["epoch"].as_str().expect("epoch").to_owned();

    publish(pub_url, "state:a", 3).await;

    // A fresh subscriber: the latest publication as initial state, positioned before it.
    let fresh = subscribe(sub_url, json!({"channel": "state:a"})).await;
    assert_eq!(pubs(&fresh), vec![(3, 3)], "{fresh}");
    assert_eq!(
        (&fresh["recovered"], &fresh["was_recovering"]),
        (&json!(true), &json!(true)),
        "{fresh}"
    );
    assert_eq!(
        fresh["offset"],
        Value::Null,
        "the request's offset (0): {fresh}"
    );
    assert_eq!(fresh["epoch"], epoch.as_str());

    // A subscriber that already holds the latest gets nothing again; one behind gets only
    // the latest (not the stream in between).
    let holds = subscribe(
        sub_url,
        json!({"channel": "state:a", "recover": true, "offset": 3, "epoch": epoch}),
    )
    .await;
    assert_eq!(pubs(&holds), vec![]);
    assert_eq!(
        (&holds["recovered"], &holds["offset"]),
        (&json!(true), &json!(3))
    );
    let behind = subscribe(
        sub_url,
        json!({"channel": "state:a", "recover": true, "offset": 1, "epoch": epoch}),
    )
    .await;
    assert_eq!(pubs(&behind), vec![(3, 3)], "{behind}");
    assert_eq!(behind["offset"], 1);

    // Without auto_cache_recover the client decides: no recovery, no publications.
    publish(pub_url, "latest:a", 4).await;
    let plain = subscribe(sub_url, json!({"channel": "latest:a", "recoverable": true})).await;
    assert_eq!(pubs(&plain), vec![]);
    assert_eq!(plain["was_recovering"], Value::Null, "{plain}");
    assert_eq!(plain["offset"], 4, "positioned at the top: {plain}");
    // Asking with an empty position (centrifuge-js `since: {}`) gives only the latest of 4.
    let asked = subscribe(
        sub_url,
        json!({"channel": "latest:a", "recoverable": true, "recover": true}),
    )
    .await;
    assert_eq!(pubs(&asked), vec![(4, 4)], "{asked}");
    assert_eq!(asked["recovered"], true);

    // Server-side subscriptions (here from the token) recover automatically too.
    let mut c = Client::open(sub_url).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "s", "channels": ["state:a"]}))}}))
        .await;
    let sub = &r["connect"]["subs"]["state:a"];
    assert_eq!(pubs(sub), vec![(3, 3)], "{r}");
    assert_eq!(sub["recovered"], true, "{r}");

    // Live publications after the initial state arrive as usual, in order.
    let (mut live, _) = Client::connected(sub_url, "live").await;
    let r = live
        .call(json!({"subscribe": {"channel": "state:a"}}))
        .await;
    assert_eq!(pubs(&r["subscribe"]), vec![(3, 3)]);
    let (mut p, _) = Client::connected(pub_url, "writer2").await;
    p.call(json!({"subscribe": {"channel": "state:a"}})).await;
    p.call(json!({"publish": {"channel": "state:a", "data": {"n": 9}}}))
        .await;
    let push = live.push().await;
    assert_eq!(
        (
            push["pub"]["offset"].as_u64(),
            push["pub"]["data"]["n"].as_u64()
        ),
        (Some(4), Some(9)),
        "{push}"
    );
}

#[tokio::test]
async fn memory_engine_cache_recovery() {
    let s = TestServer::start(namespaces()).await;
    let url = s.ws_url();
    cache_mode_gives_the_latest_publication(&url, &url).await;
}

#[tokio::test]
async fn redis_engine_cache_recovery_across_nodes() {
    let prefix = format!("rotor-test:{}:", uuid::Uuid::new_v4().simple());
    let a = TestServer::start_redis(namespaces(), &prefix).await;
    let b = TestServer::start_redis(namespaces(), &prefix).await;
    cache_mode_gives_the_latest_publication(&a.ws_url(), &b.ws_url()).await;
    delete_keys(&prefix);
}
