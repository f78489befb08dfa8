//! Webhooks of hosted projects through a real control plane and its supervised tenant
//! processes:
//!
//! * failed deliveries are listed and sent again by their owner (REST and the dashboard's
//!   CSRF-checked button), each keeping its webhook id, and no other account can see or send
//!   them again;
//! * a memory-engine tenant killed with SIGKILL is restarted by the supervisor, and the
//!   receiver hears `member_removed`, `channel_vacated` and `client_disconnected` (3000) for the
//!   clients that did not come back within grace, and nothing for those that did.
//!
//! A receiver on loopback is a private address: the second test runs the control plane with
//! the operator's `ROTOR_TENANT_PRIVATE_EGRESS=1`; the first keeps the production rule, which
//! refuses it (`egress_refused`), and uses that to have failures to send again.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::browser::Browser;
use rotor_e2e::control_plane::ws::Subscriber;
use rotor_e2e::control_plane::{kill9, open_chat, ControlPlane, Project};
use rotor_e2e::hooks_rx::{names, HookReceiver};
use serde_json::{json, Value};

const HOOK_SECRET: &str = "whsec-hosted-0123456789";
/// Bound on waiting for a tenant to answer or restart.
const WAIT: Duration = Duration::from_secs(20);

/// Turns webhooks on for `project` (through the REST API, as a customer would) and waits until
/// its tenant runs them.
async fn webhooks_on(
    cp: &ControlPlane,
    token: &str,
    project: &Project,
    url: &str,
    grace: &str,
) -> Result<()> {
    let settings = json!({"webhooks": {"enabled": true, "url": url, "secret": HOOK_SECRET,
        "grace": grace}});
    let (status, body) = cp
        .patch_project(token, &project.id, json!({ "settings": settings }))
        .await?;
    ensure!(status == 200, "webhooks not set: {status} {body}");
    cp.wait_applied(token, &project.id).await?;
    Ok(())
}

/// `GET /v1/projects/{id}/webhooks` until `done` holds.
async fn deliveries_until(
    cp: &ControlPlane,
    token: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let started = Instant::now();
    loop {
        let (status, view) = cp
            .call(
                "GET",
                &format!("/v1/projects/{id}/webhooks"),
                Some(token),
                None,
            )
            .await?;
        ensure!(status == 200, "deliveries: {status} {view}");
        if done(&view) {
            return Ok(view);
        }
        ensure!(
            started.elapsed() < WAIT,
            "deliveries never showed it: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn webhook_ids(view: &Value) -> Vec<String> {
    view["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["webhook_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn failed_deliveries_are_sent_again_by_their_owner_only() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let (mut alice, token) = cp.dashboard_owner("alice-hooks@example.com").await?;
    let project = cp
        .project(&token, "Hooks", &[("chat", open_chat())])
        .await?;
    // The production egress rule refuses this receiver: every batch fails at once.
    let rx = HookReceiver::start(HOOK_SECRET).await?;
    webhooks_on(&cp, &token, &project, &rx.url, "0s").await?;
    let _a = Subscriber::open(&cp.ws_url(&project.slug), &project.secret, "u1", "chat:a").await?;
    let view = deliveries_until(&cp, &token, &project.id, |v| {
        v["dead_letters"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await?;
    assert_eq!(view["running"], true);
    let letter = &view["dead_letters"][0];
    assert_eq!(letter["reason"], "egress_refused", "{view}");
    let first = webhook_ids(&view);
    let id = first[0].clone();

    // Another account: the same 404 as a project that does not exist, and nothing moves.
    let (mut eve, eve_token) = cp.dashboard_owner("eve-hooks@example.com").await?;
    for (method, path, body) in [
        ("GET", format!("/v1/projects/{}/webhooks", project.id), None),
        (
            "POST",
            format!("/v1/projects/{}/webhooks/redeliver", project.id),
            Some(json!({"all": true})),
        ),
        (
            "POST",
            format!("/v1/projects/{}/webhooks/redeliver", project.id),
            Some(json!({"webhook_id": id})),
        ),
    ] {
        let (status, answer) = cp.call(method, &path, Some(&eve_token), body).await?;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (_, html, _) = eve.get("/projects").await?;
    let eve_csrf = Browser::csrf_in(&html);
    let (status, _, _, _) = eve
        .post(
            &format!("/projects/{}/settings/webhooks/redeliver", project.id),
            &[("csrf", &eve_csrf), ("webhook_id", &id)],
        )
        .await?;
    assert_eq!(status, 404, "eve's session cannot reach alice's project");
    let view = deliveries_until(&cp, &token, &project.id, |_| true).await?;
    assert_eq!(webhook_ids(&view), first, "eve moved nothing");
    let stamp = view["dead_letters"][0]["time_ms"].clone();

    // A bad id is refused before it reaches the process.
    let (status, answer) = cp
        .call(
            "POST",
            &format!("/v1/projects/{}/webhooks/redeliver", project.id),
            Some(&token),
            Some(json!({"webhook_id": "../admin/config"})),
        )
        .await?;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], "webhook_id");

    // The owner sends it again over REST: it goes out under the same id (and, refused again
    // here, comes back to the ring with that id and a new time).
    let (status, answer) = cp
        .call(
            "POST",
            &format!("/v1/projects/{}/webhooks/redeliver", project.id),
            Some(&token),
            Some(json!({"webhook_id": id})),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["batches"], 1, "{answer}");
    let view = deliveries_until(&cp, &token, &project.id, |v| {
        v["dead_letters"][0]["time_ms"] != stamp && v["queued"] == 0
    })
    .await?;
    assert_eq!(webhook_ids(&view), first, "the same id");

    // The dashboard: the card lists it with its button; the form needs the session's CSRF
    // token; "Send all again" sends it and says so.
    let settings_page = format!("/projects/{}/settings", project.id);
    let (status, html, _) = alice.get(&settings_page).await?;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("name=\"webhook_id\" value=\"{id}\"")),
        "{html}"
    );
    let action = format!("/projects/{}/settings/webhooks/redeliver", project.id);
    let (status, _, _, _) = alice.post(&action, &[("csrf", "forged")]).await?;
    assert_eq!(status, 403, "a forged form is refused");
    let csrf = Browser::csrf_in(&html);
    let stamp = view["dead_letters"][0]["time_ms"].clone();
    let (status, _, location, _) = alice.post(&action, &[("csrf", &csrf)]).await?;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some(format!("{settings_page}#webhook-deliveries").as_str())
    );
    let (_, html, _) = alice.get(&settings_page).await?;
    assert!(
        html.contains("Sending again: 1 failed delivery with 2 events"),
        "{html}"
    );
    deliveries_until(&cp, &token, &project.id, |v| {
        v["dead_letters"][0]["time_ms"] != stamp
    })
    .await?;
    // Recorded in the audit log as the owner's action.
    let (_, audit) = cp
        .call(
            "GET",
            &format!("/v1/projects/{}/audit", project.id),
            Some(&token),
            None,
        )
        .await?;
    let redeliveries = audit["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .filter(|e| e["action"] == "webhooks.redeliver")
        .count();
    assert_eq!(redeliveries, 2, "{audit}");
    Ok(())
}

/// Opens a subscriber, retrying while the tenant is restarting (bounded).
async fn reconnect(url: &str, secret: &str, user: &str, channel: &str) -> Result<Subscriber> {
    let started = Instant::now();
    loop {
        match Subscriber::open(url, secret, user, channel).await {
            Ok(s) => return Ok(s),
            Err(e) if started.elapsed() < WAIT => {
                tracing::debug!(error = %e, "tenant not back yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.context("the tenant did not come back")),
        }
    }
}

#[tokio::test]
async fn a_tenant_killed_with_sigkill_reports_who_did_not_come_back_and_nobody_else() -> Result<()>
{
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_PRIVATE_EGRESS", "1")]).await?;
    let token = cp.account("kill-hooks@example.com").await?;
    let project = cp
        .project(&token, "Killed", &[("chat", open_chat())])
        .await?;
    let mut rx = HookReceiver::start(HOOK_SECRET).await?;
    webhooks_on(&cp, &token, &project, &rx.url, "4s").await?;
    let url = cp.ws_url(&project.slug);
    // "stay" comes back after the kill; "gone" does not. Both share chat:room; chat:solo is
    // gone's alone.
    let stay = Subscriber::open(&url, &project.secret, "stay", "chat:room").await?;
    let gone_room = Subscriber::open(&url, &project.secret, "gone", "chat:room").await?;
    let gone_solo = Subscriber::open(&url, &project.secret, "gone", "chat:solo").await?;
    let before = rx
        .events_until(WAIT, |e| {
            e["name"] == "member_added" && e["channel"] == "chat:solo"
        })
        .await?;
    assert_eq!(
        names(&before),
        [
            "channel_occupied chat:room ",
            "member_added chat:room stay",
            "member_added chat:room gone",
            "channel_occupied chat:solo ",
            "member_added chat:solo gone",
        ]
    );
    // The process writes what it holds about once a second: wait until the file has it all.
    let state_file = cp.run_dir.join(format!("{}.webhooks.json", project.id));
    let started = Instant::now();
    loop {
        let saved: Value = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let holds_solo = saved["holdings"]
            .as_array()
            .is_some_and(|h| h.contains(&json!(["chat:solo", "gone"])));
        if holds_solo && saved["clients"].as_array().is_some_and(|c| c.len() == 3) {
            break;
        }
        ensure!(
            started.elapsed() < WAIT,
            "state file never held it: {saved}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let killed = cp.tenant_record(&project.id)?;
    kill9(killed["pid"].as_i64().context("pid")?);
    drop((stay, gone_room, gone_solo));
    // "stay" reconnects as soon as the supervisor has restarted the tenant, within grace.
    let _stay = reconnect(&url, &project.secret, "stay", "chat:room").await?;
    let restarted = cp.tenant_record(&project.id)?;
    assert_ne!(killed["pid"], restarted["pid"], "a new process");

    // After grace: events for gone only. A sentinel subscription made after them arrives after
    // anything the same grace held.
    let mut removals = rx
        .events_until(WAIT, |e| e["name"] == "member_removed")
        .await?;
    let _sentinel = Subscriber::open(&url, &project.secret, "sentinel", "chat:sentinel").await?;
    removals.extend(
        rx.events_until(WAIT, |e| {
            e["name"] == "channel_occupied" && e["channel"] == "chat:sentinel"
        })
        .await?,
    );
    let mut seen = names(&removals);
    seen.sort();
    assert_eq!(
        seen,
        [
            "channel_occupied chat:sentinel ",
            "channel_vacated chat:solo ",
            "client_disconnected 3000 gone",
            "client_disconnected 3000 gone",
            "member_removed chat:room gone",
            "member_removed chat:solo gone",
        ],
        "in arrival order: {:?}",
        names(&removals)
    );
    for lost in removals
        .iter()
        .filter(|e| e["name"] == "client_disconnected")
    {
        assert_eq!(lost["reason"], "process lost", "{lost}");
    }
    Ok(())
}
