//! Redis-engine projects on the operator's Redis deployments, end to end (#23 item 6), over
//! real processes: a control plane, its tenants and two private `redis-server`s besides the
//! shared one. A placed project's tenant publishes into its deployment under its own prefix
//! (nothing on the installation's Redis); `move-project --history drain` copies its keys to the
//! other deployment, the tenant restarts there and a client recovers the history it missed
//! from the new deployment; `--history drop` empties the old prefix; the audit says how many
//! keys moved. Drains onto a three-primary Redis Cluster and onto a Sentinel-named primary
//! keep the history the same way.

mod cp;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cp::{token, ControlPlane, Project};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message;

/// Bound on every single wait.
const WAIT: Duration = Duration::from_secs(10);
/// The control plane's key (the operator's commands seal with the same one).
const KEY: &str = "7c0d6a1f2e3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
const PASSWORD: &str = "placed-redis-pass-77";

/// A `redis-server` of this test on a free port, with a password, killed on drop.
struct PrivateRedis {
    port: u16,
    _child: tokio::process::Child,
    conn: redis::aio::MultiplexedConnection,
}

impl PrivateRedis {
    async fn start() -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("redis-server on PATH (scripts/install-test-deps.sh installs it)")?;
        let client = redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{port}"))?;
        // A server that has not bound yet refuses; there is no event to await.
        let started = Instant::now();
        let conn = loop {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => break c,
                Err(e) if started.elapsed() > WAIT => bail!("redis-server on {port}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        Ok(Self {
            port,
            _child: child,
            conn,
        })
    }

    fn options(&self) -> Value {
        json!({"address": format!("redis://:{PASSWORD}@127.0.0.1:{}", self.port)})
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        keys_on(&mut self.conn.clone(), prefix).await
    }
}

/// A Redis Cluster of three primaries (no replicas, no password) on free ports, killed on drop.
struct PrivateCluster {
    ports: Vec<u16>,
    _children: Vec<tokio::process::Child>,
    _dir: PathBuf,
}

impl PrivateCluster {
    async fn start() -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("rotor-placement-{}", uuid::Uuid::new_v4().simple()));
        let (mut ports, mut children) = (Vec::new(), Vec::new());
        while ports.len() < 3 {
            // A node needs its port and the bus port 10000 above it.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            if port > 55000 || std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_err() {
                continue;
            }
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir)?;
            children.push(
                tokio::process::Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                    .args(["--save", "", "--appendonly", "no"])
                    .current_dir(&node_dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()?,
            );
            ports.push(port);
        }
        for port in &ports {
            connect_within(&format!("redis://127.0.0.1:{port}")).await?;
        }
        let status = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await?;
        ensure!(status.success(), "redis-cli --cluster create failed");
        // Each node agrees the cluster is up (no event to await: polled with a deadline).
        let started = Instant::now();
        for port in &ports {
            let mut conn = connect_within(&format!("redis://127.0.0.1:{port}")).await?;
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await?;
                if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                    break;
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "cluster not ready: {info}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(Self {
            ports,
            _children: children,
            _dir: dir,
        })
    }

    /// Every key under `prefix` on every node.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all = Vec::new();
        for port in &self.ports {
            let mut conn = connect_within(&format!("redis://127.0.0.1:{port}")).await?;
            all.extend(keys_on(&mut conn, prefix).await?);
        }
        all.sort();
        Ok(all)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// A Sentinel (no replica: one Sentinel watching one primary, quorum 1) in front of `primary`,
/// killed on drop.
struct PrivateSentinel {
    port: u16,
    _child: tokio::process::Child,
    _dir: PathBuf,
}

impl PrivateSentinel {
    async fn start(primary: &PrivateRedis) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("rotor-sentinel-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor main 127.0.0.1 {} 1\nsentinel auth-pass main {PASSWORD}\n",
                primary.port
            ),
        )?;
        let child = tokio::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        // Until the Sentinel names the primary (polled with a deadline).
        let mut conn = connect_within(&format!("redis://127.0.0.1:{port}")).await?;
        let started = Instant::now();
        loop {
            let addr: Option<Vec<String>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg("main")
                .query_async(&mut conn)
                .await?;
            if addr.is_some() {
                break;
            }
            ensure!(
                started.elapsed() < WAIT,
                "the Sentinel never named its primary"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            port,
            _child: child,
            _dir: dir,
        })
    }
}

impl Drop for PrivateSentinel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// A connection to `url`, retried until the server listens (bounded).
async fn connect_within(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let started = Instant::now();
    loop {
        match client.get_multiplexed_async_connection().await {
            Ok(c) => return Ok(c),
            Err(e) if started.elapsed() > WAIT => bail!("{url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn keys_on(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Result<Vec<String>> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await?;
    keys.sort();
    Ok(keys)
}

/// `rotor-control-plane operator ARGS…` with `stdin`; its stdout + stderr on success.
async fn operator(cp: &ControlPlane, args: &[&str], stdin: &str) -> Result<String> {
    let mut child =
        tokio::process::Command::new(rotor_e2e::paths::binary_path("rotor-control-plane")?)
            .arg("operator")
            .args(args)
            .env("DATABASE_URL", cp.db.url())
            .env("ROTOR_SECRET_KEY", KEY)
            .env("USER", "e2e-operator")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
    let mut input = child.stdin.take().context("stdin")?;
    input.write_all(stdin.as_bytes()).await?;
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !text.contains(PASSWORD),
        "operator {args:?} printed a secret: {text}"
    );
    ensure!(out.status.success(), "operator {args:?}: {text}");
    Ok(text)
}

/// A server API call through the edge; its `result`.
async fn api(cp: &ControlPlane, project: &Project, method: &str, body: Value) -> Result<Value> {
    let resp = cp
        .http
        .post(format!("{}/{method}", cp.api_url(&project.slug)))
        .header("X-API-Key", &project.key)
        .body(body.to_string())
        .timeout(WAIT)
        .send()
        .await?;
    let v: Value = resp.json().await?;
    ensure!(v["error"].is_null(), "{method}: {v}");
    Ok(v["result"].clone())
}

/// Subscribes with recovery from (`epoch`, `offset`) and returns the subscribe reply.
async fn recover(cp: &ControlPlane, project: &Project, epoch: &str, offset: u64) -> Result<Value> {
    recover_on(cp, project, "chat:x", epoch, offset).await
}

/// [`recover`] on `channel`.
async fn recover_on(
    cp: &ControlPlane,
    project: &Project,
    channel: &str,
    epoch: &str,
    offset: u64,
) -> Result<Value> {
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(cp.ws_url(&project.slug)),
    )
    .await??;
    let commands = [
        json!({"id": 1, "connect": {"token": token(&project.secret, "u1")}}),
        json!({"id": 2, "subscribe": {"channel": channel, "recover": true, "epoch": epoch, "offset": offset}}),
    ];
    let mut reply = Value::Null;
    for cmd in commands {
        let id = cmd["id"].clone();
        ws.send(Message::text(cmd.to_string())).await?;
        reply = loop {
            let msg = tokio::time::timeout(WAIT, ws.next())
                .await?
                .context("connection ended")??;
            let Message::Text(text) = msg else { continue };
            if let Some(v) = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["id"] == id)
            {
                break v;
            }
        };
        ensure!(reply["error"].is_null(), "{cmd}: {reply}");
    }
    Ok(reply["subscribe"].clone())
}

async fn audit_after(cp: &ControlPlane, action: &str) -> Result<Vec<Value>> {
    let pool = sqlx::PgPool::connect(cp.db.url()).await?;
    let rows: Vec<Value> =
        sqlx::query_scalar("SELECT after FROM audit_log WHERE action = $1 ORDER BY id")
            .bind(action)
            .fetch_all(&pool)
            .await?;
    Ok(rows)
}

#[tokio::test]
async fn a_placed_project_publishes_into_its_deployment_and_moves_with_its_history() -> Result<()> {
    let started = Instant::now();
    let (one, two) = (PrivateRedis::start().await?, PrivateRedis::start().await?);
    let cp =
        ControlPlane::start_with_env(&[("ROTOR_SECRET_KEY", KEY), ("ROTOR_START_ON_DEMAND", "0")])
            .await?;
    operator(
        &cp,
        &["add-redis-deployment", "one"],
        &one.options().to_string(),
    )
    .await?;
    operator(
        &cp,
        &["add-redis-deployment", "two"],
        &two.options().to_string(),
    )
    .await?;
    // New projects go to `one` while `two` is closed.
    operator(&cp, &["close-redis-deployment", "two"], "").await?;
    let mgmt = cp.account("placed@example.com").await?;
    let chat = json!({"allow_subscribe_for_client": true, "force_recovery": true,
        "history_size": 20, "history_ttl": "300s"});
    let project = cp
        .project_on(&mgmt, "placed", "redis", &[("chat", chat)])
        .await?;
    let prefix = format!("rotor:{}:", project.id);
    let list = operator(&cp, &["list-redis-deployments"], "").await?;
    assert!(
        list.contains("one\tstandalone") && list.contains("closed\tprojects=0"),
        "{list}"
    );

    // The tenant publishes into `one`, under its own prefix, and nowhere else.
    for i in 1..=3 {
        let r = api(
            &cp,
            &project,
            "publish",
            json!({"channel": "chat:x", "data": {"n": i}}),
        )
        .await?;
        assert_eq!(r["offset"], json!(i), "{r}");
    }
    let history = api(
        &cp,
        &project,
        "history",
        json!({"channel": "chat:x", "limit": 0}),
    )
    .await?;
    let epoch = history["epoch"].as_str().context("epoch")?.to_owned();
    let on_one = one.keys(&prefix).await?;
    assert!(
        on_one.contains(&format!("{prefix}{{chat:x}}:s")),
        "{on_one:?}"
    );
    assert!(two.keys(&prefix).await?.is_empty());
    let shared = redis::Client::open(rotor_e2e::paths::redis_url())?;
    let mut shared = shared.get_multiplexed_async_connection().await?;
    assert!(
        keys_on(&mut shared, &prefix).await?.is_empty(),
        "nothing on the installation's Redis"
    );

    // Drain to `two` (closed to new projects, open to a move): the keys go over, the old
    // prefix is emptied, the tenant restarts there.
    let moved_at = Instant::now();
    let out = operator(
        &cp,
        &["move-project", &project.id, "two", "--history", "drain"],
        "",
    )
    .await?;
    assert!(
        out.contains("\"keys_moved\":") && out.contains("\"history\":\"drain\""),
        "{out}"
    );
    assert_eq!(two.keys(&prefix).await?, on_one);
    assert!(one.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    let restart = moved_at.elapsed();
    // A client that saw offset 1 recovers 2 and 3 from `two`, in the same epoch.
    let sub = recover(&cp, &project, &epoch, 1).await?;
    let offsets: Vec<u64> = sub["publications"]
        .as_array()
        .with_context(|| format!("publications: {sub}"))?
        .iter()
        .map(|p| p["offset"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        (offsets, sub["recovered"].clone()),
        (vec![2, 3], json!(true)),
        "{sub}"
    );
    assert_eq!(sub["epoch"], json!(epoch));
    let r = api(
        &cp,
        &project,
        "publish",
        json!({"channel": "chat:x", "data": {"n": 4}}),
    )
    .await?;
    assert_eq!(r["offset"], json!(4), "the stream goes on on `two`: {r}");
    let audit = audit_after(&cp, "operator.move_project").await?;
    assert_eq!(audit[0]["keys_moved"], json!(on_one.len()), "{audit:?}");
    assert_eq!(audit[0]["redis_deployment"], json!("two"));

    // Drop back to `one`: `two`'s prefix is emptied and the history is gone.
    let out = operator(
        &cp,
        &["move-project", &project.id, "one", "--history", "drop"],
        "",
    )
    .await?;
    assert!(out.contains("\"keys_moved\":0"), "{out}");
    assert!(two.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    let history = api(
        &cp,
        &project,
        "history",
        json!({"channel": "chat:x", "limit": -1}),
    )
    .await?;
    assert!(
        history["publications"].as_array().is_none_or(Vec::is_empty),
        "{history}"
    );
    let r = api(
        &cp,
        &project,
        "publish",
        json!({"channel": "chat:x", "data": {"n": 5}}),
    )
    .await?;
    assert_eq!(r["offset"], json!(1), "a new stream on `one`: {r}");
    assert!(!one.keys(&prefix).await?.is_empty());
    let audit = audit_after(&cp, "operator.move_project").await?;
    assert_eq!(audit[1]["history"], json!("drop"), "{audit:?}");
    // The control plane never logged a deployment's password.
    let log = cp.process.as_ref().map(|p| p.output()).unwrap_or_default();
    assert!(!log.contains(PASSWORD), "the control plane logged a secret");
    eprintln!(
        "placement e2e: drain move → tenant restarted on the new deployment in {restart:?}; {} keys moved; whole test {:?}",
        on_one.len(),
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_drain_move_onto_a_redis_cluster_keeps_the_history() -> Result<()> {
    let (one, cluster) = (PrivateRedis::start().await?, PrivateCluster::start().await?);
    let cp =
        ControlPlane::start_with_env(&[("ROTOR_SECRET_KEY", KEY), ("ROTOR_START_ON_DEMAND", "0")])
            .await?;
    operator(
        &cp,
        &["add-redis-deployment", "one"],
        &one.options().to_string(),
    )
    .await?;
    let mgmt = cp.account("to-cluster@example.com").await?;
    let chat = json!({"allow_subscribe_for_client": true, "force_recovery": true,
        "history_size": 50, "history_ttl": "300s"});
    let project = cp
        .project_on(&mgmt, "clustered", "redis", &[("chat", chat)])
        .await?;
    let prefix = format!("rotor:{}:", project.id);
    // Channels spread over the cluster's slots.
    let channels: Vec<String> = (0..8).map(|i| format!("chat:room{i}")).collect();
    for channel in &channels {
        for n in 1..=2 {
            api(
                &cp,
                &project,
                "publish",
                json!({"channel": channel, "data": {"n": n}}),
            )
            .await?;
        }
    }
    let history = api(
        &cp,
        &project,
        "history",
        json!({"channel": "chat:room3", "limit": 0}),
    )
    .await?;
    let epoch = history["epoch"].as_str().context("epoch")?.to_owned();
    let on_one = one.keys(&prefix).await?;
    ensure!(on_one.len() >= channels.len(), "{on_one:?}");

    let seeds: Vec<String> = cluster
        .ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    operator(
        &cp,
        &["add-redis-deployment", "cluster"],
        &json!({"cluster_address": seeds}).to_string(),
    )
    .await?;
    let out = operator(
        &cp,
        &["move-project", &project.id, "cluster", "--history", "drain"],
        "",
    )
    .await?;
    assert!(
        out.contains(&format!("\"keys_moved\":{}", on_one.len())),
        "{out}"
    );
    assert_eq!(cluster.keys(&prefix).await?, on_one);
    assert!(one.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    // Every channel's history is served from the cluster, and a client recovers from it.
    for channel in &channels {
        let h = api(
            &cp,
            &project,
            "history",
            json!({"channel": channel, "limit": -1}),
        )
        .await?;
        assert_eq!(
            h["publications"].as_array().map(Vec::len),
            Some(2),
            "{channel}: {h}"
        );
    }
    let sub = recover_on(&cp, &project, "chat:room3", &epoch, 1).await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(sub["publications"][0]["offset"], json!(2), "{sub}");
    let r = api(
        &cp,
        &project,
        "publish",
        json!({"channel": "chat:room3", "data": {"n": 3}}),
    )
    .await?;
    assert_eq!(r["offset"], json!(3), "{r}");
    Ok(())
}

#[tokio::test]
async fn a_drain_move_onto_a_sentinel_group_keeps_the_history() -> Result<()> {
    let (one, primary) = (PrivateRedis::start().await?, PrivateRedis::start().await?);
    let sentinel = PrivateSentinel::start(&primary).await?;
    let cp =
        ControlPlane::start_with_env(&[("ROTOR_SECRET_KEY", KEY), ("ROTOR_START_ON_DEMAND", "0")])
            .await?;
    operator(
        &cp,
        &["add-redis-deployment", "one"],
        &one.options().to_string(),
    )
    .await?;
    let mgmt = cp.account("to-sentinel@example.com").await?;
    let chat = json!({"allow_subscribe_for_client": true, "force_recovery": true,
        "history_size": 20, "history_ttl": "300s"});
    let project = cp
        .project_on(&mgmt, "watched", "redis", &[("chat", chat)])
        .await?;
    let prefix = format!("rotor:{}:", project.id);
    for n in 1..=3 {
        api(
            &cp,
            &project,
            "publish",
            json!({"channel": "chat:x", "data": {"n": n}}),
        )
        .await?;
    }
    let history = api(
        &cp,
        &project,
        "history",
        json!({"channel": "chat:x", "limit": 0}),
    )
    .await?;
    let epoch = history["epoch"].as_str().context("epoch")?.to_owned();
    let on_one = one.keys(&prefix).await?;

    // The Sentinel form with the primary's password in a redis+sentinel:// address.
    let address = format!(
        "redis+sentinel://:{PASSWORD}@127.0.0.1:{}/main",
        sentinel.port
    );
    operator(
        &cp,
        &["add-redis-deployment", "watched"],
        &json!({"address": address}).to_string(),
    )
    .await?;
    let list = operator(&cp, &["list-redis-deployments"], "").await?;
    assert!(
        list.contains(&format!(
            "watched\tsentinel\tredis+sentinel://127.0.0.1:{}/main",
            sentinel.port
        )),
        "{list}"
    );
    operator(
        &cp,
        &["move-project", &project.id, "watched", "--history", "drain"],
        "",
    )
    .await?;
    assert_eq!(primary.keys(&prefix).await?, on_one);
    assert!(one.keys(&prefix).await?.is_empty());
    cp.wait_applied(&mgmt, &project.id).await?;
    let sub = recover(&cp, &project, &epoch, 1).await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(
        sub["publications"].as_array().map(Vec::len),
        Some(2),
        "{sub}"
    );
    let r = api(
        &cp,
        &project,
        "publish",
        json!({"channel": "chat:x", "data": {"n": 4}}),
    )
    .await?;
    assert_eq!(r["offset"], json!(4), "{r}");
    Ok(())
}
