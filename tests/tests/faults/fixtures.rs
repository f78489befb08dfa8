// Fixtures and traffic helpers of tests/tests/faults.rs (included there with `include!`, so
// they share its imports): private redis-server and Postgres instances, a control plane with
// extra environment, centrifuge-js followers and polling helpers (the publisher and raw clients
// are in tests/tests/cp/).
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
// Polling.
// ---------------------------------------------------------------------------------------------

/// Whether a process with `pid` exists.
fn pid_alive(pid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
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
