//! Publication tags filters (`allow_tags_filter`, the subscribe request's `tf`) over real
//! WebSocket: a filtered subscriber receives only the publications whose tags match, live, in
//! stream recovery and in cache recovery, while unfiltered subscribers of the same channel get
//! everything; positions stay consistent; a filter is refused (107) where the namespace does
//! not allow it or when it is malformed; and each distinct filter is evaluated once per
//! publication. Checked with the memory engine and with the Redis engine across two nodes.

mod common;

use common::{api, delete_keys, Client, TestServer};
use serde_json::{json, Value};

fn namespaces() -> Value {
    json!({"channel": {"namespaces": [
        {"name": "quotes", "allow_tags_filter": true, "history_size": 20, "history_ttl": "60s",
         "allow_recovery": true, "allow_positioning": true, "allow_subscribe_for_client": true},
        {"name": "state", "allow_tags_filter": true, "history_size": 20, "history_ttl": "60s",
         "allow_recovery": true, "force_recovery_mode": "cache",
         "allow_subscribe_for_client": true},
        {"name": "plain", "history_size": 20, "history_ttl": "60s",
         "allow_subscribe_for_client": true}
    ]}})
}

async fn publish(s: &TestServer, channel: &str, n: u64, ticker: &str, price: &str) {
    let r = api(
        s,
        "publish",
        json!({"channel": channel, "data": {"n": n}, "tags": {"ticker": ticker, "price": price}}),
    )
    .await;
    assert!(r["result"].is_object(), "{r}");
}

fn eq(key: &str, val: &str) -> Value {
    json!({"key": key, "cmp": "eq", "val": val})
}

/// `(offset, n)` of a subscribe result's publications.
fn pubs(result: &Value) -> Vec<(u64, u64)> {
    result["publications"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["offset"].as_u64().unwrap(),
                        p["data"]["n"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `n` of the next `count` pushes, which must all be publications.
async fn received(c: &mut Client, count: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..count {
        let push = c.push().await;
        assert!(
            push["pub"].is_object(),
            "only publications expected: {push}"
        );
        out.push(push["pub"]["data"]["n"].as_u64().unwrap());
    }
    out
}

async fn subscriber(url: &str, sub: Value) -> (Client, Value) {
    let (mut c, _) = Client::connected(url, "reader").await;
    let r = c.call(json!({ "subscribe": sub })).await;
    assert!(r["subscribe"].is_object(), "{sub} → {r}");
    (c, r["subscribe"].clone())
}

async fn filtered_subscribers_get_matching_publications(sub: &TestServer, api_node: &TestServer) {
    let url = sub.ws_url();
    // Refused where the namespace does not allow it, and when malformed.
    let (mut c, _) = Client::connected(&url, "reader").await;
    let r = c
        .call(json!({"subscribe": {"channel": "plain:x", "tf": eq("ticker", "AAPL")}}))
        .await;
    assert_eq!(r["error"]["code"], 107, "{r}");
    let r = c
        .call(json!({"subscribe": {"channel": "quotes:x",
            "tf": {"key": "ticker", "cmp": "like", "val": "A"}}}))
        .await;
    assert_eq!(r["error"]["code"], 107, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("like"),
        "{r}"
    );
    let r = c
        .call(json!({"subscribe": {"channel": "quotes:x", "tf": {"op": "not", "nodes": []}}}))
        .await;
    assert_eq!(r["error"]["code"], 107, "{r}");

    // Live: two positioned subscribers share one filter (written differently), one filters on
    // a number, one takes everything.
    let (mut aapl, first) = subscriber(
        &url,
        json!({"channel": "quotes:x", "recoverable": true, "tf": eq("ticker", "AAPL")}),
    )
    .await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    let (mut aapl2, _) = subscriber(
        &url,
        json!({"channel": "quotes:x", "positioned": true,
               "tf": {"op": "and", "nodes": [eq("ticker", "AAPL"), eq("ticker", "AAPL")]}}),
    )
    .await;
    let (mut pricey, _) = subscriber(
        &url,
        json!({"channel": "quotes:x", "tf": {"key": "price", "cmp": "gte", "val": "100"}}),
    )
    .await;
    let (mut all, _) = subscriber(&url, json!({"channel": "quotes:x"})).await;
    let evaluations = sub.node.metrics.tags_filter_evaluations.get();

    publish(api_node, "quotes:x", 1, "AAPL", "150").await;
    publish(api_node, "quotes:x", 2, "MSFT", "90.5").await;
    publish(api_node, "quotes:x", 3, "AAPL", "99.99").await;
    publish(api_node, "quotes:x", 4, "MSFT", "100.0").await;
    publish(api_node, "quotes:x", 5, "AAPL", "7").await;

    assert_eq!(received(&mut all, 5).await, vec![1, 2, 3, 4, 5]);
    // No gap is reported to the positioned subscribers: each next push is a publication.
    assert_eq!(received(&mut aapl, 3).await, vec![1, 3, 5]);
    assert_eq!(received(&mut aapl2, 3).await, vec![1, 3, 5]);
    assert_eq!(received(&mut pricey, 2).await, vec![1, 4]);
    // Two distinct filters, five publications.
    assert_eq!(
        sub.node.metrics.tags_filter_evaluations.get() - evaluations,
        10
    );

    // Stream recovery replays only what matches, and the position is the client's.
    let (_, rec) = subscriber(
        &url,
        json!({"channel": "quotes:x", "recoverable": true, "recover": true, "offset": 1, "epoch": epoch,
               "tf": eq("ticker", "AAPL")}),
    )
    .await;
    assert_eq!(pubs(&rec), vec![(3, 3), (5, 5)], "{rec}");
    assert_eq!(
        (&rec["recovered"], &rec["offset"]),
        (&json!(true), &json!(1))
    );
    let (_, rec) = subscriber(
        &url,
        json!({"channel": "quotes:x", "recoverable": true, "recover": true, "offset": 3, "epoch": epoch,
               "tf": {"op": "not", "nodes": [eq("ticker", "AAPL")]}}),
    )
    .await;
    assert_eq!(pubs(&rec), vec![(4, 4)], "{rec}");
    assert_eq!(rec["recovered"], true, "{rec}");
    // Nothing matching is still a recovery.
    let (_, rec) = subscriber(
        &url,
        json!({"channel": "quotes:x", "recoverable": true, "recover": true, "offset": 3, "epoch": epoch,
               "tf": eq("ticker", "GOOG")}),
    )
    .await;
    assert_eq!(
        (pubs(&rec), &rec["recovered"]),
        (vec![], &json!(true)),
        "{rec}"
    );

    // Cache recovery gives the newest matching publication.
    publish(api_node, "state:x", 1, "AAPL", "1").await;
    publish(api_node, "state:x", 2, "MSFT", "2").await;
    let (_, rec) = subscriber(
        &url,
        json!({"channel": "state:x", "recoverable": true, "recover": true, "tf": eq("ticker", "AAPL")}),
    )
    .await;
    assert_eq!(pubs(&rec), vec![(1, 1)], "{rec}");
    assert_eq!(rec["recovered"], true, "{rec}");
    let (_, rec) = subscriber(
        &url,
        json!({"channel": "state:x", "recoverable": true, "recover": true, "tf": eq("ticker", "GOOG")}),
    )
    .await;
    assert_eq!(pubs(&rec), vec![], "{rec}");

    // The history command is not filtered (it has no filter, as in Centrifugo).
    let history = api(
        api_node,
        "history",
        json!({"channel": "quotes:x", "limit": -1}),
    )
    .await;
    assert_eq!(
        history["result"]["publications"].as_array().unwrap().len(),
        5,
        "{history}"
    );
}

#[tokio::test]
async fn memory_engine_filters_publications_by_tags() {
    let s = TestServer::start(namespaces()).await;
    filtered_subscribers_get_matching_publications(&s, &s).await;
}

#[tokio::test]
async fn redis_engine_filters_publications_by_tags_across_nodes() {
    let prefix = format!("rotor-test:{}:", uuid::Uuid::new_v4().simple());
    let a = TestServer::start_redis(namespaces(), &prefix).await;
    let b = TestServer::start_redis(namespaces(), &prefix).await;
    filtered_subscribers_get_matching_publications(&a, &b).await;
    delete_keys(&prefix);
}
