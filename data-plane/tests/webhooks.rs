//! Webhooks end to end in one process: a real HTTP receiver in the test
//! ([`webhooks_support`]), the data plane in process (or as a `rotor-data-plane` process for
//! the hosted egress rule), real WebSocket clients: signatures, occupied/vacated and
//! added/removed, coalescing, retries, dead letters, queue bounds, live config, and what the
//! hooks cost. Waits are on events with bounded timeouts; "nothing was sent" is shown by a later
//! sentinel event that is held the same grace and therefore arrives after anything it would
//! have followed. Several processes and killed ones: `webhooks_failover.rs`.

mod common;
mod webhooks_support;

use std::time::Duration;

use common::{Binary, Client, TestServer, ADMIN_TOKEN, SECRET, WAIT};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use webhooks_support::*;

#[tokio::test]
async fn events_are_signed_with_the_project_secret_and_carry_a_webhook_id() {
    let mut rx = Receiver::ok().await;
    let s = TestServer::start(hooks(&rx.url, "0s", json!({}))).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    subscribe(&mut c, "chat:signed").await;
    let hit = rx.hit().await;
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(&hit.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(hit.signature, expected);
    let mut wrong = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    wrong.update(&hit.body);
    assert_ne!(
        hit.signature,
        format!("sha256={}", hex::encode(wrong.finalize().into_bytes()))
    );
    assert!(uuid::Uuid::parse_str(&hit.id).is_ok(), "{}", hit.id);
    assert!(hit.json["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    let events = hit.json["events"].as_array().unwrap();
    assert_eq!(events[0]["name"], "channel_occupied");
    assert_eq!(events[0]["channel"], "chat:signed");
    assert!(events[0]["version"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn channels_and_members_are_announced_once_per_user_not_per_connection() {
    let mut rx = Receiver::ok().await;
    let s = TestServer::start(hooks(&rx.url, "0s", json!({}))).await;
    let (mut a1, _) = Client::connected(&s.ws_url(), "alice").await;
    let (mut a2, _) = Client::connected(&s.ws_url(), "alice").await;
    let (mut b, _) = Client::connected(&s.ws_url(), "bob").await;
    subscribe(&mut a1, "chat:room").await;
    subscribe(&mut a2, "chat:room").await;
    subscribe(&mut b, "chat:room").await;
    let first = rx
        .events_until(|e| e["name"] == "member_added" && e["user"] == "bob")
        .await;
    assert_eq!(
        names(&first),
        vec![
            "channel_occupied chat:room ",
            "member_added chat:room alice",
            "member_added chat:room bob"
        ]
    );
    unsubscribe(&mut a1, "chat:room").await;
    unsubscribe(&mut b, "chat:room").await;
    unsubscribe(&mut a2, "chat:room").await;
    let second = rx.events_until(is("channel_vacated", "chat:room")).await;
    assert_eq!(
        names(&second),
        vec![
            "member_removed chat:room bob",
            "member_removed chat:room alice",
            "channel_vacated chat:room "
        ]
    );
    // Versions of one channel only grow.
    let versions: Vec<u64> = first
        .iter()
        .chain(&second)
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    // A connection that ends reports its client id, user and code.
    drop(a1);
    let gone = rx.events_until(is("client_disconnected", "")).await;
    let last = gone.last().unwrap();
    assert_eq!(last["user"], "alice");
    assert!(last["client"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(last["code"].as_u64().is_some());
}

#[tokio::test]
async fn a_quick_reconnect_within_grace_sends_nothing() {
    let mut rx = Receiver::ok().await;
    let s = TestServer::start(hooks(&rx.url, "1s", json!({}))).await;
    let url = s.ws_url();
    let mut clients = Vec::new();
    for i in 0..20 {
        let (mut c, _) = Client::connected(&url, &format!("user{i}")).await;
        subscribe(&mut c, "chat:busy").await;
        clients.push(c);
    }
    let joined = rx
        .events_until(|e| e["name"] == "member_added" && e["user"] == "user19")
        .await;
    assert_eq!(joined.len(), 21, "{:?}", names(&joined));
    // Everyone drops and comes back at once, well within grace.
    drop(clients);
    gone(&s, 0).await;
    let mut again = Vec::new();
    for i in 0..20 {
        let (mut c, _) = Client::connected(&url, &format!("user{i}")).await;
        subscribe(&mut c, "chat:busy").await;
        again.push(c);
    }
    // A sentinel leaves after everyone came back: its removals are held the same grace, so
    // whatever the reconnect would have sent arrives before them.
    let (mut sentinel, _) = Client::connected(&url, "sentinel").await;
    subscribe(&mut sentinel, "chat:sentinel").await;
    drop(sentinel);
    let after = rx.events_until(is("client_disconnected", "")).await;
    let about_others: Vec<&Value> = after
        .iter()
        .filter(|e| e["channel"] != "chat:sentinel" && e["user"] != "sentinel")
        .collect();
    assert!(about_others.is_empty(), "{:?}", names(&after));
    assert_eq!(after.last().unwrap()["user"], "sentinel");
    drop(again);
}

#[tokio::test]
async fn a_stopping_process_sends_what_it_held_at_once() {
    let mut rx = Receiver::ok().await;
    // A grace far longer than the test: only the stop can send these.
    let s = TestServer::start(hooks(&rx.url, "60s", json!({}))).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    subscribe(&mut c, "chat:stop").await;
    unsubscribe(&mut c, "chat:stop").await;
    subscribe(&mut c, "chat:held").await;
    rx.events_until(is("member_added", "chat:held")).await;
    s.shutdown().await;
    let events = rx.events_until(is("client_disconnected", "")).await;
    let mut got = names(&events);
    got.sort();
    assert_eq!(
        got,
        vec![
            "channel_vacated chat:held ",
            "channel_vacated chat:stop ",
            "client_disconnected  u1",
            "member_removed chat:held u1",
            "member_removed chat:stop u1",
        ]
    );
    assert_eq!(events.last().unwrap()["code"], 3001);
}

#[tokio::test]
async fn a_failed_batch_is_sent_again_with_the_same_id_and_body() {
    let mut rx = Receiver::start(&[500], 200).await;
    let s = TestServer::start(hooks(&rx.url, "0s", json!({}))).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    subscribe(&mut c, "chat:retry").await;
    let first = rx.hit().await;
    assert_eq!(first.status, 500);
    let second = rx.hit().await;
    assert_eq!(second.status, 200);
    assert_eq!(second.id, first.id);
    assert_eq!(second.body, first.body);
    assert_eq!(s.node.metrics.webhook_retries.get(), 1);
    tokio::time::timeout(WAIT, async {
        while s.node.metrics.webhook_events_sent.get() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the accepted batch was not counted");
}

#[tokio::test]
async fn a_receiver_that_never_succeeds_ends_in_the_dead_letter_view() {
    let mut rx = Receiver::start(&[], 503).await;
    let s = TestServer::start(hooks(
        &rx.url,
        "0s",
        json!({"max_attempts": 3, "events": ["channel_occupied"]}),
    ))
    .await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    subscribe(&mut c, "chat:doomed").await;
    let ids: Vec<String> = [rx.hit().await, rx.hit().await, rx.hit().await]
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    let view = admin_until(&s.admin_addr.to_string(), |v| {
        v["dead_letters"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let letter = &view["dead_letters"][0];
    assert_eq!(letter["reason"], "max_attempts");
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["status"], 503);
    assert_eq!(letter["webhook_id"], ids[0].as_str());
    assert_eq!(letter["events"][0]["channel"], "chat:doomed");
    assert!(!view.to_string().contains(HOOK_SECRET));
    assert_eq!(s.node.metrics.webhook_events_dropped.get("max_attempts"), 1);
}

#[tokio::test]
async fn events_past_the_queue_bound_are_dead_lettered_and_counted() {
    // The receiver fails slowly, so the first batch stays in flight and the queue fills.
    let mut rx = Receiver::start(&[], 500).await;
    let s = TestServer::start(hooks(
        &rx.url,
        "0s",
        json!({"queue_size": 1, "batch_size": 1, "max_attempts": 2,
               "retry_backoff": "10s", "max_retry_backoff": "10s",
               "events": ["channel_occupied"]}),
    ))
    .await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    subscribe(&mut c, "chat:q0").await;
    let _ = rx.hit().await; // The first batch is now in flight, waiting for its retry.
    for i in 1..=5 {
        subscribe(&mut c, &format!("chat:q{i}")).await;
    }
    let view = admin_until(&s.admin_addr.to_string(), |v| {
        v["dead_letters"].as_array().is_some_and(|d| d.len() >= 4)
    })
    .await;
    assert_eq!(view["queued"], 1);
    assert!(view["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["reason"] == "queue_full"));
    assert_eq!(s.node.metrics.webhook_events_dropped.get("queue_full"), 4);
    let metrics = s.node.metrics.render();
    assert!(
        metrics.contains("rotor_webhook_events_dropped_total{reason=\"queue_full\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn webhooks_follow_a_live_config_change() {
    let mut rx = Receiver::ok().await;
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u1").await;
    subscribe(&mut c, "chat:before").await;
    let mut tenant = s.node.config.load().tenant.clone();
    let on = hooks(&rx.url, "0s", json!({"events": ["channel_occupied"]}));
    tenant.webhooks = serde_json::from_value(on["webhooks"].clone()).unwrap();
    tenant.rotor.config_version += 1;
    s.node.config.apply(tenant).unwrap();
    subscribe(&mut c, "chat:after").await;
    let events = rx.events_until(is("channel_occupied", "")).await;
    assert_eq!(names(&events), vec!["channel_occupied chat:after "]);
}

#[tokio::test]
async fn a_hosted_tenants_webhook_to_this_machine_is_refused() {
    let mut rx = Receiver::ok().await;
    let port = rx
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // A literal loopback address (refused before any request) and a name resolving to one
    // (refused by the resolver); every port allowed, so the address rule alone refuses.
    for url in [
        format!("http://127.0.0.1:{port}/hooks"),
        format!("http://localhost:{port}/hooks"),
    ] {
        let mut config = json!({
            "client": {"token": {"hmac_secret_key": SECRET}},
            "channel": {"namespaces": [{"name": "chat", "allow_subscribe_for_client": true}]},
        });
        common::merge(&mut config, hooks(&url, "0s", json!({"max_attempts": 5})));
        let process = Binary::listening(
            &config,
            &[
                ("ROTOR_EGRESS", "public"),
                ("ROTOR_EGRESS_PORTS", "any"),
                ("ROTOR_ADMIN_TOKEN", ADMIN_TOKEN),
            ],
        )
        .await;
        let admin = process.admin_addr.clone().expect("admin listener");
        let (mut c, _) = Client::connected(&process.ws_url(), "u1").await;
        subscribe(&mut c, "chat:attack").await;
        let view = admin_until(&admin, |v| {
            v["dead_letters"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
        let letter = &view["dead_letters"][0];
        assert_eq!(letter["reason"], "egress_refused", "{url}: {view}");
        assert_eq!(letter["attempts"], 1, "{url}: never retried");
        assert!(
            letter["error"].as_str().unwrap().contains("not public"),
            "{url}: {letter}"
        );
        assert!(
            rx.hits.try_recv().is_err(),
            "{url}: the receiver was reached"
        );
        process.stop().await;
    }
    // The same receiver is reachable where private egress is allowed (standalone).
    let mut config = json!({
        "client": {"token": {"hmac_secret_key": SECRET}},
        "channel": {"namespaces": [{"name": "chat", "allow_subscribe_for_client": true}]},
    });
    common::merge(&mut config, hooks(&rx.url, "0s", json!({})));
    let process = Binary::listening(&config, &[]).await;
    let (mut c, _) = Client::connected(&process.ws_url(), "u1").await;
    subscribe(&mut c, "chat:attack").await;
    assert_eq!(rx.hit().await.json["events"][0]["name"], "channel_occupied");
    process.stop().await;
}

/// Not a check (tests never assert timings): prints what the hooks cost on the session's
/// path, with webhooks off and on. `cargo test --release -p rotor-data-plane --test webhooks
/// -- --ignored --nocapture hook_cost`.
#[tokio::test]
#[ignore]
async fn hook_cost() {
    let rx = Receiver::ok().await;
    for (label, overrides) in [
        ("off", json!({})),
        ("on, grace 5s", hooks(&rx.url, "5s", json!({}))),
        (
            "on, grace 0",
            hooks(&rx.url, "0s", json!({"queue_size": 100000})),
        ),
    ] {
        let s = TestServer::start(overrides).await;
        let node = s.node.clone();
        let n = 20_000;
        let channels: Vec<String> = (0..n).map(|i| format!("chat:{}", i % 500)).collect();
        let started = std::time::Instant::now();
        for ch in &channels {
            node.webhooks.subscribed(&*node, ch, "u1");
            node.webhooks.unsubscribed(&*node, ch, "u1");
        }
        let per_pair = started.elapsed() / n as u32;
        println!("webhooks {label}: subscribe + unsubscribe hooks {per_pair:?} per pair");
        s.shutdown().await;
    }
}

/// Not a check: prints how many webhook requests and events a mass reconnect of 500 clients
/// (each in its own channel) costs with a grace and without.
/// `cargo test -p rotor-data-plane --test webhooks -- --ignored --nocapture mass_reconnect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn mass_reconnect_cost() {
    for grace in ["2s", "0s"] {
        let mut rx = Receiver::ok().await;
        let s = TestServer::start(hooks(&rx.url, grace, json!({"queue_size": 100000}))).await;
        let url = s.ws_url();
        let n = 500;
        let mut clients = Vec::new();
        for i in 0..n {
            let (mut c, _) = Client::connected(&url, &format!("user{i}")).await;
            subscribe(&mut c, &format!("chat:{i}")).await;
            clients.push(c);
        }
        let mut joined = 0;
        while joined < 2 * n {
            joined += rx.events_until(|_| true).await.len();
        }
        while rx.hits.try_recv().is_ok() {}
        let started = std::time::Instant::now();
        drop(clients);
        gone(&s, 0).await;
        let mut again = Vec::new();
        for i in 0..n {
            let (mut c, _) = Client::connected(&url, &format!("user{i}")).await;
            subscribe(&mut c, &format!("chat:{i}")).await;
            again.push(c);
        }
        let reconnected = started.elapsed();
        let (mut sentinel, _) = Client::connected(&url, "sentinel").await;
        subscribe(&mut sentinel, "chat:sentinel").await;
        drop(sentinel);
        let mut requests = 0;
        let mut events = 0;
        loop {
            let hit = tokio::time::timeout(Duration::from_secs(30), rx.hits.recv())
                .await
                .unwrap()
                .unwrap();
            requests += 1;
            let list = hit.json["events"].as_array().cloned().unwrap_or_default();
            events += list.len();
            if list
                .iter()
                .any(|e| e["name"] == "client_disconnected" && e["user"] == "sentinel")
            {
                break;
            }
        }
        println!(
            "grace {grace}: {n} clients dropped and reconnected in {reconnected:?}: \
             {requests} webhook requests, {events} events (5 of them the sentinel's own)"
        );
        drop(again);
        s.shutdown().await;
    }
}
