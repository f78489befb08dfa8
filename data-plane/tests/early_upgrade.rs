//! A connection whose first request opens `/connection/websocket` is upgraded before the router
//! (`transport::early`): what a client may send around that head — its first frame in the
//! same packet, a head in pieces, a head too large for the early path, an API call first on
//! the same connection, a head that never ends — and the refusals written there.

mod common;

use std::time::{Duration, Instant};

use common::{token, Client, TestServer, WAIT};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// An upgrade request head for `/connection/websocket`, with `extra` header lines.
fn head(extra: &str) -> String {
    format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// A masked client text frame carrying `text` (shorter than 126 bytes... or not).
fn client_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads an HTTP answer's head off `stream`: (head, bytes read past it).
async fn read_answer(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8(buf).unwrap(), rest);
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits for the server to close `stream` (after reading whatever else it sent).
async fn closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap();
    rest
}

/// The next JSON reply on a raw client WebSocket.
async fn reply(ws: &mut WebSocketStream<TcpStream>) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("reply in time")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str().lines().next().unwrap()).unwrap();
        }
    }
}

fn connect_command() -> String {
    json!({"id": 1, "connect": {"token": token(json!({"sub": "early"}))}}).to_string()
}

#[tokio::test]
async fn a_connect_sent_with_the_upgrade_head_is_answered() {
    let s = TestServer::start(json!({})).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let mut packet = head("Sec-WebSocket-Protocol: centrifuge-json\r\n").into_bytes();
    packet.extend(client_frame(&connect_command()));
    stream.write_all(&packet).await.unwrap();
    let (answer, rest) = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    assert!(
        answer.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("sec-websocket-protocol: centrifuge-json\r\n"),
        "{answer}"
    );
    let mut ws = WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
    let r = reply(&mut ws).await;
    assert_eq!(r["id"], 1);
    assert!(r["connect"]["client"].is_string(), "{r}");
}

#[tokio::test]
async fn a_head_in_single_bytes_still_opens() {
    let s = TestServer::start(json!({})).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for b in head("").bytes() {
        stream.write_all(&[b]).await.unwrap();
        tokio::task::yield_now().await;
    }
    let (answer, rest) = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    assert!(
        !answer.contains("sec-websocket-protocol"),
        "none offered: {answer}"
    );
    let mut ws = WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
    futures_util::SinkExt::send(&mut ws, Message::text(connect_command()))
        .await
        .unwrap();
    assert!(reply(&mut ws).await["connect"]["client"].is_string());
}

#[tokio::test]
async fn a_head_too_large_for_the_early_path_opens_through_the_router() {
    let s = TestServer::start(json!({})).await;
    let big = "c".repeat(12 * 1024);
    let mut c = Client::open_with(&s.ws_url(), &[("cookie", big.as_str())]).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "big"}))}}))
        .await;
    assert!(r["connect"]["client"].is_string(), "{r}");
}

#[tokio::test]
async fn a_websocket_after_an_api_request_on_the_same_connection_opens() {
    let s = TestServer::start(json!({})).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (answer, mut body) = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    while body.len() < 2 {
        let mut chunk = [0u8; 16];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body, b"{}");
    // The second request is hyper's; its upgrade hands the socket back for the session.
    let mut c = Client::open_on(stream, &s.ws_url()).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "kept"}))}}))
        .await;
    assert!(r["connect"]["client"].is_string(), "{r}");
    let sub = c.call(json!({"subscribe": {"channel": "news"}})).await;
    assert!(sub.get("subscribe").is_some(), "{sub}");
}

#[tokio::test]
async fn a_head_that_never_ends_is_closed_after_the_stale_delay() {
    let s = TestServer::start(json!({"client": {"stale_close_delay": "1s"}})).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /connection/websocket HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let rest = closed(&mut stream).await;
    assert!(rest.is_empty(), "nothing is answered: {rest:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the stale delay",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_origin_not_allowed_is_refused_and_the_connection_closed() {
    let s = TestServer::start(json!({"client": {"allowed_origins": ["https://app.example.com"]}}))
        .await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let mut packet = head("Origin: https://evil.example.net\r\n").into_bytes();
    // A frame sent right behind the head must not be read as anything.
    packet.extend(client_frame(&connect_command()));
    stream.write_all(&packet).await.unwrap();
    let (answer, _) = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    closed(&mut stream).await;
    let mut good = TcpStream::connect(s.addr).await.unwrap();
    good.write_all(head("Origin: https://app.example.com\r\n").as_bytes())
        .await
        .unwrap();
    let (answer, _) = read_answer(&mut good).await;
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
}

#[tokio::test]
async fn past_the_connection_limit_the_early_path_answers_503_and_counts_it() {
    let s = TestServer::start(json!({"client": {"connection_limit": 1}})).await;
    let mut first = TcpStream::connect(s.addr).await.unwrap();
    first.write_all(head("").as_bytes()).await.unwrap();
    let (answer, _) = read_answer(&mut first).await;
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    let mut second = TcpStream::connect(s.addr).await.unwrap();
    second.write_all(head("").as_bytes()).await.unwrap();
    let (answer, mut body) = read_answer(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
    body.extend(closed(&mut second).await);
    assert!(
        String::from_utf8_lossy(&body).contains("too_many_connections"),
        "{body:?}"
    );
    assert_eq!(
        s.node.metrics.connections_refused.get("connection_limit"),
        1
    );
}
