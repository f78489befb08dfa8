//! Telling a project's owner that its plan's CPU cap holds it back. A tenant at its cap is not
//! killed or restarted: the kernel lets it run for its quota of each 100 ms period and makes it
//! wait out the rest, so its users see latency and nothing else says why. Every
//! [`sample_every`] this task reads each running tenant's `cpu.stat` through the driver; a
//! tenant held back in at least [`REPORT_AT`] of the periods it ran in since the last sample
//! gets a `cpu_throttled` event (REST `/v1/projects/{id}/events`) and an audit entry by the
//! supervisor (the dashboard's audit page), at most once per [`quiet_for`] per project, so a
//! tenant that lives at its cap is told, not flooded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cgroups::CpuStat;
use crate::ids::ProjectId;
use crate::routes::RouteTable;
use crate::state::AppState;
use crate::supervisor::Driver;
use crate::tenant_events;

/// Share of the periods a tenant ran in that it must have been held back in to be told.
pub const REPORT_AT: f64 = 0.10;

/// How often tenants' CPU counters are read: a minute, or `ROTOR_CPU_THROTTLE_SAMPLE_MS`.
pub fn sample_every() -> Duration {
    millis_from_env("ROTOR_CPU_THROTTLE_SAMPLE_MS", 60_000)
}

/// How long after telling an owner the same project is not told again: an hour, or
/// `ROTOR_CPU_THROTTLE_QUIET_MS`.
pub fn quiet_for() -> Duration {
    millis_from_env("ROTOR_CPU_THROTTLE_QUIET_MS", 3_600_000)
}

fn millis_from_env(name: &str, default: u64) -> Duration {
    let ms = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|ms| *ms > 0)
        .unwrap_or(default);
    Duration::from_millis(ms)
}

/// What a tenant's cap did to it over one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttled {
    /// Periods it ran in.
    pub periods: u64,
    /// Of which it was held back in.
    pub throttled: u64,
    /// Over how long.
    pub over: Duration,
}

/// The last sample of each tenant, and when each was last reported.
#[derive(Debug)]
pub struct Watch {
    quiet_for: Duration,
    last: HashMap<ProjectId, (CpuStat, Instant)>,
    reported: HashMap<ProjectId, Instant>,
}

impl Watch {
    pub fn new(quiet_for: Duration) -> Self {
        Self {
            quiet_for,
            last: HashMap::new(),
            reported: HashMap::new(),
        }
    }

    /// Takes a tenant's counters at `now`: what to tell its owner, if anything.
    pub fn observe(&mut self, id: &ProjectId, stat: CpuStat, now: Instant) -> Option<Throttled> {
        let (before, at) = self.last.insert(id.clone(), (stat, now))?;
        // Counters that went down belong to a new group (the tenant restarted): a fresh start.
        let periods = stat.periods.checked_sub(before.periods)?;
        let throttled = stat.throttled.checked_sub(before.throttled)?;
        if periods == 0 || (throttled as f64) < REPORT_AT * periods as f64 {
            return None;
        }
        if self
            .reported
            .get(id)
            .is_some_and(|t| now.duration_since(*t) < self.quiet_for)
        {
            return None;
        }
        self.reported.insert(id.clone(), now);
        Some(Throttled {
            periods,
            throttled,
            over: now.duration_since(at),
        })
    }

    /// Forgets tenants that no longer run.
    pub fn retain(&mut self, running: &dyn Fn(&ProjectId) -> bool) {
        self.last.retain(|id, _| running(id));
    }
}

/// Samples the running tenants until `stop`.
pub async fn run<D: Driver>(
    state: AppState,
    driver: Arc<D>,
    routes: Arc<RouteTable>,
    stop: CancellationToken,
) {
    let every = sample_every();
    let mut watch = Watch::new(quiet_for());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let running = routes.processes();
        let now = Instant::now();
        let mut told = Vec::new();
        for (id, _) in &running {
            if let Some(stat) = driver.cpu_stat(id) {
                if let Some(t) = watch.observe(id, stat, now) {
                    told.push((id.clone(), t));
                }
            }
        }
        let ids: std::collections::HashSet<&ProjectId> = running.iter().map(|(id, _)| id).collect();
        watch.retain(&|id| ids.contains(id));
        for (id, t) in told {
            tracing::info!(tenant = %id, periods = t.periods, throttled = t.throttled, "tenant held back by its CPU cap; its owner is told");
            if let Err(e) = tenant_events::record_cpu_throttled(&state.pool, &id, &t).await {
                tracing::warn!(tenant = %id, error = %e, "cannot record the CPU throttle event");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(periods: u64, throttled: u64) -> CpuStat {
        CpuStat { periods, throttled }
    }

    #[test]
    fn a_tenant_held_back_often_is_reported_once_per_quiet_period() {
        let mut w = Watch::new(Duration::from_secs(3600));
        let id = ProjectId(String::from("prj_p1"));
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(w.observe(&id, stat(100, 5), t0), None, "no baseline yet");
        // 600 periods, 60 throttled: exactly the threshold.
        let told = w.observe(&id, stat(700, 65), t0 + minute).unwrap();
        assert_eq!((told.periods, told.throttled, told.over), (600, 60, minute));
        // Still throttled a minute later: quiet.
        assert_eq!(w.observe(&id, stat(1300, 600), t0 + 2 * minute), None);
        // An hour after the report: told again.
        let later = t0 + minute + Duration::from_secs(3600);
        assert!(w.observe(&id, stat(1900, 1000), later).is_some());
    }

    #[test]
    fn light_throttling_idle_tenants_and_restarts_are_not_reported() {
        let mut w = Watch::new(Duration::from_secs(1));
        let id = ProjectId(String::from("prj_p1"));
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        w.observe(&id, stat(100, 0), t0);
        assert_eq!(w.observe(&id, stat(700, 59), t0 + s), None, "under 10 %");
        assert_eq!(w.observe(&id, stat(700, 59), t0 + 2 * s), None, "idle");
        assert_eq!(w.observe(&id, stat(10, 9), t0 + 3 * s), None, "restarted");
        assert!(w.observe(&id, stat(20, 18), t0 + 4 * s).is_some());
    }

    #[test]
    fn tenants_that_stopped_are_forgotten() {
        let mut w = Watch::new(Duration::from_secs(1));
        let (a, b) = (
            ProjectId(String::from("prj_a")),
            ProjectId(String::from("prj_b")),
        );
        let t0 = Instant::now();
        w.observe(&a, stat(1, 0), t0);
        w.observe(&b, stat(1, 0), t0);
        w.retain(&|id| *id == a.clone());
        assert_eq!(w.last.len(), 1);
    }
}
