//! The NATS broker (`broker.type: nats`): processes of one tenant on a private nats-server act
//! as one for publications, join/leave and node control messages; delivery is at most once
//! across a nats-server restart (counted); presence follows the engine; and a data plane the
//! control plane runs refuses the broker, so a hosted tenant cannot reach the box's NATS.

mod common;

use std::time::Duration;

use common::nats::OwnNats;
use common::{Binary, Client, TestServer, SECRET};
use serde_json::{json, Value};

/// A standalone config with the NATS broker at `url` and a `chat` namespace without history.
fn config(url: &str, prefix: &str) -> Value {
    json!({
        "client": {"token": {"hmac_secret_key": SECRET}},
        "http_api": {"key": "api-key"},
        "broker": {"enabled": true, "type": "nats", "nats": {"url": url, "prefix": prefix}},
        "channel": {"namespaces": [{
            "name": "chat", "presence": true, "join_leave": true, "force_push_join_leave": true,
            "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
            "allow_history_for_subscriber": true
        }]}
    })
}

/// Calls server API `method` on the data plane at `addr` (any HTTP status).
async fn api(addr: &str, method: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/{method}"))
        .header("x-api-key", "api-key")
        .timeout(Duration::from_secs(5))
        .json(&body)
        .send()
        .await
        .expect("api request")
        .json()
        .await
        .expect("api answer")
}

fn prefix() -> String {
    format!("rotor-test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn two_processes_share_publications_join_leave_and_disconnects_through_nats() {
    let nats = OwnNats::start();
    let cfg = config(&nats.url(), &prefix());
    let one = Binary::listening(&cfg, &[]).await;
    let two = Binary::listening(&cfg, &[]).await;
    let (mut sub, _) = Client::connected(&one.ws_url(), "s").await;
    let r = sub.call(json!({"subscribe": {"channel": "chat:x"}})).await;
    assert!(r.get("subscribe").is_some(), "{r}");
    let own_join = sub.push().await;
    assert_eq!(own_join["join"]["info"]["user"], "s");

    // A publication through the server API of process two reaches process one, without a
    // stream position (no history with NATS).
    for n in 1..=3 {
        let r = api(
            &two.addr,
            "publish",
            json!({"channel": "chat:x", "data": {"n": n}}),
        )
        .await;
        assert_eq!(r, json!({"result": {}}), "publish {n}");
    }
    for n in 1..=3 {
        let p = sub.push().await;
        assert_eq!(p["channel"], "chat:x");
        assert_eq!(p["pub"]["data"], json!({"n": n}));
        assert!(p["pub"].get("offset").is_none(), "{p}");
    }

    // Join and leave of a client of process two reach process one.
    let (mut peer, _) = Client::connected(&two.ws_url(), "p").await;
    peer.call(json!({"subscribe": {"channel": "chat:x"}})).await;
    let join = sub.push().await;
    assert_eq!(join["join"]["info"]["user"], "p", "{join}");
    peer.call(json!({"unsubscribe": {"channel": "chat:x"}}))
        .await;
    let leave = sub.push().await;
    assert_eq!(leave["leave"]["info"]["user"], "p", "{leave}");

    // History is not available with the NATS broker (as Centrifugo answers).
    let h = api(&two.addr, "history", json!({"channel": "chat:x"})).await;
    assert_eq!(h["error"]["code"], 108, "{h}");

    // A disconnect through process two's API closes the user's connection on process one.
    let r = api(
        &two.addr,
        "disconnect",
        json!({"user": "s", "disconnect": {"code": 4500, "reason": "bye"}}),
    )
    .await;
    assert_eq!(r, json!({"result": {}}));
    let closed = sub.closed().await;
    assert_eq!((closed.code, closed.reason.as_str()), (4500, "bye"));
    one.stop().await;
    two.stop().await;
}

/// Reads pushes for `wait` at most; the `n` of every publication of `channel` seen.
async fn drain(c: &mut Client, wait: Duration) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Ok(p) = tokio::time::timeout(wait, c.push()).await {
        if let Some(n) = p["pub"]["data"]["n"].as_u64() {
            seen.push(n);
        }
    }
    seen
}

#[tokio::test]
async fn across_a_nats_restart_publications_are_delivered_at_most_once_and_delivery_resumes() {
    let mut nats = OwnNats::start();
    let p = prefix();
    let a = TestServer::start_nats(json!({}), &nats.url(), &p).await;
    let b = TestServer::start_nats(json!({}), &nats.url(), &p).await;
    let (mut sub, _) = Client::connected(&a.ws_url(), "s").await;
    sub.call(json!({"subscribe": {"channel": "chat:f"}})).await;
    let _own_join = sub.push().await;
    let publish = |n: u64| api_on(&b, n);

    // Before: every publication is delivered.
    for n in 1..=5 {
        assert_eq!(publish(n).await, json!({"result": {}}));
    }
    assert_eq!(
        drain(&mut sub, Duration::from_millis(500)).await,
        [1, 2, 3, 4, 5]
    );

    // During the outage: a publish fails with a temporary error or is accepted and may be
    // lost; none is delivered twice.
    nats.kill();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for n in 100..120 {
        let r = publish(n).await;
        match r["error"]["code"].as_u64() {
            None => accepted.push(n),
            Some(100) => refused += 1,
            Some(other) => panic!("unexpected error {other}: {r}"),
        }
    }
    assert!(
        refused > 0,
        "publishes fail once the connection is seen down"
    );

    // After: both processes reconnect by themselves; publish until one gets through, then
    // every publication is delivered, in order.
    nats.spawn();
    let mut probe = 1000;
    let mut during = Vec::new();
    let resumed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            probe += 1;
            let _ = publish(probe).await;
            let seen = drain(&mut sub, Duration::from_millis(200)).await;
            let resumed = seen.iter().any(|n| *n >= 1000);
            during.extend(seen.into_iter().filter(|n| *n < 1000));
            if resumed {
                break;
            }
        }
    })
    .await;
    assert!(resumed.is_ok(), "delivery did not resume");
    for n in 2000..2010 {
        assert_eq!(publish(n).await, json!({"result": {}}));
    }
    let mut after: Vec<u64> = drain(&mut sub, Duration::from_millis(500)).await;
    during.extend(after.iter().copied().filter(|n| *n < 1000));
    after.retain(|n| *n >= 2000);
    assert_eq!(
        after,
        (2000..2010).collect::<Vec<_>>(),
        "all delivered after"
    );
    let unique: std::collections::HashSet<u64> = during.iter().copied().collect();
    assert_eq!(
        unique.len(),
        during.len(),
        "nothing delivered twice: {during:?}"
    );
    assert!(
        during.iter().all(|n| accepted.contains(n)),
        "only accepted publications delivered: {during:?} of {accepted:?}"
    );
    println!(
        "outage: {} accepted, {refused} refused, {} of the accepted delivered",
        accepted.len(),
        during.len()
    );
}

async fn api_on(s: &TestServer, n: u64) -> Value {
    api(
        &s.addr.to_string(),
        "publish",
        json!({"channel": "chat:f", "data": {"n": n}}),
    )
    .await
}

#[tokio::test]
async fn presence_is_per_process_with_the_memory_engine_and_shared_with_redis() {
    let nats = OwnNats::start();
    let p = prefix();
    // Memory engine: each process knows its own connections only.
    let a = TestServer::start_nats(json!({}), &nats.url(), &p).await;
    let b = TestServer::start_nats(json!({}), &nats.url(), &p).await;
    let (mut on_a, _) = Client::connected(&a.ws_url(), "u1").await;
    let (mut on_b, _) = Client::connected(&b.ws_url(), "u2").await;
    on_a.call(json!({"subscribe": {"channel": "chat:p"}})).await;
    on_b.call(json!({"subscribe": {"channel": "chat:p"}})).await;
    let stats = api(
        &a.addr.to_string(),
        "presence_stats",
        json!({"channel": "chat:p"}),
    )
    .await;
    assert_eq!(stats["result"], json!({"num_clients": 1, "num_users": 1}));
    // Redis engine with the NATS broker: presence lives in Redis, PUB/SUB in NATS.
    let redis_prefix = format!("rotor-test:{}:", uuid::Uuid::new_v4().simple());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let engine =
        json!({"engine": {"type": "redis", "redis": {"address": url, "prefix": redis_prefix}}});
    let p = prefix();
    let c = TestServer::start_nats(engine.clone(), &nats.url(), &p).await;
    let d = TestServer::start_nats(engine, &nats.url(), &p).await;
    let (mut on_c, _) = Client::connected(&c.ws_url(), "u1").await;
    let (mut on_d, _) = Client::connected(&d.ws_url(), "u2").await;
    on_c.call(json!({"subscribe": {"channel": "chat:p"}})).await;
    on_d.call(json!({"subscribe": {"channel": "chat:p"}})).await;
    let stats = api(
        &c.addr.to_string(),
        "presence_stats",
        json!({"channel": "chat:p"}),
    )
    .await;
    assert_eq!(stats["result"], json!({"num_clients": 2, "num_users": 2}));
    common::delete_keys(&redis_prefix);
}

#[tokio::test]
async fn a_channel_a_nats_subject_cannot_hold_is_refused_and_the_broker_cannot_change_on_reload() {
    let nats = OwnNats::start();
    let s = TestServer::start_nats(json!({}), &nats.url(), &prefix()).await;
    for channel in ["chat:a*", "chat:>", "chat:a b", "chat:a..b"] {
        let r = api(
            &s.addr.to_string(),
            "publish",
            json!({"channel": channel, "data": {}}),
        )
        .await;
        assert_eq!(r["error"]["code"], 107, "{channel}: {r}");
    }
    let mut changed = s.node.config.load().tenant.clone();
    changed.broker.nats.prefix = "elsewhere".into();
    let err = s
        .node
        .config
        .apply(changed)
        .expect_err("broker change refused");
    assert!(err.to_string().contains("restart"), "{err}");
}

#[tokio::test]
async fn a_data_plane_the_control_plane_runs_refuses_a_nats_broker_on_any_address() {
    // A hosted tenant must not reach the box's own NATS (or any other) through `broker`.
    for url in [
        "nats://127.0.0.1:4222",
        "nats://localhost:4222",
        "nats://10.0.0.1:4222",
        "nats://demo.nats.io:4222",
    ] {
        let stderr =
            Binary::refused(&config(url, "centrifugo"), &[("ROTOR_EGRESS", "public")]).await;
        assert!(
            stderr.contains("broker: a hosted project may not set this option"),
            "{url}: {stderr}"
        );
    }
    // Standalone, the same kind of config starts.
    let nats = OwnNats::start();
    let b = Binary::listening(&config(&nats.url(), &prefix()), &[]).await;
    b.stop().await;
}
