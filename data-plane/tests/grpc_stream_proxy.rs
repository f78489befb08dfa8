//! Subscribe stream proxies over real gRPC streams: a tonic server plays the tenant's backend
//! (`SubscribeUnidirectional` / `SubscribeBidirectional`), a real data plane and raw WebSocket
//! clients (JSON and Protobuf) check what the subscriber sees and what the backend receives —
//! the subscribe answer, publications for one subscriber only and in order, client publishes
//! going up a bidirectional stream, cancellation on unsubscribe and disconnect, the stream's end
//! and failure unsubscribing the client, a slow subscriber, and the egress rule of hosted
//! tenants.

mod common;
mod grpc_stream_support;

use bytes::Bytes;
use common::pb::PbClient;
use common::{api, token, Binary, Client, TestServer, SECRET, WAIT};
use grpc_stream_support::StreamBackend;
use rotor_data_plane::protocol::{Command, ConnectRequest, SubscribeRequest as PbSubscribe};
use rotor_data_plane::proxy::grpc::pb::*;
use serde_json::{json, Value};
use tonic::Status;

fn json_bytes(v: Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// `streams:` channels stream one way, `bidi:` ones both ways.
fn config(endpoint: &str) -> Value {
    json!({"channel": {
        "proxy": {"subscribe_stream": {"endpoint": endpoint, "timeout": "2s",
            "grpc": {"static_metadata": {"x-tenant": "t1"},
                     "credentials_key": "x-api-key", "credentials_value": "k1"}}},
        "namespaces": [
            {"name": "streams", "subscribe_stream_proxy_enabled": true},
            {"name": "bidi", "subscribe_stream_proxy_enabled": true,
             "subscribe_stream_proxy_bidirectional": true}
        ]
    }})
}

#[tokio::test]
async fn unidirectional_publications_reach_only_their_own_subscriber_in_order() {
    let mut backend = StreamBackend::start().await;
    let s = TestServer::start(config(&backend.endpoint())).await;
    let (mut ann, connected) = Client::connected(&s.ws_url(), "ann").await;
    let (mut bob, _) = Client::connected(&s.ws_url(), "bob").await;

    let id = ann
        .send(json!({"subscribe": {"channel": "streams:logs", "data": {"query": "error"}}}))
        .await;
    let ann_stream = backend.opened().await;
    let req = &ann_stream.request;
    assert!(!ann_stream.bidirectional);
    assert_eq!(
        (req.channel.as_str(), req.user.as_str(), req.client.as_str()),
        ("streams:logs", "ann", connected["client"].as_str().unwrap())
    );
    assert_eq!(
        (req.transport.as_str(), req.protocol.as_str()),
        ("websocket", "json")
    );
    assert_eq!(&req.data[..], br#"{"query":"error"}"#);
    let md = &ann_stream.metadata;
    assert_eq!(md.get("x-tenant").unwrap(), "t1");
    assert_eq!(
        md.get("x-api-key").unwrap(),
        "k1",
        "the per-call credentials"
    );
    ann_stream
        .answer(SubscribeResponse {
            result: Some(SubscribeResult {
                data: json_bytes(json!({"tailing": true})),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let reply = ann.reply(id).await;
    assert_eq!(
        reply["subscribe"]["data"],
        json!({"tailing": true}),
        "{reply}"
    );
    assert!(reply["subscribe"].get("recoverable").is_none(), "{reply}");

    // Bob subscribes to the same channel name: his own stream.
    let id = bob
        .send(json!({"subscribe": {"channel": "streams:logs"}}))
        .await;
    let bob_stream = backend.opened().await;
    assert_eq!(bob_stream.request.user, "bob");
    bob_stream.accept().await;
    assert!(bob.reply(id).await["subscribe"].is_object());

    for n in 0..20 {
        ann_stream.publish(&json_bytes(json!({"n": n}))).await;
    }
    for n in 0..20 {
        let push = ann.push().await;
        assert_eq!(push["channel"], "streams:logs");
        assert_eq!(push["pub"]["data"], json!({"n": n}), "in order: {push}");
        assert!(
            push["pub"].get("offset").is_none(),
            "no stream position: {push}"
        );
    }
    bob_stream.publish(br#"{"for":"bob"}"#).await;
    assert_eq!(
        bob.push().await["pub"]["data"],
        json!({"for": "bob"}),
        "Bob's first publication is his own: none of Ann's reached him"
    );

    // The server API still publishes to every subscriber of the channel (as in Centrifugo).
    let r = api(
        &s,
        "publish",
        json!({"channel": "streams:logs", "data": {"all": 1}}),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(ann.push().await["pub"]["data"], json!({"all": 1}));
    assert_eq!(bob.push().await["pub"]["data"], json!({"all": 1}));
}

#[tokio::test]
async fn a_protobuf_subscriber_gets_binary_stream_publications_as_they_are() {
    let mut backend = StreamBackend::start().await;
    let s = TestServer::start(config(&backend.endpoint())).await;
    let mut c = PbClient::open(&s.ws_url()).await;
    let r = c
        .call(Command {
            id: 1,
            connect: Some(ConnectRequest {
                token: token(json!({"sub": "7"})),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert!(r.connect.is_some());
    c.send(&[Command {
        id: 2,
        subscribe: Some(PbSubscribe {
            channel: "streams:bin".into(),
            data: Bytes::from_static(&[1, 2, 3]),
            ..Default::default()
        }),
        ..Default::default()
    }])
    .await;
    let stream = backend.opened().await;
    assert_eq!(stream.request.protocol, "protobuf");
    assert_eq!(&stream.request.data[..], &[1, 2, 3]);
    stream.accept().await;
    stream.publish(&[0, 159, 255]).await;
    let reply = c.next().await;
    assert_eq!(reply.id, 2);
    assert!(reply.subscribe.is_some());
    let push = c.next().await.push.expect("a push");
    assert_eq!(push.channel, "streams:bin");
    assert_eq!(&push.r#pub.expect("a publication").data[..], &[0, 159, 255]);
}

#[tokio::test]
async fn the_backends_error_disconnect_and_silence_answer_the_subscribe() {
    let mut backend = StreamBackend::start().await;
    let s = TestServer::start(config(&backend.endpoint())).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "ann").await;

    let id = c.send(json!({"subscribe": {"channel": "streams:a"}})).await;
    let mut stream = backend.opened().await;
    stream
        .answer(SubscribeResponse {
            error: Some(Error {
                code: 1403,
                message: "not your logs".into(),
                temporary: false,
            }),
            ..Default::default()
        })
        .await;
    let r = c.reply(id).await;
    assert_eq!(r["error"]["code"], 1403, "{r}");
    assert_eq!(r["error"]["message"], "not your logs", "{r}");
    stream.gone().await;

    // No answer within the proxy's timeout: error 100, and the stream is cancelled.
    let id = c.send(json!({"subscribe": {"channel": "streams:b"}})).await;
    let mut silent = backend.opened().await;
    let r = c.reply(id).await;
    assert_eq!(r["error"]["code"], 100, "{r}");
    silent.gone().await;

    // A first message that is not an answer is malformed: error 100.
    let id = c.send(json!({"subscribe": {"channel": "streams:c"}})).await;
    let odd = backend.opened().await;
    odd.publish(b"{}").await;
    assert_eq!(c.reply(id).await["error"]["code"], 100);

    let id = c.send(json!({"subscribe": {"channel": "streams:d"}})).await;
    let stream = backend.opened().await;
    stream
        .answer(SubscribeResponse {
            disconnect: Some(Disconnect {
                code: 4503,
                reason: "go away".into(),
            }),
            ..Default::default()
        })
        .await;
    let closed = c.closed().await;
    assert_eq!((closed.code, closed.reason.as_str()), (4503, "go away"));
    let _ = id;
}

#[tokio::test]
async fn bidirectional_publishes_go_up_the_stream_and_elsewhere_are_not_available() {
    let mut backend = StreamBackend::start().await;
    let s = TestServer::start(config(&backend.endpoint())).await;
    let (mut ann, _) = Client::connected(&s.ws_url(), "ann").await;
    let (mut bob, _) = Client::connected(&s.ws_url(), "bob").await;

    let id = ann
        .send(json!({"subscribe": {"channel": "bidi:echo"}}))
        .await;
    let mut stream = backend.opened().await;
    assert!(stream.bidirectional);
    assert_eq!(stream.request.channel, "bidi:echo");
    stream.accept().await;
    assert!(ann.reply(id).await["subscribe"].is_object());

    for n in 0..3 {
        let r = ann
            .call(json!({"publish": {"channel": "bidi:echo", "data": {"input": n}}}))
            .await;
        assert!(r["publish"].is_object(), "{r}");
    }
    for n in 0..3 {
        let up = stream.next_up().await;
        assert_eq!(up.data, json_bytes(json!({"input": n})));
    }
    // The backend answers down the same stream.
    stream.publish(br#"{"echo":2}"#).await;
    assert_eq!(ann.push().await["pub"]["data"], json!({"echo": 2}));

    // Not subscribed: no stream to publish into.
    let r = bob
        .call(json!({"publish": {"channel": "bidi:echo", "data": {"input": "x"}}}))
        .await;
    assert_eq!(r["error"]["code"], 108, "{r}");

    // A unidirectional stream takes no publishes.
    let id = ann
        .send(json!({"subscribe": {"channel": "streams:one-way"}}))
        .await;
    backend.opened().await.accept().await;
    ann.reply(id).await;
    let r = ann
        .call(json!({"publish": {"channel": "streams:one-way", "data": {}}}))
        .await;
    assert_eq!(r["error"]["code"], 108, "{r}");
}

#[tokio::test]
async fn unsubscribing_or_disconnecting_cancels_the_backend_stream() {
    let mut backend = StreamBackend::start().await;
    let s = TestServer::start(config(&backend.endpoint())).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "ann").await;

    for channel in ["streams:u", "bidi:u"] {
        let id = c.send(json!({"subscribe": {"channel": channel}})).await;
        let mut stream = backend.opened().await;
        stream.accept().await;
        c.reply(id).await;
        let r = c.call(json!({"unsubscribe": {"channel": channel}})).await;
        assert!(r["unsubscribe"].is_object(), "{r}");
        stream.gone().await;
    }

    let id = c.send(json!({"subscribe": {"channel": "streams:d"}})).await;
    let mut stream = backend.opened().await;
    stream.accept().await;
    c.reply(id).await;
    drop(c);
    stream.gone().await;
}

#[tokio::test]
async fn the_stream_ending_unsubscribes_with_2000_and_failing_with_2500() {
    let mut backend = StreamBackend::start().await;
    let s = TestServer::start(config(&backend.endpoint())).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "ann").await;

    let id = c.send(json!({"subscribe": {"channel": "streams:e"}})).await;
    let mut stream = backend.opened().await;
    stream.accept().await;
    c.reply(id).await;
    stream.publish(br#"{"last":true}"#).await;
    stream.end();
    assert_eq!(c.push().await["pub"]["data"], json!({"last": true}));
    let push = c.push().await;
    assert_eq!(push["channel"], "streams:e");
    assert_eq!(push["unsubscribe"]["code"], 2000, "{push}");
    assert_eq!(
        push["unsubscribe"]["reason"], "server unsubscribe",
        "{push}"
    );

    // Unsubscribed: the channel can be subscribed again, on a new stream.
    let id = c.send(json!({"subscribe": {"channel": "streams:e"}})).await;
    let mut stream = backend.opened().await;
    stream.accept().await;
    c.reply(id).await;
    stream.fail(Status::unavailable("backend restarting")).await;
    let push = c.push().await;
    assert_eq!(push["unsubscribe"]["code"], 2500, "{push}");
    assert_eq!(
        push["unsubscribe"]["reason"], "insufficient state",
        "{push}"
    );

    // The connection lives on.
    let r = c
        .call(json!({"presence_stats": {"channel": "streams:e"}}))
        .await;
    assert_eq!(r["error"]["code"], 108, "{r}");
}

/// A subscriber that stops reading while its backend keeps streaming: the connection's outbox
/// fills to `client.queue_max_size`, the client is disconnected as slow (3008) and the stream
/// is cancelled, so nothing grows without bound.
#[tokio::test]
async fn a_slow_stream_subscriber_is_disconnected_and_its_stream_cancelled() {
    let mut backend = StreamBackend::start().await;
    let mut cfg = config(&backend.endpoint());
    common::merge(&mut cfg, json!({"client": {"queue_max_size": 65536}}));
    let s = TestServer::start(cfg).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "slow").await;
    let id = c
        .send(json!({"subscribe": {"channel": "streams:firehose"}}))
        .await;
    let stream = backend.opened().await;
    stream.accept().await;
    c.reply(id).await;

    let payload = json_bytes(json!({"fill": "z".repeat(16 * 1024)}));
    let down = stream.down.clone().unwrap();
    let refused = tokio::time::timeout(WAIT * 4, async {
        for _ in 0..100_000 {
            let message = StreamSubscribeResponse {
                subscribe_response: None,
                publication: Some(Publication {
                    data: payload.clone(),
                    tags: Default::default(),
                }),
            };
            if down.send(Ok(message)).await.is_err() {
                return true;
            }
        }
        false
    })
    .await
    .expect("the backend's sends were never refused: the stream was not cancelled");
    assert!(
        refused,
        "1.6 GB went down one stream without the client reading"
    );
    assert_eq!(c.closed().await.code, 3008);
}

/// The attack: a hosted tenant (`ROTOR_EGRESS=public`) points its subscribe stream proxy at
/// the box itself. Nothing is dialled, the subscriber gets error 100, the refusal is logged.
#[tokio::test]
async fn a_hosted_tenants_stream_to_a_private_address_is_refused_and_logged() {
    let mut backend = StreamBackend::start().await;
    let port = backend.addr.port();
    for endpoint in [
        format!("grpc://127.0.0.1:{port}"),
        format!("grpc://localhost:{port}"),
    ] {
        let mut cfg = config(&endpoint);
        common::merge(
            &mut cfg,
            json!({"client": {"token": {"hmac_secret_key": SECRET}}}),
        );
        let process = Binary::listening(
            &cfg,
            &[("ROTOR_EGRESS", "public"), ("ROTOR_EGRESS_PORTS", "any")],
        )
        .await;
        let (mut c, _) = Client::connected(&process.ws_url(), "ann").await;
        let r = c
            .call(json!({"subscribe": {"channel": "streams:box"}}))
            .await;
        assert_eq!(r["error"]["code"], 100, "{endpoint}: {r}");
        let stderr = process.stop().await;
        assert!(
            stderr.contains("subscribe stream not opened") && stderr.contains("not public"),
            "{endpoint}: the refusal is logged: {stderr}"
        );
        assert!(
            backend.try_opened().is_none(),
            "{endpoint}: the backend was reached"
        );
    }
}

#[tokio::test]
async fn an_http_subscribe_stream_endpoint_is_refused_at_load_with_its_path() {
    let config = json!({"channel": {
        "proxy": {"subscribe_stream": {"endpoint": "http://127.0.0.1:1/stream"}},
        "namespaces": [{"name": "streams", "subscribe_stream_proxy_enabled": true}]
    }});
    let stderr = Binary::refused(&config, &[]).await;
    assert!(
        stderr.contains("channel.proxy.subscribe_stream.endpoint") && stderr.contains("grpc://"),
        "{stderr}"
    );
}

/// With `client.concurrency` the subscribe is authorised apart from the session and the
/// publish runs as concurrent work: the stream is still started, fed and cancelled the same.
#[tokio::test]
async fn streams_work_when_commands_run_concurrently() {
    let mut backend = StreamBackend::start().await;
    let mut cfg = config(&backend.endpoint());
    common::merge(&mut cfg, json!({"client": {"concurrency": 4}}));
    let s = TestServer::start(cfg).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "ann").await;
    let first = c.send(json!({"subscribe": {"channel": "bidi:one"}})).await;
    let second = c
        .send(json!({"subscribe": {"channel": "streams:two"}}))
        .await;
    let mut a = backend.opened().await;
    let mut b = backend.opened().await;
    if a.request.channel != "bidi:one" {
        std::mem::swap(&mut a, &mut b);
    }
    b.accept().await;
    a.accept().await;
    assert!(c.reply(first).await["subscribe"].is_object());
    assert!(c.reply(second).await["subscribe"].is_object());
    let r = c
        .call(json!({"publish": {"channel": "bidi:one", "data": {"up": 1}}}))
        .await;
    assert!(r["publish"].is_object(), "{r}");
    assert_eq!(a.next_up().await.data, json_bytes(json!({"up": 1})));
    b.publish(br#"{"down":1}"#).await;
    assert_eq!(c.push().await["pub"]["data"], json!({"down": 1}));
    c.call(json!({"unsubscribe": {"channel": "bidi:one"}}))
        .await;
    a.gone().await;
}

/// A payload the connection's encoding cannot carry (binary to a JSON client) is skipped and
/// counted, as any such publication is: the connection and the stream go on.
#[tokio::test]
async fn a_binary_publication_to_a_json_subscriber_is_skipped() {
    let mut backend = StreamBackend::start().await;
    let s = TestServer::start(config(&backend.endpoint())).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "ann").await;
    let id = c
        .send(json!({"subscribe": {"channel": "streams:bin"}}))
        .await;
    let stream = backend.opened().await;
    stream.accept().await;
    c.reply(id).await;
    stream.publish(&[0, 159, 255]).await;
    stream.publish(br#"{"after":1}"#).await;
    assert_eq!(c.push().await["pub"]["data"], json!({"after": 1}));
    assert_eq!(s.node.metrics.json_unwritable_dropped.get(), 1);
}

/// A hostile backend sending one huge message cannot make the process buffer it: a message
/// over 4 MiB fails the stream and the client is unsubscribed with 2500.
#[tokio::test]
async fn a_message_over_4_mib_fails_the_stream_with_2500() {
    let mut backend = StreamBackend::start().await;
    let s = TestServer::start(config(&backend.endpoint())).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "ann").await;
    let id = c
        .send(json!({"subscribe": {"channel": "streams:huge"}}))
        .await;
    let stream = backend.opened().await;
    stream.accept().await;
    c.reply(id).await;
    let huge = json_bytes(json!({"fill": "h".repeat(5 * 1024 * 1024)}));
    stream.publish(&huge).await;
    let push = c.push().await;
    assert_eq!(push["unsubscribe"]["code"], 2500, "{push}");
}
