//! The reconciler: level-triggered convergence of what runs to what Postgres says. Each pass
//! starts missing tenants, stops deleted or suspended ones, restarts dead ones with backoff,
//! pushes every config whose version is ahead of what the process applied, and refreshes the
//! edge's route table. A pass runs on every change notification, on every tenant exit, and
//! every two seconds regardless, so a restarted tenant or control plane converges by itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::ProjectId;
use crate::sandbox::{ExitCause, TenantLimits};
use crate::state::AppState;
use crate::supervisor::{pid_alive, Driver, LocalDriver, ProcessRecord, Route, RouteTable};
use crate::{tenant, tenant_events};

const PASS_INTERVAL: Duration = Duration::from_secs(2);
const STOP_GRACE: Duration = Duration::from_secs(5);

struct Running {
    record: ProcessRecord,
    applied: i64,
    started: Instant,
    /// The kernel limits last applied (unknown for an adopted process).
    limits: Option<TenantLimits>,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Backoff {
    fn ready(&self) -> bool {
        self.next_attempt.is_none_or(|at| Instant::now() >= at)
    }
    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_millis(250u64.saturating_mul(1 << self.failures.min(7)))
            .min(Duration::from_secs(30));
        self.next_attempt = Some(Instant::now() + delay);
    }
}

/// Converges tenant processes to the desired state.
pub struct Reconciler {
    state: AppState,
    driver: Arc<LocalDriver>,
    routes: Arc<RouteTable>,
    running: HashMap<ProjectId, Running>,
    /// Tenants stopped while idle; started again when the edge asks ([`crate::parking`]).
    parked: HashSet<ProjectId>,
    backoff: HashMap<ProjectId, Backoff>,
    http: reqwest::Client,
}

impl Reconciler {
    pub fn new(state: AppState, driver: Arc<LocalDriver>, routes: Arc<RouteTable>) -> Self {
        Self {
            state,
            driver,
            routes,
            running: HashMap::new(),
            parked: HashSet::new(),
            backoff: HashMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Adopts tenants left running by an earlier control plane and runs a first pass, so the
    /// edge knows every route before it accepts traffic.
    pub async fn start_up(&mut self) {
        for (id, record) in self.driver.saved_records() {
            if self.driver.alive(&record).await {
                tracing::info!(tenant = %id, addr = %record.addr, "adopted running tenant");
                // Applied version unknown: the first pass pushes the current config.
                self.running.insert(
                    id,
                    Running {
                        record,
                        applied: 0,
                        started: Instant::now(),
                        limits: None,
                    },
                );
            } else {
                self.driver.remove_files(&id);
            }
        }
        self.parked = self
            .driver
            .parked()
            .into_iter()
            .filter(|id| !self.running.contains_key(id))
            .collect();
        // Groups left by tenants that are gone (a control plane killed before cleaning up).
        let live = self.running.keys().map(|id| id.to_string()).collect();
        self.driver.sandbox().sweep(&live);
        self.pass().await;
    }

    /// Reconciles until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.state.reconcile.notified() => {}
                _ = tokio::time::sleep(PASS_INTERVAL) => {}
            }
            self.pass().await;
        }
    }

    /// One convergence pass.
    pub async fn pass(&mut self) {
        let tenants = match tenant::list(&self.state.pool).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: cannot list projects; tenants keep running");
                return;
            }
        };
        let active: HashMap<ProjectId, &tenant::TenantRow> = tenants
            .iter()
            .filter(|t| t.is_active())
            .map(|t| (t.id.clone(), t))
            .collect();

        // Wake what the edge asked for; forget parked tenants that were deleted or suspended.
        let wakes = self.routes.take_wakes();
        let woken: Vec<ProjectId> = active
            .values()
            .filter(|t| wakes.contains(&t.slug))
            .map(|t| t.id.clone())
            .collect();
        for id in woken {
            if self.parked.remove(&id) {
                self.driver.mark_parked(&id, false);
                tracing::info!(tenant = %id, "waking parked tenant");
            }
        }
        let gone: Vec<ProjectId> = self
            .parked
            .iter()
            .filter(|id| !active.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.parked.remove(&id);
            self.driver.mark_parked(&id, false);
        }
        // Park the idle tenants that asked.
        for id in self.routes.take_parks() {
            if let Some(row) = active.get(&id) {
                self.park(&id, &row.slug).await;
            }
        }
        // Stop what should not run.
        let to_stop: Vec<ProjectId> = self
            .running
            .keys()
            .filter(|id| !active.contains_key(*id))
            .cloned()
            .collect();
        for id in to_stop {
            if let Some(r) = self.running.remove(&id) {
                tracing::info!(tenant = %id, "stopping tenant");
                self.driver.stop(&r.record, STOP_GRACE).await;
                self.driver.remove_files(&id);
                self.driver.release(&id).await;
            }
        }
        // Forget the dead.
        let dead: Vec<ProjectId> = self
            .running
            .iter()
            .filter(|(_, r)| !pid_alive(r.record.pid))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            if let Some(r) = self.running.remove(&id) {
                let cause = self.driver.exit_cause(&id).await;
                self.driver.release(&id).await;
                let b = self.backoff.entry(id.clone()).or_default();
                if r.started.elapsed() > Duration::from_secs(30) {
                    b.failures = 0;
                }
                b.failed();
                match &cause {
                    ExitCause::OutOfMemory { limit_bytes } => {
                        tracing::warn!(tenant = %id, limit_bytes, failures = b.failures, "tenant went over its memory limit and was killed by the kernel; restarting")
                    }
                    ExitCause::Exited { status } => {
                        tracing::warn!(tenant = %id, %status, failures = b.failures, "tenant process died; restarting with backoff")
                    }
                }
                if let Err(e) = tenant_events::record_exit(&self.state.pool, &id, &cause).await {
                    tracing::warn!(tenant = %id, error = %e, "cannot record the tenant's exit");
                }
            }
        }
        // Start or update what should run.
        for (id, row) in &active {
            if self.parked.contains(id) {
                // A parked tenant starts with the latest config when woken: a change made
                // meanwhile counts as applied (nothing to push it to).
                if row.applied_version < row.config_version {
                    if let Err(e) =
                        tenant::mark_applied(&self.state.pool, id, row.config_version).await
                    {
                        tracing::warn!(tenant = %id, error = %e, "cannot record applied version");
                    }
                }
                continue;
            }
            match self.running.get(id) {
                None => self.start(id).await,
                Some(r) if r.applied < row.config_version => self.push(id).await,
                Some(_) => {}
            }
        }
        let routes = tenants
            .iter()
            .map(|t| {
                let route = if !t.is_active() {
                    Route::Suspended
                } else if let Some(r) = self.running.get(&t.id) {
                    Route::Active {
                        addr: r.record.addr,
                        handoff: r.record.handoff.clone(),
                    }
                } else if self.parked.contains(&t.id) {
                    Route::Parked
                } else {
                    Route::Starting
                };
                (t.slug.clone(), route)
            })
            .collect();
        let processes = self
            .running
            .iter()
            .map(|(id, r)| (id.clone(), r.record.clone()))
            .collect();
        self.routes.replace(routes, processes);
    }

    /// Parks an idle tenant: new connections wait at the edge while the process is asked to
    /// stop; it refuses (409) if anything arrived meanwhile, and then keeps serving.
    async fn park(&mut self, id: &ProjectId, slug: &str) {
        let Some(running) = self.running.get(id) else {
            return;
        };
        let record = running.record.clone();
        self.routes.set(slug, Route::Parked);
        let url = format!("{}/admin/park", record.admin_base());
        let answer = self
            .http
            .post(url)
            .bearer_auth(&record.admin_token)
            .send()
            .await;
        match answer {
            Ok(resp) if resp.status().is_success() => {}
            other => {
                let why = match other {
                    Ok(resp) => resp.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                tracing::debug!(tenant = %id, %why, "not parked");
                self.routes.set(
                    slug,
                    Route::Active {
                        addr: record.addr,
                        handoff: record.handoff.clone(),
                    },
                );
                return;
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while pid_alive(record.pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if pid_alive(record.pid) {
            self.driver.stop(&record, Duration::from_millis(100)).await;
        }
        self.running.remove(id);
        let _ = self.driver.exit_cause(id).await;
        self.driver.release(id).await;
        self.driver.remove_runtime_files(id);
        self.driver.mark_parked(id, true);
        self.parked.insert(id.clone());
        tracing::info!(tenant = %id, "parked idle tenant");
    }

    /// The tenant's current config and its version; failures are logged.
    async fn compile(&self, id: &ProjectId) -> Option<tenant::Compiled> {
        let redis = self.state.settings.redis_url.as_deref();
        let dashboard = tenant::origin_of(&self.state.settings.public_url);
        match tenant::compile(&self.state.pool, id, redis, dashboard.as_deref()).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(tenant = %id, error = %e, "cannot compile tenant config");
                None
            }
        }
    }

    async fn start(&mut self, id: &ProjectId) {
        if !self.backoff.get(id).is_none_or(Backoff::ready) {
            return;
        }
        let Some(tenant::Compiled {
            config,
            version,
            limits,
        }) = self.compile(id).await
        else {
            self.backoff.entry(id.clone()).or_default().failed();
            return;
        };
        let began = Instant::now();
        match self
            .driver
            .start(id, &config.to_json(), &limits, self.state.reconcile.clone())
            .await
        {
            Ok(record) => {
                tracing::info!(tenant = %id, addr = %record.addr, version, took_ms = began.elapsed().as_millis() as u64, "tenant started");
                self.running.insert(
                    id.clone(),
                    Running {
                        record,
                        applied: version,
                        started: Instant::now(),
                        limits: Some(limits),
                    },
                );
                if let Some(b) = self.backoff.get_mut(id) {
                    b.next_attempt = None;
                }
                if let Err(e) = tenant::mark_applied(&self.state.pool, id, version).await {
                    tracing::warn!(tenant = %id, error = %e, "cannot record applied version");
                }
            }
            Err(e) => {
                tracing::error!(tenant = %id, error = %e, "tenant failed to start");
                self.backoff.entry(id.clone()).or_default().failed();
            }
        }
    }

    async fn push(&mut self, id: &ProjectId) {
        let Some(running) = self.running.get(id) else {
            return;
        };
        let Some(tenant::Compiled {
            config,
            version,
            limits,
        }) = self.compile(id).await
        else {
            return;
        };
        if running.limits != Some(limits) {
            match self.driver.set_limits(id, &running.record, &limits).await {
                Ok(()) => {
                    tracing::info!(tenant = %id, ?limits, "tenant limits applied");
                    if let Some(r) = self.running.get_mut(id) {
                        r.limits = Some(limits);
                    }
                }
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "cannot change the tenant's limits while it runs; they apply at its next start")
                }
            }
        }
        let Some(running) = self.running.get(id) else {
            return;
        };
        let url = format!("{}/admin/config", running.record.admin_base());
        let began = Instant::now();
        let result = self
            .http
            .put(url)
            .bearer_auth(&running.record.admin_token)
            .header("content-type", "application/json")
            .body(config.to_json())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(tenant = %id, version, took_ms = began.elapsed().as_millis() as u64, "config applied");
                if let Some(r) = self.running.get_mut(id) {
                    r.applied = version;
                }
                if let Err(e) = tenant::mark_applied(&self.state.pool, id, version).await {
                    tracing::warn!(tenant = %id, error = %e, "cannot record applied version");
                }
            }
            Ok(resp) if resp.status().as_u16() == 409 => {
                // The process already runs something newer (a concurrent push won): fine.
                if let Some(r) = self.running.get_mut(id) {
                    r.applied = version;
                }
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                tracing::error!(tenant = %id, %status, %body, "tenant refused config");
            }
            Err(e) => tracing::warn!(tenant = %id, error = %e, "config push failed; will retry"),
        }
    }
}
