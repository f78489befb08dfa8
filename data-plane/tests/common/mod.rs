//! Test harness for data-plane integration tests: an in-process server on a free port and a
//! raw WebSocket client that speaks the JSON protocol and reads close codes.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rotor_data_plane::config::RuntimeConfig;
use rotor_data_plane::node::Node;
use rotor_tenant_config::TenantConfig;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod ha_traffic;
pub mod nats;
pub mod pb;
pub mod redis_ha;
pub mod tls_ca;

pub const SECRET: &str = "test-secret";
pub const ADMIN_TOKEN: &str = "admin-test-token";
pub const WAIT: Duration = Duration::from_secs(5);

/// A running data plane.
pub struct TestServer {
    /// The public listener.
    pub addr: std::net::SocketAddr,
    /// The admin listener (token [`ADMIN_TOKEN`]).
    pub admin_addr: std::net::SocketAddr,
    pub node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with `overrides` merged over a base config (HMAC secret, one `chat`
    /// namespace with history, recovery, presence and join/leave).
    pub async fn start(overrides: Value) -> Self {
        Self::start_with(overrides, true).await
    }

    /// The same without an admin listener, as a standalone process runs (`admin_addr` is then
    /// a closed port).
    pub async fn start_standalone(overrides: Value) -> Self {
        Self::start_with(overrides, false).await
    }

    /// The same with the Redis engine (REDIS_URL, default local) under `prefix`.
    pub async fn start_redis(overrides: Value, prefix: &str) -> Self {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut o =
            json!({"engine": {"type": "redis", "redis": {"address": url, "prefix": prefix}}});
        merge(&mut o, overrides);
        Self::start_with(o, true).await
    }

    /// The same with the NATS broker at `url` under subject prefix `prefix` and namespaces
    /// without history (the broker keeps none): `chat` with presence and join/leave.
    pub async fn start_nats(overrides: Value, url: &str, prefix: &str) -> Self {
        let mut o = json!({
            "broker": {"enabled": true, "type": "nats", "nats": {"url": url, "prefix": prefix}},
            "channel": {"namespaces": [{
                "name": "chat", "presence": true, "join_leave": true, "force_push_join_leave": true,
                "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
                "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true
            }]}
        });
        merge(&mut o, overrides);
        Self::start_with(o, true).await
    }

    async fn start_with(overrides: Value, with_admin: bool) -> Self {
        let mut base = json!({
            "client": {"token": {"hmac_secret_key": SECRET}},
            "http_api": {"key": "api-key"},
            "channel": {
                "without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_subscriber": true},
                "namespaces": [{
                    "name": "chat", "presence": true, "join_leave": true, "force_push_join_leave": true,
                    "history_size": 10, "history_ttl": "60s", "force_recovery": true,
                    "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
                    "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true
                }, {"name": "locked"}]
            }
        });
        merge(&mut base, overrides);
        let loaded = TenantConfig::from_value(base).expect("valid test config");
        let runtime = RuntimeConfig::compile(loaded.config).unwrap();
        let node = Node::from_config(runtime, "test".into())
            .await
            .expect("engine");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin = rotor_data_plane::admin::AdminListener::bind(
            rotor_data_plane::admin::DEFAULT_ADDRESS,
            ADMIN_TOKEN.to_owned(),
        )
        .await
        .unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let admin = with_admin.then_some(admin);
        let (tx, rx) = oneshot::channel::<()>();
        let n = node.clone();
        let task = tokio::spawn(async move {
            let _ = rotor_data_plane::server::serve(
                listener,
                n,
                async move {
                    let _ = rx.await;
                },
                Duration::from_secs(2),
                admin,
            )
            .await;
        });
        Self {
            addr,
            admin_addr,
            node,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    /// Triggers graceful shutdown and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Merges `over` into `base`, object by object.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// Signs an HS256 token with the test secret.
pub fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A raw JSON-protocol client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    /// Replies and pushes read but not yet consumed.
    backlog: std::collections::VecDeque<Value>,
    /// Later items of a frame that carried several.
    split: std::collections::VecDeque<Value>,
}

/// How the server ended a connection.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Client {
    pub async fn open(url: &str) -> Self {
        Self::open_with(url, &[]).await
    }

    pub async fn open_with(url: &str, headers: &[(&str, &str)]) -> Self {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect timeout")
            .expect("connect");
        Self::over(ws)
    }

    /// Opens a WebSocket to `url` over `stream` (a socket the test set up itself).
    pub async fn open_on(stream: TcpStream, url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("connect timeout")
        .expect("connect");
        Self::over(ws)
    }

    fn over(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            ws,
            next_id: 0,
            backlog: Default::default(),
            split: Default::default(),
        }
    }

    /// Sends one WebSocket message as it is (a ping frame, say).
    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// Opens and connects with a token for `user`; returns the connect result.
    pub async fn connected(url: &str, user: &str) -> (Self, Value) {
        let mut c = Self::open(url).await;
        let r = c
            .call(json!({"connect": {"token": token(json!({"sub": user}))}}))
            .await;
        assert!(r.get("connect").is_some(), "connect failed: {r}");
        (c, r["connect"].clone())
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// Sends a command with the next id; returns the id.
    pub async fn send(&mut self, mut cmd: Value) -> u32 {
        self.next_id += 1;
        cmd["id"] = json!(self.next_id);
        self.send_raw(&cmd.to_string()).await;
        self.next_id
    }

    /// Sends a command and waits for its reply (pushes stay in the backlog).
    pub async fn call(&mut self, cmd: Value) -> Value {
        let id = self.send(cmd).await;
        self.reply(id).await
    }

    /// Waits for the reply with `id`.
    pub async fn reply(&mut self, id: u32) -> Value {
        if let Some(pos) = self.backlog.iter().position(|v| v["id"] == json!(id)) {
            return self.backlog.remove(pos).unwrap();
        }
        loop {
            let v = self
                .read()
                .await
                .unwrap_or_else(|c| panic!("closed waiting for reply {id}: {c:?}"));
            if v["id"] == json!(id) {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    /// Waits for the next push (skipping pings).
    pub async fn push(&mut self) -> Value {
        if let Some(pos) = self.backlog.iter().position(|v| v.get("push").is_some()) {
            return self.backlog.remove(pos).unwrap()["push"].clone();
        }
        loop {
            let v = self
                .read()
                .await
                .unwrap_or_else(|c| panic!("closed waiting for push: {c:?}"));
            if v.get("push").is_some() {
                return v["push"].clone();
            }
            self.backlog.push_back(v);
        }
    }

    /// Reads one reply object (frames with several are split), skipping server pings.
    pub async fn read(&mut self) -> Result<Value, Closed> {
        self.read_within(WAIT)
            .await
            .expect("timed out waiting for the server")
    }

    /// [`Self::read`], `None` when nothing came within `wait`.
    pub async fn read_within(&mut self, wait: Duration) -> Option<Result<Value, Closed>> {
        if let Some(v) = self.split.pop_front() {
            return Some(Ok(v));
        }
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next()).await.ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let mut items: Vec<Value> = t
                        .split('\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            serde_json::from_str(l).unwrap_or_else(|e| {
                                panic!("server sent invalid JSON ({e}): {}", &l[..l.len().min(120)])
                            })
                        })
                        .filter(|v: &Value| v.as_object().is_some_and(|o| !o.is_empty()))
                        .collect();
                    if items.is_empty() {
                        continue;
                    }
                    let first = items.remove(0);
                    self.split.extend(items);
                    return Some(Ok(first));
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Some(Err(Closed { code, reason }));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Some(Err(Closed {
                        code: 1006,
                        reason: String::new(),
                    }))
                }
            }
        }
    }

    /// Waits until the server closes the connection; returns the close code.
    pub async fn closed(&mut self) -> Closed {
        if let Some(v) = self.backlog.pop_front() {
            panic!("expected close, have unread {v}");
        }
        loop {
            match self.read().await {
                Ok(_) => continue,
                Err(c) => return c,
            }
        }
    }

    /// Reads the next raw WebSocket message (for protobuf tests).
    pub async fn next_message(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("timeout")
            .expect("open")
            .expect("ok")
    }
}

/// The Redis the tests use (`REDIS_URL`, else the standard local port).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Removes the test's keys from Redis (a Redis that cannot be reached leaves them).
pub fn delete_keys(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(std::time::Duration::from_secs(2)) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
    }
}

/// A unique Redis key prefix for one test; its keys are deleted on drop.
pub struct Prefix(pub String);

impl Prefix {
    pub fn new() -> Self {
        Self(format!("rotor-test:{}:", uuid::Uuid::new_v4().simple()))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        delete_keys(&self.0);
    }
}

/// Calls the server API method `method` with the test key; the reply (asserting HTTP 200).
pub async fn api(s: &TestServer, method: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/{method}", s.addr))
        .header("x-api-key", "api-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A `rotor-data-plane` process started from a config file with a cleared environment (plus
/// `env`), its standard error collected.
pub struct Binary {
    pub child: tokio::process::Child,
    /// `127.0.0.1:PORT` of the public listener.
    pub addr: String,
    /// `127.0.0.1:PORT` of the admin listener (with `ROTOR_ADMIN_TOKEN` in the environment).
    pub admin_addr: Option<String>,
    stderr: Arc<parking_lot::Mutex<String>>,
    /// Resolves once standard error is closed and read.
    stderr_done: Option<oneshot::Receiver<()>>,
    config: std::path::PathBuf,
}

/// How a [`Binary`] start ended.
pub enum Started {
    Listening(Box<Binary>),
    /// The process exited before listening, with its standard error.
    Exited(String),
}

impl Binary {
    /// Starts the binary with `config` (written to a temporary file; `null`: no config file)
    /// and `env`.
    pub async fn start(config: &Value, env: &[(&str, &str)]) -> Started {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let path = std::env::temp_dir().join(format!(
            "rotor-dp-test-{}.json",
            uuid::Uuid::new_v4().simple()
        ));
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotor-data-plane"));
        if !config.is_null() {
            std::fs::write(&path, serde_json::to_vec(config).unwrap()).unwrap();
            command.arg("--config").arg(&path);
        }
        let mut child = command
            .args(["--address", "127.0.0.1", "--port", "0"])
            .env_clear()
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rotor-data-plane");
        let stderr = Arc::new(parking_lot::Mutex::new(String::new()));
        let (done_tx, done_rx) = oneshot::channel::<()>();
        {
            let stderr = stderr.clone();
            let mut pipe = child.stderr.take().unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    stderr.lock().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                let _ = done_tx.send(());
            });
        }
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut admin_addr = None;
        let listening = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("rotor-data-plane admin listening on ") {
                    admin_addr = Some(addr.to_owned());
                }
                if let Some(addr) = line.strip_prefix("rotor-data-plane listening on ") {
                    return Some(addr.to_owned());
                }
            }
            None
        })
        .await
        .expect("the binary neither listened nor exited in time");
        match listening {
            Some(addr) => Started::Listening(Box::new(Self {
                child,
                addr,
                admin_addr,
                stderr,
                stderr_done: Some(done_rx),
                config: path,
            })),
            None => {
                let _ = tokio::time::timeout(WAIT, child.wait()).await;
                let _ = tokio::time::timeout(WAIT, done_rx).await;
                let _ = std::fs::remove_file(&path);
                let text = stderr.lock().clone();
                Started::Exited(text)
            }
        }
    }

    /// Starts the binary and expects it to listen.
    pub async fn listening(config: &Value, env: &[(&str, &str)]) -> Self {
        match Self::start(config, env).await {
            Started::Listening(b) => *b,
            Started::Exited(stderr) => panic!("rotor-data-plane exited: {stderr}"),
        }
    }

    /// Starts the binary and expects it to refuse to start; returns its standard error.
    pub async fn refused(config: &Value, env: &[(&str, &str)]) -> String {
        match Self::start(config, env).await {
            Started::Exited(stderr) => stderr,
            Started::Listening(b) => panic!("rotor-data-plane started on {}", b.addr),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    /// Standard error so far.
    #[allow(dead_code)]
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().clone()
    }

    /// Standard error so far, once `done` holds for it (checked as it grows, at most
    /// [`WAIT`]); panics with what was written when it never does.
    #[allow(dead_code)]
    pub async fn stderr_until(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.stderr.lock().clone();
            if done(&text) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "standard error never showed what was awaited: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process and returns everything it wrote to standard error.
    pub async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        // The pipe closes with the process; what it wrote is then all read.
        if let Some(done) = self.stderr_done.take() {
            let _ = tokio::time::timeout(WAIT, done).await;
        }
        self.stderr.lock().clone()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}
