//! gRPC proxies over real gRPC: a tonic server plays the tenant's backend (Centrifugo's
//! `CentrifugoProxy` service), a real data plane and raw WebSocket clients check what the
//! client sees and what the backend receives — every proxy kind, the backend's errors and
//! disconnects, timeouts, the metadata allow-list, TLS, and the egress rule of hosted tenants.

mod common;
mod grpc_proxy_support;

use bytes::Bytes;
use common::{api, now, token, Binary, Client, TestServer};
use grpc_proxy_support::{GrpcBackend, Reply, Req};
use rotor_data_plane::proxy::grpc::pb::*;
use serde_json::{json, Value};
use tonic::Status;

fn connect_result(user: &str) -> Reply {
    Reply::Connect(ConnectResponse {
        result: Some(ConnectResult {
            user: user.into(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn json_bytes(v: Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

#[tokio::test]
async fn a_grpc_connect_proxy_names_the_user_with_native_bytes_and_subscribes_its_channels() {
    let mut backend = GrpcBackend::start(|_| {
        Reply::Connect(ConnectResponse {
            result: Some(ConnectResult {
                user: "56".into(),
                info: json_bytes(json!({"name": "Ann"})),
                data: json_bytes(json!({"welcome": true})),
                channels: vec!["news".into(), "chat:room".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
    })
    .await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.endpoint()
    }}}}))
    .await;
    let mut c = Client::open(&s.ws_url()).await;
    let reply = c
        .call(json!({"connect": {"data": {"hello": 1}, "name": "js", "version": "5.0.0"}}))
        .await;
    let result = &reply["connect"];
    assert_eq!(result["data"], json!({"welcome": true}), "{reply}");
    assert!(result["subs"]["news"].is_object(), "{reply}");
    assert!(result["subs"]["chat:room"].is_object(), "{reply}");

    let Req::Connect(req) = backend.call().await.req else {
        panic!("not a connect call")
    };
    assert_eq!(req.client, result["client"].as_str().unwrap());
    assert_eq!(
        (
            req.transport.as_str(),
            req.protocol.as_str(),
            req.encoding.as_str()
        ),
        ("websocket", "json", "json")
    );
    assert_eq!((req.name.as_str(), req.version.as_str()), ("js", "5.0.0"));
    assert_eq!(&req.data[..], br#"{"hello":1}"#, "the payload's own bytes");
    assert!(req.b64data.is_empty());

    let presence = api(&s, "presence", json!({"channel": "chat:room"})).await;
    let entry = &presence["result"]["presence"][result["client"].as_str().unwrap()];
    assert_eq!(entry["user"], "56");
    assert_eq!(entry["conn_info"], json!({"name": "Ann"}));
}

#[tokio::test]
async fn grpc_errors_and_disconnects_pass_through_and_failures_become_error_100() {
    let backend = GrpcBackend::start(|req| {
        let Req::Connect(r) = req else {
            return Reply::Status(Status::internal("?"));
        };
        let case: Value = serde_json::from_slice(&r.data).unwrap();
        match case["case"].as_str() {
            Some("error") => Reply::Connect(ConnectResponse {
                error: Some(Error {
                    code: 1000,
                    message: "who are you".into(),
                    temporary: false,
                }),
                ..Default::default()
            }),
            Some("disconnect") => Reply::Connect(ConnectResponse {
                // A disconnect wins over an error.
                disconnect: Some(Disconnect {
                    code: 4501,
                    reason: "go away".into(),
                }),
                error: Some(Error {
                    code: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            Some("bad disconnect") => Reply::Connect(ConnectResponse {
                disconnect: Some(Disconnect {
                    code: 1000,
                    reason: "not a code".into(),
                }),
                ..Default::default()
            }),
            _ => Reply::Status(Status::unavailable("backend is down")),
        }
    })
    .await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.endpoint()
    }}}}))
    .await;
    let connect = |case: &str| json!({"connect": {"data": {"case": case}}});

    let mut c = Client::open(&s.ws_url()).await;
    let reply = c.call(connect("error")).await;
    assert_eq!(
        reply["error"],
        json!({"code": 1000, "message": "who are you"}),
        "{reply}"
    );

    let mut c = Client::open(&s.ws_url()).await;
    c.send(connect("disconnect")).await;
    let closed = c.closed().await;
    assert_eq!((closed.code, closed.reason.as_str()), (4501, "go away"));

    for case in ["bad disconnect", "status"] {
        let mut c = Client::open(&s.ws_url()).await;
        let reply = c.call(connect(case)).await;
        assert_eq!(reply["error"]["code"], 100, "{case}: {reply}");
        assert_eq!(reply["error"]["temporary"], true, "{case}: {reply}");
    }
}

#[tokio::test]
async fn a_hanging_grpc_backend_gives_error_100_at_the_proxy_timeout() {
    let mut backend = GrpcBackend::start(|req| match req {
        Req::Connect(r) if &r.data[..] == b"\"hang\"" => Reply::Hang,
        _ => connect_result("quick"),
    })
    .await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.endpoint(), "timeout": "500ms"
    }}}}))
    .await;
    let mut slow = Client::open(&s.ws_url()).await;
    let slow_id = slow.send(json!({"connect": {"data": "hang"}})).await;
    backend.call().await;
    // Another client is answered while the first waits.
    let mut quick = Client::open(&s.ws_url()).await;
    let r = quick.call(json!({"connect": {"data": "go"}})).await;
    assert!(r["connect"].is_object(), "{r}");
    let r = slow.reply(slow_id).await;
    assert_eq!(r["error"]["code"], 100, "{r}");
}

#[tokio::test]
async fn only_allow_listed_headers_and_the_grpc_options_metadata_reach_the_backend() {
    let mut backend = GrpcBackend::start(|_| connect_result("h")).await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.endpoint(),
        "http_headers": ["Authorization", "X-Custom", "Cookie"],
        "grpc_metadata": ["x-request-id"],
        "emulated_headers": ["X-Emulated"],
        "grpc": {
            "static_metadata": {"x-static": "s", "x-custom": "static"},
            "credentials_key": "x-api-key", "credentials_value": "backend-secret",
            "compression": true
        }
    }}}}))
    .await;
    let mut c = Client::open_with(
        &s.ws_url(),
        &[
            ("authorization", "Bearer abc"),
            ("x-custom", "from-client"),
            ("x-request-id", "r-1"),
            ("cookie", "rotor_session=mine; app=1"),
            ("x-other", "no"),
        ],
    )
    .await;
    let r = c
        .call(json!({"connect": {"headers": {"X-Emulated": "e", "X-Sneaky": "s"}}}))
        .await;
    assert!(r["connect"].is_object(), "{r}");
    let m = backend.call().await.metadata;
    let get = |k: &str| m.get(k).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(get("authorization").as_deref(), Some("Bearer abc"));
    assert_eq!(
        get("x-custom").as_deref(),
        Some("from-client"),
        "client headers win over static metadata"
    );
    assert_eq!(get("x-request-id").as_deref(), Some("r-1"));
    assert_eq!(get("x-static").as_deref(), Some("s"));
    assert_eq!(get("x-emulated").as_deref(), Some("e"));
    assert_eq!(get("x-api-key").as_deref(), Some("backend-secret"));
    assert_eq!(
        get("cookie").as_deref(),
        Some("app=1"),
        "Rotor's own cookies never leave"
    );
    assert_eq!(get("grpc-encoding").as_deref(), Some("gzip"));
    for absent in ["x-other", "x-sneaky"] {
        assert!(get(absent).is_none(), "{absent} must not be forwarded");
    }
}

/// A config whose every proxy kind is a gRPC proxy on `backend`: refresh, the channel proxies
/// (`sp` subscribe, `pp` publish, `sr` subscribe + sub_refresh), the RPC proxy, and a named
/// proxy with `binary_encoding` for the `bin` RPC namespace.
fn every_kind(backend: &GrpcBackend) -> Value {
    let e = backend.endpoint();
    json!({
        "client": {"proxy": {"refresh": {"enabled": true, "endpoint": e}}},
        "channel": {
            "proxy": {
                "subscribe": {"endpoint": e, "include_connection_meta": true},
                "publish": {"endpoint": e},
                "sub_refresh": {"endpoint": e}
            },
            "namespaces": [
                {"name": "sp", "subscribe_proxy_enabled": true},
                {"name": "pp", "publish_proxy_enabled": true, "allow_subscribe_for_client": true},
                {"name": "sr", "subscribe_proxy_enabled": true, "sub_refresh_proxy_enabled": true}
            ]
        },
        "proxies": [{"name": "binary", "endpoint": e, "binary_encoding": true}],
        "rpc": {
            "proxy": {"endpoint": e},
            "without_namespace": {"proxy_enabled": true},
            "namespaces": [{"name": "bin", "proxy_enabled": true, "proxy_name": "binary"}]
        }
    })
}

fn every_kind_answers(req: &Req) -> Reply {
    match req {
        Req::Refresh(_) => Reply::Refresh(RefreshResponse {
            result: Some(RefreshResult {
                expire_at: now() + 3600,
                ..Default::default()
            }),
            ..Default::default()
        }),
        Req::Subscribe(r) if r.channel == "sp:denied" => Reply::Subscribe(SubscribeResponse {
            error: Some(Error {
                code: 103,
                message: "permission denied".into(),
                temporary: false,
            }),
            ..Default::default()
        }),
        Req::Subscribe(r) => Reply::Subscribe(SubscribeResponse {
            result: Some(SubscribeResult {
                data: json_bytes(json!({"motd": "hi"})),
                expire_at: if r.channel.starts_with("sr:") {
                    now() + 1
                } else {
                    0
                },
                ..Default::default()
            }),
            ..Default::default()
        }),
        Req::SubRefresh(_) => Reply::SubRefresh(SubRefreshResponse {
            result: Some(SubRefreshResult {
                expired: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        Req::Publish(r) => {
            let v: Value = serde_json::from_slice(&r.data).unwrap();
            let text = v["text"].as_str().unwrap_or_default();
            Reply::Publish(PublishResponse {
                result: Some(PublishResult {
                    data: json_bytes(json!({"text": format!("{text}!")})),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
        Req::Rpc(r) if r.method == "bin:raw" => Reply::Rpc(RpcResponse {
            result: Some(RpcResult {
                b64data: "eyJvayI6MX0=".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Req::Rpc(r) => Reply::Rpc(RpcResponse {
            result: Some(RpcResult {
                data: r.data.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        _ => Reply::Status(Status::unimplemented("not here")),
    }
}

#[tokio::test]
async fn every_proxy_kind_speaks_grpc() {
    let mut backend = GrpcBackend::start(every_kind_answers).await;
    let s = TestServer::start(every_kind(&backend)).await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({
            "sub": "u1", "exp": now() + 2, "meta": {"plan": "pro"}
        }))}}))
        .await;
    let client = r["connect"]["client"].as_str().unwrap().to_owned();
    assert!(
        r["connect"].get("expires").is_none(),
        "the refresh proxy extends: {r}"
    );

    // subscribe: allowed with data, denied with the backend's error.
    let r = c
        .call(json!({"subscribe": {"channel": "sp:in", "data": {"want": "in"}}}))
        .await;
    assert_eq!(r["subscribe"]["data"], json!({"motd": "hi"}), "{r}");
    let Req::Subscribe(req) = backend.call().await.req else {
        panic!("not a subscribe call")
    };
    assert_eq!(
        (req.user.as_str(), req.channel.as_str(), req.client.as_str()),
        ("u1", "sp:in", client.as_str())
    );
    assert_eq!(&req.data[..], br#"{"want":"in"}"#);
    assert_eq!(
        &req.meta[..],
        br#"{"plan":"pro"}"#,
        "include_connection_meta"
    );
    let r = c.call(json!({"subscribe": {"channel": "sp:denied"}})).await;
    assert_eq!(
        r["error"],
        json!({"code": 103, "message": "permission denied"}),
        "{r}"
    );
    assert!(matches!(backend.call().await.req, Req::Subscribe(_)));

    // publish: rewritten by the backend.
    assert!(c.call(json!({"subscribe": {"channel": "pp:room"}})).await["subscribe"].is_object());
    let r = c
        .call(json!({"publish": {"channel": "pp:room", "data": {"text": "hi"}}}))
        .await;
    assert!(r["publish"].is_object(), "{r}");
    assert_eq!(c.push().await["pub"]["data"], json!({"text": "hi!"}));
    let Req::Publish(req) = backend.call().await.req else {
        panic!("not a publish call")
    };
    assert_eq!((req.user.as_str(), req.channel.as_str()), ("u1", "pp:room"));

    // rpc: JSON echoed; through the named binary proxy, base64 both ways.
    let r = c
        .call(json!({"rpc": {"method": "echo", "data": {"x": 1}}}))
        .await;
    assert_eq!(r["rpc"]["data"], json!({"x": 1}), "{r}");
    let Req::Rpc(req) = backend.call().await.req else {
        panic!("not an rpc call")
    };
    assert_eq!(
        (req.method.as_str(), req.encoding.as_str()),
        ("echo", "json")
    );
    let r = c
        .call(json!({"rpc": {"method": "bin:raw", "data": {"y": 2}}}))
        .await;
    assert_eq!(r["rpc"]["data"], json!({"ok": 1}), "{r}");
    let Req::Rpc(req) = backend.call().await.req else {
        panic!("not an rpc call")
    };
    assert_eq!(req.encoding, "binary");
    assert!(req.data.is_empty());
    assert_eq!(req.b64data, "eyJ5IjoyfQ==", "base64 of {{\"y\":2}}");

    // sub_refresh: the subscription expires in a second, the backend ends it.
    let r = c.call(json!({"subscribe": {"channel": "sr:short"}})).await;
    assert!(r["subscribe"].is_object(), "{r}");
    let mut seen_refresh = false;
    let mut seen_sub_refresh = false;
    while !(seen_refresh && seen_sub_refresh) {
        match backend.call().await.req {
            Req::Refresh(r) => {
                assert_eq!(r.user, "u1");
                seen_refresh = true;
            }
            Req::SubRefresh(r) => {
                assert_eq!(r.channel, "sr:short");
                seen_sub_refresh = true;
            }
            Req::Subscribe(r) => assert_eq!(r.channel, "sr:short"),
            other => panic!("unexpected call {other:?}"),
        }
    }
    let push = c.push().await;
    assert_eq!(push["channel"], "sr:short", "{push}");
    assert_eq!(push["unsubscribe"]["code"], 2501, "{push}");
}

/// A self-signed certificate for `localhost` and its key, in PEM.
fn localhost_certificate() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    (cert.cert.pem(), cert.key_pair.serialize_pem())
}

#[tokio::test]
async fn a_grpc_proxy_speaks_tls_verified_against_the_given_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = localhost_certificate();
    let mut backend = GrpcBackend::start_tls(|_| connect_result("tls-user"), &cert, &key).await;
    let endpoint = backend.endpoint();
    let proxy = |tls: Value| {
        json!({"client": {"proxy": {"connect": {
            "enabled": true, "endpoint": endpoint,
            "grpc": {"tls": tls}
        }}}})
    };
    let s = TestServer::start(proxy(json!({
        "enabled": true, "server_ca_pem": cert, "server_name": "localhost"
    })))
    .await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c.call(json!({"connect": {}})).await;
    assert!(r["connect"].is_object(), "{r}");
    assert!(matches!(backend.call().await.req, Req::Connect(_)));

    // Against the webpki roots the self-signed certificate is refused: no call, error 100.
    let s = TestServer::start(proxy(json!({"enabled": true, "server_name": "localhost"}))).await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c.call(json!({"connect": {}})).await;
    assert_eq!(r["error"]["code"], 100, "{r}");
    assert!(
        backend.try_call().is_none(),
        "an unverified backend was called"
    );
}

/// The attack: a hosted tenant (`ROTOR_EGRESS=public`) points its gRPC connect proxy at the
/// box itself, by literal address and by a name that resolves to it. Every port is allowed, so
/// the address rule alone must refuse; nothing is dialled, the client gets error 100 and the
/// refusal is logged.
#[tokio::test]
async fn a_hosted_tenants_grpc_proxy_to_a_private_address_is_refused_and_logged() {
    let mut backend = GrpcBackend::start(|_| connect_result("reached")).await;
    let port = backend.addr.port();
    for endpoint in [
        format!("grpc://127.0.0.1:{port}"),
        format!("grpc://localhost:{port}"),
        format!("grpc://[::1]:{port}"),
    ] {
        let config = json!({"client": {"proxy": {"connect": {
            "enabled": true, "endpoint": endpoint
        }}}});
        let process = Binary::listening(
            &config,
            &[("ROTOR_EGRESS", "public"), ("ROTOR_EGRESS_PORTS", "any")],
        )
        .await;
        let mut c = Client::open(&process.ws_url()).await;
        let r = c.call(json!({"connect": {}})).await;
        assert_eq!(r["error"]["code"], 100, "{endpoint}: {r}");
        let stderr = process.stop().await;
        assert!(
            stderr.contains("proxy call failed") && stderr.contains("not public"),
            "{endpoint}: the refusal is logged: {stderr}"
        );
        assert!(
            backend.try_call().is_none(),
            "{endpoint}: the backend was reached"
        );
    }
    // Standalone (no egress rule), the same backend is reachable.
    let config = json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.endpoint()
    }}}});
    let process = Binary::listening(&config, &[]).await;
    let mut c = Client::open(&process.ws_url()).await;
    let r = c.call(json!({"connect": {}})).await;
    assert!(r["connect"].is_object(), "{r}");
    assert!(matches!(backend.call().await.req, Req::Connect(_)));
    process.stop().await;
}
