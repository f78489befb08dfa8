//! Wakes that need no database. A tenant parked after it ran keeps its compiled config (and
//! the version and kernel limits that go with it) in its parking marker, written in the
//! background once it is parked and rewritten when its project changes while parked. A wake
//! for it then starts the process from that file, with the slug found in what the last pass
//! listed, without listing projects or compiling, and it is served even while the reconciler
//! waits on Postgres for something else ([`Reconciler::waking_meanwhile`]): a slow or stalled
//! database delays changes, not wakes.
//!
//! A wake is served this way when the kept version is the project's version as of the last
//! pass and the box has room under its cap. A parked project the last pass listed whose config
//! is not kept (it never ran, or changed since) is compiled on its own (one project's queries)
//! and then started the same way. Anything else (a project the reconciler has not listed yet,
//! a full box) takes the full pass, which compiles, makes room and refuses as before. A change made in the moment between the last pass and a
//! warm wake is pushed by the next pass, like any change to a running tenant.

use std::collections::HashMap;
use std::future::Future;

use tokio::time::Instant;

use super::{Reconciler, Running};
use crate::ids::ProjectId;
use crate::routes::ApiKeys;
use crate::tenant;

/// Background compiles of parked tenants' configs in flight at once.
const WARM_CONCURRENCY: usize = 4;

/// A background compile's result.
pub(super) type Warmed = (ProjectId, Option<tenant::Compiled>);

impl Reconciler {
    /// Awaits `fut` (a database call that does not borrow the reconciler), serving warm wakes
    /// whenever one is asked for meanwhile.
    pub(super) async fn waking_meanwhile<T>(&mut self, fut: impl Future<Output = T>) -> T {
        tokio::pin!(fut);
        let routes = self.routes.clone();
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return out,
                _ = routes.wake_requested() => self.warm_wakes().await,
            }
        }
    }

    /// Starts the parked tenants asked for whose kept config is current, from that config;
    /// the other wakes wait for the next pass.
    pub(super) async fn warm_wakes(&mut self) {
        self.take_warmed();
        let wakes = self.routes.take_wakes();
        let mut launches: Vec<(ProjectId, String)> = Vec::new();
        let mut cold: Vec<(ProjectId, String)> = Vec::new();
        for slug in wakes {
            // Held for a move: its old config must not start (the edge answers 503 meanwhile).
            if self.moving.contains(&slug) {
                continue;
            }
            let parked = self.known.get(&slug).and_then(|(id, version)| {
                let idle = self.parked.contains(id) && !self.parking.contains_key(id);
                idle.then(|| (id.clone(), self.warm.get(id) == Some(&Some(*version))))
            });
            let room =
                !self.parks || self.running.len() + launches.len() + cold.len() < self.max_running;
            match parked {
                Some((id, true)) if room => launches.push((id, slug)),
                Some((id, false)) if room => cold.push((id, slug)),
                _ => {
                    self.pending_wakes.insert(slug);
                }
            }
        }
        self.compile_cold(cold, &mut launches).await;
        if launches.is_empty() {
            return;
        }
        let began = Instant::now();
        let starts = launches.iter().map(|(id, _)| self.launch_warm(id));
        let started = futures_util::future::join_all(starts).await;
        for ((id, slug), running) in launches.into_iter().zip(started) {
            self.warm.remove(&id);
            let Some(running) = running else {
                // The full pass compiles and tries again.
                self.pending_wakes.insert(slug);
                continue;
            };
            tracing::info!(tenant = %id, version = running.applied, took_ms = began.elapsed().as_millis() as u64, "woke parked tenant from its kept config");
            self.parked.remove(&id);
            self.driver.mark_parked(&id, false);
            self.routes.serve(
                &slug,
                &id,
                &running.record,
                running.limits.as_ref(),
                &running.api_keys,
            );
            self.running.insert(id, running);
        }
    }

    /// Compiles the configs of parked tenants asked for whose config is not kept (a project
    /// that never ran, or one changed since it was kept), one query each and all at once, and
    /// keeps them so they start like warm ones: a wake costs its project's compile, not a pass
    /// over every project. A compile that fails leaves the wake to the full pass.
    async fn compile_cold(
        &mut self,
        cold: Vec<(ProjectId, String)>,
        launches: &mut Vec<(ProjectId, String)>,
    ) {
        if cold.is_empty() {
            return;
        }
        let state = self.state.clone();
        let redis = state.settings.redis_url.as_deref();
        let dashboard = tenant::origin_of(&state.settings.public_url);
        let compiles = cold
            .iter()
            .map(|(id, _)| tenant::compile(&state.pool, id, redis, dashboard.as_deref()));
        let compiled = futures_util::future::join_all(compiles).await;
        for ((id, slug), compiled) in cold.into_iter().zip(compiled) {
            let kept = compiled.map_err(|e| e.to_string()).and_then(|c| {
                let config = c.config.to_json();
                self.driver
                    .keep_parked_config(&id, c.version, &c.limits, &config)
                    .map(|()| c.version)
                    .map_err(|e| e.to_string())
            });
            match kept {
                Ok(version) => {
                    self.warm.insert(id.clone(), Some(version));
                    launches.push((id, slug));
                }
                Err(error) => {
                    tracing::debug!(tenant = %id, %error, "cold wake left to the full pass");
                    self.pending_wakes.insert(slug);
                }
            }
        }
    }

    /// Starts a parked tenant from its kept config.
    async fn launch_warm(&self, id: &ProjectId) -> Option<Running> {
        let (version, limits, config) = self.driver.parked_config(id)?;
        let reconcile = self.state.reconcile.clone();
        match self.driver.start(id, &config, &limits, reconcile).await {
            Ok(record) => Some(Running {
                record,
                applied: version,
                started: Instant::now(),
                limits: Some(limits),
                api_keys: ApiKeys::of_json(&config),
            }),
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "parked tenant did not start from its kept config");
                None
            }
        }
    }

    /// Notes a tenant just parked after running: its config is kept once compiled.
    pub(super) fn keep_warm(&mut self, id: ProjectId) {
        self.warm.insert(id, None);
    }

    /// Forgets kept configs of tenants no longer parked, and compiles in the background (a few
    /// at a time) those missing or behind their project's version.
    pub(super) fn warm_parked(&mut self, active: &HashMap<ProjectId, &tenant::TenantState>) {
        self.take_warmed();
        let parked = &self.parked;
        self.warm
            .retain(|id, _| parked.contains(id) && active.contains_key(id));
        self.warm_queue = self
            .warm
            .iter()
            .filter(|(id, kept)| {
                !self.warming.contains(*id)
                    && active
                        .get(*id)
                        .is_some_and(|t| **kept != Some(t.config_version))
            })
            .map(|(id, _)| id.clone())
            .collect();
        self.spawn_warming();
    }

    /// Starts background compiles from the queue, at most [`WARM_CONCURRENCY`] in flight.
    fn spawn_warming(&mut self) {
        while self.warming.len() < WARM_CONCURRENCY {
            let Some(id) = self.warm_queue.pop() else {
                return;
            };
            if !self.parked.contains(&id) || !self.warm.contains_key(&id) {
                continue;
            }
            self.warming.insert(id.clone());
            let (state, done) = (self.state.clone(), self.warmed_tx.clone());
            tokio::spawn(async move {
                let redis = state.settings.redis_url.as_deref();
                let dashboard = tenant::origin_of(&state.settings.public_url);
                let compiled = tenant::compile(&state.pool, &id, redis, dashboard.as_deref())
                    .await
                    .inspect_err(
                        |e| tracing::debug!(tenant = %id, error = %e, "parked config not kept"),
                    )
                    .ok();
                let _ = done.send((id, compiled));
            });
        }
    }

    /// Writes the configs compiled in the background into the markers of tenants still parked.
    fn take_warmed(&mut self) {
        while let Ok(warmed) = self.warmed_rx.try_recv() {
            self.store_warmed(warmed);
        }
    }

    /// Writes one config compiled in the background into its marker, if still parked.
    pub(super) fn store_warmed(&mut self, (id, compiled): Warmed) {
        self.warming.remove(&id);
        let Some(c) = compiled else { return };
        if self.parked.contains(&id) && self.warm.contains_key(&id) {
            let config = c.config.to_json();
            match self
                .driver
                .keep_parked_config(&id, c.version, &c.limits, &config)
            {
                Ok(()) => {
                    self.warm.insert(id, Some(c.version));
                }
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "cannot keep the parked tenant's config")
                }
            }
        }
        self.spawn_warming();
    }
}
