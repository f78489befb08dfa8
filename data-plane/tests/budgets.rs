//! Application budgets (`rotor.max_history_bytes`, `max_channel_history_bytes`, `max_channels`,
//! `max_presence_entries`, and `client.connection_limit` counting every socket): each is hit
//! over the real protocol and API, answers Centrifugo's 106 (sockets: 503 before the upgrade,
//! 3502 when stale), is counted, and leaves what was within budget working.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{token, Client, TestServer, ADMIN_TOKEN, SECRET, WAIT};
use rotor_data_plane::budgets::{stored_size, BudgetError};
use rotor_data_plane::protocol::Publication;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn api(s: &TestServer, method: &str, body: Value) -> Value {
    let resp = tokio::time::timeout(
        WAIT,
        reqwest::Client::new()
            .post(format!("http://{}/api/{method}", s.addr))
            .header("x-api-key", "api-key")
            .body(body.to_string())
            .send(),
    )
    .await
    .expect("API timeout")
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

async fn metrics(s: &TestServer) -> String {
    reqwest::Client::new()
        .get(format!("http://{}/metrics", s.addr))
        .header("x-api-key", "api-key")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A JSON string payload of exactly `n` bytes (quotes included).
fn payload(n: usize) -> Value {
    json!("x".repeat(n - 2))
}

/// What one API publication of an `n`-byte payload costs in history.
fn api_cost(n: usize) -> u64 {
    stored_size(&Publication {
        data: Bytes::from(vec![b'x'; n]),
        ..Default::default()
    })
}

/// Polls `check` every 50 ms until it holds, for at most [`WAIT`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn history_past_the_tenant_byte_budget_is_refused_with_106_and_comes_back_when_removed() {
    let one = api_cost(1000);
    let s = TestServer::start(json!({"rotor": {"max_history_bytes": 3 * one}})).await;
    for _ in 0..3 {
        let r = api(
            &s,
            "publish",
            json!({"channel": "chat:a", "data": payload(1000)}),
        )
        .await;
        assert!(r["result"]["offset"].is_u64(), "{r}");
    }
    assert_eq!(s.node.budgets.history_bytes(), 3 * one);

    let r = api(
        &s,
        "publish",
        json!({"channel": "chat:b", "data": payload(1000)}),
    )
    .await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    let r = api(
        &s,
        "broadcast",
        json!({"channels": ["chat:b", "plain"], "data": payload(1000)}),
    )
    .await;
    let responses = r["result"]["responses"].as_array().expect("responses");
    assert_eq!(responses[0]["error"]["code"], 106, "{r}");
    assert!(
        responses[1]["result"].is_object(),
        "a channel without history keeps working: {r}"
    );

    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    c.call(json!({"subscribe": {"channel": "chat:b"}})).await;
    let r = c
        .call(json!({"publish": {"channel": "chat:b", "data": payload(1000)}}))
        .await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    // Neighbours: the full channel's history still reads, and a channel without history
    // still delivers.
    c.call(json!({"subscribe": {"channel": "chat:a"}})).await;
    let h = c
        .call(json!({"history": {"channel": "chat:a", "limit": -1}}))
        .await;
    assert_eq!(
        h["history"]["publications"].as_array().unwrap().len(),
        3,
        "{h}"
    );
    c.call(json!({"subscribe": {"channel": "plain"}})).await;
    let (mut other, _) = Client::connected(&s.ws_url(), "u2").await;
    other.call(json!({"subscribe": {"channel": "plain"}})).await;
    let r = other
        .call(json!({"publish": {"channel": "plain", "data": {"still": "served"}}}))
        .await;
    assert_eq!(r["publish"], json!({}), "{r}");
    let delivered = loop {
        let push = c.push().await;
        if push["channel"] == "plain" {
            break push;
        }
    };
    assert_eq!(delivered["pub"]["data"]["still"], "served");

    assert_eq!(s.node.budgets.refusals(BudgetError::HistoryBytes), 3);
    assert!(metrics(&s)
        .await
        .contains("rotor_budget_refusals_total{budget=\"history_bytes\"} 3"));

    // Removing a stream's history gives its bytes back.
    api(&s, "history_remove", json!({"channel": "chat:a"})).await;
    assert_eq!(s.node.budgets.history_bytes(), 0);
    let r = api(
        &s,
        "publish",
        json!({"channel": "chat:b", "data": payload(1000)}),
    )
    .await;
    assert!(r["result"]["offset"].is_u64(), "{r}");
}

#[tokio::test]
async fn a_channel_history_is_trimmed_to_its_byte_cap_and_a_larger_publication_is_refused() {
    let one = api_cost(100);
    let cap = 2 * one + one / 2;
    let s = TestServer::start(json!({"rotor": {"max_channel_history_bytes": cap}})).await;
    for _ in 0..5 {
        let r = api(
            &s,
            "publish",
            json!({"channel": "chat:a", "data": payload(100)}),
        )
        .await;
        assert!(r["result"]["offset"].is_u64(), "{r}");
    }
    let h = api(&s, "history", json!({"channel": "chat:a", "limit": -1})).await;
    let offsets: Vec<&Value> = h["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["offset"])
        .collect();
    assert_eq!(offsets, vec![&json!(4), &json!(5)], "the newest that fit");
    assert_eq!(s.node.budgets.history_bytes(), 2 * one);

    // A publication that cannot fit the cap even alone is refused; the stream keeps its two.
    let too_big = (cap - api_cost(0) + 1) as usize;
    let r = api(
        &s,
        "publish",
        json!({"channel": "chat:a", "data": payload(too_big)}),
    )
    .await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    // One that fits alone is kept alone.
    let alone = (cap - api_cost(0)) as usize;
    let r = api(
        &s,
        "publish",
        json!({"channel": "chat:a", "data": payload(alone)}),
    )
    .await;
    assert_eq!(r["result"]["offset"], 6, "{r}");
    let h = api(&s, "history", json!({"channel": "chat:a", "limit": -1})).await;
    assert_eq!(h["result"]["publications"].as_array().unwrap().len(), 1);
    assert_eq!(s.node.budgets.history_bytes(), cap);

    // The neighbour channel has a cap of its own.
    let r = api(
        &s,
        "publish",
        json!({"channel": "chat:b", "data": payload(100)}),
    )
    .await;
    assert_eq!(r["result"]["offset"], 1, "{r}");
    assert_eq!(s.node.budgets.refusals(BudgetError::ChannelHistoryBytes), 1);
}

#[tokio::test]
async fn expired_history_gives_its_bytes_back() {
    let one = api_cost(100);
    let s = TestServer::start(json!({
        "rotor": {"max_history_bytes": 2 * one},
        "channel": {"namespaces": [{"name": "brief", "history_size": 10, "history_ttl": "1s"}]}
    }))
    .await;
    for _ in 0..2 {
        let r = api(
            &s,
            "publish",
            json!({"channel": "brief:a", "data": payload(100)}),
        )
        .await;
        assert!(r["result"].is_object(), "{r}");
    }
    let r = api(
        &s,
        "publish",
        json!({"channel": "brief:b", "data": payload(100)}),
    )
    .await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    // After the TTL the expired entries are swept out and the publication fits.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = api(
            &s,
            "publish",
            json!({"channel": "brief:b", "data": payload(100)}),
        )
        .await;
        if r["result"].is_object() {
            break;
        }
        assert_eq!(r["error"]["code"], 106, "{r}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "space never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.node.budgets.history_bytes(), one);
}

#[tokio::test]
async fn channels_past_the_budget_are_refused_with_106_and_existing_ones_keep_working() {
    let s = TestServer::start(json!({"rotor": {"max_channels": 2}})).await;
    let (mut a, _) = Client::connected(&s.ws_url(), "a").await;
    assert!(a.call(json!({"subscribe": {"channel": "news"}})).await["subscribe"].is_object());
    let r = api(&s, "publish", json!({"channel": "chat:x", "data": 1})).await;
    assert!(
        r["result"].is_object(),
        "a history stream makes the second: {r}"
    );
    assert_eq!(s.node.budgets.channels(), 2);

    let (mut b, _) = Client::connected(&s.ws_url(), "b").await;
    let r = b.call(json!({"subscribe": {"channel": "sports"}})).await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    let r = api(&s, "publish", json!({"channel": "chat:y", "data": 1})).await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    let r = api(
        &s,
        "broadcast",
        json!({"channels": ["chat:y", "chat:x"], "data": 2}),
    )
    .await;
    let responses = r["result"]["responses"].as_array().unwrap();
    assert_eq!(responses[0]["error"]["code"], 106, "{r}");
    assert_eq!(responses[1]["result"]["offset"], 2, "{r}");
    let r = api(&s, "history", json!({"channel": "chat:z"})).await;
    assert_eq!(r["result"]["offset"], 0, "a read needs no channel: {r}");
    // A publication that stores nothing creates nothing, and existing channels work.
    assert!(api(&s, "publish", json!({"channel": "void", "data": 1})).await["result"].is_object());
    assert!(b.call(json!({"subscribe": {"channel": "news"}})).await["subscribe"].is_object());
    a.call(json!({"publish": {"channel": "news", "data": {"n": 1}}}))
        .await;
    assert_eq!(b.push().await["pub"]["data"]["n"], 1);
    assert_eq!(s.node.budgets.refusals(BudgetError::Channels), 3);

    // A channel whose last subscriber leaves is gone, and makes room.
    a.call(json!({"unsubscribe": {"channel": "news"}})).await;
    b.call(json!({"unsubscribe": {"channel": "news"}})).await;
    assert_eq!(s.node.budgets.channels(), 1);
    assert!(b.call(json!({"subscribe": {"channel": "sports"}})).await["subscribe"].is_object());
}

#[tokio::test]
async fn reads_of_new_channels_leave_the_channel_budget_to_others() {
    let s = TestServer::start(json!({"rotor": {"max_channels": 10}})).await;
    let (mut reader, _) = Client::connected(&s.ws_url(), "reader").await;
    // Positioned (recovering) subscriptions read each new channel's stream, and history
    // calls read it once more, on as many names as the budget has channels.
    for n in 0..10 {
        let channel = format!("chat:r{n}");
        let r = reader
            .call(json!({"subscribe": {"channel": channel, "recover": true}}))
            .await;
        assert!(r["subscribe"].is_object(), "{r}");
        let r = reader.call(json!({"history": {"channel": channel}})).await;
        assert!(r["history"].is_object(), "{r}");
        let r = reader
            .call(json!({"unsubscribe": {"channel": channel}}))
            .await;
        assert!(r["unsubscribe"].is_object(), "{r}");
    }
    drop(reader);
    for n in 10..20 {
        let r = api(&s, "history", json!({"channel": format!("chat:r{n}")})).await;
        assert_eq!(r["result"]["offset"], 0, "{r}");
    }
    assert_eq!(s.node.budgets.channels(), 0, "reads hold no channel");

    let (mut other, _) = Client::connected(&s.ws_url(), "other").await;
    let r = other
        .call(json!({"subscribe": {"channel": "chat:new"}}))
        .await;
    assert!(r["subscribe"].is_object(), "{r}");
    let r = other
        .call(json!({"publish": {"channel": "chat:new", "data": {"n": 1}}}))
        .await;
    assert!(r["publish"].is_object(), "{r}");
    let r = api(&s, "publish", json!({"channel": "chat:api", "data": 1})).await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(s.node.budgets.refusals(BudgetError::Channels), 0);
}

#[tokio::test]
async fn a_positioned_subscriber_of_a_new_channel_keeps_its_epoch_at_the_first_publication() {
    let s = TestServer::start(json!({"rotor": {"max_channels": 10}})).await;
    let (mut a, _) = Client::connected(&s.ws_url(), "a").await;
    let r = a
        .call(json!({"subscribe": {"channel": "chat:fresh", "recover": true}}))
        .await;
    let epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty(), "{r}");
    let r = api(&s, "publish", json!({"channel": "chat:fresh", "data": 1})).await;
    assert_eq!(r["result"]["epoch"], epoch.as_str(), "{r}");
    assert_eq!(r["result"]["offset"], 1, "{r}");
    let publication = loop {
        let push = a.push().await;
        if push.get("pub").is_some() {
            break push;
        }
    };
    assert_eq!(publication["pub"]["offset"], 1, "{publication}");
}

#[tokio::test]
async fn presence_entries_past_the_budget_are_refused_with_106() {
    let s = TestServer::start(json!({"rotor": {"max_presence_entries": 2}})).await;
    let (mut a, _) = Client::connected(&s.ws_url(), "a").await;
    let (mut b, _) = Client::connected(&s.ws_url(), "b").await;
    let (mut c, _) = Client::connected(&s.ws_url(), "c").await;
    assert!(a.call(json!({"subscribe": {"channel": "chat:1"}})).await["subscribe"].is_object());
    assert!(b.call(json!({"subscribe": {"channel": "chat:1"}})).await["subscribe"].is_object());
    let r = c.call(json!({"subscribe": {"channel": "chat:2"}})).await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    // A channel without presence needs no entry; the full channel's presence still works.
    assert!(c.call(json!({"subscribe": {"channel": "news"}})).await["subscribe"].is_object());
    let p = a.call(json!({"presence": {"channel": "chat:1"}})).await;
    assert_eq!(
        p["presence"]["presence"].as_object().unwrap().len(),
        2,
        "{p}"
    );
    assert_eq!(s.node.budgets.refusals(BudgetError::PresenceEntries), 1);

    // An unsubscribe and a closed connection give their entries back.
    a.call(json!({"unsubscribe": {"channel": "chat:1"}})).await;
    assert!(c.call(json!({"subscribe": {"channel": "chat:2"}})).await["subscribe"].is_object());
    drop(b);
    let budgets = s.node.budgets.clone();
    eventually("the closed connection's entry is released", || {
        budgets.presence_entries() == 1
    })
    .await;
    assert!(a.call(json!({"subscribe": {"channel": "chat:3"}})).await["subscribe"].is_object());
}

/// Opens a WebSocket that must be refused before its upgrade; returns the HTTP status.
async fn refused_upgrade(url: &str) -> u16 {
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake timeout")
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        other => panic!("expected a refused upgrade, got {other:?}"),
    }
}

#[tokio::test]
async fn a_socket_that_never_connects_counts_against_the_limit_and_is_closed_when_stale() {
    let s = TestServer::start(json!({
        "client": {"connection_limit": 2, "stale_close_delay": "1s"},
        "uni_websocket": {"enabled": true}
    }))
    .await;
    let (mut neighbour, _) = Client::connected(&s.ws_url(), "n").await;
    let mut idle = Client::open(&s.ws_url()).await;
    assert_eq!(s.node.metrics.sockets.get(), 2, "counted from the upgrade");
    assert_eq!(refused_upgrade(&s.ws_url()).await, 503);
    let uni = format!("ws://{}/connection/uni_websocket", s.addr);
    assert_eq!(
        refused_upgrade(&uni).await,
        503,
        "every connection endpoint counts"
    );
    assert!(s.node.metrics.connections_refused.get("connection_limit") >= 2);
    assert_eq!(s.node.budgets.refusals(BudgetError::Connections), 2);

    assert_eq!(
        idle.closed().await.code,
        3502,
        "stale after stale_close_delay"
    );
    let metrics = s.node.metrics.clone();
    eventually("the stale socket's slot is free", || {
        metrics.sockets.get() == 1
    })
    .await;
    let (mut late, _) = Client::connected(&s.ws_url(), "late").await;
    assert!(late.call(json!({"subscribe": {"channel": "news"}})).await["subscribe"].is_object());
    assert!(neighbour
        .call(json!({"subscribe": {"channel": "news"}}))
        .await["subscribe"]
        .is_object());

    // A unidirectional WebSocket waiting for its connect request goes stale the same way.
    drop(late);
    eventually("a slot is free", || metrics.sockets.get() == 1).await;
    let (mut uni, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&uni))
        .await
        .unwrap()
        .expect("uni upgrade");
    use futures_util::StreamExt;
    let close = loop {
        match tokio::time::timeout(WAIT, uni.next())
            .await
            .expect("no close")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                break f.map(|f| u16::from(f.code))
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close, Some(3502));
}

#[tokio::test]
async fn raw_tcp_that_never_sends_a_request_or_finishes_its_body_is_closed_when_stale() {
    let s = TestServer::start(json!({
        "client": {"connection_limit": 1, "stale_close_delay": "1s"},
        "http_stream": {"enabled": true}
    }))
    .await;
    // No request head at all: closed by the server (hyper's default would wait 30 s).
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("a silent socket is closed after stale_close_delay")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");

    // A connection request whose body (the connect command) never completes holds a slot
    // while it lasts, then gets 408.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(
        b"POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":1,",
    )
    .await
    .unwrap();
    let metrics = s.node.metrics.clone();
    eventually("the slow request is counted", || metrics.sockets.get() == 1).await;
    assert_eq!(refused_upgrade(&s.ws_url()).await, 503);
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, slow.read_to_end(&mut response))
        .await
        .expect("the slow request is answered after stale_close_delay");
    let head = String::from_utf8_lossy(&response);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    eventually("its slot is free", || metrics.sockets.get() == 0).await;
    Client::connected(&s.ws_url(), "u").await;
}

#[tokio::test]
async fn a_handed_off_socket_counts_from_the_hand_off_and_goes_stale() {
    use rotor_data_plane::handoff::HandoffListener;
    use rotor_handoff::{hand_off, Outcome};
    use std::os::fd::AsFd;

    let s = TestServer::start(json!({
        "client": {"connection_limit": 1, "stale_close_delay": "1s"}
    }))
    .await;
    let path = std::env::temp_dir().join(format!(
        "rotor-budgets-{}.sock",
        uuid::Uuid::new_v4().simple()
    ));
    let listener = HandoffListener::bind(&path).expect("bind hand-off socket");
    let app =
        rotor_data_plane::server::router(s.node.clone(), rotor_data_plane::server::Mode::Hosted);
    tokio::spawn(listener.serve(app, s.node.shutdown.clone(), s.node.clone()));

    // The edge's part: accept, read the head, pass socket and head over.
    let edge = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = edge.local_addr().unwrap();
    let edge_task = tokio::spawn(async move {
        let (mut socket, _) = edge.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&chunk[..n]);
        }
        hand_off(&path, socket.as_fd(), &head).await
    });
    let client = TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(format!("ws://{addr}/connection/websocket"), client),
    )
    .await
    .expect("handshake timeout")
    .expect("handshake");
    assert!(matches!(edge_task.await.unwrap(), Outcome::Accepted));
    assert_eq!(s.node.metrics.sockets.get(), 1);
    assert_eq!(
        refused_upgrade(&s.ws_url()).await,
        503,
        "the limit is shared"
    );

    use futures_util::StreamExt;
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no close")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                break f.map(|f| u16::from(f.code))
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close, Some(3502));
    let metrics = s.node.metrics.clone();
    eventually("its slot is free", || metrics.sockets.get() == 0).await;
    Client::connected(&s.ws_url(), "u").await;
}

async fn push_config(s: &TestServer, body: Value) {
    let resp = reqwest::Client::new()
        .put(format!("http://{}/admin/config", s.admin_addr))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
}

#[tokio::test]
async fn budgets_follow_a_pushed_config_at_once() {
    let s = TestServer::start(json!({"client": {"connection_limit": 3}})).await;
    let (mut a, _) = Client::connected(&s.ws_url(), "a").await;
    let (mut b, _) = Client::connected(&s.ws_url(), "b").await;
    let mut c = Client::open(&s.ws_url()).await;
    push_config(
        &s,
        json!({
            "rotor": {"config_version": 2, "max_channels": 1, "max_presence_entries": 1},
            "client": {"token": {"hmac_secret_key": SECRET}, "connection_limit": 2},
            "http_api": {"key": "api-key"},
            "channel": {
                "without_namespace": {"allow_subscribe_for_client": true, "presence": true}
            }
        }),
    )
    .await;
    // Two connections are authenticated already: the third socket's connect is one too many.
    c.send(json!({"connect": {"token": token(json!({"sub": "c"}))}}))
        .await;
    assert_eq!(c.closed().await.code, 3504);
    assert!(a.call(json!({"subscribe": {"channel": "x"}})).await["subscribe"].is_object());
    let r = b.call(json!({"subscribe": {"channel": "y"}})).await;
    assert_eq!(
        r["error"]["code"], 106,
        "a new channel past the pushed limit: {r}"
    );
    let r = b.call(json!({"subscribe": {"channel": "x"}})).await;
    assert_eq!(
        r["error"]["code"], 106,
        "a presence entry past the pushed limit: {r}"
    );
    let text = metrics(&s).await;
    assert!(
        text.contains("rotor_budget_limit{budget=\"channels\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rotor_budget_used{budget=\"presence_entries\"} 1"),
        "{text}"
    );
}
