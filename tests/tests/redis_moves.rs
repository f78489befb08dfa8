//! Moves between Redis deployments lose nothing (#23): `move-project` holds the project, its
//! tenant stops (the edge answers 503 `project_moving` with Retry-After), the move waits until
//! the tenant has let go of the old deployment and only then copies, switches and lets the
//! tenant start on the new one. Over real processes (a control plane, its tenants, private
//! `redis-server`s): a publisher publishing throughout a drain move finds every publication it
//! was told was accepted in the new deployment's history, contiguous in one epoch; a move that
//! fails (a deployment that cannot be reached, a copy the target refuses) leaves the project
//! serving from its old deployment with its history; a hold left by an interrupted move lapses
//! and the project serves again, and the move can then be run again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::publisher::{Failure, Publisher};
use rotor_e2e::control_plane::{ControlPlane, Project};
use rotor_e2e::free_port;
use rotor_e2e::placement::*;
use serde_json::{json, Value};
use tokio::sync::watch;

/// A control plane with two private deployments, `one` (where the project goes) and `two`, and
/// a Redis-engine project on `one` with a `chat` namespace keeping a long history.
async fn placed(one: &PrivateRedis, two: &PrivateRedis) -> Result<(ControlPlane, String, Project)> {
    placed_with(one, two, EAGER).await
}

/// [`placed`] with this environment for the control plane.
async fn placed_with(
    one: &PrivateRedis,
    two: &PrivateRedis,
    env: &[(&str, &str)],
) -> Result<(ControlPlane, String, Project)> {
    let cp = control_plane(env, &[("one", one), ("two", two)]).await?;
    operator(&cp, &["close-redis-deployment", "two"], "").await?;
    // No publish-rate cap and a history long enough for the whole run.
    let (mgmt, project) = chat_project(
        &cp,
        "mover@example.com",
        Some("custom"),
        "mover",
        (5000, "600s"),
    )
    .await?;
    Ok((cp, mgmt, project))
}

/// The whole history of `chat:x`: epoch and offset → `n`.
async fn chat_history(
    cp: &ControlPlane,
    project: &Project,
) -> Result<(String, BTreeMap<u64, u64>)> {
    let h = history(cp, project, "chat:x", -1).await?;
    let epoch = h["epoch"].as_str().context("epoch")?.to_owned();
    let mut by_offset = BTreeMap::new();
    for p in h["publications"].as_array().into_iter().flatten() {
        let offset = p["offset"].as_u64().context("offset")?;
        let n = p["data"]["n"].as_u64().context("n")?;
        ensure!(
            by_offset.insert(offset, n).is_none(),
            "offset {offset} twice"
        );
    }
    Ok((epoch, by_offset))
}

/// Publishes `{n}` on `chat:x` until it is accepted (the tenant may be starting), at most
/// [`WAIT`] and a bit; its offset.
async fn publish_when_serving(cp: &ControlPlane, project: &Project, n: u64) -> Result<u64> {
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let mut failures = Vec::new();
    let deadline = Instant::now() + WAIT + WAIT;
    publisher
        .publish_n("chat:x", n, &mut failures, deadline)
        .await
}

/// Places a hold on `project` for a move to `two` that nobody renews (what a move killed right
/// after holding leaves), lasting a minute.
async fn abandoned_hold(pool: &sqlx::PgPool, project: &Project) -> Result<()> {
    sqlx::query(
        "INSERT INTO redis_moves (project_id, deployment, history, expires_at) \
         VALUES ($1, 'two', 'drain', now() + interval '60 seconds')",
    )
    .bind(&project.id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Polls (the edge's answer changes with the reconciler's next pass) until a history call is
/// refused with 503 `project_moving` and `Retry-After`.
async fn refused_as_moving(cp: &ControlPlane, project: &Project) -> Result<()> {
    let began = Instant::now();
    loop {
        let resp = cp
            .http
            .post(format!("{}/history", cp.api_url(&project.slug)))
            .header("X-API-Key", &project.key)
            .body(json!({"channel": "chat:x", "limit": 0}).to_string())
            .timeout(WAIT)
            .send()
            .await;
        if let Ok(resp) = resp {
            if resp.status() == 503 {
                let retry = resp.headers().get("retry-after").cloned();
                let body: Value = resp.json().await?;
                ensure!(body["error"]["code"] == json!("project_moving"), "{body}");
                ensure!(retry.is_some(), "503 without Retry-After");
                return Ok(());
            }
        }
        ensure!(began.elapsed() < WAIT, "the held project kept serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until a control plane has confirmed the stop of the held `project`.
async fn stop_confirmed(pool: &sqlx::PgPool, project: &Project) -> Result<()> {
    let began = Instant::now();
    while !sqlx::query_scalar::<_, bool>(
        "SELECT stopped_at IS NOT NULL FROM redis_moves WHERE project_id = $1",
    )
    .bind(&project.id)
    .fetch_one(pool)
    .await?
    {
        ensure!(began.elapsed() < WAIT, "the stop was never confirmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The project's deployment and any hold on it.
async fn placement_row(cp: &ControlPlane, project: &Project) -> Result<(Option<String>, i64)> {
    let pool = sqlx::PgPool::connect(cp.db.url()).await?;
    let row = sqlx::query_as(
        "SELECT redis_deployment, (SELECT count(*) FROM redis_moves WHERE project_id = $1) \
         FROM projects WHERE id = $1",
    )
    .bind(&project.id)
    .fetch_one(&pool)
    .await?;
    Ok(row)
}

/// What one publish attempt came to.
#[derive(Debug)]
enum Attempt {
    Acked {
        n: u64,
        offset: u64,
    },
    /// The edge's 503 while the project moves or starts (code in the body).
    Refused {
        n: u64,
        code: String,
    },
    /// No answer, or one that does not say (the tenant stopped under the request).
    Unknown {
        n: u64,
        why: String,
    },
}

#[tokio::test]
async fn every_publication_acknowledged_during_a_drain_move_is_in_the_new_history() -> Result<()> {
    let (one, two) = (PrivateRedis::start().await?, PrivateRedis::start().await?);
    let (cp, mgmt, project) = placed(&one, &two).await?;
    let prefix = format!("rotor:{}:", project.id);
    let publisher = Arc::new(Publisher::new(&cp.api_url(&project.slug), &project.key));

    // One publisher publishes one after another, every 5 ms, for the whole run.
    let (acks_tx, mut acks) = watch::channel(0u64);
    let (stop_tx, stop) = watch::channel(false);
    let publishing = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            let mut attempts = Vec::new();
            let mut pace = tokio::time::interval(Duration::from_millis(5));
            let mut acked = 0;
            for n in 1.. {
                pace.tick().await;
                if *stop.borrow() {
                    break;
                }
                let body = json!({"channel": "chat:x", "data": {"n": n}});
                attempts.push(match publisher.attempt(&body).await {
                    Ok(r) => {
                        acked += 1;
                        acks_tx.send_replace(acked);
                        Attempt::Acked {
                            n,
                            offset: r["offset"].as_u64().unwrap_or(0),
                        }
                    }
                    Err(Failure::Http { status: 503, body }) => {
                        let v: Value = serde_json::from_str(&body).unwrap_or_default();
                        Attempt::Refused {
                            n,
                            code: v["error"]["code"].as_str().unwrap_or(&body).to_owned(),
                        }
                    }
                    Err(why) => Attempt::Unknown {
                        n,
                        why: format!("{why:?}"),
                    },
                });
            }
            attempts
        }
    });
    let acked_at_least = |acks: &mut watch::Receiver<u64>, n: u64| {
        let mut acks = acks.clone();
        async move {
            tokio::time::timeout(WAIT + WAIT, acks.wait_for(|a| *a >= n))
                .await
                .with_context(|| format!("{n} acknowledgements"))?
                .map(|_| ())
                .context("publisher ended")
        }
    };
    acked_at_least(&mut acks, 50).await?;
    // One tenant process listens on `one`'s control topic, none on `two`'s.
    let control = format!("{prefix}control");
    assert_eq!(
        subscribers(&mut one.conn.clone(), &control, false).await?,
        1
    );
    assert_eq!(
        subscribers(&mut two.conn.clone(), &control, false).await?,
        0
    );

    let moved_at = Instant::now();
    let out = operator(
        &cp,
        &["move-project", &project.id, "two", "--history", "drain"],
        "",
    )
    .await?;
    let move_took = moved_at.elapsed();
    cp.wait_applied(&mgmt, &project.id).await?;
    assert_eq!(
        subscribers(&mut one.conn.clone(), &control, false).await?,
        0
    );
    assert_eq!(
        subscribers(&mut two.conn.clone(), &control, false).await?,
        1
    );
    // Publishing goes on on `two`.
    let after_move = *acks.borrow();
    acked_at_least(&mut acks, after_move + 50).await?;
    stop_tx.send_replace(true);
    let attempts = publishing.await?;

    let (epoch, on_two) = chat_history(&cp, &project).await?;
    let acked: Vec<(u64, u64)> = attempts
        .iter()
        .filter_map(|a| match a {
            Attempt::Acked { n, offset } => Some((*n, *offset)),
            _ => None,
        })
        .collect();
    let refused: Vec<(u64, &str)> = attempts
        .iter()
        .filter_map(|a| match a {
            Attempt::Refused { n, code } => Some((*n, code.as_str())),
            _ => None,
        })
        .collect();
    let unknown: Vec<(u64, &str)> = attempts
        .iter()
        .filter_map(|a| match a {
            Attempt::Unknown { n, why } => Some((*n, why.as_str())),
            _ => None,
        })
        .collect();
    // Every acknowledged publication is in the new deployment's history, at its offset.
    for (n, offset) in &acked {
        assert_eq!(
            on_two.get(offset),
            Some(n),
            "acknowledged publication {n} at {offset}"
        );
    }
    // Offsets 1..=len, one epoch: nothing was lost or forked by the move.
    let offsets: Vec<u64> = on_two.keys().copied().collect();
    assert_eq!(offsets, (1..=on_two.len() as u64).collect::<Vec<_>>());
    let (_, first) = acked.first().context("acknowledged")?;
    assert_eq!(*first, 1, "the stream began with the run");
    // Only acknowledged publications and those whose answer was lost are in it; a refused
    // one never is.
    let refused_n: std::collections::HashSet<u64> = refused.iter().map(|(n, _)| *n).collect();
    assert!(
        on_two.values().all(|n| !refused_n.contains(n)),
        "a refused publication was stored"
    );
    assert!(on_two.len() <= acked.len() + unknown.len());
    // The stop window was seen, and answered as a temporary refusal that says why.
    assert!(
        refused.iter().any(|(_, code)| *code == "project_moving"),
        "no publish met the move: {refused:?}"
    );
    assert!(
        refused
            .iter()
            .all(|(_, code)| *code == "project_moving" || *code == "project_starting"),
        "{refused:?}"
    );
    assert!(unknown.len() <= 3, "answers lost: {unknown:?}");
    // The old deployment is emptied, the epoch is the one the stream began with on `one`.
    assert!(one.keys(&prefix).await?.is_empty());
    let audit = audit_after(&cp, "operator.move_project").await?;
    assert_eq!(audit[0]["redis_deployment"], json!("two"), "{audit:?}");
    assert!(out.contains("\"held_ms\":"), "{out}");
    let r = history(&cp, &project, "chat:x", 1).await?;
    assert_eq!(r["epoch"], json!(epoch));
    eprintln!(
        "drain move under publishing: {} attempts, {} acknowledged (all {} in the new history, offsets 1..={}), {} refused with 503 while held or starting, {} without an answer; move command {:?}, held {} ms (stop confirmed after {} ms)",
        attempts.len(),
        acked.len(),
        acked.len(),
        on_two.len(),
        refused.len(),
        unknown.len(),
        move_took,
        audit[0]["held_ms"],
        audit[0]["stop_ms"],
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_move_leaves_the_project_serving_from_its_old_deployment() -> Result<()> {
    // `broken` answers everything but RESTORE: the copy fails after the tenant stopped.
    let (one, two) = (PrivateRedis::start().await?, PrivateRedis::start().await?);
    let broken = PrivateRedis::start_with(&["--rename-command", "RESTORE", ""]).await?;
    let (cp, _mgmt, project) = placed(&one, &two).await?;
    let prefix = format!("rotor:{}:", project.id);
    operator(
        &cp,
        &["add-redis-deployment", "broken"],
        &broken.options().to_string(),
    )
    .await?;
    let closed = free_port()?;
    let gone = json!({"address": format!("redis://:{PASSWORD}@127.0.0.1:{closed}")});
    operator(&cp, &["add-redis-deployment", "gone"], &gone.to_string()).await?;
    for n in 1..=3 {
        assert_eq!(publish_when_serving(&cp, &project, n).await?, n);
    }
    let (epoch, before) = chat_history(&cp, &project).await?;

    // A deployment that cannot be reached: the move does not start; nothing stops.
    let (ok, out) = operator_outcome(
        &cp,
        &["move-project", &project.id, "gone", "--history", "drain"],
        "",
    )
    .await?;
    assert!(!ok, "{out}");
    assert!(
        out.contains("did not start") && out.contains("stays on the Redis deployment \"one\""),
        "{out}"
    );
    let r = publish(&cp, &project, "chat:x", 4).await?;
    assert_eq!(r["offset"], json!(4), "served throughout: {r}");

    // A copy the target refuses: the tenant was stopped, the move is called off, the hold
    // ends and the tenant serves again from `one` with its whole history.
    let (ok, out) = operator_outcome(
        &cp,
        &["move-project", &project.id, "broken", "--history", "drain"],
        "",
    )
    .await?;
    assert!(!ok, "{out}");
    assert!(
        out.contains("called off")
            && out.contains("stays on the Redis deployment \"one\"")
            && out.to_lowercase().contains("restore"),
        "{out}"
    );
    assert_eq!(placement_row(&cp, &project).await?, (Some("one".into()), 0));
    assert_eq!(publish_when_serving(&cp, &project, 5).await?, 5);
    let (epoch_after, after) = chat_history(&cp, &project).await?;
    assert_eq!(epoch_after, epoch);
    assert_eq!(after.len(), 5);
    assert!(before.iter().all(|(o, n)| after.get(o) == Some(n)));
    assert!(
        broken.keys(&prefix).await?.is_empty(),
        "the partial copy was removed"
    );
    assert!(!one.keys(&prefix).await?.is_empty());
    assert!(audit_after(&cp, "operator.move_project").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_hold_left_by_an_interrupted_move_lapses_and_the_move_can_run_again() -> Result<()> {
    let (one, two) = (PrivateRedis::start().await?, PrivateRedis::start().await?);
    let (cp, mgmt, project) = placed(&one, &two).await?;
    let prefix = format!("rotor:{}:", project.id);
    for n in 1..=2 {
        assert_eq!(publish_when_serving(&cp, &project, n).await?, n);
    }
    let (epoch, _) = chat_history(&cp, &project).await?;

    // What a move killed right after holding the project leaves: a hold nobody renews. The
    // control plane stops the tenant and confirms it; the edge refuses meanwhile.
    let pool = sqlx::PgPool::connect(cp.db.url()).await?;
    abandoned_hold(&pool, &project).await?;
    refused_as_moving(&cp, &project).await?;
    stop_confirmed(&pool, &project).await?;
    // A second move is refused while the hold lasts.
    let (ok, out) = operator_outcome(
        &cp,
        &["move-project", &project.id, "two", "--history", "drain"],
        "",
    )
    .await?;
    assert!(!ok && out.contains("under way"), "{out}");

    // The hold lapses (as it does 30 s after its move stopped renewing it): the project
    // serves again from `one`, its history intact.
    sqlx::query(
        "UPDATE redis_moves SET expires_at = now() + interval '1 second' WHERE project_id = $1",
    )
    .bind(&project.id)
    .execute(&pool)
    .await?;
    assert_eq!(publish_when_serving(&cp, &project, 3).await?, 3);
    assert_eq!(
        placement_row(&cp, &project).await?.0.as_deref(),
        Some("one")
    );
    assert_eq!(chat_history(&cp, &project).await?.0, epoch);

    // The move runs again over the lapsed hold, and drains.
    operator(
        &cp,
        &["move-project", &project.id, "two", "--history", "drain"],
        "",
    )
    .await?;
    cp.wait_applied(&mgmt, &project.id).await?;
    assert_eq!(placement_row(&cp, &project).await?, (Some("two".into()), 0));
    assert_eq!(publish_when_serving(&cp, &project, 4).await?, 4);
    let (epoch_after, all) = chat_history(&cp, &project).await?;
    assert_eq!(epoch_after, epoch);
    assert_eq!(all.values().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(one.keys(&prefix).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_parked_project_is_not_woken_while_held_and_wakes_on_its_new_deployment() -> Result<()> {
    let (one, two) = (PrivateRedis::start().await?, PrivateRedis::start().await?);
    let (cp, _mgmt, project) = placed_with(&one, &two, &[("ROTOR_PARK_AFTER_MS", "300")]).await?;
    let prefix = format!("rotor:{}:", project.id);
    for n in 1..=2 {
        assert_eq!(publish_when_serving(&cp, &project, n).await?, n);
    }
    let (epoch, _) = chat_history(&cp, &project).await?;
    cp.wait_parked(&project, WAIT).await?;

    // Held: the stop is confirmed without a process to stop, and from then on a request is
    // refused at once instead of waking the tenant on its old deployment.
    let pool = sqlx::PgPool::connect(cp.db.url()).await?;
    abandoned_hold(&pool, &project).await?;
    stop_confirmed(&pool, &project).await?;
    refused_as_moving(&cp, &project).await?;
    assert!(cp.is_parked(&project), "a held project was woken");

    // The hold lapses and a move runs over it; the first request wakes the tenant on `two`.
    sqlx::query("UPDATE redis_moves SET expires_at = now() WHERE project_id = $1")
        .bind(&project.id)
        .execute(&pool)
        .await?;
    operator(
        &cp,
        &["move-project", &project.id, "two", "--history", "drain"],
        "",
    )
    .await?;
    assert_eq!(publish_when_serving(&cp, &project, 3).await?, 3);
    assert_eq!(chat_history(&cp, &project).await?.0, epoch);
    assert!(one.keys(&prefix).await?.is_empty());
    let control = format!("{prefix}control");
    assert_eq!(
        subscribers(&mut two.conn.clone(), &control, false).await?,
        1
    );
    Ok(())
}
