//! Webhooks end to end: a real HTTP receiver in the test, the data plane in process (or as a
//! `rotor-data-plane` process for the hosted egress rule), real WebSocket clients. Waits are
//! on events with bounded timeouts; "nothing was sent" is shown by a later sentinel event
//! that is held the same grace and therefore arrives after anything it would have followed.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{Binary, Client, Prefix, TestServer, ADMIN_TOKEN, SECRET, WAIT};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;

const HOOK_SECRET: &str = "hook-secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    id: String,
    signature: String,
    body: Bytes,
    json: Value,
    /// What the receiver answered.
    status: u16,
}

/// A backend receiving webhooks: answers with the queued statuses, then `otherwise`.
struct Receiver {
    url: String,
    hits: mpsc::UnboundedReceiver<Hit>,
    /// Events received so far and not yet taken by a test.
    pending: VecDeque<Value>,
}

#[derive(Clone)]
struct Script {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    otherwise: u16,
    tx: mpsc::UnboundedSender<Hit>,
}

async fn hook(State(s): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = s.statuses.lock().pop_front().unwrap_or(s.otherwise);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let _ = s.tx.send(Hit {
        id: header("x-rotor-webhook-id"),
        signature: header("x-rotor-signature"),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start(statuses: &[u16], otherwise: u16) -> Self {
        let (tx, hits) = mpsc::unbounded_channel();
        let script = Script {
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
            otherwise,
            tx,
        };
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(hook))
            .with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            hits,
            pending: VecDeque::new(),
        }
    }

    async fn ok() -> Self {
        Self::start(&[], 200).await
    }

    /// The next request.
    async fn hit(&mut self) -> Hit {
        tokio::time::timeout(WAIT, self.hits.recv())
            .await
            .expect("no webhook request in time")
            .expect("receiver gone")
    }

    /// Every event up to and including the first that `last` matches, in arrival order
    /// (events of accepted requests only).
    async fn events_until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            while let Some(e) = self.pending.pop_front() {
                let done = last(&e);
                out.push(e);
                if done {
                    return out;
                }
            }
            let hit = self.hit().await;
            if hit.status == 200 {
                let events = hit.json["events"].as_array().cloned().unwrap_or_default();
                self.pending.extend(events);
            }
        }
    }
}

fn is(name: &'static str, channel: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["name"] == name && (channel.is_empty() || e["channel"] == channel)
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["name"].as_str().unwrap_or_default(),
                e["channel"].as_str().unwrap_or_default(),
                e["user"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Webhooks to `url` with `grace` and the given extra options.
fn hooks(url: &str, grace: &str, extra: Value) -> Value {
    let mut w = json!({"enabled": true, "url": url, "secret": HOOK_SECRET, "grace": grace,
        "retry_backoff": "20ms", "max_retry_backoff": "100ms"});
    common::merge(&mut w, extra);
    json!({ "webhooks": w })
}

async fn subscribe(c: &mut Client, channel: &str) {
    let r = c.call(json!({"subscribe": {"channel": channel}})).await;
    assert!(r.get("subscribe").is_some(), "subscribe {channel}: {r}");
}

async fn unsubscribe(c: &mut Client, channel: &str) {
    let r = c.call(json!({"unsubscribe": {"channel": channel}})).await;
    assert!(r.get("unsubscribe").is_some(), "unsubscribe {channel}: {r}");
}

async fn admin_webhooks(admin: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{admin}/admin/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the admin view until `done` holds (bounded).
async fn admin_until(admin: &str, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let v = admin_webhooks(admin).await;
            if done(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the admin view never showed it")
}

/// Waits until `s` has seen its connections end, down to `left`.
async fn gone(s: &TestServer, left: i64) {
    tokio::time::timeout(WAIT, async {
        while s.node.metrics.connections.get() > left {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server did not see the connections end");
}

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
            node.webhooks.subscribed(&node, ch, "u1");
            node.webhooks.unsubscribed(&node, ch, "u1");
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
