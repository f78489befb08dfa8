//! Publishing at a steady rate for one step, each payload stamped as it leaves: through a
//! Centrifugo-style server API (`POST /api/publish` with `X-API-Key`), a raw HTTP POST whose
//! body is the payload (bare server, Socket.IO script, Nchan's pub location), or frames on one
//! client WebSocket (Centrifugo `publish` command, Socket.IO `publish` event, raw text).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, centrifugo, socketio, ConnError, Opening, Protocol, Recorder};
use crate::payload;

/// How publications are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PublishVia {
    /// Centrifugo server API: JSON `{"channel","data"}` with `X-API-Key`.
    Api,
    /// HTTP POST, body = payload; `{channel}` in the URL is replaced.
    Http,
    /// One client WebSocket speaking the subscribers' protocol.
    Ws,
}

/// Why publishing could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publisher connection: {0}")]
    Connect(#[from] ConnError),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct Target {
    pub via: PublishVia,
    pub url: String,
    pub api_key: Option<String>,
    /// For `Ws`: the protocol and (Centrifugo) the token secret.
    pub protocol: Protocol,
    pub secret: Option<String>,
    /// Requests in flight at once (HTTP).
    pub concurrency: usize,
    pub payload_bytes: usize,
    pub channel_pool: usize,
    pub channel_prefix: String,
}

/// What one step sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepPublished {
    pub published: u64,
    pub errors: u64,
    /// Publications per channel of the pool.
    pub per_channel: Vec<u64>,
    /// Time from the first to the last send completing.
    pub secs: f64,
}

struct Discard;
impl Recorder for Discard {
    fn frame(&mut self, _: &[u8], _: u64) {}
}

enum Sender {
    Http(reqwest::Client),
    Ws {
        out: mpsc::Sender<Message>,
        next_id: u32,
    },
}

/// Sends publications for steps.
pub struct Publisher {
    target: Target,
    sender: Sender,
    /// Failed publishes reported asynchronously (WebSocket replies with an error).
    async_errors: Arc<AtomicU64>,
}

impl Publisher {
    /// Prepares the HTTP client or opens the publishing WebSocket.
    pub async fn new(target: Target) -> Result<Self, PublishError> {
        let async_errors = Arc::new(AtomicU64::new(0));
        let sender = match target.via {
            PublishVia::Api | PublishVia::Http => Sender::Http(
                crate::resolve::http_client(reqwest::Client::builder())
                    .pool_max_idle_per_host(target.concurrency)
                    .timeout(Duration::from_secs(10))
                    .build()?,
            ),
            PublishVia::Ws => {
                let token = match &target.secret {
                    Some(s) => Some(
                        jsonwebtoken::encode(
                            &jsonwebtoken::Header::default(),
                            &serde_json::json!({"sub": "publisher",
                            "exp": payload::now_micros() / 1_000_000 + 86_400}),
                            &jsonwebtoken::EncodingKey::from_secret(s.as_bytes()),
                        )
                        .map_err(ConnError::from)?,
                    ),
                    None => None,
                };
                let channel = format!("{}0", target.channel_prefix);
                let opening = Opening {
                    protocol: target.protocol,
                    url: &target.url,
                    token,
                    channels: std::slice::from_ref(&channel),
                };
                // A raw publisher needs the channel only in its URL; Centrifugo publishes
                // need no subscription.
                let opening = Opening {
                    channels: if matches!(target.protocol, Protocol::Raw | Protocol::Echo) {
                        opening.channels
                    } else {
                        &[]
                    },
                    ..opening
                };
                let ws = client::open(&opening, &mut Discard, Duration::from_secs(10)).await?;
                Sender::Ws {
                    out: spawn_ws(ws, target.protocol, async_errors.clone()),
                    next_id: 100,
                }
            }
        };
        Ok(Self {
            target,
            sender,
            async_errors,
        })
    }

    fn channel(&self) -> usize {
        if self.target.channel_pool <= 1 {
            0
        } else {
            fastrand::usize(..self.target.channel_pool)
        }
    }

    /// Publishes `rate` per second for `duration` (stops early if it falls more than two
    /// seconds behind), then waits for every request to finish.
    pub async fn run_step(&mut self, step: u32, rate: f64, duration: Duration) -> StepPublished {
        let pool = self.target.channel_pool.max(1);
        let mut out = StepPublished {
            per_channel: vec![0; pool],
            ..Default::default()
        };
        let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
        let errors_before = self.async_errors.load(Ordering::Relaxed);
        let mut inflight: JoinSet<bool> = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total && start.elapsed() < duration + Duration::from_secs(2) {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
            while sent < due {
                let ch = self.channel();
                out.per_channel[ch] += 1;
                sent += 1;
                self.send_one(step, ch, &mut inflight, &mut out).await;
            }
        }
        while let Some(done) = inflight.join_next().await {
            if !matches!(done, Ok(true)) {
                out.errors += 1;
            }
        }
        if matches!(self.sender, Sender::Ws { .. }) {
            // Give replies to the last commands a moment to come back.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out.errors += self.async_errors.load(Ordering::Relaxed) - errors_before;
        out.published = sent;
        out.secs = start.elapsed().as_secs_f64();
        out
    }

    async fn send_one(
        &mut self,
        step: u32,
        ch: usize,
        inflight: &mut JoinSet<bool>,
        out: &mut StepPublished,
    ) {
        let channel = format!("{}{ch}", self.target.channel_prefix);
        match &mut self.sender {
            Sender::Http(http) => {
                while inflight.len() >= self.target.concurrency.max(1) {
                    if !matches!(inflight.join_next().await, Some(Ok(true))) {
                        out.errors += 1;
                    }
                }
                let body = payload::make(step, self.target.payload_bytes);
                let request = match self.target.via {
                    PublishVia::Api => {
                        let mut r = http
                            .post(&self.target.url)
                            .body(format!("{{\"channel\":\"{channel}\",\"data\":{body}}}"));
                        if let Some(k) = &self.target.api_key {
                            r = r.header("X-API-Key", k);
                        }
                        r
                    }
                    _ => http
                        .post(self.target.url.replace("{channel}", &channel))
                        .body(body),
                };
                inflight.spawn(async move {
                    match request.send().await {
                        Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                            Ok(b) => !b.windows(7).any(|w| w == b"\"error\""),
                            Err(_) => false,
                        },
                        _ => false,
                    }
                });
            }
            Sender::Ws { out: tx, next_id } => {
                let body = payload::make(step, self.target.payload_bytes);
                *next_id = next_id.wrapping_add(1).max(100);
                let msg = match self.target.protocol {
                    Protocol::Json | Protocol::Protobuf => {
                        centrifugo::publish(self.target.protocol, *next_id, &channel, &body)
                    }
                    Protocol::Socketio => socketio::publish(&body),
                    Protocol::Raw | Protocol::Echo => Message::text(body),
                };
                if tx.send(msg).await.is_err() {
                    out.errors += 1;
                }
            }
        }
    }
}

/// Runs the publishing socket: a writer fed by the channel, a reader that answers pings and
/// counts error replies.
fn spawn_ws(ws: client::Ws, protocol: Protocol, errors: Arc<AtomicU64>) -> mpsc::Sender<Message> {
    let (tx, mut rx) = mpsc::channel::<Message>(4096);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let pong_tx = tx.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Some(pong) = client::reply_to(protocol, &msg) {
                if pong_tx.send(pong).await.is_err() {
                    return;
                }
            }
            let text: &[u8] = match &msg {
                Message::Text(t) => t.as_bytes(),
                Message::Binary(b) => b,
                _ => continue,
            };
            if matches!(protocol, Protocol::Json) {
                let n = text
                    .split(|&b| b == b'\n')
                    .filter(|l| l.windows(8).any(|w| w == b"\"error\":"))
                    .count();
                errors.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    });
    tx
}
