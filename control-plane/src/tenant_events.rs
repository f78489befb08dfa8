//! What happened to a tenant's process that its owner should see (`tenant_events`): a restart
//! after the kernel killed it for exceeding its plan's memory, or after any other exit, and
//! its plan's CPU cap holding it back ([`crate::throttling`]). A restart for memory and a CPU
//! throttle are also audit entries (actor `system:supervisor`) in the owner's log.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::audit::{self, Actor, Entry};
use crate::ids::{AccountId, ProjectId};
use crate::sandbox::ExitCause;

/// One event of the project's process, as the REST API lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TenantEvent {
    pub at: DateTime<Utc>,
    /// `restarted_out_of_memory`, `restarted_after_exit` or `cpu_throttled`.
    pub kind: String,
    pub detail: Value,
}

/// Records that `project`'s process ended with `cause` and is being restarted.
pub async fn record_exit(
    pool: &PgPool,
    project: &ProjectId,
    cause: &ExitCause,
) -> Result<(), sqlx::Error> {
    let (kind, detail) = match cause {
        ExitCause::OutOfMemory { limit_bytes } => (
            "restarted_out_of_memory",
            json!({"memory_limit_bytes": limit_bytes,
                   "message": "the process went over its plan's memory limit and was restarted"}),
        ),
        ExitCause::Exited { status } => (
            "restarted_after_exit",
            json!({"status": status, "message": "the process ended unexpectedly and was restarted"}),
        ),
    };
    let mut tx = pool.begin().await?;
    let owner: Option<(AccountId, String)> =
        sqlx::query_as("SELECT account_id, slug FROM projects WHERE id = $1")
            .bind(project)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((account, slug)) = owner else {
        // Deleted meanwhile: nothing to tell anyone.
        return Ok(());
    };
    sqlx::query("INSERT INTO tenant_events (project_id, kind, detail) VALUES ($1, $2, $3)")
        .bind(project)
        .bind(kind)
        .bind(&detail)
        .execute(&mut *tx)
        .await?;
    if matches!(cause, ExitCause::OutOfMemory { .. }) {
        audit::record(
            &mut tx,
            Entry {
                actor: Actor::System("supervisor"),
                account: Some(&account),
                project: Some(project),
                action: "tenant.restart_out_of_memory",
                target: &slug,
                before: None,
                after: Some(detail),
            },
        )
        .await?;
    }
    tx.commit().await
}

/// Records that `project`'s plan's CPU cap held its process back over a sample: an event, and
/// an audit entry by the supervisor.
pub async fn record_cpu_throttled(
    pool: &PgPool,
    project: &ProjectId,
    throttled: &crate::throttling::Throttled,
) -> Result<(), sqlx::Error> {
    let share = throttled.throttled as f64 / throttled.periods.max(1) as f64;
    let mut tx = pool.begin().await?;
    let owner: Option<(AccountId, String, Option<i64>)> = sqlx::query_as(
        "SELECT p.account_id, p.slug, (l.limits->>'tenant_cpu_max_percent')::BIGINT \
         FROM projects p LEFT JOIN plans l ON l.name = p.plan WHERE p.id = $1",
    )
    .bind(project)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((account, slug, cap)) = owner else {
        return Ok(());
    };
    let cap = cap.unwrap_or(0);
    let detail = json!({
        "cpu_max_percent": cap,
        "periods": throttled.periods,
        "periods_throttled": throttled.throttled,
        "throttled_share": (share * 1000.0).round() / 1000.0,
        "over_seconds": throttled.over.as_secs(),
        "message": format!(
            "the process used all the CPU its plan allows ({cap} % of a core) in {:.0} % of the last {}s: requests waited; a plan with more CPU removes the wait",
            share * 100.0,
            throttled.over.as_secs()
        ),
    });
    sqlx::query(
        "INSERT INTO tenant_events (project_id, kind, detail) VALUES ($1, 'cpu_throttled', $2)",
    )
    .bind(project)
    .bind(&detail)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        Entry {
            actor: Actor::System("supervisor"),
            account: Some(&account),
            project: Some(project),
            action: "tenant.cpu_throttled",
            target: &slug,
            before: None,
            after: Some(detail),
        },
    )
    .await?;
    tx.commit().await
}

/// The newest `limit` events of `project`, newest first.
pub async fn list(
    pool: &PgPool,
    project: &ProjectId,
    limit: i64,
) -> Result<Vec<TenantEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT at, kind, detail FROM tenant_events WHERE project_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(project)
    .bind(limit)
    .fetch_all(pool)
    .await
}
