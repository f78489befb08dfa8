//! The Redis engine: several nodes on one Redis and prefix act as one tenant (publications,
//! history, recovery, presence and join/leave across nodes), and two prefixes see nothing of
//! each other.

mod common;

use common::{api, Client, Prefix, TestServer};
use serde_json::json;

#[tokio::test]
async fn a_publication_on_one_node_reaches_subscribers_on_another_in_order() {
    let prefix = Prefix::new();
    let a = TestServer::start_redis(json!({}), &prefix.0).await;
    let b = TestServer::start_redis(json!({}), &prefix.0).await;
    let (mut sub, _) = Client::connected(&a.ws_url(), "s").await;
    let r = sub.call(json!({"subscribe": {"channel": "chat:x"}})).await;
    assert_eq!(r["subscribe"]["recoverable"], true);
    let epoch = r["subscribe"]["epoch"].clone();
    let _own_join = sub.push().await;
    let (mut publisher, _) = Client::connected(&b.ws_url(), "p").await;
    publisher
        .call(json!({"subscribe": {"channel": "chat:x"}}))
        .await;
    assert!(
        sub.push().await["join"].is_object(),
        "a join on node b reaches node a"
    );
    for n in 1..=5 {
        let r = publisher
            .call(json!({"publish": {"channel": "chat:x", "data": {"n": n}}}))
            .await;
        assert_eq!(r["publish"], json!({}));
    }
    for n in 1..=5u64 {
        let p = sub.push().await;
        assert_eq!(
            (p["pub"]["data"]["n"].as_u64(), p["pub"]["offset"].as_u64()),
            (Some(n), Some(n))
        );
    }
    // History and presence are shared too.
    let h = publisher
        .call(json!({"history": {"channel": "chat:x", "limit": -1}}))
        .await;
    assert_eq!(h["history"]["offset"], 5);
    assert_eq!(h["history"]["epoch"], epoch);
    assert_eq!(h["history"]["publications"].as_array().unwrap().len(), 5);
    let st = sub
        .call(json!({"presence_stats": {"channel": "chat:x"}}))
        .await;
    assert_eq!(
        st["presence_stats"],
        json!({"num_clients": 2, "num_users": 2})
    );
}

#[tokio::test]
async fn recovery_works_across_nodes() {
    let prefix = Prefix::new();
    let a = TestServer::start_redis(json!({}), &prefix.0).await;
    let b = TestServer::start_redis(json!({}), &prefix.0).await;
    let (mut c, _) = Client::connected(&a.ws_url(), "c").await;
    let r = c.call(json!({"subscribe": {"channel": "chat:r"}})).await;
    let epoch = r["subscribe"]["epoch"].clone();
    drop(c);
    let (mut p, _) = Client::connected(&b.ws_url(), "p").await;
    p.call(json!({"subscribe": {"channel": "chat:r"}})).await;
    for n in 1..=3 {
        p.call(json!({"publish": {"channel": "chat:r", "data": {"n": n}}}))
            .await;
    }
    let (mut c, _) = Client::connected(&b.ws_url(), "c").await;
    let r = c.call(json!({"subscribe": {"channel": "chat:r", "recover": true, "offset": 0, "epoch": epoch}})).await;
    assert_eq!(r["subscribe"]["recovered"], true, "{r}");
    let got: Vec<u64> = r["subscribe"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![1, 2, 3]);
}

#[tokio::test]
async fn two_prefixes_on_one_redis_see_nothing_of_each_other() {
    let (pa, pb) = (Prefix::new(), Prefix::new());
    let a = TestServer::start_redis(json!({}), &pa.0).await;
    let b = TestServer::start_redis(json!({}), &pb.0).await;
    let (mut on_b, _) = Client::connected(&b.ws_url(), "same-user").await;
    on_b.call(json!({"subscribe": {"channel": "chat:x"}})).await;
    let _own_join = on_b.push().await;
    let (mut on_a, _) = Client::connected(&a.ws_url(), "same-user").await;
    on_a.call(json!({"subscribe": {"channel": "chat:x"}})).await;
    on_a.call(json!({"publish": {"channel": "chat:x", "data": {"tenant": "a"}}}))
        .await;
    let h = on_b
        .call(json!({"history": {"channel": "chat:x", "limit": -1}}))
        .await;
    assert_eq!(h["history"]["publications"], json!([]));
    assert_eq!(h["history"]["offset"], 0);
    let st = on_b
        .call(json!({"presence_stats": {"channel": "chat:x"}}))
        .await;
    assert_eq!(
        st["presence_stats"],
        json!({"num_clients": 1, "num_users": 1})
    );
    // Nothing of tenant a arrived on b: the next frame b reads is the answer to its own probe.
    let probe = on_b
        .call(json!({"presence_stats": {"channel": "chat:x"}}))
        .await;
    assert!(probe.get("presence_stats").is_some());
}

#[tokio::test]
async fn the_server_api_publishes_through_redis_with_idempotency() {
    let prefix = Prefix::new();
    let a = TestServer::start_redis(json!({}), &prefix.0).await;
    let http = reqwest::Client::new();
    let publish = |key: &'static str| {
        let http = http.clone();
        let url = format!("http://{}/api/publish", a.addr);
        async move {
            http.post(url)
                .header("x-api-key", "api-key")
                .body(
                    json!({"channel": "chat:i", "data": {"x": 1}, "idempotency_key": key})
                        .to_string(),
                )
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let first = publish("k1").await;
    assert_eq!(first["result"]["offset"], 1);
    assert_eq!(publish("k1").await, first);
    assert_eq!(publish("k2").await["result"]["offset"], 2);
}

/// A private redis-server on a free port, killed on drop.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("rotor-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Self {
            port,
            dir,
            child: None,
        };
        r.spawn();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        // Wait (bounded) until it answers.
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while client
            .get_connection_with_timeout(std::time::Duration::from_millis(200))
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_redis_restart_fails_publishes_meanwhile_and_then_asks_subscribers_to_recover() {
    let mut redis = OwnRedis::start();
    let s = TestServer::start_redis(
        json!({"engine": {"redis": {"address": redis.url()}}}),
        &format!("rotor-test:{}:", uuid::Uuid::new_v4().simple()),
    )
    .await;
    let (mut c, _) = Client::connected(&s.ws_url(), "c").await;
    c.call(json!({"subscribe": {"channel": "chat:f"}})).await;
    let _own_join = c.push().await;
    let api = |body: serde_json::Value| {
        let url = format!("http://{}/api/publish", s.addr);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-api-key", "api-key")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        api(json!({"channel": "chat:f", "data": 1})).await["result"]["offset"],
        1
    );
    assert_eq!(c.push().await["pub"]["offset"], 1);
    redis.kill();
    let down = api(json!({"channel": "chat:f", "data": 2})).await;
    assert_eq!(
        down["error"]["code"], 100,
        "a temporary error while Redis is down: {down}"
    );
    redis.spawn();
    // The PUB/SUB side reconnects and tells the positioned subscriber to recover.
    let push = c.push().await;
    assert_eq!(push["unsubscribe"]["code"], 2500, "{push}");
    assert_eq!(push["channel"], "chat:f");
    // Publishing works again.
    let mut ok = serde_json::Value::Null;
    for _ in 0..50 {
        ok = api(json!({"channel": "chat:f", "data": 3})).await;
        if ok.get("result").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok.get("result").is_some(), "{ok}");
}

#[tokio::test]
async fn presence_of_a_connection_that_stops_refreshing_expires() {
    use rotor_data_plane::engine::redis::RedisEngine;
    use rotor_data_plane::engine::Presence;
    use rotor_data_plane::protocol::ClientInfo;
    let prefix = Prefix::new();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let stop = tokio_util::sync::CancellationToken::new();
    struct Ignore;
    impl rotor_data_plane::engine::BrokerEvents for Ignore {
        fn publication(&self, _: &str, _: std::sync::Arc<rotor_data_plane::publication::PubMsg>) {}
        fn join(&self, _: &str, _: ClientInfo) {}
        fn leave(&self, _: &str, _: ClientInfo) {}
    }
    let engine = RedisEngine::connect_standalone(
        &[url],
        &rotor_tenant_config::RedisTls::default(),
        &prefix.0,
        std::time::Duration::from_secs(1),
        std::sync::Arc::new(Ignore),
        stop.clone(),
    )
    .await
    .unwrap();
    for (client, user) in [("c1", "u1"), ("c2", "u1"), ("c3", "u2")] {
        let info = ClientInfo {
            user: user.into(),
            client: client.into(),
            ..Default::default()
        };
        engine.add_presence("chat:p", info).await.unwrap();
    }
    assert_eq!(engine.presence_stats("chat:p").await.unwrap(), (3, 2));
    engine.remove_presence("chat:p", "c3", "u2").await.unwrap();
    assert_eq!(engine.presence_stats("chat:p").await.unwrap(), (2, 1));
    // Nobody refreshes: after the one-second TTL (expiry has whole-second resolution) the
    // entries are gone, as when the process holding those connections was killed.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(engine.presence_stats("chat:p").await.unwrap(), (0, 0));
    // The user counts expired with their entries: u1 comes back counted once, and a refresh
    // of the same entry counts nothing again.
    let c4 = ClientInfo {
        user: "u1".into(),
        client: "c4".into(),
        ..Default::default()
    };
    engine.add_presence("chat:p", c4.clone()).await.unwrap();
    engine.add_presence("chat:p", c4).await.unwrap();
    assert_eq!(engine.presence_stats("chat:p").await.unwrap(), (1, 1));
    assert_eq!(engine.presence("chat:p").await.unwrap().len(), 1);
    engine.remove_presence("chat:p", "c4", "u1").await.unwrap();
    assert_eq!(engine.presence_stats("chat:p").await.unwrap(), (0, 0));
    stop.cancel();
}

#[tokio::test]
async fn several_redis_addresses_shard_channels_and_each_channel_stays_on_one() {
    let other = OwnRedis::start();
    let main_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = Prefix::new();
    let addresses = json!([main_url, other.url()]);
    let a = TestServer::start_redis(
        json!({"engine": {"redis": {"address": addresses}}}),
        &prefix.0,
    )
    .await;
    let b = TestServer::start_redis(
        json!({"engine": {"redis": {"address": addresses}}}),
        &prefix.0,
    )
    .await;
    let (mut sub, _) = Client::connected(&a.ws_url(), "s").await;
    let (mut publisher, _) = Client::connected(&b.ws_url(), "p").await;
    let channels: Vec<String> = (0..8).map(|i| format!("chat:shard{i}")).collect();
    for ch in &channels {
        sub.call(json!({"subscribe": {"channel": ch}})).await;
        let _own_join = sub.push().await;
        publisher.call(json!({"subscribe": {"channel": ch}})).await;
        let _peer_join = sub.push().await;
        publisher
            .call(json!({"publish": {"channel": ch, "data": {"ch": ch}}}))
            .await;
        let p = sub.push().await;
        assert_eq!(
            (p["channel"].as_str(), p["pub"]["offset"].as_u64()),
            (Some(ch.as_str()), Some(1))
        );
    }
    // Each channel's stream lives on exactly one of the two servers, and both are used.
    let count = |url: String| {
        let pattern = format!("{}*:s", prefix.0);
        async move {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.len()
        }
    };
    let (on_main, on_other) = (count(main_url.clone()).await, count(other.url()).await);
    assert_eq!(on_main + on_other, channels.len());
    assert!(
        on_main > 0 && on_other > 0,
        "both shards used: {on_main}/{on_other}"
    );
}

#[tokio::test]
async fn channels_and_info_cover_every_node_of_the_tenant() {
    let prefix = Prefix::new();
    let a = TestServer::start_redis(json!({}), &prefix.0).await;
    let b = TestServer::start_redis(json!({}), &prefix.0).await;
    let (mut c, _) = Client::connected(&a.ws_url(), "u").await;
    c.call(json!({"subscribe": {"channel": "news"}})).await;
    let http = reqwest::Client::new();
    let call = |method: &'static str| {
        let http = http.clone();
        let url = format!("http://{}/api/{method}", b.addr);
        async move {
            http.post(url)
                .header("x-api-key", "api-key")
                .body("{}")
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    // Node b learns of node a from its heartbeat (sent on start).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let info = call("info").await;
        if info["result"]["nodes"].as_array().map_or(0, Vec::len) == 2 {
            let clients: u64 = info["result"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["num_clients"].as_u64().unwrap())
                .sum();
            assert_eq!(clients, 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node a never seen: {info}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let channels = call("channels").await;
    assert_eq!(
        channels["result"],
        json!({"channels": {"news": {"num_clients": 1}}})
    );
}

#[tokio::test]
async fn a_third_redis_shard_takes_about_a_third_of_the_channels_and_the_rest_stay_put() {
    use rotor_data_plane::engine::redis::shard::{fnv1a64, shard_index};
    use rotor_data_plane::engine::{HistoryFilter, PublishOptions};
    let servers = [OwnRedis::start(), OwnRedis::start(), OwnRedis::start()];
    let urls: Vec<String> = servers.iter().map(OwnRedis::url).collect();
    let prefix = format!("rotor-test:{}:", uuid::Uuid::new_v4().simple());
    let two = TestServer::start_redis(
        json!({"engine": {"redis": {"address": urls[..2]}}}),
        &prefix,
    )
    .await;
    let channels: Vec<String> = (0..600).map(|i| format!("chat:room{i}")).collect();
    let opts = PublishOptions {
        history_size: 10,
        history_ttl: std::time::Duration::from_secs(60),
        history_meta_ttl: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    for ch in &channels {
        let publication = rotor_data_plane::protocol::Publication {
            data: b"{}".to_vec().into(),
            ..Default::default()
        };
        let top = two.node.broker.publish(ch, publication, &opts).await;
        assert_eq!(top.expect("publish").offset, 1);
    }
    // The same tenant restarted with a third shard appended: a channel whose stream it still
    // finds stayed on its shard; the others moved (to the new shard, where nothing is yet).
    let three =
        TestServer::start_redis(json!({"engine": {"redis": {"address": urls}}}), &prefix).await;
    let mut moved = Vec::new();
    for ch in &channels {
        let page = three
            .node
            .broker
            .history(ch, HistoryFilter::default())
            .await
            .expect("history");
        if page.top.offset == 0 {
            moved.push(ch.clone());
        }
    }
    let expected: Vec<String> = channels
        .iter()
        .filter(|ch| shard_index(ch, 3) == 2)
        .cloned()
        .collect();
    assert_eq!(
        moved, expected,
        "exactly the channels of the new shard moved"
    );
    let share = moved.len() as f64 / channels.len() as f64;
    assert!((share - 1.0 / 3.0).abs() < 0.06, "moved {share:.3}");
    let modulo_moved = channels
        .iter()
        .filter(|ch| {
            let h = fnv1a64(ch.as_bytes());
            h % 2 != h % 3
        })
        .count() as f64
        / channels.len() as f64;
    assert!(
        modulo_moved > 0.6,
        "hash % shards would have moved {modulo_moved:.3}"
    );
}

/// What one API publication of an `n`-byte payload costs in a history budget.
fn api_cost(n: usize) -> u64 {
    rotor_data_plane::budgets::stored_size(&rotor_data_plane::protocol::Publication {
        data: bytes::Bytes::from(vec![b'x'; n]),
        ..Default::default()
    })
}

/// Tenants of a deployment share its Redis. The attack: one of them publishes large messages
/// to ever new channels, within its publish rate, until the server is full and every other
/// tenant's history and presence fail with it. What it writes into Redis history is held
/// against its plan's budgets instead: a channel keeps at most `max_channel_history_bytes`
/// (its oldest entries trimmed in Redis itself), the tenant at most `max_history_bytes` and
/// `max_channels` streams, each refusal a 106 that leaves nothing in Redis, and removed history
/// gives its budget back.
#[tokio::test]
async fn a_tenant_cannot_fill_a_shared_redis_past_its_history_budgets() {
    let prefix = Prefix::new();
    let one = api_cost(1000);
    let s = TestServer::start_redis(
        json!({"rotor": {"max_history_bytes": 3 * one, "max_channel_history_bytes": 2 * one,
                         "max_channels": 4}}),
        &prefix.0,
    )
    .await;
    let big = json!("x".repeat(998));
    for n in 1..=3 {
        let r = api(&s, "publish", json!({"channel": "chat:a", "data": big})).await;
        assert_eq!(r["result"]["offset"], n, "{r}");
    }
    // The channel's byte cap trimmed the oldest entry out of the Redis stream.
    let h = api(&s, "history", json!({"channel": "chat:a", "limit": -1})).await;
    let offsets: Vec<u64> = h["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [2, 3], "{h}");
    assert_eq!(s.node.budgets.history_bytes(), 2 * one);

    let r = api(&s, "publish", json!({"channel": "chat:b", "data": big})).await;
    assert!(r["result"]["offset"].is_u64(), "{r}");
    let r = api(&s, "publish", json!({"channel": "chat:c", "data": big})).await;
    assert_eq!(r["error"]["code"], 106, "past max_history_bytes: {r}");
    let h = api(&s, "history", json!({"channel": "chat:c", "limit": -1})).await;
    assert_eq!(
        (
            h["result"]["offset"].as_u64().unwrap_or(0),
            h["result"]["publications"].as_array().map_or(0, Vec::len)
        ),
        (0, 0),
        "a refused publication leaves nothing in Redis: {h}"
    );
    // Reading chat:c took no channel either; removing chat:a's history gives its bytes back.
    assert_eq!(s.node.budgets.channels(), 2);
    api(&s, "history_remove", json!({"channel": "chat:a"})).await;
    assert_eq!(s.node.budgets.history_bytes(), one);
    let r = api(&s, "publish", json!({"channel": "chat:c", "data": big})).await;
    assert!(r["result"]["offset"].is_u64(), "{r}");

    // Channels: a (its meta is still in Redis), b and c hold three of four, one small stream
    // more fills it, a fifth is refused.
    assert_eq!(s.node.budgets.channels(), 3);
    let r = api(&s, "publish", json!({"channel": "chat:d", "data": 1})).await;
    assert!(r["result"]["offset"].is_u64(), "{r}");
    let r = api(&s, "publish", json!({"channel": "chat:e", "data": 1})).await;
    assert_eq!(r["error"]["code"], 106, "past max_channels: {r}");
    // A channel that exists takes more within its budgets.
    let r = api(&s, "publish", json!({"channel": "chat:d", "data": 2})).await;
    assert_eq!(r["result"]["offset"], 2, "{r}");
}

/// The attack: each history read, or positioned subscribe, of a new name left a stream meta
/// key in Redis for `history_meta_ttl` (30 days by default), so one end user could fill a
/// shared Redis by reading alone. A stream nobody published into now lives a minute past its
/// last read; the first publication keeps its epoch and gives it the full TTL; and a process
/// keeps alive, by reading them again, the epochs its own subscribers were given.
#[tokio::test]
async fn reads_of_new_names_leave_only_short_lived_keys_and_subscribers_keep_their_epoch() {
    use rotor_data_plane::budgets::{Budgets, Holder};
    use rotor_data_plane::engine::redis::RedisEngine;
    use rotor_data_plane::engine::{Broker, HistoryFilter, PublishOptions};
    use rotor_data_plane::protocol::ClientInfo;
    use std::sync::Arc;
    use std::time::Duration;
    let prefix = Prefix::new();
    struct Ignore;
    impl rotor_data_plane::engine::BrokerEvents for Ignore {
        fn publication(&self, _: &str, _: Arc<rotor_data_plane::publication::PubMsg>) {}
        fn join(&self, _: &str, _: ClientInfo) {}
        fn leave(&self, _: &str, _: ClientInfo) {}
    }
    let budgets = Arc::new(Budgets::default());
    let engine = RedisEngine::connect_standalone(
        &[common::redis_url()],
        &rotor_tenant_config::RedisTls::default(),
        &prefix.0,
        Duration::from_secs(60),
        Arc::new(Ignore),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap()
    .with_history_budgets(budgets.clone());
    let redis = redis::Client::open(common::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let month = Duration::from_secs(720 * 3600);
    let read = HistoryFilter {
        limit: 0,
        meta_ttl: month,
        ..Default::default()
    };
    let meta = |channel: &str| format!("{}{{{channel}}}:m", prefix.0);
    let ttl = |key: String| {
        let mut redis = redis.clone();
        async move {
            let t: i64 = redis::cmd("TTL")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap();
            t
        }
    };
    let mut redis = redis.clone();

    // A read of a name nobody subscribes to or publishes into: a minute at most.
    let page = engine.history("chat:read", read.clone()).await.unwrap();
    assert_eq!(page.top.offset, 0);
    let t = ttl(meta("chat:read")).await;
    assert!((1..=60).contains(&t), "TTL of a read-made key: {t}");

    // A local subscriber's empty stream is read again, and keeps its epoch.
    budgets
        .hold_channel("chat:sub", Holder::Subscribers)
        .unwrap();
    let epoch = engine
        .history("chat:sub", read.clone())
        .await
        .unwrap()
        .top
        .epoch;
    for key in [meta("chat:sub"), meta("chat:read")] {
        let _: i64 = redis::cmd("EXPIRE")
            .arg(key)
            .arg(5)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    engine.refresh_unpublished().await;
    assert!(
        ttl(meta("chat:sub")).await > 60,
        "the subscriber's epoch renewed, for longer than a stranger's read"
    );
    assert!(
        ttl(meta("chat:read")).await <= 5,
        "nobody's epoch left to lapse"
    );
    let opts = PublishOptions {
        history_size: 10,
        history_ttl: Duration::from_secs(60),
        history_meta_ttl: month,
        ..Default::default()
    };
    let pos = engine
        .publish("chat:sub", Default::default(), &opts)
        .await
        .unwrap();
    assert_eq!(
        (pos.offset, pos.epoch),
        (1, epoch),
        "the first publication keeps the epoch"
    );
    assert!(
        ttl(meta("chat:sub")).await > 3600,
        "a published stream keeps its meta TTL"
    );
    // The upkeep leaves a published stream's TTL alone.
    engine.refresh_unpublished().await;
    assert!(ttl(meta("chat:sub")).await > 3600);
    // A read by a client now renews the full TTL, as before.
    engine.history("chat:sub", read).await.unwrap();
    assert!(ttl(meta("chat:sub")).await > 3600);
}
