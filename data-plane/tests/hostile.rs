//! Hostile input on the client protocol: every malformed or abusive frame gets its code, is
//! counted, and leaves the server and other connections unharmed.

mod common;

use common::{token, Client, TestServer};
use serde_json::json;

#[tokio::test]
async fn deeply_nested_json_never_overflows_the_stack() {
    let s = TestServer::start(json!({"channel": {"namespaces": [
        {"name": "strict", "allow_publish_for_client": true, "publication_data_format": "json"}
    ]}}))
    .await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    // Payloads are opaque: carried as raw bytes, never walked recursively (this one is
    // refused only for lack of permission, after its frame was decoded).
    c.send_raw(&format!(
        r#"{{"id":9,"publish":{{"channel":"news","data":{deep}}}}}"#
    ))
    .await;
    assert_eq!(c.reply(9).await["error"]["code"], 103);
    c.call(json!({"subscribe": {"channel": "news"}})).await;
    let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    c.send_raw(&format!(
        r#"{{"id":12,"publish":{{"channel":"news","data":{nested}}}}}"#
    ))
    .await;
    assert_eq!(c.reply(12).await["publish"], json!({}));
    assert_eq!(c.push().await["pub"]["data"].to_string(), nested);
    // JSON validation walks the payload iteratively: a deep but valid document passes, an
    // unbalanced one is refused.
    c.send_raw(&format!(
        r#"{{"id":10,"publish":{{"channel":"strict:x","data":{deep}}}}}"#
    ))
    .await;
    assert_eq!(c.reply(10).await["publish"], json!({}));
    let unbalanced = format!("{}1{}", "[".repeat(5000), "]".repeat(4999));
    c.send_raw(&format!(
        r#"{{"id":13,"publish":{{"channel":"strict:x","data":{unbalanced}}}}}"#
    ))
    .await;
    assert_eq!(
        c.closed().await.code,
        3501,
        "an unbalanced frame is malformed"
    );
    let (mut other, _) = Client::connected(&s.ws_url(), "2").await;
    assert!(other.call(json!({"subscribe": {"channel": "news"}})).await["subscribe"].is_object());
}

#[tokio::test]
async fn invalid_utf8_and_binary_garbage_close_with_3501() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    let mut frame = br#"{"id":2,"subscribe":{"channel":"ab"#.to_vec();
    frame.extend_from_slice(&[0xff, 0xfe]);
    frame.extend_from_slice(br#""}}"#);
    c.send_binary(frame).await;
    assert_eq!(c.closed().await.code, 3501);
    let mut c = Client::open(&s.ws_url()).await;
    c.send_binary(vec![0x00, 0xff, 0x13, 0x37]).await;
    assert_eq!(c.closed().await.code, 3501);
    assert_eq!(s.node.metrics.malformed_frames.get(), 2);
}

#[tokio::test]
async fn ten_thousand_subscribes_on_one_connection_stop_at_the_channel_limit() {
    let s = TestServer::start(json!({"client": {"channel_limit": 100}})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    // 10 000 subscribes in ten frames of a thousand commands each.
    let mut id = 100;
    for batch in 0..10 {
        let frame: Vec<String> = (0..1000)
            .map(|i| {
                id += 1;
                json!({"id": id, "subscribe": {"channel": format!("c{batch}-{i}")}}).to_string()
            })
            .collect();
        c.send_raw(&frame.join("\n")).await;
    }
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..10_000 {
        let r = c.read().await.expect("connection stays open");
        if r.get("subscribe").is_some() {
            ok += 1;
        } else if r["error"]["code"] == 106 {
            limited += 1;
        }
    }
    assert_eq!((ok, limited), (100, 9_900));
    assert_eq!(s.node.hub.counts().1, 100);
}

#[tokio::test]
async fn a_frame_with_too_many_commands_is_refused() {
    let s = TestServer::start(json!({"websocket": {"message_size_limit": 1_000_000}})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    let frame: Vec<String> = (0..1025)
        .map(|i| json!({"id": i + 2, "presence_stats": {"channel": "x"}}).to_string())
        .collect();
    c.send_raw(&frame.join("\n")).await;
    assert_eq!(c.closed().await.code, 3501);
}

#[tokio::test]
async fn a_flood_of_frames_from_one_client_does_not_stall_another() {
    let s = TestServer::start(json!({})).await;
    let (mut flooder, _) = Client::connected(&s.ws_url(), "f").await;
    let (mut calm, _) = Client::connected(&s.ws_url(), "c").await;
    calm.call(json!({"subscribe": {"channel": "news"}})).await;
    for i in 0..2000 {
        flooder
            .send_raw(&json!({"id": i + 10, "presence_stats": {"channel": "x"}}).to_string())
            .await;
    }
    let (mut publisher, _) = Client::connected(&s.ws_url(), "p").await;
    publisher
        .call(json!({"subscribe": {"channel": "news"}}))
        .await;
    publisher
        .call(json!({"publish": {"channel": "news", "data": {"still": "served"}}}))
        .await;
    assert_eq!(calm.push().await["pub"]["data"]["still"], "served");
}

#[tokio::test]
async fn channel_names_with_non_ascii_or_control_bytes_are_bad_requests() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "1").await;
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "naïve"}})).await["error"]["code"],
        107
    );
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "tab\there"}})).await["subscribe"],
        json!({}),
        "ASCII control characters are ASCII"
    );
    c.send(json!({"connect": {"token": token(json!({"sub": "x"}))}}))
        .await;
    assert_eq!(c.closed().await.code, 3501, "a second connect");
}

/// A Protobuf client's binary publication cannot be written to a JSON connection: the JSON
/// subscribers go without it (counted) instead of being closed with 3506, keep their stream
/// position without a false insufficient state, and history leaves it out.
#[tokio::test]
async fn a_binary_publication_never_disconnects_json_subscribers() {
    use common::pb::PbClient;
    use rotor_data_plane::protocol::{Command, ConnectRequest, PublishRequest, SubscribeRequest};

    let s = TestServer::start(json!({})).await;
    let (mut reader, _) = Client::connected(&s.ws_url(), "json").await;
    let r = reader
        .call(json!({"subscribe": {"channel": "chat:1"}}))
        .await;
    assert!(r["subscribe"].is_object(), "{r}");
    let mut pb = PbClient::open(&s.ws_url()).await;
    let connect = Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: token(json!({"sub": "pb"})),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(pb.call(connect).await.connect.is_some());
    let subscribe = Command {
        id: 2,
        subscribe: Some(SubscribeRequest {
            channel: "chat:1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(pb.call(subscribe).await.subscribe.is_some());
    let publish = |id: u32, data: &[u8]| Command {
        id,
        publish: Some(PublishRequest {
            channel: "chat:1".into(),
            data: bytes::Bytes::copy_from_slice(data),
        }),
        ..Default::default()
    };
    let r = pb.call(publish(3, &[0xff])).await;
    assert!(r.error.is_none() && r.publish.is_some(), "{r:?}");
    let r = pb.call(publish(4, br#"{"n":2}"#)).await;
    assert!(r.error.is_none() && r.publish.is_some(), "{r:?}");

    let push = loop {
        let push = reader.push().await;
        if push.get("pub").is_some() {
            break push;
        }
        assert!(push.get("disconnect").is_none(), "{push}");
    };
    assert_eq!(push["pub"]["data"], json!({"n": 2}), "{push}");
    assert_eq!(push["pub"]["offset"], 2, "{push}");
    assert_eq!(s.node.metrics.json_unwritable_dropped.get(), 1);

    // Still connected; history and recovery leave the binary publication out.
    let r = reader
        .call(json!({"history": {"channel": "chat:1", "limit": -1}}))
        .await;
    let pubs = r["history"]["publications"].as_array().expect("history");
    assert_eq!(pubs.len(), 1, "{r}");
    assert_eq!(pubs[0]["offset"], 2, "{r}");
    let (mut late, _) = Client::connected(&s.ws_url(), "late").await;
    let epoch = r["history"]["epoch"].clone();
    let r = late
        .call(json!({"subscribe": {"channel": "chat:1", "recover": true, "offset": 0, "epoch": epoch}}))
        .await;
    assert_eq!(r["subscribe"]["recovered"], true, "{r}");
    assert_eq!(
        r["subscribe"]["publications"].as_array().map(Vec::len),
        Some(1),
        "{r}"
    );
    assert_eq!(s.node.metrics.json_unwritable_dropped.get(), 3);
}

/// Channels a client lists in its connect are its own choice like a `subscribe`'s, so the
/// same `channel.max_length` holds for them.
#[tokio::test]
async fn channels_listed_at_connect_are_held_to_the_channel_length_limit() {
    let s = TestServer::start(json!({"channel": {"max_length": 16}})).await;
    let long = "x".repeat(17);
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(
            json!({"connect": {"token": token(json!({"sub": "1"})), "subs": {long.as_str(): {}}}}),
        )
        .await;
    assert_eq!(r["error"]["code"], 107, "{r}");
    assert_eq!(s.node.hub.num_subscribers(&long), 0);
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(
            json!({"connect": {"token": token(json!({"sub": "1"})), "subs": {"x".repeat(16): {}}}}),
        )
        .await;
    assert!(r["connect"]["subs"]["x".repeat(16)].is_object(), "{r}");
}

/// The attack: clients and the server API share the tenant's publish rate, so one end user
/// publishing as fast as it may took every token and the customer's backend got 111 for its
/// own publications. Clients now stop short of the last quarter of the bucket, which only the
/// server API takes.
#[tokio::test]
async fn an_end_user_publishing_all_it_may_cannot_starve_the_backends_publications() {
    // Four a second: three for everyone, one only for the API (one token refills in 250 ms,
    // far longer than the calls below take).
    let s = TestServer::start(json!({"rotor": {"publish_rate_limit": 4}})).await;
    let (mut user, _) = Client::connected(&s.ws_url(), "u").await;
    user.call(json!({"subscribe": {"channel": "news"}})).await;
    let mut codes = Vec::new();
    for n in 0..4 {
        let r = user
            .call(json!({"publish": {"channel": "news", "data": {"n": n}}}))
            .await;
        codes.push(r["error"]["code"].as_u64());
    }
    assert_eq!(
        codes,
        [None, None, None, Some(111)],
        "the client stops at the reserve"
    );
    let r = common::api(
        &s,
        "publish",
        json!({"channel": "news", "data": {"from": "backend"}}),
    )
    .await;
    assert!(
        r["result"].is_object(),
        "the backend's publication goes through: {r}"
    );
    let r = common::api(
        &s,
        "publish",
        json!({"channel": "news", "data": {"from": "backend"}}),
    )
    .await;
    assert_eq!(
        r["error"]["code"], 111,
        "and the plan's rate still binds it: {r}"
    );
}
