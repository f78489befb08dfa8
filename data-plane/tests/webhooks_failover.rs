//! Webhooks across processes: with the Redis engine a channel is announced once project-wide
//! and a reconnect to another process within grace sends nothing; a `kill -9`'d process's
//! connections are still reported, by a survivor (Redis engine, after `presence_ttl`) or by
//! the process restarted on the same state file (memory engine). Same receiver and waits as
//! `webhooks.rs` ([`webhooks_support`]).

mod common;
mod webhooks_support;

use std::time::Duration;

use common::{Binary, Client, Prefix, TestServer, SECRET, WAIT};
use serde_json::{json, Value};
use webhooks_support::*;

#[tokio::test]
async fn with_the_redis_engine_two_processes_announce_a_channel_once() {
    let prefix = Prefix::new();
    let mut rx = Receiver::ok().await;
    let config = hooks(&rx.url, "0s", json!({}));
    let a = TestServer::start_redis(config.clone(), &prefix.0).await;
    let b = TestServer::start_redis(config, &prefix.0).await;
    let (mut ca, _) = Client::connected(&a.ws_url(), "alice").await;
    let (mut cb, _) = Client::connected(&b.ws_url(), "alice").await;
    let (mut cc, _) = Client::connected(&b.ws_url(), "carol").await;
    subscribe(&mut ca, "chat:shared").await;
    subscribe(&mut cb, "chat:shared").await;
    subscribe(&mut cc, "chat:shared").await;
    // Either process may decide first, and each delivers on its own: gather, then order by
    // version.
    let mut joined = Vec::new();
    while joined.len() < 3 {
        joined.extend(rx.events_until(|_| true).await);
    }
    joined.sort_by_key(|e| e["version"].as_u64().unwrap());
    assert_eq!(names(&joined)[0], "channel_occupied chat:shared ");
    let mut members = names(&joined[1..]);
    members.sort();
    assert_eq!(
        members,
        vec![
            "member_added chat:shared alice",
            "member_added chat:shared carol"
        ]
    );
    unsubscribe(&mut ca, "chat:shared").await;
    unsubscribe(&mut cc, "chat:shared").await;
    let left = rx.events_until(|e| e["name"] == "member_removed").await;
    assert_eq!(names(&left), vec!["member_removed chat:shared carol"]);
    unsubscribe(&mut cb, "chat:shared").await;
    let last = rx.events_until(is("channel_vacated", "chat:shared")).await;
    assert_eq!(
        names(&last),
        vec![
            "member_removed chat:shared alice",
            "channel_vacated chat:shared "
        ]
    );
    let versions: Vec<u64> = joined
        .iter()
        .chain(&left)
        .chain(&last)
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

#[tokio::test]
async fn with_the_redis_engine_a_reconnect_to_another_process_within_grace_sends_nothing() {
    let prefix = Prefix::new();
    let mut rx = Receiver::ok().await;
    let config = hooks(&rx.url, "1s", json!({}));
    let a = TestServer::start_redis(config.clone(), &prefix.0).await;
    let b = TestServer::start_redis(config, &prefix.0).await;
    let (mut ca, _) = Client::connected(&a.ws_url(), "dave").await;
    subscribe(&mut ca, "chat:moving").await;
    rx.events_until(is("member_added", "chat:moving")).await;
    // Dave's process goes away from under him; he reconnects to the other one.
    drop(ca);
    gone(&a, 0).await;
    let (mut cb, _) = Client::connected(&b.ws_url(), "dave").await;
    subscribe(&mut cb, "chat:moving").await;
    let (mut sentinel, _) = Client::connected(&a.ws_url(), "sentinel").await;
    subscribe(&mut sentinel, "chat:sentinel").await;
    drop(sentinel);
    let after = rx
        .events_until(|e| e["name"] == "client_disconnected" && e["user"] == "sentinel")
        .await;
    let about_dave: Vec<&Value> = after
        .iter()
        .filter(|e| e["user"] == "dave" || e["channel"] == "chat:moving")
        .collect();
    assert!(about_dave.is_empty(), "{:?}", names(&after));
}

#[tokio::test]
async fn a_killed_processs_connections_are_reported_by_a_survivor() {
    let prefix = Prefix::new();
    let mut rx = Receiver::ok().await;
    let mut config = json!({
        "client": {"token": {"hmac_secret_key": SECRET}},
        "channel": {"namespaces": [{"name": "chat", "allow_subscribe_for_client": true}]},
        "engine": {"type": "redis", "redis": {"address": common::redis_url(),
            "prefix": prefix.0, "presence_ttl": "2s"}},
    });
    common::merge(&mut config, hooks(&rx.url, "1s", json!({})));
    let mut doomed = Binary::listening(&config, &[]).await;
    let survivor = Binary::listening(&config, &[]).await;
    // kim shares chat:k with lee (on the survivor); zed is alone in chat:z; max will come
    // back on the survivor before the sweep.
    let (mut kim, _) = Client::connected(&doomed.ws_url(), "kim").await;
    let (mut zed, _) = Client::connected(&doomed.ws_url(), "zed").await;
    let (mut max, _) = Client::connected(&doomed.ws_url(), "max").await;
    let (mut lee, _) = Client::connected(&survivor.ws_url(), "lee").await;
    subscribe(&mut kim, "chat:k").await;
    subscribe(&mut zed, "chat:z").await;
    subscribe(&mut max, "chat:m").await;
    subscribe(&mut lee, "chat:k").await;
    // Two processes deliver side by side: count, do not order.
    let mut joined = Vec::new();
    while joined.len() < 7 {
        joined.extend(rx.events_until(|_| true).await);
    }
    let mut got = names(&joined);
    got.sort();
    assert_eq!(
        got,
        vec![
            "channel_occupied chat:k ",
            "channel_occupied chat:m ",
            "channel_occupied chat:z ",
            "member_added chat:k kim",
            "member_added chat:k lee",
            "member_added chat:m max",
            "member_added chat:z zed",
        ]
    );

    doomed.child.kill().await.unwrap(); // SIGKILL: nothing is cleaned up.
    drop((kim, zed, max));
    let (mut max, _) = Client::connected(&survivor.ws_url(), "max").await;
    subscribe(&mut max, "chat:m").await;

    // The survivor sweeps the silent process after presence_ttl (2 s).
    let mut swept = Vec::new();
    while !(swept
        .iter()
        .any(|e: &Value| e["name"] == "client_disconnected" && e["user"] == "kim")
        && swept
            .iter()
            .any(|e: &Value| e["name"] == "client_disconnected" && e["user"] == "zed"))
    {
        let hit = tokio::time::timeout(Duration::from_secs(15), rx.hits.recv())
            .await
            .unwrap_or_else(|_| panic!("the survivor never swept the killed process: {swept:?}"))
            .unwrap();
        swept.extend(hit.json["events"].as_array().cloned().unwrap_or_default());
    }
    // Whatever the sweep queued comes before a later event of the survivor.
    let (mut late, _) = Client::connected(&survivor.ws_url(), "late").await;
    subscribe(&mut late, "chat:after").await;
    swept.extend(rx.events_until(is("channel_occupied", "chat:after")).await);
    let mut got = names(&swept);
    got.sort();
    assert_eq!(
        got,
        vec![
            "channel_occupied chat:after ",
            "channel_vacated chat:z ",
            "client_disconnected  kim",
            "client_disconnected  zed",
            "member_removed chat:k kim",
            "member_removed chat:z zed",
        ],
        "{swept:#?}"
    );
    let gone = swept
        .iter()
        .find(|e| e["name"] == "client_disconnected")
        .unwrap();
    assert_eq!(gone["reason"], "process lost");
    assert_eq!(gone["code"], 3000);
    survivor.stop().await;
}

#[tokio::test]
async fn a_restarted_memory_engine_process_reports_what_its_killed_predecessor_held() {
    let dir = std::env::temp_dir().join(format!("rotor-wh-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("webhooks.json");
    let env = [("ROTOR_WEBHOOK_STATE_FILE", state.to_str().unwrap())];
    let mut rx = Receiver::ok().await;
    let mut config = json!({
        "client": {"token": {"hmac_secret_key": SECRET}},
        "channel": {"namespaces": [{"name": "chat", "allow_subscribe_for_client": true}]},
    });
    common::merge(&mut config, hooks(&rx.url, "1s", json!({})));
    let mut first = Binary::listening(&config, &env).await;
    let (mut kim, _) = Client::connected(&first.ws_url(), "kim").await;
    let (mut zed, _) = Client::connected(&first.ws_url(), "zed").await;
    subscribe(&mut kim, "chat:k").await;
    subscribe(&mut zed, "chat:z").await;
    let mut joined = Vec::new();
    while joined.len() < 4 {
        joined.extend(rx.events_until(|_| true).await);
    }
    // The state file holds both connections (written about once a second).
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let text = std::fs::read_to_string(&state).unwrap_or_default();
            if text.contains("chat:z") && text.contains("kim") && text.contains("zed") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the state file was never written");

    first.child.kill().await.unwrap(); // SIGKILL, as a crash; the supervisor restarts it.
    drop((kim, zed));
    let second = Binary::listening(&config, &env).await;
    // kim is back within grace; zed is not.
    let (mut kim, _) = Client::connected(&second.ws_url(), "kim").await;
    subscribe(&mut kim, "chat:k").await;
    let mut after = rx
        .events_until(|e| e["name"] == "client_disconnected" && e["user"] == "zed")
        .await;
    let (mut late, _) = Client::connected(&second.ws_url(), "late").await;
    subscribe(&mut late, "chat:after").await;
    after.extend(rx.events_until(is("channel_occupied", "chat:after")).await);
    let mut got = names(&after);
    got.sort();
    assert_eq!(
        got,
        vec![
            "channel_occupied chat:after ",
            "channel_vacated chat:z ",
            "client_disconnected  zed",
            "member_removed chat:z zed",
        ],
        "{after:#?}"
    );
    let gone = after
        .iter()
        .find(|e| e["name"] == "client_disconnected")
        .unwrap();
    assert_eq!(gone["reason"], "process lost");
    // A graceful stop leaves nothing for a successor.
    let _ = second.child.id().map(|pid| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
    });
    let mut second = second;
    tokio::time::timeout(WAIT, second.child.wait())
        .await
        .expect("no graceful stop")
        .unwrap();
    assert!(!state.exists(), "the state file outlived a graceful stop");
    let _ = std::fs::remove_dir_all(dir);
}
