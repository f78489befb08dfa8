//! A control plane spawned for one test, with its own database and tenant run directory, and
//! REST helpers to build projects through it. Tenant processes it started are killed on drop
//! (a control plane leaves them running on purpose, for the next one to adopt).

pub mod browser;
pub mod publisher;
pub mod ws;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{ProcessBuilder, TestDatabase, TestProcess};
use browser::Browser;

pub struct ControlPlane {
    pub db: TestDatabase,
    pub run_dir: PathBuf,
    pub process: Option<TestProcess>,
    pub base: String,
    pub http: reqwest::Client,
    /// Extra environment for the control-plane process.
    pub env: Vec<(String, String)>,
}

/// The engine a project runs on (its `engine` in the REST API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// History and presence in the tenant's memory.
    Memory,
    /// History and presence in Redis (the installation's, or the project's deployment).
    Redis,
}

impl Engine {
    /// The name the REST API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// A project made through the REST API, with what clients need.
pub struct Project {
    pub id: String,
    pub slug: String,
    pub key: String,
    pub secret: String,
}

impl ControlPlane {
    pub async fn start() -> Result<Self> {
        Self::start_with_env(&[]).await
    }

    /// A control plane whose tenants start as soon as their project exists instead of on their
    /// first request (`ROTOR_START_ON_DEMAND=0`): for tests that reach a tenant's process itself
    /// (its records, control group, admin listener) before any client does.
    pub async fn start_eager() -> Result<Self> {
        Self::start_with_env(&[("ROTOR_START_ON_DEMAND", "0")]).await
    }

    /// A control plane with extra environment variables (e.g. `ROTOR_TENANT_PRIVATE_EGRESS`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Result<Self> {
        Self::start_on(TestDatabase::create().await?, env).await
    }

    /// A control plane on `db` (which may live on a private Postgres server), with `env` added
    /// to its environment (e.g. `REDIS_URL` of a private Redis).
    pub async fn start_on(db: TestDatabase, env: &[(&str, &str)]) -> Result<Self> {
        let run_dir =
            std::env::temp_dir().join(format!("rotor-cp-test-{}", uuid::Uuid::new_v4().simple()));
        let mut cp = Self {
            db,
            run_dir,
            process: None,
            base: String::new(),
            http: reqwest::Client::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        cp.spawn().await?;
        Ok(cp)
    }

    /// Starts (or restarts) the control-plane process on a new port.
    pub async fn spawn(&mut self) -> Result<()> {
        let mut builder = ProcessBuilder::workspace_binary("rotor-control-plane")?;
        for (k, v) in &self.env {
            builder = builder.env(k, v);
        }
        let process = builder
            .arg("serve")
            .env("DATABASE_URL", self.db.url())
            .env("ROTOR_LISTEN", "127.0.0.1:0")
            .env("ROTOR_RUN_DIR", &self.run_dir)
            .env("ROTOR_EDGE_HEAD_TIMEOUT_MS", "1000")
            .listening_marker("rotor-control-plane listening on")
            .spawn()
            .await?;
        self.base = format!("http://{}", process.addr());
        self.process = Some(process);
        Ok(())
    }

    /// The operator's metrics address, for a control plane started with
    /// `ROTOR_METRICS_LISTEN`.
    pub fn metrics_url(&self) -> Result<String> {
        metrics_url_in(&self.process.as_ref().context("not running")?.output())
    }

    pub fn ws_url(&self, slug: &str) -> String {
        format!(
            "{}/t/{slug}/connection/websocket",
            self.base.replacen("http://", "ws://", 1)
        )
    }

    pub fn api_url(&self, slug: &str) -> String {
        format!("{}/t/{slug}/api", self.base)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method.parse()?, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Signs up and returns a management token.
    pub async fn account(&self, email: &str) -> Result<String> {
        let creds = json!({"email": email, "password": "a long password", "name": "e2e"});
        let (s, b) = self
            .call("POST", "/v1/signup", None, Some(creds.clone()))
            .await?;
        anyhow::ensure!(s == 201, "signup: {s} {b}");
        let (s, b) = self.call("POST", "/v1/tokens", None, Some(creds)).await?;
        anyhow::ensure!(s == 201, "token: {s} {b}");
        Ok(b["token"].as_str().context("token")?.to_owned())
    }

    /// Signs up in the dashboard as `email`, and gets a management token for the same account:
    /// the browser with its session, and the token.
    pub async fn dashboard_owner(&self, email: &str) -> Result<(Browser, String)> {
        let password = "a long enough password";
        let mut browser = Browser::new(&self.base);
        anyhow::ensure!(browser.signup(email, password).await? == 303, "signup");
        let creds = json!({"email": email, "password": password, "name": "ci"});
        let (status, token) = self.call("POST", "/v1/tokens", None, Some(creds)).await?;
        anyhow::ensure!(status == 201, "token: {status} {token}");
        let token = token["token"].as_str().context("token")?.to_owned();
        Ok((browser, token))
    }

    /// `GET /v1/projects/{id}`.
    pub async fn get_project(&self, token: &str, id: &str) -> Result<(u16, Value)> {
        self.call("GET", &project_path(id, ""), Some(token), None)
            .await
    }

    /// The `settings` of project `id` (which must be found).
    pub async fn project_settings(&self, token: &str, id: &str) -> Result<Value> {
        let (status, project) = self.get_project(token, id).await?;
        anyhow::ensure!(status == 200, "project {id}: {status} {project}");
        Ok(project["settings"].clone())
    }

    /// `PATCH /v1/projects/{id}` with `body`.
    pub async fn patch_project(&self, token: &str, id: &str, body: Value) -> Result<(u16, Value)> {
        self.call("PATCH", &project_path(id, ""), Some(token), Some(body))
            .await
    }

    /// `DELETE /v1/projects/{id}`.
    pub async fn delete_project(&self, token: &str, id: &str) -> Result<(u16, Value)> {
        self.call("DELETE", &project_path(id, ""), Some(token), None)
            .await
    }

    /// `PUT /v1/projects/{id}/namespaces/{name}` with `options`.
    pub async fn put_namespace(
        &self,
        token: &str,
        id: &str,
        name: &str,
        options: Value,
    ) -> Result<(u16, Value)> {
        let path = project_path(id, &format!("/namespaces/{name}"));
        self.call("PUT", &path, Some(token), Some(options)).await
    }

    /// `GET /v1/projects/{id}/secrets`.
    pub async fn secrets(&self, token: &str, id: &str) -> Result<(u16, Value)> {
        self.call("GET", &project_path(id, "/secrets"), Some(token), None)
            .await
    }

    /// Creates a project with an API key and the given namespaces, and waits until its tenant
    /// runs the latest config.
    pub async fn project(
        &self,
        token: &str,
        name: &str,
        namespaces: &[(&str, Value)],
    ) -> Result<Project> {
        self.project_on(token, name, Engine::Memory, namespaces)
            .await
    }

    /// [`ControlPlane::project`] on the given engine.
    pub async fn project_on(
        &self,
        token: &str,
        name: &str,
        engine: Engine,
        namespaces: &[(&str, Value)],
    ) -> Result<Project> {
        let engine = engine.as_str();
        let (s, p) = self
            .call(
                "POST",
                "/v1/projects",
                Some(token),
                Some(json!({"name": name, "engine": engine})),
            )
            .await?;
        anyhow::ensure!(s == 201 && p["engine"] == engine, "project: {s} {p}");
        let id = p["id"].as_str().context("id")?.to_owned();
        let (s, k) = self
            .call(
                "POST",
                &format!("/v1/projects/{id}/api-keys"),
                Some(token),
                Some(json!({"name": "backend"})),
            )
            .await?;
        anyhow::ensure!(s == 201, "key: {s} {k}");
        for (ns, options) in namespaces {
            let (s, b) = self.put_namespace(token, &id, ns, options.clone()).await?;
            anyhow::ensure!(s == 201, "namespace {ns}: {s} {b}");
        }
        let (_, secret) = self.secrets(token, &id).await?;
        self.wait_applied(token, &id).await?;
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

    /// Whether `project` is parked: its process stopped, its route kept.
    pub fn is_parked(&self, project: &Project) -> bool {
        self.run_dir.join(format!("{}.parked", project.id)).exists()
            && !self.run_dir.join(format!("{}.state", project.id)).exists()
    }

    /// Polls (parking is the absence of events) until `project` is parked, within `within`.
    pub async fn wait_parked(&self, project: &Project, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while !self.is_parked(project) {
            anyhow::ensure!(Instant::now() < deadline, "{} was not parked", project.slug);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Polls (there is no event to await) until the tenant reports the latest config version;
    /// returns how long that took.
    pub async fn wait_applied(&self, token: &str, id: &str) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let (_, p) = self.get_project(token, id).await?;
            if p["applied_version"] == p["config_version"] {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(15) {
                let log = self
                    .process
                    .as_ref()
                    .map(|p| p.output())
                    .unwrap_or_default();
                bail!("config of {id} not applied in time: {p}\ncontrol plane output:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Runs `rotor-control-plane operator ARGS…` against this control plane's database (the
    /// operator's own path for plans, status and limits); its stdout on success.
    pub async fn operator(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(crate::paths::binary_path("rotor-control-plane")?)
            .arg("operator")
            .args(args)
            .env("DATABASE_URL", self.db.url())
            .env("USER", "e2e-operator")
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "operator {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The process record the control plane keeps for a tenant.
    pub fn tenant_record(&self, id: &str) -> Result<Value> {
        let text = std::fs::read_to_string(self.run_dir.join(format!("{id}.state")))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Publishes through the edge with a project's API key.
    pub async fn publish(
        &self,
        project: &Project,
        channel: &str,
        data: Value,
    ) -> Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/publish", self.api_url(&project.slug)))
            .header("X-API-Key", &project.key)
            .body(json!({"channel": channel, "data": data}).to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// The REST path of project `id`, then `rest`.
fn project_path(id: &str, rest: &str) -> String {
    format!("/v1/projects/{id}{rest}")
}

/// The operator's metrics URL a control plane announced in its `output`.
pub fn metrics_url_in(output: &str) -> Result<String> {
    let addr = output
        .lines()
        .find_map(|l| l.split("rotor-control-plane metrics on ").nth(1))
        .map(|a| a.trim().to_owned())
        .context("no metrics listener announced")?;
    Ok(format!("http://{addr}/metrics"))
}

/// The value of one sample (`name` with its labels) of the operator's metrics at `url`.
pub async fn metric_sample(url: &str, sample: &str) -> Result<u64> {
    let text = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .text()
        .await?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .with_context(|| format!("no {sample} in:\n{text}"))?;
    Ok(value.trim().parse()?)
}

/// A namespace clients may subscribe to on their own, with presence.
pub fn open_chat() -> Value {
    json!({"allow_subscribe_for_client": true, "presence": true, "allow_presence_for_subscriber": true})
}

/// `s` percent-encoded for a query string (everything but unreserved characters).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs a connection token.
pub fn token(secret: &str, user: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": chrono_now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign token")
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// SIGKILL, ignoring a process that is already gone.
pub fn kill9(pid: i64) {
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
}

/// Removes the control groups of killed tenants, and their parents once empty (the kernel
/// refuses while a killed process is not yet reaped, so this retries for a moment).
fn remove_groups(groups: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    for group in groups {
        while std::fs::remove_dir(group).is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(parent) = group.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            if let Some(pid) = p.pid() {
                kill9(i64::from(pid));
            }
            drop(p);
        }
        let mut groups = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.run_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("state") {
                    continue;
                }
                let record = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .unwrap_or(Value::Null);
                if let Some(pid) = record["pid"].as_i64() {
                    kill9(pid);
                }
                groups.extend(
                    record["cgroups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(PathBuf::from),
                );
            }
        }
        // Groups of tenants that never wrote a record, and the parents.
        let parents: Vec<PathBuf> = std::fs::read_to_string(self.run_dir.join("cgroups"))
            .unwrap_or_default()
            .lines()
            .map(PathBuf::from)
            .collect();
        for parent in &parents {
            groups.extend(
                std::fs::read_dir(parent)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        remove_groups(&groups);
        for parent in &parents {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// A raw JSON-protocol connection through the edge; returns the close code if the server
/// closes it, or the connect reply.
pub async fn raw_connect(url: &str, token: &str) -> Result<Result<Value, u16>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await??;
    ws.send(Message::text(
        json!({"id": 1, "connect": {"token": token}}).to_string(),
    ))
    .await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(Ok(serde_json::from_str(&t)?)),
            Some(Ok(Message::Close(f))) => {
                return Ok(Err(f.map(|f| u16::from(f.code)).unwrap_or(1005)))
            }
            Some(Ok(_)) => continue,
            other => bail!("connection ended without a close frame: {other:?}"),
        }
    }
}

/// One answer read off a raw connection: status, whether it said `Connection: close`, body.
pub async fn read_answer(stream: &mut tokio::net::TcpStream) -> Result<(u16, bool, Value)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let status = head.get(9..12).unwrap_or_default().parse()?;
                    let close = head.lines().any(|l| l == "connection: close");
                    let body = serde_json::from_slice(&buf[end + 4..end + 4 + length])
                        .unwrap_or(Value::Null);
                    return anyhow::Ok((status, close, body));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            anyhow::ensure!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("no answer")?
}
