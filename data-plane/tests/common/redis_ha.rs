//! Private Redis deployments for one test, made of `redis-server` processes (the Debian
//! package's binary) on free local ports in a temporary directory, all killed on drop: a Redis
//! Cluster created with `redis-cli --cluster create` (optionally TLS only, with a CA the test
//! makes), and a primary with a replica watched by Sentinels (`redis-server --sentinel`). Each
//! start waits (bounded) until the deployment is ready; the fault helpers kill a primary and
//! wait until its replica has taken over.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::ExtendedKeyUsagePurpose;

use super::tls_ca::Ca;

/// How long a deployment may take to become ready, or to fail over.
const READY: Duration = Duration::from_secs(30);

/// A port `p` with `p + 10000` (a cluster node's bus port) free too.
pub fn free_port_pair() -> u16 {
    loop {
        let port = 20000 + (rand_u16() % 20000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
}

fn rand_u16() -> u16 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u16::from_le_bytes([bytes[0], bytes[1]])
}

/// Polls `ready` every 50 ms until it holds; panics with `what` after [`READY`].
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {READY:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("rotor-{kind}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// TLS material for servers: a CA and a certificate for `localhost` and 127.0.0.1.
pub struct ServerTls {
    pub ca: Ca,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl ServerTls {
    fn new(dir: &Path) -> Self {
        let ca = Ca::new("Rotor HA test CA");
        // Cluster nodes present it to each other as clients too (the bus is mutual TLS).
        let (cert, key) = ca.issue_for(
            &["localhost", "127.0.0.1"],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let tls = Self {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            ca,
        };
        std::fs::write(&tls.ca_file, tls.ca.pem()).unwrap();
        std::fs::write(&tls.cert_file, cert).unwrap();
        std::fs::write(&tls.key_file, key).unwrap();
        tls
    }

    /// redis-server options for TLS only on `port` (also for the cluster bus and replication).
    fn server_args(&self, port: u16) -> Vec<String> {
        let mut args: Vec<String> = ["--port", "0", "--tls-port"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push(port.to_string());
        for (option, file) in [
            ("--tls-cert-file", &self.cert_file),
            ("--tls-key-file", &self.key_file),
            ("--tls-ca-cert-file", &self.ca_file),
        ] {
            args.push(option.to_owned());
            args.push(file.display().to_string());
        }
        for a in [
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
            "--tls-cluster",
            "yes",
        ] {
            args.push(a.to_owned());
        }
        args
    }
}

/// One redis-server process.
struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    /// A data node with options `args`, its files in `dir`.
    fn spawn(dir: &Path, port: u16, args: &[String]) -> Self {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args([
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .arg("--dir")
            .arg(dir)
            .args(args);
        Self::start(command, port)
    }

    /// A Sentinel with config file `conf` (which it rewrites).
    fn sentinel(conf: &Path, port: u16) -> Self {
        let mut command = Command::new("redis-server");
        command.arg(conf).arg("--sentinel");
        Self::start(command, port)
    }

    fn start(mut command: Command, port: u16) -> Self {
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/install-test-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An admin connection to the server on `port` (TLS without verification when `tls`).
fn admin(port: u16, tls: bool) -> redis::Connection {
    let url = if tls {
        format!("rediss://127.0.0.1:{port}/#insecure")
    } else {
        format!("redis://127.0.0.1:{port}")
    };
    redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

/// `cmd args…` on the server on `port`, as text; `None` when it cannot be asked.
fn ask(port: u16, tls: bool, args: &[&str]) -> Option<String> {
    let url = if tls {
        format!("rediss://127.0.0.1:{port}/#insecure")
    } else {
        format!("redis://127.0.0.1:{port}")
    };
    let mut conn = redis::Client::open(url)
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<redis::Value>(&mut conn).ok()? {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::VerbatimString { text, .. } => Some(text),
        redis::Value::SimpleString(s) => Some(s),
        other => Some(format!("{other:?}")),
    }
}

/// A Redis Cluster of private processes.
pub struct RedisCluster {
    servers: Vec<Server>,
    pub tls: Option<ServerTls>,
    _dir: TempDir,
}

impl RedisCluster {
    /// `primaries` primaries with `replicas` replicas each, TLS only when `tls`; returns once
    /// every node reports `cluster_state:ok` and every replica is in sync.
    pub fn start(primaries: usize, replicas: usize, tls: bool) -> Self {
        let dir = TempDir::new("redis-cluster");
        let server_tls = tls.then(|| ServerTls::new(&dir.0));
        let mut servers = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let port = free_port_pair();
            let node_dir = dir.0.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            // Quick failure detection where a replica is to take over; elsewhere a slow
            // moment of a loaded machine must not mark a node failed.
            let node_timeout = if replicas > 0 { "1000" } else { "5000" };
            let mut args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                node_timeout,
                "--cluster-replica-validity-factor",
                "0",
                "--cluster-allow-replica-migration",
                "no",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            match &server_tls {
                Some(t) => args.extend(t.server_args(port)),
                None => args.extend(["--port".to_owned(), port.to_string()]),
            }
            servers.push(Server::spawn(&node_dir, port, &args));
        }
        let mut create = Command::new("redis-cli");
        if let Some(t) = &server_tls {
            create.arg("--tls").arg("--cacert").arg(&t.ca_file);
        }
        let status = create
            .arg("--cluster")
            .arg("create")
            .args(servers.iter().map(|s| format!("127.0.0.1:{}", s.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli on PATH (scripts/install-test-deps.sh installs it)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self {
            servers,
            tls: server_tls,
            _dir: dir,
        };
        let total = cluster.servers.len();
        for s in &cluster.servers {
            wait_until("cluster_state:ok on every node", || {
                ask(s.port, tls, &["CLUSTER", "INFO"]).is_some_and(|i| {
                    i.contains("cluster_state:ok")
                        && i.contains(&format!("cluster_known_nodes:{total}"))
                })
            });
        }
        cluster.wait_replicas_in_sync();
        cluster
    }

    fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Waits until every replica's link to its primary is up.
    fn wait_replicas_in_sync(&self) {
        for s in self.servers.iter().filter(|s| s.child.is_some()) {
            wait_until("replicas in sync", || {
                ask(s.port, self.is_tls(), &["INFO", "replication"]).is_some_and(|i| {
                    i.contains("role:master") || i.contains("master_link_status:up")
                })
            });
        }
    }

    /// The seed addresses for `engine.redis.cluster_address` (all nodes).
    pub fn seeds(&self) -> Vec<String> {
        let scheme = if self.is_tls() { "rediss" } else { "redis" };
        let host = if self.is_tls() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        self.servers
            .iter()
            .map(|s| format!("{scheme}://{host}:{}", s.port))
            .collect()
    }

    /// A live node's port.
    fn live_port(&self) -> u16 {
        self.servers
            .iter()
            .find(|s| s.child.is_some())
            .map(|s| s.port)
            .expect("a live node")
    }

    /// The port of the primary that holds `key`'s slot now, as a live node sees it.
    pub fn primary_of(&self, key: &str) -> u16 {
        let port = self.live_port();
        let mut conn = admin(port, self.is_tls());
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .unwrap();
        self.owner(slot).expect("the slot has an owner")
    }

    /// The port of the primary that serves `slot` (not failed), if any.
    fn owner(&self, slot: u16) -> Option<u16> {
        let nodes = ask(self.live_port(), self.is_tls(), &["CLUSTER", "NODES"])?;
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.contains("master") || flags.contains("fail") {
                return None;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut ends = range.split('-').map(|n| n.parse::<u16>());
                match (ends.next(), ends.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                    (Some(Ok(a)), None) => a == slot,
                    _ => false,
                }
            });
            let port = fields
                .get(1)?
                .split(['@', ','])
                .next()?
                .rsplit(':')
                .next()?;
            serves.then(|| port.parse().ok()).flatten()
        })
    }

    /// Kills the primary holding `key`'s slot (SIGKILL) and waits until a replica serves the
    /// slot and the cluster is ok again; returns how long the takeover took.
    pub fn kill_primary_of(&mut self, key: &str) -> Duration {
        let old = self.primary_of(key);
        let mut conn = admin(old, self.is_tls());
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .unwrap();
        drop(conn);
        let killed = Instant::now();
        self.servers
            .iter_mut()
            .find(|s| s.port == old)
            .unwrap()
            .kill();
        wait_until("a replica takes the slot over", || {
            self.owner(slot).is_some_and(|p| p != old)
                && ask(self.live_port(), self.is_tls(), &["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
        });
        killed.elapsed()
    }
}

impl RedisCluster {
    /// Moves `key`'s slot, with its keys, from its primary to another one the way
    /// `redis-cli --cluster reshard` does (IMPORTING/MIGRATING, MIGRATE in batches, then
    /// SETSLOT NODE everywhere); returns how long it took.
    pub fn migrate_slot_of(&mut self, key: &str) -> Duration {
        let started = Instant::now();
        let source = self.primary_of(key);
        let mut src = admin(source, false);
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut src)
            .unwrap();
        let target = self
            .servers
            .iter()
            .map(|s| s.port)
            .find(|p| {
                *p != source && ask(*p, false, &["ROLE"]).is_some_and(|r| r.contains("master"))
            })
            .expect("another primary");
        let mut dst = admin(target, false);
        let id = |conn: &mut redis::Connection| -> String {
            redis::cmd("CLUSTER").arg("MYID").query(conn).unwrap()
        };
        let (source_id, target_id) = (id(&mut src), id(&mut dst));
        let setslot = |conn: &mut redis::Connection, how: &str, node: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(how)
                .arg(node)
                .query::<()>(conn)
                .unwrap();
        };
        setslot(&mut dst, "IMPORTING", &source_id);
        setslot(&mut src, "MIGRATING", &target_id);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut src)
                .unwrap();
            if keys.is_empty() {
                break;
            }
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query::<()>(&mut src)
                .unwrap();
        }
        setslot(&mut dst, "NODE", &target_id);
        setslot(&mut src, "NODE", &target_id);
        for s in self.servers.iter().filter(|s| s.child.is_some()) {
            if s.port != source && s.port != target {
                setslot(&mut admin(s.port, false), "NODE", &target_id);
            }
        }
        wait_until("every node agrees on the slot's new owner", || {
            self.owner(slot) == Some(target)
        });
        started.elapsed()
    }
}

/// A primary, its replica and three Sentinels (quorum 2) watching them as `mymaster`.
pub struct SentinelGroup {
    primary: Server,
    replica: Server,
    sentinels: Vec<Server>,
    pub tls: Option<ServerTls>,
    _dir: TempDir,
}

pub const MASTER_NAME: &str = "mymaster";

impl SentinelGroup {
    /// Starts the group (every process TLS only when `tls`); returns once every Sentinel
    /// knows the replica and the other Sentinels (so a failover can happen).
    pub fn start(tls: bool) -> Self {
        let dir = TempDir::new("redis-sentinel");
        let server_tls = tls.then(|| ServerTls::new(&dir.0));
        let listen = |port: u16| match &server_tls {
            Some(t) => t.server_args(port),
            None => vec!["--port".into(), port.to_string()],
        };
        let port = free_port_pair();
        let primary = Server::spawn(&dir.0, port, &listen(port));
        let replica_port = free_port_pair();
        let replica_dir = dir.0.join("replica");
        std::fs::create_dir_all(&replica_dir).unwrap();
        let mut replica_args = listen(replica_port);
        replica_args.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
        let replica = Server::spawn(&replica_dir, replica_port, &replica_args);
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let sentinel_port = free_port_pair();
            let conf = dir.0.join(format!("sentinel-{i}.conf"));
            let listening = match &server_tls {
                Some(t) => format!(
                    "port 0\ntls-port {sentinel_port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                    t.cert_file.display(),
                    t.key_file.display(),
                    t.ca_file.display()
                ),
                None => format!("port {sentinel_port}\n"),
            };
            std::fs::write(
                &conf,
                format!(
                    "{listening}bind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n",
                    dir.0.display()
                ),
            )
            .unwrap();
            sentinels.push(Server::sentinel(&conf, sentinel_port));
        }
        let group = Self {
            primary,
            replica,
            sentinels,
            tls: server_tls,
            _dir: dir,
        };
        wait_until("the replica in sync", || {
            ask(group.replica.port, tls, &["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
        });
        for s in &group.sentinels {
            wait_until("every Sentinel knows the replica and the others", || {
                let known = |what: &str| {
                    let mut conn = admin(s.port, tls);
                    redis::cmd("SENTINEL")
                        .arg(what)
                        .arg(MASTER_NAME)
                        .query::<Vec<redis::Value>>(&mut conn)
                        .map(|v| v.len())
                        .unwrap_or(0)
                };
                known("replicas") == 1 && known("sentinels") == 2
            });
        }
        group
    }

    fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The Sentinels as `host:port`.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The primary's port as the Sentinels name it.
    fn named_primary(&self) -> Option<u16> {
        let mut conn = admin(self.sentinels[0].port, self.is_tls());
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query(&mut conn)
            .ok()?;
        Some(port)
    }

    /// Kills the primary (SIGKILL) and waits until the Sentinels name the replica and it
    /// answers as a primary; returns how long the failover took.
    pub fn kill_primary(&mut self) -> Duration {
        let killed = Instant::now();
        self.primary.kill();
        let replica = self.replica.port;
        wait_until("the Sentinels promote the replica", || {
            self.named_primary() == Some(replica)
                && ask(replica, self.is_tls(), &["ROLE"]).is_some_and(|r| r.contains("master"))
        });
        killed.elapsed()
    }
}
