//! Fixtures of the fault tests (`tests/tests/faults.rs`): a private `redis-server` and a
//! private Postgres the test may stop and start again, the namespace those tests recover in,
//! centrifuge-js followers (`tests/clients/node/fault_recover.mjs`) and what they report, and
//! polling helpers. The publisher and raw clients are in [`crate::control_plane`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::control_plane::{ControlPlane, Engine, Project};
use crate::{free_port, ProcessBuilder, Readiness, TestDatabase, TestProcess};

// ---------------------------------------------------------------------------------------------
// A private redis-server, a private Postgres.
// ---------------------------------------------------------------------------------------------

/// A private `redis-server` on a free port that the test may stop and start again. With
/// `persistent`, every write goes to an append-only file first, so a restart keeps the data.
pub struct OwnRedis {
    port: u16,
    dir: PathBuf,
    persistent: bool,
    process: Option<TestProcess>,
}

impl OwnRedis {
    pub async fn start(persistent: bool) -> Result<Self> {
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

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and directory; ready once it says so.
    pub async fn resume(&mut self) -> Result<()> {
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
    pub async fn stop(&mut self) -> Result<()> {
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
pub struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    pub async fn start() -> Result<Self> {
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
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn resume(&self) -> Result<()> {
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
    pub async fn stop(&self) -> Result<()> {
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

/// The channel [`Followers`] follow.
pub const FOLLOWED: &str = "chat:fault";

/// A namespace with history long enough for every test here and forced recovery.
pub fn recoverable() -> Value {
    json!({
        "allow_subscribe_for_client": true,
        "history_size": 100,
        "history_ttl": "300s",
        "force_recovery": true
    })
}

/// A control plane and a project on it with the `chat` namespace ([`recoverable`]), running
/// its latest config: on the Redis engine on `redis` (the control plane's `REDIS_URL`), or on
/// the memory engine without.
pub async fn chat_project(redis: Option<&OwnRedis>, name: &str) -> Result<(ControlPlane, Project)> {
    let (env, engine) = match redis {
        Some(redis) => (vec![("REDIS_URL".to_owned(), redis.url())], Engine::Redis),
        None => (Vec::new(), Engine::Memory),
    };
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cp = ControlPlane::start_on(TestDatabase::create().await?, &env).await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project_on(&mgmt, name, engine, &[("chat", recoverable())])
        .await?;
    Ok((cp, project))
}

/// `tests/clients/node/fault_recover.mjs`: centrifuge-js clients following [`FOLLOWED`].
pub struct Followers {
    process: TestProcess,
    clients: usize,
}

impl Followers {
    /// `clients` clients of `project` through `cp`'s edge, each reconnecting after a delay
    /// between `reconnect_ms.0` and `.1`.
    pub async fn start(
        cp: &ControlPlane,
        project: &Project,
        clients: usize,
        reconnect_ms: (u64, u64),
    ) -> Result<Self> {
        let process = ProcessBuilder::node_script("fault_recover.mjs")?
            .env("ROTOR_WS_URL", cp.ws_url(&project.slug))
            .env("ROTOR_TOKEN_SECRET", &project.secret)
            .env("FAULT_CHANNEL", FOLLOWED)
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
    pub fn subscribed(&self) -> usize {
        self.process
            .output()
            .matches("\"ev\":\"subscribed\"")
            .count()
    }

    /// Polls (output has no event to await) until every client subscribed `times` times.
    pub async fn wait_subscribed(&self, times: usize, limit: Duration) -> Result<()> {
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
    pub async fn summary(&self, limit: Duration) -> Result<Vec<FollowerLog>> {
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
pub struct FollowerLog {
    pub pubs: Vec<Received>,
    pub events: Vec<Value>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Received {
    pub n: u64,
    pub offset: Option<u64>,
    /// Part of a subscribe reply's recovered publications.
    pub rec: bool,
    /// Which subscription (1 = the first `subscribed`) it arrived in.
    pub generation: usize,
}

impl FollowerLog {
    pub fn numbers(&self) -> Vec<u64> {
        self.pubs.iter().map(|p| p.n).collect()
    }

    pub fn subscribed(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["ev"] == "subscribed")
            .collect()
    }

    pub fn recovered(&self) -> usize {
        self.pubs.iter().filter(|p| p.rec).count()
    }
}

/// Fails unless `got` is exactly 1..=n, saying what is missing, duplicated or out of order.
pub fn ensure_exactly_once(who: &str, got: &[u64], n: u64) -> Result<()> {
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
// Polling.
// ---------------------------------------------------------------------------------------------

/// Whether a process with `pid` exists.
pub fn pid_alive(pid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `cond` every 10 ms until it holds, at most `limit`.
pub async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) -> Result<()> {
    let started = Instant::now();
    while !cond() {
        ensure!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
