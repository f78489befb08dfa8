//! Tenant isolation on one machine and one Redis: two projects of two accounts, both on the
//! Redis engine, with the same namespace and the same channel name. Everything A does —
//! publications, presence, history, usage — stays invisible from B, and A's API key, connection
//! tokens, management token and recovery position are useless there (and the other way round
//! where it costs nothing). Every wait is bounded; events are awaited, usage (scraped every
//! few seconds, no event to await) is polled with a deadline.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rotor_e2e::control_plane::{raw_connect, token, ControlPlane, Engine, Project};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Bound on every single wait for a reply or a push.
const WAIT: Duration = Duration::from_secs(5);
/// The channel both projects use.
const CHANNEL: &str = "chat:room";

/// The namespace both projects get: history with recovery, presence and join/leave pushes.
fn chat_namespace() -> Value {
    json!({
        "allow_subscribe_for_client": true,
        "allow_history_for_subscriber": true,
        "allow_presence_for_subscriber": true,
        "presence": true,
        "join_leave": true,
        "force_push_join_leave": true,
        "history_size": 10,
        "history_ttl": "60s",
        "force_recovery": true
    })
}

/// A project on the Redis engine with an API key and the `chat` namespace, once its tenant runs
/// the config.
async fn redis_project(cp: &ControlPlane, mgmt: &str, name: &str) -> Result<Project> {
    cp.project_on(mgmt, name, Engine::Redis, &[("chat", chat_namespace())])
        .await
}

/// One server API call through the edge: status and JSON body (`Null` when not JSON).
async fn api(
    cp: &ControlPlane,
    project: &Project,
    method: &str,
    key: &str,
    body: Value,
) -> Result<(u16, Value)> {
    let resp = cp
        .http
        .post(format!("{}/{method}", cp.api_url(&project.slug)))
        .header("X-API-Key", key)
        .body(body.to_string())
        .timeout(WAIT)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A successful API call's `result`.
async fn result(cp: &ControlPlane, project: &Project, method: &str, body: Value) -> Result<Value> {
    let (s, r) = api(cp, project, method, &project.key, body).await?;
    ensure!(s == 200 && r["error"].is_null(), "{method}: {s} {r}");
    Ok(r["result"].clone())
}

/// A JSON-protocol WebSocket client that keeps pushes aside while waiting for replies.
struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    pushes: VecDeque<Value>,
    replies: VecDeque<Value>,
}

impl Ws {
    /// Connects with `token`; returns the client and its connect result.
    async fn connect(url: &str, token: &str) -> Result<(Self, Value)> {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await??;
        let mut c = Self {
            ws,
            next_id: 0,
            pushes: VecDeque::new(),
            replies: VecDeque::new(),
        };
        let reply = c.call(json!({"connect": {"token": token}})).await?;
        let result = reply["connect"].clone();
        ensure!(result["client"].is_string(), "connect: {reply}");
        Ok((c, result))
    }

    /// Reads one WebSocket message and files its frame elements (one per line).
    async fn read(&mut self) -> Result<()> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .context("nothing from the server in time")?
            {
                Some(Ok(Message::Text(text))) => {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        let v: Value = serde_json::from_str(line)?;
                        if v.get("push").is_some() {
                            self.pushes.push_back(v["push"].clone());
                        } else if v.get("id").is_some() {
                            self.replies.push_back(v);
                        } else {
                            // `{}`: a server ping; answer it.
                            self.ws.send(Message::text("{}")).await?;
                        }
                    }
                    return Ok(());
                }
                Some(Ok(Message::Close(f))) => bail!("closed by the server: {f:?}"),
                Some(Ok(_)) => continue,
                other => bail!("connection ended: {other:?}"),
            }
        }
    }

    /// Sends a command and waits for its reply (an `error` reply is returned, not raised).
    async fn call(&mut self, mut cmd: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        cmd["id"] = json!(id);
        self.ws.send(Message::text(cmd.to_string())).await?;
        loop {
            if let Some(i) = self.replies.iter().position(|r| r["id"] == json!(id)) {
                return Ok(self.replies.remove(i).expect("present"));
            }
            self.read().await?;
        }
    }

    /// The next push of any kind.
    async fn push(&mut self) -> Result<Value> {
        loop {
            if let Some(p) = self.pushes.pop_front() {
                return Ok(p);
            }
            self.read().await?;
        }
    }

    /// The next publication pushed, skipping join/leave pushes (returned separately).
    async fn publication(&mut self, joins: &mut Vec<Value>) -> Result<Value> {
        loop {
            let p = self.push().await?;
            if p.get("pub").is_some() {
                return Ok(p);
            }
            joins.push(p);
        }
    }
}

/// Sum of one usage counter over the points of a project's usage.
fn usage_total(usage: &Value, field: &str) -> i64 {
    usage["points"]
        .as_array()
        .map(|p| p.iter().map(|x| x[field].as_i64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

#[tokio::test]
async fn two_redis_projects_on_one_machine_share_nothing_but_names() -> Result<()> {
    let started = Instant::now();
    let cp = ControlPlane::start().await?;
    let alice = cp.account("alice@example.com").await?;
    let bob = cp.account("bob@example.com").await?;
    let a = redis_project(&cp, &alice, "alpha").await?;
    let b = redis_project(&cp, &bob, "beta").await?;
    let setup = started.elapsed();

    // --- A's traffic: a subscriber, three publications, presence and history. ---
    let (mut a_sub, a_conn) = Ws::connect(&cp.ws_url(&a.slug), &token(&a.secret, "ua")).await?;
    let r = a_sub
        .call(json!({"subscribe": {"channel": CHANNEL}}))
        .await?;
    ensure!(r["error"].is_null(), "A subscribe: {r}");
    let mut a_joins = Vec::new();
    for n in 1..=3 {
        let r = result(
            &cp,
            &a,
            "publish",
            json!({"channel": CHANNEL, "data": {"from": "A", "n": n}}),
        )
        .await?;
        assert_eq!(r["offset"], n, "A's stream: {r}");
        let p = a_sub.publication(&mut a_joins).await?;
        assert_eq!(p["pub"]["data"], json!({"from": "A", "n": n}));
    }
    let a_history = result(&cp, &a, "history", json!({"channel": CHANNEL, "limit": -1})).await?;
    assert_eq!(a_history["publications"].as_array().map(Vec::len), Some(3));
    let a_epoch = a_history["epoch"].as_str().context("A's epoch")?.to_owned();
    let a_presence = result(&cp, &a, "presence", json!({"channel": CHANNEL})).await?;
    assert_eq!(
        a_presence["presence"][a_conn["client"].as_str().unwrap()]["user"],
        "ua"
    );

    // --- B's view of the same channel name, before anyone of B's is there. ---
    let b_history = result(&cp, &b, "history", json!({"channel": CHANNEL, "limit": -1})).await?;
    assert_eq!(b_history["publications"], json!([]), "{b_history}");
    assert_eq!(b_history["offset"], 0, "{b_history}");
    assert_ne!(b_history["epoch"], json!(a_epoch), "B has its own stream");
    let b_presence = result(&cp, &b, "presence", json!({"channel": CHANNEL})).await?;
    assert_eq!(b_presence["presence"], json!({}), "{b_presence}");
    let b_stats = result(&cp, &b, "presence_stats", json!({"channel": CHANNEL})).await?;
    assert_eq!(b_stats, json!({"num_clients": 0, "num_users": 0}));
    let b_channels = result(&cp, &b, "channels", json!({})).await?;
    assert_eq!(b_channels["channels"], json!({}), "{b_channels}");

    // --- A's credentials on B: API key (every place Centrifugo reads one), tokens. ---
    let b_api = cp.api_url(&b.slug);
    // (where, header name or "" for none, header value, query string)
    let key_placements = [
        (
            "X-API-Key header",
            "X-API-Key",
            a.key.clone(),
            String::new(),
        ),
        (
            "Authorization header",
            "Authorization",
            format!("apikey {}", a.key),
            String::new(),
        ),
        (
            "api_key query",
            "",
            String::new(),
            format!("?api_key={}", a.key),
        ),
    ];
    for (place, header, value, query) in &key_placements {
        for (method, body) in [
            (
                "publish",
                json!({"channel": CHANNEL, "data": {"from": "A on B"}}),
            ),
            ("history", json!({"channel": CHANNEL})),
            ("presence", json!({"channel": CHANNEL})),
            ("history_remove", json!({"channel": CHANNEL})),
            ("info", json!({})),
        ] {
            let mut req = cp
                .http
                .post(format!("{b_api}/{method}{query}"))
                .body(body.to_string())
                .timeout(WAIT);
            if !header.is_empty() {
                req = req.header(*header, value);
            }
            let status = req.send().await?.status().as_u16();
            assert_eq!(status, 401, "A's key ({place}) on B's {method}");
        }
    }
    for (what, t) in [
        ("A's token for A's user", token(&a.secret, "ua")),
        ("A's token for B's user", token(&a.secret, "ub")),
    ] {
        assert_eq!(
            raw_connect(&cp.ws_url(&b.slug), &t).await?,
            Err(3500),
            "{what} on B's WebSocket"
        );
    }

    // --- B's subscriber on the same channel name, trying to recover from A's position. ---
    let (mut b_sub, b_conn) = Ws::connect(&cp.ws_url(&b.slug), &token(&b.secret, "ub")).await?;
    let r = b_sub
        .call(json!({"subscribe": {"channel": CHANNEL, "recover": true, "epoch": a_epoch, "offset": 0}}))
        .await?;
    ensure!(r["error"].is_null(), "B subscribe: {r}");
    let sub = &r["subscribe"];
    assert!(
        sub["publications"].as_array().is_none_or(Vec::is_empty),
        "B recovered A's publications: {r}"
    );
    assert_ne!(sub["epoch"], json!(a_epoch), "{r}");
    let b_client = b_conn["client"].as_str().unwrap().to_owned();
    for (path, presence) in [
        (
            "API",
            result(&cp, &b, "presence", json!({"channel": CHANNEL})).await?,
        ),
        (
            "WebSocket",
            b_sub
                .call(json!({"presence": {"channel": CHANNEL}}))
                .await?["presence"]
                .clone(),
        ),
    ] {
        let clients: Vec<&String> = presence["presence"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            clients,
            vec![&b_client],
            "B's presence over the {path}: {presence}"
        );
    }

    // Barriers: B publishes a marker; the first publication B's subscriber gets must be it (had
    // any of A's reached B's stream or pub/sub channel, it would come first). Then A publishes
    // a marker, which must be the next publication A's subscriber gets (not B's).
    let r = result(
        &cp,
        &b,
        "publish",
        json!({"channel": CHANNEL, "data": {"from": "B"}}),
    )
    .await?;
    assert_eq!(r["offset"], 1, "B's stream starts at 1: {r}");
    let mut b_joins = Vec::new();
    let p = b_sub.publication(&mut b_joins).await?;
    assert_eq!(
        p["pub"]["data"],
        json!({"from": "B"}),
        "B's subscriber got {p}"
    );
    assert_eq!(p["pub"]["offset"], 1);
    let r = result(
        &cp,
        &a,
        "publish",
        json!({"channel": CHANNEL, "data": {"from": "A", "n": 4}}),
    )
    .await?;
    assert_eq!(r["offset"], 4);
    let p = a_sub.publication(&mut a_joins).await?;
    assert_eq!(
        p["pub"]["data"],
        json!({"from": "A", "n": 4}),
        "A's subscriber got {p}"
    );
    // Join/leave pushes never cross either: each side saw only its own users.
    for (side, joins, own) in [("A", &a_joins, "ua"), ("B", &b_joins, "ub")] {
        for j in joins.iter() {
            let info = j.get("join").or_else(|| j.get("leave")).map(|x| &x["info"]);
            assert_eq!(
                info.map(|i| &i["user"]),
                Some(&json!(own)),
                "{side} got {j}"
            );
        }
    }
    let b_history = b_sub
        .call(json!({"history": {"channel": CHANNEL, "limit": -1}}))
        .await?;
    let pubs = &b_history["history"]["publications"];
    assert_eq!(pubs.as_array().map(Vec::len), Some(1), "{b_history}");
    assert_eq!(pubs[0]["data"], json!({"from": "B"}));

    // --- Management: each account's token cannot see the other's project at all. ---
    for (who, mgmt, mine, foreign) in [("bob", &bob, &b, &a), ("alice", &alice, &a, &b)] {
        let f = &foreign.id;
        for (method, path, body) in [
            ("GET", format!("/v1/projects/{f}"), None),
            ("GET", format!("/v1/projects/{f}/secrets"), None),
            ("GET", format!("/v1/projects/{f}/api-keys"), None),
            (
                "POST",
                format!("/v1/projects/{f}/api-keys"),
                Some(json!({"name": "x"})),
            ),
            ("GET", format!("/v1/projects/{f}/namespaces"), None),
            ("GET", format!("/v1/projects/{f}/namespaces/chat"), None),
            (
                "PUT",
                format!("/v1/projects/{f}/namespaces/chat"),
                Some(chat_namespace()),
            ),
            ("GET", format!("/v1/projects/{f}/usage"), None),
            ("GET", format!("/v1/projects/{f}/audit"), None),
            (
                "POST",
                format!("/v1/projects/{f}/secrets/rotate"),
                Some(json!({})),
            ),
            (
                "PATCH",
                format!("/v1/projects/{f}"),
                Some(json!({"name": "taken"})),
            ),
            ("DELETE", format!("/v1/projects/{f}"), None),
        ] {
            let (s, body) = cp.call(method, &path, Some(mgmt), body).await?;
            assert_eq!(s, 404, "{who}: {method} {path} → {s} {body}");
        }
        let (s, list) = cp.call("GET", "/v1/projects", Some(mgmt), None).await?;
        assert_eq!(s, 200);
        let ids: Vec<&Value> = list
            .as_array()
            .or_else(|| list["projects"].as_array())
            .context("project list")?
            .iter()
            .map(|p| &p["id"])
            .collect();
        assert_eq!(
            ids,
            vec![&json!(mine.id)],
            "{who} lists only their own: {list}"
        );
    }
    // The refused writes changed nothing: A still runs with its secret and key.
    let r = result(&cp, &a, "history", json!({"channel": CHANNEL, "limit": -1})).await?;
    assert_eq!(r["publications"].as_array().map(Vec::len), Some(4));
    assert!(raw_connect(&cp.ws_url(&a.slug), &token(&a.secret, "ua"))
        .await?
        .is_ok());

    // --- Usage: each project is billed for exactly its own traffic. A's refused calls on B
    // count nowhere. Publications in the project totals and in `chat`; deliveries in `chat` as
    // in the totals: the publications each subscriber got and its own join (the namespace
    // forces join/leave pushes). API calls: A made 4 publish, 2 history and 1
    // presence; B made 1 publish, 1 history, 2 presence, 1 presence_stats and 1 channels.
    let expected = [
        (
            "A",
            &a,
            &alice,
            [
                ("*", "published", 4),
                ("chat", "published", 4),
                ("chat", "delivered", 5),
                ("*", "api_calls", 7),
            ],
        ),
        (
            "B",
            &b,
            &bob,
            [
                ("*", "published", 1),
                ("chat", "published", 1),
                ("chat", "delivered", 2),
                ("*", "api_calls", 6),
            ],
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = Vec::new();
        for (side, project, mgmt, wants) in &expected {
            for (namespace, field, want) in wants {
                let path = format!("/v1/projects/{}/usage?namespace={namespace}", project.id);
                let (s, usage) = cp.call("GET", &path, Some(mgmt), None).await?;
                ensure!(s == 200, "{path}: {s} {usage}");
                seen.push((
                    *side,
                    *namespace,
                    *field,
                    usage_total(&usage, field),
                    *want,
                    usage,
                ));
            }
        }
        // Counters only grow: once each reached its value, the next scrape cannot lower it.
        if seen.iter().all(|(_, _, _, got, want, _)| got >= want) {
            for (side, namespace, field, got, want, usage) in &seen {
                assert_eq!(got, want, "{side} {field} in {namespace}: {usage}");
            }
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "usage not collected in time: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // --- One Redis, two key spaces: each project's stream lives under its own prefix. ---
    let redis = redis::Client::open(rotor_e2e::paths::redis_url())?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let mut all_keys = Vec::new();
    for p in [&a, &b] {
        let prefix = format!("rotor:{}:", p.id);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await?;
        assert!(
            keys.contains(&format!("{prefix}{{{CHANNEL}}}:s")),
            "{prefix}: {keys:?}"
        );
        all_keys.extend(keys);
    }
    let _: () = redis::cmd("DEL")
        .arg(&all_keys)
        .query_async(&mut conn)
        .await?;

    let total = started.elapsed();
    eprintln!("isolation: setup {setup:?}, total {total:?}");
    Ok(())
}
