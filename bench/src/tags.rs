//! `rotor-bench-tags`: what publication tag filters (`tf` on subscribe, `allow_tags_filter`)
//! cost, side by side with the same load without them. `conns` JSON WebSocket subscribers and
//! `messages` publications tagged with one of ten tickers and a price, published through the
//! server API at `rate`/s, in four runs:
//!
//! 1. one channel, no filter: every subscriber gets every publication;
//! 2. one channel, one filter shared by every subscriber that every publication matches (the
//!    same deliveries as 1, plus the filter);
//! 3. one channel, ten distinct filters (`ticker == T`, one per tenth of the subscribers): each
//!    subscriber gets the tenth of the publications it asked for;
//! 4. ten channels, one per ticker, no filter: the same deliveries as 3, split by channel.
//!
//! Per run it reports the server's CPU time (its threads' scheduler runtime, from /proc) per
//! delivery and per publication, and the filter evaluations the server counted
//! (`rotor_tags_filter_evaluations_total`). Every subscriber checks that it got exactly the publications meant for it, in order, so the
//! numbers are for correct deliveries only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use rotor_data_plane::protocol::{FilterNode, SubscribeRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::procstat;

/// The ten tickers publications are tagged with, in turn.
pub const TICKERS: [&str; 10] = [
    "AAPL", "MSFT", "GOOG", "AMZN", "META", "NVDA", "TSLA", "ORCL", "IBM", "INTC",
];

/// Options of the tags scenario.
#[derive(Debug, Clone, Args)]
pub struct TagsArgs {
    /// WebSocket URL of the data plane.
    #[arg(long)]
    pub ws_url: String,
    /// Server API base (`http://host:port/api`); `/metrics` is read beside it.
    #[arg(long)]
    pub api_url: String,
    #[arg(long)]
    pub api_key: String,
    /// HS256 secret for connection tokens.
    #[arg(long)]
    pub secret: String,
    /// Namespace with `allow_tags_filter: true`.
    #[arg(long, default_value = "tags")]
    pub namespace: String,
    /// The server process whose CPU time is measured.
    #[arg(long)]
    pub server_pid: u32,
    /// Subscribers per run (a multiple of 10).
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Publications per run (a multiple of 10).
    #[arg(long, default_value_t = 500)]
    pub messages: u64,
    /// Publishes per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Where the JSON result goes.
    #[arg(long, default_value = "bench/results/tags.json")]
    pub out: std::path::PathBuf,
}

/// How subscribers and publications are laid out in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One channel, no filter.
    OneChannel,
    /// One channel, one filter every subscriber shares and every publication matches.
    SharedFilter,
    /// One channel, a `ticker == T` filter per tenth of the subscribers.
    TickerFilters,
    /// A channel per ticker, no filter.
    ChannelPerTicker,
}

impl Layout {
    pub const ALL: [Layout; 4] = [
        Layout::OneChannel,
        Layout::SharedFilter,
        Layout::TickerFilters,
        Layout::ChannelPerTicker,
    ];

    /// What the run is, for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::OneChannel => "one channel, no filter",
            Layout::SharedFilter => {
                "one channel, 1 filter shared by all (every publication matches)"
            }
            Layout::TickerFilters => "one channel, 10 distinct filters (`ticker == T`)",
            Layout::ChannelPerTicker => "10 channels (one per ticker), no filter",
        }
    }

    /// Whether subscriber `i` gets publication `n`.
    fn delivers(self, i: usize, n: u64) -> bool {
        match self {
            Layout::OneChannel | Layout::SharedFilter => true,
            Layout::TickerFilters | Layout::ChannelPerTicker => {
                i % TICKERS.len() == n as usize % TICKERS.len()
            }
        }
    }
}

/// One run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagsRun {
    pub layout: Layout,
    pub deliveries: u64,
    /// Filter evaluations the server counted during the run.
    pub evaluations: u64,
    /// Server CPU time per delivery, microseconds.
    pub cpu_us_per_delivery: f64,
    /// Server CPU time per publication, microseconds.
    pub cpu_us_per_publication: f64,
}

/// The scenario's result file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagsResult {
    pub conns: usize,
    pub messages: u64,
    pub rate: f64,
    pub runs: Vec<TagsRun>,
}

fn eq(key: &str, val: &str) -> FilterNode {
    FilterNode {
        key: key.into(),
        cmp: "eq".into(),
        val: val.into(),
        ..Default::default()
    }
}

/// Subscriber `i`'s channel and filter in `layout` (run `run` names the channels apart).
fn subscription(a: &TagsArgs, run: &str, layout: Layout, i: usize) -> (String, Option<FilterNode>) {
    let ticker = TICKERS[i % TICKERS.len()];
    match layout {
        Layout::OneChannel => (format!("{}:{run}", a.namespace), None),
        Layout::SharedFilter => (
            format!("{}:{run}", a.namespace),
            Some(FilterNode {
                key: "price".into(),
                cmp: "gte".into(),
                val: "100".into(),
                ..Default::default()
            }),
        ),
        Layout::TickerFilters => (format!("{}:{run}", a.namespace), Some(eq("ticker", ticker))),
        Layout::ChannelPerTicker => (format!("{}:{run}-{ticker}", a.namespace), None),
    }
}

/// Where publication `n` goes in `layout`, and its tags.
fn publication(a: &TagsArgs, run: &str, layout: Layout, n: u64) -> Value {
    let ticker = TICKERS[n as usize % TICKERS.len()];
    let channel = match layout {
        Layout::ChannelPerTicker => format!("{}:{run}-{ticker}", a.namespace),
        _ => format!("{}:{run}", a.namespace),
    };
    json!({"channel": channel, "data": {"n": n, "ticker": ticker, "price": 123.45},
           "tags": {"ticker": ticker, "price": "123.45"}})
}

/// One subscriber: connects, subscribes, then reads until it has every publication meant for
/// it, checking their order and that none is extra.
async fn subscriber(
    a: Arc<TagsArgs>,
    run: String,
    layout: Layout,
    i: usize,
    ready: tokio::sync::mpsc::Sender<()>,
    delivered: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let token = crate::cp::token(&a.secret, &format!("u{i}"), &[])?;
    let (channel, tf) = subscription(&a, &run, layout, i);
    let subscribe = SubscribeRequest {
        channel,
        tf,
        ..Default::default()
    };
    let (mut ws, protocol) =
        crate::scenario::open_and_subscribe(&a.ws_url, false, token, subscribe).await?;
    let expected: Vec<u64> = (1..=a.messages)
        .filter(|n| layout.delivers(i, *n))
        .collect();
    let mut got = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while got < expected.len() {
        let msg = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .context("timed out waiting for publications")?
            .context("connection closed")??;
        if let Some(pong) = crate::client::centrifugo::pong_for(protocol, &msg) {
            ws.send(pong).await?;
        }
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(f) => bail!("closed by the server: {f:?}"),
            _ => continue,
        };
        for line in text.as_str().split('\n').filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)?;
            if v["id"] == 2 {
                if v.get("error").is_some() {
                    bail!("subscribe refused: {v}");
                }
                let _ = ready.send(()).await;
            } else if let Some(n) = v["push"]["pub"]["data"]["n"].as_u64() {
                match expected.get(got) {
                    Some(want) if *want == n => got += 1,
                    _ => bail!(
                        "subscriber {i} got publication {n}, expected {:?}",
                        expected.get(got)
                    ),
                }
            }
        }
    }
    delivered.fetch_add(got as u64, Ordering::Relaxed);
    Ok(())
}

/// The server's CPU time so far: the scheduler's runtime of its threads (exact), or user +
/// system time where schedstat is missing.
fn server_cpu(pid: u32) -> anyhow::Result<Duration> {
    match procstat::runtime_of(pid) {
        Some(d) => Ok(d),
        None => Ok(procstat::cpu_of(pid)?),
    }
}

/// The server's filter evaluations so far (its `/metrics`).
async fn evaluations(http: &reqwest::Client, a: &TagsArgs) -> anyhow::Result<u64> {
    let base = a.api_url.trim_end_matches('/').trim_end_matches("/api");
    let text = http
        .get(format!("{base}/metrics"))
        .query(&[("api_key", &a.api_key)])
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("rotor_tags_filter_evaluations_total "))
        .context("no rotor_tags_filter_evaluations_total in /metrics")?;
    Ok(value.trim().parse()?)
}

async fn run_one(a: &Arc<TagsArgs>, layout: Layout) -> anyhow::Result<TagsRun> {
    let run = format!("{layout:?}-{}", crate::payload::now_micros()).to_lowercase();
    let delivered = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(a.conns.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.conns {
        tasks.spawn(subscriber(
            a.clone(),
            run.clone(),
            layout,
            i,
            ready_tx.clone(),
            delivered.clone(),
        ));
    }
    drop(ready_tx);
    crate::scenario::all_subscribed(&mut ready_rx, a.conns).await?;
    let http = reqwest::Client::new();
    let evaluations_before = evaluations(&http, a).await?;
    let cpu_before = server_cpu(a.server_pid)?;
    crate::scenario::publish_paced(&http, &a.api_url, &a.api_key, a.rate, a.messages, |n| {
        publication(a, &run, layout, n)
    })
    .await?;
    crate::scenario::join_subscribers(&mut tasks).await?;
    let cpu = server_cpu(a.server_pid)? - cpu_before;
    let deliveries = delivered.load(Ordering::Relaxed);
    let us = cpu.as_secs_f64() * 1e6;
    Ok(TagsRun {
        layout,
        deliveries,
        evaluations: evaluations(&http, a).await? - evaluations_before,
        cpu_us_per_delivery: us / deliveries.max(1) as f64,
        cpu_us_per_publication: us / a.messages.max(1) as f64,
    })
}

/// Runs the four layouts in turn and writes the result.
pub async fn run(args: TagsArgs) -> anyhow::Result<TagsResult> {
    if !args.conns.is_multiple_of(TICKERS.len()) || !args.messages.is_multiple_of(10) {
        bail!("--conns and --messages must be multiples of 10");
    }
    procstat::raise_fd_limit();
    let a = Arc::new(args);
    let mut runs = Vec::new();
    for layout in Layout::ALL {
        let r = run_one(&a, layout).await?;
        eprintln!(
            "tags bench: {}: {} deliveries, {} evaluations, {:.2} µs CPU per delivery, {:.1} µs per publication",
            layout.describe(),
            r.deliveries,
            r.evaluations,
            r.cpu_us_per_delivery,
            r.cpu_us_per_publication
        );
        runs.push(r);
    }
    let result = TagsResult {
        conns: a.conns,
        messages: a.messages,
        rate: a.rate,
        runs,
    };
    crate::scenario::write_result(&a.out, &result)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_layouts_deliver_a_tenth_and_the_others_everything() {
        let count = |layout: Layout| {
            (0..100)
                .flat_map(|i| (1..=50u64).map(move |n| (i, n)))
                .filter(|(i, n)| layout.delivers(*i, *n))
                .count()
        };
        assert_eq!(count(Layout::OneChannel), 5000);
        assert_eq!(count(Layout::SharedFilter), 5000);
        assert_eq!(count(Layout::TickerFilters), 500);
        assert_eq!(count(Layout::ChannelPerTicker), 500);
    }

    #[test]
    fn a_ticker_subscriber_and_its_publications_meet() {
        let a = TagsArgs {
            ws_url: String::new(),
            api_url: String::new(),
            api_key: String::new(),
            secret: String::new(),
            namespace: "tags".into(),
            server_pid: 0,
            conns: 10,
            messages: 10,
            rate: 1.0,
            out: Default::default(),
        };
        let (channel, _) = subscription(&a, "r", Layout::ChannelPerTicker, 3);
        let p = publication(&a, "r", Layout::ChannelPerTicker, 13);
        assert_eq!(p["channel"], json!(channel));
        assert!(Layout::ChannelPerTicker.delivers(3, 13));
        let (_, tf) = subscription(&a, "r", Layout::TickerFilters, 3);
        assert_eq!(tf.unwrap().val, p["tags"]["ticker"].as_str().unwrap());
    }
}
