//! Idle projects cost nothing (#20 item 4), against the real control plane, edge and tenants:
//! a project with no socket and no traffic for `ROTOR_PARK_AFTER_MS` is parked (its process
//! stopped, its route kept), and the first request of any kind — server API, WebSocket, SSE —
//! wakes it and succeeds after waiting; a connected client keeps it awake; a memory-engine
//! project holding history is never parked (that would lose it), a Redis-engine one is and
//! keeps its history; usage keeps being metered from the tenants' pushes; with parking turned off,
//! what an earlier control plane parked runs again without waiting for a request.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::ws::Subscriber;
use rotor_e2e::control_plane::{open_chat, percent_encode, ControlPlane, Engine, Project};
use serde_json::{json, Value};

/// Idle time before parking in these tests.
const PARK_AFTER_MS: &str = "300";
/// Bound on waiting for a project to be parked.
const PARK_WAIT: Duration = Duration::from_secs(15);

async fn control_plane() -> Result<ControlPlane> {
    ControlPlane::start_with_env(&[("ROTOR_PARK_AFTER_MS", PARK_AFTER_MS)]).await
}

/// Adds an open `news` namespace and waits until it counts as applied.
async fn add_news_namespace(cp: &ControlPlane, token: &str, project: &Project) -> Result<()> {
    let (status, body) = cp
        .put_namespace(token, &project.id, "news", open_chat())
        .await?;
    ensure!(status == 201, "namespace: {status} {body}");
    cp.wait_applied(token, &project.id).await?;
    Ok(())
}

/// Publishes through the edge; the time until the answer.
async fn publish(cp: &ControlPlane, project: &Project, channel: &str, n: u64) -> Result<Duration> {
    let started = Instant::now();
    let (status, body) = cp.publish(project, channel, json!({"n": n})).await?;
    ensure!(
        status == 200 && body.get("error").is_none(),
        "publish: {status} {body}"
    );
    Ok(started.elapsed())
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

#[tokio::test]
async fn an_idle_project_is_parked_and_any_first_request_wakes_it() -> Result<()> {
    let cp = control_plane().await?;
    let token = cp.account("parking@example.com").await?;
    let project = cp
        .project(&token, "sleepy", &[("chat", open_chat())])
        .await?;

    // Server API: the request waits for the wake-up and succeeds; measured over several wakes.
    let mut wakes = Vec::new();
    for n in 0..8 {
        cp.wait_parked(&project, PARK_WAIT).await?;
        wakes.push(publish(&cp, &project, "chat:a", n).await?);
    }
    let p50 = percentile(&mut wakes, 0.5);
    let max = percentile(&mut wakes, 1.0);
    eprintln!(
        "wake on the server API: p50 {p50:?}, max {max:?} over {} wakes",
        wakes.len()
    );
    ensure!(max < Duration::from_secs(3), "a wake took {max:?}");

    // WebSocket: connect and subscribe wakes it; while connected it stays awake.
    cp.wait_parked(&project, PARK_WAIT).await?;
    let mut sub =
        Subscriber::open(&cp.ws_url(&project.slug), &project.secret, "u1", "chat:b").await?;
    let pid = cp.tenant_record(&project.id)?["pid"].as_i64();
    tokio::time::sleep(Duration::from_millis(1500)).await; // five idle periods, connected
    ensure!(!cp.is_parked(&project), "parked with a client connected");
    assert_eq!(cp.tenant_record(&project.id)?["pid"].as_i64(), pid);
    publish(&cp, &project, "chat:b", 42).await?;
    assert_eq!(sub.publication().await?, json!({"n": 42}));
    drop(sub);

    // SSE (uni_sse with the connect request in the query): the stream opens on a woken tenant.
    cp.wait_parked(&project, PARK_WAIT).await?;
    let connect =
        json!({"token": rotor_e2e::control_plane::token(&project.secret, "u2")}).to_string();
    let url = format!(
        "{}/t/{}/connection/uni_sse?cf_connect={}",
        cp.base,
        project.slug,
        percent_encode(&connect)
    );
    let resp = cp
        .http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    ensure!(resp.status() == 200, "uni_sse: {}", resp.status());
    let mut resp = resp;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains("\"connect\"") {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .with_context(|| format!("no connect push in {text:?}"))??
            .context("stream ended")?;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);

    // A config change while parked counts as applied and is what the woken tenant runs.
    cp.wait_parked(&project, PARK_WAIT).await?;
    add_news_namespace(&cp, &token, &project).await?;
    ensure!(cp.is_parked(&project), "a config change woke the project");
    let mut news =
        Subscriber::open(&cp.ws_url(&project.slug), &project.secret, "u3", "news:x").await?;
    publish(&cp, &project, "news:x", 7).await?;
    assert_eq!(news.publication().await?, json!({"n": 7}));
    drop(news);

    // Usage is metered from the tenant's pushes: the publishes above are counted.
    let deadline = Instant::now() + Duration::from_secs(15);
    while published(&cp, &token, &project).await? < 10 {
        ensure!(Instant::now() < deadline, "usage not metered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A stranger's failed connects wake a parked project (any request does) but do not keep it
/// awake: refused traffic is not activity, so the project is parked again after its idle
/// period even while bad connects keep coming, one every 300 ms (a fifth of that period).
#[tokio::test]
async fn failed_connects_do_not_keep_a_project_awake() -> Result<()> {
    const PARK_AFTER: Duration = Duration::from_millis(1500);
    let cp = ControlPlane::start_with_env(&[(
        "ROTOR_PARK_AFTER_MS",
        &PARK_AFTER.as_millis().to_string(),
    )])
    .await?;
    let token = cp.account("strangers@example.com").await?;
    let project = cp
        .project(&token, "pestered", &[("chat", open_chat())])
        .await?;
    let url = cp.ws_url(&project.slug);
    // Two kinds of refused connect: a token signed with another key (closed with 3500) and a
    // properly signed token that expired an hour ago (answered with error 109), as a former
    // user of the app could still send.
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        - 3600;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "former-user", "exp": an_hour_ago}),
        &jsonwebtoken::EncodingKey::from_secret(project.secret.as_bytes()),
    )?;
    let forged = rotor_e2e::control_plane::token("not the project's secret", "stranger");
    let bad_connect = |n: u32| {
        let jwt = if n.is_multiple_of(2) {
            &expired
        } else {
            &forged
        };
        let url = &url;
        async move {
            let refused = rotor_e2e::control_plane::ws::raw_subscriber(url, jwt, &[], None)
                .await
                .expect_err("a bad token is refused");
            // Refused with a reply, or by a close with 3500 (invalid token).
            let refused = format!("{refused:#}");
            assert!(
                refused.contains("connect refused") || refused.contains("invalid token"),
                "{refused}"
            );
        }
    };

    // A bad connect wakes the project.
    cp.wait_parked(&project, PARK_WAIT).await?;
    bad_connect(0).await;
    ensure!(
        !cp.is_parked(&project),
        "a request did not wake the project"
    );

    // Bad connects keep coming; within four idle periods the project is parked anyway.
    let deadline = Instant::now() + PARK_AFTER * 4 + Duration::from_secs(5);
    let mut n = 0;
    while !cp.is_parked(&project) {
        ensure!(
            Instant::now() < deadline,
            "failed connects kept the project awake"
        );
        n += 1;
        bad_connect(n).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_new_project_has_no_process_until_its_first_request() -> Result<()> {
    // Idle parking far away: only starting on demand can explain a parked project here.
    let cp = ControlPlane::start_with_env(&[
        ("ROTOR_PARK_AFTER_MS", "600000"),
        ("ROTOR_START_ON_DEMAND", "1"),
    ])
    .await?;
    let token = cp.account("on-demand@example.com").await?;
    let mut projects = Vec::new();
    for i in 0..3 {
        let project = cp
            .project(&token, &format!("lazy-{i}"), &[("chat", open_chat())])
            .await?;
        projects.push(project);
    }
    for project in &projects {
        cp.wait_parked(project, PARK_WAIT).await?;
    }
    // No tenant process exists for any of them: no record, no hand-off socket, no group.
    let running = std::fs::read_dir(&cp.run_dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".state"))
        .count();
    assert_eq!(running, 0, "a project nobody used has a process");

    // The first requests of all three, at once, wake them together and all succeed: a client
    // subscribes through the edge and receives what the server API publishes.
    let wakes = projects.iter().map(|project| async {
        let started = Instant::now();
        let mut sub = Subscriber::open(
            &cp.ws_url(&project.slug),
            &project.secret,
            "first",
            "chat:hello",
        )
        .await?;
        publish(&cp, project, "chat:hello", 7).await?;
        let got = sub.publication().await?;
        ensure!(got["n"] == 7, "{}: got {got}", project.slug);
        anyhow::Ok(started.elapsed())
    });
    let took = futures_util::future::try_join_all(wakes).await?;
    eprintln!("first request → delivery of three projects woken together: {took:?}");
    for project in &projects {
        ensure!(
            !cp.is_parked(project),
            "{} still parked after its first request",
            project.slug
        );
    }
    Ok(())
}

#[tokio::test]
async fn memory_history_keeps_a_project_awake_and_redis_history_survives_parking() -> Result<()> {
    let cp = control_plane().await?;
    let token = cp.account("history@example.com").await?;
    let history = json!({"history_size": 10, "history_ttl": "300s"});
    let memory = cp
        .project_on(&token, "mem", Engine::Memory, &[("hist", history.clone())])
        .await?;
    let redis = cp
        .project_on(&token, "red", Engine::Redis, &[("hist", history)])
        .await?;
    publish(&cp, &memory, "hist:x", 1).await?;
    publish(&cp, &redis, "hist:x", 2).await?;

    // The Redis project is parked; the memory one, holding history, is not.
    cp.wait_parked(&redis, PARK_WAIT).await?;
    let pid = cp.tenant_record(&memory.id)?["pid"].as_i64();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        !cp.is_parked(&memory),
        "a memory project holding history was parked"
    );
    assert_eq!(cp.tenant_record(&memory.id)?["pid"].as_i64(), pid);

    // Woken by a history call, the Redis project still has its publication.
    let resp = cp
        .http
        .post(format!("{}/history", cp.api_url(&redis.slug)))
        .header("X-API-Key", &redis.key)
        .body(json!({"channel": "hist:x", "limit": 10}).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let body: Value = serde_json::from_str(&resp.text().await?)?;
    let pubs = body["result"]["publications"]
        .as_array()
        .context("no publications")?;
    assert_eq!(pubs.len(), 1, "{body}");
    assert_eq!(pubs[0]["data"], json!({"n": 2}));
    Ok(())
}

/// Published messages in a project's usage so far.
async fn published(cp: &ControlPlane, token: &str, project: &Project) -> Result<i64> {
    let (_, usage) = cp
        .call(
            "GET",
            &format!("/v1/projects/{}/usage", project.id),
            Some(token),
            None,
        )
        .await?;
    Ok(usage["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["published"].as_i64())
        .sum())
}

#[tokio::test]
async fn a_report_without_the_tenants_own_token_is_ignored() -> Result<()> {
    // Tenants never ask to be parked here: a parked project could only be the forgery's doing.
    let cp = ControlPlane::start_with_env(&[("ROTOR_PARK_AFTER_MS", "0")]).await?;
    let token = cp.account("forged@example.com").await?;
    let project = cp
        .project(&token, "victim", &[("chat", open_chat())])
        .await?;
    // Whoever writes to the report socket without the process's admin token — claiming a
    // million publications for the project, or asking for it to be parked — changes nothing.
    let socket = tokio::net::UnixDatagram::unbound()?;
    let forged_usage = json!({"tenant": project.id, "token": "adm_forged", "kind": "usage",
        "usage": {"node": "forged", "messages_published": 1_000_000,
                  "namespaces": {"chat": {"published_api": 1_000_000}}}});
    let forged_idle = json!({"tenant": project.id, "token": "", "kind": "idle"});
    for forged in [forged_usage, forged_idle] {
        socket
            .send_to(
                forged.to_string().as_bytes(),
                cp.run_dir.join("reports.sock"),
            )
            .await?;
    }
    // A real publication is pushed by the tenant after the forgeries; once it is counted,
    // they have been read (one socket, in order).
    publish(&cp, &project, "chat:a", 1).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let counted = loop {
        let n = published(&cp, &token, &project).await?;
        if n >= 1 {
            break n;
        }
        ensure!(
            Instant::now() < deadline,
            "the real publication was not metered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(counted, 1, "a forged report was metered");
    ensure!(
        !cp.is_parked(&project),
        "a forged idle report parked the project"
    );
    Ok(())
}

/// Whether the project's parking marker holds its kept config (written in the background once
/// it parked after running).
fn keeps_config(cp: &ControlPlane, project: &Project) -> bool {
    std::fs::metadata(cp.run_dir.join(format!("{}.parked", project.id))).is_ok_and(|m| m.len() > 0)
}

#[tokio::test]
async fn a_parked_project_wakes_while_the_database_is_locked() -> Result<()> {
    let cp = control_plane().await?;
    let token = cp.account("locked@example.com").await?;
    let project = cp
        .project(&token, "steady", &[("chat", open_chat())])
        .await?;
    // It runs once (a first wake compiles from the database), then parks.
    publish(&cp, &project, "chat:a", 0).await?;
    cp.wait_parked(&project, PARK_WAIT).await?;
    let deadline = Instant::now() + PARK_WAIT;
    while !keeps_config(&cp, &project) {
        ensure!(Instant::now() < deadline, "the parked config was not kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every statement on `projects` now waits: listing, compiling, the change check.
    let pool = sqlx::PgPool::connect(cp.db.url()).await?;
    let mut lock = pool.begin().await?;
    sqlx::query("LOCK TABLE projects IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await?;
    // Wait until the reconciler is stuck behind the lock (its change check runs every 2 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'projects'::regclass",
        )
        .fetch_one(&pool)
        .await?;
        if waiting > 0 {
            break;
        }
        ensure!(Instant::now() < deadline, "nothing waited for the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The wake needs no database: the request is served while the lock holds.
    let took = publish(&cp, &project, "chat:a", 1).await?;
    ensure!(!cp.is_parked(&project), "not woken");
    eprintln!("wake with the projects table locked: {took:?}");
    ensure!(took < Duration::from_secs(3), "the wake took {took:?}");
    let mut sub =
        Subscriber::open(&cp.ws_url(&project.slug), &project.secret, "u1", "chat:b").await?;
    publish(&cp, &project, "chat:b", 2).await?;
    assert_eq!(sub.publication().await?, json!({"n": 2}));
    lock.rollback().await?;

    // Changes go on once the database answers: a new namespace reaches the woken tenant.
    add_news_namespace(&cp, &token, &project).await?;
    let mut news =
        Subscriber::open(&cp.ws_url(&project.slug), &project.secret, "u2", "news:x").await?;
    publish(&cp, &project, "news:x", 3).await?;
    assert_eq!(news.publication().await?, json!({"n": 3}));
    Ok(())
}

#[tokio::test]
async fn with_parking_turned_off_a_project_parked_before_runs_again_without_a_request() -> Result<()>
{
    // Parked by a control plane that starts tenants on demand: nobody asked for this one.
    let mut cp = ControlPlane::start_with_env(&[
        ("ROTOR_PARK_AFTER_MS", "600000"),
        ("ROTOR_START_ON_DEMAND", "1"),
    ])
    .await?;
    let token = cp.account("unparked@example.com").await?;
    let project = cp
        .project(&token, "dozing", &[("chat", open_chat())])
        .await?;
    cp.wait_parked(&project, PARK_WAIT).await?;

    // The operator turns parking off and restarts the control plane: every project runs, the
    // one parked before included, before any request reaches it.
    if let Some(mut p) = cp.process.take() {
        p.terminate().await?;
    }
    cp.env = vec![("ROTOR_PARK_AFTER_MS".into(), "0".into())];
    cp.spawn().await?;
    let deadline = Instant::now() + PARK_WAIT;
    while cp.tenant_record(&project.id).is_err() {
        ensure!(
            Instant::now() < deadline,
            "the project parked before was not started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(!cp.is_parked(&project), "its parking mark is still there");
    assert!(
        !cp.run_dir.join(format!("{}.parked", project.id)).exists(),
        "the parking mark was removed"
    );
    // And it serves: a subscriber through the edge gets what the server API publishes.
    let mut sub =
        Subscriber::open(&cp.ws_url(&project.slug), &project.secret, "u1", "chat:a").await?;
    publish(&cp, &project, "chat:a", 1).await?;
    assert_eq!(sub.publication().await?, json!({"n": 1}));
    Ok(())
}
