//! Versioned publishes (`version` / `version_epoch` of the server API's publish and broadcast,
//! and of the publish proxy's result): in a channel with history, a publication not newer than
//! the last accepted version of its epoch is dropped — not stored, not delivered — and the call
//! still succeeds with the current stream top. Checked with the memory engine and with the
//! Redis engine across two nodes, over real HTTP and WebSocket.

mod common;

use axum::routing::post;
use axum::{Json, Router};
use common::{api, delete_keys, Client, TestServer};
use serde_json::{json, Value};

fn namespaces(extra: Value) -> Value {
    let mut namespaces = vec![
        json!({"name": "ver", "history_size": 10, "history_ttl": "60s",
               "allow_subscribe_for_client": true, "allow_history_for_subscriber": true}),
        json!({"name": "nohist", "allow_subscribe_for_client": true}),
    ];
    if !extra.is_null() {
        namespaces.push(extra);
    }
    json!({"channel": {"namespaces": namespaces}})
}

/// Publishes `n` into `channel` with `version` fields; returns the result's offset.
async fn publish(s: &TestServer, channel: &str, n: u64, version: Value) -> u64 {
    let mut body = json!({"channel": channel, "data": {"n": n}});
    body.as_object_mut()
        .unwrap()
        .extend(version.as_object().cloned().unwrap_or_default());
    let r = api(s, "publish", body).await;
    assert!(r.get("error").is_none(), "{r}");
    r["result"]["offset"].as_u64().unwrap_or(0)
}

/// The `n` of the next publications a subscriber receives.
async fn received(c: &mut Client, count: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..count {
        let push = c.push().await;
        out.push(push["pub"]["data"]["n"].as_u64().unwrap());
    }
    out
}

async fn older_versions_are_dropped(sub: &TestServer, api_node: &TestServer) {
    let (mut c, _) = Client::connected(&sub.ws_url(), "reader").await;
    let r = c.call(json!({"subscribe": {"channel": "ver:doc"}})).await;
    assert!(r["subscribe"].is_object(), "{r}");

    let v = |version: u64, epoch: &str| json!({"version": version, "version_epoch": epoch});
    assert_eq!(publish(api_node, "ver:doc", 1, v(2, "a")).await, 1);
    // Not newer in the same epoch, or with no epoch (matches any): dropped, answered with the
    // top, which did not move.
    assert_eq!(publish(api_node, "ver:doc", 2, v(2, "a")).await, 1);
    assert_eq!(publish(api_node, "ver:doc", 3, v(1, "a")).await, 1);
    assert_eq!(publish(api_node, "ver:doc", 4, v(1, "")).await, 1);
    assert_eq!(publish(api_node, "ver:doc", 5, v(3, "")).await, 2);
    // A new epoch starts counting afresh.
    assert_eq!(publish(api_node, "ver:doc", 6, v(1, "b")).await, 3);
    assert_eq!(publish(api_node, "ver:doc", 7, v(1, "b")).await, 3);
    // Unversioned publications always pass and leave the version alone.
    assert_eq!(publish(api_node, "ver:doc", 8, json!({})).await, 4);
    assert_eq!(publish(api_node, "ver:doc", 9, v(1, "b")).await, 4);
    // Broadcast applies the same rule per channel.
    let r = api(
        api_node,
        "broadcast",
        json!({"channels": ["ver:doc", "ver:other"], "data": {"n": 10}, "version": 2, "version_epoch": "b"}),
    )
    .await;
    let offsets: Vec<_> = r["result"]["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["offset"].as_u64())
        .collect();
    assert_eq!(offsets, vec![Some(5), Some(1)], "{r}");
    assert_eq!(publish(api_node, "ver:doc", 11, v(2, "b")).await, 5);

    assert_eq!(received(&mut c, 5).await, vec![1, 5, 6, 8, 10]);
    let history = api(
        api_node,
        "history",
        json!({"channel": "ver:doc", "limit": -1}),
    )
    .await;
    let stored: Vec<_> = history["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, vec![1, 5, 6, 8, 10], "{history}");

    // Without history there is no stream to version (as in Centrifugo): both pass.
    let r = c
        .call(json!({"subscribe": {"channel": "nohist:doc"}}))
        .await;
    assert!(r["subscribe"].is_object(), "{r}");
    publish(api_node, "nohist:doc", 20, v(5, "a")).await;
    publish(api_node, "nohist:doc", 21, v(5, "a")).await;
    assert_eq!(received(&mut c, 2).await, vec![20, 21]);
}

#[tokio::test]
async fn memory_engine_drops_older_versions() {
    let s = TestServer::start(namespaces(Value::Null)).await;
    older_versions_are_dropped(&s, &s).await;
}

#[tokio::test]
async fn redis_engine_drops_older_versions_atomically_across_nodes() {
    let prefix = format!("rotor-test:{}:", uuid::Uuid::new_v4().simple());
    let a = TestServer::start_redis(namespaces(Value::Null), &prefix).await;
    let b = TestServer::start_redis(namespaces(Value::Null), &prefix).await;
    older_versions_are_dropped(&a, &b).await;
    // Concurrent publishes of versions 1..=20 from both nodes: whatever the interleaving, the
    // stored versions only ever increase.
    let mut tasks = Vec::new();
    for version in 1..=20u64 {
        let node = if version % 2 == 0 { &a } else { &b };
        let url = format!("http://{}/api/publish", node.addr);
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("x-api-key", "api-key")
                .json(&json!({"channel": "ver:race", "data": {"n": version}, "version": version}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let history = api(&a, "history", json!({"channel": "ver:race", "limit": -1})).await;
    let stored: Vec<u64> = history["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"]["n"].as_u64().unwrap())
        .collect();
    assert!(stored.windows(2).all(|w| w[0] < w[1]), "{stored:?}");
    assert_eq!(stored.last(), Some(&20), "{stored:?}");
    delete_keys(&prefix);
}

#[tokio::test]
async fn the_publish_proxy_sets_the_version_and_may_ask_for_delta() {
    // The backend versions each publication by its `n`, and asks for delta (which changes
    // nothing: no subscriber negotiated delta, so everyone gets whole publications).
    let app = Router::new().route(
        "/publish",
        post(|Json(body): Json<Value>| async move {
            let n = body["data"]["n"].as_u64().unwrap_or(0);
            Json(json!({"result": {"version": n, "version_epoch": "e", "delta": true}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut config = namespaces(json!({"name": "pp", "publish_proxy_enabled": true,
        "history_size": 10, "history_ttl": "60s", "allow_subscribe_for_client": true}));
    config["channel"]["proxy"] =
        json!({"publish": {"endpoint": format!("http://{backend}/publish")}});
    let s = TestServer::start(config).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "writer").await;
    assert!(c.call(json!({"subscribe": {"channel": "pp:doc"}})).await["subscribe"].is_object());
    for n in [3, 2, 3, 4] {
        let r = c
            .call(json!({"publish": {"channel": "pp:doc", "data": {"n": n}}}))
            .await;
        assert_eq!(
            r["publish"],
            json!({}),
            "a dropped version is no error: {r}"
        );
    }
    assert_eq!(received(&mut c, 2).await, vec![3, 4]);
    let history = api(&s, "history", json!({"channel": "pp:doc", "limit": -1})).await;
    assert_eq!(history["result"]["offset"], 2, "{history}");
}
