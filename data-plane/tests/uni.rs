//! Unidirectional transports: a plain HTTP client or WebSocket follows channels with nothing
//! but a token; pushes arrive bare; connect errors and server disconnects are disconnect pushes.

mod common;

use common::{now, token, TestServer, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

fn enabled() -> Value {
    json!({"uni_sse": {"enabled": true}, "uni_http_stream": {"enabled": true}, "uni_websocket": {"enabled": true}})
}

/// Reads an HTTP stream and splits it into messages.
struct Stream {
    resp: reqwest::Response,
    buf: String,
    sep: &'static str,
}

impl Stream {
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.find(self.sep) {
                let msg: String = self.buf.drain(..i + self.sep.len()).collect();
                let msg = msg.trim().trim_start_matches("data: ").to_owned();
                if msg.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&msg).expect("JSON message"));
            }
            match tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("stream stalled")
            {
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// The next message that is not a ping.
    async fn push(&mut self) -> Option<Value> {
        loop {
            let v = self.next().await?;
            if v != json!({}) {
                return Some(v);
            }
        }
    }
}

async fn publish(s: &TestServer, channel: &str, data: Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/publish", s.addr))
        .header("x-api-key", "api-key")
        .body(json!({"channel": channel, "data": data}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn uni_http_stream_follows_the_tokens_channels_with_bare_pushes() {
    let s = TestServer::start(enabled()).await;
    let body = json!({"token": token(json!({"sub": "u", "channels": ["news"]}))}).to_string();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/connection/uni_http_stream", s.addr))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = Stream {
        resp,
        buf: String::new(),
        sep: "\n",
    };
    let connect = stream.push().await.unwrap();
    assert_eq!(connect["connect"]["client"].as_str().unwrap().len(), 36);
    assert!(connect["connect"]["subs"]["news"].is_object(), "{connect}");
    publish(&s, "news", json!({"n": 1})).await;
    assert_eq!(
        stream.push().await.unwrap(),
        json!({"channel": "news", "pub": {"data": {"n": 1}}})
    );
}

#[tokio::test]
async fn uni_sse_works_with_a_get_and_cf_connect_and_lists_extra_channels() {
    let s = TestServer::start(enabled()).await;
    let req = json!({"token": token(json!({"sub": "u"})), "subs": {"news": {}}}).to_string();
    let resp = reqwest::Client::new()
        .get(format!("http://{}/connection/uni_sse", s.addr))
        .query(&[("cf_connect", req)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = Stream {
        resp,
        buf: String::new(),
        sep: "\n\n",
    };
    let connect = stream.push().await.unwrap();
    assert!(
        connect["connect"]["subs"]["news"].is_object(),
        "client-listed channel subscribed: {connect}"
    );
    publish(&s, "news", json!("hello")).await;
    assert_eq!(stream.push().await.unwrap()["pub"]["data"], "hello");
}

#[tokio::test]
async fn uni_connect_errors_become_disconnect_pushes() {
    let s = TestServer::start(enabled()).await;
    let expired = json!({"token": token(json!({"sub": "u", "exp": now() - 10}))}).to_string();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/connection/uni_http_stream", s.addr))
        .body(expired)
        .send()
        .await
        .unwrap();
    let mut stream = Stream {
        resp,
        buf: String::new(),
        sep: "\n",
    };
    assert_eq!(
        stream.push().await.unwrap(),
        json!({"disconnect": {"code": 3005, "reason": "connection expired"}})
    );
    assert!(stream.next().await.is_none(), "the stream ends");
    let forged = json!({"token": "not-a-jwt"}).to_string();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/connection/uni_http_stream", s.addr))
        .body(forged)
        .send()
        .await
        .unwrap();
    let mut stream = Stream {
        resp,
        buf: String::new(),
        sep: "\n",
    };
    assert_eq!(stream.push().await.unwrap()["disconnect"]["code"], 3500);
}

#[tokio::test]
async fn uni_websocket_pushes_one_message_per_frame_and_closes_after_a_disconnect_push() {
    use tokio_tungstenite::tungstenite::Message;
    let s = TestServer::start(enabled()).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/connection/uni_websocket", s.addr))
            .await
            .unwrap();
    ws.send(Message::text(
        json!({"token": token(json!({"sub": "w", "channels": ["news"]}))}).to_string(),
    ))
    .await
    .unwrap();
    let mut next = async || loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.as_str() != "{}" => {
                return Ok(serde_json::from_str::<Value>(&t).unwrap())
            }
            Some(Ok(Message::Close(f))) => return Err(f.map(|f| u16::from(f.code)).unwrap_or(0)),
            Some(Ok(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(next().await.unwrap()["connect"]["subs"]["news"].is_object());
    publish(&s, "news", json!({"n": 2})).await;
    assert_eq!(
        next().await.unwrap(),
        json!({"channel": "news", "pub": {"data": {"n": 2}}})
    );
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/disconnect", s.addr))
        .header("x-api-key", "api-key")
        .body(r#"{"user":"w"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        next().await.unwrap(),
        json!({"disconnect": {"code": 3503, "reason": "force disconnect"}})
    );
    assert_eq!(next().await.unwrap_err(), 3503);
}

#[tokio::test]
async fn unidirectional_transports_are_off_unless_enabled() {
    let s = TestServer::start(json!({})).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.post(format!("http://{}/connection/uni_http_stream", s.addr))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        http.get(format!("http://{}/connection/uni_sse", s.addr))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn an_idle_uni_websocket_gets_websocket_ping_frames() {
    use tokio_tungstenite::tungstenite::Message;
    let mut config = enabled();
    config["client"] = json!({"ping_interval": "1s", "pong_timeout": "500ms"});
    let s = TestServer::start(config).await;
    let connect = json!({"token": token(json!({"sub": "w"}))}).to_string();
    let url = format!(
        "ws://{}/connection/uni_websocket?cf_connect={}",
        s.addr,
        urlencode(&connect)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // The connect push first, then within a few seconds a ping frame (besides `{}` pushes).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut saw_connect = false;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a ping frame within 5 s")
            .expect("open")
            .unwrap();
        match msg {
            Message::Text(t) if t.as_str().contains("\"connect\"") => saw_connect = true,
            Message::Ping(_) => break,
            _ => {}
        }
    }
    assert!(saw_connect, "the connect push comes first");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
