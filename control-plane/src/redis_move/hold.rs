//! The hold on a project while it moves (table `redis_moves`, migration 0014). Placing it
//! tells every control plane to stop the project's tenant and start or wake none
//! ([`crate::reconciler`]); a control plane that has done so confirms it in the row. The hold
//! is a lease: the move renews it every few seconds, so a move whose command was killed holds
//! the project for at most [`LEASE`], after which the tenant starts again on the deployment the
//! project still points at and `move-project` may be run again. The move ends the hold in
//! the same transaction that switches the project, and only while the lease has a margin
//! left, so no control plane can see the hold lapse and start the tenant on the old
//! deployment while the project is being switched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{History, MoveError};
use crate::ids::ProjectId;

/// How long a hold lasts unless renewed: how long a project whose move was interrupted stays
/// stopped at most.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a move renews its hold.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// The lease a hold must have left for the switch to end it (see the module doc).
const SWITCH_MARGIN_SECS: f64 = 10.0;

/// A hold placed by this move, renewed until dropped.
pub(super) struct Hold {
    pool: PgPool,
    project: ProjectId,
    started: DateTime<Utc>,
    /// A renewal found the hold gone (ended by someone else, or lapsed and replaced).
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Hold {
    /// Holds `project` for a move to `deployment`; refused while another move holds it.
    pub(super) async fn place(
        pool: &PgPool,
        project: &ProjectId,
        deployment: &str,
        history: History,
    ) -> Result<Self, super::OperatorError> {
        let started: Option<DateTime<Utc>> = sqlx::query_scalar(
            "INSERT INTO redis_moves (project_id, deployment, history, expires_at) \
             VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4)) \
             ON CONFLICT (project_id) DO UPDATE SET deployment = EXCLUDED.deployment, \
                 history = EXCLUDED.history, started_at = clock_timestamp(), \
                 expires_at = EXCLUDED.expires_at, stopped_at = NULL \
             WHERE redis_moves.expires_at <= now() \
             RETURNING started_at",
        )
        .bind(project)
        .bind(deployment)
        .bind(history.as_str())
        .bind(LEASE.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        let Some(started) = started else {
            let (to, since, left): (String, f64, f64) = sqlx::query_as(
                "SELECT deployment, extract(epoch FROM now() - started_at)::float8, \
                        extract(epoch FROM expires_at - now())::float8 \
                 FROM redis_moves WHERE project_id = $1",
            )
            .bind(project)
            .fetch_one(pool)
            .await?;
            return Err(MoveError::UnderWay {
                deployment: to,
                since_secs: since.max(0.0).round() as u64,
                left_secs: left.max(0.0).ceil() as u64,
            }
            .into());
        };
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(pool.clone(), project.clone(), started, lost.clone()));
        Ok(Self {
            pool: pool.clone(),
            project: project.clone(),
            started,
            lost,
            renewer,
        })
    }

    /// Whether a control plane confirmed it stopped the tenant (an error when the hold is no
    /// longer this move's).
    pub(super) async fn stop_confirmed(&self) -> Result<bool, super::OperatorError> {
        let confirmed: Option<bool> = sqlx::query_scalar(
            "SELECT stopped_at IS NOT NULL FROM redis_moves \
             WHERE project_id = $1 AND started_at = $2 AND expires_at > now()",
        )
        .bind(&self.project)
        .bind(self.started)
        .fetch_optional(&self.pool)
        .await?;
        match confirmed {
            Some(c) if !self.lost.load(Ordering::Relaxed) => Ok(c),
            _ => Err(MoveError::HoldLost.into()),
        }
    }

    /// Ends the hold in the switch's transaction; an error when it is no longer this move's
    /// or too close to lapsing.
    pub(super) async fn end_in(
        &self,
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), super::OperatorError> {
        let ended = sqlx::query(
            "DELETE FROM redis_moves WHERE project_id = $1 AND started_at = $2 \
             AND expires_at > clock_timestamp() + make_interval(secs => $3)",
        )
        .bind(&self.project)
        .bind(self.started)
        .bind(SWITCH_MARGIN_SECS)
        .execute(tx)
        .await?;
        if ended.rows_affected() != 1 || self.lost.load(Ordering::Relaxed) {
            return Err(MoveError::HoldLost.into());
        }
        Ok(())
    }

    /// Calls the move off: the hold ends (if still this move's) and the tenant starts again
    /// where it was.
    pub(super) async fn release(self) -> Result<(), sqlx::Error> {
        self.renewer.abort();
        sqlx::query("DELETE FROM redis_moves WHERE project_id = $1 AND started_at = $2")
            .bind(&self.project)
            .bind(self.started)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews the hold every [`RENEW_EVERY`] until aborted; notes when it is gone.
async fn renew(pool: PgPool, project: ProjectId, started: DateTime<Utc>, lost: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let renewed = sqlx::query(
            "UPDATE redis_moves SET expires_at = clock_timestamp() + make_interval(secs => $3) \
             WHERE project_id = $1 AND started_at = $2 AND expires_at > clock_timestamp()",
        )
        .bind(&project)
        .bind(started)
        .bind(LEASE.as_secs_f64())
        .execute(&pool)
        .await;
        match renewed {
            Ok(r) if r.rows_affected() == 1 => {}
            Ok(_) => {
                tracing::warn!(tenant = %project, "the move's hold is gone; the move will be called off");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!(tenant = %project, error = %e, "cannot renew the move's hold; retrying")
            }
        }
    }
}
