//! The Redis engine on a real Redis Cluster (`engine.redis.cluster_address`) that each test
//! starts from redis-server processes: publications (sharded PUB/SUB), history, recovery,
//! presence, join/leave and user status across two data planes; a primary killed under
//! traffic while its replica takes over, and a channel's slot migrated to another primary
//! under traffic, each counting what was published, delivered and recovered; and the same
//! engine over TLS with a CA the test makes.

mod common;

use common::ha_traffic::count_under_fault;
use common::redis_ha::RedisCluster;
use common::{api, Client, TestServer};
use serde_json::{json, Value};

fn prefix() -> String {
    format!("rotor-cluster-test:{}:", uuid::Uuid::new_v4().simple())
}

/// The engine section for `cluster` under `prefix`, with history deep enough for counting.
fn on_cluster(cluster: &RedisCluster, prefix: &str, tls: Value) -> Value {
    json!({
        "engine": {"type": "redis", "redis": {
            "cluster_address": cluster.seeds(), "prefix": prefix, "tls": tls
        }},
        "user_status": {"enabled": true},
        "channel": {"namespaces": [{
            "name": "chat", "presence": true, "join_leave": true, "force_push_join_leave": true,
            "history_size": 1000, "history_ttl": "300s", "force_recovery": true,
            "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
            "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true
        }]}
    })
}

/// Publications, history, recovery, presence, join/leave and user status between `a` and
/// `b`, over channels that land on different cluster nodes.
async fn exercise(a: &TestServer, b: &TestServer) {
    let (_watcher, _) = Client::connected(&a.ws_url(), "watcher").await;
    for channel in ["chat:a", "chat:b", "chat:c", "chat:d"] {
        let (mut sub, _) = Client::connected(&a.ws_url(), "s").await;
        let r = sub.call(json!({"subscribe": {"channel": channel}})).await;
        assert_eq!(r["subscribe"]["recoverable"], true, "{r}");
        let epoch = r["subscribe"]["epoch"].clone();
        let _own_join = sub.push().await;
        let (mut publisher, _) = Client::connected(&b.ws_url(), "p").await;
        publisher
            .call(json!({"subscribe": {"channel": channel}}))
            .await;
        let join = sub.push().await;
        assert_eq!(join["join"]["info"]["user"], "p", "{join}");
        for n in 1..=3 {
            let r = publisher
                .call(json!({"publish": {"channel": channel, "data": {"n": n}}}))
                .await;
            assert_eq!(r["publish"], json!({}), "{r}");
        }
        for n in 1..=3u64 {
            let p = sub.push().await;
            assert_eq!(
                (p["pub"]["data"]["n"].as_u64(), p["pub"]["offset"].as_u64()),
                (Some(n), Some(n)),
                "{p}"
            );
        }
        let st = sub
            .call(json!({"presence_stats": {"channel": channel}}))
            .await;
        assert_eq!(
            st["presence_stats"],
            json!({"num_clients": 2, "num_users": 2})
        );
        drop(publisher);
        let leave = sub.push().await;
        assert_eq!(leave["leave"]["info"]["user"], "p", "{leave}");
        // Recovery from offset 1 on the other process.
        let (mut late, _) = Client::connected(&b.ws_url(), "l").await;
        let r = late
            .call(json!({"subscribe": {"channel": channel, "recover": true, "offset": 1, "epoch": epoch}}))
            .await;
        assert_eq!(r["subscribe"]["recovered"], true, "{r}");
        let offsets: Vec<u64> = r["subscribe"]["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, vec![2, 3]);
    }
    // User status: the connected user is online, seen from the other process (the scripts
    // read a bucket's user keys and its contributors in one slot).
    let mut status = Value::Null;
    for _ in 0..100 {
        status = api(b, "user_status", json!({"users": ["watcher", "nobody"]})).await;
        if status["result"]["statuses"][0]["online"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status["result"]["statuses"][0]["online"], true, "{status}");
    assert_eq!(status["result"]["statuses"][1]["online"], false, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_publications_history_recovery_presence_and_join_leave_on_a_cluster() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0, false))
        .await
        .unwrap();
    let p = prefix();
    let a = TestServer::start(on_cluster(&cluster, &p, json!({}))).await;
    let b = TestServer::start(on_cluster(&cluster, &p, json!({}))).await;
    exercise(&a, &b).await;
    // The server API publishes with idempotency on the cluster too.
    let first = api(
        &b,
        "publish",
        json!({"channel": "chat:i", "data": 1, "idempotency_key": "k"}),
    )
    .await;
    let again = api(
        &a,
        "publish",
        json!({"channel": "chat:i", "data": 2, "idempotency_key": "k"}),
    )
    .await;
    assert_eq!(first["result"], again["result"], "{first} {again}");
    // Node control messages (SPUBLISH on the tenant's control topic) reach every process:
    // each knows the other from its heartbeat, and `channels` asks both.
    let mut info = Value::Null;
    for _ in 0..100 {
        info = api(&b, "info", json!({})).await;
        if info["result"]["nodes"].as_array().map_or(0, Vec::len) == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        info["result"]["nodes"].as_array().map(Vec::len),
        Some(2),
        "{info}"
    );
    let (mut c, _) = Client::connected(&a.ws_url(), "u").await;
    c.call(json!({"subscribe": {"channel": "news"}})).await;
    let channels = api(&b, "channels", json!({})).await;
    assert_eq!(
        channels["result"]["channels"]["news"],
        json!({"num_clients": 1}),
        "{channels}"
    );
    // Channels spread over the three primaries.
    let owners: std::collections::HashSet<u16> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|c| cluster.primary_of(&format!("{p}{{chat:{c}}}:s")))
        .collect();
    assert!(owners.len() > 1, "channels on one node only: {owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_killed_under_traffic_loses_nothing_history_holds() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1, false))
        .await
        .unwrap();
    let p = prefix();
    let a = TestServer::start(on_cluster(&cluster, &p, json!({}))).await;
    let b = TestServer::start(on_cluster(&cluster, &p, json!({}))).await;
    let channel = "chat:failover";
    let key = format!("{p}{{{channel}}}:s");
    let cluster = std::sync::Arc::new(parking_lot::Mutex::new(cluster));
    let took = std::sync::Arc::new(parking_lot::Mutex::new(None));
    let tally = {
        let (cluster, took) = (cluster.clone(), took.clone());
        count_under_fault(&a.ws_url(), &b.addr.to_string(), channel, move || {
            *took.lock() = Some(cluster.lock().kill_primary_of(&key));
        })
        .await
    };
    eprintln!(
        "cluster failover: took {:?}, {tally:?}",
        took.lock().unwrap()
    );
    assert!(
        tally.recoveries >= 1,
        "subscribers told to recover: {tally:?}"
    );
    assert!(tally.missing.is_empty(), "lost: {tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
    assert!(
        tally.error_codes.iter().all(|c| *c == 100),
        "only temporary errors: {tally:?}"
    );
    // Asynchronous replication may lose the last writes before the kill, never more than a
    // handful at this rate.
    assert!(tally.acked_not_in_history <= 3, "{tally:?}");
    assert_eq!(tally.live + tally.recovered, tally.in_history, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_under_traffic_loses_nothing_history_holds() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0, false))
        .await
        .unwrap();
    let p = prefix();
    let a = TestServer::start(on_cluster(&cluster, &p, json!({}))).await;
    let b = TestServer::start(on_cluster(&cluster, &p, json!({}))).await;
    let channel = "chat:moving";
    let key = format!("{p}{{{channel}}}:s");
    let before = cluster.primary_of(&key);
    let cluster = std::sync::Arc::new(parking_lot::Mutex::new(cluster));
    let took = std::sync::Arc::new(parking_lot::Mutex::new(None));
    let tally = {
        let (cluster, took, key) = (cluster.clone(), took.clone(), key.clone());
        count_under_fault(&a.ws_url(), &b.addr.to_string(), channel, move || {
            *took.lock() = Some(cluster.lock().migrate_slot_of(&key));
        })
        .await
    };
    eprintln!("slot migration: took {:?}, {tally:?}", took.lock().unwrap());
    assert_ne!(cluster.lock().primary_of(&key), before, "the slot moved");
    // The old owner dropped the subscription (SUNSUBSCRIBE): subscribed again, then told
    // to recover.
    assert!(
        tally.recoveries >= 1,
        "subscribers told to recover: {tally:?}"
    );
    assert!(tally.missing.is_empty(), "lost: {tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
    assert_eq!(
        tally.acked_not_in_history, 0,
        "a migration loses no write: {tally:?}"
    );
    assert_eq!(tally.live + tally.recovered, tally.in_history, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_verified_against_the_test_ca_carries_the_engine() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0, true))
        .await
        .unwrap();
    let ca = cluster.tls.as_ref().unwrap().ca.pem();
    let p = prefix();
    let tls = json!({"server_ca_pem": ca});
    let a = TestServer::start(on_cluster(&cluster, &p, tls.clone())).await;
    let b = TestServer::start(on_cluster(&cluster, &p, tls)).await;
    exercise(&a, &b).await;
}

/// Ignores what the engine delivers.
struct Ignore;

impl rotor_data_plane::engine::BrokerEvents for Ignore {
    fn publication(&self, _: &str, _: std::sync::Arc<rotor_data_plane::publication::PubMsg>) {}
    fn join(&self, _: &str, _: rotor_data_plane::protocol::ClientInfo) {}
    fn leave(&self, _: &str, _: rotor_data_plane::protocol::ClientInfo) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_user_status_bookkeeping_runs_on_a_cluster() {
    use rotor_data_plane::engine::redis::RedisEngine;
    use std::time::Duration;
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0, false))
        .await
        .unwrap();
    let config: rotor_tenant_config::RedisEngine = serde_json::from_value(json!({
        "cluster_address": cluster.seeds(), "prefix": prefix()
    }))
    .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let engine = RedisEngine::connect(&config, std::sync::Arc::new(Ignore), stop.clone())
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    // Each script reads a per-process key with per-channel or per-user ones: one slot each.
    let channels: Vec<String> = (0..20).map(|i| format!("room:{i}")).collect();
    for channel in &channels {
        assert!(
            engine
                .webhook_hold(channel, "", "n1", true, ttl)
                .await
                .unwrap()
                > 0
        );
        engine
            .webhook_hold(channel, "alice", "n1", true, ttl)
            .await
            .unwrap();
    }
    let mut held = engine.webhook_holdings("n1").await.unwrap();
    held.sort();
    assert_eq!(held.len(), 40, "{held:?}");
    for channel in &channels {
        assert!(
            engine
                .webhook_hold(channel, "", "n1", false, ttl)
                .await
                .unwrap()
                > 0
        );
    }
    engine.webhook_forget("n1").await.unwrap();
    assert!(engine.webhook_holdings("n1").await.unwrap().is_empty());
    let users: Vec<String> = (0..50).map(|i| format!("user-{i}")).collect();
    let counts: Vec<(std::sync::Arc<str>, usize)> =
        users.iter().map(|u| (u.as_str().into(), 2)).collect();
    assert!(engine.user_status_beat("c1", ttl, ttl).await.unwrap());
    engine
        .user_status_write("c1", &counts, ttl, ttl)
        .await
        .unwrap();
    let statuses = engine.user_status_read(&users, ttl, ttl).await.unwrap();
    assert!(statuses.iter().all(|s| s.connections == 2), "{statuses:?}");
    stop.cancel();
}
