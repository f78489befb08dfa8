//! The processes of the engines scenario, each started on free loopback ports in a temporary
//! directory and killed on drop: a standalone `redis-server`, a Redis Cluster of three primaries
//! (`redis-server --cluster-enabled yes` joined with `redis-cli --cluster create`), a
//! `nats-server`, and `rotor-data-plane` processes configured for one of them. Every start waits
//! (bounded) until the process accepts connections.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// How long one process may take to accept connections (a cluster to become ok).
const READY: Duration = Duration::from_secs(30);

/// A child process, killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub port: u16,
    child: Child,
}

impl Proc {
    /// Spawns `command` (output to `log`) and waits until `port` accepts connections.
    pub fn spawn(mut command: Command, port: u16, log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {:?}", command.get_program()))?;
        let mut p = Self { port, child };
        let deadline = Instant::now() + READY;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{:?} exited ({status}): {}",
                    command.get_program(),
                    tail(log)
                );
            }
            if Instant::now() > deadline {
                bail!("{:?} did not listen on {port}", command.get_program());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log file, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A free port whose cluster bus port (`port + 10000`) is free too.
pub fn free_port() -> u16 {
    loop {
        let port = 20000 + fastrand::u16(0..20000);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
}

/// Where the external programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub data_plane: PathBuf,
    pub redis_server: String,
    pub redis_cli: String,
    pub nats_server: String,
}

/// One engine deployment: its processes and the engine part of a data plane's config.
pub struct Deployment {
    pub procs: Vec<Proc>,
    pub engine: Value,
}

impl Deployment {
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }
}

fn redis_server(p: &Programs, dir: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Proc> {
    let node = dir.join(format!("redis-{port}"));
    std::fs::create_dir_all(&node)?;
    let mut c = Command::new(&p.redis_server);
    c.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(&node)
        .args(extra);
    Proc::spawn(c, port, &dir.join(format!("redis-{port}.log")))
}

/// `redis-cli -p port args…`, its output as text.
pub fn redis_cli(p: &Programs, port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(&p.redis_cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", p.redis_cli))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A standalone Redis (`engine.redis.address`).
pub fn standalone(p: &Programs, dir: &Path, prefix: &str) -> anyhow::Result<Deployment> {
    let server = redis_server(p, dir, free_port(), &[])?;
    let engine = json!({"engine": {"type": "redis", "redis": {
        "address": format!("redis://127.0.0.1:{}", server.port), "prefix": prefix}}});
    Ok(Deployment {
        procs: vec![server],
        engine,
    })
}

/// A Redis Cluster of `primaries` primaries without replicas (`engine.redis.cluster_address`).
pub fn cluster(
    p: &Programs,
    dir: &Path,
    primaries: usize,
    prefix: &str,
) -> anyhow::Result<Deployment> {
    let mut procs = Vec::new();
    for _ in 0..primaries {
        procs.push(redis_server(
            p,
            dir,
            free_port(),
            &["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"],
        )?);
    }
    let status = Command::new(&p.redis_cli)
        .args(["--cluster", "create"])
        .args(procs.iter().map(|s| format!("127.0.0.1:{}", s.port)))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("redis-cli --cluster create")?;
    if !status.success() {
        bail!("redis-cli --cluster create failed ({status})");
    }
    let deadline = Instant::now() + READY;
    for s in &procs {
        loop {
            let info = redis_cli(p, s.port, &["CLUSTER", "INFO"])?;
            if info.contains("cluster_state:ok")
                && info.contains(&format!("cluster_known_nodes:{primaries}"))
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("cluster node {} not ok within {READY:?}", s.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let seeds: Vec<String> = procs
        .iter()
        .map(|s| format!("redis://127.0.0.1:{}", s.port))
        .collect();
    let engine = json!({"engine": {"type": "redis", "redis": {
        "cluster_address": seeds, "prefix": prefix}}});
    Ok(Deployment { procs, engine })
}

/// A nats-server (`broker: {type: nats}`, memory engine for presence, no history).
pub fn nats(p: &Programs, dir: &Path, prefix: &str) -> anyhow::Result<Deployment> {
    let port = free_port();
    let mut c = Command::new(&p.nats_server);
    c.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    let server = Proc::spawn(c, port, &dir.join("nats.log"))?;
    let engine = json!({"broker": {"enabled": true, "type": "nats", "nats": {
        "url": format!("nats://127.0.0.1:{port}"), "prefix": prefix}}});
    Ok(Deployment {
        procs: vec![server],
        engine,
    })
}

/// A data plane with `engine` merged into a config of its own (API key, HMAC secret, channels
/// open to subscribers, no history), on a free port.
pub fn data_plane(
    p: &Programs,
    dir: &Path,
    name: &str,
    engine: &Value,
    api_key: &str,
    secret: &str,
) -> anyhow::Result<Proc> {
    let port = free_port();
    let mut config = json!({
        "http_server": {"address": "127.0.0.1", "port": port},
        "client": {"token": {"hmac_secret_key": secret}, "allowed_origins": ["*"]},
        "http_api": {"key": api_key},
        "channel": {"without_namespace": {"allow_subscribe_for_client": true}}
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), engine.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(&config)?)?;
    let mut c = Command::new(&p.data_plane);
    c.arg("--config").arg(&file).env("RUST_LOG", "warn");
    Proc::spawn(c, port, &dir.join(format!("{name}.log")))
}
