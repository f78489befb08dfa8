//! What tags filters cost in the hub's fan-out, side by side with the same load without them:
//! one channel with 10 000 local subscribers, publications fanned out by `Hub::publication`
//! (encoding once, queueing a frame per receiving subscriber), timed in-process without
//! sockets. `cargo bench -p rotor-data-plane --bench tags_filter_fanout`. Results go to stdout
//! and into BENCHMARKS.md by hand.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotor_data_plane::client::ClientHandle;
use rotor_data_plane::engine::BrokerEvents;
use rotor_data_plane::filter::TagsFilter;
use rotor_data_plane::hub::{Hub, SubFlags};
use rotor_data_plane::metrics::Metrics;
use rotor_data_plane::protocol::{FilterNode, ProtocolKind, Publication};
use rotor_data_plane::publication::PubMsg;

const SUBSCRIBERS: usize = 10_000;

/// Subscriber index → its filter.
type FilterOf<'a> = &'a dyn Fn(usize) -> Option<FilterNode>;
const PUBLICATIONS: u64 = 300;

fn eq(key: &str, val: &str) -> FilterNode {
    FilterNode {
        key: key.into(),
        cmp: "eq".into(),
        val: val.into(),
        ..Default::default()
    }
}

/// A typical filter: `ticker == T and price >= 100`.
fn quote_filter(ticker: &str) -> FilterNode {
    FilterNode {
        op: "and".into(),
        nodes: vec![
            eq("ticker", ticker),
            FilterNode {
                key: "price".into(),
                cmp: "gte".into(),
                val: "100".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// Runs one scenario: `filter_of(i)` is subscriber i's filter, `tags_of(n)` publication n's
/// tags. Returns (µs per publication, frames queued, filter evaluations).
fn run(
    filter_of: FilterOf<'_>,
    tags_of: &dyn Fn(u64) -> HashMap<String, String>,
) -> (f64, u64, u64) {
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(metrics.clone(), Arc::default());
    let clients: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            Arc::new(ClientHandle::new(
                Arc::from(format!("c{i}")),
                ProtocolKind::Json,
                1 << 30,
            ))
        })
        .collect();
    for (i, c) in clients.iter().enumerate() {
        let filter = filter_of(i).map(|f| TagsFilter::compile(&f).expect("valid filter"));
        hub.add_pending("quotes:x", c, SubFlags::default(), filter)
            .expect("subscribe");
        hub.activate("quotes:x", &c.id, None, None);
    }
    let mut elapsed = Duration::ZERO;
    for n in 1..=PUBLICATIONS {
        let publication = Publication {
            data: bytes::Bytes::from(format!("{{\"n\":{n},\"price\":123.45}}")),
            tags: tags_of(n),
            ..Default::default()
        };
        let msg = PubMsg::new("quotes:x", publication, String::new());
        let started = Instant::now();
        hub.publication("quotes:x", msg);
        elapsed += started.elapsed();
        for c in &clients {
            drop(c.outbox.drain());
        }
    }
    (
        elapsed.as_secs_f64() * 1e6 / PUBLICATIONS as f64,
        metrics.messages_delivered.get(),
        metrics.tags_filter_evaluations.get(),
    )
}

fn main() {
    const TICKERS: [&str; 10] = [
        "AAPL", "MSFT", "GOOG", "AMZN", "META", "NVDA", "TSLA", "ORCL", "IBM", "INTC",
    ];
    let tags = |n: u64| -> HashMap<String, String> {
        [
            ("ticker".to_owned(), TICKERS[n as usize % 10].to_owned()),
            ("price".to_owned(), "123.45".to_owned()),
        ]
        .into()
    };
    let scenarios: [(&str, FilterOf<'_>); 4] = [
        ("no filter (baseline)", &|_| None),
        ("10 distinct filters, every subscriber filtered", &|i| {
            Some(quote_filter(TICKERS[i % 10]))
        }),
        ("1 filter shared by all, every publication matches", &|_| {
            Some(FilterNode {
                key: "price".into(),
                cmp: "gte".into(),
                val: "100".into(),
                ..Default::default()
            })
        }),
        ("10 000 distinct filters (one per subscriber)", &|i| {
            Some(FilterNode {
                op: "or".into(),
                nodes: vec![quote_filter(TICKERS[i % 10]), eq("user", &i.to_string())],
                ..Default::default()
            })
        }),
    ];
    println!(
        "{SUBSCRIBERS} subscribers of one channel, {PUBLICATIONS} publications (JSON), fan-out only"
    );
    println!("| Scenario | µs per publication | frames queued | filter evaluations |");
    println!("|---|---|---|---|");
    for (name, filter_of) in scenarios {
        let (us, frames, evaluations) = run(filter_of, &tags);
        println!("| {name} | {us:.0} | {frames} | {evaluations} |");
    }
}
