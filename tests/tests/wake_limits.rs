//! Strangers cannot make the box start processes (#20, trust boundary): a parked project is
//! woken by its first request, before any credential is checked, so anyone who knows a slug
//! can ask for a process. Attacks, against the real control plane, edge and tenants:
//!
//! - one stranger walks through every slug it can guess: the box never runs more than
//!   `ROTOR_MAX_RUNNING_TENANTS` tenants; idle ones are parked to make room, busy ones (holding
//!   a client) never are, and when every running tenant is busy the wake is refused at once
//!   (503, `Retry-After`) while the busy tenants' clients keep receiving;
//! - one address wakes projects as fast as it can: past its wake budget it gets 429 with
//!   `Retry-After`, while its requests to running projects, other addresses, and a stampede of
//!   one office's clients onto their own parked project are not limited.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::ws::Subscriber;
use rotor_e2e::control_plane::{open_chat, ControlPlane, Project};
use serde_json::{json, Value};

/// Idle time before a tenant parks by itself: long, so only the cap parks anything here.
const PARK_AFTER_MS: &str = "600000";

/// An answer of the edge or of a tenant: status, `Retry-After`, body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

/// What a stranger sends: a server API call without a key, from `ip`. A running tenant
/// answers it itself (401); the edge answers wakes it refuses.
async fn knock(cp: &ControlPlane, ip: IpAddr, project: &Project) -> Result<Answer> {
    let client = reqwest::Client::builder()
        .local_address(ip)
        .pool_max_idle_per_host(0)
        .build()?;
    let resp = client
        .post(format!("{}/info", cp.api_url(&project.slug)))
        .body("{}")
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .with_context(|| format!("knock on {}", project.slug))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.text().await?;
    Ok(Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Tenant processes alive now (their records in the run directory, pid checked).
fn running(cp: &ControlPlane, projects: &[Project]) -> Vec<String> {
    projects
        .iter()
        .filter(|p| {
            cp.tenant_record(&p.id)
                .ok()
                .and_then(|r| r["pid"].as_i64())
                .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(|p| p.slug.clone())
        .collect()
}

/// Polls (a process exiting is not an event the test can await) until at most `max` tenants
/// run; the ones that do.
async fn settle_at_most(
    cp: &ControlPlane,
    projects: &[Project],
    max: usize,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = running(cp, projects);
        if now.len() <= max {
            return Ok(now);
        }
        ensure!(
            Instant::now() < deadline,
            "{} tenants run, the cap is {max}: {now:?}",
            now.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The control plane's operator metrics (its `ROTOR_METRICS_LISTEN` address is printed).
async fn metric(cp: &ControlPlane, sample: &str) -> Result<u64> {
    let output = cp.process.as_ref().context("control plane")?.output();
    let addr = output
        .lines()
        .find_map(|l| l.split("rotor-control-plane metrics on ").nth(1))
        .context("metrics address not printed")?
        .trim()
        .to_owned();
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .with_context(|| format!("{sample} missing:\n{text}"))
}

async fn projects(cp: &ControlPlane, email: &str, n: usize) -> Result<Vec<Project>> {
    let token = cp.account(email).await?;
    // The free plan holds three projects.
    cp.operator(&["set-plan", email, "pro"]).await?;
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            cp.project(&token, &format!("guessable-{i}"), &[("chat", open_chat())])
                .await?,
        );
    }
    Ok(out)
}

#[tokio::test]
async fn a_stranger_walking_through_slugs_cannot_run_more_tenants_than_the_box_holds() -> Result<()>
{
    const CAP: usize = 3;
    let cp = ControlPlane::start_with_env(&[
        ("ROTOR_PARK_AFTER_MS", PARK_AFTER_MS),
        ("ROTOR_MAX_RUNNING_TENANTS", "3"),
        ("ROTOR_METRICS_LISTEN", "127.0.0.1:0"),
        // Budget enough for the walk: this test is about the box's cap.
        ("ROTOR_EDGE_WAKE_BURST", "100"),
    ])
    .await?;
    let victims = projects(&cp, "victim@example.com", 5).await?;
    ensure!(
        running(&cp, &victims).is_empty(),
        "projects started unasked"
    );

    // The walk: every project answers (its tenant's own 401), and never more than CAP run.
    let stranger = ip("127.0.0.2");
    for project in &victims {
        let answer = knock(&cp, stranger, project).await?;
        ensure!(
            answer.status == 401,
            "{}: {} {}",
            project.slug,
            answer.status,
            answer.body
        );
        settle_at_most(&cp, &victims, CAP).await?;
    }
    ensure!(metric(&cp, "rotor_tenant_evictions_total").await? >= 2);
    ensure!(metric(&cp, "rotor_tenants_running").await? <= CAP as u64);

    // Customers' clients hold three projects: those tenants are busy and never parked.
    let mut subscribers = Vec::new();
    for project in &victims[..CAP] {
        subscribers.push(
            Subscriber::open(
                &cp.ws_url(&project.slug),
                &project.secret,
                "customer",
                "chat:live",
            )
            .await?,
        );
        settle_at_most(&cp, &victims, CAP).await?;
    }
    let busy: HashSet<String> = victims[..CAP].iter().map(|p| p.slug.clone()).collect();
    let pids: Vec<Option<i64>> = victims[..CAP]
        .iter()
        .map(|p| cp.tenant_record(&p.id).ok().and_then(|r| r["pid"].as_i64()))
        .collect();
    let now: HashSet<String> = running(&cp, &victims).into_iter().collect();
    ensure!(now == busy, "running {now:?}, expected the busy {busy:?}");

    // The stranger now knocks on the others: refused at once, not after a wait.
    for project in &victims[CAP..] {
        let began = Instant::now();
        let answer = knock(&cp, stranger, project).await?;
        ensure!(
            answer.status == 503 && answer.body["error"]["code"] == "at_capacity",
            "{}: {} {}",
            project.slug,
            answer.status,
            answer.body
        );
        ensure!(answer.retry_after.is_some_and(|s| s >= 1), "no Retry-After");
        ensure!(
            began.elapsed() < Duration::from_secs(5),
            "refused only after {:?}",
            began.elapsed()
        );
    }
    ensure!(metric(&cp, "rotor_edge_wakes_refused_total{reason=\"capacity\"}").await? >= 2);

    // The busy tenants were not touched: same processes, and their clients still receive.
    for (i, (project, sub)) in victims[..CAP].iter().zip(&mut subscribers).enumerate() {
        let pid = cp.tenant_record(&project.id)?["pid"].as_i64();
        ensure!(pid == pids[i], "{} was restarted", project.slug);
        let (status, body) = cp.publish(project, "chat:live", json!({"n": i})).await?;
        ensure!(status == 200, "publish: {status} {body}");
        ensure!(sub.publication().await? == json!({"n": i}));
    }

    // A customer leaves: its tenant is idle again, so the next wake parks it and succeeds.
    drop(subscribers.remove(0));
    let freed = &victims[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = knock(&cp, stranger, &victims[CAP]).await?;
        if answer.status == 401 {
            break;
        }
        // The tenant may not have seen the close yet; it then still refuses to park.
        ensure!(
            answer.status == 503 && Instant::now() < deadline,
            "{} {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = settle_at_most(&cp, &victims, CAP).await?;
    ensure!(!now.contains(&freed.slug), "{now:?}");
    ensure!(now.contains(&victims[CAP].slug), "{now:?}");
    Ok(())
}

#[tokio::test]
async fn one_address_cannot_wake_more_projects_than_its_budget() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[
        ("ROTOR_PARK_AFTER_MS", PARK_AFTER_MS),
        ("ROTOR_EDGE_WAKE_BURST", "2"),
        ("ROTOR_EDGE_WAKES_PER_MINUTE", "1"),
        ("ROTOR_METRICS_LISTEN", "127.0.0.1:0"),
    ])
    .await?;
    let victims = projects(&cp, "budget@example.com", 4).await?;
    let attacker = ip("127.0.0.2");

    // Two wakes, then 429 with Retry-After; the third project stays parked.
    for project in &victims[..2] {
        let answer = knock(&cp, attacker, project).await?;
        ensure!(answer.status == 401, "{} {}", answer.status, answer.body);
    }
    let answer = knock(&cp, attacker, &victims[2]).await?;
    ensure!(
        answer.status == 429 && answer.body["error"]["code"] == "too_many_wakes",
        "{} {}",
        answer.status,
        answer.body
    );
    ensure!(
        answer.retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "Retry-After {:?}",
        answer.retry_after
    );
    ensure!(
        !running(&cp, &victims).contains(&victims[2].slug),
        "a refused wake started the tenant"
    );
    ensure!(metric(&cp, "rotor_edge_wakes_refused_total{reason=\"rate\"}").await? == 1);

    // Running projects are not charged: the same address keeps reaching them.
    for _ in 0..10 {
        let answer = knock(&cp, attacker, &victims[0]).await?;
        ensure!(answer.status == 401, "{} {}", answer.status, answer.body);
    }
    // Another address is not affected by this one's budget.
    let answer = knock(&cp, ip("127.0.0.3"), &victims[2]).await?;
    ensure!(answer.status == 401, "{} {}", answer.status, answer.body);

    // One office's clients all reconnecting to their own parked project at once: one wake.
    let office = ip("127.0.0.4");
    let stampede = (0..20).map(|_| knock(&cp, office, &victims[3]));
    for answer in futures_util::future::join_all(stampede).await {
        let answer = answer?;
        ensure!(answer.status == 401, "{} {}", answer.status, answer.body);
    }
    ensure!(metric(&cp, "rotor_edge_wakes_refused_total{reason=\"rate\"}").await? == 1);
    Ok(())
}
