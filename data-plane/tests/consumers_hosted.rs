//! The attack on asynchronous consumers: a hosted tenant (`ROTOR_EGRESS=public`) points its
//! consumers at the box's own PostgreSQL, Redis and NATS — by literal address and by names
//! that resolve there — to read the operator's or other tenants' queues or inject into them.
//! Every port is allowed to consumers here, so the address rule alone must refuse: each
//! refusal is logged, no connection is made (no consumer group or durable consumer appears, the
//! outbox row stays) and nothing is published. The same config, standalone, consumes all three.

mod common;

use std::time::Duration;

use common::{redis_url, Binary};
use redis::AsyncCommands;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// `url` with its host replaced by `host` (a name or address of the same box).
fn with_host(url: &str, host: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_host(Some(host)).unwrap();
    u.to_string()
}

/// The history of `channel` as the process's HTTP API reports it.
async fn history(process: &Binary, channel: &str) -> Vec<Value> {
    let resp: Value = reqwest::Client::new()
        .post(format!("http://{}/api/history", process.addr))
        .header("x-api-key", "api-key")
        .json(&json!({"channel": channel, "limit": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["result"]["publications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_hosted_tenants_consumers_never_reach_the_boxs_own_queues() {
    use async_nats::jetstream::stream::{Config, StorageType};
    let id = uuid::Uuid::new_v4().simple().to_string();
    let channel = format!("feed:{id}");
    // PostgreSQL: an outbox with one command.
    let table = format!("outbox_{id}");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await
        .expect("postgres");
    sqlx::query(&format!(
        "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, method TEXT NOT NULL, \
         payload JSONB NOT NULL, partition INTEGER NOT NULL DEFAULT 0, \
         created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let command = |n: u64| json!({"channel": channel, "data": {"n": n}}).to_string();
    sqlx::query(&format!(
        "INSERT INTO {table} (method, payload) VALUES ('publish', $1::jsonb)"
    ))
    .bind(command(1))
    .execute(&pool)
    .await
    .unwrap();
    // Redis: a stream (its consumer group, made at the end by the consumer, takes what comes
    // after it: the command is added once the group exists).
    let stream = format!("rotor:stream:{id}");
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: String = conn
        .xadd(&stream, "*", &[("note", "not a command")])
        .await
        .unwrap();
    // NATS: a JetStream stream with one command.
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("nats"));
    let stream_name = format!("ROTOR_{id}");
    js.create_stream(Config {
        name: stream_name.clone(),
        subjects: vec![format!("rotor.{id}.>")],
        storage: StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("centrifugo-method", "publish");
    js.publish_with_headers(format!("rotor.{id}.cmd"), headers, command(3).into())
        .await
        .unwrap()
        .await
        .unwrap();

    let config = |pg_host: &str, redis_host: &str, nats_host: &str| {
        json!({
            "http_api": {"key": "api-key"},
            "channel": {"namespaces": [{"name": "feed", "history_size": 10, "history_ttl": "60s"}]},
            "consumers": [
                {"enabled": true, "name": "outbox", "type": "postgresql", "postgresql": {
                    "dsn": with_host(&database_url(), pg_host), "outbox_table_name": table,
                    "partition_poll_interval": "100ms"}},
                {"enabled": true, "name": "stream", "type": "redis_stream", "redis_stream": {
                    "address": with_host(&redis_url(), redis_host), "streams": [stream],
                    "consumer_group": format!("g_{id}")}},
                {"enabled": true, "name": "jetstream", "type": "nats_jetstream", "nats_jetstream": {
                    "url": with_host(&nats_url(), nats_host), "stream_name": stream_name,
                    "durable_consumer_name": format!("d_{id}"), "deliver_policy": "all"}}
            ]
        })
    };
    let hosted = [
        ("ROTOR_EGRESS", "public"),
        ("ROTOR_CONSUMER_EGRESS_PORTS", "any"),
    ];
    for (pg, rd, nats) in [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("localhost", "localhost", "localhost"),
        ("[::1]", "[::ffff:127.0.0.1]", "[::1]"),
    ] {
        let process = Binary::listening(&config(pg, rd, nats), &hosted).await;
        // Each kind's refusal, logged with the reason.
        let refused = |text: &str, kind: &str| {
            text.lines().any(|l| {
                l.contains("refused by the hosted egress rule")
                    && l.contains(kind)
                    && l.contains("not public")
            })
        };
        process
            .stderr_until(|t| {
                refused(t, "postgresql")
                    && refused(t, "redis_stream")
                    && refused(t, "nats_jetstream")
            })
            .await;
        assert!(
            history(&process, &channel).await.is_empty(),
            "{pg}: published"
        );
        let stderr = process.stop().await;
        assert!(
            !stderr.contains("NATS JetStream consumer attached"),
            "{nats}: {stderr}"
        );
        // Nothing was taken: the row is there, no group was made, no durable consumer exists.
        let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 1, "{pg}: the outbox row was consumed");
        let groups: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            groups,
            redis::Value::Array(vec![]),
            "{rd}: a group was made"
        );
        let mut s = js.get_stream(&stream_name).await.unwrap();
        assert_eq!(
            s.info().await.unwrap().state.consumer_count,
            0,
            "{nats}: a durable consumer was made"
        );
    }

    // Standalone, the same queues are consumed.
    let process = Binary::listening(&config("127.0.0.1", "127.0.0.1", "127.0.0.1"), &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let groups: Vec<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !groups.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no consumer group");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: String = conn
        .xadd(
            &stream,
            "*",
            &[("method", "publish"), ("payload", &command(2))],
        )
        .await
        .unwrap();
    loop {
        let mut ns: Vec<u64> = history(&process, &channel)
            .await
            .iter()
            .filter_map(|p| p["data"]["n"].as_u64())
            .collect();
        ns.sort();
        if ns == [1, 2, 3] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "standalone consumers published {ns:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    process.stop().await;
    let _ = sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await;
    let _: () = conn.del(&stream).await.unwrap();
    let _ = js.delete_stream(&stream_name).await;
}
