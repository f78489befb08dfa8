//! Shared pieces of REST handlers: the owned-project lookup, config version bumps and audit.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::{RestError, RestResult};
use crate::ids::{AccountId, ProjectId};

/// Parses a project id from the path and checks the account owns it. Unknown ids and other
/// accounts' projects are the same 404.
pub async fn owned_project(pool: &PgPool, account: &AccountId, id: &str) -> RestResult<ProjectId> {
    let id = ProjectId::parse(id).ok_or(RestError::NotFound)?;
    let found: Option<ProjectId> =
        sqlx::query_scalar("SELECT id FROM projects WHERE id = $1 AND account_id = $2")
            .bind(&id)
            .bind(account)
            .fetch_optional(pool)
            .await?;
    found.ok_or(RestError::NotFound)
}

/// Marks the project's config as changed (in the caller's transaction).
pub async fn bump_version(conn: &mut PgConnection, project: &ProjectId) -> RestResult<()> {
    sqlx::query(
        "UPDATE projects SET config_version = config_version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(project)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes an audit entry (before/after must carry no secrets).
pub async fn audit(
    conn: &mut PgConnection,
    account: &AccountId,
    project: Option<&ProjectId>,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> RestResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (account_id, project_id, actor, action, target, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(account)
    .bind(project)
    .bind(format!("account:{account}"))
    .bind(action)
    .bind(target)
    .bind(before)
    .bind(after)
    .execute(conn)
    .await?;
    Ok(())
}
