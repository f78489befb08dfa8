//! `rotor-bench-delta`: what Fossil delta compression saves. For each protocol (JSON,
//! Protobuf) and each mode (whole publications, `delta: "fossil"` subscribers) it opens `conns`
//! subscribers of one channel of a namespace with history and `allowed_delta_types`, publishes
//! `messages` ~1 KB JSON documents that differ by a few fields through the server API (with
//! `delta: true`), and measures per delivery the bytes the subscribers received on the wire
//! (WebSocket payload plus frame header) and the server's CPU time (from /proc, over the
//! publishing and delivery). Every subscriber rebuilds every document (applying the deltas)
//! and the run fails if one differs, so the numbers are for correct deliveries only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rotor_data_plane::protocol::{Reply, SubscribeRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::procstat;

/// Options of the delta scenario.
#[derive(Debug, Clone, Args)]
pub struct DeltaArgs {
    /// WebSocket URL of the data plane.
    #[arg(long)]
    pub ws_url: String,
    /// Server API base (`http://host:port/api`).
    #[arg(long)]
    pub api_url: String,
    #[arg(long)]
    pub api_key: String,
    /// HS256 secret for connection tokens.
    #[arg(long)]
    pub secret: String,
    /// Namespace with history and `allowed_delta_types: ["fossil"]`.
    #[arg(long, default_value = "delta")]
    pub namespace: String,
    /// The server process whose CPU time is measured.
    #[arg(long)]
    pub server_pid: u32,
    /// Subscribers per run.
    #[arg(long, default_value_t = 500)]
    pub conns: usize,
    /// Documents published per run.
    #[arg(long, default_value_t = 400)]
    pub messages: u64,
    /// Publishes per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Where the JSON result goes.
    #[arg(long, default_value = "bench/results/delta.json")]
    pub out: std::path::PathBuf,
}

/// One run: a protocol and a mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeltaRun {
    pub protocol: String,
    /// Subscribers asked for `delta: "fossil"`.
    pub delta: bool,
    pub deliveries: u64,
    /// Publications that arrived as deltas (the rest whole).
    pub delta_frames: u64,
    /// Bytes received per delivery: WebSocket payload plus frame header.
    pub bytes_per_delivery: f64,
    /// Server CPU time per delivery, microseconds.
    pub cpu_us_per_delivery: f64,
}

/// The scenario's result file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeltaResult {
    pub conns: usize,
    pub messages: u64,
    pub rate: f64,
    /// Length of one document, bytes.
    pub doc_bytes: usize,
    pub runs: Vec<DeltaRun>,
}

/// Document `n`: about 1 KB of JSON; from one to the next, `version`, one item's quantity
/// and `status` change.
pub fn doc(n: u64) -> Value {
    let items: Vec<Value> = (0..16u64)
        .map(|i| {
            json!({"id": i, "sku": format!("SKU-{:05}", i * 37), "name": format!("item number {i}"),
                   "qty": if i == n % 16 { n } else { i * 3 }, "price": 10 + i})
        })
        .collect();
    json!({"version": n, "status": if n.is_multiple_of(3) { "closed" } else { "open" }, "owner": "warehouse-7",
           "items": items})
}

/// Bytes on the wire of one server → client WebSocket message (unmasked).
fn wire_len(payload: usize) -> u64 {
    let header = match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    (payload + header) as u64
}

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    deliveries: AtomicU64,
    deltas: AtomicU64,
}

/// One subscriber: connects, subscribes, then reads until it has rebuilt `messages`
/// documents, checking each against [`doc`].
async fn subscriber(
    a: Arc<DeltaArgs>,
    protobuf: bool,
    delta: bool,
    channel: String,
    user: usize,
    ready: tokio::sync::mpsc::Sender<()>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let token = crate::cp::token(&a.secret, &format!("u{user}"), &[])?;
    let subscribe = SubscribeRequest {
        channel,
        delta: if delta {
            "fossil".into()
        } else {
            String::new()
        },
        ..Default::default()
    };
    let (mut ws, protocol) =
        crate::scenario::open_and_subscribe(&a.ws_url, protobuf, token, subscribe).await?;
    let mut base: Option<Vec<u8>> = None;
    let mut next = 1u64;
    let mut subscribed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next <= a.messages {
        let msg = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .context("timed out waiting for publications")?
            .context("connection closed")??;
        if let Some(pong) = crate::client::centrifugo::pong_for(protocol, &msg) {
            ws.send(pong).await?;
        }
        let payload: Bytes = match msg {
            Message::Text(t) => Bytes::from(t.as_bytes().to_vec()),
            Message::Binary(b) => b,
            Message::Close(f) => bail!("closed by the server: {f:?}"),
            _ => continue,
        };
        let mut pubs = Vec::new();
        for reply in replies(protobuf, &payload)? {
            if reply.id == 2 {
                if reply.error.is_some() {
                    bail!("subscribe refused: {:?}", reply.error);
                }
                let negotiated = reply.subscribe.as_ref().is_some_and(|s| s.delta);
                if negotiated != delta {
                    bail!("delta negotiated: {negotiated}, asked: {delta}");
                }
                subscribed = true;
                let _ = ready.send(()).await;
            } else if let Some(p) = reply.push.and_then(|p| p.r#pub) {
                pubs.push(p);
            }
        }
        if pubs.is_empty() {
            continue;
        }
        if !subscribed {
            bail!("a publication before the subscribe reply");
        }
        counters
            .bytes
            .fetch_add(wire_len(payload.len()), Ordering::Relaxed);
        for p in pubs {
            let data = if protobuf || !delta {
                p.data.to_vec()
            } else {
                // JSON with delta: `data` is a JSON string.
                serde_json::from_slice::<String>(&p.data)
                    .context("delta subscribers get data as a JSON string")?
                    .into_bytes()
            };
            let bytes = if p.delta {
                counters.deltas.fetch_add(1, Ordering::Relaxed);
                let prev = base.as_deref().context("a delta without a base")?;
                rotor_data_plane::fossil::apply(prev, &data)?
            } else {
                data
            };
            let value: Value = serde_json::from_slice(&bytes)?;
            if value != doc(next) {
                bail!("document {next} differs");
            }
            base = Some(bytes);
            next += 1;
            counters.deliveries.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The replies and pushes of one WebSocket message.
fn replies(protobuf: bool, payload: &[u8]) -> anyhow::Result<Vec<Reply>> {
    let mut out = Vec::new();
    if protobuf {
        let mut buf = payload;
        while !buf.is_empty() {
            out.push(Reply::decode_length_delimited(&mut buf)?);
        }
    } else {
        for line in payload.split(|b| *b == b'\n') {
            if line.trim_ascii().is_empty() {
                continue;
            }
            out.push(json_reply(line)?);
        }
    }
    Ok(out)
}

/// A JSON reply; payloads (`push.pub.data`) keep the raw JSON text they were sent as.
fn json_reply(line: &[u8]) -> anyhow::Result<Reply> {
    Ok(serde_json::from_slice(line)?)
}

async fn run_one(a: &Arc<DeltaArgs>, protobuf: bool, delta: bool) -> anyhow::Result<DeltaRun> {
    let protocol = if protobuf { "protobuf" } else { "json" };
    let mode = if delta { "delta" } else { "whole" };
    let channel = format!(
        "{}:{protocol}-{mode}-{}",
        a.namespace,
        crate::payload::now_micros()
    );
    let counters = Arc::new(Counters::default());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(a.conns.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.conns {
        tasks.spawn(subscriber(
            a.clone(),
            protobuf,
            delta,
            channel.clone(),
            i,
            ready_tx.clone(),
            counters.clone(),
        ));
    }
    drop(ready_tx);
    crate::scenario::all_subscribed(&mut ready_rx, a.conns).await?;
    let http = reqwest::Client::new();
    let cpu_before = procstat::cpu_of(a.server_pid)?;
    crate::scenario::publish_paced(
        &http,
        &a.api_url,
        &a.api_key,
        a.rate,
        a.messages,
        |n| json!({"channel": channel, "data": doc(n), "delta": true}),
    )
    .await?;
    crate::scenario::join_subscribers(&mut tasks).await?;
    let cpu = procstat::cpu_of(a.server_pid)? - cpu_before;
    let deliveries = counters.deliveries.load(Ordering::Relaxed);
    let per = |v: f64| v / deliveries.max(1) as f64;
    Ok(DeltaRun {
        protocol: protocol.into(),
        delta,
        deliveries,
        delta_frames: counters.deltas.load(Ordering::Relaxed),
        bytes_per_delivery: per(counters.bytes.load(Ordering::Relaxed) as f64),
        cpu_us_per_delivery: per(cpu.as_secs_f64() * 1e6),
    })
}

/// Runs the four combinations in turn and writes the result.
pub async fn run(args: DeltaArgs) -> anyhow::Result<DeltaResult> {
    procstat::raise_fd_limit();
    let a = Arc::new(args);
    let mut runs = Vec::new();
    for protobuf in [false, true] {
        for delta in [false, true] {
            let r = run_one(&a, protobuf, delta).await?;
            eprintln!(
                "delta bench: {} {}: {} deliveries ({} deltas), {:.0} B and {:.2} µs CPU per delivery",
                r.protocol,
                if r.delta { "delta" } else { "whole" },
                r.deliveries,
                r.delta_frames,
                r.bytes_per_delivery,
                r.cpu_us_per_delivery
            );
            runs.push(r);
        }
    }
    let result = DeltaResult {
        conns: a.conns,
        messages: a.messages,
        rate: a.rate,
        doc_bytes: serde_json::to_vec(&doc(1))?.len(),
        runs,
    };
    crate::scenario::write_result(&a.out, &result)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_about_a_kilobyte_and_change_by_a_few_fields() {
        let a = serde_json::to_vec(&doc(1)).unwrap();
        let b = serde_json::to_vec(&doc(2)).unwrap();
        assert!((900..1400).contains(&a.len()), "{}", a.len());
        let patch = rotor_data_plane::fossil::create(&a, &b);
        assert!(patch.len() * 10 < b.len(), "{} of {}", patch.len(), b.len());
    }

    #[test]
    fn json_pushes_keep_their_data_as_sent() {
        let r = json_reply(
            br#"{"push":{"channel":"c","pub":{"data":"x\"y","offset":3,"delta":true}}}"#,
        )
        .unwrap();
        let p = r.push.unwrap().r#pub.unwrap();
        assert_eq!(&p.data[..], br#""x\"y""#);
        assert!(p.delta);
        assert_eq!(p.offset, 3);
        assert_eq!(wire_len(100), 102);
        assert_eq!(wire_len(1000), 1004);
    }
}
