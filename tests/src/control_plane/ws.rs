//! Raw JSON-protocol WebSocket clients (tokio-tungstenite) for the end-to-end tests: a
//! subscriber that connects with a token and subscribes, replies awaited by id, a reader that
//! counts numbered publications, and [`Subscriber`] for tests that read one publication at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::token;

pub type Ws = WebSocketStream<TcpStream>;

/// Opens a JSON-protocol connection to `url` (ws://host:port/path), connects with `jwt` and
/// subscribes to `channels`. `recv_buffer` sets SO_RCVBUF before connecting.
pub async fn raw_subscriber(
    url: &str,
    jwt: &str,
    channels: &[&str],
    recv_buffer: Option<u32>,
) -> Result<Ws> {
    let authority = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .context("url")?;
    let addr: SocketAddr = authority.parse()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr)).await??;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, stream),
    )
    .await??;
    ws.send(Message::text(
        json!({"id": 1, "connect": {"token": jwt}}).to_string(),
    ))
    .await?;
    let reply = await_reply(&mut ws, 1).await?;
    ensure!(reply.get("connect").is_some(), "connect refused: {reply}");
    for (id, channel) in (2..).zip(channels) {
        ws.send(Message::text(
            json!({"id": id, "subscribe": {"channel": channel}}).to_string(),
        ))
        .await?;
        let reply = await_reply(&mut ws, id).await?;
        ensure!(
            reply.get("subscribe").is_some(),
            "subscribe to {channel} refused: {reply}"
        );
    }
    Ok(ws)
}

/// Reads until the reply with `id` (other frames are skipped), within 10 s.
pub async fn await_reply(ws: &mut Ws, id: u64) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no reply {id} within 10 s"))?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                for line in t.split('\n') {
                    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                    if v["id"].as_u64() == Some(id) {
                        return Ok(v);
                    }
                }
            }
            Some(Ok(Message::Close(f))) => bail!("closed while waiting for reply {id}: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("connection failed while waiting for reply {id}: {e}"),
            None => bail!("connection ended while waiting for reply {id}"),
        }
    }
}

/// The unsigned integer after `key` (e.g. `"n":`) in `line`, without parsing the whole line.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// What a reading subscriber saw: each publication's `n` and, when stamped, its latency.
#[derive(Debug, Default)]
pub struct Seen {
    pub ns: Vec<u64>,
    pub latencies_us: Vec<u64>,
    pub ended: Option<String>,
}

/// Reads `ws` until a publication with `n >= last` has arrived (`last` 0: not known yet), the
/// connection ends or `deadline` passes; answers server pings. `clock` is the base of the
/// publications' `t` stamps (µs).
pub async fn read_publications(
    mut ws: Ws,
    last: Arc<AtomicU64>,
    clock: Instant,
    deadline: tokio::time::Instant,
) -> Seen {
    let mut seen = Seen::default();
    let done = |seen: &Seen| {
        let want = last.load(Ordering::Acquire);
        want > 0 && seen.ns.last().is_some_and(|n| *n >= want)
    };
    loop {
        // Wake every 100 ms: `last` may be set after the last publication arrived.
        let step = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
        let msg = match tokio::time::timeout_at(step, ws.next()).await {
            Ok(m) => m,
            Err(_) if done(&seen) => return seen,
            Err(_) if step < deadline => continue,
            Err(_) => {
                seen.ended = Some("deadline".into());
                return seen;
            }
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let now = clock.elapsed().as_micros() as u64;
                for line in t.split('\n') {
                    if line == "{}" {
                        let _ = ws.send(Message::text("{}")).await;
                        continue;
                    }
                    if !line.starts_with("{\"push\"") {
                        continue;
                    }
                    let Some(n) = number_after(line, "\"n\":") else {
                        continue;
                    };
                    if let Some(t) = number_after(line, "\"t\":") {
                        seen.latencies_us.push(now.saturating_sub(t));
                    }
                    seen.ns.push(n);
                }
                if done(&seen) {
                    return seen;
                }
            }
            Some(Ok(Message::Close(f))) => {
                seen.ended = Some(format!("close frame {f:?}"));
                return seen;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                seen.ended = Some(format!("error: {e}"));
                return seen;
            }
            None => {
                seen.ended = Some("ended without a close frame".into());
                return seen;
            }
        }
    }
}

/// A JSON-protocol client connected and subscribed to one channel, read one message at a time.
pub struct Subscriber {
    ws: Ws,
    /// Objects of a frame that carried several (the server joins queued messages).
    pending: std::collections::VecDeque<Value>,
}

impl Subscriber {
    /// Connects to `url` as `user` (an HS256 token signed with `secret`) and subscribes.
    pub async fn open(url: &str, secret: &str, user: &str, channel: &str) -> Result<Self> {
        let ws = raw_subscriber(url, &token(secret, user), &[channel], None)
            .await
            .with_context(|| format!("connect to {url}"))?;
        Ok(Self {
            ws,
            pending: Default::default(),
        })
    }

    /// The next non-empty JSON object; an error when the connection ends.
    pub async fn next(&mut self) -> Result<Value> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(v);
            }
            match tokio::time::timeout(Duration::from_secs(5), self.ws.next()).await? {
                Some(Ok(Message::Text(t))) => {
                    for line in t.split('\n').filter(|l| !l.is_empty()) {
                        let v: Value = serde_json::from_str(line)?;
                        if v.as_object().is_some_and(|o| !o.is_empty()) {
                            self.pending.push_back(v);
                        }
                    }
                }
                Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
                Some(Ok(_)) => {}
                other => bail!("connection ended: {other:?}"),
            }
        }
    }

    /// The data of the next publication.
    pub async fn publication(&mut self) -> Result<Value> {
        let v = self.next().await?;
        ensure!(v["push"]["pub"].is_object(), "not a publication: {v}");
        Ok(v["push"]["pub"]["data"].clone())
    }
}
