//! The fan-out's own writes to idle WebSocket connections (`rotor_data_plane::lent_write`):
//! what reaches the client is exactly what the connection's task would have sent — every
//! publication once, in order, each a WebSocket message of its own, JSON and Protobuf — also
//! when the socket takes a lent write only in part, and when the client's pings (answered by
//! the connection's task) come between lent writes.

mod common;

use std::time::Duration;

use common::pb::PbClient;
use common::{api, token, Client, TestServer, WAIT};
use rotor_data_plane::protocol::{Command, ConnectRequest, SubscribeRequest};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// More than `lent_write::CHANNEL_GAP_MS` and `MIN_GAP_MS`: each publication finds every
/// subscriber's socket lendable.
const SPACING: Duration = Duration::from_millis(100);

#[tokio::test]
async fn idle_subscribers_get_each_publication_written_by_the_fan_out_in_order() {
    let s = TestServer::start(json!({})).await;
    let mut json_clients = Vec::new();
    for i in 0..12 {
        let (mut c, _) = Client::connected(&s.ws_url(), &format!("u{i}")).await;
        c.call(json!({"subscribe": {"channel": "news"}})).await;
        json_clients.push(c);
    }
    let mut pb = PbClient::open(&s.ws_url()).await;
    let connect = pb
        .call(Command {
            id: 1,
            connect: Some(ConnectRequest {
                token: token(json!({"sub": "pb"})),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert!(connect.error.is_none(), "{connect:?}");
    let sub = pb
        .call(Command {
            id: 2,
            subscribe: Some(SubscribeRequest {
                channel: "news".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert!(sub.error.is_none(), "{sub:?}");
    let lent_before = s.node.metrics.lent_writes.get();
    const N: u64 = 6;
    for seq in 0..N {
        api(
            &s,
            "publish",
            json!({"channel": "news", "data": {"seq": seq}}),
        )
        .await;
        tokio::time::sleep(SPACING).await;
    }
    for c in &mut json_clients {
        for seq in 0..N {
            let push = c.push().await;
            assert_eq!(push["channel"], "news");
            assert_eq!(push["pub"]["data"]["seq"], seq, "in order, once each");
        }
    }
    for seq in 0..N {
        let push = pb.next().await.push.expect("a push");
        let data: serde_json::Value = serde_json::from_slice(&push.r#pub.unwrap().data).unwrap();
        assert_eq!(data["seq"], seq);
    }
    assert_eq!(
        s.node.metrics.lent_writes.get() - lent_before,
        13 * N,
        "every publication reached every idle subscriber by a lent write"
    );
    assert_eq!(s.node.metrics.lent_writes_partial.get(), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn a_lent_write_the_socket_takes_in_part_is_finished_before_anything_else() {
    let s = TestServer::start(json!({"client": {"queue_max_size": 256 << 20}})).await;
    // A client with a small receive buffer that stops reading once subscribed.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    let mut stalled = Client::open_on(stream, &s.ws_url()).await;
    let r = stalled
        .call(json!({"connect": {"token": token(json!({"sub": "stalled"}))}}))
        .await;
    assert!(r.get("connect").is_some(), "{r}");
    stalled
        .call(json!({"subscribe": {"channel": "news"}}))
        .await;
    let (mut reader, _) = Client::connected(&s.ws_url(), "reader").await;
    reader.call(json!({"subscribe": {"channel": "news"}})).await;

    // Publish 1 MiB publications until one no longer fits the stalled socket's buffers
    // (a few MiB on loopback), then two more behind it.
    let body = |seq: usize| format!("{seq}:{}", "x".repeat(1 << 20));
    let mut published = 0;
    let mut after_partial = 0;
    while after_partial < 2 {
        assert!(published < 48, "no lent write was ever taken in part");
        api(
            &s,
            "publish",
            json!({"channel": "news", "data": {"body": body(published)}}),
        )
        .await;
        published += 1;
        if s.node.metrics.lent_writes_partial.get() > 0 {
            after_partial += 1;
        }
        tokio::time::sleep(SPACING).await;
    }
    for c in [&mut reader, &mut stalled] {
        for seq in 0..published {
            let push = c.push().await;
            assert_eq!(push["pub"]["data"]["body"], body(seq), "whole and in order");
        }
    }
    // The stalled connection is healthy again: a later publication arrives as usual.
    api(
        &s,
        "publish",
        json!({"channel": "news", "data": {"after": true}}),
    )
    .await;
    assert_eq!(stalled.push().await["pub"]["data"]["after"], true);
    s.shutdown().await;
}

#[tokio::test]
async fn client_pings_between_lent_writes_are_answered_and_the_stream_stays_whole() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "pinger").await;
    c.call(json!({"subscribe": {"channel": "news"}})).await;
    const N: u8 = 10;
    for seq in 0..N {
        c.send_message(Message::Ping(vec![seq].into())).await;
        api(
            &s,
            "publish",
            json!({"channel": "news", "data": {"seq": seq}}),
        )
        .await;
        tokio::time::sleep(SPACING).await;
    }
    let (mut pongs, mut pubs) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + WAIT;
    while (pongs.len() < N as usize || pubs.len() < N as usize)
        && tokio::time::Instant::now() < deadline
    {
        match c.next_message().await {
            Message::Pong(p) => pongs.push(p[0]),
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if let Some(seq) = v["push"]["pub"]["data"]["seq"].as_u64() {
                    pubs.push(seq as u8);
                }
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    let expected: Vec<u8> = (0..N).collect();
    assert_eq!(pongs, expected, "every ping answered, in order");
    assert_eq!(pubs, expected, "every publication once, in order");
    s.shutdown().await;
}

#[tokio::test]
async fn a_channel_publishing_faster_than_the_gap_goes_through_the_connections_tasks() {
    let s = TestServer::start(json!({})).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let (mut c, _) = Client::connected(&s.ws_url(), &format!("u{i}")).await;
        c.call(json!({"subscribe": {"channel": "busy"}})).await;
        clients.push(c);
    }
    let before = s.node.metrics.lent_writes.get();
    const N: u64 = 20;
    let started = std::time::Instant::now();
    for seq in 0..N {
        api(
            &s,
            "publish",
            json!({"channel": "busy", "data": {"seq": seq}}),
        )
        .await;
    }
    // At most one publication per gap may be lent (4 subscribers each).
    let gaps = 1 + started.elapsed().as_millis() as u64 / 80;
    for c in &mut clients {
        for seq in 0..N {
            assert_eq!(
                c.push().await["pub"]["data"]["seq"],
                seq,
                "in order, once each"
            );
        }
    }
    let lent = s.node.metrics.lent_writes.get() - before;
    assert!(
        lent <= 4 * gaps && gaps < N,
        "back-to-back publications go through the tasks: {lent} lent writes in {gaps} gaps"
    );
    s.shutdown().await;
}
