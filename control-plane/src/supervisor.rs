//! Tenant processes: one `rotor-data-plane` per active project, started with its compiled
//! config, watched, restarted with backoff when it dies, stopped on delete or suspend. A record
//! of each process (pid, address, admin token) is kept on disk so a restarted control plane
//! adopts running tenants instead of restarting them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cgroups::CpuStat;
use crate::ids::ProjectId;
pub use crate::routes::{Route, RouteTable};
use crate::sandbox::{ExitCause, Sandbox, SandboxError, TenantLimits};

/// Variables of the control plane's environment a tenant inherits: log settings and the
/// egress ports tenants' proxies and consumers may reach. Everything else is cleared.
pub const TENANT_ENV_PASSED: [&str; 4] = [
    "RUST_LOG",
    "RUST_BACKTRACE",
    "ROTOR_EGRESS_PORTS",
    "ROTOR_CONSUMER_EGRESS_PORTS",
];

/// How a supervised process can be reached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessRecord {
    pub pid: u32,
    pub addr: SocketAddr,
    pub admin_token: String,
    /// The process's admin listener (config push, status, usage, metrics): loopback only and
    /// never routed by the edge. Absent in records of processes from before it had one, which
    /// served admin routes on `addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_addr: Option<SocketAddr>,
    /// The Unix socket the process takes WebSocket connections on (SCM_RIGHTS hand-off from
    /// the edge); absent for processes started without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<PathBuf>,
    /// The process's control group directories (empty without cgroups): what cleans up after
    /// a control plane needs to find.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<PathBuf>,
    /// Whether the process pushes its usage and idleness ([`crate::parking`]); processes from
    /// before that are scraped.
    #[serde(default)]
    pub reports: bool,
}

impl ProcessRecord {
    /// `http://host:port` of the process's admin surface.
    pub fn admin_base(&self) -> String {
        format!("http://{}", self.admin_addr.unwrap_or(self.addr))
    }
}

/// Errors starting a tenant.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start {bin}: {source}")]
    Exec { bin: String, source: std::io::Error },
    #[error("tenant process exited before listening: {0}")]
    Exited(String),
    #[error("tenant process did not report its address in time")]
    Timeout,
    #[error("cannot write tenant files: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot confine tenant process: {0}")]
    Sandbox(#[from] SandboxError),
}

/// Starts and stops tenant processes (local child processes here; a Kubernetes driver would
/// implement the same contract, mapping [`TenantLimits`] to the pod's resources: memory
/// limit, CPU request/shares, pid limit, and the open-file limit of its container runtime;
/// the time slice has no pod field and would be set by the container's entry point).
#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Starts a tenant with `config_json` inside `limits`, enforced by the kernel from its
    /// first moment; resolves once it listens. `exited` is notified when the process ends.
    async fn start(
        &self,
        tenant: &ProjectId,
        config_json: &str,
        limits: &TenantLimits,
        exited: Arc<Notify>,
    ) -> Result<ProcessRecord, SpawnError>;
    /// Applies changed limits to a running tenant (its plan changed).
    async fn set_limits(
        &self,
        tenant: &ProjectId,
        record: &ProcessRecord,
        limits: &TenantLimits,
    ) -> Result<(), SandboxError>;
    /// Why a tenant's process ended, once it has (e.g. killed for exceeding its memory).
    async fn exit_cause(&self, tenant: &ProjectId) -> ExitCause;
    /// Releases what the driver held for a tenant whose process is gone (its control group).
    async fn release(&self, tenant: &ProjectId);
    /// Stops a tenant gracefully (SIGTERM, then SIGKILL after `grace`).
    async fn stop(&self, record: &ProcessRecord, grace: Duration);
    /// Whether a process from an earlier control plane is still ours and alive.
    async fn alive(&self, record: &ProcessRecord) -> bool;
    /// Whether a process this driver started has ended (a cheap check every pass makes for
    /// every running tenant; [`Driver::alive`] is the thorough one for adoption).
    fn gone(&self, record: &ProcessRecord) -> bool;
    /// How often a running tenant's CPU cap held it back so far (`None`: not measured here).
    fn cpu_stat(&self, tenant: &ProjectId) -> Option<CpuStat>;

    /// Processes an earlier control plane left running, keyed by tenant (to adopt).
    fn saved_records(&self) -> HashMap<ProjectId, ProcessRecord>;
    /// Forgets everything the driver keeps for a tenant that is gone for good.
    fn forget(&self, tenant: &ProjectId);
    /// Forgets what belonged to a tenant's process that ended (its log stays).
    fn forget_process(&self, tenant: &ProjectId);
    /// Releases what tenants that are gone still hold, keeping those named in `live` (groups
    /// left by a control plane killed before cleaning up).
    fn sweep(&self, live: &HashSet<String>);

    /// Remembers (or forgets) that `tenant` is parked, across control-plane restarts.
    fn mark_parked(&self, tenant: &ProjectId, parked: bool);
    /// Keeps a parked tenant's compiled config with its parking mark (version, kernel limits,
    /// config text), so waking it needs no database.
    fn keep_parked_config(
        &self,
        tenant: &ProjectId,
        version: i64,
        limits: &TenantLimits,
        config: &str,
    ) -> std::io::Result<()>;
    /// A parked tenant's kept config: its version, kernel limits and text.
    fn parked_config(&self, tenant: &ProjectId) -> Option<(i64, TenantLimits, String)>;
    /// The version of a parked tenant's kept config (start-up reads it for every one).
    fn parked_version(&self, tenant: &ProjectId) -> Option<i64>;
    /// The tenants marked parked.
    fn parked(&self) -> HashSet<ProjectId>;
}

/// The first line of a parking marker that keeps a config.
#[derive(Deserialize)]
struct ParkedHeader {
    version: i64,
    limits: TenantLimits,
}

/// Runs tenants as child processes of this machine.
pub struct LocalDriver {
    bin: PathBuf,
    dir: PathBuf,
    public_egress_only: bool,
    /// The service's own database addresses, refused to tenants' consumers
    /// (`ROTOR_EGRESS_DENY`, see [`crate::consumers::service_addresses`]).
    denied: String,
    sandbox: Sandbox,
    /// Exit statuses of the processes this control plane reaped, until read.
    exits: Arc<Mutex<HashMap<ProjectId, String>>>,
    /// Idle time after which tenants ask to be parked (`None`: never).
    park_after: Option<Duration>,
}

impl LocalDriver {
    /// Spawns `bin`, keeping config and state files in `dir`. Tenants may call only public
    /// addresses with their proxies and JWKS fetches (`ROTOR_EGRESS=public`) unless
    /// [`LocalDriver::allow_private_egress`] is called.
    /// Tenant limits are enforced with the cgroup hierarchy delegated to this process, when
    /// there is one ([`Sandbox::detect`]).
    pub fn new(bin: PathBuf, dir: PathBuf) -> std::io::Result<Self> {
        prepare_run_dir(&dir)?;
        let sandbox = Sandbox::detect(&dir);
        // Where the tenants' groups live, for whoever cleans up after this control plane.
        let parents: Vec<String> = sandbox
            .parents()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        std::fs::write(dir.join("cgroups"), parents.join("\n"))?;
        Ok(Self {
            bin,
            dir,
            public_egress_only: true,
            denied: String::new(),
            sandbox,
            exits: Arc::default(),
            park_after: None,
        })
    }

    /// Tenants idle for `after` ask to be parked ([`crate::parking`]).
    pub fn park_after(mut self, after: Option<Duration>) -> Self {
        self.park_after = after;
        self
    }

    /// The run directory: tenant configs, sockets, marks and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where tenants push their reports.
    pub fn report_socket(&self) -> PathBuf {
        crate::parking::socket_path(&self.dir)
    }

    /// How tenants are confined here (for the start-up log).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Lets tenants call private and loopback addresses (a backend on the same host or
    /// network, in development and tests).
    pub fn allow_private_egress(mut self, allow: bool) -> Self {
        self.public_egress_only = !allow;
        self
    }

    /// Addresses tenants' consumers may never connect to, even when public: the service's
    /// own databases.
    pub fn deny_addresses(mut self, addrs: &[std::net::SocketAddr]) -> Self {
        self.denied = crate::consumers::deny_list(addrs);
        self
    }

    /// The memory engine's webhook state of `tenant` (see `ROTOR_WEBHOOK_STATE_FILE`).
    fn webhook_state_path(&self, tenant: &ProjectId) -> PathBuf {
        self.dir.join(format!("{tenant}.webhooks.json"))
    }

    /// Where the config of `tenant` is written.
    pub fn config_path(&self, tenant: &ProjectId) -> PathBuf {
        self.dir.join(format!("{tenant}.json"))
    }

    /// Where `tenant` takes handed-over connections, next to its config; `None` when the path
    /// is too long for a Unix socket (the edge then proxies its WebSockets).
    pub fn handoff_path(&self, tenant: &ProjectId) -> Option<PathBuf> {
        let path = self.dir.join(format!("{tenant}.sock"));
        if rotor_handoff::path_fits(&path) {
            Some(path)
        } else {
            tracing::debug!(path = %path.display(), "run directory too deep for a hand-off socket; WebSockets will be proxied");
            None
        }
    }
}

/// The user id this process runs as (the owner of `/proc/self`).
fn effective_uid() -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// Where tenant configs, sockets and logs live unless `ROTOR_RUN_DIR` says otherwise: under
/// `/run/rotor` for root, else the user's runtime directory, else a per-user directory in the
/// system's temporary directory.
pub fn default_run_dir() -> PathBuf {
    match effective_uid() {
        Ok(0) => PathBuf::from("/run/rotor/tenants"),
        uid => match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("rotor/tenants"),
            None => std::env::temp_dir().join(format!(
                "rotor-tenants-{}",
                uid.map(|u| u.to_string()).unwrap_or_default()
            )),
        },
    }
}

/// Creates the run directory (0700) or accepts an existing one only when it is a real
/// directory owned by this process's user: tenant secrets and hand-off sockets go there, so a
/// directory another local user created in advance (or a symlink they planted) is refused.
pub fn prepare_run_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "run directory {} is not a plain directory; refusing to use it",
            dir.display()
        )));
    }
    let uid = effective_uid()?;
    if meta.uid() != uid {
        return Err(std::io::Error::other(format!(
            "run directory {} is owned by uid {}, not by this process (uid {uid}); refusing to use it",
            dir.display(),
            meta.uid()
        )));
    }
    set_private(dir, 0o700)
}

fn set_private(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[async_trait::async_trait]
impl Driver for LocalDriver {
    async fn start(
        &self,
        tenant: &ProjectId,
        config_json: &str,
        limits: &TenantLimits,
        exited: Arc<Notify>,
    ) -> Result<ProcessRecord, SpawnError> {
        self.sandbox.prepare(tenant)?;
        self.exits.lock().remove(tenant);
        let path = self.config_path(tenant);
        // Secrets live in this file: create it private before writing.
        std::fs::write(&path, b"")?;
        set_private(&path, 0o600)?;
        std::fs::write(&path, config_json)?;
        let admin_token = crate::secrets::random_token("adm_");
        // Logs go to a file, not a pipe: they must outlive this control plane, which a
        // tenant is meant to survive.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{tenant}.log")))?;
        let handoff = self.handoff_path(tenant);
        let mut command = std::process::Command::new(&self.bin);
        command
            .arg("--config")
            .arg(&path)
            .arg("--address")
            .arg("127.0.0.1")
            .arg("--port")
            .arg("0");
        if let Some(socket) = &handoff {
            command.arg("--handoff-socket").arg(socket);
        }
        // Nothing of the control plane's own environment reaches a tenant (its database URL,
        // the key that seals secrets, `ROTOR_…` or `CENTRIFUGO_…` options an operator set for
        // the control plane, which the data plane would otherwise overlay on every tenant's
        // config): only what is set here, and the few operator settings meant for tenants.
        command.env_clear();
        for name in TENANT_ENV_PASSED {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        // The plan's time slice, set between fork and exec so the process and every thread it
        // makes run with it from the first instruction.
        rotor_timeslice::on_exec(&mut command, limits.cpu_slice_us);
        let mut child = Command::from(command)
            .env("ROTOR_ADMIN_TOKEN", &admin_token)
            // The open-file limit is the plan's, set by this supervisor: not to be raised.
            .env("ROTOR_OPEN_FILES", "supervised")
            // Its thread budget (the pids limit), so its runtime sizes its blocking pool to it.
            .env("ROTOR_TASKS", limits.tasks.to_string())
            // Runtime workers to match its CPU cap: a process held to half a core gains
            // nothing from a second worker but the wakes the two trade.
            .env(
                "ROTOR_WORKERS",
                limits.cpu_max_percent.div_ceil(100).to_string(),
            )
            // Usage and idleness are pushed to the supervisor, not scraped.
            .env("ROTOR_REPORT_SOCKET", self.report_socket())
            .env("ROTOR_TENANT_ID", tenant.as_str())
            // Its log shares the run directory with every tenant: held to a byte budget.
            .env(
                "ROTOR_LOG_BYTES_PER_SECOND",
                crate::tenant_logs::LOG_BYTES_PER_SECOND.to_string(),
            )
            .env("ROTOR_EGRESS_DENY", &self.denied)
            // Where a memory-engine tenant keeps what its webhooks hold, so the process this
            // supervisor restarts after a crash reports the connections that died with it.
            .env("ROTOR_WEBHOOK_STATE_FILE", self.webhook_state_path(tenant))
            .env(
                "ROTOR_PARK_AFTER_MS",
                self.park_after
                    .map_or(0, |d| d.as_millis() as u64)
                    .to_string(),
            )
            .env(
                "ROTOR_EGRESS",
                if self.public_egress_only {
                    "public"
                } else {
                    "any"
                },
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::from(log))
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| SpawnError::Exec {
                bin: self.bin.display().to_string(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        // Into its group and under its limits before it can open a connection (it has only
        // just been exec'd; nothing of a tenant's traffic has reached it yet).
        if let Err(e) = self.sandbox.confine(tenant, pid, limits) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(e.into());
        }
        let stdout = child.stdout.take();
        let label = tenant.to_string();
        // The admin line comes first, then the public one.
        let (addr_tx, addr_rx) =
            tokio::sync::oneshot::channel::<(SocketAddr, Option<SocketAddr>)>();
        if let Some(stdout) = stdout {
            let label = label.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut tx = Some(addr_tx);
                let mut admin = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(addr) = line.strip_prefix("rotor-data-plane admin listening on ") {
                        if let Ok(addr) = addr.trim().parse() {
                            admin = Some(addr);
                            continue;
                        }
                    }
                    if let Some(addr) = line.strip_prefix("rotor-data-plane listening on ") {
                        if let (Some(tx), Ok(addr)) = (tx.take(), addr.trim().parse()) {
                            let _ = tx.send((addr, admin));
                            continue;
                        }
                    }
                    tracing::info!(tenant = %label, "{line}");
                }
            });
        }
        // The child is reaped by its own task, which reports the exit.
        let (dead_tx, dead_rx) = tokio::sync::oneshot::channel::<String>();
        let exits = self.exits.clone();
        let reaped = tenant.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let text = status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            tracing::warn!(tenant = %label, status = %text, "tenant process exited");
            exits.lock().insert(reaped, text.clone());
            let _ = dead_tx.send(text);
            exited.notify_one();
        });
        let (addr, admin_addr) = tokio::select! {
            addr = addr_rx => addr.map_err(|_| SpawnError::Timeout)?,
            status = dead_rx => return Err(SpawnError::Exited(status.unwrap_or_default())),
            _ = tokio::time::sleep(Duration::from_secs(15)) => {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status().await;
                return Err(SpawnError::Timeout);
            }
        };
        let record = ProcessRecord {
            pid,
            addr,
            admin_token,
            admin_addr,
            handoff,
            cgroups: self.sandbox.group_paths(tenant),
            reports: true,
        };
        let state = serde_json::to_vec(&record).unwrap_or_default();
        let state_path = self.dir.join(format!("{tenant}.state"));
        std::fs::write(&state_path, b"")?;
        set_private(&state_path, 0o600)?;
        std::fs::write(&state_path, state)?;
        Ok(record)
    }

    async fn stop(&self, record: &ProcessRecord, grace: Duration) {
        let pid = record.pid.to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status().await;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !pid_alive(record.pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = Command::new("kill").arg("-KILL").arg(&pid).status().await;
    }

    async fn set_limits(
        &self,
        tenant: &ProjectId,
        record: &ProcessRecord,
        limits: &TenantLimits,
    ) -> Result<(), SandboxError> {
        self.sandbox.update(tenant, record.pid, limits)
    }

    async fn exit_cause(&self, tenant: &ProjectId) -> ExitCause {
        let status = self.exits.lock().remove(tenant);
        self.sandbox.exit_cause(tenant, status)
    }

    async fn release(&self, tenant: &ProjectId) {
        self.sandbox.release(tenant).await;
    }

    fn cpu_stat(&self, tenant: &ProjectId) -> Option<CpuStat> {
        self.sandbox.cpu_stat(tenant)
    }

    fn gone(&self, record: &ProcessRecord) -> bool {
        !pid_alive(record.pid)
    }

    fn saved_records(&self) -> HashMap<ProjectId, ProcessRecord> {
        let mut out = HashMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("state") {
                continue;
            }
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(ProjectId::parse)
            else {
                continue;
            };
            if let Ok(record) = std::fs::read(&path)
                .map_err(|_| ())
                .and_then(|b| serde_json::from_slice(&b).map_err(|_| ()))
            {
                out.insert(id, record);
            }
        }
        out
    }

    fn forget(&self, tenant: &ProjectId) {
        self.forget_process(tenant);
        let _ = std::fs::remove_file(self.dir.join(format!("{tenant}.log")));
        self.mark_parked(tenant, false);
    }

    fn forget_process(&self, tenant: &ProjectId) {
        // A process that ended or parked leaves only the newest lines of its log.
        let log = self.dir.join(format!("{tenant}.log"));
        let kept = crate::tenant_logs::KEPT_LOG_BYTES;
        if let Err(e) = crate::tenant_logs::trim(&log, kept, kept) {
            tracing::warn!(%tenant, error = %e, "tenant log not cut");
        }
        let _ = std::fs::remove_file(self.dir.join(format!("{tenant}.state")));
        let _ = std::fs::remove_file(self.dir.join(format!("{tenant}.sock")));
        let _ = std::fs::remove_file(self.webhook_state_path(tenant));
        let _ = std::fs::remove_file(self.config_path(tenant));
    }

    fn sweep(&self, live: &HashSet<String>) {
        self.sandbox.sweep(live);
    }

    fn mark_parked(&self, tenant: &ProjectId, parked: bool) {
        let path = self.dir.join(format!("{tenant}.parked"));
        if parked {
            let _ = std::fs::write(path, b"");
        } else {
            let _ = std::fs::remove_file(path);
        }
    }

    fn keep_parked_config(
        &self,
        tenant: &ProjectId,
        version: i64,
        limits: &TenantLimits,
        config: &str,
    ) -> std::io::Result<()> {
        let header = serde_json::json!({"version": version, "limits": limits});
        let mut text = serde_json::to_string(&header).map_err(std::io::Error::other)?;
        text.push('\n');
        text.push_str(config);
        let path = self.dir.join(format!("{tenant}.parked"));
        let scratch = self.dir.join(format!("{tenant}.parked.tmp"));
        std::fs::write(&scratch, text)?;
        set_private(&scratch, 0o600)?;
        std::fs::rename(scratch, path)
    }

    fn parked_config(&self, tenant: &ProjectId) -> Option<(i64, TenantLimits, String)> {
        let text = std::fs::read_to_string(self.dir.join(format!("{tenant}.parked"))).ok()?;
        let (header, config) = text.split_once('\n')?;
        let header: ParkedHeader = serde_json::from_str(header).ok()?;
        Some((header.version, header.limits, config.to_owned()))
    }

    fn parked_version(&self, tenant: &ProjectId) -> Option<i64> {
        use std::io::BufRead as _;
        let file = std::fs::File::open(self.dir.join(format!("{tenant}.parked"))).ok()?;
        let mut header = String::new();
        std::io::BufReader::new(file).read_line(&mut header).ok()?;
        serde_json::from_str::<ParkedHeader>(&header)
            .ok()
            .map(|h| h.version)
    }

    fn parked(&self) -> HashSet<ProjectId> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                (path.extension()? == "parked")
                    .then(|| ProjectId::parse(path.file_stem()?.to_str()?))
                    .flatten()
            })
            .collect()
    }

    async fn alive(&self, record: &ProcessRecord) -> bool {
        if !pid_alive(record.pid) {
            return false;
        }
        let url = format!("{}/admin/status", record.admin_base());
        let client = crate::probe::direct_client();
        matches!(
            client.get(url).bearer_auth(&record.admin_token).timeout(Duration::from_secs(2)).send().await,
            Ok(r) if r.status().is_success()
        )
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub(crate) fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rotor-run-dir-test-{name}-{}",
            crate::secrets::random_token("")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn no_config_variable_passes_to_tenants() {
        // The data plane reads `ROTOR_<OPTION>` and `CENTRIFUGO_<OPTION>` as config; what
        // passes is log settings and the operator's egress ports, never a Centrifugo option.
        for name in TENANT_ENV_PASSED {
            assert!(!name.starts_with("CENTRIFUGO_"), "{name}");
        }
    }

    #[test]
    fn a_new_run_directory_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("new").join("tenants");
        prepare_run_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // An existing directory of ours with loose permissions is tightened.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        prepare_run_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_run_directory_planted_by_another_user_or_as_a_symlink_is_refused() {
        let dir = scratch("planted");
        std::fs::create_dir_all(&dir).unwrap();
        // Another local user (nobody) prepared the directory before Rotor started.
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534))
            .expect("the tests run as root (as CI does)");
        let err = prepare_run_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();

        let target = scratch("target");
        std::fs::create_dir_all(&target).unwrap();
        let link = scratch("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = prepare_run_dir(&link).unwrap_err().to_string();
        assert!(err.contains("not a plain directory"), "{err}");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&target).unwrap();
    }
}
