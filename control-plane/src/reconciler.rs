//! The reconciler: level-triggered convergence of what runs to what Postgres says. Each pass
//! starts missing tenants, stops deleted or suspended ones, restarts dead ones with backoff,
//! pushes every config whose version is ahead of what the process applied, and refreshes the
//! edge's route table. A pass runs on every change notification, on every tenant exit, when a
//! cheap check every two seconds finds one due, and every thirty seconds regardless, so a
//! restarted tenant or control plane converges by itself.
//!
//! Within a pass, starts, stops and config pushes run concurrently (at most [`CONCURRENCY`] at
//! once; wakes first), and parks run in the background (a park waits for the process to exit),
//! so a thousand tenants going idle together or a box restarting does not queue a wake behind
//! every other start. Where tenants start on demand
//! ([`crate::parking::start_on_demand`]), a project that nothing asked for is parked rather than
//! started: a new project costs a row until its first request.
//!
//! The box runs at most [`crate::parking::max_running_tenants`] tenants. A wake past that cap
//! first parks the longest-idle running tenants that can be parked without loss (no socket, no
//! unexpired memory-engine history; the tenant itself refuses otherwise), and is refused (the
//! edge answers 503) when none can: strangers who wake projects by slug cannot make the box
//! start more processes than it can hold (see [`crate::edge::wakes`]).
//!
//! A project held for a move to another Redis deployment is stopped, and neither started nor
//! woken, until its hold ends; the pass confirms the stop to the move ([`moves`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::ProjectId;
use crate::routes::{ApiKeys, Route, RouteTable};
use crate::sandbox::{ExitCause, TenantLimits};
use crate::state::AppState;
use crate::supervisor::{Driver, ProcessRecord};
use crate::{tenant, tenant_events};

mod moves;
mod parks;
mod warm;
use parks::{ask_to_park, finish_park, Parking};

/// How often the reconciler looks whether a pass is due.
const PASS_INTERVAL: Duration = Duration::from_secs(2);
/// Bounds of the rest before a pass for a change (see [`Reconciler::rest_after`]).
const MIN_REST: Duration = Duration::from_millis(20);
const MAX_REST: Duration = Duration::from_millis(500);
/// The longest time between two passes, changes or not.
const FULL_PASS_INTERVAL: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Starts, stops and pushes in flight at once within a pass.
const CONCURRENCY: usize = 16;
/// Running tenants asked to park in one pass to make room for wakes, at most (each that
/// refuses is busy; past this many the box is taken to be full of busy tenants).
const MAX_EVICTION_TRIES: usize = 64;

/// One thing a pass does to one tenant, run concurrently with the others.
enum Step {
    Stop(ProjectId, ProcessRecord),
    Launch(ProjectId),
    Push(ProjectId, ProcessRecord, Option<TenantLimits>),
}

/// What a concurrent step of a pass came to, applied to the reconciler's maps afterwards.
enum Outcome {
    Started(ProjectId, Box<Running>),
    StartFailed(ProjectId),
    /// Nothing to record (a stop, a config that did not compile).
    Nothing,
    Pushed {
        id: ProjectId,
        applied: Option<i64>,
        limits: Option<TenantLimits>,
        /// The API keys of the config the process accepted.
        api_keys: Option<ApiKeys>,
    },
    /// The process could not take its new config live (its engine changed: the project moved
    /// to another Redis deployment) and was stopped, to start again on the new config.
    Restarted(ProjectId),
}

struct Running {
    record: ProcessRecord,
    applied: i64,
    started: Instant,
    /// The kernel limits last applied (unknown for an adopted process).
    limits: Option<TenantLimits>,
    /// The API keys of the config it last accepted (the edge tells its backend by them).
    api_keys: ApiKeys,
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
    driver: Arc<dyn Driver>,
    routes: Arc<RouteTable>,
    running: HashMap<ProjectId, Running>,
    /// Tenants stopped while idle; started again when the edge asks ([`crate::parking`]).
    parked: HashSet<ProjectId>,
    backoff: HashMap<ProjectId, Backoff>,
    /// Tenants start only when asked for (see [`crate::parking::start_on_demand`]).
    on_demand: bool,
    /// Tenants are parked when idle (so room can be made for a wake).
    parks: bool,
    /// The most tenants running at once (see [`crate::parking::max_running_tenants`]).
    max_running: usize,
    /// Tenants being parked in the background (a park waits for the process to exit, which no
    /// pass, and so no wake of another tenant, should wait for).
    parking: HashMap<ProjectId, Running>,
    /// Wakes asked for while their tenant was still being parked: served once it is.
    pending_wakes: HashSet<String>,
    parked_tx: tokio::sync::mpsc::UnboundedSender<Parking>,
    parked_rx: tokio::sync::mpsc::UnboundedReceiver<Parking>,
    /// Versions confirmed and not yet written, written to Postgres in one statement at the end
    /// of a pass and off its path (a wake never waits for a commit), one write at a time.
    applied: HashMap<ProjectId, i64>,
    /// The write in flight, if any.
    writing: Option<tokio::task::JoinHandle<()>>,
    http: reqwest::Client,
    /// slug → (project, config version) of the active projects as of the last pass: how a
    /// wake finds its tenant without a query ([`warm`]).
    known: HashMap<String, (ProjectId, i64)>,
    /// Parked tenants whose compiled config is (to be) kept in their marker, by kept version.
    warm: HashMap<ProjectId, Option<i64>>,
    /// Background compiles of kept configs in flight, and those waiting for a turn.
    warming: HashSet<ProjectId>,
    warm_queue: Vec<ProjectId>,
    warmed_tx: tokio::sync::mpsc::UnboundedSender<warm::Warmed>,
    warmed_rx: tokio::sync::mpsc::UnboundedReceiver<warm::Warmed>,
    /// Slugs of the projects held for a Redis deployment move as of the last pass: never
    /// woken ([`moves`]).
    moving: HashSet<String>,
    /// A held project still had a process here (being parked) at the end of the last pass:
    /// the next pass is due at once, to stop it and confirm.
    moves_waiting: bool,
}

impl Reconciler {
    pub fn new(state: AppState, driver: Arc<dyn Driver>, routes: Arc<RouteTable>) -> Self {
        let (parked_tx, parked_rx) = tokio::sync::mpsc::unbounded_channel();
        let (warmed_tx, warmed_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            known: HashMap::new(),
            moving: HashSet::new(),
            moves_waiting: false,
            warm: HashMap::new(),
            warming: HashSet::new(),
            warm_queue: Vec::new(),
            warmed_tx,
            warmed_rx,
            state,
            driver,
            routes,
            running: HashMap::new(),
            parked: HashSet::new(),
            backoff: HashMap::new(),
            on_demand: crate::parking::start_on_demand(),
            parks: crate::parking::park_after().is_some(),
            max_running: crate::parking::max_running_tenants(),
            parking: HashMap::new(),
            pending_wakes: HashSet::new(),
            parked_tx,
            parked_rx,
            applied: HashMap::new(),
            writing: None,
            http: crate::probe::direct_builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_else(|_| crate::probe::direct_client()),
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
                        api_keys: ApiKeys::default(),
                    },
                );
            } else {
                self.driver.forget(&id);
            }
        }
        let marked = self.driver.parked();
        if self.parks {
            self.parked = marked
                .into_iter()
                .filter(|id| !self.running.contains_key(id))
                .collect();
        } else {
            // Parking is off now: what an earlier control plane parked runs again from the
            // first pass, as every project does here, instead of waiting for a request.
            for id in &marked {
                self.driver.mark_parked(id, false);
            }
        }
        // Configs kept by the previous control plane serve wakes as before (their version is
        // checked against the first pass's listing).
        for id in &self.parked {
            if let Some(version) = self.driver.parked_version(id) {
                self.warm.insert(id.clone(), Some(version));
            }
        }
        // Groups left by tenants that are gone (a control plane killed before cleaning up).
        let live = self.running.keys().map(|id| id.to_string()).collect();
        self.driver.sweep(&live);
        self.pass().await;
    }

    /// Reconciles until `stop`: a pass on every notification; between them, every
    /// [`PASS_INTERVAL`] a cheap look at whether a pass is due (see [`Self::due`]).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut seen = None;
        let mut last_pass = Instant::now();
        let mut last_took = Duration::ZERO;
        loop {
            let notified = tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.state.reconcile.notified() => true,
                _ = tokio::time::sleep(PASS_INTERVAL) => false,
                Some(warmed) = self.warmed_rx.recv() => {
                    self.store_warmed(warmed);
                    continue;
                }
            };
            // Versions left over while the previous write was in flight.
            self.record_applied();
            if notified && !self.rest_after(last_took, &stop).await {
                break;
            }
            // Wakes a warm start could not serve (mid-wait) need a pass.
            let wakes_left = !self.pending_wakes.is_empty();
            if notified || wakes_left || self.due(&mut seen, last_pass).await {
                let began = Instant::now();
                self.pass().await;
                last_pass = Instant::now();
                last_took = began.elapsed();
            }
        }
    }

    /// Before a pass for a change: rests as long as the last pass took (20–500 ms), so a burst
    /// of changes (a thousand projects created) is one pass and the passes over every project
    /// take at most about half the control plane's time; a wake ends the rest at once. False
    /// when stopping.
    async fn rest_after(&self, last_took: Duration, stop: &CancellationToken) -> bool {
        let until = Instant::now() + last_took.clamp(MIN_REST, MAX_REST);
        while !self.routes.wakes_pending() {
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                _ = self.state.reconcile.notified() => {}
            }
        }
        true
    }

    /// Whether a pass nobody asked for is due: a tenant process died, a restart's backoff
    /// ended, the projects changed behind the control plane's back (the operator's CLI writes
    /// Postgres directly; one aggregate row tells, holds for Redis deployment moves included:
    /// the sum of the live holds' start times changes when one is placed, ends, lapses or is
    /// replaced), a held project's stop is still to be confirmed, or [`FULL_PASS_INTERVAL`]
    /// went by. With ten thousand projects, a pass lists them all; this is what keeps an idle
    /// box idle.
    async fn due(&mut self, seen: &mut Option<(i64, i64, i64, i64)>, last_pass: Instant) -> bool {
        if last_pass.elapsed() >= FULL_PASS_INTERVAL
            || self.moves_waiting
            || self.running.values().any(|r| self.driver.gone(&r.record))
            || self
                .backoff
                .values()
                .any(|b| b.next_attempt.is_some_and(|at| Instant::now() >= at))
        {
            return true;
        }
        let pool = self.state.pool.clone();
        let now: Result<(i64, i64, i64, i64), _> = self
            .waking_meanwhile(async move {
                sqlx::query_as(
                    "SELECT count(*), count(*) FILTER (WHERE status = 'active'), \
                            COALESCE(sum(config_version), 0)::bigint, \
                            (SELECT COALESCE(sum(extract(epoch FROM started_at) * 1e6), 0)::bigint \
                             FROM redis_moves WHERE expires_at > now()) \
                     FROM projects",
                )
                .fetch_one(&pool)
                .await
            })
            .await;
        match now {
            Ok(now) => seen.replace(now) != Some(now),
            Err(_) => true,
        }
    }

    /// One convergence pass.
    pub async fn pass(&mut self) {
        // Wakes the kept configs serve go first, and go on being served while Postgres lists.
        self.warm_wakes().await;
        let pool = self.state.pool.clone();
        let listed = self
            .waking_meanwhile(async move { tenant::list(&pool).await })
            .await;
        let tenants = match listed {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: cannot list projects; tenants keep running");
                return;
            }
        };
        let active: HashMap<ProjectId, &tenant::TenantState> = tenants
            .iter()
            .filter(|t| t.is_active())
            .map(|t| (t.id.clone(), t))
            .collect();

        // Projects held for a move: routed away now, stopped below, never started or woken.
        let held = self.held_for_moves(&active);
        // Backoff of projects that are gone or suspended is forgotten.
        self.backoff.retain(|id, _| active.contains_key(id));
        // Parks finished in the background since the last pass.
        while let Ok(done) = self.parked_rx.try_recv() {
            let Some(running) = self.parking.remove(&done.id) else {
                continue;
            };
            if done.parked {
                self.keep_warm(done.id.clone());
                self.parked.insert(done.id);
            } else {
                // It had work again: it keeps serving.
                self.running.insert(done.id, running);
            }
        }
        // Wake what the edge asked for (what is still being parked, once it is); forget parked
        // tenants that were deleted or suspended.
        let mut wakes = self.routes.take_wakes();
        wakes.extend(self.pending_wakes.drain());
        let mut woken: HashSet<ProjectId> = HashSet::new();
        for t in active
            .values()
            .filter(|t| wakes.contains(&t.slug) && !t.moving)
        {
            if self.parking.contains_key(&t.id) {
                self.pending_wakes.insert(t.slug.clone());
                continue;
            }
            if self.parked.remove(&t.id) {
                self.driver.mark_parked(&t.id, false);
                tracing::info!(tenant = %t.id, "waking parked tenant");
            }
            woken.insert(t.id.clone());
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
        // Park the idle tenants that asked (in the background), and stop what should not run.
        for id in self.routes.take_parks() {
            let Some(slug) = active.get(&id).map(|t| t.slug.clone()) else {
                continue;
            };
            if held.contains(&id) {
                continue;
            }
            let Some(running) = self.running.remove(&id) else {
                continue;
            };
            let (record, routes, driver, http) = (
                running.record.clone(),
                self.routes.clone(),
                self.driver.clone(),
                self.http.clone(),
            );
            self.park_in_background(id.clone(), running, async move {
                if ask_to_park(&id, &record, &slug, &routes, &http).await {
                    finish_park(id, record, driver).await
                } else {
                    Parking { id, parked: false }
                }
            });
        }
        let to_stop: Vec<(ProjectId, ProcessRecord)> = self
            .running
            .iter()
            .filter(|(id, _)| !active.contains_key(*id) || held.contains(*id))
            .map(|(id, r)| (id.clone(), r.record.clone()))
            .collect();
        for (id, _) in &to_stop {
            self.running.remove(id);
        }
        let steps = to_stop
            .into_iter()
            .map(|(id, record)| Step::Stop(id, record))
            .collect();
        self.run_steps(steps).await;
        // Forget the dead.
        let dead: Vec<ProjectId> = self
            .running
            .iter()
            .filter(|(_, r)| self.driver.gone(&r.record))
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
        // Start or update what should run; what nobody asked for stays parked.
        let mut starts: Vec<ProjectId> = Vec::new();
        let mut pushes: Vec<(ProjectId, ProcessRecord, Option<TenantLimits>)> = Vec::new();
        for (id, row) in &active {
            if self.parking.contains_key(id) || held.contains(id) {
                continue;
            }
            if !self.parked.contains(id) && !self.running.contains_key(id) {
                let asked = woken.contains(id) || self.backoff.contains_key(id);
                if self.on_demand && !asked {
                    self.parked.insert(id.clone());
                    self.driver.mark_parked(id, true);
                }
            }
            if self.parked.contains(id) {
                // A parked tenant starts with the latest config when woken: a change made
                // meanwhile counts as applied (nothing to push it to).
                if row.applied_version < row.config_version {
                    self.confirmed(id, row.config_version);
                }
                continue;
            }
            match self.running.get(id) {
                None if self.backoff.get(id).is_none_or(Backoff::ready) => starts.push(id.clone()),
                None => {}
                Some(r) if r.applied < row.config_version => {
                    pushes.push((id.clone(), r.record.clone(), r.limits))
                }
                // What a failed background write left behind.
                Some(r) if row.applied_version < r.applied => {
                    self.applied.insert(id.clone(), r.applied);
                }
                Some(_) => {}
            }
        }
        // Wakes first: a request is waiting at the edge for each of them.
        starts.sort_by_key(|id| !woken.contains(id));
        let starts = self.fit_under_cap(starts, &woken, &active).await;
        let steps = starts
            .into_iter()
            .map(Step::Launch)
            .chain(
                pushes
                    .into_iter()
                    .map(|(id, r, limits)| Step::Push(id, r, limits)),
            )
            .collect();
        self.run_steps(steps).await;
        let routes = tenants
            .iter()
            .map(|t| {
                let route = if !t.is_active() {
                    Route::Suspended
                } else if t.moving {
                    Route::Moving
                } else if let Some(r) = self.running.get(&t.id) {
                    Route::active(&r.record, r.limits.as_ref(), &r.api_keys)
                } else if self.parked.contains(&t.id) || self.parking.contains_key(&t.id) {
                    Route::Parked
                } else {
                    Route::Starting
                };
                (t.slug.clone(), route)
            })
            .collect();
        // A tenant being parked still reports (its last usage, sent as it stops): its record
        // stays known until it is gone.
        let processes = self
            .running
            .iter()
            .chain(&self.parking)
            .map(|(id, r)| (id.clone(), r.record.clone()))
            .collect();
        self.routes.replace(routes, processes, self.running.len());
        self.known = active
            .values()
            .filter(|t| !t.moving)
            .map(|t| (t.slug.clone(), (t.id.clone(), t.config_version)))
            .collect();
        self.warm_parked(&active);
        self.confirm_moves_stopped(&active).await;
        self.record_applied();
    }

    /// Writes the versions confirmed in this pass, in the background (one statement; versions
    /// never go down, so writes finishing out of order are harmless).
    fn record_applied(&mut self) {
        if self.applied.is_empty() || self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let applied: Vec<(ProjectId, i64)> = self.applied.drain().collect();
        let pool = self.state.pool.clone();
        self.writing = Some(tokio::spawn(async move {
            if let Err(e) = tenant::mark_applied_many(&pool, &applied).await {
                tracing::warn!(error = %e, tenants = applied.len(), "cannot record applied versions; the next pass retries");
            }
        }));
    }

    /// Notes a version a tenant confirmed (or that counts as applied while it is parked).
    fn confirmed(&mut self, id: &ProjectId, version: i64) {
        let v = self.applied.entry(id.clone()).or_insert(version);
        *v = (*v).max(version);
    }

    /// Runs steps concurrently (at most [`CONCURRENCY`] at once, in order of starting) and
    /// records what they came to.
    async fn run_steps(&mut self, steps: Vec<Step>) {
        if steps.is_empty() {
            return;
        }
        let this = &*self;
        let outcomes = futures_util::stream::iter(steps)
            .map(|step| this.step(step))
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        self.apply(outcomes);
    }

    async fn step(&self, step: Step) -> Outcome {
        match step {
            Step::Stop(id, record) => {
                tracing::info!(tenant = %id, "stopping tenant");
                self.driver.stop(&record, STOP_GRACE).await;
                self.driver.forget(&id);
                self.driver.release(&id).await;
                Outcome::Nothing
            }
            Step::Launch(id) => self.launch(id).await,
            Step::Push(id, record, limits) => self.push(id, record, limits).await,
        }
    }

    /// Records what the concurrent steps of a pass came to.
    fn apply(&mut self, outcomes: Vec<Outcome>) {
        for outcome in outcomes {
            match outcome {
                Outcome::Started(id, running) => {
                    self.confirmed(&id, running.applied);
                    if let Some(b) = self.backoff.get_mut(&id) {
                        b.next_attempt = None;
                    }
                    self.running.insert(id, *running);
                }
                Outcome::StartFailed(id) => self.backoff.entry(id).or_default().failed(),
                Outcome::Restarted(id) => {
                    self.running.remove(&id);
                    // Asked for (not parked) and due at once; the next pass starts it.
                    self.backoff.entry(id).or_default();
                    self.state.reconcile.notify_one();
                }
                Outcome::Nothing => {}
                Outcome::Pushed {
                    id,
                    applied,
                    limits,
                    api_keys,
                } => {
                    if let Some(version) = applied {
                        self.confirmed(&id, version);
                    }
                    if let Some(r) = self.running.get_mut(&id) {
                        if let Some(version) = applied {
                            r.applied = r.applied.max(version);
                        }
                        if limits.is_some() {
                            r.limits = limits;
                        }
                        if let Some(keys) = api_keys {
                            r.api_keys = keys;
                        }
                    }
                }
            }
        }
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

    /// Starts a tenant with its current config.
    async fn launch(&self, id: ProjectId) -> Outcome {
        let Some(tenant::Compiled {
            config,
            version,
            limits,
        }) = self.compile(&id).await
        else {
            return Outcome::StartFailed(id);
        };
        let began = Instant::now();
        match self
            .driver
            .start(
                &id,
                &config.to_json(),
                &limits,
                self.state.reconcile.clone(),
            )
            .await
        {
            Ok(record) => {
                tracing::info!(tenant = %id, addr = %record.addr, version, took_ms = began.elapsed().as_millis() as u64, "tenant started");
                let running = Running {
                    record,
                    applied: version,
                    started: Instant::now(),
                    limits: Some(limits),
                    api_keys: ApiKeys::of(&config),
                };
                Outcome::Started(id, Box::new(running))
            }
            Err(e) => {
                tracing::error!(tenant = %id, error = %e, "tenant failed to start");
                Outcome::StartFailed(id)
            }
        }
    }

    /// Pushes a running tenant its current config (and its plan's kernel limits, if they
    /// changed).
    async fn push(
        &self,
        id: ProjectId,
        record: ProcessRecord,
        current: Option<TenantLimits>,
    ) -> Outcome {
        let Some(tenant::Compiled {
            config,
            version,
            limits,
        }) = self.compile(&id).await
        else {
            return Outcome::Nothing;
        };
        let mut changed_limits = None;
        if current != Some(limits) {
            match self.driver.set_limits(&id, &record, &limits).await {
                Ok(()) => {
                    tracing::info!(tenant = %id, ?limits, "tenant limits applied");
                    changed_limits = Some(limits);
                }
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "cannot change the tenant's limits while it runs; they apply at its next start")
                }
            }
        }
        let url = format!("{}/admin/config", record.admin_base());
        let began = Instant::now();
        let result = self
            .http
            .put(url)
            .bearer_auth(&record.admin_token)
            .header("content-type", "application/json")
            .body(config.to_json())
            .send()
            .await;
        let applied = match result {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(tenant = %id, version, took_ms = began.elapsed().as_millis() as u64, "config applied");
                Some(version)
            }
            // The process already runs something newer (a concurrent push won): fine.
            Ok(resp) if resp.status().as_u16() == 409 => Some(version),
            // The change takes a new process: stop this one; the next pass starts the new.
            Ok(resp) if resp.status().as_u16() == 422 => {
                let body = resp.text().await.unwrap_or_default();
                tracing::info!(tenant = %id, version, %body, "tenant needs a restart for its new config; restarting it");
                self.driver.stop(&record, STOP_GRACE).await;
                self.driver.release(&id).await;
                return Outcome::Restarted(id);
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                tracing::error!(tenant = %id, %status, %body, "tenant refused config");
                None
            }
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "config push failed; will retry");
                None
            }
        };
        Outcome::Pushed {
            id,
            api_keys: applied.is_some().then(|| ApiKeys::of(&config)),
            applied,
            limits: changed_limits,
        }
    }
}
