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
//!   was configured before is lost.
//!
//! Each test starts its own Redis or Postgres server where it restarts one; the shared services
//! are never touched. One slow consumer among 1000 is tests/tests/slow_consumer.rs; the soak
//! test is separate (`make soak`, `bench/src/bin/soak.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rotor_e2e::control_plane::publisher::{Failed, Failure, Publisher};
use rotor_e2e::control_plane::ws::{raw_subscriber, read_publications};
use rotor_e2e::control_plane::{kill9, token, ControlPlane};
use rotor_e2e::faults::*;
use rotor_e2e::TestDatabase;
use serde_json::{json, Value};

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
    let (cp, project) = chat_project(Some(&redis), "crash redis").await?;
    // Clients come back 1–2 s after the drop, so the publisher (retrying every 20 ms) gets
    // publications into the restarted tenant before they resubscribe: recovery must fill that.
    let followers = Followers::start(&cp, &project, FOLLOWERS, (1000, 2000)).await?;
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
            .publish_n(FOLLOWED, n, &mut failed, deadline)
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
    publisher.done(FOLLOWED, deadline).await?;
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
    let (cp, project) = chat_project(None, "crash memory").await?;
    let followers = Followers::start(&cp, &project, FOLLOWERS, (200, 500)).await?;
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let before = cp.tenant_record(&project.id)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failed = Vec::new();
    for n in 1..=N {
        if n == KILL_AT {
            kill9(before["pid"].as_i64().context("pid")?);
        }
        publisher
            .publish_n(FOLLOWED, n, &mut failed, deadline)
            .await?;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // Every client resubscribed before the end marker, so each one must see it.
    followers
        .wait_subscribed(2, Duration::from_secs(20))
        .await?;
    publisher.done(FOLLOWED, deadline).await?;
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
                "follower {i}, subscription {generation} (position {from}): no silent gap; \
                 events {:?}; pubs {:?}",
                log.events, log.pubs
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
    let (cp, project) = chat_project(Some(&redis), "redis restart").await?;
    let followers = Followers::start(&cp, &project, FOLLOWERS, (50, 500)).await?;
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let before = cp.tenant_record(&project.id)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failed = Vec::new();
    let mut outage = Vec::new();
    for n in 1..=N {
        if n == STOP_AT {
            redis.stop().await?;
            // While Redis is down every attempt fails, promptly; after three, start it again.
            let body = json!({"channel": FOLLOWED, "data": {"n": n}, "idempotency_key": format!("pub-{n}")});
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
            .publish_n(FOLLOWED, n, &mut failed, deadline)
            .await?;
        assert_eq!(
            offset, n,
            "publication {n}: offsets are kept across the restart"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    publisher.done(FOLLOWED, deadline).await?;
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
    let cp = ControlPlane::start_on(db, &[("ROTOR_START_ON_DEMAND", "0")]).await?;
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
            .get_project(&mgmt, &project.id)
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
        .put_namespace(
            &mgmt,
            &project.id,
            "after",
            json!({"allow_subscribe_for_client": true}),
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
            record["admin_addr"].as_str().unwrap_or_default()
        ))
        .bearer_auth(record["admin_token"].as_str().unwrap_or_default())
        .send()
        .await?
        .json()
        .await?;
    let (_, p) = cp.get_project(&mgmt, &project.id).await?;
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
