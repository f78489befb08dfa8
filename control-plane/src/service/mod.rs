//! The control plane's service layer: what an account can do with its projects, API keys,
//! namespaces, credentials and usage, and its dashboard sessions' storage, as typed functions
//! with typed results and one error ([`ServiceError`]). Every function is scoped by the acting
//! account (project-level ones by a [`ProjectScope`], which only the ownership check makes;
//! session ones by the session's token hash), and every plan limit is checked inside the
//! transaction that writes. The REST API ([`crate::rest`]) and the dashboard
//! ([`crate::web`]) are adapters over it: they parse requests, call it, and render what it
//! returns (JSON there, pages and flashes here).

pub mod accounts;
pub mod consumers;
mod error;
pub mod keys;
pub mod namespaces;
pub mod projects;
pub mod sessions;
pub mod usage;
pub mod webhooks;

use serde_json::Value;
use sqlx::PgConnection;

pub use error::{ServiceError, ServiceResult};
pub use projects::ProjectScope;

use crate::audit::{Actor, Entry};
use crate::ids::{AccountId, ProjectId};

/// Marks the project's config as changed (in the caller's transaction).
pub(crate) async fn bump_version(
    conn: &mut PgConnection,
    project: &ProjectId,
) -> ServiceResult<()> {
    Ok(crate::tenant::bump_config_version(conn, project).await?)
}

/// Writes an audit entry for a change the account made ([`crate::audit::record`] redacts
/// secrets; callers still pass markers such as `{"hmac_secret": "changed"}`, not values).
pub(crate) async fn audit(
    conn: &mut PgConnection,
    account: &AccountId,
    project: Option<&ProjectId>,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> ServiceResult<()> {
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
