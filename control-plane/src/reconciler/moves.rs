//! Projects held for a move to another Redis deployment ([`crate::redis_move`]). While its
//! hold lasts, a project's tenant must not touch the old deployment: a pass stops a running
//! tenant, starts and wakes none (not even from a kept config, see [`super::warm`]), and routes
//! the slug to [`Route::Moving`], which the edge answers with 503 and `Retry-After`. Once no
//! process of the project runs or is being parked here, the pass confirms the stop in the
//! hold's row; the move waits for that confirmation and for the old deployment to count no
//! subscriber on the tenant's control topic (which also sees processes on other boxes). When
//! the hold ends (the move switched the project, called itself off, or its hold expired) the
//! project is an ordinary one again and the next pass starts it on whatever deployment it
//! points at.

use std::collections::{HashMap, HashSet};

use super::Reconciler;
use crate::ids::ProjectId;
use crate::routes::Route;
use crate::tenant::TenantState;

impl Reconciler {
    /// The held projects among `active`. Their slugs are refused wakes from now on and routed
    /// to [`Route::Moving`] at once, before their tenants are stopped.
    pub(super) fn held_for_moves(
        &mut self,
        active: &HashMap<ProjectId, &TenantState>,
    ) -> HashSet<ProjectId> {
        let held: HashSet<ProjectId> = active
            .values()
            .filter(|t| t.moving)
            .map(|t| t.id.clone())
            .collect();
        self.moving = active
            .values()
            .filter(|t| t.moving)
            .map(|t| t.slug.clone())
            .collect();
        for slug in &self.moving {
            if self.routes.get(slug) != Some(Route::Moving) {
                tracing::info!(%slug, "project held for a Redis deployment move; stopping its tenant");
                self.routes.set(slug, Route::Moving);
            }
        }
        held
    }

    /// Confirms, in their holds' rows, the stop of the held projects of which no process runs
    /// or is being parked here.
    pub(super) async fn confirm_moves_stopped(
        &mut self,
        active: &HashMap<ProjectId, &TenantState>,
    ) {
        self.moves_waiting = active.values().any(|t| {
            t.moving && (self.running.contains_key(&t.id) || self.parking.contains_key(&t.id))
        });
        let stopped: Vec<String> = active
            .values()
            .filter(|t| t.moving && !t.move_stopped)
            .filter(|t| !self.running.contains_key(&t.id) && !self.parking.contains_key(&t.id))
            .map(|t| t.id.to_string())
            .collect();
        if stopped.is_empty() {
            return;
        }
        let pool = self.state.pool.clone();
        let written = self
            .waking_meanwhile(async move {
                sqlx::query(
                    "UPDATE redis_moves SET stopped_at = clock_timestamp() \
                     WHERE project_id = ANY($1) AND stopped_at IS NULL AND expires_at > now()",
                )
                .bind(&stopped)
                .execute(&pool)
                .await
            })
            .await;
        match written {
            Ok(done) => {
                tracing::info!(
                    tenants = done.rows_affected(),
                    "tenants held for a move are stopped"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot confirm the stop of tenants held for a move; the next pass retries")
            }
        }
    }
}
