//! Tenant A's noise in the noisy-neighbour scenario, run as its own process (`rotor-noisy
//! noise --spec JSON`) so that its work never delays B's publisher or subscribers in the same
//! runtime: a publish flood far above A's publish rate limit into a namespace with history
//! (large payloads until the history byte budget refuses one, small ones after), and a
//! connection storm far above A's connection limit (paced attempts, each accepted connection
//! held open until the end). Prints one JSON line, a [`NoiseSummary`], and exits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::{self, ConnError, Opening, Protocol, Recorder};

/// What the noise process does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoiseSpec {
    /// A's `…/api/publish` URL and API key.
    pub api_url: String,
    pub api_key: String,
    /// A's client WebSocket URL and token secret.
    pub ws_url: String,
    pub secret: String,
    /// Publish attempts per second.
    pub flood_rate: f64,
    /// Payload bytes until the history budget is full, and after.
    pub flood_bytes: usize,
    pub flood_small_bytes: usize,
    /// Requests in flight at most (attempts beyond are skipped and counted).
    pub flood_concurrency: usize,
    /// History channels the flood spreads over (`{prefix}{n}`).
    pub flood_channels: usize,
    pub channel_prefix: String,
    /// Connections open or opening at most, and attempts per second.
    pub storm_conns: usize,
    pub storm_rate: f64,
    /// How long the noise lasts.
    pub secs: f64,
}

/// The flood's outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FloodSummary {
    pub attempted: u64,
    /// Attempts not made because `flood_concurrency` requests were in flight.
    pub skipped: u64,
    pub secs: f64,
    /// Answers by kind: `ok`, a Centrifugo error code (`111`, `106`, …), `http 503`, `timeout`,
    /// `transport`.
    pub outcomes: BTreeMap<String, u64>,
    /// When the first 106 (history budget) came, seconds after the start.
    pub budget_full_after_secs: Option<f64>,
    /// Payload bytes accepted (answered `ok`).
    pub accepted_bytes: u64,
}

/// The storm's outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StormSummary {
    pub attempts: u64,
    pub accepted: u64,
    /// Most connections open at once.
    pub peak_open: u64,
    /// Accepted connections that ended before the storm did.
    pub dropped: u64,
    pub secs: f64,
    /// Refusals and failures by kind (`http 503`, `refused: …`, `timeout`, …).
    pub outcomes: BTreeMap<String, u64>,
}

/// Everything the noise process reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NoiseSummary {
    pub flood: FloodSummary,
    pub storm: StormSummary,
    /// The noise process's own CPU time, seconds.
    pub cpu_secs: f64,
}

impl NoiseSummary {
    /// Refusals of one kind over the flood and the storm (`"111"`, `"106"`, `"http 503"`).
    pub fn count(&self, kind: &str) -> u64 {
        self.flood.outcomes.get(kind).copied().unwrap_or(0)
            + self.storm.outcomes.get(kind).copied().unwrap_or(0)
    }
}

struct Discard;
impl Recorder for Discard {
    fn frame(&mut self, _: &[u8], _: u64) {}
}

fn body(channel: &str, bytes: usize) -> Bytes {
    let pad = "x".repeat(bytes.saturating_sub(16));
    Bytes::from(format!(
        "{{\"channel\":\"{channel}\",\"data\":{{\"p\":\"{pad}\"}}}}"
    ))
}

/// The kind of one publish answer.
fn classify(status: u16, text: &[u8]) -> String {
    if status != 200 {
        return format!("http {status}");
    }
    if !text.windows(8).any(|w| w == b"\"error\":") {
        return "ok".into();
    }
    serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["error"]["code"].as_u64())
        .map_or_else(|| "error".into(), |c| c.to_string())
}

async fn flood(spec: &NoiseSpec) -> FloodSummary {
    let Ok(http) = crate::resolve::http_client(reqwest::Client::builder())
        .pool_max_idle_per_host(spec.flood_concurrency)
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return FloodSummary::default();
    };
    let channels: Vec<String> = (0..spec.flood_channels.max(1))
        .map(|i| format!("{}{i}", spec.channel_prefix))
        .collect();
    let big: Vec<Bytes> = channels.iter().map(|c| body(c, spec.flood_bytes)).collect();
    let small: Vec<Bytes> = channels
        .iter()
        .map(|c| body(c, spec.flood_small_bytes))
        .collect();
    let full = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(FloodSummary::default()));
    let sem = Arc::new(Semaphore::new(spec.flood_concurrency.max(1)));
    let start = Instant::now();
    let length = Duration::from_secs_f64(spec.secs);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let (mut sent, mut skipped) = (0u64, 0u64);
    while start.elapsed() < length {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * spec.flood_rate) as u64;
        while sent + skipped < due {
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                skipped = due - sent;
                break;
            };
            let i = (sent as usize) % channels.len();
            let large = !full.load(Ordering::Relaxed);
            let payload = if large { &big[i] } else { &small[i] };
            let bytes = if large {
                spec.flood_bytes
            } else {
                spec.flood_small_bytes
            } as u64;
            let request = http
                .post(&spec.api_url)
                .header("X-API-Key", &spec.api_key)
                .body(payload.clone());
            let (full, out) = (full.clone(), out.clone());
            sent += 1;
            tokio::spawn(async move {
                let kind = match request.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        match resp.bytes().await {
                            Ok(text) => classify(status, &text),
                            Err(_) => "transport".into(),
                        }
                    }
                    Err(e) if e.is_timeout() => "timeout".into(),
                    Err(_) => "transport".into(),
                };
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                if kind == "106" && !full.swap(true, Ordering::Relaxed) {
                    o.budget_full_after_secs = Some(start.elapsed().as_secs_f64());
                }
                if kind == "ok" {
                    o.accepted_bytes += bytes;
                }
                *o.outcomes.entry(kind).or_default() += 1;
                drop(permit);
            });
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Let the requests in flight finish (bounded by the client's timeout).
    let _ = tokio::time::timeout(
        Duration::from_secs(12),
        sem.acquire_many(spec.flood_concurrency.max(1) as u32),
    )
    .await;
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner()).clone();
    o.attempted = sent;
    o.skipped = skipped;
    o.secs = secs;
    o
}

#[derive(Default)]
struct Storm {
    s: StormSummary,
    open: u64,
}

fn connect_error(e: &ConnError) -> String {
    match e {
        ConnError::Ws(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            format!("http {}", resp.status().as_u16())
        }
        other => other.kind(),
    }
}

async fn storm(spec: &NoiseSpec) -> StormSummary {
    let stats = Arc::new(Mutex::new(Storm::default()));
    let sem = Arc::new(Semaphore::new(spec.storm_conns.max(1)));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(spec.secs);
    let attempts = (spec.storm_rate.max(0.0) * spec.secs) as u64;
    for i in 0..attempts {
        let due = start + Duration::from_secs_f64(i as f64 / spec.storm_rate);
        tokio::time::sleep_until(due).await;
        let Ok(Ok(permit)) = tokio::time::timeout_at(end, sem.clone().acquire_owned()).await else {
            break;
        };
        let token = crate::cp::token(&spec.secret, &format!("storm{i}"), &[]).ok();
        let (url, stats) = (spec.ws_url.clone(), stats.clone());
        tokio::spawn(async move {
            stats.lock().unwrap_or_else(|e| e.into_inner()).s.attempts += 1;
            let opening = Opening {
                protocol: Protocol::Json,
                url: &url,
                token,
                channels: &[],
            };
            let mut ws = match client::open(&opening, &mut Discard, Duration::from_secs(5)).await {
                Ok(ws) => ws,
                Err(e) => {
                    let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
                    *st.s.outcomes.entry(connect_error(&e)).or_default() += 1;
                    return;
                }
            };
            {
                let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
                st.s.accepted += 1;
                st.open += 1;
                st.s.peak_open = st.s.peak_open.max(st.open);
            }
            let ended = tokio::time::timeout_at(
                end,
                client::read_loop(&mut ws, Protocol::Json, &mut Discard),
            )
            .await;
            let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
            st.open -= 1;
            if let Ok(r) = ended {
                st.s.dropped += 1;
                let kind = r.err().map_or_else(|| "end of stream".into(), |e| e.kind());
                *st.s.outcomes.entry(format!("dropped: {kind}")).or_default() += 1;
            }
            drop(permit);
        });
    }
    tokio::time::sleep_until(end).await;
    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner()).s.clone();
    s.secs = start.elapsed().as_secs_f64();
    s
}

/// Runs the noise and prints its summary line; exits the process (closing every socket).
pub fn run(spec: NoiseSpec) -> anyhow::Result<()> {
    crate::procstat::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = rt.block_on(async {
        let (flood, storm) = tokio::join!(flood(&spec), storm(&spec));
        NoiseSummary {
            flood,
            storm,
            cpu_secs: crate::procstat::cpu_of(std::process::id())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    });
    println!("{}", serde_json::to_string(&summary)?);
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_code() {
        assert_eq!(classify(200, br#"{"result":{}}"#), "ok");
        assert_eq!(
            classify(
                200,
                br#"{"error":{"code":111,"message":"too many requests"}}"#
            ),
            "111"
        );
        assert_eq!(classify(503, b"busy"), "http 503");
        let b = body("hist:c1", 100);
        assert!(b.len() >= 100 && b.starts_with(br#"{"channel":"hist:c1""#));
    }
}
