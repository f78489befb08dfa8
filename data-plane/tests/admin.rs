//! The internal admin surface: config pushes apply live to existing connections, stale and
//! invalid pushes are refused, and nothing works without the admin token.

mod common;

use common::{Client, TestServer, ADMIN_TOKEN, SECRET};
use serde_json::json;

async fn push(s: &TestServer, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .put(format!("http://{}/admin/config", s.addr))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

fn config(version: u64, namespaces: serde_json::Value) -> serde_json::Value {
    json!({
        "rotor": {"tenant_id": "prj_test", "config_version": version},
        "client": {"token": {"hmac_secret_key": SECRET}},
        "channel": {"namespaces": namespaces}
    })
}

#[tokio::test]
async fn a_pushed_namespace_works_on_an_existing_connection_without_reconnect() {
    let s = TestServer::start(json!({})).await;
    let (mut c, first) = Client::connected(&s.ws_url(), "1").await;
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "live:x"}})).await["error"]["code"],
        102
    );
    let (status, body) = push(&s, ADMIN_TOKEN, config(2, json!([{"name": "live", "allow_subscribe_for_client": true, "history_size": 5, "history_ttl": "60s"}]))).await;
    assert_eq!((status, body), (200, json!({"version": 2})));
    let r = c.call(json!({"subscribe": {"channel": "live:x"}})).await;
    assert!(r["subscribe"].is_object(), "{r}");
    // Same connection: the client id did not change and nothing was closed.
    let h = c
        .call(json!({"presence_stats": {"channel": "live:x"}}))
        .await;
    assert_eq!(h["error"]["code"], 108);
    assert_eq!(
        s.node
            .registry
            .find("", first["client"].as_str().unwrap())
            .len(),
        1
    );
}

#[tokio::test]
async fn stale_and_invalid_pushes_are_refused_and_the_running_config_stays() {
    let s = TestServer::start(json!({})).await;
    assert_eq!(push(&s, ADMIN_TOKEN, config(5, json!([]))).await.0, 200);
    let (status, body) = push(&s, ADMIN_TOKEN, config(4, json!([{"name": "old"}]))).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "stale_version");
    let (status, body) = push(&s, ADMIN_TOKEN, config(6, json!([{"name": "x"}]))).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("channel.namespaces[0].name"),
        "{body}"
    );
    assert_eq!(s.node.config.load().tenant.rotor.config_version, 5);
}

#[tokio::test]
async fn admin_calls_need_the_admin_token() {
    let s = TestServer::start(json!({})).await;
    assert_eq!(push(&s, "wrong", config(9, json!([]))).await.0, 401);
    let resp = reqwest::get(format!("http://{}/admin/status", s.addr))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/admin/status", s.addr))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["num_clients"], 0);
}

#[tokio::test]
async fn usage_counts_exactly_what_was_sent_per_namespace() {
    let s = TestServer::start(json!({})).await;
    let (mut a, _) = Client::connected(&s.ws_url(), "a").await;
    let (mut b, _) = Client::connected(&s.ws_url(), "b").await;
    for c in [&mut a, &mut b] {
        c.call(json!({"subscribe": {"channel": "chat:u"}})).await;
    }
    for n in 0..3 {
        a.call(json!({"publish": {"channel": "chat:u", "data": {"n": n}}}))
            .await;
    }
    let http = reqwest::Client::new();
    for n in 0..2 {
        let r = http
            .post(format!("http://{}/api/publish", s.addr))
            .header("x-api-key", "api-key")
            .body(json!({"channel": "chat:u", "data": {"api": n}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    // Five publications, each to two subscribers; wait until b has seen all five.
    let mut seen = 0;
    while seen < 5 {
        if b.push().await.get("pub").is_some() {
            seen += 1;
        }
    }
    let usage: serde_json::Value = http
        .get(format!("http://{}/admin/usage", s.addr))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        usage["namespaces"]["chat"],
        json!({"published_client": 3, "published_api": 2, "delivered": 10, "subscriptions": 2, "connections": 2, "users": 2})
    );
    assert_eq!(usage["connections"], 2);
    assert_eq!(usage["api_calls"]["publish"], 2);
    assert_eq!(usage["messages_published"], 5);
}

#[tokio::test]
async fn unknown_paths_are_404_even_with_the_admin_surface_enabled() {
    let s = TestServer::start(json!({})).await;
    let resp = reqwest::get(format!("http://{}/no/such/path", s.addr))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn admin_api_calls_run_server_methods_with_the_admin_token_only() {
    let s = TestServer::start(json!({})).await;
    let (mut sub, _) = Client::connected(&s.ws_url(), "watcher").await;
    sub.call(json!({"subscribe": {"channel": "console"}})).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/admin/api/publish", s.addr);
    let body = json!({"channel": "console", "data": {"hello": "from the dashboard"}}).to_string();
    let refused = http
        .post(&url)
        .header("x-api-key", "api-key")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status().as_u16(),
        401,
        "an API key is not the admin token"
    );
    let reply: serde_json::Value = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(reply["result"].is_object(), "{reply}");
    let push = sub.push().await;
    assert_eq!(push["pub"]["data"]["hello"], "from the dashboard", "{push}");

    let bad: serde_json::Value = http
        .post(format!("http://{}/admin/api/publish", s.addr))
        .bearer_auth(ADMIN_TOKEN)
        .body(json!({"data": {}}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad["error"]["code"], 107, "{bad}");
    let unknown = http
        .post(format!("http://{}/admin/api/batch", s.addr))
        .bearer_auth(ADMIN_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    let unknown: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(unknown["error"]["code"], 104, "{unknown}");
}
