//! Publisher exclusion over real WebSocket: a client publication in a namespace with
//! `exclude_publisher` reaches everyone but the publishing session — none of its connections
//! live, and none of them in recovery or in history read from a position, across reconnects —
//! while the server API's `exclude` names a client, a user or a session tag. The session tag is
//! the token's `session_tag` claim or a digest of the token; it never reaches a client, in
//! JSON or Protobuf. Checked on the memory engine and on the Redis engine across two nodes.

mod common;

use common::pb::PbClient;
use common::{api, token, Client, Prefix, TestServer};
use rotor_data_plane::protocol::{Command, ConnectRequest, HistoryRequest, StreamPosition};
use rotor_data_plane::protocol::{Reply, SubscribeRequest};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn config() -> Value {
    json!({"channel": {"namespaces": [
        {"name": "room", "exclude_publisher": true, "history_size": 50, "history_ttl": "60s",
         "force_recovery": true, "force_positioning": true, "allow_subscribe_for_client": true,
         "allow_publish_for_subscriber": true, "allow_history_for_subscriber": true},
        {"name": "state", "exclude_publisher": true, "history_size": 50, "history_ttl": "60s",
         "force_recovery": true, "force_recovery_mode": "cache",
         "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true},
        {"name": "echo", "history_size": 50, "history_ttl": "60s",
         "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}
    ]}})
}

/// A connection with `token`, subscribed to `channel` (recovering from `since` if given);
/// the subscribe result.
async fn join(url: &str, token: &str, channel: &str, since: Option<&Value>) -> (Client, Value) {
    let mut c = Client::open(url).await;
    let r = c.call(json!({"connect": {"token": token}})).await;
    assert!(r["connect"].is_object(), "{r}");
    let mut sub = json!({"channel": channel});
    if let Some(since) = since {
        sub["recover"] = json!(true);
        sub["offset"] = since["offset"].clone();
        sub["epoch"] = since["epoch"].clone();
    }
    let r = c.call(json!({ "subscribe": sub })).await;
    assert!(r["subscribe"].is_object(), "{r}");
    (c, r["subscribe"].clone())
}

/// `n` of the next publication pushed to `c`.
async fn next_n(c: &mut Client) -> u64 {
    let push = c.push().await;
    push["pub"]["data"]["n"]
        .as_u64()
        .unwrap_or_else(|| panic!("a publication expected: {push}"))
}

/// `n` of the publications in a subscribe or history result.
fn ns(result: &Value) -> Vec<u64> {
    result["publications"]
        .as_array()
        .map(|a| a.iter().map(|p| p["data"]["n"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

async fn publish(s: &TestServer, channel: &str, n: u64, exclude: Option<Value>) {
    let mut body = json!({"channel": channel, "data": {"n": n}});
    if let Some(e) = exclude {
        body["exclude"] = e;
    }
    let r = api(s, "publish", body).await;
    assert!(r["result"].is_object(), "{r}");
}

/// The session tag Rotor derives from a token without a `session_tag` claim.
fn digest_tag(token: &str) -> String {
    format!("t:{}", hex::encode(&Sha256::digest(token.as_bytes())[..16]))
}

async fn publishers_do_not_get_their_own(sub: &TestServer, other: &TestServer) {
    let (url, other_url) = (sub.ws_url(), other.ws_url());
    let ann_tab1 = token(json!({"sub": "ann", "session_tag": "ann-tab1"}));
    let ann_tab2 = token(json!({"sub": "ann", "session_tag": "ann-tab2"}));
    let bob = token(json!({"sub": "bob"}));
    let (mut a1, first) = join(&url, &ann_tab1, "room:1", None).await;
    let start = json!({"offset": 0, "epoch": first["epoch"]});
    // The same session on the other node (a second connection of the tab, or the node the
    // tab reconnects to).
    let (mut a1b, _) = join(&other_url, &ann_tab1, "room:1", None).await;
    let (mut a2, _) = join(&other_url, &ann_tab2, "room:1", None).await;
    let (mut b, _) = join(&url, &bob, "room:1", None).await;

    // 1: ann's first tab publishes: everyone else gets it, none of that tab's connections.
    let r = a1
        .call(json!({"publish": {"channel": "room:1", "data": {"n": 1}}}))
        .await;
    assert!(r["publish"].is_object(), "{r}");
    // 2: the API, no exclusion; 3: not for ann at all; 4: not for bob's session (the digest
    // of his token); 5: plain.
    publish(other, "room:1", 2, None).await;
    publish(other, "room:1", 3, Some(json!({"user": "ann"}))).await;
    publish(
        sub,
        "room:1",
        4,
        Some(json!({"session_tag": digest_tag(&bob)})),
    )
    .await;
    publish(sub, "room:1", 5, None).await;
    for (name, c, expected) in [
        ("ann tab1", &mut a1, vec![2, 4, 5]),
        ("ann tab1, other node", &mut a1b, vec![2, 4, 5]),
        ("ann tab2", &mut a2, vec![1, 2, 4, 5]),
        ("bob", &mut b, vec![1, 2, 3, 5]),
    ] {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(next_n(c).await);
        }
        assert_eq!(got, expected, "{name}");
    }
    // Positioned subscribers skipped publications without losing their place: the next one
    // still arrives (a gap would have unsubscribed them for recovery instead).
    publish(sub, "room:1", 6, None).await;
    for c in [&mut a1, &mut a1b, &mut a2, &mut b] {
        assert_eq!(next_n(c).await, 6);
    }

    // Reconnecting with the same credentials, the session recovers without its own: ann's
    // first tab misses 1 (its own) and 3 (not for ann); bob with the same token misses 4, with
    // a new token (a new session) gets it.
    drop(a1);
    let (_a1, r) = join(&other_url, &ann_tab1, "room:1", Some(&start)).await;
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(ns(&r), [2, 4, 5, 6]);
    let (_b, r) = join(&other_url, &bob, "room:1", Some(&start)).await;
    assert_eq!(ns(&r), [1, 2, 3, 5, 6]);
    let bob_again = token(json!({"sub": "bob", "iat": common::now() - 1}));
    assert_ne!(bob_again, bob);
    let (_b2, r) = join(&url, &bob_again, "room:1", Some(&start)).await;
    assert_eq!(ns(&r), [1, 2, 3, 4, 5, 6]);

    // History read from a position replays like recovery; a read of the latest shows all.
    let (mut a1c, _) = join(&url, &ann_tab1, "room:1", None).await;
    let r = a1c
        .call(json!({"history": {"channel": "room:1", "limit": 10, "since": start}}))
        .await;
    assert_eq!(ns(&r["history"]), [2, 4, 5, 6], "{r}");
    let r = a1c
        .call(json!({"history": {"channel": "room:1", "limit": 10}}))
        .await;
    assert_eq!(ns(&r["history"]), [1, 2, 3, 4, 5, 6], "{r}");
}

#[tokio::test]
async fn publishers_do_not_get_their_own_publications_live_or_replayed() {
    let s = TestServer::start(config()).await;
    publishers_do_not_get_their_own(&s, &s).await;
}

#[tokio::test]
async fn with_redis_the_exclusion_holds_across_nodes() {
    let prefix = Prefix::new();
    let a = TestServer::start_redis(config(), &prefix.0).await;
    let b = TestServer::start_redis(config(), &prefix.0).await;
    publishers_do_not_get_their_own(&a, &b).await;
}

#[tokio::test]
async fn an_excluded_client_id_names_one_connection_and_echo_stays_the_default() {
    let s = TestServer::start(config()).await;
    let url = s.ws_url();
    let tab = token(json!({"sub": "ann", "session_tag": "tab"}));
    let mut one = Client::open(&url).await;
    let r = one.call(json!({"connect": {"token": tab}})).await;
    let one_id = r["connect"]["client"].as_str().unwrap().to_owned();
    one.call(json!({"subscribe": {"channel": "room:2"}})).await;
    let (mut two, _) = join(&url, &tab, "room:2", None).await;
    publish(&s, "room:2", 1, Some(json!({"client": one_id}))).await;
    publish(&s, "room:2", 2, None).await;
    assert_eq!(next_n(&mut one).await, 2);
    assert_eq!(next_n(&mut two).await, 1);

    // Without `exclude_publisher` a client gets its own publication back, as in Centrifugo.
    let (mut echo, _) = join(&url, &tab, "echo:1", None).await;
    echo.call(json!({"publish": {"channel": "echo:1", "data": {"n": 7}}}))
        .await;
    assert_eq!(next_n(&mut echo).await, 7);
    assert!(s.node.metrics.publisher_excluded.get() >= 1);
}

#[tokio::test]
async fn cache_recovery_does_not_hand_the_publisher_its_own_state() {
    let s = TestServer::start(config()).await;
    let url = s.ws_url();
    let ann = token(json!({"sub": "ann", "session_tag": "tab"}));
    let (mut a, first) = join(&url, &ann, "state:1", None).await;
    let since = json!({"offset": 0, "epoch": first["epoch"]});
    let r = a
        .call(json!({"publish": {"channel": "state:1", "data": {"n": 1}}}))
        .await;
    assert!(r["publish"].is_object(), "{r}");
    let (_a, r) = join(&url, &ann, "state:1", Some(&since)).await;
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(ns(&r), Vec::<u64>::new(), "{r}");
    let bob = token(json!({"sub": "bob"}));
    let (_b, r) = join(&url, &bob, "state:1", Some(&since)).await;
    assert_eq!(ns(&r), [1], "{r}");
}

#[tokio::test]
async fn bad_exclusions_and_session_tags_are_refused() {
    let s = TestServer::start(config()).await;
    for exclude in [
        json!({}),
        json!({"user": "ann", "client": "c"}),
        json!({"session_tag": ""}),
        json!({"user": "x".repeat(257)}),
    ] {
        let r = api(
            &s,
            "publish",
            json!({"channel": "room:1", "data": {}, "exclude": exclude}),
        )
        .await;
        assert_eq!(r["error"]["code"], 107, "{exclude} → {r}");
        let r = api(
            &s,
            "broadcast",
            json!({"channels": ["room:1", "room:2"], "data": {}, "exclude": exclude}),
        )
        .await;
        assert_eq!(r["error"]["code"], 107, "{exclude} → {r}");
    }
    let status = reqwest::Client::new()
        .post(format!("http://{}/api/publish", s.addr))
        .header("x-api-key", "api-key")
        .json(&json!({"channel": "room:1", "data": {}, "exclude": {"session": "a"}}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 400, "an unknown exclude field is refused");
    // A token whose session tag is too long is not a valid token.
    let mut c = Client::open(&s.ws_url()).await;
    c.send(
        json!({"connect": {"token": token(json!({"sub": "a", "session_tag": "x".repeat(257)}))}}),
    )
    .await;
    assert_eq!(c.closed().await.code, 3500);
}

/// Every publication a Protobuf client received, from pushes and from replies.
fn publications(replies: &[Reply]) -> Vec<rotor_data_plane::protocol::Publication> {
    let mut out = Vec::new();
    for r in replies {
        if let Some(p) = r.push.as_ref().and_then(|p| p.r#pub.clone()) {
            out.push(p);
        }
        if let Some(s) = &r.subscribe {
            out.extend(s.publications.iter().cloned());
        }
        if let Some(h) = &r.history {
            out.extend(h.publications.iter().cloned());
        }
    }
    out
}

#[tokio::test]
async fn the_session_tag_never_reaches_another_client() {
    let prefix = Prefix::new();
    let s = TestServer::start_redis(config(), &prefix.0).await;
    let url = s.ws_url();
    let secret_tag = "ann-private-session-0123456789";
    let ann = token(json!({"sub": "ann", "session_tag": secret_tag}));
    let (mut a, first) = join(&url, &ann, "room:9", None).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();

    let mut pb = PbClient::open(&url).await;
    let connect = Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: token(json!({"sub": "eve"})),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(pb.call(connect).await.connect.is_some());
    let subscribe = |id: u32, recover: bool| Command {
        id,
        subscribe: Some(SubscribeRequest {
            channel: "room:9".into(),
            recover,
            epoch: epoch.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut seen = vec![pb.call(subscribe(2, false)).await];
    a.call(json!({"publish": {"channel": "room:9", "data": {"n": 1}}}))
        .await;
    publish(&s, "room:9", 2, Some(json!({"session_tag": secret_tag}))).await;
    // Live, then again in recovery (a second subscription from offset 0) and in history.
    while publications(&seen).len() < 2 {
        seen.push(pb.next().await);
    }
    let unsubscribe = Command {
        id: 3,
        unsubscribe: Some(rotor_data_plane::protocol::UnsubscribeRequest {
            channel: "room:9".into(),
        }),
        ..Default::default()
    };
    pb.call(unsubscribe).await;
    seen.push(pb.call(subscribe(4, true)).await);
    seen.push(
        pb.call(Command {
            id: 5,
            history: Some(HistoryRequest {
                channel: "room:9".into(),
                limit: 10,
                since: Some(StreamPosition {
                    offset: 0,
                    epoch: epoch.clone(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await,
    );
    let got = publications(&seen);
    assert_eq!(got.len(), 6, "2 live, 2 recovered, 2 in history: {got:?}");
    assert!(got.iter().all(|p| p.exclude.is_empty()));
    let raw = &pb.raw;
    assert!(
        !raw.windows(secret_tag.len())
            .any(|w| w == secret_tag.as_bytes()),
        "the session tag went over the wire"
    );
    // Nor in JSON, nor through the server API's history.
    let (mut json_reader, _) = join(&url, &token(json!({"sub": "eve"})), "room:9", None).await;
    let r = json_reader
        .call(json!({"history": {"channel": "room:9", "limit": 10}}))
        .await;
    assert_eq!(ns(&r["history"]), [1, 2]);
    assert!(!r.to_string().contains(secret_tag));
    let r = api(&s, "history", json!({"channel": "room:9", "limit": 10})).await;
    assert_eq!(r["result"]["publications"].as_array().unwrap().len(), 2);
    assert!(!r.to_string().contains(secret_tag));
}

/// Many visitors may hold one byte-identical anonymous token (a site hands every guest the
/// same one): each visitor is its own publisher, so one guest's publication is hidden from
/// that guest alone, never from the others holding the same token.
#[tokio::test]
async fn anonymous_visitors_with_one_token_still_see_each_other() {
    let s = TestServer::start(json!({"channel": {"namespaces": [
        {"name": "lobby", "exclude_publisher": true, "history_size": 50, "history_ttl": "60s",
         "force_recovery": true, "allow_subscribe_for_client": true,
         "allow_subscribe_for_anonymous": true, "allow_publish_for_subscriber": true,
         "allow_publish_for_anonymous": true}
    ]}}))
    .await;
    let url = s.ws_url();
    let guest = token(json!({"sub": ""}));
    let (mut one, _) = join(&url, &guest, "lobby:1", None).await;
    let (mut two, _) = join(&url, &guest, "lobby:1", None).await;
    let r = one
        .call(json!({"publish": {"channel": "lobby:1", "data": {"n": 1}}}))
        .await;
    assert!(r["publish"].is_object(), "{r}");
    assert_eq!(next_n(&mut two).await, 1, "another guest gets it");
    publish(&s, "lobby:1", 2, None).await;
    assert_eq!(next_n(&mut one).await, 2, "the publisher skipped its own");
    assert_eq!(next_n(&mut two).await, 2);
}
