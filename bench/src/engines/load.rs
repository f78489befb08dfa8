//! The load of the engines scenario: JSON WebSocket subscribers on one data plane, spread over
//! a few channels, and publishes through the other data plane's server API at a given rate
//! with a bounded number of requests in flight. Each payload carries its send time and step
//! (see [`crate::payload`]); the subscribers file every delivery's latency under its step, so
//! one step's numbers are read after it has drained.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use rotor_data_plane::protocol::SubscribeRequest;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::histogram::Histogram;

/// Steps a run can have (warm-up, the fixed rate, the ramp).
pub const MAX_STEPS: usize = 32;

/// What the subscribers saw, per step.
pub struct Seen {
    pub latency: Mutex<Vec<Histogram>>,
    pub delivered: Vec<AtomicU64>,
}

impl Seen {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            latency: Mutex::new((0..MAX_STEPS).map(|_| Histogram::new()).collect()),
            delivered: (0..MAX_STEPS).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn record(&self, stamps: &[(u64, u32)]) {
        let now = crate::payload::now_micros();
        let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        for (ts, step) in stamps {
            let step = *step as usize;
            if step < MAX_STEPS {
                h[step].record(now.saturating_sub(*ts));
                self.delivered[step].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The channel publish `n` goes to (and subscriber `n` listens on).
pub fn channel(n: u64, channels: u64) -> String {
    format!("bench{}", n % channels.max(1))
}

/// One subscriber on `channel`: reports on `ready` once subscribed, then files deliveries in
/// `seen` until the task is dropped.
pub async fn subscriber(
    ws_url: String,
    token: String,
    channel: String,
    ready: tokio::sync::mpsc::Sender<()>,
    seen: Arc<Seen>,
) -> anyhow::Result<()> {
    let subscribe = SubscribeRequest {
        channel,
        ..Default::default()
    };
    let (mut ws, protocol) =
        crate::scenario::open_and_subscribe(&ws_url, false, token, subscribe).await?;
    let mut stamps = Vec::new();
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if let Some(pong) = crate::client::centrifugo::pong_for(protocol, &msg) {
            ws.send(pong).await?;
        }
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(f) => bail!("closed by the server: {f:?}"),
            _ => continue,
        };
        stamps.clear();
        crate::payload::find_all(text.as_bytes(), |ts, step| stamps.push((ts, step)));
        seen.record(&stamps);
        for line in text.as_str().split('\n') {
            if line.starts_with("{\"id\":2") {
                if line.contains("\"error\"") {
                    bail!("subscribe refused: {line}");
                }
                let _ = ready.send(()).await;
            }
        }
    }
    bail!("connection closed")
}

/// What one publishing step did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Published {
    /// Publishes the server API acknowledged.
    pub acked: u64,
    /// Publishes refused or failed.
    pub errors: u64,
    /// From the first publish to the last answer.
    pub elapsed: Duration,
}

/// The publisher: one keep-alive pool to the first data plane's server API.
pub struct Publisher {
    pub http: reqwest::Client,
    pub url: String,
    pub api_key: String,
    pub channels: u64,
    pub concurrency: usize,
    pub payload_bytes: usize,
}

impl Publisher {
    /// Publishes for `secs` at `rate`/s (0: as fast as `concurrency` requests in flight allow),
    /// each payload stamped with `step`; waits for every answer.
    pub async fn step(&self, step: u32, rate: f64, secs: f64) -> anyhow::Result<Published> {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let acked = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let end = started + Duration::from_secs_f64(secs);
        let mut issued: u64 = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while Instant::now() < end {
            let due = if rate > 0.0 {
                tick.tick().await;
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                // Behind by more than 50 ms: saturated, the backlog is dropped, not burst.
                issued = issued.max(due.saturating_sub((rate * 0.05) as u64 + 1));
                due
            } else {
                issued + 1
            };
            while issued < due && Instant::now() < end {
                let permit = permits.clone().acquire_owned().await?;
                issued += 1;
                let body = format!(
                    r#"{{"channel":"{}","data":{}}}"#,
                    channel(issued, self.channels),
                    crate::payload::make(step, self.payload_bytes)
                );
                let req = self
                    .http
                    .post(&self.url)
                    .header("x-api-key", &self.api_key)
                    .header("content-type", "application/json")
                    .timeout(Duration::from_secs(10))
                    .body(body);
                let (acked, errors) = (acked.clone(), errors.clone());
                tokio::spawn(async move {
                    let ok = match req.send().await {
                        Ok(r) if r.status().is_success() => r
                            .bytes()
                            .await
                            .is_ok_and(|b| !b.windows(8).any(|w| w == b"\"error\":")),
                        _ => false,
                    };
                    let counter = if ok { &acked } else { &errors };
                    counter.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
        }
        let all = u32::try_from(self.concurrency)?;
        let _ = tokio::time::timeout(Duration::from_secs(15), permits.acquire_many(all))
            .await
            .context("publishes still in flight after 15 s")??;
        Ok(Published {
            acked: acked.load(Ordering::Relaxed),
            errors: errors.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        })
    }
}

/// Waits until `step` has `expected` deliveries, at most `grace` (deliveries may be lost).
pub async fn drain(seen: &Seen, step: u32, expected: u64, grace: Duration) -> u64 {
    let deadline = Instant::now() + grace;
    loop {
        let got = seen.delivered[step as usize].load(Ordering::Relaxed);
        if got >= expected || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
