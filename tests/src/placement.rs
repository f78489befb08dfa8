//! What the Redis placement tests share: private `redis-server`s (standalone, a three-primary
//! Cluster, a Sentinel), the operator's CLI, server API calls and recovering subscriptions
//! through the edge, and the audit log.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message;

use crate::control_plane::{token, ControlPlane, Engine, Project};
use crate::free_port;

/// Bound on every single wait.
pub const WAIT: Duration = Duration::from_secs(10);
/// The control plane's key (the operator's commands seal with the same one).
pub const KEY: &str = "7c0d6a1f2e3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
pub const PASSWORD: &str = "placed-redis-pass-77";
/// The environment of a control plane whose tenants start with their project, not on their
/// first request (the tests look at a tenant's Redis subscriptions before any client comes).
pub const EAGER: &[(&str, &str)] = &[("ROTOR_START_ON_DEMAND", "0")];

/// A `redis-server` of this test on a free port, with a password, killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    _child: tokio::process::Child,
    pub conn: redis::aio::MultiplexedConnection,
}

impl PrivateRedis {
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// [`Self::start`] with more `redis-server` arguments (config directives).
    pub async fn start_with(extra: &[&str]) -> Result<Self> {
        let port = free_port()?;
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
            .args(extra)
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

    pub fn options(&self) -> Value {
        json!({"address": format!("redis://:{PASSWORD}@127.0.0.1:{}", self.port)})
    }

    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        keys_on(&mut self.conn.clone(), prefix).await
    }
}

/// A Redis Cluster of three primaries (no replicas, no password) on free ports, killed on drop.
pub struct PrivateCluster {
    pub ports: Vec<u16>,
    _children: Vec<tokio::process::Child>,
    _dir: PathBuf,
}

impl PrivateCluster {
    pub async fn start() -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("rotor-placement-{}", uuid::Uuid::new_v4().simple()));
        let (mut ports, mut children) = (Vec::new(), Vec::new());
        while ports.len() < 3 {
            // A node needs its port and the bus port 10000 above it.
            let port = free_port()?;
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
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
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
pub struct PrivateSentinel {
    pub port: u16,
    _child: tokio::process::Child,
    _dir: PathBuf,
}

impl PrivateSentinel {
    pub async fn start(primary: &PrivateRedis) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("rotor-sentinel-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
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
pub async fn connect_within(url: &str) -> Result<redis::aio::MultiplexedConnection> {
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

pub async fn keys_on(
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

/// A control plane that seals secrets with [`KEY`], with `env` added to its environment and
/// each of `deployments` added as a Redis deployment under its name.
pub async fn control_plane(
    env: &[(&str, &str)],
    deployments: &[(&str, &PrivateRedis)],
) -> Result<ControlPlane> {
    let mut env = env.to_vec();
    env.push(("ROTOR_SECRET_KEY", KEY));
    let cp = ControlPlane::start_with_env(&env).await?;
    for (name, redis) in deployments {
        operator(
            &cp,
            &["add-redis-deployment", name],
            &redis.options().to_string(),
        )
        .await?;
    }
    Ok(cp)
}

/// An account `email` (on the operator's `plan`, if any) and a Redis-engine project `name` of
/// it with a `chat` namespace (clients subscribe on their own, recovery is forced) keeping
/// `history` (size, ttl): the management token and the project.
pub async fn chat_project(
    cp: &ControlPlane,
    email: &str,
    plan: Option<&str>,
    name: &str,
    history: (u32, &str),
) -> Result<(String, Project)> {
    let mgmt = cp.account(email).await?;
    if let Some(plan) = plan {
        cp.operator(&["set-plan", email, plan]).await?;
    }
    let chat = json!({"allow_subscribe_for_client": true, "force_recovery": true,
        "history_size": history.0, "history_ttl": history.1});
    let project = cp
        .project_on(&mgmt, name, Engine::Redis, &[("chat", chat)])
        .await?;
    Ok((mgmt, project))
}

/// `rotor-control-plane operator ARGS…` with `stdin`; its stdout + stderr on success.
pub async fn operator(cp: &ControlPlane, args: &[&str], stdin: &str) -> Result<String> {
    let (success, text) = operator_outcome(cp, args, stdin).await?;
    ensure!(success, "operator {args:?}: {text}");
    Ok(text)
}

/// `rotor-control-plane operator ARGS…` with `stdin`: whether it succeeded, and its stdout +
/// stderr (never a deployment's password).
pub async fn operator_outcome(
    cp: &ControlPlane,
    args: &[&str],
    stdin: &str,
) -> Result<(bool, String)> {
    let mut child = tokio::process::Command::new(crate::paths::binary_path("rotor-control-plane")?)
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
    Ok((out.status.success(), text))
}

/// A server API call through the edge; its `result`.
pub async fn api(cp: &ControlPlane, project: &Project, method: &str, body: Value) -> Result<Value> {
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

/// Publishes `{n}` on `channel`; the publish result.
pub async fn publish(cp: &ControlPlane, project: &Project, channel: &str, n: u64) -> Result<Value> {
    api(
        cp,
        project,
        "publish",
        json!({"channel": channel, "data": {"n": n}}),
    )
    .await
}

/// The history of `channel` (`limit` as the server API takes it: 0 for the position only, -1
/// for all).
pub async fn history(
    cp: &ControlPlane,
    project: &Project,
    channel: &str,
    limit: i64,
) -> Result<Value> {
    api(
        cp,
        project,
        "history",
        json!({"channel": channel, "limit": limit}),
    )
    .await
}

/// The epoch of `channel`'s stream.
pub async fn epoch(cp: &ControlPlane, project: &Project, channel: &str) -> Result<String> {
    let h = history(cp, project, channel, 0).await?;
    Ok(h["epoch"].as_str().context("epoch")?.to_owned())
}

/// Subscribes with recovery from (`epoch`, `offset`) and returns the subscribe reply.
pub async fn recover(
    cp: &ControlPlane,
    project: &Project,
    epoch: &str,
    offset: u64,
) -> Result<Value> {
    recover_on(cp, project, "chat:x", epoch, offset).await
}

/// [`recover`] on `channel`.
pub async fn recover_on(
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

pub async fn audit_after(cp: &ControlPlane, action: &str) -> Result<Vec<Value>> {
    let pool = sqlx::PgPool::connect(cp.db.url()).await?;
    let rows: Vec<Value> =
        sqlx::query_scalar("SELECT after FROM audit_log WHERE action = $1 ORDER BY id")
            .bind(action)
            .fetch_all(&pool)
            .await?;
    Ok(rows)
}

/// How many connections `conn`'s server counts on `topic` (`PUBSUB NUMSUB`, or with `shard`
/// `PUBSUB SHARDNUMSUB` for a Cluster's sharded PUB/SUB).
pub async fn subscribers(
    conn: &mut redis::aio::MultiplexedConnection,
    topic: &str,
    shard: bool,
) -> Result<u64> {
    let (_, n): (String, u64) = redis::cmd("PUBSUB")
        .arg(if shard { "SHARDNUMSUB" } else { "NUMSUB" })
        .arg(topic)
        .query_async(conn)
        .await?;
    Ok(n)
}
