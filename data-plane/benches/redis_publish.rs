//! Publish throughput through the Redis engine (history on: one Lua call per publish) next to
//! `redis-benchmark` on the same Redis in the same run. `cargo bench -p rotor-data-plane
//! --bench redis_publish`; REDIS_URL picks the server (default local). Results go to stdout
//! and into BENCHMARKS.md by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rotor_data_plane::engine::redis::RedisEngine;
use rotor_data_plane::engine::{Broker, BrokerEvents, PublishOptions};
use rotor_data_plane::protocol::{ClientInfo, Publication};
use rotor_data_plane::publication::PubMsg;

struct Discard;
impl BrokerEvents for Discard {
    fn publication(&self, _: &str, _: Arc<PubMsg>) {}
    fn join(&self, _: &str, _: ClientInfo) {}
    fn leave(&self, _: &str, _: ClientInfo) {}
}

const PUBLISHES: usize = 50_000;
const CONCURRENCY: usize = 50;

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("rotor-bench:{}:", std::process::id());
    let stop = tokio_util::sync::CancellationToken::new();
    let engine = Arc::new(
        RedisEngine::connect_standalone(
            std::slice::from_ref(&url),
            &rotor_tenant_config::RedisTls::default(),
            &prefix,
            Duration::from_secs(60),
            Arc::new(Discard),
            stop.clone(),
        )
        .await
        .expect("redis"),
    );
    let opts = Arc::new(PublishOptions {
        history_size: 100,
        history_ttl: Duration::from_secs(60),
        history_meta_ttl: Duration::from_secs(600),
        ..Default::default()
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (engine, opts) = (engine.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PUBLISHES / CONCURRENCY {
                let p = Publication {
                    data: bytes::Bytes::from(format!("{{\"i\":{i}}}")),
                    ..Default::default()
                };
                engine
                    .publish(&format!("bench:{}", w % 10), p, &opts)
                    .await
                    .expect("publish");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let secs = started.elapsed().as_secs_f64();
    let ours = PUBLISHES as f64 / secs;
    println!(
        "rotor redis engine: {PUBLISHES} history publishes, {CONCURRENCY} concurrent: {ours:.0}/s"
    );
    let host_port = url.trim_start_matches("redis://").trim_end_matches('/');
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "6379"));
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-q",
            "-n",
            &PUBLISHES.to_string(),
            "-c",
            &CONCURRENCY.to_string(),
            "PUBLISH",
            "bench",
            "{\"i\":1}",
        ])
        .output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            // redis-benchmark redraws its progress line with '\r'; the summary is the last piece.
            let line = text
                .split(['\r', '\n'])
                .rfind(|l| l.contains("requests per second"))
                .unwrap_or("")
                .trim()
                .to_owned();
            let theirs: f64 = line
                .split_whitespace()
                .find_map(|w| w.parse::<f64>().ok())
                .unwrap_or(0.0);
            println!("redis-benchmark PUBLISH: {line}");
            if theirs > 0.0 {
                println!("ratio rotor/redis-benchmark: {:.2}", ours / theirs);
            }
        }
        Err(e) => println!("redis-benchmark not available: {e}"),
    }
    stop.cancel();
    if let Ok(client) = redis::Client::open(url) {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
    }
}
