//! How much an account or a project may own under its plan: projects and management tokens
//! per account (the account's plan), API keys and namespaces per project (the project's plan).
//!
//! Each check runs inside the transaction that creates the thing: it locks the parent row
//! (`SELECT … FOR NO KEY UPDATE` on the account or project), then counts, so concurrent
//! creations for one parent queue up and the count each sees includes the others' inserts.
//! Call the check, insert, and commit in the same transaction; the lock holds until commit.
//! A limit of 0 (or a plan without it) means unlimited.

use sqlx::PgConnection;

use crate::ids::{AccountId, ProjectId};
use crate::tenant::PlanLimits;

/// Why a creation is refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The plan's limit is reached.
    #[error("your plan ({plan}) allows at most {max} {what} ({limit})")]
    Exceeded {
        plan: String,
        /// What is counted, plural (`projects per account`).
        what: &'static str,
        max: u32,
        /// The limit's name in the plan (`max_projects`).
        limit: &'static str,
    },
    /// The parent account or project does not exist (any more).
    #[error("not found")]
    Missing,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Locks the account and checks it may create another project; returns the account's plan,
/// which the new project gets.
pub async fn check_projects_in_tx(
    conn: &mut PgConnection,
    account: &AccountId,
) -> Result<String, LimitError> {
    let (plan, limits) = lock_account(conn, account).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE account_id = $1")
        .bind(account)
        .fetch_one(&mut *conn)
        .await?;
    within(
        &plan,
        count,
        limits.max_projects,
        "projects per account",
        "max_projects",
    )?;
    Ok(plan)
}

/// Locks the account and checks it may create another management token.
pub async fn check_tokens_in_tx(
    conn: &mut PgConnection,
    account: &AccountId,
) -> Result<(), LimitError> {
    let (plan, limits) = lock_account(conn, account).await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM management_tokens WHERE account_id = $1")
            .bind(account)
            .fetch_one(&mut *conn)
            .await?;
    within(
        &plan,
        count,
        limits.max_management_tokens,
        "management tokens per account",
        "max_management_tokens",
    )
}

/// Locks the project and checks it may get another API key.
pub async fn check_api_keys_in_tx(
    conn: &mut PgConnection,
    project: &ProjectId,
) -> Result<(), LimitError> {
    let (plan, limits) = lock_project(conn, project).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE project_id = $1")
        .bind(project)
        .fetch_one(&mut *conn)
        .await?;
    within(
        &plan,
        count,
        limits.max_api_keys,
        "API keys per project",
        "max_api_keys",
    )
}

/// Locks the project and checks it may have namespace `name`: always when it exists already
/// (an update), else when the count is below the plan's limit. Returns the project's limits
/// (for the option maxima).
pub async fn check_namespaces_in_tx(
    conn: &mut PgConnection,
    project: &ProjectId,
    name: &str,
) -> Result<PlanLimits, LimitError> {
    let (plan, limits) = lock_project(conn, project).await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM namespaces WHERE project_id = $1 AND name = $2)",
    )
    .bind(project)
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM namespaces WHERE project_id = $1")
                .bind(project)
                .fetch_one(&mut *conn)
                .await?;
        within(
            &plan,
            count,
            limits.max_namespaces,
            "namespaces per project",
            "max_namespaces",
        )?;
    }
    Ok(limits)
}

fn within(
    plan: &str,
    count: i64,
    max: u32,
    what: &'static str,
    limit: &'static str,
) -> Result<(), LimitError> {
    if max > 0 && count >= i64::from(max) {
        return Err(LimitError::Exceeded {
            plan: plan.to_owned(),
            what,
            max,
            limit,
        });
    }
    Ok(())
}

async fn lock_account(
    conn: &mut PgConnection,
    account: &AccountId,
) -> Result<(String, PlanLimits), LimitError> {
    lock_with_plan(
        conn,
        "SELECT a.plan, p.limits FROM accounts a LEFT JOIN plans p ON p.name = a.plan \
         WHERE a.id = $1 FOR NO KEY UPDATE OF a",
        &account.0,
    )
    .await
}

async fn lock_project(
    conn: &mut PgConnection,
    project: &ProjectId,
) -> Result<(String, PlanLimits), LimitError> {
    lock_with_plan(
        conn,
        "SELECT pr.plan, p.limits FROM projects pr LEFT JOIN plans p ON p.name = pr.plan \
         WHERE pr.id = $1 FOR NO KEY UPDATE OF pr",
        &project.0,
    )
    .await
}

/// Locks the row `query` selects by `id` (until the transaction ends) and reads its plan and
/// the plan's limits.
async fn lock_with_plan(
    conn: &mut PgConnection,
    query: &'static str,
    id: &str,
) -> Result<(String, PlanLimits), LimitError> {
    let row: Option<(String, Option<serde_json::Value>)> = sqlx::query_as(query)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let (plan, limits) = row.ok_or(LimitError::Missing)?;
    let limits = limits
        .map(|l| PlanLimits::from_json(&l))
        .unwrap_or_default();
    Ok((plan, limits))
}
