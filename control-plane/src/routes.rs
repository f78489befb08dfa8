//! The table the edge routes by, and the requests it leaves for the reconciler: slug → where a
//! tenant's traffic goes ([`Route`]); tenant → its running process (read by the usage collector
//! and the report receiver); wakes the edge asked for, parks tenants asked for, and the wakes
//! the reconciler refused because the box runs as many tenants as it may
//! (`ROTOR_MAX_RUNNING_TENANTS`, see [`crate::reconciler`]). It also keeps when each tenant was
//! last seen active (its usage pushes), which decides who is parked first to make room, and
//! how much of its edge budget each project has spent ([`crate::edge::budgets`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::edge::budgets::{Budgets, EdgeBudget};
use rotor_tenant_config::TenantConfig;

use crate::ids::ProjectId;
use crate::sandbox::TenantLimits;
use crate::supervisor::ProcessRecord;

/// How long a refused wake is remembered (a waiter that began before it sees it).
const REFUSAL_MEMORY: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the edge sends a tenant's traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Serving at this address; WebSocket upgrades are handed over on the Unix socket, when
    /// there is one.
    Active {
        addr: SocketAddr,
        handoff: Option<PathBuf>,
        /// What the edge lets through to it per second (its plan's).
        budget: EdgeBudget,
        /// Its API keys (digests): calls with one spend the backend's own budget.
        api_keys: ApiKeys,
    },
    /// Suspended: refuse with 403.
    Suspended,
    /// Known but not (yet) running: 503.
    Starting,
    /// Stopped while idle (or being stopped): the edge asks for a wake-up and holds the
    /// connection until the tenant serves again.
    Parked,
    /// Stopped while the project moves to another Redis deployment: 503 with `Retry-After`,
    /// no wake-up.
    Moving,
}

impl Route {
    /// The route to a running process held to `limits` (unknown limits: no edge budget yet;
    /// the reconciler's next push sets them).
    pub fn active(
        record: &ProcessRecord,
        limits: Option<&TenantLimits>,
        api_keys: &ApiKeys,
    ) -> Self {
        Route::Active {
            addr: record.addr,
            handoff: record.handoff.clone(),
            budget: limits.map(|l| l.edge).unwrap_or_default(),
            api_keys: api_keys.clone(),
        }
    }
}

/// The SHA-256 digests of a project's API keys, as its running process was last given them
/// (unknown until the first config it was given: then no call counts as the backend's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiKeys(Arc<[[u8; 32]]>);

impl ApiKeys {
    /// The keys of a tenant config.
    pub fn of(config: &TenantConfig) -> Self {
        let api = &config.http_api;
        let digests = api
            .keys
            .iter()
            .map(|k| k.sha256.as_str())
            .chain(api.key_hashes.iter().map(String::as_str))
            .filter_map(|hex_digest| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut digest).ok()?;
                Some(digest)
            })
            .collect();
        ApiKeys(digests)
    }

    /// The keys of a tenant config in its JSON form (a parked tenant's kept config).
    pub fn of_json(config: &str) -> Self {
        serde_json::from_str::<TenantConfig>(config)
            .map(|c| Self::of(&c))
            .unwrap_or_default()
    }

    /// Whether `presented` is one of them (compared without an early exit).
    pub fn holds(&self, presented: &[u8; 32]) -> bool {
        self.0.iter().fold(false, |found, digest| {
            let diff = digest
                .iter()
                .zip(presented)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (diff == 0)
        })
    }
}

/// What waiting for a parked tenant came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Wake {
    /// The tenant's route now (anything but [`Route::Parked`]), or `None` if the slug is gone.
    Awake(Option<Route>),
    /// The box runs as many tenants as it may and none could be parked to make room.
    Refused,
    /// Still parked when the wait ended.
    TimedOut,
}

/// slug → route, tenant → process, and the requests between the edge and the reconciler.
#[derive(Default)]
pub struct RouteTable {
    routes: RwLock<HashMap<String, Route>>,
    processes: RwLock<HashMap<ProjectId, ProcessRecord>>,
    /// Notified whenever a route changes or a wake is refused (the edge waits on it).
    changed: Notify,
    /// Wakes the reconciler (shared with [`crate::state::AppState::reconcile`]).
    reconcile: Arc<Notify>,
    wakes: Mutex<HashSet<String>>,
    /// Notified on each new wake (the reconciler serves kept-config wakes even mid-pass).
    woken: Notify,
    parks: Mutex<HashSet<ProjectId>>,
    /// Wakes refused for capacity, by slug, and when.
    refused: Mutex<HashMap<String, Instant>>,
    /// When each running tenant last pushed usage (pushes follow activity).
    active_at: Mutex<HashMap<ProjectId, Instant>>,
    /// Tenant processes running now (set by the reconciler after each pass).
    running: AtomicUsize,
    /// Tenants parked early to make room for a wake.
    evictions: AtomicU64,
    /// Each project's spending of its edge budget (the budget itself is in its route).
    budgets: Budgets,
}

impl RouteTable {
    /// A table whose requests wake the reconciler through `reconcile`.
    pub fn new(reconcile: Arc<Notify>) -> Self {
        Self {
            reconcile,
            ..Self::default()
        }
    }

    /// Each project's spending of its edge budget.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Sets one route (the reconciler, while parking or waking a tenant).
    pub fn set(&self, slug: &str, route: Route) {
        self.routes.write().insert(slug.to_owned(), route);
        self.changed.notify_waiters();
    }

    /// Asks for the parked tenant `slug` to be started.
    pub fn request_wake(&self, slug: &str) {
        if self.wakes.lock().insert(slug.to_owned()) {
            self.woken.notify_one();
            self.reconcile.notify_one();
        }
    }

    /// Resolves when a wake was asked for since the last time it resolved.
    pub async fn wake_requested(&self) {
        self.woken.notified().await
    }

    /// A woken tenant serves: its route and its process, until the next [`Self::replace`].
    pub fn serve(
        &self,
        slug: &str,
        tenant: &ProjectId,
        record: &ProcessRecord,
        limits: Option<&TenantLimits>,
        api_keys: &ApiKeys,
    ) {
        self.processes
            .write()
            .insert(tenant.clone(), record.clone());
        self.set(slug, Route::active(record, limits, api_keys));
    }

    /// Whether a wake is waiting for the reconciler.
    pub fn wakes_pending(&self) -> bool {
        !self.wakes.lock().is_empty()
    }

    /// The tenants asked to wake since the last call.
    pub fn take_wakes(&self) -> HashSet<String> {
        std::mem::take(&mut *self.wakes.lock())
    }

    /// The reconciler could not start `slug` for lack of room: the requests waiting for it are
    /// answered at once (503) instead of at their timeout.
    pub fn refuse_wake(&self, slug: &str) {
        let now = Instant::now();
        let mut refused = self.refused.lock();
        refused.retain(|_, at| now.duration_since(*at) < REFUSAL_MEMORY);
        refused.insert(slug.to_owned(), now);
        drop(refused);
        self.changed.notify_waiters();
    }

    /// Tells the reconciler that `tenant` reported itself idle and parkable.
    pub fn request_park(&self, tenant: ProjectId) {
        if self.parks.lock().insert(tenant) {
            self.reconcile.notify_one();
        }
    }

    /// The tenants that asked to be parked since the last call.
    pub fn take_parks(&self) -> HashSet<ProjectId> {
        std::mem::take(&mut *self.parks.lock())
    }

    /// Waits until `slug` has a route other than [`Route::Parked`], asking for a wake-up, until
    /// the reconciler refuses the wake, or until `timeout`.
    pub async fn wait_awake(&self, slug: &str, timeout: std::time::Duration) -> Wake {
        let began = Instant::now();
        let deadline = began + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.get(slug) {
                Some(Route::Parked) => {
                    if self.refused.lock().get(slug).is_some_and(|at| *at >= began) {
                        return Wake::Refused;
                    }
                    self.request_wake(slug)
                }
                other => return Wake::Awake(other),
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Wake::TimedOut;
            }
        }
    }

    /// Notes that `tenant` just showed activity (a usage push).
    pub fn touch(&self, tenant: &ProjectId) {
        self.active_at.lock().insert(tenant.clone(), Instant::now());
    }

    /// When `tenant` last showed activity, if it did since it started.
    pub fn active_at(&self, tenant: &ProjectId) -> Option<Instant> {
        self.active_at.lock().get(tenant).copied()
    }

    /// Counts a tenant parked early to make room.
    pub fn evicted(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// Tenants parked early to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Tenant processes running after the last pass.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// The running process of `tenant`.
    pub fn process(&self, tenant: &ProjectId) -> Option<ProcessRecord> {
        self.processes.read().get(tenant).cloned()
    }

    /// The route of a slug.
    pub fn get(&self, slug: &str) -> Option<Route> {
        self.routes.read().get(slug).cloned()
    }

    /// Replaces the whole table; `running` processes of them serve (the others are stopping).
    pub fn replace(
        &self,
        routes: HashMap<String, Route>,
        processes: HashMap<ProjectId, ProcessRecord>,
        running: usize,
    ) {
        self.active_at
            .lock()
            .retain(|id, _| processes.contains_key(id));
        *self.routes.write() = routes;
        *self.processes.write() = processes;
        self.running.store(running, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Every running tenant process.
    pub fn processes(&self) -> Vec<(ProjectId, ProcessRecord)> {
        self.processes
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_sees_a_refusal_made_after_it_began_but_not_an_older_one() {
        let table = Arc::new(RouteTable::new(Arc::new(Notify::new())));
        table.set("p", Route::Parked);
        table.refuse_wake("p");
        // An old refusal does not answer a new request: it waits (and times out here).
        assert_eq!(
            table.wait_awake("p", Duration::from_millis(50)).await,
            Wake::TimedOut
        );
        assert!(
            table.take_wakes().contains("p"),
            "the wait asked for a wake"
        );
        let waiter = {
            let table = table.clone();
            tokio::spawn(async move { table.wait_awake("p", Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        table.refuse_wake("p");
        let outcome = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("answered at once")
            .unwrap();
        assert_eq!(outcome, Wake::Refused);
    }

    #[tokio::test]
    async fn a_waiter_is_answered_when_the_tenant_serves() {
        let table = Arc::new(RouteTable::new(Arc::new(Notify::new())));
        table.set("p", Route::Parked);
        let waiter = {
            let table = table.clone();
            tokio::spawn(async move { table.wait_awake("p", Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        table.set("p", Route::Starting);
        let outcome = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("answered at once")
            .unwrap();
        assert_eq!(outcome, Wake::Awake(Some(Route::Starting)));
    }
}
