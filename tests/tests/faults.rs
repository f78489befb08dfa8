//! Faults under traffic, over real processes (issue #12):
//!
//! * a tenant process killed with SIGKILL while a publisher sends numbered publications: the
//!   supervisor restarts it, centrifuge-js clients reconnect, and on the Redis engine recovery
//!   hands every client exactly the publications 1..N (none lost, none twice); on the memory
//!   engine the clients are told recovery failed (`recovered: false`, a new epoch) instead of
//!   silently skipping a gap;
//! * Redis restarted under a Redis-engine tenant: publishes fail fast with a temporary error,
//!   subscribers are asked to recover (2500) and do, traffic resumes, the tenant never restarts;
//! * Postgres restarted under the control plane: tenants keep serving WebSocket and API traffic,
//!   the control plane reconnects, a later config change reaches the tenant and nothing that
//!   was configured before is lost;
//! * one subscriber that never reads among 1000 that do: once its socket and outbox are full
//!   the server disconnects it as slow (3008), the tenant's memory stays bounded, and the
//!   others get every message with a bounded p99 latency.
//!
//! Each test starts its own Redis or Postgres server where it restarts one; the shared services
//! are never touched. The soak test is separate (`make soak`, `bench/src/bin/soak.rs`).

mod cp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cp::{kill9, token, ControlPlane, Project};
use futures_util::{SinkExt, StreamExt};
use rotor_e2e::{ProcessBuilder, Readiness, TestDatabase, TestProcess};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

// ---------------------------------------------------------------------------------------------
// Fixtures: a control plane with extra environment, a private redis-server, a private Postgres.
// ---------------------------------------------------------------------------------------------

/// A control plane on `db` (which may live on a private Postgres server), with `extra` added to
/// its environment (e.g. `REDIS_URL` of a private Redis).
async fn control_plane(db: TestDatabase, extra: &[(&str, &str)]) -> Result<ControlPlane> {
    let mut cp = ControlPlane {
        db,
        run_dir: std::env::temp_dir()
            .join(format!("rotor-cp-test-{}", uuid::Uuid::new_v4().simple())),
        process: None,
        base: String::new(),
        http: reqwest::Client::new(),
        env: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    cp.spawn().await?;
    Ok(cp)
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A private `redis-server` on a free port that the test may stop and start again. With
/// `persistent`, every write goes to an append-only file first, so a restart keeps the data.
struct OwnRedis {
    port: u16,
    dir: PathBuf,
    persistent: bool,
    process: Option<TestProcess>,
}

impl OwnRedis {
    async fn start(persistent: bool) -> Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "rotor-fault-redis-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut redis = Self {
            port,
            dir,
            persistent,
            process: None,
        };
        redis.resume().await?;
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and directory; ready once it says so.
    async fn resume(&mut self) -> Result<()> {
        let (aof, fsync) = if self.persistent {
            ("yes", "always")
        } else {
            ("no", "everysec")
        };
        let process = ProcessBuilder::program("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", aof, "--appendfsync", fsync])
            .arg("--dir")
            .arg(&self.dir)
            .ready_on(Readiness::Line("Ready to accept connections".into()))
            .ready_timeout(Duration::from_secs(10))
            .spawn()
            .await
            .context("starting a private redis-server (is it on PATH?)")?;
        self.process = Some(process);
        Ok(())
    }

    /// A graceful stop (SIGTERM: Redis finishes what it was doing and flushes its file).
    async fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.terminate().await?;
        }
        Ok(())
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private Postgres cluster (initdb + pg_ctl from Debian's /usr/lib/postgresql/*/bin, or
/// `ROTOR_PG_BIN`) on a free port in a temporary directory, run as the `postgres` OS user when
/// the tests run as root. Stopped and deleted on drop.
struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    async fn start() -> Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir =
            std::env::temp_dir().join(format!("rotor-fault-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let as_postgres = running_as_root();
        let pg = Self {
            bin,
            dir,
            port: free_port()?,
            as_postgres,
        };
        if as_postgres {
            pg.run("chown", &["postgres:", &pg.dir.to_string_lossy()], false)
                .await?;
        }
        let data = pg.data_dir();
        pg.run(
            &pg.tool("initdb"),
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            true,
        )
        .await
        .context("initdb of a private Postgres")?;
        pg.resume().await?;
        Ok(pg)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).to_string_lossy().into_owned()
    }

    /// The server URL (database `postgres`).
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn resume(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").to_string_lossy().into_owned();
        self.run(
            &self.tool("pg_ctl"),
            &[
                "-D",
                &self.data_dir(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "20",
                "start",
            ],
            true,
        )
        .await
        .with_context(|| {
            format!(
                "starting the private Postgres; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// A fast shutdown: sessions are ended, the server stops at once.
    async fn stop(&self) -> Result<()> {
        self.run(
            &self.tool("pg_ctl"),
            &[
                "-D",
                &self.data_dir(),
                "-m",
                "fast",
                "-w",
                "-t",
                "20",
                "stop",
            ],
            true,
        )
        .await
    }

    async fn run(&self, program: &str, args: &[&str], as_owner: bool) -> Result<()> {
        let mut cmd = if as_owner && self.as_postgres {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            tokio::process::Command::new(program)
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .with_context(|| format!("{program} {args:?} did not finish in 30 s"))?
            .with_context(|| format!("running {program}"))?;
        ensure!(
            out.status.success(),
            "{program} {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let pg_ctl = self.tool("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &pg_ctl]);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = cmd
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    // No libc dependency here: /proc says who we are.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// `ROTOR_PG_BIN`, else the newest /usr/lib/postgresql/<version>/bin with initdb.
fn postgres_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ROTOR_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: install Postgres or set ROTOR_PG_BIN")?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin: set ROTOR_PG_BIN")
}

// ---------------------------------------------------------------------------------------------
// Projects, publishers and followers.
// ---------------------------------------------------------------------------------------------

/// A namespace with history long enough for every test here and forced recovery.
fn recoverable() -> Value {
    json!({
        "allow_subscribe_for_client": true,
        "history_size": 100,
        "history_ttl": "300s",
        "force_recovery": true
    })
}

/// A project on `engine` with an API key and the `chat` namespace ([`recoverable`]), running its
/// latest config.
async fn project_on(cp: &ControlPlane, mgmt: &str, name: &str, engine: &str) -> Result<Project> {
    let (s, p) = cp
        .call(
            "POST",
            "/v1/projects",
            Some(mgmt),
            Some(json!({"name": name, "engine": engine})),
        )
        .await?;
    ensure!(s == 201, "project: {s} {p}");
    let id = p["id"].as_str().context("id")?.to_owned();
    let (s, k) = cp
        .call(
            "POST",
            &format!("/v1/projects/{id}/api-keys"),
            Some(mgmt),
            Some(json!({"name": "backend"})),
        )
        .await?;
    ensure!(s == 201, "key: {s} {k}");
    let (s, b) = cp
        .call(
            "PUT",
            &format!("/v1/projects/{id}/namespaces/chat"),
            Some(mgmt),
            Some(recoverable()),
        )
        .await?;
    ensure!(s == 201, "namespace: {s} {b}");
    let (_, secret) = cp
        .call(
            "GET",
            &format!("/v1/projects/{id}/secrets"),
            Some(mgmt),
            None,
        )
        .await?;
    cp.wait_applied(mgmt, &id).await?;
    Ok(Project {
        id,
        slug: p["slug"].as_str().context("slug")?.to_owned(),
        key: k["key"].as_str().context("key")?.to_owned(),
        secret: secret["token_hmac_secret"]
            .as_str()
            .context("secret")?
            .to_owned(),
    })
}

/// How one publish attempt failed (its fields are read through `Debug` in failure messages).
#[derive(Debug, Clone)]
#[allow(dead_code)]
enum Failure {
    /// The server API answered with an error reply.
    Api { code: i64, message: String },
    /// Not a server API answer (the edge's 502/503 while the tenant is down, …).
    Http { status: u16, body: String },
    /// No answer at all (connection refused or reset, timeout).
    Transport(String),
}

/// One failed attempt and how long it took to fail.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Failed {
    n: u64,
    took: Duration,
    why: Failure,
}

/// Publishes through the server HTTP API with an idempotency key per publication, so that a
/// retry of a publication whose answer was lost is not a second publication.
struct Publisher {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Publisher {
    fn new(api_url: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("{api_url}/publish"),
            key: key.to_owned(),
        }
    }

    /// One attempt; the reply's `result` on success.
    async fn attempt(&self, body: &Value) -> std::result::Result<Value, Failure> {
        let resp = self
            .http
            .post(&self.url)
            .header("X-API-Key", &self.key)
            .body(body.to_string())
            .timeout(Duration::from_secs(8))
            .send()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 200 {
            return Err(Failure::Http { status, body: text });
        }
        if let Some(e) = reply.get("error") {
            return Err(Failure::Api {
                code: e["code"].as_i64().unwrap_or(-1),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        reply
            .get("result")
            .cloned()
            .ok_or(Failure::Http { status, body: text })
    }

    /// Publishes `{n}` on `channel`, retrying every 20 ms until it is accepted or `deadline`
    /// passes; failed attempts are added to `failed`. Returns the offset.
    async fn publish_n(
        &self,
        channel: &str,
        n: u64,
        failed: &mut Vec<Failed>,
        deadline: Instant,
    ) -> Result<u64> {
        let body =
            json!({"channel": channel, "data": {"n": n}, "idempotency_key": format!("pub-{n}")});
        loop {
            let started = Instant::now();
            match self.attempt(&body).await {
                Ok(result) => return Ok(result["offset"].as_u64().unwrap_or(0)),
                Err(why) => failed.push(Failed {
                    n,
                    took: started.elapsed(),
                    why,
                }),
            }
            if Instant::now() > deadline {
                bail!(
                    "publication {n} was not accepted before the deadline; last failures: {:?}",
                    &failed[failed.len().saturating_sub(5)..]
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes the `{done: true}` marker that ends the followers' script.
    async fn done(&self, channel: &str, deadline: Instant) -> Result<()> {
        let body = json!({"channel": channel, "data": {"done": true}, "idempotency_key": "done"});
        loop {
            match self.attempt(&body).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => bail!("the done marker failed: {e:?}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// `tests/clients/node/fault_recover.mjs`: centrifuge-js clients following one channel.
struct Followers {
    process: TestProcess,
    clients: usize,
}

impl Followers {
    async fn start(
        ws_url: &str,
        secret: &str,
        channel: &str,
        clients: usize,
        reconnect_ms: (u64, u64),
    ) -> Result<Self> {
        let process = ProcessBuilder::node_script("fault_recover.mjs")?
            .env("ROTOR_WS_URL", ws_url)
            .env("ROTOR_TOKEN_SECRET", secret)
            .env("FAULT_CHANNEL", channel)
            .env("FAULT_CLIENTS", clients.to_string())
            .env("FAULT_MIN_RECONNECT_MS", reconnect_ms.0.to_string())
            .env("FAULT_MAX_RECONNECT_MS", reconnect_ms.1.to_string())
            .env("FAULT_TIMEOUT_MS", "55000")
            .ready_on(Readiness::Line("{\"ev\":\"ready\"}".into()))
            .spawn()
            .await?;
        Ok(Self { process, clients })
    }

    /// How many `subscribed` events the clients reported so far (all clients together).
    fn subscribed(&self) -> usize {
        self.process
            .output()
            .matches("\"ev\":\"subscribed\"")
            .count()
    }

    /// Polls (output has no event to await) until every client subscribed `times` times.
    async fn wait_subscribed(&self, times: usize, limit: Duration) -> Result<()> {
        let started = Instant::now();
        while self.subscribed() < times * self.clients {
            ensure!(
                started.elapsed() < limit,
                "the followers did not all subscribe {times} times within {limit:?}:\n{}",
                self.process.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// What each client saw, once every client got the done marker.
    async fn summary(&self, limit: Duration) -> Result<Vec<FollowerLog>> {
        self.process.wait_for_output("{\"summary\"", limit).await?;
        let output = self.process.output();
        let line = output
            .lines()
            .find(|l| l.trim_start().starts_with("{\"summary\""))
            .context("no summary line")?;
        let v: Value = serde_json::from_str(line.trim())?;
        let logs: Vec<FollowerLog> = serde_json::from_value(v["summary"].clone())?;
        ensure!(logs.len() == self.clients, "a summary per client: {line}");
        Ok(logs)
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
struct FollowerLog {
    pubs: Vec<Received>,
    events: Vec<Value>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Received {
    n: u64,
    offset: Option<u64>,
    /// Part of a subscribe reply's recovered publications.
    rec: bool,
    /// Which subscription (1 = the first `subscribed`) it arrived in.
    generation: usize,
}

impl FollowerLog {
    fn numbers(&self) -> Vec<u64> {
        self.pubs.iter().map(|p| p.n).collect()
    }

    fn subscribed(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["ev"] == "subscribed")
            .collect()
    }

    fn recovered(&self) -> usize {
        self.pubs.iter().filter(|p| p.rec).count()
    }
}

/// Fails unless `got` is exactly 1..=n, saying what is missing, duplicated or out of order.
fn ensure_exactly_once(who: &str, got: &[u64], n: u64) -> Result<()> {
    let want: Vec<u64> = (1..=n).collect();
    if got == want.as_slice() {
        return Ok(());
    }
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for x in got {
        *counts.entry(*x).or_default() += 1;
    }
    let missing: Vec<u64> = want
        .iter()
        .filter(|x| !counts.contains_key(x))
        .copied()
        .collect();
    let doubled: Vec<u64> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(x, _)| *x)
        .collect();
    bail!(
        "{who} did not get 1..={n} exactly once in order: {} received, missing {missing:?}, \
         duplicated {doubled:?}, sequence {got:?}",
        got.len()
    )
}

// ---------------------------------------------------------------------------------------------
// 1, 2: a tenant process killed under traffic.
// ---------------------------------------------------------------------------------------------

const FOLLOWERS: usize = 3;

#[tokio::test]
async fn a_tenant_killed_under_traffic_restarts_and_redis_recovery_delivers_every_publication_once(
) -> Result<()> {
    const N: u64 = 90;
    const KILL_AT: u64 = 30;
    let redis = OwnRedis::start(false).await?;
    let redis_url = redis.url();
    let cp = control_plane(TestDatabase::create().await?, &[("REDIS_URL", &redis_url)]).await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = project_on(&cp, &mgmt, "crash redis", "redis").await?;
    // Clients come back 1–2 s after the drop, so the publisher (retrying every 20 ms) gets
    // publications into the restarted tenant before they resubscribe: recovery must fill that.
    let followers = Followers::start(
        &cp.ws_url(&project.slug),
        &project.secret,
        "chat:fault",
        FOLLOWERS,
        (1000, 2000),
    )
    .await?;
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let before = cp.tenant_record(&project.id)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failed = Vec::new();
    let mut killed = None;
    let mut back = None;
    for n in 1..=N {
        if n == KILL_AT {
            kill9(before["pid"].as_i64().context("pid")?);
            killed = Some(Instant::now());
        }
        let offset = publisher
            .publish_n("chat:fault", n, &mut failed, deadline)
            .await?;
        if n == KILL_AT {
            back = killed.map(|k| k.elapsed());
        }
        // Offsets equal n: no retry (even one whose answer was lost) made a second publication.
        assert_eq!(
            offset, n,
            "publication {n} got offset {offset}: a retry published twice"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    publisher.done("chat:fault", deadline).await?;
    let logs = followers.summary(Duration::from_secs(20)).await?;
    let after = cp.tenant_record(&project.id)?;
    assert_ne!(
        before["pid"], after["pid"],
        "the supervisor started a new process"
    );

    let mut recovered = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        ensure_exactly_once(&format!("follower {i}"), &log.numbers(), N)?;
        for p in &log.pubs {
            assert_eq!(p.offset, Some(p.n), "follower {i}: offsets follow n: {p:?}");
        }
        let subs = log.subscribed();
        assert!(
            subs.len() >= 2,
            "follower {i} resubscribed after the restart: {:?}",
            log.events
        );
        for s in &subs[1..] {
            assert_eq!(
                (&s["wasRecovering"], &s["recovered"]),
                (&json!(true), &json!(true)),
                "follower {i}: every resubscription recovers: {s}"
            );
            assert_eq!(s["epoch"], subs[0]["epoch"], "the stream lives in Redis");
        }
        recovered.push(log.recovered());
    }
    eprintln!(
        "kill -9 under traffic (redis engine): tenant accepting publishes again {back:?} after \
         the kill, {} failed attempts meanwhile; publications recovered per follower: \
         {recovered:?} of {N}",
        failed.len()
    );
    assert!(
        recovered.iter().any(|r| *r > 0),
        "publications accepted while the followers were away came through recovery: \
         {recovered:?}"
    );
    drop(cp);
    drop(redis);
    Ok(())
}

#[tokio::test]
async fn a_tenant_killed_under_traffic_on_the_memory_engine_tells_clients_recovery_failed(
) -> Result<()> {
    const N: u64 = 60;
    const KILL_AT: u64 = 20;
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = project_on(&cp, &mgmt, "crash memory", "memory").await?;
    let followers = Followers::start(
        &cp.ws_url(&project.slug),
        &project.secret,
        "chat:fault",
        FOLLOWERS,
        (200, 500),
    )
    .await?;
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let before = cp.tenant_record(&project.id)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failed = Vec::new();
    for n in 1..=N {
        if n == KILL_AT {
            kill9(before["pid"].as_i64().context("pid")?);
        }
        publisher
            .publish_n("chat:fault", n, &mut failed, deadline)
            .await?;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // Every client resubscribed before the end marker, so each one must see it.
    followers
        .wait_subscribed(2, Duration::from_secs(20))
        .await?;
    publisher.done("chat:fault", deadline).await?;
    let logs = followers.summary(Duration::from_secs(20)).await?;
    assert_ne!(
        before["pid"],
        cp.tenant_record(&project.id)?["pid"],
        "a new process"
    );

    for (i, log) in logs.iter().enumerate() {
        let subs = log.subscribed();
        assert!(subs.len() >= 2, "follower {i}: {:?}", log.events);
        for s in &subs[1..] {
            assert_eq!(
                (&s["wasRecovering"], &s["recovered"]),
                (&json!(true), &json!(false)),
                "follower {i} is told the history it held a position in is gone: {s}"
            );
            assert_ne!(s["epoch"], subs[0]["epoch"], "a new stream, a new epoch");
        }
        ensure!(
            log.pubs.iter().all(|p| !p.rec),
            "nothing is passed off as recovered: {:?}",
            log.pubs
        );
        // Within each subscription the offsets are contiguous from the position the subscribe
        // reply gave: the only gap is the one the client was told about.
        for (g, s) in subs.iter().enumerate() {
            let generation = g + 1;
            let offsets: Vec<u64> = log
                .pubs
                .iter()
                .filter(|p| p.generation == generation)
                .map(|p| p.offset.unwrap_or(0))
                .collect();
            let from = s["offset"].as_u64().unwrap_or(0);
            let want: Vec<u64> = (from + 1..from + 1 + offsets.len() as u64).collect();
            assert_eq!(
                offsets, want,
                "follower {i}, subscription {generation} (position {from}): no silent gap"
            );
        }
        let first: Vec<u64> = log
            .pubs
            .iter()
            .filter(|p| p.generation == 1)
            .map(|p| p.n)
            .collect();
        ensure_exactly_once(
            &format!("follower {i} before the kill"),
            &first,
            first.len() as u64,
        )?;
    }
    eprintln!(
        "kill -9 under traffic (memory engine): {} failed publish attempts; per follower \
         (received, after the restart): {:?}",
        failed.len(),
        logs.iter()
            .map(|l| (
                l.pubs.len(),
                l.pubs.iter().filter(|p| p.generation > 1).count()
            ))
            .collect::<Vec<_>>()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3: Redis restarted under a Redis-engine tenant.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_redis_restart_under_traffic_fails_publishes_fast_then_subscribers_recover_and_the_tenant_stays(
) -> Result<()> {
    const N: u64 = 60;
    const STOP_AT: u64 = 20;
    let mut redis = OwnRedis::start(true).await?;
    let redis_url = redis.url();
    let cp = control_plane(TestDatabase::create().await?, &[("REDIS_URL", &redis_url)]).await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = project_on(&cp, &mgmt, "redis restart", "redis").await?;
    let followers = Followers::start(
        &cp.ws_url(&project.slug),
        &project.secret,
        "chat:fault",
        FOLLOWERS,
        (50, 500),
    )
    .await?;
    let publisher = Publisher::new(&cp.api_url(&project.slug), &project.key);
    let before = cp.tenant_record(&project.id)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failed = Vec::new();
    let mut outage = Vec::new();
    for n in 1..=N {
        if n == STOP_AT {
            redis.stop().await?;
            // While Redis is down every attempt fails, promptly; after three, start it again.
            let body = json!({"channel": "chat:fault", "data": {"n": n}, "idempotency_key": format!("pub-{n}")});
            while outage.len() < 3 {
                let started = Instant::now();
                match publisher.attempt(&body).await {
                    Ok(r) => bail!("a publish succeeded while Redis was down: {r}"),
                    Err(why) => outage.push(Failed {
                        n,
                        took: started.elapsed(),
                        why,
                    }),
                }
            }
            redis.resume().await?;
        }
        let offset = publisher
            .publish_n("chat:fault", n, &mut failed, deadline)
            .await?;
        assert_eq!(
            offset, n,
            "publication {n}: offsets are kept across the restart"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    publisher.done("chat:fault", deadline).await?;
    let logs = followers.summary(Duration::from_secs(20)).await?;

    for f in &outage {
        assert!(
            matches!(f.why, Failure::Api { code: 100, .. }),
            "a publish while Redis is down is a temporary server error (100): {f:?}"
        );
        assert!(
            f.took < Duration::from_secs(5),
            "a publish while Redis is down fails promptly, it does not hang: {f:?}"
        );
    }
    let after = cp.tenant_record(&project.id)?;
    assert_eq!(
        before["pid"], after["pid"],
        "the tenant process never restarted"
    );
    assert!(
        pid_alive(after["pid"].as_i64().unwrap_or(0)),
        "and it is still running"
    );
    let mut recovered = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        ensure_exactly_once(&format!("follower {i}"), &log.numbers(), N)?;
        let asked = log
            .events
            .iter()
            .any(|e| e["ev"] == "subscribing" && e["code"] == 2500);
        assert!(
            asked,
            "follower {i} was asked to recover (2500): {:?}",
            log.events
        );
        let subs = log.subscribed();
        for s in &subs[1..] {
            assert_eq!(
                (&s["wasRecovering"], &s["recovered"]),
                (&json!(true), &json!(true)),
                "follower {i}: {s}"
            );
        }
        recovered.push(log.recovered());
    }
    eprintln!(
        "redis restart under traffic: outage attempts took {:?} ({:?}); {} more failed \
         attempts while Redis came back; publications recovered per follower: {recovered:?}",
        outage.iter().map(|f| f.took).collect::<Vec<_>>(),
        outage.first().map(|f| &f.why),
        failed.len()
    );
    drop(cp);
    drop(redis);
    Ok(())
}

fn pid_alive(pid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

// ---------------------------------------------------------------------------------------------
// Raw protocol clients (tokio-tungstenite) for the Postgres and slow-consumer tests.
// ---------------------------------------------------------------------------------------------

type Ws = WebSocketStream<TcpStream>;

/// Opens a JSON-protocol connection to `url` (ws://host:port/path), connects with `jwt` and
/// subscribes to `channels`. `recv_buffer` sets SO_RCVBUF before connecting.
async fn raw_subscriber(
    url: &str,
    jwt: &str,
    channels: &[&str],
    recv_buffer: Option<u32>,
) -> Result<Ws> {
    let authority = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .context("url")?;
    let addr: SocketAddr = authority.parse()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr)).await??;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, stream),
    )
    .await??;
    ws.send(Message::text(
        json!({"id": 1, "connect": {"token": jwt}}).to_string(),
    ))
    .await?;
    let reply = await_reply(&mut ws, 1).await?;
    ensure!(reply.get("connect").is_some(), "connect refused: {reply}");
    for (id, channel) in (2..).zip(channels) {
        ws.send(Message::text(
            json!({"id": id, "subscribe": {"channel": channel}}).to_string(),
        ))
        .await?;
        let reply = await_reply(&mut ws, id).await?;
        ensure!(
            reply.get("subscribe").is_some(),
            "subscribe to {channel} refused: {reply}"
        );
    }
    Ok(ws)
}

/// Reads until the reply with `id` (other frames are skipped), within 10 s.
async fn await_reply(ws: &mut Ws, id: u64) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no reply {id} within 10 s"))?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                for line in t.split('\n') {
                    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                    if v["id"].as_u64() == Some(id) {
                        return Ok(v);
                    }
                }
            }
            Some(Ok(Message::Close(f))) => bail!("closed while waiting for reply {id}: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("connection failed while waiting for reply {id}: {e}"),
            None => bail!("connection ended while waiting for reply {id}"),
        }
    }
}

/// The unsigned integer after `key` (e.g. `"n":`) in `line`, without parsing the whole line.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// What a reading subscriber saw: each publication's `n` and, when stamped, its latency.
#[derive(Debug, Default)]
struct Seen {
    ns: Vec<u64>,
    latencies_us: Vec<u64>,
    ended: Option<String>,
}

/// Reads `ws` until a publication with `n >= last` has arrived (`last` 0: not known yet), the
/// connection ends or `deadline` passes; answers server pings. `clock` is the base of the publications' `t` stamps (µs).
async fn read_publications(
    mut ws: Ws,
    last: Arc<AtomicU64>,
    clock: Instant,
    deadline: tokio::time::Instant,
) -> Seen {
    let mut seen = Seen::default();
    let done = |seen: &Seen| {
        let want = last.load(Ordering::Acquire);
        want > 0 && seen.ns.last().is_some_and(|n| *n >= want)
    };
    loop {
        // Wake every 100 ms: `last` may be set after the last publication arrived.
        let step = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
        let msg = match tokio::time::timeout_at(step, ws.next()).await {
            Ok(m) => m,
            Err(_) if done(&seen) => return seen,
            Err(_) if step < deadline => continue,
            Err(_) => {
                seen.ended = Some("deadline".into());
                return seen;
            }
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let now = clock.elapsed().as_micros() as u64;
                for line in t.split('\n') {
                    if line == "{}" {
                        let _ = ws.send(Message::text("{}")).await;
                        continue;
                    }
                    if !line.starts_with("{\"push\"") {
                        continue;
                    }
                    let Some(n) = number_after(line, "\"n\":") else {
                        continue;
                    };
                    if let Some(t) = number_after(line, "\"t\":") {
                        seen.latencies_us.push(now.saturating_sub(t));
                    }
                    seen.ns.push(n);
                }
                if done(&seen) {
                    return seen;
                }
            }
            Some(Ok(Message::Close(f))) => {
                seen.ended = Some(format!("close frame {f:?}"));
                return seen;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                seen.ended = Some(format!("error: {e}"));
                return seen;
            }
            None => {
                seen.ended = Some("ended without a close frame".into());
                return seen;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4: Postgres restarted under the control plane.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_postgres_restart_leaves_tenants_serving_and_config_changes_resume_without_loss(
) -> Result<()> {
    let pg = OwnPostgres::start().await?;
    let db = TestDatabase::create_on(&pg.url()).await?;
    let cp = control_plane(db, &[]).await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(
            &mgmt,
            "steady db",
            &[
                ("chat", recoverable()),
                ("news", json!({"allow_subscribe_for_client": true})),
            ],
        )
        .await?;
    let pid = cp.tenant_record(&project.id)?["pid"].clone();
    let ws_url = cp.ws_url(&project.slug);
    let jwt = token(&project.secret, "watcher");
    let follower = raw_subscriber(&ws_url, &jwt, &["chat:pg"], None).await?;

    // Steady API traffic through the edge for the whole episode.
    let publisher = Arc::new(Publisher::new(&cp.api_url(&project.slug), &project.key));
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (publisher, stop, published) = (publisher.clone(), stop.clone(), published.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let body = json!({"channel": "chat:pg", "data": {"n": n}});
                if let Err(e) = publisher.attempt(&body).await {
                    failures.push((n, e));
                    n -= 1;
                } else {
                    published.store(n, Ordering::Release);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            failures
        })
    };
    let last = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn(read_publications(
        follower,
        last.clone(),
        Instant::now(),
        tokio::time::Instant::now() + Duration::from_secs(50),
    ));
    wait_until("10 publications", Duration::from_secs(10), || {
        published.load(Ordering::Acquire) >= 10
    })
    .await?;

    pg.stop().await?;
    let down = Instant::now();
    let published_before = published.load(Ordering::Acquire);
    // While Postgres is down: the reconciler finds it gone and leaves the tenants alone, new
    // connections through the edge still work, and the REST API (which needs the database)
    // does not answer 200, which shows the outage is real.
    let control_plane_log = async {
        cp.process
            .as_ref()
            .context("control plane")?
            .wait_for_output("cannot list projects", Duration::from_secs(20))
            .await
    };
    let late = token(&project.secret, "late");
    let new_connection = raw_subscriber(&ws_url, &late, &["news:x"], None);

    let project_path = format!("/v1/projects/{}", project.id);
    let rest = cp.call("GET", &project_path, Some(&mgmt), None);
    let (logged, during, rest) = tokio::join!(control_plane_log, new_connection, rest);
    logged?;
    assert!(
        during.is_ok(),
        "a new WebSocket connection through the edge while Postgres is down: {:?}",
        during.err()
    );
    let status = rest.map(|(s, _)| s).unwrap_or(0);
    assert_ne!(
        status, 200,
        "the REST API needs Postgres: the outage is real"
    );
    let published_while_down = published.load(Ordering::Acquire) - published_before;
    pg.resume().await?;
    let outage = down.elapsed();

    // The control plane reconnects by itself.
    let back = Instant::now();
    loop {
        let (status, _) = cp
            .call(
                "GET",
                &format!("/v1/projects/{}", project.id),
                Some(&mgmt),
                None,
            )
            .await
            .unwrap_or((0, Value::Null));
        if status == 200 {
            break;
        }
        ensure!(
            back.elapsed() < Duration::from_secs(20),
            "the REST API did not come back after Postgres did (last status {status})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reconnected = back.elapsed();
    // A config change made now reaches the tenant.
    let (s, b) = cp
        .call(
            "PUT",
            &format!("/v1/projects/{}/namespaces/after", project.id),
            Some(&mgmt),
            Some(json!({"allow_subscribe_for_client": true})),
        )
        .await?;
    assert_eq!(s, 201, "{b}");
    let applied_in = cp.wait_applied(&mgmt, &project.id).await?;
    wait_until("more publications", Duration::from_secs(10), || {
        published.load(Ordering::Acquire) >= published_before + published_while_down + 10
    })
    .await?;
    stop.store(true, Ordering::Release);
    let failures = traffic.await?;
    let total = published.load(Ordering::Acquire);
    last.store(total, Ordering::Release);
    let seen = reader.await?;
    assert!(
        failures.is_empty(),
        "every API publish through the edge succeeded throughout: {failures:?}"
    );
    ensure_exactly_once("the WebSocket follower", &seen.ns, total)?;
    assert!(
        published_while_down > 10,
        "traffic flowed during the outage too ({published_while_down} publications)"
    );

    // Nothing configured before is lost or rolled back: in the tenant…
    for (channel, expect_offset) in [
        ("chat:check", true),
        ("news:check", false),
        ("after:check", false),
    ] {
        let r = publisher
            .attempt(&json!({"channel": channel, "data": {}}))
            .await
            .map_err(|e| anyhow::anyhow!("publish to {channel}: {e:?}"))?;
        assert_eq!(
            r["offset"].as_u64().is_some_and(|o| o > 0),
            expect_offset,
            "{channel}: the namespace's options are the ones configured ({r})"
        );
    }
    let record = cp.tenant_record(&project.id)?;
    assert_eq!(record["pid"], pid, "the tenant never restarted");
    let status: Value = cp
        .http
        .get(format!(
            "http://{}/admin/status",
            record["addr"].as_str().unwrap_or_default()
        ))
        .bearer_auth(record["admin_token"].as_str().unwrap_or_default())
        .send()
        .await?
        .json()
        .await?;
    let (_, p) = cp
        .call(
            "GET",
            &format!("/v1/projects/{}", project.id),
            Some(&mgmt),
            None,
        )
        .await?;
    assert_eq!(
        status["config_version"], p["config_version"],
        "{status} {p}"
    );
    // … and in the database.
    let (_, list) = cp
        .call(
            "GET",
            &format!("/v1/projects/{}/namespaces", project.id),
            Some(&mgmt),
            None,
        )
        .await?;
    let text = list.to_string();
    for name in ["\"chat\"", "\"news\"", "\"after\""] {
        assert!(
            text.contains(name),
            "namespace {name} is in the database: {list}"
        );
    }
    assert!(
        text.contains("\"history_size\":100"),
        "chat kept its options: {list}"
    );
    eprintln!(
        "postgres restart: outage {outage:?}, {published_while_down} publications during it, \
         {total} in all, none failed; REST back {reconnected:?} after Postgres, config \
         change applied in {applied_in:?}"
    );
    drop(cp);
    drop(pg);
    Ok(())
}

/// Polls `cond` every 10 ms until it holds, at most `limit`.
async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) -> Result<()> {
    let started = Instant::now();
    while !cond() {
        ensure!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5: one slow consumer among 1000.
// ---------------------------------------------------------------------------------------------

/// Resident memory of a process, bytes.
fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

/// The value of the Prometheus sample `name` (with labels, exactly as rendered) at `url`.
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Result<f64> {
    let text = http.get(url).send().await?.text().await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_cut_off_while_1000_others_get_everything_promptly(
) -> Result<()> {
    const FAST: usize = 1000;
    const MESSAGES: u64 = 100;
    const PAYLOAD: usize = 4096;
    const BULK: usize = 32 * 1024;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (secret, api_key) = (format!("slow-secret-{id}"), format!("slow-key-{id}"));
    let config_path = std::env::temp_dir().join(format!("rotor-fault-slow-{id}.json"));
    std::fs::write(
        &config_path,
        json!({
            "client": {"token": {"hmac_secret_key": secret}},
            "http_api": {"key": api_key},
            "channel": {"without_namespace": {"allow_subscribe_for_client": true}}
        })
        .to_string(),
    )?;
    let server = ProcessBuilder::workspace_binary("rotor-data-plane")?
        .arg("--config")
        .arg(&config_path)
        .args(["--address", "127.0.0.1", "--port", "0"])
        .spawn()
        .await;
    let _ = std::fs::remove_file(&config_path);
    let server = server?;
    let pid = server.pid().context("pid")?;
    let ws_url = server.ws_url("/connection/websocket");
    let metrics_url = server.http_url("/metrics");
    let http = reqwest::Client::new();

    // The slow one: a tiny receive buffer, and it stops reading after subscribing.
    let slow = raw_subscriber(
        &ws_url,
        &token(&secret, "slow"),
        &["feed", "bulk"],
        Some(4096),
    )
    .await?;
    // 1000 readers, opened 50 at a time.
    let clock = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    let mut readers = Vec::with_capacity(FAST);
    let opening = Arc::new(tokio::sync::Semaphore::new(50));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<()>>(FAST);
    for i in 0..FAST {
        let (url, jwt, last, opening, ready) = (
            ws_url.clone(),
            token(&secret, &format!("fast-{i}")),
            last.clone(),
            opening.clone(),
            ready_tx.clone(),
        );
        readers.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await;
            let ws = raw_subscriber(&url, &jwt, &["feed"], None).await;
            drop(permit);
            match ws {
                Ok(ws) => {
                    let _ = ready.send(Ok(())).await;
                    read_publications(ws, last, clock, deadline).await
                }
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    Seen::default()
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..FAST {
        let r = tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .context("1000 subscribers not connected within 30 s")?
            .context("a reader task ended")?;
        r.context("opening a fast subscriber")?;
    }
    let connected_in = clock.elapsed();
    let rss_before = rss_of(pid)?;

    // Memory and the slow client's fate, sampled while the publishers run.
    let sampling = Arc::new(AtomicBool::new(true));
    let slow_gone = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (sampling, slow_gone, http, metrics_url) = (
            sampling.clone(),
            slow_gone.clone(),
            http.clone(),
            metrics_url.clone(),
        );
        tokio::spawn(async move {
            let mut max_rss = 0;
            let mut cut_off: Option<(Duration, String)> = None;
            while sampling.load(Ordering::Acquire) {
                max_rss = max_rss.max(rss_of(pid).unwrap_or(0));
                if cut_off.is_none() {
                    for code in ["3008", "3009"] {
                        let name = format!("rotor_disconnects_total{{code=\"{code}\"}}");
                        if metric(&http, &metrics_url, &name).await.unwrap_or(0.0) >= 1.0 {
                            cut_off = Some((clock.elapsed(), code.to_owned()));
                            slow_gone.store(true, Ordering::Release);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (max_rss, cut_off)
        })
    };
    // The slow one also follows `bulk`, where large publications go as fast as the API takes
    // them until it is cut off: its kernel buffers (several MiB on loopback, whatever
    // SO_RCVBUF says) fill within a second or two without pushing gigabytes through the 1000
    // others.
    let bulk = {
        let (publisher, slow_gone) = (
            Publisher::new(&server.http_url("/api"), &api_key),
            slow_gone.clone(),
        );
        tokio::spawn(async move {
            let chunk = "b".repeat(BULK);
            let started = Instant::now();
            let mut sent = 0u64;
            while !slow_gone.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(30)
            {
                let body = json!({"channel": "bulk", "data": {"b": chunk}});
                if publisher.attempt(&body).await.is_ok() {
                    sent += BULK as u64;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        })
    };

    let publisher = Publisher::new(&server.http_url("/api"), &api_key);
    let pad = "x".repeat(PAYLOAD);
    let episode = Instant::now();
    for n in 1..=MESSAGES {
        let t = clock.elapsed().as_micros() as u64;
        let body = json!({"channel": "feed", "data": {"t": t, "n": n, "pad": pad}});
        publisher
            .attempt(&body)
            .await
            .map_err(|e| anyhow::anyhow!("publish {n}: {e:?}"))?;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    last.store(MESSAGES, Ordering::Release);
    let published_in = episode.elapsed();
    let mut latencies = Vec::with_capacity(FAST * MESSAGES as usize);
    let mut incomplete = Vec::new();
    for (i, r) in readers.into_iter().enumerate() {
        let seen = r.await?;
        if seen.ns != (1..=MESSAGES).collect::<Vec<_>>() {
            incomplete.push((i, seen.ns.len(), seen.ended.clone()));
        }
        latencies.extend(seen.latencies_us);
    }
    // The server's verdict on the slow one, if it has not come yet (the bulk publisher gives
    // up after 30 s).
    let bulk_bytes = bulk.await?;
    sampling.store(false, Ordering::Release);
    let (max_rss, cut_off) = sampler.await?;
    let rss_after = rss_of(pid)?;
    // What the slow client finds once it finally reads.
    let slow_seen = read_publications(
        slow,
        Arc::new(AtomicU64::new(u64::MAX)),
        clock,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;

    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let (p50, p99, max) = (pct(0.50), pct(0.99), latencies.last().copied().unwrap_or(0));
    let disconnects: Vec<String> = http
        .get(&metrics_url)
        .send()
        .await?
        .text()
        .await?
        .lines()
        .filter(|l| l.starts_with("rotor_disconnects_total{"))
        .map(str::to_owned)
        .collect();
    eprintln!(
        "slow consumer among {FAST}: connected in {connected_in:?}; {MESSAGES} × {PAYLOAD} B \
         published in {published_in:?}; delivery p50 {} ms, p99 {} ms, max {} ms over {} \
         deliveries; tenant RSS {} MiB before, {} MiB max, {} MiB after; slow one cut off at \
         {cut_off:?} after {} MiB of bulk (server: {disconnects:?}); it then read {} feed \
         publications and {}",
        p50 / 1000,
        p99 / 1000,
        max / 1000,
        latencies.len(),
        rss_before >> 20,
        max_rss >> 20,
        rss_after >> 20,
        bulk_bytes >> 20,
        slow_seen.ns.len(),
        slow_seen.ended.as_deref().unwrap_or("-"),
    );
    assert!(
        incomplete.is_empty(),
        "every reading subscriber got all {MESSAGES} messages in order; not: {incomplete:?}"
    );
    let (_, code) = cut_off.context("the slow subscriber was never disconnected")?;
    assert_eq!(
        code, "3008",
        "the never-reading subscriber is disconnected as slow ({disconnects:?})"
    );
    // Readers close their own connections (3000) once done; nothing else was cut off.
    let by_server: Vec<&String> = disconnects
        .iter()
        .filter(|l| !l.contains("code=\"3000\""))
        .collect();
    assert_eq!(
        by_server,
        ["rotor_disconnects_total{code=\"3008\"} 1"],
        "only the slow one was disconnected by the server"
    );
    assert!(
        slow_seen.ns.len() < MESSAGES as usize,
        "the slow subscriber did not get everything: it was cut off ({} read)",
        slow_seen.ns.len()
    );
    assert!(
        max_rss < rss_before + 64 * 1024 * 1024,
        "tenant memory stays bounded: {} MiB max vs {} MiB before",
        max_rss >> 20,
        rss_before >> 20
    );
    assert!(
        p99 < 1_000_000,
        "p99 delivery latency of the others stays low: {} ms",
        p99 / 1000
    );
    Ok(())
}
