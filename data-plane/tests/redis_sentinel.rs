//! The Redis engine on a Sentinel-managed primary that each test starts from redis-server
//! processes (a primary, its replica, three Sentinels): the primary killed under traffic —
//! publishes fail with a temporary error only while the Sentinels fail over, then resume on
//! the new primary, and the subscriber recovers everything history holds, nothing twice —
//! and a `redis+sentinel://` address carrying the engine between two data planes, in the
//! clear and over TLS (Sentinels and primary verified against a CA the test makes).

mod common;

use std::sync::Arc;

use common::ha_traffic::count_under_fault;
use common::redis_ha::{SentinelGroup, MASTER_NAME};
use common::{Client, TestServer};
use rotor_data_plane::config::RuntimeConfig;
use rotor_data_plane::node::Node;
use rotor_tenant_config::TenantConfig;
use serde_json::{json, Value};

fn prefix() -> String {
    format!("rotor-sentinel-test:{}:", uuid::Uuid::new_v4().simple())
}

/// The config for the engine section `redis`, with history deep enough for counting.
fn with_engine(redis: Value) -> Value {
    json!({
        "engine": {"type": "redis", "redis": redis},
        "channel": {"namespaces": [{
            "name": "chat", "presence": true, "join_leave": true, "force_push_join_leave": true,
            "history_size": 1000, "history_ttl": "300s", "force_recovery": true,
            "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
            "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true
        }]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_traffic_fails_publishes_only_for_the_window_and_loses_nothing() {
    let group = tokio::task::spawn_blocking(|| SentinelGroup::start(false))
        .await
        .unwrap();
    let p = prefix();
    let config = with_engine(json!({
        "sentinel_address": group.sentinel_addresses(),
        "sentinel_master_name": MASTER_NAME,
        "prefix": p,
    }));
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config).await;
    let group = Arc::new(parking_lot::Mutex::new(group));
    let took = Arc::new(parking_lot::Mutex::new(None));
    let tally = {
        let (group, took) = (group.clone(), took.clone());
        count_under_fault(&a.ws_url(), &b.addr.to_string(), "chat:f", move || {
            *took.lock() = Some(group.lock().kill_primary());
        })
        .await
    };
    let took = took.lock().unwrap();
    eprintln!("sentinel failover: took {took:?}, {tally:?}");
    assert!(
        tally.failed > 0,
        "publishes fail during the failover: {tally:?}"
    );
    assert_eq!(
        tally.error_codes,
        vec![100],
        "only Centrifugo's temporary internal error: {tally:?}"
    );
    // Failures stop soon after the Sentinels named the new primary.
    assert!(
        tally.failing_for < took + std::time::Duration::from_secs(3),
        "failing for {:?} after a {took:?} failover",
        tally.failing_for
    );
    assert!(
        tally.recoveries >= 1,
        "subscribers told to recover: {tally:?}"
    );
    assert!(tally.missing.is_empty(), "lost: {tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
    assert!(tally.acked_not_in_history <= 3, "{tally:?}");
    assert_eq!(tally.live + tally.recovered, tally.in_history, "{tally:?}");
}

/// Publications, history and presence between `a` and `b`.
async fn exercise(a: &TestServer, b: &TestServer) {
    let (mut sub, _) = Client::connected(&a.ws_url(), "s").await;
    let r = sub.call(json!({"subscribe": {"channel": "chat:s"}})).await;
    assert_eq!(r["subscribe"]["recoverable"], true, "{r}");
    let _own_join = sub.push().await;
    let (mut publisher, _) = Client::connected(&b.ws_url(), "p").await;
    publisher
        .call(json!({"subscribe": {"channel": "chat:s"}}))
        .await;
    assert_eq!(sub.push().await["join"]["info"]["user"], "p");
    for n in 1..=3 {
        publisher
            .call(json!({"publish": {"channel": "chat:s", "data": {"n": n}}}))
            .await;
    }
    for n in 1..=3u64 {
        assert_eq!(sub.push().await["pub"]["offset"].as_u64(), Some(n));
    }
    let h = publisher
        .call(json!({"history": {"channel": "chat:s", "limit": -1}}))
        .await;
    assert_eq!(h["history"]["publications"].as_array().unwrap().len(), 3);
    let st = sub
        .call(json!({"presence_stats": {"channel": "chat:s"}}))
        .await;
    assert_eq!(
        st["presence_stats"],
        json!({"num_clients": 2, "num_users": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_sentinel_address_carries_publications_history_and_presence() {
    let group = tokio::task::spawn_blocking(|| SentinelGroup::start(false))
        .await
        .unwrap();
    let address = format!(
        "redis+sentinel://{}/{MASTER_NAME}",
        group.sentinel_addresses().join(",")
    );
    let config = with_engine(json!({"address": address, "prefix": prefix()}));
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config).await;
    exercise(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sentinels_and_primary_verified_against_the_test_ca_carry_the_engine() {
    let group = tokio::task::spawn_blocking(|| SentinelGroup::start(true))
        .await
        .unwrap();
    let ca = group.tls.as_ref().unwrap().ca.pem();
    let config = with_engine(json!({
        "address": group_address(&group), "prefix": prefix(), "tls": {"server_ca_pem": ca}
    }));
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config).await;
    exercise(&a, &b).await;
    // Without the CA the Sentinels' certificates are not trusted: the engine does not start.
    let untrusted = with_engine(json!({"address": group_address(&group), "prefix": prefix()}));
    let err = Node::from_config(
        RuntimeConfig::compile(TenantConfig::from_value(untrusted).unwrap().config).unwrap(),
        "untrusted".into(),
    )
    .await
    .err()
    .expect("an unknown CA is refused");
    assert!(
        err.to_string().contains("TLS connection failed"),
        "named as TLS: {err}"
    );
}

/// The group as one `rediss+sentinel://` address.
fn group_address(group: &SentinelGroup) -> String {
    format!(
        "rediss+sentinel://{}/{MASTER_NAME}",
        group.sentinel_addresses().join(",")
    )
}
