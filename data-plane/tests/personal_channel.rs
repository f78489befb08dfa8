//! `client.subscribe_to_user_personal_channel`: an authenticated user's connection starts
//! subscribed to its personal channel (`<namespace>:#<user>`), with that namespace's options,
//! in JSON and Protobuf; with `single_connection` a user's new connection closes its older ones
//! with 3504, in one process and across the processes of a tenant on Redis; bad settings stop
//! the process with the option's path.

mod common;

use common::{api, redis_url, token, Binary, Client, Prefix, TestServer, WAIT};
use serde_json::{json, Value};

/// Personal channels in namespace `personal` (history, recovery, presence), optionally with a
/// single connection per user.
fn personal(single_connection: bool) -> Value {
    json!({
        "client": {
            "allow_anonymous_connect_without_token": true,
            "subscribe_to_user_personal_channel": {
                "enabled": true,
                "personal_channel_namespace": "personal",
                "single_connection": single_connection
            }
        },
        "channel": {"namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true},
            {"name": "personal", "presence": true, "history_size": 10, "history_ttl": "60s",
             "force_recovery": true}
        ]}
    })
}

#[tokio::test]
async fn an_authenticated_user_starts_subscribed_to_its_personal_channel() {
    let s = TestServer::start(personal(false)).await;
    let (mut c, connect) = Client::connected(&s.ws_url(), "42").await;
    let sub = &connect["subs"]["personal:#42"];
    assert!(sub.is_object(), "no personal subscription: {connect}");
    // The namespace's options apply: forced recovery makes it recoverable and positioned.
    assert_eq!(sub["recoverable"], true, "{sub}");
    assert_eq!(sub["positioned"], true, "{sub}");
    assert!(
        sub["epoch"].as_str().is_some_and(|e| !e.is_empty()),
        "{sub}"
    );
    assert_eq!(connect["subs"].as_object().unwrap().len(), 1, "{connect}");

    let r = api(
        &s,
        "publish",
        json!({"channel": "personal:#42", "data": {"note": "for you"}}),
    )
    .await;
    assert_eq!(r["result"]["offset"], 1, "{r}");
    let push = c.push().await;
    assert_eq!(push["channel"], "personal:#42");
    assert_eq!(push["pub"]["data"], json!({"note": "for you"}));
    assert_eq!(push["pub"]["offset"], 1);

    // It is in the channel's presence, like any server-side subscription.
    let p = api(&s, "presence_stats", json!({"channel": "personal:#42"})).await;
    assert_eq!(p["result"], json!({"num_clients": 1, "num_users": 1}));

    // An anonymous connection has no personal channel.
    let mut anon = Client::open(&s.ws_url()).await;
    let r = anon.call(json!({"connect": {}})).await;
    assert!(r["connect"].is_object(), "{r}");
    assert!(r["connect"].get("subs").is_none(), "{r}");
}

#[tokio::test]
async fn a_reconnecting_client_recovers_its_personal_channel() {
    let s = TestServer::start(personal(false)).await;
    let (c, connect) = Client::connected(&s.ws_url(), "7").await;
    let epoch = connect["subs"]["personal:#7"]["epoch"].clone();
    drop(c);
    for n in 1..=2 {
        api(
            &s,
            "publish",
            json!({"channel": "personal:#7", "data": {"n": n}}),
        )
        .await;
    }
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(json!({"connect": {
            "token": token(json!({"sub": "7"})),
            "subs": {"personal:#7": {"recover": true, "offset": 0, "epoch": epoch}}
        }}))
        .await;
    let sub = &r["connect"]["subs"]["personal:#7"];
    assert_eq!(sub["recovered"], true, "{r}");
    assert_eq!(sub["was_recovering"], true, "{r}");
    let ns: Vec<Value> = sub["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(1), json!(2)], "{r}");
}

#[tokio::test]
async fn without_a_namespace_the_personal_channel_is_hash_user() {
    let s = TestServer::start(json!({
        "client": {"subscribe_to_user_personal_channel": {"enabled": true}}
    }))
    .await;
    let (mut c, connect) = Client::connected(&s.ws_url(), "ann").await;
    assert!(connect["subs"]["#ann"].is_object(), "{connect}");
    api(&s, "publish", json!({"channel": "#ann", "data": {"x": 1}})).await;
    let push = c.push().await;
    assert_eq!(push["channel"], "#ann");
    assert_eq!(push["pub"]["data"], json!({"x": 1}));
}

#[tokio::test]
async fn a_protobuf_client_starts_subscribed_to_its_personal_channel() {
    use futures_util::{SinkExt, StreamExt};
    use prost::Message as _;
    use rotor_data_plane::protocol::{Command, ConnectRequest, Reply};
    use tokio_tungstenite::tungstenite::Message;

    let s = TestServer::start(personal(false)).await;
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(s.ws_url())
            .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "centrifuge-protobuf".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let cmd = Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: token(json!({"sub": "p9"})),
            ..Default::default()
        }),
        ..Default::default()
    };
    ws.send(Message::binary(cmd.encode_length_delimited_to_vec()))
        .await
        .unwrap();
    // Replies and pushes, one varint-delimited message at a time (pings are empty).
    let mut pending: Vec<u8> = Vec::new();
    let mut next = async || -> Reply {
        loop {
            if !pending.is_empty() {
                let mut buf = &pending[..];
                let reply = Reply::decode_length_delimited(&mut buf).unwrap();
                pending = buf.to_vec();
                if reply != Reply::default() {
                    return reply;
                }
                continue;
            }
            let msg = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("timed out waiting for the server")
                .unwrap()
                .unwrap();
            pending.extend_from_slice(&msg.into_data());
        }
    };
    let reply = next().await;
    let connect = reply.connect.expect("connect result");
    let sub = connect
        .subs
        .get("personal:#p9")
        .expect("personal subscription in subs");
    assert!(sub.recoverable && sub.positioned, "{sub:?}");
    assert!(!sub.epoch.is_empty());

    api(
        &s,
        "publish",
        json!({"channel": "personal:#p9", "data": {"proto": true}}),
    )
    .await;
    let push = next().await.push.expect("a push");
    assert_eq!(push.channel, "personal:#p9");
    let publication = push.r#pub.expect("a publication");
    assert_eq!(
        serde_json::from_slice::<Value>(&publication.data).unwrap(),
        json!({"proto": true})
    );
    assert_eq!(publication.offset, 1);
}

#[tokio::test]
async fn a_single_connection_user_s_new_connection_closes_the_older_one() {
    let s = TestServer::start(personal(true)).await;
    let (mut first, _) = Client::connected(&s.ws_url(), "solo").await;
    let (mut other_user, _) = Client::connected(&s.ws_url(), "someone-else").await;
    let (mut second, connect) = Client::connected(&s.ws_url(), "solo").await;
    assert!(connect["subs"]["personal:#solo"].is_object(), "{connect}");

    let closed = first.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (3504, "connection limit")
    );
    // The new connection and other users stay.
    api(
        &s,
        "publish",
        json!({"channel": "personal:#solo", "data": {"to": "second"}}),
    )
    .await;
    assert_eq!(second.push().await["pub"]["data"]["to"], "second");
    let r = other_user
        .call(json!({"subscribe": {"channel": "chat:x"}}))
        .await;
    assert!(r["subscribe"].is_object(), "{r}");
    let p = api(&s, "presence_stats", json!({"channel": "personal:#solo"})).await;
    assert_eq!(p["result"]["num_clients"], 1, "{p}");
}

#[tokio::test]
async fn without_single_connection_a_user_keeps_every_connection() {
    let s = TestServer::start(personal(false)).await;
    let (mut first, _) = Client::connected(&s.ws_url(), "many").await;
    let (mut second, _) = Client::connected(&s.ws_url(), "many").await;
    api(
        &s,
        "publish",
        json!({"channel": "personal:#many", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(first.push().await["pub"]["data"]["n"], 1);
    assert_eq!(second.push().await["pub"]["data"]["n"], 1);
}

/// The config of one tenant's processes on Redis under `prefix`.
fn redis_config(prefix: &str) -> Value {
    let mut config = personal(true);
    common::merge(
        &mut config,
        json!({
            "client": {"token": {"hmac_secret_key": common::SECRET}},
            "http_api": {"key": "api-key"},
            "engine": {"type": "redis", "redis": {"address": redis_url(), "prefix": prefix}}
        }),
    );
    config
}

#[tokio::test]
async fn a_single_connection_user_s_new_connection_closes_the_older_one_on_another_process() {
    let prefix = Prefix::new();
    let config = redis_config(&prefix.0);
    let a = Binary::listening(&config, &[]).await;
    let b = Binary::listening(&config, &[]).await;

    let (mut on_a, _) = Client::connected(&a.ws_url(), "roamer").await;
    let (mut bystander, _) = Client::connected(&a.ws_url(), "stays").await;
    let (mut on_b, connect) = Client::connected(&b.ws_url(), "roamer").await;
    assert!(connect["subs"]["personal:#roamer"].is_object(), "{connect}");

    let closed = on_a.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (3504, "connection limit")
    );
    // The newer connection, on the other process, stays and gets its publications.
    let http = reqwest::Client::new();
    let r: Value = http
        .post(format!("http://{}/api/publish", a.addr))
        .header("x-api-key", "api-key")
        .json(&json!({"channel": "personal:#roamer", "data": {"hello": "b"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(on_b.push().await["pub"]["data"]["hello"], "b");
    let r = bystander
        .call(json!({"subscribe": {"channel": "chat:x"}}))
        .await;
    assert!(r["subscribe"].is_object(), "another user is untouched: {r}");

    // And back: a third connection on the first process replaces the one on the second.
    let (_again_on_a, _) = Client::connected(&a.ws_url(), "roamer").await;
    assert_eq!(on_b.closed().await.code, 3504);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bad_personal_channel_settings_stop_the_process_with_the_option_s_path() {
    for (config, path, words) in [
        (
            json!({"client": {"subscribe_to_user_personal_channel": {
                "enabled": true, "personal_channel_namespace": "nowhere"}}}),
            "client.subscribe_to_user_personal_channel.personal_channel_namespace",
            "not defined",
        ),
        (
            json!({"client": {"subscribe_to_user_personal_channel": {
                "enabled": true, "personal_channel_namespace": "personal",
                "single_connection": true}},
                "channel": {"namespaces": [{"name": "personal"}]}}),
            "client.subscribe_to_user_personal_channel.single_connection",
            "presence",
        ),
        (
            json!({"client": {"subscribe_to_user_personal_channel": {"single_connection": true}},
                   "channel": {"without_namespace": {"presence": true}}}),
            "client.subscribe_to_user_personal_channel.single_connection",
            "enabled",
        ),
    ] {
        let stderr = Binary::refused(&config, &[]).await;
        assert!(stderr.contains(path), "{path} not named: {stderr}");
        assert!(stderr.contains(words), "{words:?} not said: {stderr}");
    }
    // A pushed config is refused the same way, and the running one stays.
    let s = TestServer::start(json!({})).await;
    let resp = reqwest::Client::new()
        .put(format!("http://{}/admin/config", s.admin_addr))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({
            "rotor": {"config_version": 2},
            "client": {"subscribe_to_user_personal_channel": {
                "enabled": true, "personal_channel_namespace": "nowhere"}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body.to_string()
            .contains("client.subscribe_to_user_personal_channel.personal_channel_namespace"),
        "{body}"
    );
    assert!(
        !s.node
            .config
            .load()
            .tenant
            .client
            .subscribe_to_user_personal_channel
            .enabled
    );
}
