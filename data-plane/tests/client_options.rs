//! Centrifugo's client options and the server API targeting that goes with them:
//! `client.user_id_http_header` (and its refusal when the control plane runs the process),
//! `client.insecure_skip_token_signature_verify`, `client.connection_rate_limit`, `override`
//! in token `subs`, subscription tokens and the server API's `subscribe`, `session` targeting
//! in `subscribe`/`unsubscribe`/`disconnect`, and `batch` with `parallel`.

mod common;

use common::{api, now, token, Binary, Client, TestServer, SECRET, WAIT};
use serde_json::{json, Value};

/// A namespace with history but no forced recovery, so an `override` can turn it on.
fn with_hist(mut extra: Value) -> Value {
    let mut base = json!({"channel": {"namespaces": [
        {"name": "chat", "presence": true, "join_leave": true, "force_push_join_leave": true,
         "history_size": 10, "history_ttl": "60s", "force_recovery": true,
         "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
         "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true},
        {"name": "locked"},
        {"name": "hist", "history_size": 10, "history_ttl": "60s",
         "allow_subscribe_for_client": true}
    ]}});
    common::merge(&mut base, extra.take());
    base
}

/// The user of a connected client, as presence in a `chat` channel reports it.
async fn user_of(c: &mut Client, channel: &str) -> String {
    let r = c.call(json!({"subscribe": {"channel": channel}})).await;
    assert!(r.get("subscribe").is_some(), "{r}");
    let r = c.call(json!({"presence": {"channel": channel}})).await;
    let presence = r["presence"]["presence"].as_object().cloned().unwrap();
    assert_eq!(presence.len(), 1, "{r}");
    presence.values().next().unwrap()["user"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_standalone_data_plane_authenticates_by_the_configured_header_and_only_by_it() {
    let s =
        TestServer::start_standalone(json!({"client": {"user_id_http_header": "X-User-Id"}})).await;
    // The header names the user of a connection without a token.
    let mut c = Client::open_with(&s.ws_url(), &[("x-user-id", "alice")]).await;
    let r = c.call(json!({"connect": {}})).await;
    assert!(r.get("connect").is_some(), "{r}");
    assert_eq!(user_of(&mut c, "chat:a").await, "alice");
    // A token still wins over the header.
    let mut c = Client::open_with(&s.ws_url(), &[("x-user-id", "alice")]).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "bob"}))}}))
        .await;
    assert!(r.get("connect").is_some(), "{r}");
    assert_eq!(user_of(&mut c, "chat:b").await, "bob");
    // Without the header (or with an empty one) there are no credentials: 3501.
    for headers in [&[][..], &[("x-user-id", "")][..]] {
        let mut c = Client::open_with(&s.ws_url(), headers).await;
        c.send(json!({"connect": {}})).await;
        assert_eq!(c.closed().await.code, 3501);
    }
    // The connect command's own `headers` (client-controlled) are not the request's.
    let mut c = Client::open(&s.ws_url()).await;
    c.send(json!({"connect": {"headers": {"X-User-Id": "alice"}}}))
        .await;
    assert_eq!(c.closed().await.code, 3501);
    s.shutdown().await;

    // A data plane without the option ignores the header.
    let s = TestServer::start_standalone(json!({})).await;
    let mut c = Client::open_with(&s.ws_url(), &[("x-user-id", "alice")]).await;
    c.send(json!({"connect": {}})).await;
    assert_eq!(c.closed().await.code, 3501);
    s.shutdown().await;
}

#[tokio::test]
async fn anonymous_access_wins_over_the_header_as_in_centrifugo() {
    let s = TestServer::start_standalone(json!({
        "client": {"user_id_http_header": "X-User-Id", "allow_anonymous_connect_without_token": true},
        "channel": {"namespaces": [{"name": "chat", "presence": true,
            "allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true,
            "allow_presence_for_subscriber": true, "allow_presence_for_anonymous": true}]}
    }))
    .await;
    let mut c = Client::open_with(&s.ws_url(), &[("x-user-id", "alice")]).await;
    assert!(c
        .call(json!({"connect": {}}))
        .await
        .get("connect")
        .is_some());
    assert_eq!(user_of(&mut c, "chat:a").await, "");
    s.shutdown().await;
}

#[tokio::test]
async fn a_data_plane_the_control_plane_runs_refuses_header_auth_and_unsigned_tokens() {
    let base =
        json!({"http_server": {"port": 0}, "client": {"token": {"hmac_secret_key": SECRET}}});
    for option in [
        json!({"client": {"user_id_http_header": "X-User-Id"}}),
        json!({"client": {"insecure_skip_token_signature_verify": true}}),
    ] {
        let mut config = base.clone();
        common::merge(&mut config, option.clone());
        let stderr = Binary::refused(&config, &[("ROTOR_EGRESS", "public")]).await;
        assert!(
            stderr.contains("a hosted project may not set this option"),
            "{option}: {stderr}"
        );
        // Standalone, the same config starts.
        let b = Binary::listening(&config, &[]).await;
        b.stop().await;
    }
}

/// An HS256 token signed with a secret the server does not know.
fn forged(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap()
}

#[tokio::test]
async fn skipping_signature_checks_accepts_forged_tokens_but_not_expired_ones() {
    let s = TestServer::start_standalone(with_hist(json!({"client": {
        "insecure_skip_token_signature_verify": true}})))
    .await;
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(json!({"connect": {"token": forged(json!({"sub": "mallory"}))}}))
        .await;
    assert!(r.get("connect").is_some(), "{r}");
    assert_eq!(user_of(&mut c, "chat:x").await, "mallory");
    // Subscription tokens too: a forged one for a channel nobody may join.
    let sub = forged(json!({"sub": "mallory", "channel": "locked:room"}));
    let r = c
        .call(json!({"subscribe": {"channel": "locked:room", "token": sub}}))
        .await;
    assert!(r.get("subscribe").is_some(), "{r}");
    // Claims are still checked: an expired token is answered 109.
    let mut c = Client::open(&s.ws_url()).await;
    let r = c
        .call(json!({"connect": {"token": forged(json!({"sub": "m", "exp": now() - 10}))}}))
        .await;
    assert_eq!(r["error"]["code"], 109, "{r}");
    s.shutdown().await;

    // Without the option the forged token is an invalid token (3500).
    let s = TestServer::start_standalone(json!({})).await;
    let mut c = Client::open(&s.ws_url()).await;
    c.send(json!({"connect": {"token": forged(json!({"sub": "mallory"}))}}))
        .await;
    assert_eq!(c.closed().await.code, 3500);
    s.shutdown().await;
}

/// A WebSocket handshake's HTTP status (101 when it upgraded).
async fn handshake_status(url: &str) -> u16 {
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake timeout")
    {
        Ok((_ws, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn new_sockets_past_the_connection_rate_are_answered_503_and_counted() {
    let rate = 3;
    let s = TestServer::start(json!({"client": {"connection_rate_limit": rate}})).await;
    let started = std::time::Instant::now();
    let mut upgraded = 0;
    let mut refused = 0;
    for _ in 0..20 {
        match handshake_status(&s.ws_url()).await {
            101 => upgraded += 1,
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The bucket holds one second's worth and refills at the rate.
    let most = rate as f64 + (elapsed * rate as f64).ceil();
    assert!(
        f64::from(upgraded) <= most,
        "{upgraded} upgraded in {elapsed} s"
    );
    assert!(upgraded >= rate, "the first {rate} are admitted");
    assert!(refused > 0);
    let metrics = reqwest::Client::new()
        .get(format!("http://{}/metrics", s.admin_addr))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.contains("connections_refused_total") && l.contains("connection_rate_limit"))
        .unwrap_or_else(|| panic!("no rate-limit refusals in {metrics}"));
    let counted: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(counted, f64::from(refused));
    s.shutdown().await;
}

#[tokio::test]
async fn override_in_token_subs_subscription_tokens_and_the_api_changes_the_namespace_options() {
    let s = TestServer::start(with_hist(json!({}))).await;
    let on = json!({"force_recovery": {"value": true}});
    // Connection token `subs`: hist:t recovers, hist:u keeps the namespace's options; chat's
    // forced recovery is switched off for chat:quiet.
    let mut c = Client::open(&s.ws_url()).await;
    let t = token(json!({"sub": "u1", "subs": {
        "hist:t": {"override": on},
        "hist:u": {},
        "chat:quiet": {"override": {"force_recovery": {"value": false}}}
    }}));
    let r = c.call(json!({"connect": {"token": t}})).await;
    let subs = &r["connect"]["subs"];
    assert_eq!(subs["hist:t"]["recoverable"], true, "{r}");
    assert_eq!(subs["hist:t"]["positioned"], true, "{r}");
    assert!(subs["hist:u"].get("recoverable").is_none(), "{r}");
    assert!(subs["chat:quiet"].get("recoverable").is_none(), "{r}");
    // A subscription token's override.
    let sub = token(json!({"sub": "u1", "channel": "hist:s", "override": on}));
    let r = c
        .call(json!({"subscribe": {"channel": "hist:s", "token": sub}}))
        .await;
    assert_eq!(r["subscribe"]["recoverable"], true, "{r}");
    let r = c
        .call(json!({"subscribe": {"channel": "hist:plain"}}))
        .await;
    assert!(r["subscribe"].get("recoverable").is_none(), "{r}");
    // The server API's subscribe.
    let r = api(
        &s,
        "subscribe",
        json!({"user": "u1", "channel": "hist:api", "override": on}),
    )
    .await;
    assert_eq!(r, json!({"result": {}}));
    // (chat:quiet's own join push may come first.)
    let push = loop {
        let push = c.push().await;
        if push["channel"] == "hist:api" {
            break push;
        }
    };
    assert_eq!(push["subscribe"]["recoverable"], true, "{push}");
    s.shutdown().await;
}

/// Reads an HTTP stream of newline-separated JSON messages.
struct UniStream {
    resp: reqwest::Response,
    buf: String,
}

impl UniStream {
    /// Opens a unidirectional HTTP stream for `user`; returns it and its session id.
    async fn open(s: &TestServer, user: &str) -> (Self, String) {
        let body = json!({"token": token(json!({"sub": user}))}).to_string();
        let resp = reqwest::Client::new()
            .post(format!("http://{}/connection/uni_http_stream", s.addr))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let mut stream = Self {
            resp,
            buf: String::new(),
        };
        let connect = stream.next().await.expect("connect push");
        let session = connect["connect"]["session"].as_str().unwrap().to_owned();
        let client = connect["connect"]["client"].as_str().unwrap();
        assert!(!session.is_empty());
        assert_ne!(session, client, "the session id is not the client id");
        (stream, session)
    }

    /// The next message that is not a ping; `None` when the stream ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.find('\n') {
                let line: String = self.buf.drain(..=i).collect();
                let line = line.trim();
                if line.is_empty() || line == "{}" {
                    continue;
                }
                return Some(serde_json::from_str(line).expect("JSON message"));
            }
            match tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("stream stalled")
            {
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

#[tokio::test]
async fn the_server_api_targets_one_session_of_a_user() {
    let s = TestServer::start(json!({"uni_http_stream": {"enabled": true}})).await;
    let (mut first, first_session) = UniStream::open(&s, "ann").await;
    let (mut second, _) = UniStream::open(&s, "ann").await;

    // subscribe: only the first session follows the channel.
    let r = api(
        &s,
        "subscribe",
        json!({"user": "ann", "channel": "news", "session": first_session}),
    )
    .await;
    assert_eq!(r, json!({"result": {}}));
    let push = first.next().await.unwrap();
    assert_eq!(push["channel"], "news", "{push}");
    assert!(push.get("subscribe").is_some(), "{push}");
    // The second gets the publication of a channel only it follows, and nothing before it.
    api(&s, "subscribe", json!({"user": "ann", "channel": "other"})).await;
    assert_eq!(first.next().await.unwrap()["channel"], "other");
    let push = second.next().await.unwrap();
    assert_eq!(
        push["channel"], "other",
        "the second never got news: {push}"
    );

    // unsubscribe: only the first session leaves `other`.
    api(
        &s,
        "unsubscribe",
        json!({"user": "ann", "channel": "other", "session": first_session}),
    )
    .await;
    let push = first.next().await.unwrap();
    assert_eq!(push["channel"], "other");
    assert!(push.get("unsubscribe").is_some(), "{push}");
    api(&s, "publish", json!({"channel": "other", "data": {"n": 1}})).await;
    let push = second.next().await.unwrap();
    assert_eq!(push["pub"]["data"], json!({"n": 1}), "{push}");

    // disconnect: a session of another user, or an unknown one, matches nothing.
    for target in [
        json!({"user": "bob", "session": first_session}),
        json!({"user": "ann", "session": "no-such-session"}),
    ] {
        assert_eq!(api(&s, "disconnect", target).await, json!({"result": {}}));
    }
    api(
        &s,
        "disconnect",
        json!({"user": "ann", "session": first_session}),
    )
    .await;
    let push = first.next().await.unwrap();
    assert_eq!(push["disconnect"]["code"], 3503, "{push}");
    assert!(first.next().await.is_none(), "the first stream ends");
    // The second is still there.
    api(&s, "publish", json!({"channel": "other", "data": {"n": 2}})).await;
    let push = second.next().await.unwrap();
    assert_eq!(push["pub"]["data"], json!({"n": 2}), "{push}");
    s.shutdown().await;
}

#[tokio::test]
async fn a_parallel_batch_answers_every_command_in_order() {
    let s = TestServer::start(json!({})).await;
    let mut commands: Vec<Value> = (0..100)
        .map(|i| json!({"publish": {"channel": format!("chat:{i}"), "data": {"i": i}}}))
        .collect();
    commands[10] = json!({"publish": {"channel": "", "data": {}}});
    commands[20] = json!({"publish": {"channel": "nope:x", "data": {"i": 20}}});
    commands[30] = json!({"history": {"channel": "chat:29", "limit": 10}});
    for parallel in [true, false] {
        let r = api(
            &s,
            "batch",
            json!({"commands": commands, "parallel": parallel}),
        )
        .await;
        let replies = r["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 100);
        for (i, reply) in replies.iter().enumerate() {
            match i {
                10 => assert_eq!(reply["error"]["code"], 107, "{reply}"),
                20 => assert_eq!(reply["error"]["code"], 102, "{reply}"),
                30 => assert!(reply["history"]["publications"].is_array(), "{reply}"),
                _ => assert!(reply["publish"]["offset"].as_u64().unwrap() >= 1, "{reply}"),
            }
        }
    }
    s.shutdown().await;
}
