//! What happened to a tenant's process that its owner should see (`tenant_events`): a restart
//! after the kernel killed it for exceeding its plan's memory, or after any other exit. A
//! restart for memory is also an audit entry (actor `system:supervisor`) in the owner's log.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::audit::{self, Actor, Entry};
use crate::ids::{AccountId, ProjectId};
use crate::sandbox::ExitCause;

/// One event, as the REST API lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct TenantEvent {
    pub at: DateTime<Utc>,
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
