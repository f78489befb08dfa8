//! Faults under traffic, over real processes (issue #12):
//!
//! * a tenant process killed with SIGKILL while a publisher sends numbered publications: the
//!   supervisor restarts it, centrifuge-js clients reconnect, and on the Redis engine recovery
//!   hands every client exactly the publications 1..N (none lost, none twice); on the memory
//!   engine the clients are told recovery failed (`recovered: false`, a new epoch) instead of
//!   silently skipping a gap;
//! * Redis restarted under a Redis-engine tenant: publishes fail fast with a temporary error,
//!   subscribers are asked to recover (2500) and do, traffic resumes, the tenant never restarts;
//! * Postgres restarted under the control plane: tenants keep serving WebSocket and API traffic,
//!   the control plane reconnects, a later config change reaches the tenant and nothing that
//!   was configured before is lost;
//! * one subscriber that never reads among 1000 that do: once its socket and outbox are full
//!   the server disconnects it as slow (3008), the tenant's memory stays bounded, and the
//!   others get every message with a bounded p99 latency.
//!
//! Each test starts its own Redis or Postgres server where it restarts one; the shared services
//! are never touched. The soak test is separate (`make soak`, `bench/src/bin/soak.rs`).

mod cp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cp::{kill9, token, ControlPlane, Project};
use futures_util::{SinkExt, StreamExt};
use rotor_e2e::{ProcessBuilder, Readiness, TestDatabase, TestProcess};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

include!("faults/fixtures.rs");
include!("faults/clients.rs");

// ---------------------------------------------------------------------------------------------
// 1, 2: a tenant process killed under traffic.
// ---------------------------------------------------------------------------------------------

const FOLLOWERS: usize = 3;

#[tokio::test]
async fn a_tenant_killed_under_traffic_restarts_and_redis_recovery_delivers_every_publication_once(
) -> Result<()> {
    const N: u64 = 90;
    const KILL_AT: u64 = 30;
    let redis = OwnRedis::start(false).await?;
    let redis_url = redis.url();
    let cp = control_plane(TestDatabase::create().await?, &[("REDIS_URL", &redis_url)]).await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = project_on(&cp, &mgmt, "crash redis", "redis").await?;
    // Clients come back 1–2 s after the drop, so the publisher (retrying every 20 ms) gets
    // publications into the restarted tenant before they resubscribe: recovery must fill that.
    let followers = Followers::start(
        &cp.ws_url(&project.slug),
        &project.secret,
        "chat:fault",
        FOLLOWERS,
        (1000, 2000),
    )
    .await?;
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let before = cp.tenant_record(&project.id)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failed = Vec::new();
    let mut killed = None;
    let mut back = None;
    for n in 1..=N {
        if n == KILL_AT {
            kill9(before["pid"].as_i64().context("pid")?);
            killed = Some(Instant::now());
        }
        let offset = publisher
            .publish_n("chat:fault", n, &mut failed, deadline)
            .await?;
        if n == KILL_AT {
            back = killed.map(|k| k.elapsed());
        }
        // Offsets equal n: no retry (even one whose answer was lost) made a second publication.
        assert_eq!(
            offset, n,
            "publication {n} got offset {offset}: a retry published twice"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    publisher.done("chat:fault", deadline).await?;
    let logs = followers.summary(Duration::from_secs(20)).await?;
    let after = cp.tenant_record(&project.id)?;
    assert_ne!(
        before["pid"], after["pid"],
        "the supervisor started a new process"
    );

    let mut recovered = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        ensure_exactly_once(&format!("follower {i}"), &log.numbers(), N)?;
        for p in &log.pubs {
            assert_eq!(p.offset, Some(p.n), "follower {i}: offsets follow n: {p:?}");
        }
        let subs = log.subscribed();
        assert!(
            subs.len() >= 2,
            "follower {i} resubscribed after the restart: {:?}",
            log.events
        );
        for s in &subs[1..] {
            assert_eq!(
                (&s["wasRecovering"], &s["recovered"]),
                (&json!(true), &json!(true)),
                "follower {i}: every resubscription recovers: {s}"
            );
            assert_eq!(s["epoch"], subs[0]["epoch"], "the stream lives in Redis");
        }
        recovered.push(log.recovered());
    }
    eprintln!(
        "kill -9 under traffic (redis engine): tenant accepting publishes again {back:?} after \
         the kill, {} failed attempts meanwhile; publications recovered per follower: \
         {recovered:?} of {N}",
        failed.len()
    );
    assert!(
        recovered.iter().any(|r| *r > 0),
        "publications accepted while the followers were away came through recovery: \
         {recovered:?}"
    );
    drop(cp);
    drop(redis);
    Ok(())
}

#[tokio::test]
async fn a_tenant_killed_under_traffic_on_the_memory_engine_tells_clients_recovery_failed(
) -> Result<()> {
    const N: u64 = 60;
    const KILL_AT: u64 = 20;
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = project_on(&cp, &mgmt, "crash memory", "memory").await?;
    let followers = Followers::start(
        &cp.ws_url(&project.slug),
        &project.secret,
        "chat:fault",
        FOLLOWERS,
        (200, 500),
    )
    .await?;
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let before = cp.tenant_record(&project.id)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failed = Vec::new();
    for n in 1..=N {
        if n == KILL_AT {
            kill9(before["pid"].as_i64().context("pid")?);
        }
        publisher
            .publish_n("chat:fault", n, &mut failed, deadline)
            .await?;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // Every client resubscribed before the end marker, so each one must see it.
    followers
        .wait_subscribed(2, Duration::from_secs(20))
        .await?;
    publisher.done("chat:fault", deadline).await?;
    let logs = followers.summary(Duration::from_secs(20)).await?;
    assert_ne!(
        before["pid"],
        cp.tenant_record(&project.id)?["pid"],
        "a new process"
    );

    for (i, log) in logs.iter().enumerate() {
        let subs = log.subscribed();
        assert!(subs.len() >= 2, "follower {i}: {:?}", log.events);
        for s in &subs[1..] {
            assert_eq!(
                (&s["wasRecovering"], &s["recovered"]),
                (&json!(true), &json!(false)),
                "follower {i} is told the history it held a position in is gone: {s}"
            );
            assert_ne!(s["epoch"], subs[0]["epoch"], "a new stream, a new epoch");
        }
        ensure!(
            log.pubs.iter().all(|p| !p.rec),
            "nothing is passed off as recovered: {:?}",
            log.pubs
        );
        // Within each subscription the offsets are contiguous from the position the subscribe
        // reply gave: the only gap is the one the client was told about.
        for (g, s) in subs.iter().enumerate() {
            let generation = g + 1;
            let offsets: Vec<u64> = log
                .pubs
                .iter()
                .filter(|p| p.generation == generation)
                .map(|p| p.offset.unwrap_or(0))
                .collect();
            let from = s["offset"].as_u64().unwrap_or(0);
            let want: Vec<u64> = (from + 1..from + 1 + offsets.len() as u64).collect();
            assert_eq!(
                offsets, want,
                "follower {i}, subscription {generation} (position {from}): no silent gap"
            );
        }
        let first: Vec<u64> = log
            .pubs
            .iter()
            .filter(|p| p.generation == 1)
            .map(|p| p.n)
            .collect();
        ensure_exactly_once(
            &format!("follower {i} before the kill"),
            &first,
            first.len() as u64,
        )?;
    }
    eprintln!(
        "kill -9 under traffic (memory engine): {} failed publish attempts; per follower \
         (received, after the restart): {:?}",
        failed.len(),
        logs.iter()
            .map(|l| (
                l.pubs.len(),
                l.pubs.iter().filter(|p| p.generation > 1).count()
            ))
            .collect::<Vec<_>>()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3: Redis restarted under a Redis-engine tenant.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_redis_restart_under_traffic_fails_publishes_fast_then_subscribers_recover_and_the_tenant_stays(
) -> Result<()> {
    const N: u64 = 60;
    const STOP_AT: u64 = 20;
    let mut redis = OwnRedis::start(true).await?;
    let redis_url = redis.url();
    let cp = control_plane(TestDatabase::create().await?, &[("REDIS_URL", &redis_url)]).await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = project_on(&cp, &mgmt, "redis restart", "redis").await?;
    let followers = Followers::start(
        &cp.ws_url(&project.slug),
        &project.secret,
        "chat:fault",
        FOLLOWERS,
        (50, 500),
    )
    .await?;
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let before = cp.tenant_record(&project.id)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failed = Vec::new();
    let mut outage = Vec::new();
    for n in 1..=N {
        if n == STOP_AT {
            redis.stop().await?;
            // While Redis is down every attempt fails, promptly; after three, start it again.
            let body = json!({"channel": "chat:fault", "data": {"n": n}, "idempotency_key": format!("pub-{n}")});
            while outage.len() < 3 {
                let started = Instant::now();
                match publisher.attempt(&body).await {
                    Ok(r) => bail!("a publish succeeded while Redis was down: {r}"),
                    Err(why) => outage.push(Failed {
                        n,
                        took: started.elapsed(),
                        why,
                    }),
                }
            }
            redis.resume().await?;
        }
        let offset = publisher
            .publish_n("chat:fault", n, &mut failed, deadline)
            .await?;
        assert_eq!(
            offset, n,
            "publication {n}: offsets are kept across the restart"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    publisher.done("chat:fault", deadline).await?;
    let logs = followers.summary(Duration::from_secs(20)).await?;

    for f in &outage {
        assert!(
            matches!(f.why, Failure::Api { code: 100, .. }),
            "a publish while Redis is down is a temporary server error (100): {f:?}"
        );
        assert!(
            f.took < Duration::from_secs(5),
            "a publish while Redis is down fails promptly, it does not hang: {f:?}"
        );
    }
    let after = cp.tenant_record(&project.id)?;
    assert_eq!(
        before["pid"], after["pid"],
        "the tenant process never restarted"
    );
    assert!(
        pid_alive(after["pid"].as_i64().unwrap_or(0)),
        "and it is still running"
    );
    let mut recovered = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        ensure_exactly_once(&format!("follower {i}"), &log.numbers(), N)?;
        let asked = log
            .events
            .iter()
            .any(|e| e["ev"] == "subscribing" && e["code"] == 2500);
        assert!(
            asked,
            "follower {i} was asked to recover (2500): {:?}",
            log.events
        );
        let subs = log.subscribed();
        for s in &subs[1..] {
            assert_eq!(
                (&s["wasRecovering"], &s["recovered"]),
                (&json!(true), &json!(true)),
                "follower {i}: {s}"
            );
        }
        recovered.push(log.recovered());
    }
    eprintln!(
        "redis restart under traffic: outage attempts took {:?} ({:?}); {} more failed \
         attempts while Redis came back; publications recovered per follower: {recovered:?}",
        outage.iter().map(|f| f.took).collect::<Vec<_>>(),
        outage.first().map(|f| &f.why),
        failed.len()
    );
    drop(cp);
    drop(redis);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4: Postgres restarted under the control plane.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_postgres_restart_leaves_tenants_serving_and_config_changes_resume_without_loss(
) -> Result<()> {
    let pg = OwnPostgres::start().await?;
    let db = TestDatabase::create_on(&pg.url()).await?;
    let cp = control_plane(db, &[]).await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(
            &mgmt,
            "steady db",
            &[
                ("chat", recoverable()),
                ("news", json!({"allow_subscribe_for_client": true})),
            ],
        )
        .await?;
    let pid = cp.tenant_record(&project.id)?["pid"].clone();
    let ws_url = cp.ws_url(&project.slug);
    let jwt = token(&project.secret, "watcher");
    let follower = raw_subscriber(&ws_url, &jwt, &["chat:pg"], None).await?;

    // Steady API traffic through the edge for the whole episode.
    let publisher = Arc::new(Publisher::new(&cp.api_url(&project.slug), &project.key));
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (publisher, stop, published) = (publisher.clone(), stop.clone(), published.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let body = json!({"channel": "chat:pg", "data": {"n": n}});
                if let Err(e) = publisher.attempt(&body).await {
                    failures.push((n, e));
                    n -= 1;
                } else {
                    published.store(n, Ordering::Release);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            failures
        })
    };
    let last = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn(read_publications(
        follower,
        last.clone(),
        Instant::now(),
        tokio::time::Instant::now() + Duration::from_secs(50),
    ));
    wait_until("10 publications", Duration::from_secs(10), || {
        published.load(Ordering::Acquire) >= 10
    })
    .await?;

    pg.stop().await?;
    let down = Instant::now();
    let published_before = published.load(Ordering::Acquire);
    // While Postgres is down: the reconciler finds it gone and leaves the tenants alone, new
    // connections through the edge still work, and the REST API (which needs the database)
    // does not answer 200, which shows the outage is real.
    let control_plane_log = async {
        cp.process
            .as_ref()
            .context("control plane")?
            .wait_for_output("cannot list projects", Duration::from_secs(20))
            .await
    };
    let late = token(&project.secret, "late");
    let new_connection = raw_subscriber(&ws_url, &late, &["news:x"], None);

    let project_path = format!("/v1/projects/{}", project.id);
    let rest = cp.call("GET", &project_path, Some(&mgmt), None);
    let (logged, during, rest) = tokio::join!(control_plane_log, new_connection, rest);
    logged?;
    assert!(
        during.is_ok(),
        "a new WebSocket connection through the edge while Postgres is down: {:?}",
        during.err()
    );
    let status = rest.map(|(s, _)| s).unwrap_or(0);
    assert_ne!(
        status, 200,
        "the REST API needs Postgres: the outage is real"
    );
    let published_while_down = published.load(Ordering::Acquire) - published_before;
    pg.resume().await?;
    let outage = down.elapsed();

    // The control plane reconnects by itself.
    let back = Instant::now();
    loop {
        let (status, _) = cp
            .call(
                "GET",
                &format!("/v1/projects/{}", project.id),
                Some(&mgmt),
                None,
            )
            .await
            .unwrap_or((0, Value::Null));
        if status == 200 {
            break;
        }
        ensure!(
            back.elapsed() < Duration::from_secs(20),
            "the REST API did not come back after Postgres did (last status {status})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reconnected = back.elapsed();
    // A config change made now reaches the tenant.
    let (s, b) = cp
        .call(
            "PUT",
            &format!("/v1/projects/{}/namespaces/after", project.id),
            Some(&mgmt),
            Some(json!({"allow_subscribe_for_client": true})),
        )
        .await?;
    assert_eq!(s, 201, "{b}");
    let applied_in = cp.wait_applied(&mgmt, &project.id).await?;
    wait_until("more publications", Duration::from_secs(10), || {
        published.load(Ordering::Acquire) >= published_before + published_while_down + 10
    })
    .await?;
    stop.store(true, Ordering::Release);
    let failures = traffic.await?;
    let total = published.load(Ordering::Acquire);
    last.store(total, Ordering::Release);
    let seen = reader.await?;
    assert!(
        failures.is_empty(),
        "every API publish through the edge succeeded throughout: {failures:?}"
    );
    ensure_exactly_once("the WebSocket follower", &seen.ns, total)?;
    assert!(
        published_while_down > 10,
        "traffic flowed during the outage too ({published_while_down} publications)"
    );

    // Nothing configured before is lost or rolled back: in the tenant…
    for (channel, expect_offset) in [
        ("chat:check", true),
        ("news:check", false),
        ("after:check", false),
    ] {
        let r = publisher
            .attempt(&json!({"channel": channel, "data": {}}))
            .await
            .map_err(|e| anyhow::anyhow!("publish to {channel}: {e:?}"))?;
        assert_eq!(
            r["offset"].as_u64().is_some_and(|o| o > 0),
            expect_offset,
            "{channel}: the namespace's options are the ones configured ({r})"
        );
    }
    let record = cp.tenant_record(&project.id)?;
    assert_eq!(record["pid"], pid, "the tenant never restarted");
    let status: Value = cp
        .http
        .get(format!(
            "http://{}/admin/status",
            record["addr"].as_str().unwrap_or_default()
        ))
        .bearer_auth(record["admin_token"].as_str().unwrap_or_default())
        .send()
        .await?
        .json()
        .await?;
    let (_, p) = cp
        .call(
            "GET",
            &format!("/v1/projects/{}", project.id),
            Some(&mgmt),
            None,
        )
        .await?;
    assert_eq!(
        status["config_version"], p["config_version"],
        "{status} {p}"
    );
    // … and in the database.
    let (_, list) = cp
        .call(
            "GET",
            &format!("/v1/projects/{}/namespaces", project.id),
            Some(&mgmt),
            None,
        )
        .await?;
    let text = list.to_string();
    for name in ["\"chat\"", "\"news\"", "\"after\""] {
        assert!(
            text.contains(name),
            "namespace {name} is in the database: {list}"
        );
    }
    assert!(
        text.contains("\"history_size\":100"),
        "chat kept its options: {list}"
    );
    eprintln!(
        "postgres restart: outage {outage:?}, {published_while_down} publications during it, \
         {total} in all, none failed; REST back {reconnected:?} after Postgres, config \
         change applied in {applied_in:?}"
    );
    drop(cp);
    drop(pg);
    Ok(())
}

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
    let http = reqwest::Client::new();

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
