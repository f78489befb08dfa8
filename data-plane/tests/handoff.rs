//! Connection hand-off: a client's TCP socket passed over the hand-off socket (SCM_RIGHTS) with
//! its request head is served like a direct connection — WebSocket connect, subscribe,
//! publications, shutdown with 3001 — and malformed messages are dropped while the listener
//! keeps serving.

mod common;

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{token, TestServer, WAIT};
use futures_util::{SinkExt, StreamExt};
use rotor_data_plane::handoff::HandoffListener;
use rotor_data_plane::server::Mode;
use rotor_handoff::{hand_off, Outcome};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

fn socket_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "rotor-handoff-{}.sock",
        uuid::Uuid::new_v4().simple()
    ))
}

/// A data plane with a hand-off socket, sharing the node (and its shutdown) of a TCP server.
async fn start() -> (TestServer, PathBuf) {
    start_with_idle(Duration::from_secs(60)).await
}

/// [`start`], closing kept API connections after `idle` without a request.
async fn start_with_idle(idle: Duration) -> (TestServer, PathBuf) {
    let server = TestServer::start(json!({})).await;
    let path = socket_path();
    let listener = HandoffListener::bind(&path)
        .expect("bind hand-off socket")
        .with_keep_alive_idle(idle);
    let app = rotor_data_plane::server::router(server.node.clone(), Mode::Hosted);
    tokio::spawn(listener.serve(app, server.node.shutdown.clone(), server.node.clone()));
    (server, path)
}

/// What the edge does: accept a client, read its request head, hand socket and bytes over.
/// Returns the client's side (the WebSocket handshake runs on it meanwhile).
async fn connect_via_handoff(
    path: &Path,
) -> (WebSocketStream<TcpStream>, tokio::task::JoinHandle<Outcome>) {
    let edge = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = edge.local_addr().unwrap();
    let path = path.to_owned();
    let edge_task = tokio::spawn(async move {
        let (mut socket, _) = edge.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before its head was complete");
            head.extend_from_slice(&chunk[..n]);
        }
        hand_off(&path, socket.as_fd(), &head).await
        // `socket` (the edge's copy) is dropped here, as the edge drops it.
    });
    let client = TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(format!("ws://{addr}/connection/websocket"), client),
    )
    .await
    .expect("handshake timeout")
    .expect("handshake");
    (ws, edge_task)
}

async fn send(ws: &mut WebSocketStream<TcpStream>, cmd: Value) {
    ws.send(Message::text(cmd.to_string())).await.unwrap();
}

/// The next JSON object from the server (pings skipped); `Err(code)` when it closes.
async fn next(ws: &mut WebSocketStream<TcpStream>) -> Result<Value, u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timeout")
        {
            Some(Ok(Message::Text(t))) => {
                for line in t.split('\n').filter(|l| !l.is_empty()) {
                    let v: Value = serde_json::from_str(line).unwrap();
                    if v.as_object().is_some_and(|o| !o.is_empty()) {
                        return Ok(v);
                    }
                }
            }
            Some(Ok(Message::Close(f))) => return Err(f.map_or(1005, |f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(1006),
        }
    }
}

/// A client handed off to the tenant (the hand-off accepted) and connected as `user`.
async fn connected_via_handoff(path: &Path, user: &str) -> WebSocketStream<TcpStream> {
    let (mut ws, edge) = connect_via_handoff(path).await;
    assert!(matches!(edge.await.unwrap(), Outcome::Accepted));
    send(
        &mut ws,
        json!({"id": 1, "connect": {"token": token(json!({"sub": user}))}}),
    )
    .await;
    let reply = next(&mut ws).await.unwrap();
    assert_eq!(reply["id"], 1, "{reply}");
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    ws
}

#[tokio::test]
async fn a_handed_off_socket_serves_a_websocket_connect_publications_and_shutdown() {
    let (server, path) = start().await;
    let mut ws = connected_via_handoff(&path, "alice").await;
    send(&mut ws, json!({"id": 2, "subscribe": {"channel": "news"}})).await;
    let reply = next(&mut ws).await.unwrap();
    assert_eq!(reply["id"], 2, "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(server.node.metrics.connections.get(), 1);

    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/publish", server.addr))
        .header("X-API-Key", "api-key")
        .body(r#"{"channel":"news","data":{"via":"handoff"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let push = next(&mut ws).await.unwrap();
    assert_eq!(push["push"]["channel"], "news", "{push}");
    assert_eq!(push["push"]["pub"]["data"], json!({"via": "handoff"}));

    // Graceful shutdown covers handed-off connections: 3001, and the socket file goes away.
    let shutdown = tokio::spawn(server.shutdown());
    assert_eq!(next(&mut ws).await, Err(3001));
    shutdown.await.unwrap();
    tokio::time::timeout(WAIT, async {
        while path.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the hand-off socket is removed on shutdown");
}

/// Sends a raw hand-off message: a length header claiming `claimed` bytes, `body`, and `fds`.
async fn send_raw(path: &Path, claimed: u32, body: &[u8], fds: &[BorrowedFd<'_>]) -> UnixStream {
    let unix = UnixStream::connect(path).await.unwrap();
    let mut msg = claimed.to_be_bytes().to_vec();
    msg.extend_from_slice(body);
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(fds)));
    }
    unix.writable().await.unwrap();
    let sent = rustix::net::sendmsg(
        &unix,
        &[IoSlice::new(&msg)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
    assert_eq!(sent, msg.len());
    unix
}

/// The tenant's answer: `None` when it closed without one.
async fn answer(mut unix: UnixStream) -> Option<u8> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(WAIT, unix.read(&mut byte))
        .await
        .expect("the tenant neither answered nor closed")
    {
        Ok(1) => Some(byte[0]),
        _ => None,
    }
}

#[tokio::test]
async fn malformed_hand_off_messages_are_dropped_and_the_listener_keeps_serving() {
    let (server, path) = start().await;
    let head = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n\r\n";
    // A connected TCP socket to pass around.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();

    // No descriptor at all.
    let unix = send_raw(&path, head.len() as u32, head, &[]).await;
    assert_eq!(answer(unix).await, None, "no fd");
    // Two descriptors.
    let unix = send_raw(&path, head.len() as u32, head, &[tcp.as_fd(), tcp.as_fd()]).await;
    assert_eq!(answer(unix).await, None, "two fds");
    // A descriptor that is not a TCP socket.
    let (a, _b) = UnixStream::pair().unwrap();
    let unix = send_raw(&path, head.len() as u32, head, &[a.as_fd()]).await;
    assert_eq!(answer(unix).await, None, "unix socket fd");
    // An oversize payload (only the header is sent: the length alone must be refused).
    let unix = send_raw(&path, 1 << 20, b"", &[tcp.as_fd()]).await;
    assert_eq!(answer(unix).await, None, "oversize");
    // A payload shorter than announced, then silence: refused within the step timeout.
    let unix = send_raw(&path, 100, b"GET", &[tcp.as_fd()]).await;
    assert_eq!(answer(unix).await, None, "truncated");
    assert_eq!(server.node.metrics.connections.get(), 0);

    // The listener still takes a well-formed hand-off.
    let _ws = connected_via_handoff(&path, "bob").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_hand_off_socket_is_reported_as_not_taken() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();
    let outcome = hand_off(&socket_path(), tcp.as_fd(), b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(matches!(outcome, Outcome::NotTaken(_)), "{outcome:?}");
}

#[tokio::test]
async fn a_handed_off_socket_answers_its_first_request_only_and_then_closes() {
    use tokio::io::AsyncWriteExt;
    let (server, path) = start().await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();
    // The edge routed the first request; a second one rides behind it, pipelined, with a
    // forged client address and a server API call.
    let second = r#"{"channel":"news","data":{"smuggled":true}}"#;
    let payload = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /api/publish HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\
         X-API-Key: api-key\r\nContent-Length: {}\r\n\r\n{second}",
        second.len()
    );
    assert!(matches!(
        hand_off(&path, tcp.as_fd(), payload.as_bytes()).await,
        Outcome::Accepted
    ));
    drop(tcp);
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut received))
        .await
        .expect("the connection closes after one response")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    // A keep-alive request sent afterwards finds the connection closed too.
    // (The write itself may fail: the peer is gone.)
    let _ = client
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut more = Vec::new();
    let n = tokio::time::timeout(WAIT, client.read_to_end(&mut more))
        .await
        .expect("no answer and no hang")
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&more));
    assert_eq!(
        server.node.metrics.messages_published.get(),
        0,
        "the pipelined publish never ran"
    );
}

/// Reads one HTTP response (head and `Content-Length` body) off `conn`: its status, whether it
/// says `Connection: close`, and its body.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, bool, String) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                let status = head[9..12].parse().unwrap();
                let close = head.contains("connection: close");
                buf.drain(..end + 4 + len);
                return (status, close, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, conn.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn api_publish(path: &str, n: u32, extra: &str) -> String {
    let body = format!(r#"{{"channel":"news","data":{{"n":{n}}}}}"#);
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: api-key\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Hands over a client connection whose first request carries `payload`; returns the client.
async fn hand_over(path: &Path, payload: &[u8]) -> TcpStream {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();
    assert!(matches!(
        hand_off(path, tcp.as_fd(), payload).await,
        Outcome::Accepted
    ));
    client
}

#[tokio::test]
async fn a_granted_api_connection_serves_its_follow_ups_and_refuses_a_misdirected_one() {
    use tokio::io::AsyncWriteExt;
    let (server, path) = start().await;
    // The edge's head grants the connection; a follow-up rides pipelined behind it.
    let grant = "x-rotor-keep: rate=0; host=x\r\nConnection: keep-alive\r\n";
    let payload = format!(
        "{}{}",
        api_publish("/api/publish", 1, grant),
        api_publish("/api/publish", 2, "")
    );
    let mut client = hand_over(&path, payload.as_bytes()).await;
    let mut buf = Vec::new();
    for n in 1..=2 {
        let (status, close, body) = read_response(&mut client, &mut buf).await;
        assert_eq!((status, close), (200, false), "request {n}: {body}");
    }
    // And one sent afterwards.
    client
        .write_all(api_publish("/api/publish", 3, "").as_bytes())
        .await
        .unwrap();
    let (status, close, body) = read_response(&mut client, &mut buf).await;
    assert_eq!((status, close), (200, false), "{body}");
    assert_eq!(server.node.metrics.messages_published.get(), 3);
    // Another project's path on the same connection: refused, and the connection closes.
    client
        .write_all(
            api_publish("/api/publish", 4, "")
                .replace("Host: x", "Host: other")
                .as_bytes(),
        )
        .await
        .unwrap();
    let (status, close, body) = read_response(&mut client, &mut buf).await;
    assert_eq!((status, close), (421, true), "{body}");
    assert!(body.contains("misdirected_request"), "{body}");
    assert_eq!(server.node.metrics.kept_api_refused.get("misdirected"), 1);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, client.read_to_end(&mut rest))
        .await
        .expect("closed after the refusal")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(server.node.metrics.messages_published.get(), 3);
}

#[tokio::test]
async fn a_granted_connection_closes_on_a_wrong_key_and_when_idle() {
    use tokio::io::AsyncWriteExt;
    let (server, path) = start_with_idle(Duration::from_millis(300)).await;
    let grant = "x-rotor-keep: rate=0; host=x\r\nConnection: keep-alive\r\n";
    // A follow-up with a key that is not the project's: 401, and the connection closes.
    let mut client = hand_over(&path, api_publish("/api/publish", 1, grant).as_bytes()).await;
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut client, &mut buf).await.0, 200);
    let guess = api_publish("/api/publish", 2, "").replace("api-key", "guessed");
    client.write_all(guess.as_bytes()).await.unwrap();
    let (status, close, _) = read_response(&mut client, &mut buf).await;
    assert_eq!((status, close), (401, true));
    // A connection left idle is closed by the tenant.
    let mut client = hand_over(&path, api_publish("/api/publish", 3, grant).as_bytes()).await;
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut client, &mut buf).await.0, 200);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, client.read_to_end(&mut rest))
        .await
        .expect("an idle kept connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(server.node.metrics.messages_published.get(), 2);
}
