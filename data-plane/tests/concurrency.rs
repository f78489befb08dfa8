//! `client.concurrency`: the commands of one connection running side by side. A backend that
//! the test answers by hand (each proxy request waits until the test replies to it) shows
//! which commands are in flight at once, that replies follow completion, that deliveries go
//! on while commands run, that the connection stops reading at the limit, and how `subscribe`
//! reserves its channel while it is being authorised.

mod common;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::routing::post;
use axum::{Json, Router};
use common::{api, Client, TestServer, WAIT};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// One proxy request held until the test answers it.
struct Held {
    /// `rpc:<method>` or `subscribe:<channel>`.
    key: String,
    answer: oneshot::Sender<Value>,
}

impl Held {
    fn ok(self, result: Value) {
        let _ = self.answer.send(json!({ "result": result }));
    }
}

/// The tenant's backend: every request waits for the test's answer.
struct Backend {
    addr: std::net::SocketAddr,
    held: mpsc::UnboundedReceiver<Held>,
}

impl Backend {
    async fn start() -> Self {
        let (tx, held) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/{proxy}",
            post(move |Path(proxy): Path<String>, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let body: Value = serde_json::from_slice(&body).expect("proxy sent JSON");
                    let what = match proxy.as_str() {
                        "rpc" => body["method"].as_str().unwrap_or_default().to_owned(),
                        _ => body["channel"].as_str().unwrap_or_default().to_owned(),
                    };
                    let (answer, reply) = oneshot::channel();
                    let _ = tx.send(Held {
                        key: format!("{proxy}:{what}"),
                        answer,
                    });
                    Json(reply.await.unwrap_or(Value::Null))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, held }
    }

    /// The next request to reach the backend.
    async fn next(&mut self) -> Held {
        timeout(WAIT, self.held.recv())
            .await
            .expect("timed out waiting for a proxy request")
            .expect("backend stopped")
    }

    /// Asserts no request reaches the backend for a while (the connection is not reading,
    /// or commands run one at a time).
    async fn quiet(&mut self) {
        if let Ok(Some(h)) = timeout(Duration::from_millis(300), self.held.recv()).await {
            panic!("{} reached the backend early", h.key);
        }
    }

    /// A tenant config with `client.concurrency`, an RPC proxy and a `sp` namespace whose
    /// subscriptions the subscribe proxy decides.
    fn config(&self, concurrency: u32) -> Value {
        json!({
            "client": {"concurrency": concurrency, "channel_limit": 3},
            "rpc": {
                "proxy": {"endpoint": format!("http://{}/rpc", self.addr), "timeout": "10s"},
                "without_namespace": {"proxy_enabled": true}
            },
            "channel": {
                "proxy": {"subscribe": {"endpoint": format!("http://{}/subscribe", self.addr), "timeout": "10s"}},
                "namespaces": [
                    {"name": "sp", "subscribe_proxy_enabled": true, "presence": true},
                    {"name": "chat", "presence": true, "allow_subscribe_for_client": true,
                     "allow_presence_for_subscriber": true}
                ]
            }
        })
    }
}

/// The ids of the next `n` replies, in the order they arrive.
async fn reply_order(c: &mut Client, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let v = c.read().await.expect("connection open");
        if let Some(id) = v["id"].as_u64() {
            assert!(v.get("error").is_none(), "reply {id} failed: {v}");
            ids.push(id);
        }
    }
    ids
}

#[tokio::test]
async fn commands_run_side_by_side_and_are_answered_as_they_finish() {
    let mut backend = Backend::start().await;
    let s = TestServer::start(backend.config(4)).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;

    let first = c.send(json!({"rpc": {"method": "slow", "data": {}}})).await;
    let second = c.send(json!({"rpc": {"method": "fast", "data": {}}})).await;
    // Both reach the backend before either is answered.
    let slow = backend.next().await;
    let fast = backend.next().await;
    assert_eq!(
        (slow.key.as_str(), fast.key.as_str()),
        ("rpc:slow", "rpc:fast")
    );
    fast.ok(json!({"data": {"n": 2}}));
    assert_eq!(
        reply_order(&mut c, 1).await,
        vec![u64::from(second)],
        "the command that finished first is answered first, the other still running"
    );
    slow.ok(json!({"data": {"n": 1}}));
    assert_eq!(reply_order(&mut c, 1).await, vec![u64::from(first)]);
}

#[tokio::test]
async fn without_concurrency_commands_run_one_at_a_time_in_order() {
    let mut backend = Backend::start().await;
    let s = TestServer::start(backend.config(0)).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;

    let first = c.send(json!({"rpc": {"method": "slow", "data": {}}})).await;
    let second = c.send(json!({"rpc": {"method": "fast", "data": {}}})).await;
    let slow = backend.next().await;
    assert_eq!(slow.key, "rpc:slow");
    backend.quiet().await;
    slow.ok(json!({"data": {}}));
    let fast = backend.next().await;
    assert_eq!(fast.key, "rpc:fast");
    fast.ok(json!({"data": {}}));
    assert_eq!(
        reply_order(&mut c, 2).await,
        vec![u64::from(first), u64::from(second)]
    );
}

#[tokio::test]
async fn deliveries_and_other_commands_go_on_while_a_command_runs() {
    let mut backend = Backend::start().await;
    let s = TestServer::start(backend.config(2)).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    assert!(c.call(json!({"subscribe": {"channel": "chat:room"}})).await["subscribe"].is_object());

    let rpc = c.send(json!({"rpc": {"method": "slow", "data": {}}})).await;
    let held = backend.next().await;
    // A publication reaches the client while its RPC is still with the backend...
    api(
        &s,
        "publish",
        json!({"channel": "chat:room", "data": {"text": "meanwhile"}}),
    )
    .await;
    let push = c.push().await;
    assert_eq!(push["pub"]["data"], json!({"text": "meanwhile"}));
    // ...and so does the answer to another command.
    let stats = c
        .call(json!({"presence_stats": {"channel": "chat:room"}}))
        .await;
    assert_eq!(stats["presence_stats"]["num_clients"], 1, "{stats}");

    held.ok(json!({"data": {"done": true}}));
    let r = c.reply(rpc).await;
    assert_eq!(r["rpc"]["data"], json!({"done": true}), "{r}");
}

#[tokio::test]
async fn at_the_limit_the_connection_waits_for_a_free_slot() {
    let mut backend = Backend::start().await;
    let s = TestServer::start(backend.config(2)).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;

    let ids = [
        c.send(json!({"rpc": {"method": "a", "data": {}}})).await,
        c.send(json!({"rpc": {"method": "b", "data": {}}})).await,
        c.send(json!({"rpc": {"method": "c", "data": {}}})).await,
    ];
    let a = backend.next().await;
    let b = backend.next().await;
    assert_eq!((a.key.as_str(), b.key.as_str()), ("rpc:a", "rpc:b"));
    // Two slots, both taken: the third waits.
    backend.quiet().await;
    b.ok(json!({"data": {}}));
    let third = backend.next().await;
    assert_eq!(third.key, "rpc:c");
    third.ok(json!({"data": {}}));
    assert_eq!(
        reply_order(&mut c, 2).await,
        vec![u64::from(ids[1]), u64::from(ids[2])]
    );
    a.ok(json!({"data": {}}));
    assert_eq!(reply_order(&mut c, 1).await, vec![u64::from(ids[0])]);
}

#[tokio::test]
async fn a_channel_being_subscribed_is_reserved_and_its_unsubscribe_waits() {
    let mut backend = Backend::start().await;
    let s = TestServer::start(backend.config(4)).await;
    let (mut c, connect) = Client::connected(&s.ws_url(), "u1").await;

    let sub = c.send(json!({"subscribe": {"channel": "sp:a"}})).await;
    let held = backend.next().await;
    assert_eq!(held.key, "subscribe:sp:a");
    // While it is authorised: the same channel again is 105 at once...
    let again = c.call(json!({"subscribe": {"channel": "sp:a"}})).await;
    assert_eq!(again["error"]["code"], 105, "{again}");
    // ...an RPC runs beside it...
    let rpc = c.send(json!({"rpc": {"method": "m", "data": {}}})).await;
    let rpc_held = backend.next().await;
    assert_eq!(rpc_held.key, "rpc:m");
    rpc_held.ok(json!({"data": {}}));
    assert!(c.reply(rpc).await["rpc"].is_object());
    // ...and its unsubscribe waits for it.
    let unsub = c.send(json!({"unsubscribe": {"channel": "sp:a"}})).await;
    held.ok(json!({}));
    assert_eq!(
        reply_order(&mut c, 2).await,
        vec![u64::from(sub), u64::from(unsub)]
    );
    let presence = api(&s, "presence", json!({"channel": "sp:a"})).await;
    let client = connect["client"].as_str().unwrap();
    assert!(
        presence["result"]["presence"].get(client).is_none(),
        "unsubscribed after its subscribe: {presence}"
    );
}

#[tokio::test]
async fn subscribes_being_authorised_count_against_the_channel_limit() {
    let mut backend = Backend::start().await;
    let s = TestServer::start(backend.config(8)).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;

    // channel_limit is 3.
    let mut held = Vec::new();
    for ch in ["sp:1", "sp:2", "sp:3"] {
        c.send(json!({"subscribe": {"channel": ch}})).await;
        held.push(backend.next().await);
    }
    let over = c.call(json!({"subscribe": {"channel": "sp:4"}})).await;
    assert_eq!(over["error"]["code"], 106, "{over}");
    for h in held {
        h.ok(json!({}));
    }
    reply_order(&mut c, 3).await;
}

#[test]
fn a_concurrency_above_the_cap_is_refused_with_its_path() {
    let err = rotor_tenant_config::TenantConfig::from_value(json!({
        "client": {"concurrency": 100_000}
    }))
    .expect_err("refused");
    assert!(err.to_string().contains("client.concurrency"), "{err}");
}
