//! Proxies to the tenant's backend over real HTTP: an in-process axum app plays the backend and
//! answers each proxy; a real data plane and raw WebSocket clients check what the client sees
//! and what the backend receives.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{api, now, token, Client, TestServer, WAIT};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// What the backend does with one request.
enum Answer {
    Json(Value),
    Status(u16),
    /// Never answers (until the test ends).
    Hang,
}

/// One request the backend received.
#[derive(Debug)]
struct Call {
    path: String,
    headers: HeaderMap,
    body: Value,
}

type Handler = Arc<dyn Fn(&str, &Value) -> Answer + Send + Sync>;

/// The tenant's app backend: answers `POST /<proxy>` with `handler` and records every request.
struct Backend {
    addr: std::net::SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
}

impl Backend {
    async fn start(handler: impl Fn(&str, &Value) -> Answer + Send + Sync + 'static) -> Self {
        let handler: Handler = Arc::new(handler);
        let (tx, calls) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/{*path}",
            post(
                move |Path(path): Path<String>, headers: HeaderMap, body: Bytes| {
                    let handler = handler.clone();
                    let tx = tx.clone();
                    async move {
                        let body: Value = serde_json::from_slice(&body).expect("proxy sent JSON");
                        let answer = handler(&path, &body);
                        let _ = tx.send(Call {
                            path,
                            headers,
                            body,
                        });
                        match answer {
                            Answer::Json(v) => Json(v).into_response(),
                            Answer::Status(code) => {
                                StatusCode::from_u16(code).unwrap().into_response()
                            }
                            Answer::Hang => {
                                std::future::pending::<()>().await;
                                Response::default()
                            }
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, calls }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// The next request the backend received.
    async fn call(&mut self) -> Call {
        timeout(WAIT, self.calls.recv())
            .await
            .expect("timed out waiting for a proxy request")
            .expect("backend stopped")
    }
}

/// Opens a connection and sends a connect command without a token.
async fn connect_without_token(s: &TestServer, data: Value) -> (Client, Value) {
    let mut c = Client::open(&s.ws_url()).await;
    let id = c
        .send(json!({"connect": {"data": data, "name": "js", "version": "5.0.0"}}))
        .await;
    let reply = c.reply(id).await;
    (c, reply)
}

#[tokio::test]
async fn the_connect_proxy_names_the_user_and_subscribes_its_channels() {
    let mut backend = Backend::start(|_, _| {
        Answer::Json(json!({"result": {
            "user": "56", "info": {"name": "Ann"}, "data": {"welcome": true},
            "channels": ["news", "chat:room"]
        }}))
    })
    .await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.url("connect")
    }}}}))
    .await;
    let (mut c, reply) = connect_without_token(&s, json!({"hello": 1})).await;
    let result = &reply["connect"];
    assert_eq!(result["data"], json!({"welcome": true}), "{reply}");
    assert!(result["subs"]["news"].is_object(), "{reply}");
    assert!(result["subs"]["chat:room"].is_object(), "{reply}");
    assert!(result.get("expires").is_none());

    let call = backend.call().await;
    assert_eq!(call.path, "connect");
    assert_eq!(
        call.body,
        json!({"client": result["client"], "transport": "websocket", "protocol": "json",
               "encoding": "json", "name": "js", "version": "5.0.0", "data": {"hello": 1}})
    );

    let presence = api(&s, "presence", json!({"channel": "chat:room"})).await;
    let entry = &presence["result"]["presence"][result["client"].as_str().unwrap()];
    assert_eq!(entry["user"], "56");
    assert_eq!(entry["conn_info"], json!({"name": "Ann"}));
    api(&s, "publish", json!({"channel": "news", "data": {"n": 1}})).await;
    loop {
        let push = c.push().await;
        if push["channel"] == "news" {
            assert_eq!(push["pub"]["data"], json!({"n": 1}));
            break;
        }
    }
}

#[tokio::test]
async fn connect_proxy_errors_and_disconnects_reach_the_client() {
    let backend = Backend::start(|_, body| match body["data"]["case"].as_str() {
        Some("error") => Answer::Json(
            json!({"error": {"code": 1000, "message": "who are you", "temporary": false}}),
        ),
        Some("disconnect") => {
            Answer::Json(json!({"disconnect": {"code": 4501, "reason": "go away"}}))
        }
        _ => Answer::Status(500),
    })
    .await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.url("connect")
    }}}}))
    .await;

    let (_c, reply) = connect_without_token(&s, json!({"case": "error"})).await;
    assert_eq!(
        reply["error"],
        json!({"code": 1000, "message": "who are you"}),
        "{reply}"
    );

    let mut c = Client::open(&s.ws_url()).await;
    c.send(json!({"connect": {"data": {"case": "disconnect"}}}))
        .await;
    let closed = c.closed().await;
    assert_eq!((closed.code, closed.reason.as_str()), (4501, "go away"));

    let (_c, reply) = connect_without_token(&s, json!({"case": "status"})).await;
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    assert_eq!(reply["error"]["temporary"], true, "{reply}");
}

#[tokio::test]
async fn a_hanging_backend_gives_error_100_without_holding_up_other_clients() {
    let mut backend = Backend::start(|_, body| {
        if body["data"]["hang"] == true {
            Answer::Hang
        } else {
            Answer::Json(json!({"result": {"user": "quick"}}))
        }
    })
    .await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.url("connect"), "timeout": "1500ms"
    }}}}))
    .await;

    let mut slow = Client::open(&s.ws_url()).await;
    let slow_id = slow
        .send(json!({"connect": {"data": {"hang": true}}}))
        .await;
    // The backend holds the first request; meanwhile others connect, through the same proxy
    // and with tokens.
    assert_eq!(backend.call().await.body["data"], json!({"hang": true}));
    let (_quick, reply) = connect_without_token(&s, json!({})).await;
    assert!(reply["connect"].is_object(), "{reply}");
    let (_with_token, _) = Client::connected(&s.ws_url(), "t").await;

    let reply = timeout(Duration::from_secs(4), slow.reply(slow_id))
        .await
        .expect("the proxy timeout bounds the wait");
    assert_eq!(
        reply["error"],
        json!({"code": 100, "message": "internal server error", "temporary": true})
    );
}

#[tokio::test]
async fn only_allow_listed_headers_reach_the_backend() {
    let mut backend = Backend::start(|_, _| Answer::Json(json!({"result": {"user": "h"}}))).await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.url("connect"),
        "http_headers": ["Authorization", "X-Custom"],
        "emulated_headers": ["X-Emulated"],
        "http": {"static_headers": {"X-Static": "s", "X-Custom": "static"}}
    }}}}))
    .await;
    let mut c = Client::open_with(
        &s.ws_url(),
        &[
            ("authorization", "Bearer abc"),
            ("x-custom", "from-client"),
            ("cookie", "session=secret"),
            ("x-other", "no"),
        ],
    )
    .await;
    let r = c
        .call(json!({"connect": {"headers": {"X-Emulated": "e", "X-Sneaky": "s", "Cookie": "c"}}}))
        .await;
    assert!(r["connect"].is_object(), "{r}");
    let h = backend.call().await.headers;
    assert_eq!(h["authorization"], "Bearer abc");
    assert_eq!(
        h["x-custom"], "from-client",
        "client headers win over static ones"
    );
    assert_eq!(h["x-static"], "s");
    assert_eq!(h["x-emulated"], "e");
    assert_eq!(h["content-type"], "application/json");
    for absent in ["cookie", "x-other", "x-sneaky"] {
        assert!(h.get(absent).is_none(), "{absent} must not be forwarded");
    }
}

#[tokio::test]
async fn rotor_cookies_and_management_tokens_never_reach_the_backend_whatever_the_allow_list() {
    let mut backend = Backend::start(|_, _| Answer::Json(json!({"result": {"user": "h"}}))).await;
    let s = TestServer::start(json!({"client": {"proxy": {"connect": {
        "enabled": true, "endpoint": backend.url("connect"),
        "http_headers": ["Cookie", "Authorization"]
    }}}}))
    .await;
    // A browser that is also signed in to Rotor's dashboard on a shared parent domain.
    let mut c = Client::open_with(
        &s.ws_url(),
        &[
            ("cookie", "rotor_session=x; app=1"),
            ("authorization", "Bearer rtr_management_token"),
        ],
    )
    .await;
    let r = c.call(json!({"connect": {}})).await;
    assert!(r["connect"].is_object(), "{r}");
    let h = backend.call().await.headers;
    assert_eq!(h["cookie"], "app=1");
    assert_eq!(h.get_all("cookie").iter().count(), 1);
    assert!(h.get("authorization").is_none(), "{h:?}");

    // Only Rotor's cookies: no Cookie header at all.
    let mut c = Client::open_with(
        &s.ws_url(),
        &[("cookie", "__Host-rotor_session=s; rotor_csrf=t")],
    )
    .await;
    let r = c.call(json!({"connect": {}})).await;
    assert!(r["connect"].is_object(), "{r}");
    let h = backend.call().await.headers;
    assert!(h.get("cookie").is_none(), "{h:?}");
}

/// A `channel` section whose namespaces use the backend's channel proxies: `sp` asks before
/// subscribing, `pp` before publishing, `sr` before subscribing and when subscriptions expire.
fn channel_proxies(backend: &Backend) -> Value {
    json!({
        "proxy": {
            "subscribe": {"endpoint": backend.url("subscribe"), "include_connection_meta": true},
            "publish": {"endpoint": backend.url("publish")},
            "sub_refresh": {"endpoint": backend.url("sub_refresh")}
        },
        "namespaces": [
            {"name": "sp", "subscribe_proxy_enabled": true, "presence": true,
             "allow_presence_for_subscriber": true},
            {"name": "pp", "publish_proxy_enabled": true, "allow_subscribe_for_client": true},
            {"name": "sr", "subscribe_proxy_enabled": true, "sub_refresh_proxy_enabled": true}
        ]
    })
}

#[tokio::test]
async fn the_subscribe_proxy_allows_and_denies() {
    let mut backend = Backend::start(|_, body| match body["channel"].as_str() {
        Some("sp:allowed") => Answer::Json(json!({"result": {
            "info": {"role": "admin"}, "data": {"motd": "hi"}
        }})),
        _ => Answer::Json(json!({"error": {"code": 103, "message": "permission denied"}})),
    })
    .await;
    let s = TestServer::start(json!({"channel": channel_proxies(&backend)})).await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "u1", "meta": {"plan": "pro"}}))}}))
        .await;
    let connect = r["connect"].clone();

    let r = c
        .call(json!({"subscribe": {"channel": "sp:allowed", "data": {"want": "in"}}}))
        .await;
    assert_eq!(r["subscribe"]["data"], json!({"motd": "hi"}), "{r}");
    let call = backend.call().await;
    assert_eq!(call.path, "subscribe");
    assert_eq!(
        call.body,
        json!({"client": connect["client"], "transport": "websocket", "protocol": "json",
               "encoding": "json", "user": "u1", "channel": "sp:allowed", "data": {"want": "in"},
               "meta": {"plan": "pro"}}),
        "the connection's meta goes to proxies that include it"
    );
    let presence = c.call(json!({"presence": {"channel": "sp:allowed"}})).await;
    let me = &presence["presence"]["presence"][connect["client"].as_str().unwrap()];
    assert_eq!(me["chan_info"], json!({"role": "admin"}), "{presence}");

    let r = c.call(json!({"subscribe": {"channel": "sp:denied"}})).await;
    assert_eq!(r["error"]["code"], 103, "{r}");
}

#[tokio::test]
async fn the_publish_proxy_rejects_and_rewrites_publications() {
    let mut backend = Backend::start(|_, body| {
        let text = body["data"]["text"].as_str().unwrap_or_default();
        if text == "bad" {
            Answer::Json(json!({"error": {"code": 1403, "message": "rejected"}}))
        } else {
            Answer::Json(json!({"result": {"data": {"text": format!("{text}!"), "checked": true}}}))
        }
    })
    .await;
    let s = TestServer::start(json!({"channel": channel_proxies(&backend)})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "writer").await;
    assert!(c.call(json!({"subscribe": {"channel": "pp:room"}})).await["subscribe"].is_object());

    // The namespace grants no publish permission: the backend alone decides.
    let r = c
        .call(json!({"publish": {"channel": "pp:room", "data": {"text": "hi"}}}))
        .await;
    assert!(r["publish"].is_object(), "{r}");
    let push = c.push().await;
    assert_eq!(push["channel"], "pp:room");
    assert_eq!(push["pub"]["data"], json!({"text": "hi!", "checked": true}));
    let call = backend.call().await;
    assert_eq!(call.body["user"], "writer");
    assert_eq!(call.body["channel"], "pp:room");

    let r = c
        .call(json!({"publish": {"channel": "pp:room", "data": {"text": "bad"}}}))
        .await;
    assert_eq!(
        r["error"],
        json!({"code": 1403, "message": "rejected"}),
        "{r}"
    );
}

#[tokio::test]
async fn the_rpc_proxy_answers_rpc_calls() {
    let mut backend = Backend::start(|_, body| match body["method"].as_str() {
        Some("echo") => Answer::Json(json!({"result": {"data": {"echo": body["data"]}}})),
        _ => Answer::Json(json!({"error": {"code": 1500, "message": "nope"}})),
    })
    .await;
    let s = TestServer::start(json!({"rpc": {
        "proxy": {"endpoint": backend.url("rpc")},
        "without_namespace": {"proxy_enabled": true},
        "namespaces": [{"name": "local"}]
    }}))
    .await;
    let (mut c, _) = Client::connected(&s.ws_url(), "caller").await;

    let r = c
        .call(json!({"rpc": {"method": "echo", "data": {"x": 1}}}))
        .await;
    assert_eq!(r["rpc"]["data"], json!({"echo": {"x": 1}}), "{r}");
    let call = backend.call().await;
    assert_eq!(
        (&call.body["method"], &call.body["user"]),
        (&json!("echo"), &json!("caller"))
    );

    let r = c.call(json!({"rpc": {"method": "fail", "data": {}}})).await;
    assert_eq!(r["error"], json!({"code": 1500, "message": "nope"}), "{r}");
    let r = c
        .call(json!({"rpc": {"method": "local:m", "data": {}}}))
        .await;
    assert_eq!(r["error"]["code"], 108, "namespace without a proxy: {r}");
    let r = c
        .call(json!({"rpc": {"method": "other:m", "data": {}}}))
        .await;
    assert_eq!(r["error"]["code"], 104, "unknown RPC namespace: {r}");
}

#[tokio::test]
async fn the_refresh_proxy_extends_or_ends_expiring_connections() {
    let mut backend = Backend::start(|_, body| {
        if body["user"] == "keep" {
            Answer::Json(json!({"result": {"expire_at": now() + 3600, "info": {"v": 2}}}))
        } else {
            Answer::Json(json!({"result": {"expired": true}}))
        }
    })
    .await;
    let s = TestServer::start(json!({"client": {"proxy": {"refresh": {
        "enabled": true, "endpoint": backend.url("refresh")
    }}}}))
    .await;
    let expiring = |user: &str| token(json!({"sub": user, "exp": now() + 2}));

    let mut keep = Client::open(&s.ws_url()).await;
    let r = keep
        .call(json!({"connect": {"token": expiring("keep")}}))
        .await;
    assert!(
        r["connect"].get("expires").is_none(),
        "the server refreshes, not the client: {r}"
    );
    let call = backend.call().await;
    assert_eq!(call.path, "refresh");
    assert_eq!(call.body["user"], "keep");
    assert_eq!(call.body["client"], r["connect"]["client"]);
    // The refresh ran before this command is handled; the connection lives on.
    let r = keep.call(json!({"subscribe": {"channel": "news"}})).await;
    assert!(r["subscribe"].is_object(), "{r}");
    // Clients of a server-refreshed connection must not send refresh commands.
    keep.send(json!({"refresh": {"token": "x"}})).await;
    assert_eq!(keep.closed().await.code, 3501);

    let mut gone = Client::open(&s.ws_url()).await;
    gone.call(json!({"connect": {"token": expiring("gone")}}))
        .await;
    assert_eq!(backend.call().await.body["user"], "gone");
    assert_eq!(gone.closed().await.code, 3005);
}

#[tokio::test]
async fn the_sub_refresh_proxy_extends_or_ends_expiring_subscriptions() {
    let mut backend = Backend::start(|path, body| match (path, body["channel"].as_str()) {
        ("subscribe", _) => Answer::Json(json!({"result": {"expire_at": now() + 1}})),
        ("sub_refresh", Some("sr:keep")) => {
            Answer::Json(json!({"result": {"expire_at": now() + 3600}}))
        }
        _ => Answer::Json(json!({"result": {"expired": true}})),
    })
    .await;
    let s = TestServer::start(json!({"channel": channel_proxies(&backend)})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "reader").await;
    for ch in ["sr:keep", "sr:drop"] {
        let r = c.call(json!({"subscribe": {"channel": ch}})).await;
        assert!(r["subscribe"].is_object(), "{r}");
        assert!(
            r["subscribe"].get("expires").is_none(),
            "the server refreshes, not the client: {r}"
        );
        assert_eq!(backend.call().await.path, "subscribe");
    }

    let mut refreshed = Vec::new();
    for _ in 0..2 {
        let call = backend.call().await;
        assert_eq!(call.path, "sub_refresh");
        assert_eq!(call.body["user"], "reader");
        refreshed.push(call.body["channel"].as_str().unwrap().to_owned());
    }
    refreshed.sort();
    assert_eq!(refreshed, ["sr:drop", "sr:keep"]);

    // Both refreshes ran before this command is handled.
    let r = c.call(json!({"subscribe": {"channel": "news"}})).await;
    assert!(r["subscribe"].is_object(), "{r}");
    let push = c.push().await;
    assert_eq!(push["channel"], "sr:drop");
    assert_eq!(push["unsubscribe"]["code"], 2501);
    api(
        &s,
        "publish",
        json!({"channel": "sr:keep", "data": {"still": "here"}}),
    )
    .await;
    let push = c.push().await;
    assert_eq!(push["channel"], "sr:keep", "{push}");
    assert_eq!(push["pub"]["data"], json!({"still": "here"}));
}
