//! The server API's `user_status` on the memory engine, with real WebSocket clients: a user is
//! online from its connect reply on, counts each of its connections, and when the last one
//! ends reads offline with the time it was last seen, until that record expires. The
//! anonymous user is never reported; bad requests answer 107, a tenant without
//! `user_status.enabled` answers 108, the method works inside `batch`, and a publish-only key
//! may not call it.

mod common;

use std::time::{Duration, Instant};

use common::{api, Client, TestServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn enabled(extra: Value) -> Value {
    let mut config = json!({"user_status": {"enabled": true}});
    common::merge(&mut config, extra);
    config
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn statuses(s: &TestServer, users: &[&str]) -> Vec<Value> {
    let reply = api(s, "user_status", json!({ "users": users })).await;
    reply["result"]["statuses"]
        .as_array()
        .unwrap_or_else(|| panic!("no statuses: {reply}"))
        .clone()
}

/// Polls `user`'s status until `done` holds (a closed socket is cleaned up by the server
/// shortly after; there is no event to await), for at most five seconds.
async fn eventually(s: &TestServer, user: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = statuses(s, &[user]).await.remove(0);
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "status never settled: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_user_is_online_per_connection_and_offline_with_a_last_seen_time_after_its_last() {
    let s = TestServer::start(enabled(json!({}))).await;
    assert_eq!(
        statuses(&s, &["alice", "bob"]).await,
        vec![
            json!({"user": "alice", "online": false, "connections": 0, "last_seen": 0}),
            json!({"user": "bob", "online": false, "connections": 0, "last_seen": 0}),
        ]
    );
    let (first, _) = Client::connected(&s.ws_url(), "alice").await;
    let (second, _) = Client::connected(&s.ws_url(), "alice").await;
    let (_carol, _) = Client::connected(&s.ws_url(), "carol").await;
    // Answers keep the order of the request, duplicates included.
    assert_eq!(
        statuses(&s, &["carol", "alice", "bob", "alice"]).await,
        vec![
            json!({"user": "carol", "online": true, "connections": 1, "last_seen": 0}),
            json!({"user": "alice", "online": true, "connections": 2, "last_seen": 0}),
            json!({"user": "bob", "online": false, "connections": 0, "last_seen": 0}),
            json!({"user": "alice", "online": true, "connections": 2, "last_seen": 0}),
        ]
    );
    drop(first);
    let one_left = eventually(&s, "alice", |v| v["connections"] == 1).await;
    assert_eq!(
        one_left,
        json!({"user": "alice", "online": true, "connections": 1, "last_seen": 0})
    );
    let before = now_ms();
    drop(second);
    let gone = eventually(&s, "alice", |v| v["online"] == false).await;
    let after = now_ms();
    assert_eq!(gone["connections"], 0);
    let seen = gone["last_seen"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&seen),
        "last seen {seen} not in {before}..={after}"
    );
    // Back online: last_seen reads 0 again while connected.
    let (_again, _) = Client::connected(&s.ws_url(), "alice").await;
    assert_eq!(
        statuses(&s, &["alice"]).await[0],
        json!({"user": "alice", "online": true, "connections": 1, "last_seen": 0})
    );
}

#[tokio::test]
async fn a_last_seen_record_expires_after_its_ttl() {
    let s = TestServer::start(enabled(json!({"user_status": {"last_seen_ttl": "1s"}}))).await;
    let (c, _) = Client::connected(&s.ws_url(), "dave").await;
    drop(c);
    let offline = eventually(&s, "dave", |v| v["online"] == false).await;
    assert!(offline["last_seen"].as_u64().unwrap() > 0, "{offline}");
    // Bounded polling for the expiry itself.
    let expired = eventually(&s, "dave", |v| v["last_seen"] == 0).await;
    assert_eq!(
        expired,
        json!({"user": "dave", "online": false, "connections": 0, "last_seen": 0})
    );
}

#[tokio::test]
async fn the_anonymous_user_is_never_reported_and_bad_requests_answer_107() {
    let s = TestServer::start(enabled(
        json!({"client": {"allow_anonymous_connect_without_token": true}}),
    ))
    .await;
    let mut anonymous = Client::open(&s.ws_url()).await;
    let r = anonymous.call(json!({"connect": {}})).await;
    assert!(r["connect"].is_object(), "{r}");
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let most: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    for (body, needle) in [
        (json!({"users": [""]}), "users[0] is empty"),
        (json!({"users": ["alice", ""]}), "users[1] is empty"),
        (json!({"users": []}), "got 0"),
        (json!({}), "got 0"),
        (json!({ "users": too_many }), "got 1001"),
    ] {
        let reply = api(&s, "user_status", body.clone()).await;
        assert_eq!(reply["error"]["code"], 107, "{body}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // A thousand is allowed, all offline: the anonymous connection counts for nobody.
    let reply = api(&s, "user_status", json!({ "users": most })).await;
    let all = reply["result"]["statuses"].as_array().unwrap();
    assert_eq!(all.len(), 1000);
    assert!(all
        .iter()
        .all(|v| v["online"] == false && v["connections"] == 0));
    // A body that is not the request's shape is refused before any method runs.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/user_status", s.addr))
        .header("x-api-key", "api-key")
        .body(r#"{"users": "alice"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_tenant_without_user_status_answers_108_and_tracks_nothing() {
    let s = TestServer::start(json!({})).await;
    let (_c, _) = Client::connected(&s.ws_url(), "alice").await;
    let reply = api(&s, "user_status", json!({"users": ["alice"]})).await;
    assert_eq!(reply["error"]["code"], 108, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user_status.enabled"),
        "{reply}"
    );
    // In transport error mode: 400, as for every 108.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/user_status", s.addr))
        .header("x-api-key", "api-key")
        .header("x-centrifugo-error-mode", "transport")
        .body(r#"{"users": ["alice"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn user_status_runs_inside_a_batch_beside_other_commands() {
    let s = TestServer::start(enabled(json!({}))).await;
    let (_c, _) = Client::connected(&s.ws_url(), "erin").await;
    for parallel in [false, true] {
        let reply = api(
            &s,
            "batch",
            json!({"parallel": parallel, "commands": [
                {"user_status": {"users": ["erin", "frank"]}},
                {"publish": {"channel": "news", "data": {}}},
                {"user_status": {"users": []}},
            ]}),
        )
        .await;
        let replies = reply["replies"].as_array().unwrap();
        assert_eq!(
            replies[0],
            json!({"user_status": {"statuses": [
                {"user": "erin", "online": true, "connections": 1, "last_seen": 0},
                {"user": "frank", "online": false, "connections": 0, "last_seen": 0},
            ]}})
        );
        assert!(replies[1]["publish"].is_object(), "{reply}");
        assert_eq!(replies[2]["error"]["code"], 107, "{reply}");
    }
}

#[tokio::test]
async fn a_publish_only_key_may_not_ask_for_user_status() {
    let digest = |k: &str| hex::encode(Sha256::digest(k.as_bytes()));
    let s = TestServer::start(enabled(json!({"http_api": {"key": "", "keys": [
        {"id": "key_pub", "sha256": digest("rk_pub"), "scope": "publish"},
        {"id": "key_all", "sha256": digest("rk_all"), "scope": "all"},
    ]}})))
    .await;
    let call = |key: &'static str, method: &'static str, body: Value| {
        let url = format!("http://{}/api/{method}", s.addr);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-api-key", key)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let body = json!({"users": ["alice"]});
    let refused = call("rk_pub", "user_status", body.clone()).await;
    assert_eq!(refused["error"]["code"], 103, "{refused}");
    let in_batch = call(
        "rk_pub",
        "batch",
        json!({"commands": [{"user_status": body.clone()}]}),
    )
    .await;
    assert_eq!(in_batch["replies"][0]["error"]["code"], 103, "{in_batch}");
    let allowed = call("rk_all", "user_status", body).await;
    assert_eq!(
        allowed["result"]["statuses"][0]["user"], "alice",
        "{allowed}"
    );
}
