//! WebSocket protocol behaviour of the data plane, driven by a raw client so every code and
//! field is checked exactly.

mod common;

use common::{now, token, Client, TestServer};
use serde_json::json;

#[tokio::test]
async fn connect_with_a_valid_token_returns_client_id_ping_and_pong() {
    let s = TestServer::start(json!({})).await;
    let (_c, r) = Client::connected(&s.ws_url(), "42").await;
    assert_eq!(r["client"].as_str().unwrap().len(), 36);
    assert_eq!(r["ping"], 25);
    assert_eq!(r["pong"], true);
    assert!(r.get("expires").is_none());
}

#[tokio::test]
async fn the_connect_reply_carries_the_server_time_only_when_asked() {
    let plain = TestServer::start(json!({})).await;
    let (_c, r) = Client::connected(&plain.ws_url(), "42").await;
    assert!(r.get("time").is_none(), "time without the option: {r}");

    let s = TestServer::start(json!({"client": {"connect_include_server_time": true}})).await;
    let before = now() * 1000;
    let (_c, r) = Client::connected(&s.ws_url(), "42").await;
    let after = (now() + 1) * 1000;
    let time = r["time"].as_i64().expect("time in the connect reply");
    assert!(
        (before..=after).contains(&time),
        "server time {time} outside [{before}, {after}]"
    );
}

#[tokio::test]
async fn a_token_with_exp_gives_expires_and_ttl() {
    let s = TestServer::start(json!({})).await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "1", "exp": now() + 120}))}}))
        .await;
    assert_eq!(r["connect"]["expires"], true);
    let ttl = r["connect"]["ttl"].as_u64().unwrap();
    assert!((110..=120).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn an_expired_token_is_error_109_and_a_forged_one_closes_with_3500() {
    let s = TestServer::start(json!({})).await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "1", "exp": now() - 5}))}}))
        .await;
    assert_eq!(r["error"]["code"], 109);
    let mut c = Client::open(&s.ws_url()).await;
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "1"}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-project"),
    )
    .unwrap();
    c.send(json!({"connect": {"token": forged}})).await;
    assert_eq!(c.closed().await.code, 3500);
}

#[tokio::test]
async fn connecting_without_a_token_is_refused_unless_anonymous_is_allowed() {
    let s = TestServer::start(json!({})).await;
    let mut c = Client::open(&s.ws_url()).await;
    c.send(json!({"connect": {}})).await;
    assert_eq!(c.closed().await.code, 3501);
    let s =
        TestServer::start(json!({"client": {"allow_anonymous_connect_without_token": true}})).await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c.call(json!({"connect": {}})).await;
    assert!(r["connect"]["client"].is_string(), "{r}");
}

#[tokio::test]
async fn commands_before_connect_and_garbage_frames_close_with_3501() {
    let s = TestServer::start(json!({})).await;
    let mut c = Client::open(&s.ws_url()).await;
    c.send(json!({"subscribe": {"channel": "news"}})).await;
    assert_eq!(c.closed().await.code, 3501);
    let mut c = Client::open(&s.ws_url()).await;
    c.send_raw("{not json").await;
    assert_eq!(c.closed().await.code, 3501);
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    c.send(json!({"connect": {}})).await;
    assert_eq!(c.closed().await.code, 3501, "second connect");
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    c.send(json!({})).await; // id but no request
    assert_eq!(c.closed().await.code, 3501);
    assert_eq!(s.node.metrics.malformed_frames.get(), 1);
}

#[tokio::test]
async fn an_oversize_message_closes_with_1009() {
    let s = TestServer::start(json!({"websocket": {"message_size_limit": 2048}})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    let big = "x".repeat(4096);
    c.send(json!({"publish": {"channel": "news", "data": {"big": big}}}))
        .await;
    assert_eq!(c.closed().await.code, 1009);
}

#[tokio::test]
async fn connect_and_subscribe_in_one_frame_are_answered_in_order() {
    let s = TestServer::start(json!({})).await;
    let mut c = Client::open(&s.ws_url()).await;
    let frame = format!(
        "{}\n{}",
        json!({"connect": {"token": token(json!({"sub": "7"})), "name": "js"}, "id": 1}),
        json!({"subscribe": {"channel": "news", "flag": 1}, "id": 2})
    );
    c.send_raw(&frame).await;
    let first = c.read().await.unwrap();
    let second = c.read().await.unwrap();
    assert_eq!(first["id"], 1);
    assert!(first["connect"].is_object());
    assert_eq!(second, json!({"id": 2, "subscribe": {}}));
}

#[tokio::test]
async fn subscribe_errors_use_centrifugo_codes() {
    let s = TestServer::start(json!({"client": {"channel_limit": 2}})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "nope:x"}})).await["error"]["code"],
        102
    );
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "locked:x"}})).await["error"]["code"],
        103
    );
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "$private"}})).await["error"]["code"],
        103
    );
    assert!(c.call(json!({"subscribe": {"channel": "a"}})).await["subscribe"].is_object());
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "a"}})).await["error"]["code"],
        105
    );
    assert!(c.call(json!({"subscribe": {"channel": "b"}})).await["subscribe"].is_object());
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "c"}})).await["error"]["code"],
        106
    );
    let long = "x".repeat(300);
    assert_eq!(
        c.call(json!({"subscribe": {"channel": long}})).await["error"]["code"],
        107
    );
    c.send(json!({"subscribe": {"channel": ""}})).await;
    assert_eq!(c.closed().await.code, 3501);
}

#[tokio::test]
async fn a_client_publication_reaches_every_subscriber_once_with_publisher_info() {
    let s = TestServer::start(json!({})).await;
    let (mut a, ca) = Client::connected(&s.ws_url(), "alice").await;
    let (mut b, _) = Client::connected(&s.ws_url(), "bob").await;
    a.call(json!({"subscribe": {"channel": "news"}})).await;
    b.call(json!({"subscribe": {"channel": "news"}})).await;
    let r = a
        .call(json!({"publish": {"channel": "news", "data": {"text": "hi"}}}))
        .await;
    assert_eq!(r["publish"], json!({}));
    for c in [&mut a, &mut b] {
        let p = c.push().await;
        assert_eq!(p["channel"], "news");
        assert_eq!(p["pub"]["data"], json!({"text": "hi"}));
        assert_eq!(p["pub"]["info"]["user"], "alice");
        assert_eq!(p["pub"]["info"]["client"], ca["client"]);
        assert!(p["pub"].get("offset").is_none(), "no history here");
    }
    // Nothing else arrives: a ping-less probe round trip proves the queue is empty.
    let probe = b
        .call(json!({"presence_stats": {"channel": "chat:x"}}))
        .await;
    assert_eq!(probe["error"]["code"], 103);
    assert_eq!(s.node.metrics.messages_delivered.get(), 2);
}

#[tokio::test]
async fn publish_permission_and_payload_rules_are_enforced() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    assert_eq!(
        c.call(json!({"publish": {"channel": "news", "data": {}}}))
            .await["error"]["code"],
        103,
        "not subscribed"
    );
    assert_eq!(
        c.call(json!({"publish": {"channel": "x:y", "data": {}}}))
            .await["error"]["code"],
        102
    );
    c.call(json!({"subscribe": {"channel": "news"}})).await;
    assert_eq!(
        c.call(json!({"publish": {"channel": "news"}})).await["error"]["code"],
        107,
        "empty data"
    );
    assert_eq!(
        c.call(json!({"publish": {"channel": "", "data": 1}})).await["error"]["code"],
        107
    );
}

#[tokio::test]
async fn history_presence_and_join_leave_work_in_a_namespace_that_enables_them() {
    let s = TestServer::start(json!({})).await;
    let (mut a, ca) = Client::connected(&s.ws_url(), "alice").await;
    let sub = a.call(json!({"subscribe": {"channel": "chat:room"}})).await;
    assert_eq!(sub["subscribe"]["recoverable"], true);
    assert_eq!(sub["subscribe"]["positioned"], true);
    let epoch = sub["subscribe"]["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch.len(), 8);
    let join = a.push().await;
    assert_eq!(join["join"]["info"]["user"], "alice", "own join");

    let (mut b, cb) = Client::connected(&s.ws_url(), "bob").await;
    b.call(json!({"subscribe": {"channel": "chat:room"}})).await;
    let join = a.push().await;
    assert_eq!(join["join"]["info"]["client"], cb["client"]);

    for n in 1..=3 {
        b.call(json!({"publish": {"channel": "chat:room", "data": {"n": n}}}))
            .await;
    }
    for n in 1..=3u64 {
        let p = a.push().await;
        assert_eq!(p["pub"]["offset"], n);
        assert_eq!(p["pub"]["data"]["n"], n);
    }
    let h = a
        .call(json!({"history": {"channel": "chat:room", "limit": 2}}))
        .await;
    assert_eq!(h["history"]["offset"], 3);
    assert_eq!(h["history"]["epoch"], epoch);
    let offsets: Vec<u64> = h["history"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![1, 2]);
    let rev = a.call(json!({"history": {"channel": "chat:room", "limit": -1, "reverse": true, "since": {"offset": 3, "epoch": epoch}}})).await;
    let offsets: Vec<u64> = rev["history"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![2, 1]);
    let bad = a.call(json!({"history": {"channel": "chat:room", "limit": 1, "since": {"offset": 1, "epoch": "other"}}})).await;
    assert_eq!(bad["error"]["code"], 112);
    let top = a.call(json!({"history": {"channel": "chat:room"}})).await;
    assert_eq!(
        top["history"],
        json!({"publications": [], "epoch": epoch, "offset": 3})
    );

    let p = a.call(json!({"presence": {"channel": "chat:room"}})).await;
    let presence = p["presence"]["presence"].as_object().unwrap();
    assert_eq!(presence.len(), 2);
    assert_eq!(presence[ca["client"].as_str().unwrap()]["user"], "alice");
    let st = a
        .call(json!({"presence_stats": {"channel": "chat:room"}}))
        .await;
    assert_eq!(
        st["presence_stats"],
        json!({"num_clients": 2, "num_users": 2})
    );

    let r = b
        .call(json!({"unsubscribe": {"channel": "chat:room"}}))
        .await;
    assert_eq!(r["unsubscribe"], json!({}));
    let leave = a.push().await;
    assert_eq!(leave["leave"]["info"]["client"], cb["client"]);
    let st = a
        .call(json!({"presence_stats": {"channel": "chat:room"}}))
        .await;
    assert_eq!(
        st["presence_stats"],
        json!({"num_clients": 1, "num_users": 1})
    );
    assert_eq!(
        a.call(json!({"history": {"channel": "news"}})).await["error"]["code"],
        108
    );
    assert_eq!(
        a.call(json!({"presence": {"channel": "news"}})).await["error"]["code"],
        108
    );
}

#[tokio::test]
async fn recovery_returns_exactly_the_missed_publications() {
    let s = TestServer::start(json!({})).await;
    let (mut a, _) = Client::connected(&s.ws_url(), "alice").await;
    let sub = a.call(json!({"subscribe": {"channel": "chat:r"}})).await;
    let epoch = sub["subscribe"]["epoch"].clone();
    let (mut pubr, _) = Client::connected(&s.ws_url(), "p").await;
    pubr.call(json!({"subscribe": {"channel": "chat:r"}})).await;
    pubr.call(json!({"publish": {"channel": "chat:r", "data": {"n": 1}}}))
        .await;
    drop(a); // goes away after seeing offset 1 (or not: it recovers from 1 below)
    for n in 2..=4 {
        pubr.call(json!({"publish": {"channel": "chat:r", "data": {"n": n}}}))
            .await;
    }
    let (mut a, _) = Client::connected(&s.ws_url(), "alice").await;
    let r = a.call(json!({"subscribe": {"channel": "chat:r", "recover": true, "offset": 1, "epoch": epoch}})).await;
    let sub = &r["subscribe"];
    assert_eq!(sub["recovered"], true);
    assert_eq!(sub["was_recovering"], true);
    assert_eq!(
        sub["offset"], 1,
        "the request's offset, the SDK advances through the pubs"
    );
    let got: Vec<u64> = sub["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![2, 3, 4]);

    // A stale epoch cannot be recovered; with flag bit 2 that is error 112.
    let (mut b, _) = Client::connected(&s.ws_url(), "b").await;
    let r = b.call(json!({"subscribe": {"channel": "chat:r", "recover": true, "offset": 1, "epoch": "zzzzzzzz"}})).await;
    assert_eq!(
        r["subscribe"]["recovered"],
        serde_json::Value::Null,
        "recovered:false is omitted"
    );
    assert_eq!(r["subscribe"]["offset"], 4);
    let (mut c, _) = Client::connected(&s.ws_url(), "c").await;
    let r = c.call(json!({"subscribe": {"channel": "chat:r", "recover": true, "offset": 1, "epoch": "zzzzzzzz", "flag": 2}})).await;
    assert_eq!(r["error"]["code"], 112);

    // A refused subscription leaves nothing pending behind: by its error reply the channel no
    // longer holds the subscriber, and the client can subscribe again.
    let r = c.call(json!({"subscribe": {"channel": "chat:solo", "recover": true, "offset": 1, "epoch": "zzzzzzzz", "flag": 2}})).await;
    assert_eq!(r["error"]["code"], 112);
    assert_eq!(s.node.hub.num_subscribers("chat:solo"), 0);
    let r = c.call(json!({"subscribe": {"channel": "chat:solo"}})).await;
    assert!(r["subscribe"].is_object(), "{r}");
    assert_eq!(s.node.hub.num_subscribers("chat:solo"), 1);
}

#[tokio::test]
async fn server_side_subscriptions_from_the_token_arrive_in_the_connect_reply() {
    let s = TestServer::start(json!({})).await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c.call(json!({"connect": {"token": token(json!({"sub": "1", "channels": ["chat:a", "news"]}))}})).await;
    let subs = r["connect"]["subs"].as_object().unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs["chat:a"]["recoverable"], true);
    assert_eq!(s.node.hub.num_subscribers("news"), 1);
    let mut bad = Client::open(&s.ws_url()).await;
    let r = bad
        .call(json!({"connect": {"token": token(json!({"sub": "1", "channels": ["nope:a"]}))}}))
        .await;
    assert_eq!(r["error"]["code"], 102);
}

#[tokio::test]
async fn refresh_extends_the_connection_and_checks_the_user() {
    let s = TestServer::start(json!({})).await;
    let mut c = Client::open(&s.ws_url()).await;
    c.call(json!({"connect": {"token": token(json!({"sub": "1", "exp": now() + 30}))}}))
        .await;
    let r = c
        .call(json!({"refresh": {"token": token(json!({"sub": "1", "exp": now() + 600}))}}))
        .await;
    assert_eq!(r["refresh"]["expires"], true);
    assert!(r["refresh"]["ttl"].as_u64().unwrap() > 500);
    c.send(json!({"refresh": {"token": token(json!({"sub": "2", "exp": now() + 600}))}}))
        .await;
    assert_eq!(c.closed().await.code, 3500);
}

#[tokio::test]
async fn rpc_is_not_available_and_send_without_a_backend_closes_with_3508() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    assert_eq!(
        c.call(json!({"rpc": {"method": "m", "data": {}}})).await["error"]["code"],
        108
    );
    c.send_raw(r#"{"send":{"data":{"x":1}}}"#).await;
    assert_eq!(c.closed().await.code, 3508);
}

#[tokio::test]
async fn origins_are_checked_before_the_upgrade() {
    let s = TestServer::start(json!({})).await;
    let req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(s.ws_url())
            .unwrap();
    let mut req = req;
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let s =
        TestServer::start(json!({"client": {"allowed_origins": ["https://*.example.com"]}})).await;
    let _ok = Client::open_with(&s.ws_url(), &[("origin", "https://app.example.com")]).await;
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_3012() {
    let s = TestServer::start(json!({"client": {"ping_interval": "1s", "pong_timeout": "500ms"}}))
        .await;
    let (mut c, r) = Client::connected(&s.ws_url(), "1").await;
    assert_eq!(r["ping"], 1);
    // The raw client skips pings without answering them.
    assert_eq!(c.closed().await.code, 3012);
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let s = TestServer::start(json!({"client": {"ping_interval": "1s", "pong_timeout": "500ms"}}))
        .await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    for _ in 0..3 {
        // Wait for a ping frame, then pong with an empty command.
        loop {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = c.next_message().await {
                if t.as_str() == "{}" {
                    break;
                }
            }
        }
        c.send_raw("{}").await;
    }
    let r = c.call(json!({"subscribe": {"channel": "news"}})).await;
    assert!(r["subscribe"].is_object());
}

#[tokio::test]
async fn websocket_frame_pings_replace_protocol_pings_when_asked() {
    let s = TestServer::start(json!({"client": {"ping_interval": "1s", "pong_timeout": "500ms"}}))
        .await;
    let url = format!("{}?cf_ws_frame_ping_pong=true", s.ws_url());
    let (mut c, r) = Client::connected(&url, "1").await;
    assert!(r.get("ping").is_none() && r.get("pong").is_none(), "{r}");
    // tungstenite answers each ping frame with a pong while the client keeps reading.
    for _ in 0..3 {
        loop {
            match c.next_message().await {
                tokio_tungstenite::tungstenite::Message::Ping(_) => break,
                tokio_tungstenite::tungstenite::Message::Text(t) => {
                    assert_ne!(t.as_str(), "{}", "no protocol pings on this connection")
                }
                _ => {}
            }
        }
    }
    let r = c.call(json!({"subscribe": {"channel": "news"}})).await;
    assert!(r["subscribe"].is_object(), "{r}");

    // A client that reads nothing sends no pong: closed with 3012 after ping + pong timeout.
    let (mut idle, _) = Client::connected(&url, "2").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(idle.closed().await.code, 3012);
}

#[tokio::test]
async fn graceful_shutdown_closes_clients_with_3001() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    let node = s.node.clone();
    let shutdown = tokio::spawn(s.shutdown());
    assert_eq!(c.closed().await.code, 3001);
    shutdown.await.unwrap();
    assert_eq!(node.metrics.connections.get(), 0);
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_with_3008_and_others_keep_receiving() {
    let s = TestServer::start(json!({"client": {"queue_max_size": 4096}})).await;
    let (mut slow, _) = Client::connected(&s.ws_url(), "slow").await;
    slow.call(json!({"subscribe": {"channel": "news"}})).await;
    let (mut fast, _) = Client::connected(&s.ws_url(), "fast").await;
    fast.call(json!({"subscribe": {"channel": "news"}})).await;
    let payload = "y".repeat(1000);
    // Push straight through the hub-facing path so the slow socket's kernel buffers fill up.
    let handle = s.node.registry.find("slow", "", "").pop().unwrap();
    let mut dropped = false;
    for _ in 0..20_000 {
        if !handle.outbox.push_frame(bytes::Bytes::from(format!(
            "{{\"push\":{{\"channel\":\"news\",\"pub\":{{\"data\":\"{payload}\"}}}}}}"
        ))) {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the outbox must refuse past its byte limit");
    assert_eq!(slow.closed().await.code, 3008);
    fast.call(json!({"publish": {"channel": "news", "data": {"still": "alive"}}}))
        .await;
    assert_eq!(fast.push().await["pub"]["data"]["still"], "alive");
}

#[tokio::test]
async fn protobuf_is_chosen_by_subprotocol_and_frames_are_varint_delimited() {
    use prost::Message as _;
    use rotor_data_plane::protocol::{Command, ConnectRequest, Reply};
    let s = TestServer::start(json!({})).await;
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(s.ws_url())
            .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "centrifuge-protobuf".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "centrifuge-protobuf"
    );
    let cmd = Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: token(json!({"sub": "9"})),
            ..Default::default()
        }),
        ..Default::default()
    };
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::binary(
        cmd.encode_length_delimited_to_vec(),
    ))
    .await
    .unwrap();
    let msg = tokio::time::timeout(common::WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let bytes = msg.into_data();
    let reply = Reply::decode_length_delimited(&bytes[..]).unwrap();
    assert_eq!(reply.id, 1);
    assert_eq!(reply.connect.unwrap().client.len(), 36);
}

/// Sockets count against `client.connection_limit` from their upgrade on, so the one past it
/// is refused before the upgrade (503, a retryable transport error for SDKs); 3504 at connect
/// is left for a limit lowered under live sockets (tests/budgets.rs).
#[tokio::test]
async fn connections_past_the_limit_are_refused_before_the_upgrade() {
    let s = TestServer::start(json!({"client": {"connection_limit": 2}})).await;
    let (_a, _) = Client::connected(&s.ws_url(), "a").await;
    let (_b, _) = Client::connected(&s.ws_url(), "b").await;
    let refused = tokio::time::timeout(common::WAIT, tokio_tungstenite::connect_async(s.ws_url()))
        .await
        .expect("handshake timeout");
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
    assert_eq!(
        s.node.metrics.connections_refused.get("connection_limit"),
        1
    );
}

#[tokio::test]
async fn the_init_endpoint_answers_an_empty_object_for_load_balancers() {
    let s = TestServer::start(json!({})).await;
    let resp = reqwest::get(format!("http://{}/connection/init", s.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body, json!({}));
}

#[tokio::test]
async fn the_unused_ping_command_field_closes_with_3501_like_centrifugo() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    c.send_raw(r#"{"id": 2, "ping": {}}"#).await;
    assert_eq!(c.closed().await.code, 3501);
}

#[tokio::test]
async fn a_refused_handshake_ends_the_connection_so_nothing_rides_behind_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(json!({})).await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // A handshake without a key (refused), then a request kept alive behind it: as the edge
    // splices it when it cannot hand the socket over.
    s.write_all(
        b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n\
          GET /health HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.8.7\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(common::WAIT, s.read_to_end(&mut out))
        .await
        .expect("the connection closes after the refusal")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(!text.starts_with("HTTP/1.1 101"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    // A plain keep-alive client is not affected.
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(common::WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out)
            .matches("HTTP/1.1 200")
            .count(),
        2
    );
}

/// A burst of publications reaches a subscriber as one WebSocket message per publication, in
/// stream order (centrifuge-js 5.x can interleave the replies of two multi-reply messages it
/// reads at once; see `transport::websocket`), and the connect and subscribe replies of a
/// pipelined frame come as two messages.
#[tokio::test]
async fn a_burst_goes_out_one_message_per_reply() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let s = TestServer::start(json!({})).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url()).await.unwrap();
    let hello = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {"token": token(json!({"sub": "u"}))}}),
        json!({"id": 2, "subscribe": {"channel": "burst"}})
    );
    ws.send(Message::text(hello)).await.unwrap();
    assert_eq!(next_single(&mut ws).await["id"], 1);
    assert_eq!(next_single(&mut ws).await["id"], 2);
    const N: u64 = 300;
    let commands: Vec<_> = (1..=N)
        .map(|n| json!({"publish": {"channel": "burst", "data": {"n": n}}}))
        .collect();
    let r = common::api(&s, "batch", json!({ "commands": commands })).await;
    assert_eq!(r["replies"].as_array().unwrap().len(), N as usize);
    for n in 1..=N {
        let push = next_single(&mut ws).await;
        assert_eq!(push["push"]["pub"]["data"]["n"], n, "{push}");
    }
}

/// The next text message, which must carry exactly one reply.
async fn next_single(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> serde_json::Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(common::WAIT, ws.next())
            .await
            .expect("timed out")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            let text = t.as_str().trim_end_matches('\n');
            assert!(!text.contains('\n'), "one reply per message: {text}");
            return serde_json::from_str(text).unwrap();
        }
    }
}
