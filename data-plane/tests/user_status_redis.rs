//! The server API's `user_status` on the Redis engine: processes on one Redis and prefix share
//! their users' status; a process killed with SIGKILL stops counting once its heartbeat is
//! older than `engine.redis.presence_ttl`, its users then reading offline with a last-seen
//! time; two tenants (prefixes) on one Redis see nothing of each other's users, whatever the
//! user ids; and with several shards each user's record lives on the shard its id picks.

mod common;

use std::time::{Duration, Instant};

use common::{api, redis_url, Binary, Client, Prefix, TestServer, SECRET};
use serde_json::{json, Value};

fn enabled(presence_ttl: &str) -> Value {
    json!({
        "user_status": {"enabled": true},
        "engine": {"redis": {"presence_ttl": presence_ttl}},
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn status_at(addr: &str, users: &[&str]) -> Vec<Value> {
    let reply: Value = reqwest::Client::new()
        .post(format!("http://{addr}/api/user_status"))
        .header("x-api-key", "api-key")
        .timeout(Duration::from_secs(5))
        .json(&json!({ "users": users }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["result"]["statuses"]
        .as_array()
        .unwrap_or_else(|| panic!("no statuses: {reply}"))
        .clone()
}

/// Polls `user` at `addr` until `done` holds, for at most `bound`; returns the status and
/// how long it took.
async fn eventually(
    addr: &str,
    user: &str,
    bound: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let status = status_at(addr, &[user]).await.remove(0);
        if done(&status) {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < bound,
            "no change within {bound:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_user_connected_on_one_process_is_online_when_asked_on_another() {
    let prefix = Prefix::new();
    let a = TestServer::start_redis(enabled("60s"), &prefix.0).await;
    let b = TestServer::start_redis(enabled("60s"), &prefix.0).await;
    let (on_a, _) = Client::connected(&a.ws_url(), "alice").await;
    // Written before the connect reply: no wait needed on the other process.
    assert_eq!(
        status_at(&b.addr.to_string(), &["alice", "bob"]).await,
        vec![
            json!({"user": "alice", "online": true, "connections": 1, "last_seen": 0}),
            json!({"user": "bob", "online": false, "connections": 0, "last_seen": 0}),
        ]
    );
    let (on_b, _) = Client::connected(&b.ws_url(), "alice").await;
    let both = api(&a, "user_status", json!({"users": ["alice"]})).await;
    assert_eq!(both["result"]["statuses"][0]["connections"], 2, "{both}");
    drop(on_a);
    let (one, _) = eventually(&b.addr.to_string(), "alice", Duration::from_secs(5), |v| {
        v["connections"] == 1
    })
    .await;
    assert_eq!(one["online"], true);
    let before = now_ms();
    drop(on_b);
    let (gone, _) = eventually(&a.addr.to_string(), "alice", Duration::from_secs(5), |v| {
        v["online"] == false
    })
    .await;
    let seen = gone["last_seen"].as_u64().unwrap();
    assert!((before..=now_ms()).contains(&seen), "{gone}");
    // A batch of a thousand users is one call per shard, and answers in order.
    let many: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let mut users: Vec<&str> = many.iter().map(String::as_str).collect();
    users[500] = "alice";
    let all = status_at(&b.addr.to_string(), &users).await;
    assert_eq!(all.len(), 1000);
    assert_eq!(all[500]["user"], "alice");
    assert_eq!(all[500]["last_seen"], seen);
    assert_eq!(all[999]["user"], "user-999");
}

#[tokio::test]
async fn the_users_of_a_killed_process_go_offline_within_the_presence_ttl() {
    let prefix = Prefix::new();
    let ttl = Duration::from_secs(2);
    let mut config = json!({
        "client": {"token": {"hmac_secret_key": SECRET}},
        "http_api": {"key": "api-key"},
        "engine": {"type": "redis", "redis": {"address": redis_url(), "prefix": prefix.0}},
    });
    common::merge(&mut config, enabled("2s"));
    let mut doomed = Binary::listening(&config, &[]).await;
    let survivor = Binary::listening(&config, &[]).await;
    let (_alice, _) = Client::connected(&doomed.ws_url(), "alice").await;
    let (_bob, _) = Client::connected(&survivor.ws_url(), "bob").await;
    let (_alice_too, _) = Client::connected(&survivor.ws_url(), "alice").await;
    let (_carol, _) = Client::connected(&doomed.ws_url(), "carol").await;
    let online = status_at(&survivor.addr, &["alice", "bob", "carol"]).await;
    let counts: Vec<&Value> = online.iter().map(|v| &v["connections"]).collect();
    assert_eq!(counts, [&json!(2), &json!(1), &json!(1)]);

    // SIGKILL: no cleanup at all; its counts stay in Redis until its heartbeat is too old.
    doomed.child.start_kill().unwrap();
    let _ = doomed.child.wait().await;
    let killed_at = now_ms();
    let (carol, took) =
        eventually(&survivor.addr, "carol", ttl * 2, |v| v["online"] == false).await;
    assert!(took <= ttl * 2, "{took:?}");
    let seen = carol["last_seen"].as_u64().unwrap();
    // The last heartbeat of the killed process: before the kill, less than a TTL before.
    assert!(
        seen <= killed_at && seen + ttl.as_millis() as u64 >= killed_at,
        "last seen {seen}, killed at {killed_at}"
    );
    let after = status_at(&survivor.addr, &["alice", "bob", "carol"]).await;
    assert_eq!(
        after[0],
        json!({"user": "alice", "online": true, "connections": 1, "last_seen": 0})
    );
    assert_eq!(after[1]["connections"], 1);
    assert_eq!(after[2]["online"], false);
}

#[tokio::test]
async fn a_process_that_stops_gracefully_takes_its_users_offline_at_once() {
    let prefix = Prefix::new();
    let a = TestServer::start_redis(enabled("60s"), &prefix.0).await;
    let b = TestServer::start_redis(enabled("60s"), &prefix.0).await;
    let (_alice, _) = Client::connected(&a.ws_url(), "alice").await;
    let (_bob, _) = Client::connected(&b.ws_url(), "bob").await;
    let before = now_ms();
    a.shutdown().await;
    // Far sooner than the 60 s heartbeat expiry.
    let (gone, _) = eventually(&b.addr.to_string(), "alice", Duration::from_secs(5), |v| {
        v["online"] == false
    })
    .await;
    let seen = gone["last_seen"].as_u64().unwrap();
    assert!((before..=now_ms()).contains(&seen), "{gone}");
    assert_eq!(
        status_at(&b.addr.to_string(), &["bob"]).await[0]["connections"],
        1
    );
}

#[tokio::test]
async fn two_tenants_on_one_redis_see_nothing_of_each_others_users() {
    let (first, second) = (Prefix::new(), Prefix::new());
    let a = TestServer::start_redis(enabled("60s"), &first.0).await;
    let b = TestServer::start_redis(enabled("60s"), &second.0).await;
    let (_alice, _) = Client::connected(&a.ws_url(), "alice").await;
    assert_eq!(
        api(&a, "user_status", json!({"users": ["alice"]})).await["result"]["statuses"][0]
            ["online"],
        true
    );
    // Tenant b's backend asks about alice, and about user ids built to reach tenant a's keys.
    let crafted = [
        "alice".to_owned(),
        format!("{}{{alice}}:us", first.0),
        format!("}}:us\n{}{{alice", first.0),
        format!("../{}alice", first.0),
    ];
    let users: Vec<&str> = crafted.iter().map(String::as_str).collect();
    let seen = status_at(&b.addr.to_string(), &users).await;
    for status in &seen {
        assert_eq!(status["online"], false, "{status}");
        assert_eq!(status["connections"], 0, "{status}");
        assert_eq!(status["last_seen"], 0, "{status}");
    }
    // A user of b with one of those ids does not show up at a either.
    let (_mallory, _) = Client::connected(&b.ws_url(), &crafted[1]).await;
    let at_a = api(&a, "user_status", json!({"users": [crafted[1], "alice"]})).await;
    assert_eq!(at_a["result"]["statuses"][0]["online"], false, "{at_a}");
    assert_eq!(at_a["result"]["statuses"][1]["connections"], 1, "{at_a}");
    // Every key either tenant wrote starts with its own prefix.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (prefix, user) in [(&first.0, "alice"), (&second.0, crafted[1].as_str())] {
        let key = format!("{prefix}{{{user}}}:us");
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(exists, "{key}");
    }
}

#[tokio::test]
async fn with_several_shards_each_users_record_lives_on_the_shard_its_id_picks() {
    use rotor_data_plane::engine::redis::shard::shard_index;
    let prefix = Prefix::new();
    let base = redis_url();
    let base = base.trim_end_matches('/');
    // Two databases of one server stand in for two shards.
    let shards = [format!("{base}/14"), format!("{base}/15")];
    let config = || {
        let mut c = enabled("60s");
        common::merge(&mut c, json!({"engine": {"redis": {"address": shards}}}));
        c
    };
    let a = TestServer::start_redis(config(), &prefix.0).await;
    let b = TestServer::start_redis(config(), &prefix.0).await;
    let users: Vec<String> = (0..12).map(|i| format!("sharded-{i}")).collect();
    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        clients.push(Client::connected(&node.ws_url(), user).await.0);
    }
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let all = status_at(&b.addr.to_string(), &names).await;
    assert!(all.iter().all(|v| v["connections"] == 1), "{all:?}");
    let mut used = [0usize; 2];
    for (shard, url) in shards.iter().enumerate() {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for user in &users {
            let key = format!("{}{{{user}}}:us", prefix.0);
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(
                exists,
                shard_index(user, 2) == shard,
                "{user} on shard {shard}"
            );
            used[shard] += usize::from(exists);
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", prefix.0))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    assert!(used[0] > 0 && used[1] > 0, "{used:?}");
}
