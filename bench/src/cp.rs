//! The control plane as the tenancy scenarios (`rotor-noisy`, `rotor-density`) drive it: its
//! REST API (sign-up, management token, projects, API keys, namespaces, secrets, applied config
//! versions), the operator CLI (plans and limits, against `DATABASE_URL`), the run directory
//! where it keeps its tenants' records (`{id}.state` with the pid and address while a tenant
//! runs, `{id}.parked` while it is parked), and connection tokens for a project's clients.
//! The control plane itself is started and cleaned up by `scripts/bench/run.sh`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use clap::Args;
use serde_json::{json, Value};

/// Where the control plane runs (as started by `scripts/bench/run.sh`).
#[derive(Debug, Clone, Args)]
pub struct CpArgs {
    /// The control plane's public URL (edge + REST API).
    #[arg(long)]
    pub base: String,
    /// Its database, for the operator CLI.
    #[arg(long)]
    pub database_url: String,
    /// The `rotor-control-plane` binary (for `operator …`).
    #[arg(long)]
    pub cp_bin: PathBuf,
    /// Its `ROTOR_RUN_DIR`.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Its process id (CPU time, open files).
    #[arg(long)]
    pub cp_pid: u32,
    /// Its `ROTOR_TENANT_HOST` (`{slug}.tenants.bench`), when projects are served at their own
    /// host (their clients dial `ROTOR_BENCH_CONNECT_TO`, see [`crate::resolve`]).
    #[arg(long)]
    pub tenant_host: Option<String>,
}

/// What the control plane records for a running tenant (the fields used here).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TenantRecord {
    pub pid: u32,
    pub addr: SocketAddr,
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

/// A project made through the REST API.
#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub slug: String,
}

/// A REST client of one account, plus the operator's and the run directory's views.
pub struct ControlPlane {
    pub args: CpArgs,
    pub http: reqwest::Client,
    token: String,
}

impl ControlPlane {
    /// Signs `email` up (a fresh database: sign-ups are limited per address per hour) and takes
    /// a management token.
    pub async fn sign_up(args: &CpArgs, email: &str) -> anyhow::Result<Self> {
        let mut cp = Self {
            args: args.clone(),
            http: crate::resolve::http_client(reqwest::Client::builder())
                .pool_max_idle_per_host(64)
                .timeout(Duration::from_secs(30))
                .build()?,
            token: String::new(),
        };
        let creds = json!({"email": email, "password": "rotor-bench-password", "name": "bench"});
        let (s, b) = cp.call("POST", "/v1/signup", Some(creds.clone())).await?;
        ensure!(s == 201, "signup: {s} {b}");
        let (s, b) = cp.call("POST", "/v1/tokens", Some(creds)).await?;
        ensure!(s == 201, "token: {s} {b}");
        cp.token = b["token"].as_str().context("token")?.to_owned();
        Ok(cp)
    }

    /// One REST call with the management token: status and JSON body (`Null` if not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method.parse()?, format!("{}{path}", self.args.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Creates a memory-engine project.
    pub async fn create_project(&self, name: &str) -> anyhow::Result<Project> {
        let (s, p) = self
            .call(
                "POST",
                "/v1/projects",
                Some(json!({"name": name, "engine": "memory"})),
            )
            .await?;
        ensure!(s == 201, "project {name}: {s} {p}");
        Ok(Project {
            id: p["id"].as_str().context("id")?.to_owned(),
            slug: p["slug"].as_str().context("slug")?.to_owned(),
        })
    }

    /// A new API key of a project.
    pub async fn api_key(&self, project: &str) -> anyhow::Result<String> {
        let (s, k) = self
            .call(
                "POST",
                &format!("/v1/projects/{project}/api-keys"),
                Some(json!({"name": "bench"})),
            )
            .await?;
        ensure!(s == 201, "api key: {s} {k}");
        Ok(k["key"].as_str().context("key")?.to_owned())
    }

    /// The project's connection-token HMAC secret.
    pub async fn secret(&self, project: &str) -> anyhow::Result<String> {
        let (s, b) = self
            .call("GET", &format!("/v1/projects/{project}/secrets"), None)
            .await?;
        ensure!(s == 200, "secrets: {s} {b}");
        Ok(b["token_hmac_secret"]
            .as_str()
            .context("token_hmac_secret")?
            .to_owned())
    }

    /// Creates (or replaces) a namespace.
    pub async fn namespace(&self, project: &str, name: &str, options: Value) -> anyhow::Result<()> {
        let (s, b) = self
            .call(
                "PUT",
                &format!("/v1/projects/{project}/namespaces/{name}"),
                Some(options),
            )
            .await?;
        ensure!(s == 200 || s == 201, "namespace {name}: {s} {b}");
        Ok(())
    }

    /// Polls (there is no event to await) until the tenant runs the project's latest config.
    pub async fn wait_applied(&self, project: &str, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let (_, p) = self
                .call("GET", &format!("/v1/projects/{project}"), None)
                .await?;
            if !p["config_version"].is_null() && p["applied_version"] == p["config_version"] {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!("config of {project} not applied within {limit:?}: {p}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `rotor-control-plane operator ARGS…` against the control plane's database.
    pub async fn operator(&self, args: &[&str]) -> anyhow::Result<String> {
        let run = tokio::process::Command::new(&self.args.cp_bin)
            .arg("operator")
            .args(args)
            .env("DATABASE_URL", &self.args.database_url)
            .env("USER", "rotor-bench")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .context("operator command timed out")??;
        ensure!(
            out.status.success(),
            "operator {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The record of a running tenant (None while it is starting, parked or gone).
    pub fn record(&self, project: &str) -> Option<TenantRecord> {
        let text = std::fs::read_to_string(self.args.run_dir.join(format!("{project}.state")));
        serde_json::from_str(&text.ok()?).ok()
    }

    /// Waits (bounded) for a running tenant's record.
    pub async fn wait_record(
        &self,
        project: &str,
        limit: Duration,
    ) -> anyhow::Result<TenantRecord> {
        let started = Instant::now();
        loop {
            if let Some(r) = self.record(project) {
                return Ok(r);
            }
            ensure!(
                started.elapsed() < limit,
                "no running tenant for {project} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Project ids with a file of this extension in the run directory (`state`: running,
    /// `parked`: parked).
    pub fn ids_with(&self, extension: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.args.run_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                (path.extension()? == extension)
                    .then(|| path.file_stem()?.to_str().map(str::to_owned))
                    .flatten()
            })
            .collect()
    }

    /// Every running tenant's record.
    pub fn running(&self) -> Vec<(String, TenantRecord)> {
        self.ids_with("state")
            .into_iter()
            .filter_map(|id| self.record(&id).map(|r| (id, r)))
            .collect()
    }

    /// Whether a project is parked now.
    pub fn is_parked(&self, project: &str) -> bool {
        self.args.run_dir.join(format!("{project}.parked")).exists()
    }

    /// Whether a parked project's marker holds its kept config (it ran, then parked).
    pub fn keeps_config(&self, project: &str) -> bool {
        std::fs::metadata(self.args.run_dir.join(format!("{project}.parked")))
            .is_ok_and(|m| m.len() > 0)
    }

    /// The client WebSocket endpoint of a project through the edge.
    pub fn ws_url(&self, slug: &str) -> String {
        format!(
            "{}/connection/websocket",
            self.project_base(slug).replacen("http://", "ws://", 1)
        )
    }

    /// A server API method of a project through the edge.
    pub fn api_url(&self, slug: &str, method: &str) -> String {
        format!("{}/api/{method}", self.project_base(slug))
    }

    /// Where a project is served: its own host on the edge's port, or `/t/{slug}` on the base.
    fn project_base(&self, slug: &str) -> String {
        let base = &self.args.base;
        match &self.args.tenant_host {
            Some(pattern) => {
                let port = base.rsplit_once(':').map_or("80", |(_, p)| p);
                format!("http://{}:{port}", pattern.replace("{slug}", slug))
            }
            None => format!("{base}/t/{slug}"),
        }
    }
}

/// How tenants are confined, from a running tenant's record: its control groups, or none.
pub fn confinement(record: Option<&TenantRecord>) -> String {
    match record {
        Some(r) if !r.cgroups.is_empty() => {
            let names: Vec<String> = r
                .cgroups
                .iter()
                .filter_map(|g| {
                    // /sys/fs/cgroup/<controller>/… on v1; the unified hierarchy on v2.
                    let rest = g.strip_prefix("/sys/fs/cgroup").ok()?;
                    let first = rest.components().next()?.as_os_str().to_str()?;
                    Some(first.to_owned())
                })
                .collect();
            format!("cgroups ({}) + rlimits", names.join(", "))
        }
        Some(_) => "rlimits only (no delegated cgroup hierarchy)".into(),
        None => "unknown".into(),
    }
}

/// A HS256 connection token for `user`, subscribed server-side to `channels`.
pub fn token(secret: &str, user: &str, channels: &[&str]) -> anyhow::Result<String> {
    let exp = crate::payload::now_micros() / 1_000_000 + 86_400;
    let mut claims = json!({"sub": user, "exp": exp});
    if !channels.is_empty() {
        claims["channels"] = json!(channels);
    }
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Percentiles of a list of durations, in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Timing {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Timing {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let i = ((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1;
            ms[i]
        };
        Self {
            count: ms.len() as u64,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let t = Timing::of(&samples);
        assert_eq!(
            (t.count, t.p50_ms, t.p99_ms, t.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert_eq!(Timing::of(&[]).count, 0);
    }

    #[test]
    fn tokens_carry_server_side_channels() {
        let t = token("s", "u", &["news"]).unwrap();
        let mut v = jsonwebtoken::Validation::default();
        v.validate_exp = false;
        let d =
            jsonwebtoken::decode::<Value>(&t, &jsonwebtoken::DecodingKey::from_secret(b"s"), &v)
                .unwrap();
        assert_eq!(d.claims["channels"], json!(["news"]));
    }
}
