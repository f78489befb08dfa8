//! API key scopes over real HTTP: a publish-only key (from `http_api.keys`, as the control
//! plane sends it) may publish and broadcast and nothing else — every other method answers
//! Centrifugo's error 103 (permission denied), in the body or as 403 in transport error mode,
//! one by one inside a batch and on the legacy line protocol — and may not read `/metrics`. A
//! key with every method and the older `key_hashes` list keep working, and a used key with an
//! id is remembered for the usage report.

mod common;

use common::{Client, TestServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PUBLISHER: &str = "rk_publisher";
const ADMIN: &str = "rk_admin";
const LEGACY: &str = "rk_legacy";

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

async fn server() -> TestServer {
    TestServer::start(json!({"http_api": {
        "key": "",
        "key_hashes": [digest(LEGACY)],
        "keys": [
            {"id": "key_pub", "sha256": digest(PUBLISHER), "scope": "publish"},
            {"id": "key_admin", "sha256": digest(ADMIN), "scope": "all"},
        ],
    }}))
    .await
}

async fn call(
    s: &TestServer,
    key: &str,
    path: &str,
    body: &Value,
    transport: bool,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", s.addr))
        .header("x-api-key", key)
        .body(body.to_string());
    if transport {
        req = req.header("x-centrifugo-error-mode", "transport");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_publish_only_key_publishes_and_broadcasts() {
    let s = server().await;
    let (status, reply) = call(
        &s,
        PUBLISHER,
        "/api/publish",
        &json!({"channel": "chat:a", "data": {"n": 1}}),
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reply["result"]["offset"], 1, "{reply}");
    let (status, reply) = call(
        &s,
        PUBLISHER,
        "/api/broadcast",
        &json!({"channels": ["chat:a", "chat:b"], "data": {"n": 2}}),
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        reply["result"]["responses"][0]["result"]["offset"], 2,
        "{reply}"
    );
    // The publications are there for a key that may read them.
    let (_, history) = call(
        &s,
        ADMIN,
        "/api/history",
        &json!({"channel": "chat:a", "limit": 10}),
        false,
    )
    .await;
    assert_eq!(
        history["result"]["publications"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
}

#[tokio::test]
async fn a_publish_only_key_cannot_read_history_or_presence_nor_call_any_other_method() {
    let s = server().await;
    // A live subscriber, so presence and history have something to leak.
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    c.call(json!({"subscribe": {"channel": "chat:a"}})).await;
    let (_, ok) = call(
        &s,
        ADMIN,
        "/api/publish",
        &json!({"channel": "chat:a", "data": {"secret": 1}}),
        false,
    )
    .await;
    assert!(ok["result"].is_object(), "{ok}");
    for (method, body) in [
        ("history", json!({"channel": "chat:a", "limit": 10})),
        ("history_remove", json!({"channel": "chat:a"})),
        ("presence", json!({"channel": "chat:a"})),
        ("presence_stats", json!({"channel": "chat:a"})),
        ("channels", json!({})),
        ("info", json!({})),
        ("subscribe", json!({"user": "u1", "channel": "chat:b"})),
        ("unsubscribe", json!({"user": "u1", "channel": "chat:a"})),
        ("disconnect", json!({"user": "u1"})),
        ("refresh", json!({"user": "u1"})),
        ("rpc", json!({"method": "x", "params": {}})),
    ] {
        let (status, reply) = call(&s, PUBLISHER, &format!("/api/{method}"), &body, false).await;
        assert_eq!(status, 200, "{method}");
        assert_eq!(
            reply,
            json!({"error": {"code": 103, "message": "permission denied"}}),
            "{method}"
        );
        assert!(!reply.to_string().contains("secret") && !reply.to_string().contains("u1"));
        // Transport error mode: 403 with the same error.
        let (status, reply) = call(&s, PUBLISHER, &format!("/api/{method}"), &body, true).await;
        assert_eq!(
            (status, &reply["code"]),
            (403, &json!(103)),
            "{method}: {reply}"
        );
    }
    // The client was not unsubscribed nor disconnected by any of it.
    let (_, presence) = call(
        &s,
        ADMIN,
        "/api/presence",
        &json!({"channel": "chat:a"}),
        false,
    )
    .await;
    assert_eq!(
        presence["result"]["presence"].as_object().map(|p| p.len()),
        Some(1),
        "{presence}"
    );

    // Inside a batch each command is judged on its own.
    let (status, batch) = call(
        &s,
        PUBLISHER,
        "/api/batch",
        &json!({"commands": [
            {"publish": {"channel": "chat:a", "data": 3}},
            {"history": {"channel": "chat:a"}},
            {"presence": {"channel": "chat:a"}},
            {"broadcast": {"channels": ["chat:a"], "data": 4}},
        ]}),
        false,
    )
    .await;
    assert_eq!(status, 200);
    let r = &batch["replies"];
    assert!(r[0]["publish"]["offset"].is_u64(), "{batch}");
    assert_eq!(r[1]["error"]["code"], 103, "{batch}");
    assert_eq!(r[2]["error"]["code"], 103, "{batch}");
    assert!(r[3]["broadcast"].is_object(), "{batch}");

    // The legacy line protocol too.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api", s.addr))
        .header("authorization", format!("apikey {PUBLISHER}"))
        .body("{\"method\":\"publish\",\"params\":{\"channel\":\"chat:a\",\"data\":5}}\n{\"method\":\"history\",\"params\":{\"channel\":\"chat:a\"}}\n")
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines[0]["result"].is_object(), "{text}");
    assert_eq!(lines[1]["error"]["code"], 103, "{text}");

    // The public metrics need a key that may call every method.
    let metrics = |key: &'static str| {
        let url = format!("http://{}/metrics", s.addr);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_ne!(metrics(PUBLISHER).await, 200);
    assert_eq!(metrics(ADMIN).await, 200);
}

#[tokio::test]
async fn keys_of_the_old_shape_call_everything_and_used_keys_with_an_id_are_remembered() {
    let s = server().await;
    assert!(s.node.config.load().api_keys.used().is_empty());
    let (status, reply) = call(&s, LEGACY, "/api/info", &json!({}), false).await;
    assert_eq!(status, 200);
    assert!(reply["result"]["nodes"].is_array(), "{reply}");
    let (status, _) = call(
        &s,
        "rk_wrong",
        "/api/publish",
        &json!({"channel": "chat:a", "data": 1}),
        false,
    )
    .await;
    assert_eq!(status, 401);
    let (_, reply) = call(&s, PUBLISHER, "/api/info", &json!({}), false).await;
    assert_eq!(reply["error"]["code"], 103);
    let used = s.node.config.load().api_keys.used();
    let ids: Vec<&str> = used.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["key_pub"],
        "only keys with an id are reported, refused calls count as use"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(used[0].1 % 60 == 0 && used[0].1 + 120 > now, "{used:?}");
}
