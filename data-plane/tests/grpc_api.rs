//! The gRPC server API against an in-process node, with a tonic client generated from the same
//! proto: every method reaches connections as the HTTP API does, a missing or wrong key is
//! UNAUTHENTICATED, a publish-only key publishes and nothing else, `grpc_api.key` replaces the
//! HTTP keys, PRO methods answer 104, TLS works, and for the same bad input the error code and
//! message are the HTTP API's.

mod common;

use std::time::Duration;

use common::{api, Binary, Client, TestServer, WAIT};
use rotor_data_plane::grpc_api::proto::centrifugo_api_client::CentrifugoApiClient;
use rotor_data_plane::grpc_api::proto::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A node with its HTTP listener (from [`TestServer`]) and its gRPC API.
struct Grpc {
    s: TestServer,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
}

impl Grpc {
    /// The node runs `overrides` with `grpc_api.enabled` (calls are refused without it).
    async fn start(overrides: Value) -> Self {
        let mut config = json!({"grpc_api": {"enabled": true}});
        common::merge(&mut config, overrides);
        let s = TestServer::start(config).await;
        let api = s.node.config.load().tenant.grpc_api.clone();
        let server = rotor_data_plane::grpc_api::server(&api, s.node.clone()).unwrap();
        let listener = rotor_data_plane::grpc_api::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(rotor_data_plane::grpc_api::serve(
            server,
            listener,
            stop.clone(),
        ));
        Self { s, addr, stop }
    }

    async fn client(&self) -> CentrifugoApiClient<Channel> {
        let channel = tokio::time::timeout(
            WAIT,
            Channel::from_shared(format!("http://{}", self.addr))
                .unwrap()
                .connect(),
        )
        .await
        .expect("connect timeout")
        .expect("connect");
        CentrifugoApiClient::new(channel)
    }
}

impl Drop for Grpc {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `message` with `authorization: apikey <key>`.
fn keyed<T>(key: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("apikey {key}").parse().unwrap());
    r.set_timeout(WAIT);
    r
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Awaits a call, bounded.
async fn done<T>(
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("gRPC call timed out")
        .map(tonic::Response::into_inner)
}

fn publish_req(channel: &str, data: &str) -> PublishRequest {
    PublishRequest {
        channel: channel.into(),
        data: data.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_method_reaches_connections_and_answers_like_the_http_api() {
    let g = Grpc::start(json!({})).await;
    let mut c = g.client().await;
    let (mut ws, _) = Client::connected(&g.s.ws_url(), "u1").await;
    let key = "api-key";

    // Server-side subscribe, then a publication the connection receives.
    let r = done(c.subscribe(keyed(
        key,
        SubscribeRequest {
            user: "u1".into(),
            channel: "chat:g".into(),
            data: br#"{"welcome":true}"#.to_vec(),
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    assert!(r.error.is_none() && r.result.is_some(), "{r:?}");
    let push = ws.push().await;
    assert_eq!(push["channel"], "chat:g");
    assert_eq!(push["subscribe"]["data"], json!({"welcome": true}));
    assert_eq!(ws.push().await["join"]["info"]["user"], "u1");

    let r = done(c.publish(keyed(key, publish_req("chat:g", r#"{"n":1}"#))))
        .await
        .unwrap();
    let result = r.result.expect("publish result");
    assert_eq!(result.offset, 1);
    assert!(!result.epoch.is_empty());
    assert_eq!(ws.push().await["pub"]["data"], json!({"n": 1}));

    // Data that is not JSON is published as binary (as `b64data` over HTTP) and comes back
    // from history byte for byte.
    let r = done(c.publish(keyed(
        key,
        PublishRequest {
            channel: "chat:bin".into(),
            data: vec![0xff, 0x00, 0xfe],
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    assert!(r.error.is_none(), "{r:?}");
    let r = done(c.history(keyed(
        key,
        HistoryRequest {
            channel: "chat:bin".into(),
            limit: -1,
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    assert_eq!(
        r.result.unwrap().publications[0].data,
        vec![0xff, 0x00, 0xfe]
    );
    let http = api(&g.s, "history", json!({"channel": "chat:bin", "limit": -1})).await;
    assert_eq!(http["result"]["publications"][0]["b64data"], "/wD+");

    let r = done(c.broadcast(keyed(
        key,
        BroadcastRequest {
            channels: vec!["chat:g".into(), "nope:x".into()],
            data: br#"{"n":2}"#.to_vec(),
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    let responses = r.result.unwrap().responses;
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].result.as_ref().unwrap().offset, 2);
    assert_eq!(
        responses[1].error.as_ref().unwrap().code,
        102,
        "unknown namespace"
    );
    assert_eq!(ws.push().await["pub"]["data"], json!({"n": 2}));

    let r = done(c.history(keyed(
        key,
        HistoryRequest {
            channel: "chat:g".into(),
            limit: -1,
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    let h = r.result.unwrap();
    assert_eq!(h.offset, 2);
    let data: Vec<Value> = h
        .publications
        .iter()
        .map(|p| serde_json::from_slice(&p.data).unwrap())
        .collect();
    assert_eq!(data, vec![json!({"n": 1}), json!({"n": 2})]);
    assert_eq!(h.publications[1].offset, 2);

    let r = done(c.presence(keyed(
        key,
        PresenceRequest {
            channel: "chat:g".into(),
        },
    )))
    .await
    .unwrap();
    let presence = r.result.unwrap().presence;
    assert_eq!(presence.len(), 1);
    assert_eq!(presence.values().next().unwrap().user, "u1");

    let r = done(c.presence_stats(keyed(
        key,
        PresenceStatsRequest {
            channel: "chat:g".into(),
        },
    )))
    .await
    .unwrap();
    let stats = r.result.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (1, 1));

    let r = done(c.channels(keyed(
        key,
        ChannelsRequest {
            pattern: "chat:*".into(),
        },
    )))
    .await
    .unwrap();
    assert_eq!(r.result.unwrap().channels["chat:g"].num_clients, 1);

    let r = done(c.info(keyed(key, InfoRequest {}))).await.unwrap();
    let nodes = r.result.unwrap().nodes;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].num_clients, 1);
    assert_eq!(nodes[0].uid, g.s.node.id);

    let r = done(c.history_remove(keyed(
        key,
        HistoryRemoveRequest {
            channel: "chat:g".into(),
        },
    )))
    .await
    .unwrap();
    assert!(r.error.is_none() && r.result.is_some(), "{r:?}");
    let r = done(c.history(keyed(
        key,
        HistoryRequest {
            channel: "chat:g".into(),
            limit: -1,
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    assert!(r.result.unwrap().publications.is_empty());

    let r = done(c.rpc(keyed(
        key,
        RpcRequest {
            method: "m".into(),
            params: b"{}".to_vec(),
        },
    )))
    .await
    .unwrap();
    assert_eq!(r.error.unwrap().code, 108, "no RPC handler: not available");

    // A batch: each command by its method, an empty command is 104.
    let r = done(c.batch(keyed(
        key,
        BatchRequest {
            commands: vec![
                Command {
                    publish: Some(publish_req("chat:g", r#"{"n":3}"#)),
                    ..Default::default()
                },
                Command {
                    presence_stats: Some(PresenceStatsRequest {
                        channel: "chat:g".into(),
                    }),
                    ..Default::default()
                },
                Command::default(),
            ],
            parallel: false,
        },
    )))
    .await
    .unwrap();
    assert_eq!(r.replies.len(), 3);
    assert!(r.replies[0].publish.is_some(), "{:?}", r.replies[0]);
    assert_eq!(r.replies[1].presence_stats.as_ref().unwrap().num_clients, 1);
    assert_eq!(r.replies[2].error.as_ref().unwrap().code, 104);
    assert_eq!(ws.push().await["pub"]["data"], json!({"n": 3}));

    let r = done(c.unsubscribe(keyed(
        key,
        UnsubscribeRequest {
            user: "u1".into(),
            channel: "chat:g".into(),
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(ws.push().await["unsubscribe"]["code"], 2000);

    let r = done(c.refresh(keyed(
        key,
        RefreshRequest {
            user: "u1".into(),
            expire_at: common::now() + 100,
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(ws.push().await["refresh"]["expires"], true);

    let r = done(c.disconnect(keyed(
        key,
        DisconnectRequest {
            user: "u1".into(),
            disconnect: Some(Disconnect {
                code: 4500,
                reason: "bye".into(),
            }),
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    assert!(r.error.is_none(), "{r:?}");
    let closed = ws.closed().await;
    assert_eq!((closed.code, closed.reason.as_str()), (4500, "bye"));

    // Counted as the HTTP API counts its calls (history: three over gRPC, one over HTTP).
    assert_eq!(g.s.node.metrics.api_calls.get("publish"), 3);
    assert_eq!(g.s.node.metrics.api_calls.get("history"), 4);
    assert_eq!(g.s.node.metrics.api_calls.get("info"), 1);
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_unauthenticated() {
    let g = Grpc::start(json!({})).await;
    let mut c = g.client().await;
    let status = done(c.info(Request::new(InfoRequest {})))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = done(c.publish(keyed("wrong", publish_req("chat:a", "{}"))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut bearer = Request::new(InfoRequest {});
    bearer
        .metadata_mut()
        .insert("authorization", "bearer api-key".parse().unwrap());
    let status = done(c.info(bearer)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = done(c.get_user_status(Request::new(ProRequest {})))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "PRO methods too");
    assert_eq!(g.s.node.metrics.api_calls.get("publish"), 0);
}

#[tokio::test]
async fn grpc_api_key_replaces_the_http_keys() {
    let g = Grpc::start(json!({"grpc_api": {"key": "grpc-key"}})).await;
    let mut c = g.client().await;
    let status = done(c.info(keyed("api-key", InfoRequest {})))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let r = done(c.info(keyed("grpc-key", InfoRequest {})))
        .await
        .unwrap();
    assert!(r.error.is_none());
}

#[tokio::test]
async fn a_publish_only_key_publishes_and_nothing_else() {
    let g = Grpc::start(json!({"http_api": {
        "key": "",
        "keys": [
            {"id": "key_pub", "sha256": digest("rk_pub"), "scope": "publish"},
            {"id": "key_all", "sha256": digest("rk_all"), "scope": "all"},
        ],
    }}))
    .await;
    let mut c = g.client().await;
    let r = done(c.publish(keyed("rk_pub", publish_req("chat:k", r#"{"a":1}"#))))
        .await
        .unwrap();
    assert!(r.error.is_none(), "{r:?}");
    let r = done(c.presence(keyed(
        "rk_pub",
        PresenceRequest {
            channel: "chat:k".into(),
        },
    )))
    .await
    .unwrap();
    assert_eq!(r.error.unwrap().code, 103);
    let r = done(c.batch(keyed(
        "rk_pub",
        BatchRequest {
            commands: vec![
                Command {
                    publish: Some(publish_req("chat:k", r#"{"a":2}"#)),
                    ..Default::default()
                },
                Command {
                    info: Some(InfoRequest {}),
                    ..Default::default()
                },
            ],
            parallel: true,
        },
    )))
    .await
    .unwrap();
    assert!(r.replies[0].publish.is_some());
    assert_eq!(r.replies[1].error.as_ref().unwrap().code, 103);
    let r = done(c.presence(keyed(
        "rk_all",
        PresenceRequest {
            channel: "chat:k".into(),
        },
    )))
    .await
    .unwrap();
    assert!(r.error.is_none(), "{r:?}");
}

#[tokio::test]
async fn pro_methods_answer_method_not_found() {
    let g = Grpc::start(json!({})).await;
    let mut c = g.client().await;
    let r = done(c.connections(keyed("api-key", ProRequest {})))
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, 104);
    let r = done(c.device_register(keyed("api-key", ProRequest {})))
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, 104);
}

/// The error of a gRPC reply and of the HTTP API's reply to the same request.
fn same_error(grpc: Option<Error>, http: &Value) {
    let grpc = grpc.expect("gRPC answered an error");
    let http = &http["error"];
    assert_eq!(
        (grpc.code, grpc.message.as_str()),
        (
            http["code"].as_u64().unwrap() as u32,
            http["message"].as_str().unwrap()
        ),
        "gRPC and HTTP disagree"
    );
}

#[tokio::test]
async fn errors_are_the_http_apis_for_the_same_bad_input() {
    let g = Grpc::start(json!({})).await;
    let mut c = g.client().await;
    let key = "api-key";
    // No channel; no data; an unknown namespace.
    for (channel, data) in [("", r#"{"a":1}"#), ("chat:e", ""), ("nope:e", "{}")] {
        let r = done(c.publish(keyed(key, publish_req(channel, data))))
            .await
            .unwrap();
        let mut body = json!({"channel": channel});
        if !data.is_empty() {
            body["data"] = serde_json::from_str(data).unwrap();
        }
        same_error(r.error, &api(&g.s, "publish", body).await);
    }
    // Presence and history where the namespace has neither.
    let r = done(c.presence(keyed(
        key,
        PresenceRequest {
            channel: "locked:x".into(),
        },
    )))
    .await
    .unwrap();
    same_error(
        r.error,
        &api(&g.s, "presence", json!({"channel": "locked:x"})).await,
    );
    let r = done(c.history(keyed(
        key,
        HistoryRequest {
            channel: "locked:x".into(),
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    same_error(
        r.error,
        &api(&g.s, "history", json!({"channel": "locked:x"})).await,
    );
    // A reverse history without a position.
    let r = done(c.history(keyed(
        key,
        HistoryRequest {
            channel: "chat:e".into(),
            reverse: true,
            since: Some(StreamPosition {
                offset: 0,
                epoch: "x".into(),
            }),
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    same_error(
        r.error,
        &api(
            &g.s,
            "history",
            json!({"channel": "chat:e", "reverse": true, "since": {"offset": 0, "epoch": "x"}}),
        )
        .await,
    );
    // Empty broadcast; a disconnect reason past 123 bytes.
    let r = done(c.broadcast(keyed(key, BroadcastRequest::default())))
        .await
        .unwrap();
    same_error(
        r.error,
        &api(&g.s, "broadcast", json!({"channels": []})).await,
    );
    let reason = "x".repeat(200);
    let r = done(c.disconnect(keyed(
        key,
        DisconnectRequest {
            user: "u".into(),
            disconnect: Some(Disconnect {
                code: 4000,
                reason: reason.clone(),
            }),
            ..Default::default()
        },
    )))
    .await
    .unwrap();
    same_error(
        r.error,
        &api(
            &g.s,
            "disconnect",
            json!({"user": "u", "disconnect": {"code": 4000, "reason": reason}}),
        )
        .await,
    );
}

#[tokio::test]
async fn requests_past_max_receive_message_size_are_refused() {
    let g = Grpc::start(json!({"grpc_api": {"max_receive_message_size": 1024}})).await;
    let mut c = g.client().await;
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(4096));
    let status = done(c.publish(keyed("api-key", publish_req("chat:b", &big))))
        .await
        .unwrap_err();
    // tonic says OUT_OF_RANGE where grpc-go says RESOURCE_EXHAUSTED.
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    let r = done(c.publish(keyed("api-key", publish_req("chat:b", r#"{"x":1}"#))))
        .await
        .unwrap();
    assert!(r.error.is_none());
}

#[tokio::test]
async fn tls_serves_the_api_with_the_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let g = Grpc::start(json!({"grpc_api": {"tls": {
        "enabled": true,
        "cert_pem": cert_pem,
        "key_pem": cert.key_pair.serialize_pem(),
    }}}))
    .await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = tokio::time::timeout(
        WAIT,
        Channel::from_shared(format!("https://{}", g.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect(),
    )
    .await
    .expect("connect timeout")
    .expect("TLS connect");
    let mut c = CentrifugoApiClient::new(channel);
    let r = done(c.info(keyed("api-key", InfoRequest {})))
        .await
        .unwrap();
    assert_eq!(r.result.unwrap().nodes.len(), 1);
    // A plaintext client cannot talk to it.
    let plain = Channel::from_shared(format!("http://{}", g.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    if let Ok(Ok(channel)) = tokio::time::timeout(WAIT, plain.connect()).await {
        let mut c = CentrifugoApiClient::new(channel);
        assert!(done(c.info(keyed("api-key", InfoRequest {})))
            .await
            .is_err());
    }
}

#[tokio::test]
async fn unusable_tls_material_stops_the_binary_at_start_naming_the_option() {
    let bad_pem = json!({"http_api": {"key": "k"}, "grpc_api": {"enabled": true, "port": 0, "tls": {
        "enabled": true,
        "cert_pem": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
        "key_pem": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
    }}});
    let stderr = Binary::refused(&bad_pem, &[]).await;
    assert!(
        stderr.contains("grpc_api.tls: the certificate or key is not usable"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("nope"),
        "the material is never shown: {stderr}"
    );
    let missing = json!({"http_api": {"key": "k"}, "grpc_api": {"enabled": true, "port": 0, "tls": {
        "enabled": true,
        "cert_pem_file": "/nonexistent/rotor-test/c.pem",
        "key_pem_file": "/nonexistent/rotor-test/k.pem",
    }}});
    let stderr = Binary::refused(&missing, &[]).await;
    assert!(
        stderr.contains("grpc_api.tls.cert_pem_file: cannot read"),
        "{stderr}"
    );
}

/// Rotor's `exclude` (field 1000 of Publish and Broadcast, which Centrifugo's stubs leave out)
/// keeps the publication from whom it names, as the HTTP API's does; none named is 107.
#[tokio::test]
async fn exclude_keeps_the_publication_from_whom_it_names() {
    let g = Grpc::start(json!({})).await;
    let mut c = g.client().await;
    let key = "api-key";
    let mut clients = Vec::new();
    for user in ["u1", "u2"] {
        let (ws, _) = Client::connected(&g.s.ws_url(), user).await;
        let r = done(c.subscribe(keyed(
            key,
            SubscribeRequest {
                user: user.into(),
                channel: "plain".into(),
                ..Default::default()
            },
        )))
        .await
        .unwrap();
        assert!(r.error.is_none(), "{r:?}");
        clients.push(ws);
    }
    for ws in &mut clients {
        assert_eq!(ws.push().await["channel"], "plain");
    }
    let mut excluded = publish_req("plain", r#"{"n":1}"#);
    excluded.exclude = Some(Exclude {
        user: "u1".into(),
        ..Default::default()
    });
    let r = done(c.publish(keyed(key, excluded))).await.unwrap();
    assert!(r.error.is_none(), "{r:?}");
    let mut broadcast = BroadcastRequest {
        channels: vec!["plain".into()],
        data: br#"{"n":2}"#.to_vec(),
        ..Default::default()
    };
    broadcast.exclude = Some(Exclude {
        user: "u2".into(),
        ..Default::default()
    });
    let r = done(c.broadcast(keyed(key, broadcast))).await.unwrap();
    assert!(r.error.is_none(), "{r:?}");
    done(c.publish(keyed(key, publish_req("plain", r#"{"n":3}"#))))
        .await
        .unwrap();
    let [u1, u2] = &mut clients[..] else {
        unreachable!()
    };
    assert_eq!(u1.push().await["pub"]["data"], json!({"n": 2}));
    assert_eq!(u1.push().await["pub"]["data"], json!({"n": 3}));
    assert_eq!(u2.push().await["pub"]["data"], json!({"n": 1}));
    assert_eq!(u2.push().await["pub"]["data"], json!({"n": 3}));

    let mut nobody = publish_req("plain", r#"{"n":4}"#);
    nobody.exclude = Some(Exclude::default());
    let r = done(c.publish(keyed(key, nobody))).await.unwrap();
    assert_eq!(r.error.expect("refused").code, 107);
}
