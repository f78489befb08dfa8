//! One subscriber that never reads among 1000 that do, against a real data-plane process: once
//! its socket and outbox are full the server disconnects it as slow (3008), the process's
//! memory stays bounded, and the others get every message with a bounded p99 latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rotor_e2e::control_plane::publisher::Publisher;
use rotor_e2e::control_plane::token;
use rotor_e2e::control_plane::ws::{raw_subscriber, read_publications, Seen};
use rotor_e2e::ProcessBuilder;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_cut_off_while_1000_others_get_everything_promptly(
) -> Result<()> {
    const FAST: usize = 1000;
    const MESSAGES: u64 = 100;
    const PAYLOAD: usize = 4096;
    const BULK: usize = 32 * 1024;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (secret, api_key) = (format!("slow-secret-{id}"), format!("slow-key-{id}"));
    let config_path = std::env::temp_dir().join(format!("rotor-fault-slow-{id}.json"));
    std::fs::write(
        &config_path,
        json!({
            "client": {"token": {"hmac_secret_key": secret}},
            "http_api": {"key": api_key},
            "channel": {"without_namespace": {"allow_subscribe_for_client": true}}
        })
        .to_string(),
    )?;
    let server = ProcessBuilder::workspace_binary("rotor-data-plane")?
        .arg("--config")
        .arg(&config_path)
        .args(["--address", "127.0.0.1", "--port", "0"])
        .spawn()
        .await;
    let _ = std::fs::remove_file(&config_path);
    let server = server?;
    let pid = server.pid().context("pid")?;
    let ws_url = server.ws_url("/connection/websocket");
    let metrics_url = server.http_url("/metrics");
    // The public /metrics answers only the project's API key.
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert("X-API-Key", api_key.parse()?);
    let http = reqwest::Client::builder().default_headers(auth).build()?;

    // The slow one: a tiny receive buffer, and it stops reading after subscribing.
    let slow = raw_subscriber(
        &ws_url,
        &token(&secret, "slow"),
        &["feed", "bulk"],
        Some(4096),
    )
    .await?;
    // 1000 readers, opened 50 at a time.
    let clock = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    let mut readers = Vec::with_capacity(FAST);
    let opening = Arc::new(tokio::sync::Semaphore::new(50));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<()>>(FAST);
    for i in 0..FAST {
        let (url, jwt, last, opening, ready) = (
            ws_url.clone(),
            token(&secret, &format!("fast-{i}")),
            last.clone(),
            opening.clone(),
            ready_tx.clone(),
        );
        readers.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await;
            let ws = raw_subscriber(&url, &jwt, &["feed"], None).await;
            drop(permit);
            match ws {
                Ok(ws) => {
                    let _ = ready.send(Ok(())).await;
                    read_publications(ws, last, clock, deadline).await
                }
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    Seen::default()
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..FAST {
        let r = tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .context("1000 subscribers not connected within 30 s")?
            .context("a reader task ended")?;
        r.context("opening a fast subscriber")?;
    }
    let connected_in = clock.elapsed();
    let rss_before = rss_of(pid)?;

    // Memory and the slow client's fate, sampled while the publishers run.
    let sampling = Arc::new(AtomicBool::new(true));
    let slow_gone = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (sampling, slow_gone, http, metrics_url) = (
            sampling.clone(),
            slow_gone.clone(),
            http.clone(),
            metrics_url.clone(),
        );
        tokio::spawn(async move {
            let mut max_rss = 0;
            let mut cut_off: Option<(Duration, String)> = None;
            while sampling.load(Ordering::Acquire) {
                max_rss = max_rss.max(rss_of(pid).unwrap_or(0));
                if cut_off.is_none() {
                    for code in ["3008", "3009"] {
                        let name = format!("rotor_disconnects_total{{code=\"{code}\"}}");
                        if metric(&http, &metrics_url, &name).await.unwrap_or(0.0) >= 1.0 {
                            cut_off = Some((clock.elapsed(), code.to_owned()));
                            slow_gone.store(true, Ordering::Release);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (max_rss, cut_off)
        })
    };
    // The slow one also follows `bulk`, where large publications go as fast as the API takes
    // them until it is cut off: its kernel buffers (several MiB on loopback, whatever
    // SO_RCVBUF says) fill within a second or two without pushing gigabytes through the 1000
    // others.
    let bulk = {
        let (publisher, slow_gone) = (
            Publisher::new(&server.http_url("/api"), &api_key),
            slow_gone.clone(),
        );
        tokio::spawn(async move {
            let chunk = "b".repeat(BULK);
            let started = Instant::now();
            let mut sent = 0u64;
            while !slow_gone.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(30)
            {
                let body = json!({"channel": "bulk", "data": {"b": chunk}});
                if publisher.attempt(&body).await.is_ok() {
                    sent += BULK as u64;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        })
    };

    let publisher = Publisher::new(&server.http_url("/api"), &api_key);
    let pad = "x".repeat(PAYLOAD);
    let episode = Instant::now();
    for n in 1..=MESSAGES {
        let t = clock.elapsed().as_micros() as u64;
        let body = json!({"channel": "feed", "data": {"t": t, "n": n, "pad": pad}});
        publisher
            .attempt(&body)
            .await
            .map_err(|e| anyhow::anyhow!("publish {n}: {e:?}"))?;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    last.store(MESSAGES, Ordering::Release);
    let published_in = episode.elapsed();
    let mut latencies = Vec::with_capacity(FAST * MESSAGES as usize);
    let mut incomplete = Vec::new();
    for (i, r) in readers.into_iter().enumerate() {
        let seen = r.await?;
        if seen.ns != (1..=MESSAGES).collect::<Vec<_>>() {
            incomplete.push((i, seen.ns.len(), seen.ended.clone()));
        }
        latencies.extend(seen.latencies_us);
    }
    // The server's verdict on the slow one, if it has not come yet (the bulk publisher gives
    // up after 30 s).
    let bulk_bytes = bulk.await?;
    sampling.store(false, Ordering::Release);
    let (max_rss, cut_off) = sampler.await?;
    let rss_after = rss_of(pid)?;
    // What the slow client finds once it finally reads.
    let slow_seen = read_publications(
        slow,
        Arc::new(AtomicU64::new(u64::MAX)),
        clock,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;

    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let (p50, p99, max) = (pct(0.50), pct(0.99), latencies.last().copied().unwrap_or(0));
    let disconnects: Vec<String> = http
        .get(&metrics_url)
        .send()
        .await?
        .text()
        .await?
        .lines()
        .filter(|l| l.starts_with("rotor_disconnects_total{"))
        .map(str::to_owned)
        .collect();
    eprintln!(
        "slow consumer among {FAST}: connected in {connected_in:?}; {MESSAGES} × {PAYLOAD} B \
         published in {published_in:?}; delivery p50 {} ms, p99 {} ms, max {} ms over {} \
         deliveries; tenant RSS {} MiB before, {} MiB max, {} MiB after; slow one cut off at \
         {cut_off:?} after {} MiB of bulk (server: {disconnects:?}); it then read {} feed \
         publications and {}",
        p50 / 1000,
        p99 / 1000,
        max / 1000,
        latencies.len(),
        rss_before >> 20,
        max_rss >> 20,
        rss_after >> 20,
        bulk_bytes >> 20,
        slow_seen.ns.len(),
        slow_seen.ended.as_deref().unwrap_or("-"),
    );
    assert!(
        incomplete.is_empty(),
        "every reading subscriber got all {MESSAGES} messages in order; not: {incomplete:?}"
    );
    let (_, code) = cut_off.context("the slow subscriber was never disconnected")?;
    assert_eq!(
        code, "3008",
        "the never-reading subscriber is disconnected as slow ({disconnects:?})"
    );
    // Readers close their own connections (3000) once done; nothing else was cut off.
    let by_server: Vec<&String> = disconnects
        .iter()
        .filter(|l| !l.contains("code=\"3000\""))
        .collect();
    assert_eq!(
        by_server,
        ["rotor_disconnects_total{code=\"3008\"} 1"],
        "only the slow one was disconnected by the server"
    );
    assert!(
        slow_seen.ns.len() < MESSAGES as usize,
        "the slow subscriber did not get everything: it was cut off ({} read)",
        slow_seen.ns.len()
    );
    assert!(
        max_rss < rss_before + 64 * 1024 * 1024,
        "tenant memory stays bounded: {} MiB max vs {} MiB before",
        max_rss >> 20,
        rss_before >> 20
    );
    assert!(
        p99 < 1_000_000,
        "p99 delivery latency of the others stays low: {} ms",
        p99 / 1000
    );
    Ok(())
}

/// Resident memory of a process, bytes.
fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

/// The value of the Prometheus sample `name` (with labels, exactly as rendered) at `url`.
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Result<f64> {
    let text = http.get(url).send().await?.text().await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0))
}
