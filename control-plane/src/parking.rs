//! Idle tenants cost nothing: what tenants push to the control plane and when they are parked.
//!
//! Each supervised tenant sends datagrams to `reports.sock` in the run directory (see the data
//! plane's `report` module): its usage counters when they changed, which are metered here
//! exactly as a scrape would be, gathered for a second and written in one transaction
//! ([`crate::usage::record_many`]), and an `idle` notice once it has
//! held no socket and seen no traffic for [`park_after`], which asks the reconciler to park it
//! (stop the process, keep its state: the route becomes [`crate::routes::Route::Parked`]
//! and the edge wakes it on the next request). A usage report also names the API keys used
//! since the last one, whose `last_used_at` is then moved on
//! ([`crate::usage::record_key_use`]). A datagram counts only when it names a running
//! tenant and carries that process's admin token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::UnixDatagram;
use tokio_util::sync::CancellationToken;

use crate::ids::ProjectId;
use crate::supervisor::RouteTable;
use crate::usage::Snapshot;

/// Largest report accepted (a usage snapshot with many namespaces).
const MAX_REPORT: usize = 256 * 1024;

/// How long a tenant must be idle before it is parked: `ROTOR_PARK_AFTER_MS` (default ten
/// minutes; 0 = never park).
pub fn park_after() -> Option<Duration> {
    let ms = std::env::var("ROTOR_PARK_AFTER_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(600_000);
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Whether tenants start only when asked for (their first request through the edge, or a
/// restart after a crash) instead of as soon as their project exists: `ROTOR_START_ON_DEMAND`
/// (default on; `0` turns it off), and only where tenants are parked at all.
pub fn start_on_demand() -> bool {
    park_after().is_some()
        && std::env::var("ROTOR_START_ON_DEMAND").map_or(true, |v| v.trim() != "0")
}

/// The most tenant processes the box runs at once: `ROTOR_MAX_RUNNING_TENANTS`, by default the
/// smaller of a quarter of the control plane's soft open-file limit (it holds about two
/// descriptors per running tenant, and the edge needs the rest) and how many tenants of the
/// smallest plan fit in the memory available at start-up (`MemAvailable` over that plan's
/// memory limit, see [`learn_smallest_plan_memory`]), between 16 and 10,000. Only where
/// tenants are parked: a wake past it parks the longest-idle tenant that can be parked without
/// loss, or is refused (see [`crate::reconciler`]).
pub fn max_running_tenants() -> usize {
    let by_files = rotor_tenant_config::fdlimit::soft_limit() / 4;
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| mem_available_bytes(&info));
    let default = default_max_running(by_files, memory, smallest_plan_memory_bytes());
    crate::settings::positive_env("ROTOR_MAX_RUNNING_TENANTS", default)
}

/// The default tenant cap from the open-file quarter and, where both are known, the memory
/// available over one tenant's memory limit; between 16 and 10,000.
fn default_max_running(by_files: u64, available: Option<u64>, per_tenant: Option<u64>) -> usize {
    let by_memory = match (available, per_tenant) {
        (Some(available), Some(per_tenant)) if per_tenant > 0 => available / per_tenant,
        _ => u64::MAX,
    };
    by_files.min(by_memory).clamp(16, 10_000) as usize
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The memory limit of the smallest plan that has one, in MiB, as read at start-up.
static SMALLEST_PLAN_MEMORY_MB: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The free plan's memory limit as shipped, for a process that did not read the plans.
const DEFAULT_PLAN_MEMORY_MB: u64 = 256;

fn smallest_plan_memory_bytes() -> Option<u64> {
    let mb = SMALLEST_PLAN_MEMORY_MB
        .get()
        .copied()
        .unwrap_or(DEFAULT_PLAN_MEMORY_MB);
    (mb > 0).then(|| mb.saturating_mul(1024 * 1024))
}

/// Reads the smallest `tenant_memory_mb` among the plans that set one (0 means unlimited and
/// is left out; with none, memory does not bound the cap), for [`max_running_tenants`]. Call
/// once at start-up, before the cap is first asked for.
pub async fn learn_smallest_plan_memory(pool: &PgPool) -> Result<(), sqlx::Error> {
    let smallest: Option<i64> = sqlx::query_scalar(
        "SELECT min((limits->>'tenant_memory_mb')::bigint) FROM plans \
         WHERE (limits->>'tenant_memory_mb')::bigint > 0",
    )
    .fetch_one(pool)
    .await?;
    let _ = SMALLEST_PLAN_MEMORY_MB.set(smallest.map_or(0, |mb| mb as u64));
    Ok(())
}

/// The report socket of a run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("reports.sock")
}

#[derive(Deserialize)]
struct Report {
    tenant: String,
    token: String,
    kind: String,
    #[serde(default)]
    usage: Option<Snapshot>,
    /// API keys (by id) used since the tenant's last report: the minute of their last use
    /// (unix seconds).
    #[serde(default)]
    keys_used: BTreeMap<String, i64>,
}

/// Binds the report socket (replacing a stale one).
pub fn bind(path: &Path) -> std::io::Result<UnixDatagram> {
    let _ = std::fs::remove_file(path);
    let socket = UnixDatagram::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(socket)
}

/// How long usage reports are gathered before they are written together (one transaction
/// for every tenant that reported meanwhile; see [`crate::usage::record_many`]).
const USAGE_BATCH: Duration = Duration::from_secs(1);

/// Usage reports received and not yet written: the latest reading of each tenant, and the
/// API keys they used.
#[derive(Default)]
struct Pending {
    usage: std::collections::HashMap<ProjectId, Snapshot>,
    keys: Vec<(ProjectId, BTreeMap<String, i64>)>,
}

impl Pending {
    /// Writes what was gathered; a batch the database refuses (a project deleted meanwhile,
    /// say) is written tenant by tenant, so one bad reading loses only itself.
    async fn flush(&mut self, pool: &PgPool) {
        let readings: Vec<(ProjectId, Snapshot)> =
            std::mem::take(&mut self.usage).into_iter().collect();
        let now = chrono::Utc::now();
        if let Err(e) = crate::usage::record_many(pool, &readings, now).await {
            tracing::debug!(tenants = readings.len(), error = %e, "usage batch refused; writing tenant by tenant");
            for (tenant, snapshot) in &readings {
                if let Err(e) = crate::usage::record(pool, tenant, snapshot, now).await {
                    tracing::warn!(%tenant, error = %e, "pushed usage not recorded");
                }
            }
        }
        for (tenant, used) in std::mem::take(&mut self.keys) {
            if let Err(e) = crate::usage::record_key_use(pool, &tenant, &used).await {
                tracing::warn!(%tenant, error = %e, "API key use not recorded");
            }
        }
    }
}

/// Receives reports until `stop`.
pub async fn receive(
    socket: UnixDatagram,
    pool: PgPool,
    routes: Arc<RouteTable>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_REPORT];
    let mut pending = Pending::default();
    // When what is pending is written: [`USAGE_BATCH`] after the first report of a batch.
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        let due =
            flush_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let n = tokio::select! {
            _ = stop.cancelled() => {
                pending.flush(&pool).await;
                return;
            }
            _ = tokio::time::sleep_until(due), if flush_at.is_some() => {
                flush_at = None;
                pending.flush(&pool).await;
                continue;
            }
            r = socket.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "report socket");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(report) = serde_json::from_slice::<Report>(&buf[..n]) else {
            tracing::debug!(bytes = n, "malformed report ignored");
            continue;
        };
        let Some(tenant) = ProjectId::parse(&report.tenant) else {
            continue;
        };
        let Some(process) = routes.process(&tenant) else {
            tracing::debug!(%tenant, "report from a tenant that is not running ignored");
            continue;
        };
        if !rotor_tenant_config::secret_eq::secret_eq(
            process.admin_token.as_bytes(),
            report.token.as_bytes(),
        ) {
            tracing::warn!(%tenant, "report with a wrong token ignored");
            continue;
        }
        match (report.kind.as_str(), report.usage) {
            ("usage", Some(snapshot)) => {
                // Usage is pushed when it changed: the tenant was active (see
                // `RouteTable::touch`, which orders who is parked first to make room).
                routes.touch(&tenant);
                if !report.keys_used.is_empty() {
                    pending.keys.push((tenant.clone(), report.keys_used));
                }
                // A later reading of the same process holds the earlier one; a reading of a
                // new process (the tenant was parked and woken meanwhile) does not, so what
                // the old one counted is written first.
                if pending
                    .usage
                    .get(&tenant)
                    .is_some_and(|earlier| earlier.node != snapshot.node)
                {
                    pending.flush(&pool).await;
                }
                pending.usage.insert(tenant, snapshot);
                flush_at.get_or_insert_with(|| tokio::time::Instant::now() + USAGE_BATCH);
            }
            ("idle", _) => routes.request_park(tenant),
            (kind, _) => tracing::debug!(%tenant, kind, "unknown report ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tenant_cap_respects_both_open_files_and_memory() {
        const MIB: u64 = 1024 * 1024;
        let meminfo =
            "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    2097152 kB\n";
        let available = mem_available_bytes(meminfo);
        assert_eq!(available, Some(2048 * MIB));
        // 2 GiB over 256 MiB tenants: 8, raised to the floor of 16.
        assert_eq!(default_max_running(5_000, available, Some(256 * MIB)), 16);
        // 2 GiB over 64 MiB tenants: 32, below the open-file quarter.
        assert_eq!(default_max_running(5_000, available, Some(64 * MIB)), 32);
        // Plenty of memory: the open files bound it.
        assert_eq!(default_max_running(250, Some(1 << 40), Some(64 * MIB)), 250);
        // Unknown memory or unlimited plans: open files alone, within the bounds.
        assert_eq!(default_max_running(5_000, None, Some(64 * MIB)), 5_000);
        assert_eq!(default_max_running(50_000, available, None), 10_000);
    }
}
