//! Publications under a fault, counted: a publisher posts numbered publications through one
//! data plane's HTTP API while a positioned subscriber on another data plane reads them; when
//! the server tells it to recover (unsubscribe code 2500) it subscribes again from its last
//! offset, as a client SDK does. The fault runs once enough went through; afterwards the
//! counts say what was published, delivered live, recovered, duplicated, and what history
//! holds that the subscriber never got.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Client;

/// How many publications go through before the fault, and again after it.
const PHASE: usize = 60;

/// What happened.
#[derive(Debug, Default)]
pub struct Tally {
    /// Publishes answered with a result.
    pub acked: usize,
    /// Publishes answered with an error (with the codes seen).
    pub failed: usize,
    pub error_codes: Vec<u64>,
    /// From the first failed publish to the last one.
    pub failing_for: Duration,
    /// Publications delivered as pushes, and returned by recoveries.
    pub live: usize,
    pub recovered: usize,
    /// Times the subscriber was told to recover.
    pub recoveries: usize,
    /// Offsets received more than once.
    pub duplicates: usize,
    /// Publications history holds at the end, and those of them never received.
    pub in_history: usize,
    pub missing: Vec<u64>,
    /// Acknowledged publications history does not hold (lost by asynchronous replication).
    pub acked_not_in_history: usize,
}

async fn publish(http: &reqwest::Client, addr: &str, channel: &str, n: usize) -> Value {
    match http
        .post(format!("http://{addr}/api/publish"))
        .header("x-api-key", "api-key")
        .body(json!({"channel": channel, "data": {"n": n}}).to_string())
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(json!({"error": {"code": 0}})),
        Err(_) => json!({"error": {"code": 0}}),
    }
}

/// The publications of `channel` history holds: offset → n.
async fn history(http: &reqwest::Client, addr: &str, channel: &str) -> BTreeMap<u64, u64> {
    let r: Value = http
        .post(format!("http://{addr}/api/history"))
        .header("x-api-key", "api-key")
        .body(json!({"channel": channel, "limit": -1}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["result"]["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("history: {r}"))
        .iter()
        .map(|p| {
            (
                p["offset"].as_u64().unwrap(),
                p["data"]["n"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Runs the traffic: subscriber on `sub_ws`, publisher on the API at `pub_addr`, `fault` once
/// [`PHASE`] publications went through, then [`PHASE`] more; returns the counts.
pub async fn count_under_fault(
    sub_ws: &str,
    pub_addr: &str,
    channel: &str,
    fault: impl FnOnce() + Send + 'static,
) -> Tally {
    let (mut sub, _) = Client::connected(sub_ws, "sub").await;
    let r = sub.call(json!({"subscribe": {"channel": channel}})).await;
    let mut epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();
    let mut last = r["subscribe"]["offset"].as_u64().unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let publisher = {
        let (stop, acked, http) = (stop.clone(), acked.clone(), http.clone());
        let (addr, channel) = (pub_addr.to_owned(), channel.to_owned());
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut acked_ns = Vec::new();
            let mut first_failure: Option<Instant> = None;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let r = publish(&http, &addr, &channel, n).await;
                if r.get("result").is_some() {
                    acked_ns.push(n as u64);
                    acked.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.failed += 1;
                    let code = r["error"]["code"].as_u64().unwrap_or(0);
                    if !tally.error_codes.contains(&code) {
                        tally.error_codes.push(code);
                    }
                    let first = *first_failure.get_or_insert_with(Instant::now);
                    tally.failing_for = first.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tally.acked = acked_ns.len();
            (tally, acked_ns)
        })
    };
    // The fault, on a thread of its own (it kills processes and polls them).
    let faulted = {
        let acked = acked.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while acked.load(Ordering::Relaxed) < PHASE {
                assert!(Instant::now() < deadline, "no traffic before the fault");
                std::thread::sleep(Duration::from_millis(10));
            }
            fault();
            acked.load(Ordering::Relaxed)
        })
    };
    // The subscriber reads until the publisher is done and everything in history arrived.
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut tally_sub = Tally::default();
    let mut resubscribe: Option<u32> = None;
    let mut target: Option<BTreeMap<u64, u64>> = None;
    let mut after_fault: Option<usize> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "traffic did not settle");
        if after_fault.is_none() && faulted.is_finished() {
            after_fault = Some(faulted.await.unwrap());
            break;
        }
        step(
            &mut sub,
            channel,
            &mut epoch,
            &mut last,
            &mut seen,
            &mut tally_sub,
            &mut resubscribe,
        )
        .await;
    }
    let before = after_fault.unwrap();
    loop {
        assert!(Instant::now() < deadline, "traffic did not settle");
        if target.is_none() && acked.load(Ordering::Relaxed) >= before + PHASE {
            stop.store(true, Ordering::Relaxed);
        }
        if stop.load(Ordering::Relaxed) && publisher.is_finished() && target.is_none() {
            target = Some(history(&http, pub_addr, channel).await);
        }
        if let Some(t) = &target {
            if resubscribe.is_none() && t.keys().all(|o| seen.contains_key(o)) {
                break;
            }
        }
        step(
            &mut sub,
            channel,
            &mut epoch,
            &mut last,
            &mut seen,
            &mut tally_sub,
            &mut resubscribe,
        )
        .await;
    }
    let (mut tally, acked_ns) = publisher.await.unwrap();
    let history = target.unwrap();
    tally.live = tally_sub.live;
    tally.recovered = tally_sub.recovered;
    tally.recoveries = tally_sub.recoveries;
    tally.duplicates = tally_sub.duplicates;
    tally.in_history = history.len();
    tally.missing = history
        .keys()
        .filter(|o| !seen.contains_key(o))
        .copied()
        .collect();
    let held: std::collections::HashSet<u64> = history.values().copied().collect();
    tally.acked_not_in_history = acked_ns.iter().filter(|n| !held.contains(n)).count();
    // What the subscriber got for an offset is what history holds there.
    for (offset, n) in &history {
        if let Some(got) = seen.get(offset) {
            assert_eq!(
                got, n,
                "offset {offset}: received n={got}, history holds n={n}"
            );
        }
    }
    tally
}

/// Records publication `p`; `true` when its offset was already received.
fn record(p: &Value, seen: &mut BTreeMap<u64, u64>, last: &mut u64) -> bool {
    let offset = p["offset"].as_u64().unwrap();
    let n = p["data"]["n"].as_u64().unwrap();
    *last = (*last).max(offset);
    seen.insert(offset, n).is_some()
}

/// Reads one message (or waits 100 ms) and handles it.
#[allow(clippy::too_many_arguments)]
async fn step(
    sub: &mut Client,
    channel: &str,
    epoch: &mut String,
    last: &mut u64,
    seen: &mut BTreeMap<u64, u64>,
    tally: &mut Tally,
    resubscribe: &mut Option<u32>,
) {
    let Some(msg) = sub.read_within(Duration::from_millis(100)).await else {
        return;
    };
    let v = msg.unwrap_or_else(|c| panic!("subscriber closed: {c:?}"));
    if let Some(push) = v.get("push") {
        if let Some(p) = push.get("pub") {
            tally.live += 1;
            if record(p, seen, last) {
                tally.duplicates += 1;
            }
        } else if push["unsubscribe"]["code"] == 2500 {
            tally.recoveries += 1;
            let id = sub
                .send(json!({"subscribe": {
                    "channel": channel, "recover": true, "offset": *last, "epoch": epoch.clone()
                }}))
                .await;
            *resubscribe = Some(id);
        }
        return;
    }
    if Some(v["id"].as_u64().unwrap_or(0) as u32) != *resubscribe {
        return;
    }
    if v.get("error").is_some() {
        // A temporary error while the engine fails over: subscribe again shortly.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = sub
            .send(json!({"subscribe": {
                "channel": channel, "recover": true, "offset": *last, "epoch": epoch.clone()
            }}))
            .await;
        *resubscribe = Some(id);
        return;
    }
    *resubscribe = None;
    let s = &v["subscribe"];
    assert_eq!(s["recovered"], true, "recovery failed: {v}");
    if let Some(e) = s["epoch"].as_str() {
        *epoch = e.to_owned();
    }
    for p in s["publications"].as_array().into_iter().flatten() {
        tally.recovered += 1;
        if record(p, seen, last) {
            tally.duplicates += 1;
        }
    }
}
