//! Webhooks under a reconnect storm of the real centrifuge-js SDK (Node): about a thousand
//! clients, spread over fifty channels, are dropped at once by the server API (`disconnect`
//! with a reconnecting code, one `batch`) and reconnect and resubscribe within grace. The
//! receiver must hear no `member_removed`, `channel_vacated` or `client_disconnected` for them
//! (and no second `member_added` / `channel_occupied`), while a client that leaves for good at
//! the same moment produces its three events. The scenario is
//! `tests/clients/node/webhook_storm.mjs`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rotor_e2e::hooks_rx::{names, HookReceiver};
use rotor_e2e::interop::Server;
use rotor_e2e::ClientScript;
use serde_json::{json, Value};

const HOOK_SECRET: &str = "whsec-storm-0123456789";
const CLIENTS: usize = 1000;
const CHANNELS: usize = 50;
/// Long enough for the whole storm to come back on the 2-core test machine.
const GRACE_SECS: u64 = 8;

fn count(events: &[Value], name: &str) -> usize {
    events.iter().filter(|e| e["name"] == name).count()
}

#[tokio::test]
async fn a_thousand_sdk_clients_reconnecting_within_grace_send_no_removal_storm() -> Result<()> {
    let started = Instant::now();
    let mut rx = HookReceiver::start(HOOK_SECRET).await?;
    let server = Server::start_with_config(json!({
        "webhooks": {"enabled": true, "url": rx.url, "secret": HOOK_SECRET,
            "grace": format!("{GRACE_SECS}s")},
    }))
    .await?;
    let script = ClientScript::node("webhook_storm.mjs").envs([
        ("STORM_CLIENTS", CLIENTS.to_string()),
        ("STORM_CHANNELS", CHANNELS.to_string()),
        ("ROTOR_TIMEOUT_MS", "28000".to_owned()),
    ]);
    // The receiver is read while the scenario runs (events arrive from its first subscription
    // on), up to the sentinel's removal, which is held after everything the storm caused.
    let sentinel = |e: &Value| e["name"] == "channel_vacated" && e["channel"] == "room-sentinel";
    let wait = Duration::from_secs(GRACE_SECS + 20);
    let (out, events) = tokio::join!(server.run(script, "json"), rx.events_until(wait, sentinel));
    let out = out?;
    let events = events?;
    eprintln!(
        "storm: {out} ({} events) in {:.1?}",
        events.len(),
        started.elapsed()
    );
    assert_eq!(out["batch_errors"], 0, "{out}");
    assert_eq!(out["dropped"], CLIENTS, "{out}");
    assert_eq!(out["resubscribed"], CLIENTS, "{out}");
    let reconnect_ms = out["reconnect_ms"].as_u64().context("reconnect_ms")?;
    assert!(
        reconnect_ms < GRACE_SECS * 1000,
        "the storm took {reconnect_ms} ms, longer than the grace: the test proves nothing"
    );

    // Before the storm: each user and each channel announced once. After it: nothing for the
    // storm's clients, the leaver's three events, then the sentinel's own removal.
    assert_eq!(count(&events, "member_added"), CLIENTS + 2, "one per user");
    assert_eq!(count(&events, "channel_occupied"), CHANNELS + 2);
    let gone: Vec<&Value> = events
        .iter()
        .filter(|e| {
            ["member_removed", "channel_vacated", "client_disconnected"]
                .contains(&e["name"].as_str().unwrap_or_default())
        })
        .collect();
    let mut seen = names(&gone.into_iter().cloned().collect::<Vec<_>>());
    seen.sort();
    let leaver_code = events
        .iter()
        .find(|e| e["name"] == "client_disconnected")
        .and_then(|e| e["code"].as_u64())
        .context("the leaver's client_disconnected")?;
    assert_eq!(
        seen,
        [
            "channel_vacated room-leaver ".to_owned(),
            "channel_vacated room-sentinel ".to_owned(),
            format!("client_disconnected {leaver_code} leaver"),
            "member_removed room-leaver leaver".to_owned(),
            "member_removed room-sentinel sentinel".to_owned(),
        ],
        "no removal for the {CLIENTS} clients that came back"
    );
    Ok(())
}
