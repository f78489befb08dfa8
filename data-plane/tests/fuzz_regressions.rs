//! Inputs the fuzz targets (`fuzz/`, `make fuzz`) found, fed through the public entry points
//! that read them, each with the answer it must get.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer};
use serde_json::{json, Value};

async fn channels(s: &TestServer, pattern: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/channels", s.addr))
        .header("x-api-key", "api-key")
        .body(json!({ "pattern": pattern }).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the channels call answers");
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// `api_body` (a timeout): `channels` matched its pattern with a recursive glob, exponential
/// in the number of `*`, so this call held a runtime thread for hours; a megabyte of `*`
/// also recursed once per byte. Both now answer at once, with the right channels.
#[tokio::test]
async fn channel_patterns_with_many_stars_answer_at_once() {
    let s = TestServer::start(json!({})).await;
    let long = format!("chat:{}", "a".repeat(60));
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    c.call(json!({"subscribe": {"channel": long}})).await;

    let started = Instant::now();
    let none = channels(&s, "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b").await;
    assert_eq!(none["result"], json!({"channels": {}}));
    let all = channels(&s, &"*".repeat(1 << 20)).await;
    assert_eq!(all["result"]["channels"][&long], json!({"num_clients": 1}));
    let some = channels(&s, "chat:*a*a*a*a*a*a*a*a*a*a*a*a*a?").await;
    assert_eq!(some["result"]["channels"][&long], json!({"num_clients": 1}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
