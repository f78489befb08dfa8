//! The internal admin surface: config pushes apply live to existing connections, stale and
//! invalid pushes are refused, and nothing works without the admin token. It lives on its own
//! listener only: the public port has no `/admin/...`, and its `/metrics` needs an API key.

mod common;

use common::{Client, TestServer, ADMIN_TOKEN, SECRET, WAIT};
use serde_json::json;

async fn push(s: &TestServer, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .put(format!("http://{}/admin/config", s.admin_addr))
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
            .find("1", first["client"].as_str().unwrap(), "")
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
    let resp = reqwest::get(format!("http://{}/admin/status", s.admin_addr))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/admin/status", s.admin_addr))
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
    // Five publications, each to two subscribers; wait until b has seen all five. `chat`
    // pushes join/leave (see the test server's config): a's join reached a, b's reached both,
    // and those three deliveries count in the namespace as in the project's total.
    let mut seen = 0;
    while seen < 5 {
        if b.push().await.get("pub").is_some() {
            seen += 1;
        }
    }
    let usage: serde_json::Value = http
        .get(format!("http://{}/admin/usage", s.admin_addr))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        usage["namespaces"]["chat"],
        json!({"published_client": 3, "published_api": 2, "delivered": 13, "subscriptions": 2, "connections": 2, "users": 2})
    );
    assert_eq!(usage["messages_delivered"], 13);
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
    let url = format!("http://{}/admin/api/publish", s.admin_addr);
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
        .post(format!("http://{}/admin/api/publish", s.admin_addr))
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
        .post(format!("http://{}/admin/api/batch", s.admin_addr))
        .bearer_auth(ADMIN_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    let unknown: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(unknown["error"]["code"], 104, "{unknown}");
}

#[tokio::test]
async fn admin_routes_are_404_on_the_public_port_even_with_the_admin_token() {
    let s = TestServer::start(json!({})).await;
    let http = reqwest::Client::new();
    let public = |path: &str| format!("http://{}{path}", s.addr);
    for (method, path) in [
        (reqwest::Method::GET, "/admin/status"),
        (reqwest::Method::GET, "/admin/usage"),
        (reqwest::Method::PUT, "/admin/config"),
        (reqwest::Method::POST, "/admin/api/publish"),
    ] {
        let r = http
            .request(method.clone(), public(path))
            .bearer_auth(ADMIN_TOKEN)
            .body(config(50, json!([])).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{method} {path}");
    }
    assert_eq!(
        s.node.config.load().tenant.rotor.config_version,
        0,
        "no config was pushed through the public port"
    );
}

#[tokio::test]
async fn public_metrics_answer_only_an_api_key() {
    let s = TestServer::start(json!({})).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/metrics", s.addr);
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(http.get(&url).send().await.unwrap()), 401);
    assert_eq!(
        status(
            http.get(&url)
                .header("x-api-key", "wrong")
                .send()
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        status(
            http.get(&url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
        ),
        401,
        "the admin token is not an API key"
    );
    let ok = http
        .get(&url)
        .header("x-api-key", "api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.text().await.unwrap().contains("rotor_channels"));
    assert_eq!(
        status(
            http.get(&url)
                .header("authorization", "apikey api-key")
                .send()
                .await
                .unwrap()
        ),
        200
    );
}

#[tokio::test]
async fn insecure_opens_public_metrics_only_to_a_standalone_process() {
    let insecure = json!({"http_api": {"key": "", "insecure": true}});
    let standalone = TestServer::start_standalone(insecure.clone()).await;
    let r = reqwest::get(format!("http://{}/metrics", standalone.addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let hosted = TestServer::start(insecure).await;
    let r = reqwest::get(format!("http://{}/metrics", hosted.addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "insecure is ignored when hosted");

    let locked = TestServer::start_standalone(json!({"http_api": {"key": ""}})).await;
    let r = reqwest::get(format!("http://{}/metrics", locked.addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "no key and not insecure");
}

#[tokio::test]
async fn the_admin_listener_serves_metrics_and_health_with_the_token_only() {
    let s = TestServer::start(json!({})).await;
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("http://{}{path}", s.admin_addr);
    let metrics = http.get(admin("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 401);
    let metrics = http
        .get(admin("/metrics"))
        .header("x-api-key", "api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(
        metrics.status().as_u16(),
        401,
        "an API key is not the token"
    );
    let metrics = http
        .get(admin("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(metrics.text().await.unwrap().contains("rotor_channels"));
    let health = http.get(admin("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // The admin listener serves nothing public.
    let api = http
        .post(admin("/api/info"))
        .header("x-api-key", "api-key")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 404);
}

#[tokio::test]
async fn the_admin_listener_stops_with_the_public_one() {
    let s = TestServer::start(json!({})).await;
    let admin_addr = s.admin_addr;
    assert!(tokio::net::TcpStream::connect(admin_addr).await.is_ok());
    s.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(admin_addr).await.is_err(),
        "the admin listener is closed once shutdown returns"
    );
}

/// Reads the binary's stdout until a line starting with `prefix`; returns it and the lines
/// before it.
async fn line_starting(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> (String, Vec<String>) {
    let mut before = Vec::new();
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the binary printed nothing in time")
            .unwrap()
            .unwrap_or_else(|| panic!("stdout closed before {prefix:?}; saw {before:?}"));
        if line.starts_with(prefix) {
            return (line, before);
        }
        before.push(line);
    }
}

#[tokio::test]
async fn the_binary_announces_its_admin_listener_before_the_public_one() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotor-data-plane"))
        .args(["--address", "127.0.0.1", "--port", "0"])
        .args(["--admin-address", "127.0.0.1:0"])
        // The flag wins over the environment (this address cannot be bound).
        .env("ROTOR_ADMIN_ADDRESS", "256.0.0.1:0")
        .env("ROTOR_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (public, before) = line_starting(&mut lines, "rotor-data-plane listening on ").await;
    let admin = before
        .iter()
        .find_map(|l| l.strip_prefix("rotor-data-plane admin listening on "))
        .unwrap_or_else(|| panic!("no admin line before {public:?}: {before:?}"));
    let public = public.trim_start_matches("rotor-data-plane listening on ");
    assert!(admin.starts_with("127.0.0.1:"), "{admin}");
    assert_ne!(admin, public);
    let http = reqwest::Client::new();
    let status = http
        .get(format!("http://{admin}/admin/status"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status().as_u16(), 200);
    let hidden = http
        .get(format!("http://{public}/admin/status"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status().as_u16(), 404);
    child.kill().await.unwrap();

    // Without a token there is no admin listener at all.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotor-data-plane"))
        .args(["--address", "127.0.0.1", "--port", "0"])
        .env_remove("ROTOR_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (_, before) = line_starting(&mut lines, "rotor-data-plane listening on ").await;
    assert!(before.iter().all(|l| !l.contains("admin")), "{before:?}");
    child.kill().await.unwrap();
}
