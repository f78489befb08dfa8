//! Parking from the reconciler's side: asking a tenant to park and waiting for it to exit
//! (in the background, off the pass), and making room under the box's cap on running tenants
//! by parking the longest-idle tenants that agree (see [`super`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Reconciler, Running, MAX_EVICTION_TRIES, STOP_GRACE};
use crate::ids::ProjectId;
use crate::routes::{ApiKeys, Route, RouteTable};
use crate::supervisor::{Driver, ProcessRecord};
use crate::tenant;

/// How a background park ended.
pub(super) struct Parking {
    pub(super) id: ProjectId,
    pub(super) parked: bool,
}

impl Reconciler {
    /// Runs a park (asking the tenant, then waiting for it to exit) off the pass; `running`
    /// is kept meanwhile (its last usage report is still accepted) and the outcome comes back
    /// through the parked channel.
    pub(super) fn park_in_background(
        &mut self,
        id: ProjectId,
        running: Running,
        park: impl std::future::Future<Output = Parking> + Send + 'static,
    ) {
        let (done, reconcile) = (self.parked_tx.clone(), self.state.reconcile.clone());
        self.parking.insert(id, running);
        tokio::spawn(async move {
            let outcome = park.await;
            let _ = done.send(outcome);
            reconcile.notify_one();
        });
    }

    /// The starts that fit under the box's cap ([`Self::max_running`]), wakes first. Room for
    /// wakes is made by parking the longest-idle running tenants that agree to park; wakes
    /// that still do not fit are refused (the edge answers 503 at once), and other starts (a
    /// crash restart, a project nobody asked for) stay parked until a request asks for them.
    /// Without parking there is nothing to make room with, and the cap does not apply.
    pub(super) async fn fit_under_cap(
        &mut self,
        mut starts: Vec<ProjectId>,
        woken: &HashSet<ProjectId>,
        active: &HashMap<ProjectId, &tenant::TenantState>,
    ) -> Vec<ProjectId> {
        if !self.parks {
            return starts;
        }
        let mut room = self.max_running.saturating_sub(self.running.len());
        if starts.len() <= room {
            return starts;
        }
        let wakes = starts.iter().filter(|id| woken.contains(*id)).count();
        if wakes > room {
            room += self.evict(wakes - room, woken, active).await;
        }
        let over = starts.split_off(room.min(starts.len()));
        for id in over {
            let Some(t) = active.get(&id) else { continue };
            if woken.contains(&id) {
                tracing::warn!(tenant = %id, running = self.running.len(), max = self.max_running, "wake refused: the box runs as many tenants as it may and none could be parked");
                self.routes.refuse_wake(&t.slug);
            } else {
                tracing::info!(tenant = %id, max = self.max_running, "not started: the box is at its tenant cap; it starts on its next request");
            }
            self.parked.insert(id.clone());
            self.driver.mark_parked(&id, true);
        }
        starts
    }

    /// Parks up to `need` running tenants, longest idle first (their last usage push, else
    /// their start), to make room for wakes; the number that agreed. Each tenant decides
    /// whether it can stop without loss, so busy ones refuse and the next are asked, at most
    /// [`MAX_EVICTION_TRIES`] in all.
    async fn evict(
        &mut self,
        need: usize,
        woken: &HashSet<ProjectId>,
        active: &HashMap<ProjectId, &tenant::TenantState>,
    ) -> usize {
        let mut candidates: Vec<(Instant, ProjectId)> = self
            .running
            .iter()
            .filter(|(id, _)| !woken.contains(*id) && active.contains_key(*id))
            .map(|(id, r)| (self.routes.active_at(id).unwrap_or(r.started), id.clone()))
            .collect();
        candidates.sort_by_key(|(at, _)| *at);
        let mut freed = 0;
        let mut tried = 0;
        let mut candidates = candidates.into_iter().map(|(_, id)| id);
        while freed < need && tried < MAX_EVICTION_TRIES {
            let batch: Vec<ProjectId> = candidates
                .by_ref()
                .take((need - freed).min(MAX_EVICTION_TRIES - tried))
                .collect();
            if batch.is_empty() {
                break;
            }
            tried += batch.len();
            let asks = batch.into_iter().filter_map(|id| {
                let record = self.running.get(&id)?.record.clone();
                let slug = active.get(&id)?.slug.clone();
                let (routes, http) = (self.routes.clone(), self.http.clone());
                Some(async move {
                    let agreed = ask_to_park(&id, &record, &slug, &routes, &http).await;
                    (id, record, agreed)
                })
            });
            let answers = futures_util::future::join_all(asks).await;
            for (id, record, agreed) in answers {
                if !agreed {
                    continue;
                }
                let Some(running) = self.running.remove(&id) else {
                    continue;
                };
                tracing::info!(tenant = %id, "parking an idle tenant early to make room for a wake");
                self.routes.evicted();
                freed += 1;
                let driver = self.driver.clone();
                self.park_in_background(id.clone(), running, finish_park(id, record, driver));
            }
        }
        freed
    }
}

/// Asks an idle tenant to park: new connections wait at the edge while the process is asked to
/// stop; it refuses (409) if it holds a socket or history that stopping would lose, and then
/// keeps serving. Whether it agreed (it is then stopping).
pub(super) async fn ask_to_park(
    id: &ProjectId,
    record: &ProcessRecord,
    slug: &str,
    routes: &RouteTable,
    http: &reqwest::Client,
) -> bool {
    // Serving again, as before, if it refuses.
    let before = routes
        .get(slug)
        .filter(|r| matches!(r, Route::Active { .. }));
    routes.set(slug, Route::Parked);
    let url = format!("{}/admin/park", record.admin_base());
    let answer = http.post(url).bearer_auth(&record.admin_token).send().await;
    match answer {
        Ok(resp) if resp.status().is_success() => {}
        other => {
            let why = match other {
                Ok(resp) => resp.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            tracing::debug!(tenant = %id, %why, "not parked");
            routes.set(
                slug,
                before.unwrap_or_else(|| Route::active(record, None, &ApiKeys::default())),
            );
            return false;
        }
    }
    true
}

/// Waits for a tenant that agreed to park to exit (stopping it after [`STOP_GRACE`]), then
/// releases it and marks it parked.
pub(super) async fn finish_park(
    id: ProjectId,
    record: ProcessRecord,
    driver: Arc<dyn Driver>,
) -> Parking {
    let deadline = Instant::now() + STOP_GRACE;
    while !driver.gone(&record) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !driver.gone(&record) {
        driver.stop(&record, Duration::from_millis(100)).await;
    }
    let _ = driver.exit_cause(&id).await;
    driver.release(&id).await;
    driver.forget_process(&id);
    driver.mark_parked(&id, true);
    tracing::info!(tenant = %id, "parked idle tenant");
    Parking { id, parked: true }
}
