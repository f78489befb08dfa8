//! Shared pieces of REST handlers: the owned-project lookup, config version bumps, audit, and
//! how the errors of the services they call become [`RestError`]s.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::{RestError, RestResult};
use crate::audit::{Actor, Entry};
use crate::ids::{AccountId, ProjectId};
use crate::limits::LimitError;
use crate::sealed::SealError;
use crate::secret_store::SecretError;

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
    Ok(crate::tenant::bump_config_version(conn, project).await?)
}

/// Writes an audit entry for a change the account made ([`crate::audit::record`] redacts
/// secrets; callers still pass markers such as `{"hmac_secret": "changed"}`, not values).
pub async fn audit(
    conn: &mut PgConnection,
    account: &AccountId,
    project: Option<&ProjectId>,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> RestResult<()> {
    crate::audit::record(
        conn,
        Entry {
            actor: Actor::Account(account),
            account: Some(account),
            project,
            action,
            target,
            before,
            after,
        },
    )
    .await?;
    Ok(())
}

impl From<LimitError> for RestError {
    fn from(e: LimitError) -> Self {
        match e {
            e @ LimitError::Exceeded { .. } => Self::PlanLimit(e.to_string()),
            LimitError::Missing => Self::NotFound,
            LimitError::Db(e) => e.into(),
        }
    }
}

impl From<SecretError> for RestError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Db(e) => e.into(),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<SealError> for RestError {
    fn from(e: SealError) -> Self {
        Self::Internal(e.into())
    }
}
