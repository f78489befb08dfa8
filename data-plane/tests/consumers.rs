//! Asynchronous consumers (`consumers`) against a real PostgreSQL, Redis and nats-server: commands
//! written to an outbox table, a Redis stream or a JetStream stream reach subscribers, as the
//! HTTP API would publish them; a poisoned command (bad payload, unknown or read-only method)
//! is skipped without stopping the queue; NOTIFY wakes a partition at once; a stream message a
//! dead worker read and never acknowledged is taken over after the visibility timeout; and the
//! consumers follow the config (a reload without them stops them).

mod common;

use std::time::Duration;

use common::{redis_url, Client, TestServer};
use redis::AsyncCommands;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

async fn outbox(name: &str) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url())
        .await
        .expect("postgres");
    sqlx::query(&format!(
        "CREATE TABLE {name} (id BIGSERIAL PRIMARY KEY, method TEXT NOT NULL, \
         payload JSONB NOT NULL, partition INTEGER NOT NULL DEFAULT 0, \
         created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ))
    .execute(&pool)
    .await
    .unwrap();
    pool
}

async fn insert(pool: &PgPool, table: &str, method: &str, payload: Value, partition: i32) {
    sqlx::query(&format!(
        "INSERT INTO {table} (method, payload, partition) VALUES ($1, $2::jsonb, $3)"
    ))
    .bind(method)
    .bind(payload.to_string())
    .bind(partition)
    .execute(pool)
    .await
    .unwrap();
}

async fn rows_left(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn drop_table(pool: &PgPool, table: &str) {
    let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(pool)
        .await;
}

/// A server whose consumers run (as the binary runs them), subscribed to by one client.
async fn server_with(consumers: Value, channel: &str) -> (TestServer, Client, CancellationToken) {
    let s = TestServer::start(json!({
        "consumers": consumers,
        "channel": {"namespaces": [{"name": "feed", "allow_subscribe_for_client": true,
                                    "history_size": 100, "history_ttl": "60s"}]}
    }))
    .await;
    let stop = CancellationToken::new();
    tokio::spawn(rotor_data_plane::consumers::run(
        s.node.clone(),
        stop.clone(),
    ));
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    let r = c.call(json!({"subscribe": {"channel": channel}})).await;
    assert!(r.get("error").is_none(), "{r}");
    (s, c, stop)
}

/// The `n` of the next `count` publications `c` receives.
async fn next_ns(c: &mut Client, count: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < count {
        let push = tokio::time::timeout(Duration::from_secs(10), c.push())
            .await
            .expect("publication in time");
        if let Some(n) = push["pub"]["data"]["n"].as_u64() {
            out.push(n);
        }
    }
    out
}

#[tokio::test]
async fn an_outbox_table_is_consumed_in_order_and_a_poisoned_row_does_not_stop_it() {
    let table = unique("outbox");
    let pool = outbox(&table).await;
    let channel = "feed:outbox";
    // Rows written before the consumer starts, some of them bad.
    insert(
        &pool,
        &table,
        "publish",
        json!({"channel": channel, "data": {"n": 1}}),
        0,
    )
    .await;
    insert(&pool, &table, "publish", json!({"data": {"n": 99}}), 0).await; // no channel
    insert(&pool, &table, "bogus", json!({"channel": channel}), 0).await;
    insert(&pool, &table, "history", json!({"channel": channel}), 0).await; // read-only
    insert(
        &pool,
        &table,
        "publish",
        json!({"channel": "nope:x", "data": {"n": 98}}),
        0,
    )
    .await;
    insert(
        &pool,
        &table,
        "broadcast",
        json!({"channels": [channel], "data": {"n": 2}}),
        0,
    )
    .await;
    let (s, mut c, stop) = server_with(
        json!([{"enabled": true, "name": "orders", "type": "postgresql", "postgresql": {
            "dsn": database_url(), "outbox_table_name": table, "num_partitions": 2,
            "partition_select_limit": 2, "partition_poll_interval": "100ms"}}]),
        channel,
    )
    .await;
    // Then more, in both partitions, more than one select's worth.
    for n in 3..=8 {
        insert(
            &pool,
            &table,
            "publish",
            json!({"channel": channel, "data": {"n": n}}),
            0,
        )
        .await;
    }
    assert_eq!(next_ns(&mut c, 8).await, (1..=8).collect::<Vec<_>>());
    insert(
        &pool,
        &table,
        "publish",
        json!({"channel": channel, "data": {"n": 9}}),
        1,
    )
    .await;
    assert_eq!(next_ns(&mut c, 1).await, vec![9]);
    // Everything done is deleted, the bad rows included.
    for _ in 0..50 {
        if rows_left(&pool, &table).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows_left(&pool, &table).await, 0);
    // The history holds each publication once.
    let h = common::api(&s, "history", json!({"channel": channel, "limit": 100})).await;
    assert_eq!(
        h["result"]["publications"].as_array().unwrap().len(),
        9,
        "{h}"
    );
    stop.cancel();
    drop_table(&pool, &table).await;
}

#[tokio::test]
async fn a_notify_wakes_the_partition_before_its_poll_and_a_reload_stops_the_consumer() {
    let table = unique("outbox");
    let pool = outbox(&table).await;
    let notify = unique("wake");
    sqlx::query(&format!(
        "CREATE FUNCTION {notify}() RETURNS TRIGGER AS $$ BEGIN \
         PERFORM pg_notify('{notify}', NEW.partition::text); RETURN NEW; END; $$ LANGUAGE plpgsql"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "CREATE TRIGGER {notify} AFTER INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {notify}()"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let channel = "feed:notified";
    let consumers = json!([{"enabled": true, "name": "notified", "type": "postgresql",
        "postgresql": {"dsn": database_url(), "outbox_table_name": table,
                       "partition_poll_interval": "1h", "partition_notification_channel": notify}}]);
    let (s, mut c, stop) = server_with(consumers, channel).await;
    // The first pass runs at start; give the listener a moment to be listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    insert(
        &pool,
        &table,
        "publish",
        json!({"channel": channel, "data": {"n": 1}}),
        0,
    )
    .await;
    // Polled only hourly: only the notification can bring it this soon.
    assert_eq!(next_ns(&mut c, 1).await, vec![1]);

    // A config without the consumer stops it: the next row stays.
    let mut config = s.node.config.load().tenant.clone();
    config.consumers.clear();
    config.rotor.config_version += 1;
    s.node.config.apply(config).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    insert(
        &pool,
        &table,
        "publish",
        json!({"channel": channel, "data": {"n": 2}}),
        0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rows_left(&pool, &table).await, 1);
    stop.cancel();
    drop_table(&pool, &table).await;
    let _ = sqlx::query(&format!("DROP FUNCTION IF EXISTS {notify}()"))
        .execute(&pool)
        .await;
}

#[tokio::test]
async fn a_redis_stream_is_consumed_and_a_dead_workers_message_is_taken_over() {
    let stream = unique("rotor_stream");
    let group = "rotor";
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let channel = "feed:stream";
    // A worker that read one message and died before acknowledging it.
    let _: () = conn
        .xgroup_create_mkstream(&stream, group, "$")
        .await
        .unwrap();
    let cmd = |n: u64| json!({"channel": channel, "data": {"n": n}}).to_string();
    let _: String = conn
        .xadd(&stream, "*", &[("method", "publish"), ("payload", &cmd(1))])
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg("dead-worker")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (_s, mut c, stop) = server_with(
        json!([{"enabled": true, "name": "events", "type": "redis_stream", "redis_stream": {
            "address": redis_url(), "streams": [stream], "consumer_group": group,
            "visibility_timeout": "1s", "num_workers": 2}}]),
        channel,
    )
    .await;
    // The other shapes: a whole command in the payload; poison in between.
    let whole = json!({"method": "publish", "payload": {"channel": channel, "data": {"n": 2}}});
    let _: String = conn
        .xadd(&stream, "*", &[("payload", whole.to_string())])
        .await
        .unwrap();
    let _: String = conn
        .xadd(&stream, "*", &[("payload", "not json")])
        .await
        .unwrap();
    let _: String = conn
        .xadd(&stream, "*", &[("method", "publish"), ("payload", &cmd(3))])
        .await
        .unwrap();
    let mut got = next_ns(&mut c, 3).await;
    got.sort();
    // n=1 comes only once the dead worker's visibility timeout passed.
    assert_eq!(got, vec![1, 2, 3]);
    // Nothing left pending.
    let mut pending = u64::MAX;
    for _ in 0..30 {
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(group)
            .query_async(&mut conn)
            .await
            .unwrap();
        pending = match summary {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n as u64,
                _ => u64::MAX,
            },
            _ => u64::MAX,
        };
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0);
    stop.cancel();
    let _: () = conn.del(&stream).await.unwrap();
}

#[tokio::test]
async fn a_stream_in_publication_data_mode_publishes_its_data_with_its_fields() {
    let stream = unique("rotor_stream");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (s, mut c, stop) = server_with(
        json!([{"enabled": true, "name": "data_mode", "type": "redis_stream", "redis_stream": {
            "address": redis_url(), "streams": [stream], "consumer_group": "rotor",
            "publication_data_mode": {"enabled": true}}}]),
        "feed:a",
    )
    .await;
    // The group is created at the stream's end: wait for it before adding.
    for _ in 0..50 {
        let groups: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await;
        if matches!(groups, Ok(redis::Value::Array(ref g)) if !g.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let data = json!({"n": 7}).to_string();
    let _: String = conn
        .xadd(
            &stream,
            "*",
            &[
                ("payload", data.as_str()),
                ("centrifugo-channels", "feed:a,feed:b"),
                ("centrifugo-idempotency-key", "k1"),
                ("centrifugo-tag-kind", "order"),
            ],
        )
        .await
        .unwrap();
    // The same key again: published once.
    let _: String = conn
        .xadd(
            &stream,
            "*",
            &[
                ("payload", data.as_str()),
                ("centrifugo-channels", "feed:a,feed:b"),
                ("centrifugo-idempotency-key", "k1"),
            ],
        )
        .await
        .unwrap();
    let push = tokio::time::timeout(Duration::from_secs(10), c.push())
        .await
        .unwrap();
    assert_eq!(push["pub"]["data"], json!({"n": 7}));
    assert_eq!(push["pub"]["tags"], json!({"kind": "order"}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for channel in ["feed:a", "feed:b"] {
        let h = common::api(&s, "history", json!({"channel": channel, "limit": 10})).await;
        assert_eq!(
            h["result"]["publications"].as_array().unwrap().len(),
            1,
            "{h}"
        );
    }
    stop.cancel();
    let _: () = conn.del(&stream).await.unwrap();
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

#[tokio::test]
async fn a_jetstream_stream_is_consumed_in_both_shapes_and_in_publication_data_mode() {
    use async_nats::jetstream::stream::{Config, StorageType};
    let id = uuid::Uuid::new_v4().simple().to_string();
    let stream_name = format!("ROTOR_{id}");
    let client = async_nats::connect(nats_url()).await.expect("nats-server");
    let js = async_nats::jetstream::new(client);
    js.create_stream(Config {
        name: stream_name.clone(),
        subjects: vec![format!("rotor.{id}.>")],
        storage: StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let channel = "feed:nats";
    let publish = |subject: &str, headers: &[(&str, &str)], payload: String| {
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        let subject = format!("rotor.{id}.{subject}");
        let js = js.clone();
        async move {
            js.publish_with_headers(subject, map, payload.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let cmd = |n: u64| json!({"channel": channel, "data": {"n": n}}).to_string();
    // Published before the consumers attach: `deliver_policy: all` takes them.
    publish("cmd", &[("centrifugo-method", "publish")], cmd(1)).await;
    publish(
        "cmd",
        &[],
        json!({"method": "publish", "payload": {"channel": channel, "data": {"n": 2}}}).to_string(),
    )
    .await;
    publish("cmd", &[], "not json".into()).await;
    publish("cmd", &[("centrifugo-method", "publish")], cmd(3)).await;
    publish(
        "data",
        &[
            ("centrifugo-channels", "feed:nats,feed:other"),
            ("centrifugo-tag-kind", "raw"),
        ],
        json!({"n": 4}).to_string(),
    )
    .await;
    let (s, mut c, stop) = server_with(
        json!([
            {"enabled": true, "name": "commands", "type": "nats_jetstream", "nats_jetstream": {
                "url": nats_url(), "stream_name": stream_name, "subjects": [format!("rotor.{id}.cmd")],
                "durable_consumer_name": format!("cmd_{id}"), "deliver_policy": "all"}},
            {"enabled": true, "name": "data", "type": "nats_jetstream", "nats_jetstream": {
                "url": nats_url(), "stream_name": stream_name, "subjects": [format!("rotor.{id}.data")],
                "durable_consumer_name": format!("data_{id}"), "deliver_policy": "all",
                "publication_data_mode": {"enabled": true}}}
        ]),
        channel,
    )
    .await;
    let mut got = next_ns(&mut c, 4).await;
    got.sort();
    assert_eq!(got, vec![1, 2, 3, 4]);
    let h = common::api(&s, "history", json!({"channel": "feed:other", "limit": 10})).await;
    let other = h["result"]["publications"].as_array().unwrap();
    assert_eq!(other.len(), 1, "{h}");
    assert_eq!(other[0]["tags"], json!({"kind": "raw"}));
    // Everything was acknowledged: nothing waits for redelivery.
    let mut pending = u64::MAX;
    for _ in 0..30 {
        let mut stream = js.get_stream(&stream_name).await.unwrap();
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&format!("cmd_{id}")).await.unwrap();
        let _ = &mut stream;
        let info = consumer.info().await.unwrap();
        pending = info.num_ack_pending as u64 + info.num_pending;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0);
    stop.cancel();
    let _ = js.delete_stream(&stream_name).await;
}

#[tokio::test]
async fn consumer_configs_are_checked_at_load() {
    use rotor_tenant_config::TenantConfig;
    let refused = |consumers: Value| {
        TenantConfig::from_value(json!({"consumers": consumers}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let pg = |extra: Value| {
        let mut c = json!({"enabled": true, "name": "ob", "type": "postgresql",
            "postgresql": {"dsn": "postgresql://u@h/db", "outbox_table_name": "outbox"}});
        common::merge(&mut c, extra);
        c
    };
    assert!(refused(json!([pg(json!({}))])).is_empty());
    let e = refused(json!([{"name": "k1", "type": "kafka", "kafka": {"brokers": ["x"]}}]));
    assert!(
        e.contains("consumers.kafka") && e.contains("not supported"),
        "{e}"
    );
    let e = refused(json!([{"name": "k1", "type": "kafka"}]));
    assert!(e.contains("consumers[0].type"), "{e}");
    let e = refused(json!([{"name": "n1", "type": "nats_jetstream",
        "nats_jetstream": {"stream_name": "S"}}]));
    assert!(e.contains("durable_consumer_name"), "{e}");
    let e = refused(json!([pg(
        json!({"postgresql": {"outbox_table_name": "x; DROP TABLE y"}})
    )]));
    assert!(e.contains("outbox_table_name"), "{e}");
    let e = refused(json!([pg(json!({})), pg(json!({}))]));
    assert!(e.contains("consumers[1].name"), "{e}");
    let e = refused(json!([pg(
        json!({"postgresql": {"tls": {"enabled": true}}})
    )]));
    assert!(e.contains("consumers.postgresql.tls"), "{e}");
    let e =
        refused(json!([{"name": "rs", "type": "redis_stream", "redis_stream": {"streams": []}}]));
    assert!(e.contains("redis_stream.streams"), "{e}");
    let e = refused(json!([pg(json!({"name": "a"}))]));
    assert!(e.contains("consumers[0].name"), "{e}");
}
