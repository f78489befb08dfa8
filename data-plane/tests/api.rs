//! The server HTTP API over real HTTP: authentication, status codes, reply shapes, and the
//! effect of targeted calls on live connections.

mod common;

use common::{Client, TestServer};
use serde_json::{json, Value};

const KEY: &str = "api-key";

async fn post(s: &TestServer, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", s.addr))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn api(s: &TestServer, method: &str, body: Value) -> Value {
    let (status, text) = post(
        s,
        &format!("/api/{method}"),
        &[("x-api-key", KEY)],
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{method}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn keys_are_accepted_in_each_centrifugo_location_and_nothing_else() {
    let s = TestServer::start(json!({})).await;
    let body = r#"{"channel":"news","data":{"a":1}}"#;
    assert_eq!(
        post(&s, "/api/publish", &[], body).await,
        (401, String::new())
    );
    assert_eq!(
        post(&s, "/api/publish", &[("x-api-key", "wrong")], body)
            .await
            .0,
        401
    );
    assert_eq!(
        post(&s, "/api/publish", &[("x-api-key", KEY)], body)
            .await
            .0,
        200
    );
    assert_eq!(
        post(
            &s,
            "/api/publish",
            &[("authorization", "apikey api-key")],
            body
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(&s, "/api/publish?api_key=api-key", &[], body).await.0,
        200
    );
    let open = TestServer::start(json!({"http_api": {"insecure": true}})).await;
    assert_eq!(post(&open, "/api/publish", &[], body).await.0, 200);
}

#[tokio::test]
async fn unknown_methods_wrong_verbs_and_bad_bodies_get_http_errors() {
    let s = TestServer::start(json!({})).await;
    assert_eq!(
        post(&s, "/api/frobnicate", &[("x-api-key", KEY)], "{}")
            .await
            .0,
        404
    );
    let get = reqwest::get(format!("http://{}/api/publish", s.addr))
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(
        post(&s, "/api/info", &[("x-api-key", KEY)], "").await.0,
        400
    );
    let (status, text) = post(&s, "/api/publish", &[("x-api-key", KEY)], "{nope").await;
    assert_eq!(status, 400);
    assert!(text.contains("JSON"), "{text}");
    assert_eq!(
        post(
            &s,
            "/api/publish",
            &[("x-api-key", KEY)],
            r#"{"channel": 5}"#
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn publish_and_history_round_trip_with_offsets_and_epoch() {
    let s = TestServer::start(json!({})).await;
    let r1 = api(
        &s,
        "publish",
        json!({"channel": "chat:a", "data": {"n": 1}, "tags": {"t": "x"}}),
    )
    .await;
    let r2 = api(
        &s,
        "publish",
        json!({"channel": "chat:a", "data": {"n": 2}}),
    )
    .await;
    assert_eq!(r1["result"]["offset"], 1);
    assert_eq!(r2["result"]["offset"], 2);
    let epoch = r1["result"]["epoch"].clone();
    assert_eq!(r2["result"]["epoch"], epoch);
    let h = api(&s, "history", json!({"channel": "chat:a", "limit": -1})).await;
    assert_eq!(h["result"]["offset"], 2);
    assert_eq!(h["result"]["epoch"], epoch);
    assert_eq!(
        h["result"]["publications"][0],
        json!({"data": {"n": 1}, "offset": 1, "tags": {"t": "x"}})
    );
    let none = api(&s, "publish", json!({"channel": "plain", "data": {"n": 1}})).await;
    assert_eq!(none["result"], json!({}), "no history → no offset or epoch");
    let skipped = api(
        &s,
        "publish",
        json!({"channel": "chat:a", "data": 3, "skip_history": true}),
    )
    .await;
    assert_eq!(skipped["result"], json!({}));
    api(&s, "history_remove", json!({"channel": "chat:a"})).await;
    let h = api(&s, "history", json!({"channel": "chat:a", "limit": -1})).await;
    assert_eq!(
        h["result"],
        json!({"publications": [], "epoch": epoch, "offset": 2})
    );
}

#[tokio::test]
async fn api_errors_use_centrifugo_codes() {
    let s = TestServer::start(json!({})).await;
    let code = |v: Value| v["error"]["code"].clone();
    assert_eq!(
        code(api(&s, "publish", json!({"channel": "nope:x", "data": 1})).await),
        102
    );
    assert_eq!(
        code(api(&s, "publish", json!({"channel": "", "data": 1})).await),
        107
    );
    assert_eq!(code(api(&s, "publish", json!({"channel": "x"})).await), 107);
    assert_eq!(
        code(api(&s, "history", json!({"channel": "plain"})).await),
        108
    );
    assert_eq!(
        code(api(&s, "presence", json!({"channel": "plain"})).await),
        108
    );
    api(&s, "publish", json!({"channel": "chat:e", "data": 1})).await;
    let stale = api(
        &s,
        "history",
        json!({"channel": "chat:e", "limit": 1, "since": {"offset": 1, "epoch": "other"}}),
    )
    .await;
    assert_eq!(code(stale), 112);
    assert_eq!(code(api(&s, "rpc", json!({"method": "m"})).await), 108);
    assert_eq!(code(api(&s, "rpc", json!({})).await), 107);
}

#[tokio::test]
async fn transport_error_mode_maps_codes_to_http_statuses() {
    let s = TestServer::start(json!({})).await;
    let mode = ("x-centrifugo-error-mode", "transport");
    let (status, body) = post(
        &s,
        "/api/publish",
        &[("x-api-key", KEY), mode],
        r#"{"channel":"nope:x","data":1}"#,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 102);
    assert_eq!(
        post(
            &s,
            "/api/history",
            &[("x-api-key", KEY), mode],
            r#"{"channel":"plain"}"#
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn broadcast_and_batch_answer_per_item() {
    let s = TestServer::start(json!({})).await;
    let b = api(
        &s,
        "broadcast",
        json!({"channels": ["chat:a", "nope:b", "plain"], "data": {"x": 1}}),
    )
    .await;
    let r = &b["result"]["responses"];
    assert_eq!(r[0]["result"]["offset"], 1);
    assert_eq!(r[1]["error"]["code"], 102);
    assert_eq!(r[2]["result"], json!({}));
    let batch = api(
        &s,
        "batch",
        json!({"commands": [
            {"publish": {"channel": "chat:a", "data": 2}},
            {"presence_stats": {"channel": "chat:a"}},
            {"history": {"channel": "plain"}},
            {"bogus": {}}
        ]}),
    )
    .await;
    assert!(batch.get("result").is_none(), "batch replies are top-level");
    let replies = &batch["replies"];
    assert_eq!(replies[0]["publish"]["offset"], 2);
    assert_eq!(
        replies[1]["presence_stats"],
        json!({"num_clients": 0, "num_users": 0})
    );
    assert_eq!(replies[2]["error"]["code"], 108);
    assert_eq!(replies[3]["error"]["code"], 104);
}

#[tokio::test]
async fn idempotent_publishes_are_stored_once() {
    let s = TestServer::start(json!({})).await;
    let a = api(
        &s,
        "publish",
        json!({"channel": "chat:i", "data": 1, "idempotency_key": "k"}),
    )
    .await;
    let b = api(
        &s,
        "publish",
        json!({"channel": "chat:i", "data": 1, "idempotency_key": "k"}),
    )
    .await;
    assert_eq!(a, b);
    let h = api(&s, "history", json!({"channel": "chat:i", "limit": -1})).await;
    assert_eq!(h["result"]["publications"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn channels_info_and_presence_describe_live_connections() {
    let s = TestServer::start(json!({})).await;
    let (mut c, r) = Client::connected(&s.ws_url(), "u1").await;
    c.call(json!({"subscribe": {"channel": "chat:p"}})).await;
    c.call(json!({"subscribe": {"channel": "news"}})).await;
    let ch = api(&s, "channels", json!({"pattern": "chat:*"})).await;
    assert_eq!(
        ch["result"],
        json!({"channels": {"chat:p": {"num_clients": 1}}})
    );
    let info = api(&s, "info", json!({})).await;
    let node = &info["result"]["nodes"][0];
    assert_eq!(node["num_clients"], 1);
    assert_eq!(node["num_channels"], 2);
    assert!(node["uid"].is_string() && node["name"].is_string());
    let p = api(&s, "presence", json!({"channel": "chat:p"})).await;
    assert_eq!(
        p["result"]["presence"][r["client"].as_str().unwrap()]["user"],
        "u1"
    );
    let st = api(&s, "presence_stats", json!({"channel": "chat:p"})).await;
    assert_eq!(st["result"], json!({"num_clients": 1, "num_users": 1}));
}

#[tokio::test]
async fn server_side_subscribe_unsubscribe_and_disconnect_reach_the_connection() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    api(
        &s,
        "subscribe",
        json!({"user": "u1", "channel": "chat:s", "data": {"welcome": true}}),
    )
    .await;
    let push = c.push().await;
    assert_eq!(push["channel"], "chat:s");
    assert_eq!(push["subscribe"]["recoverable"], true);
    assert_eq!(push["subscribe"]["data"], json!({"welcome": true}));
    assert_eq!(
        c.push().await["join"]["info"]["user"],
        "u1",
        "chat announces joins"
    );
    api(
        &s,
        "publish",
        json!({"channel": "chat:s", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(c.push().await["pub"]["data"]["n"], 1);
    api(
        &s,
        "unsubscribe",
        json!({"user": "u1", "channel": "chat:s"}),
    )
    .await;
    let push = c.push().await;
    assert_eq!(push["unsubscribe"]["code"], 2000);
    api(
        &s,
        "refresh",
        json!({"user": "u1", "expire_at": common::now() + 100}),
    )
    .await;
    assert_eq!(c.push().await["refresh"]["expires"], true);
    api(
        &s,
        "disconnect",
        json!({"user": "u1", "disconnect": {"code": 4500, "reason": "bye"}}),
    )
    .await;
    let closed = c.closed().await;
    assert_eq!((closed.code, closed.reason.as_str()), (4500, "bye"));
}

#[tokio::test]
async fn targeting_a_client_id_reaches_it_only_under_its_own_user() {
    let s =
        TestServer::start(json!({"client": {"allow_anonymous_connect_without_token": true}})).await;
    let (mut bob, connect) = Client::connected(&s.ws_url(), "bob").await;
    let bob_id = connect["client"].as_str().unwrap().to_owned();
    let mut anon = Client::open(&s.ws_url()).await;
    assert!(anon.call(json!({"connect": {}})).await["connect"].is_object());

    // An empty user is the anonymous user, as in Centrifugo: not any user.
    for body in [
        json!({"user": "", "client": bob_id}),
        json!({"user": "alice", "client": bob_id}),
    ] {
        api(&s, "disconnect", body).await;
    }
    let r = bob.call(json!({"subscribe": {"channel": "chat:t"}})).await;
    assert!(r.get("subscribe").is_some(), "bob is still connected: {r}");

    // Anonymous connections are the user "".
    api(&s, "disconnect", json!({"user": ""})).await;
    assert_eq!(anon.closed().await.code, 3503);
    api(&s, "disconnect", json!({"user": "bob", "client": bob_id})).await;
    assert_eq!(bob.closed().await.code, 3503);
}

#[tokio::test]
async fn the_legacy_line_protocol_answers_one_line_per_command() {
    let s = TestServer::start(json!({})).await;
    let body = "{\"method\":\"publish\",\"params\":{\"channel\":\"chat:l\",\"data\":1}}\n{\"method\":\"nope\",\"params\":{}}\n";
    let (status, text) = post(&s, "/api", &[("authorization", "apikey api-key")], body).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["result"]["offset"], 1);
    assert_eq!(lines[1]["error"]["code"], 104);
}

#[tokio::test]
async fn api_calls_are_counted_by_method() {
    let s = TestServer::start(json!({})).await;
    api(&s, "info", json!({})).await;
    api(&s, "info", json!({})).await;
    api(&s, "publish", json!({"channel": "x", "data": 1})).await;
    assert_eq!(s.node.metrics.api_calls.get("info"), 2);
    assert_eq!(s.node.metrics.api_calls.get("publish"), 1);
}

#[tokio::test]
async fn plan_limits_refuse_exactly_past_the_threshold() {
    let s =
        TestServer::start(json!({"rotor": {"publish_rate_limit": 3, "max_publication_size": 16}}))
            .await;
    // One batch: the four publishes are microseconds apart, so no token refills between them.
    let batch = api(
        &s,
        "batch",
        json!({"commands": [
            {"publish": {"channel": "plain", "data": 1}},
            {"publish": {"channel": "plain", "data": 2}},
            {"publish": {"channel": "plain", "data": 3}},
            {"publish": {"channel": "plain", "data": 4}}
        ]}),
    )
    .await;
    let codes: Vec<Value> = batch["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].clone())
        .collect();
    assert_eq!(
        codes,
        vec![Value::Null, Value::Null, Value::Null, json!(111)]
    );
    let s = TestServer::start(json!({"rotor": {"max_publication_size": 16}})).await;
    let ok = api(
        &s,
        "publish",
        json!({"channel": "plain", "data": "0123456789abcd"}),
    )
    .await;
    assert!(
        ok.get("result").is_some(),
        "16 bytes with quotes is at the limit: {ok}"
    );
    let big = api(
        &s,
        "publish",
        json!({"channel": "plain", "data": "0123456789abcde"}),
    )
    .await;
    assert_eq!(big["error"]["code"], 107);
}
