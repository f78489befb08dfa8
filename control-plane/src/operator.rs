//! The operator's levers, out of every customer's reach: which plan a project or an account is
//! on, whether a project is suspended, and what each plan allows. `rotor-control-plane operator
//! …` calls these. Each change is one transaction that bumps the affected projects'
//! `config_version` (so the reconciler pushes it to the running tenants) and writes an audit
//! entry with actor `operator:<name>`.

use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use crate::audit::{self, Actor, Entry};
use crate::ids::{AccountId, ProjectId};
use crate::tenant::{bump_config_version, PlanLimits};

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no project or account {0:?} (give a prj_… id or a slug, or an acc_… id or an email)")]
    NotFound(String),
    #[error("{0:?} is an account; this command takes a project (prj_… id or slug)")]
    NotAProject(String),
    #[error("unknown plan {plan:?} (plans: {known})")]
    UnknownPlan { plan: String, known: String },
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Who is acting, as the audit log names them.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
}

impl Operator {
    /// `$USER`, or `cli` when unset.
    pub fn from_env() -> Self {
        let name = std::env::var("USER")
            .ok()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "cli".into());
        Self { name }
    }

    fn actor(&self) -> Actor<'_> {
        Actor::Operator(&self.name)
    }
}

/// What a command changed (for printing).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `project prj_… (slug)`, `account acc_… (email)` or `plan free`.
    pub target: String,
    pub before: Value,
    pub after: Value,
    /// How many projects' config versions were bumped.
    pub projects_bumped: u64,
}

/// A project or an account, as the operator named it.
enum Target {
    Project {
        id: ProjectId,
        account: AccountId,
        slug: String,
    },
    Account {
        id: AccountId,
        email: String,
    },
}

/// Resolves `prj_…` ids and slugs to projects, `acc_…` ids and emails to accounts; locks the
/// row for the rest of the transaction.
async fn resolve(conn: &mut PgConnection, name: &str) -> Result<Target, OperatorError> {
    let name = name.trim();
    if name.starts_with(AccountId::PREFIX) || name.contains('@') {
        let row: Option<(AccountId, String)> = sqlx::query_as(
            "SELECT id, email FROM accounts WHERE id = $1 OR email = lower($1) FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
        let (id, email) = row.ok_or_else(|| OperatorError::NotFound(name.to_owned()))?;
        return Ok(Target::Account { id, email });
    }
    let row: Option<(ProjectId, AccountId, String)> = sqlx::query_as(
        "SELECT id, account_id, slug FROM projects WHERE id = $1 OR slug = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    let (id, account, slug) = row.ok_or_else(|| OperatorError::NotFound(name.to_owned()))?;
    Ok(Target::Project { id, account, slug })
}

async fn check_plan(conn: &mut PgConnection, plan: &str) -> Result<(), OperatorError> {
    let known: Vec<String> = sqlx::query_scalar("SELECT name FROM plans ORDER BY name")
        .fetch_all(&mut *conn)
        .await?;
    if known.iter().any(|k| k == plan) {
        Ok(())
    } else {
        Err(OperatorError::UnknownPlan {
            plan: plan.to_owned(),
            known: known.join(", "),
        })
    }
}

/// Sets `table.column` of row `id` (locked by [`resolve`]) to `value`; returns the old value.
/// `table` and `column` are constants of this module, never input.
async fn swap(
    conn: &mut PgConnection,
    table: &'static str,
    column: &'static str,
    id: &str,
    value: &str,
) -> Result<String, sqlx::Error> {
    let before: String = sqlx::query_scalar(&format!("SELECT {column} FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(&format!("UPDATE {table} SET {column} = $2 WHERE id = $1"))
        .bind(id)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    Ok(before)
}

/// Records what the operator changed, in the change's own transaction.
async fn audited(
    conn: &mut PgConnection,
    op: &Operator,
    (account, project): (Option<&AccountId>, Option<&ProjectId>),
    action: &str,
    target: &str,
    change: Change,
) -> Result<Change, sqlx::Error> {
    audit::record(
        conn,
        Entry {
            actor: op.actor(),
            account,
            project,
            action,
            target,
            before: Some(change.before.clone()),
            after: Some(change.after.clone()),
        },
    )
    .await?;
    Ok(change)
}

/// Puts a project (its per-project limits and what its tenant is allowed) or an account (its
/// per-account limits, and the plan its new projects start on) on `plan`.
pub async fn set_plan(
    pool: &PgPool,
    op: &Operator,
    target: &str,
    plan: &str,
) -> Result<Change, OperatorError> {
    let mut tx = pool.begin().await?;
    check_plan(&mut tx, plan).await?;
    let change = match resolve(&mut tx, target).await? {
        Target::Project { id, account, slug } => {
            let before = swap(&mut tx, "projects", "plan", id.as_str(), plan).await?;
            bump_config_version(&mut tx, &id).await?;
            let change = Change {
                target: format!("project {id} ({slug})"),
                before: json!({"plan": before}),
                after: json!({"plan": plan}),
                projects_bumped: 1,
            };
            let scope = (Some(&account), Some(&id));
            audited(&mut tx, op, scope, "operator.set_plan", id.as_str(), change).await?
        }
        Target::Account { id, email } => {
            let before = swap(&mut tx, "accounts", "plan", id.as_str(), plan).await?;
            let change = Change {
                target: format!("account {id} ({email})"),
                before: json!({"plan": before}),
                after: json!({"plan": plan}),
                projects_bumped: 0,
            };
            let scope = (Some(&id), None);
            audited(
                &mut tx,
                op,
                scope,
                "operator.set_account_plan",
                id.as_str(),
                change,
            )
            .await?
        }
    };
    tx.commit().await?;
    Ok(change)
}

/// Suspends a project: its tenant stops and its endpoints answer `project_suspended`.
pub async fn suspend(pool: &PgPool, op: &Operator, project: &str) -> Result<Change, OperatorError> {
    set_status(pool, op, project, "suspended").await
}

/// Resumes a suspended project.
pub async fn resume(pool: &PgPool, op: &Operator, project: &str) -> Result<Change, OperatorError> {
    set_status(pool, op, project, "active").await
}

async fn set_status(
    pool: &PgPool,
    op: &Operator,
    project: &str,
    status: &str,
) -> Result<Change, OperatorError> {
    let mut tx = pool.begin().await?;
    let Target::Project { id, account, slug } = resolve(&mut tx, project).await? else {
        return Err(OperatorError::NotAProject(project.to_owned()));
    };
    let before = swap(&mut tx, "projects", "status", id.as_str(), status).await?;
    bump_config_version(&mut tx, &id).await?;
    let change = Change {
        target: format!("project {id} ({slug})"),
        before: json!({"status": before}),
        after: json!({"status": status}),
        projects_bumped: 1,
    };
    let action = if status == "active" {
        "operator.resume"
    } else {
        "operator.suspend"
    };
    let scope = (Some(&account), Some(&id));
    let change = audited(&mut tx, op, scope, action, id.as_str(), change).await?;
    tx.commit().await?;
    Ok(change)
}

/// Changes some of a plan's limits (`patch` is merged into them: `{"max_projects": 5}`); every
/// project on the plan gets the new limits pushed.
pub async fn set_limits(
    pool: &PgPool,
    op: &Operator,
    plan: &str,
    patch: &Value,
) -> Result<Change, OperatorError> {
    PlanLimits::parse_strict(patch).map_err(OperatorError::InvalidLimits)?;
    let mut tx = pool.begin().await?;
    check_plan(&mut tx, plan).await?;
    let before: Value = sqlx::query_scalar("SELECT limits FROM plans WHERE name = $1 FOR UPDATE")
        .bind(plan)
        .fetch_one(&mut *tx)
        .await?;
    let mut after = before.clone();
    if let (Some(after), Some(patch)) = (after.as_object_mut(), patch.as_object()) {
        after.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    PlanLimits::parse_strict(&after).map_err(OperatorError::InvalidLimits)?;
    sqlx::query("UPDATE plans SET limits = $2 WHERE name = $1")
        .bind(plan)
        .bind(&after)
        .execute(&mut *tx)
        .await?;
    let bumped = sqlx::query(
        "UPDATE projects SET config_version = config_version + 1, updated_at = now() WHERE plan = $1",
    )
    .bind(plan)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let change = Change {
        target: format!("plan {plan}"),
        before,
        after,
        projects_bumped: bumped,
    };
    let change = audited(
        &mut tx,
        op,
        (None, None),
        "operator.set_limits",
        plan,
        change,
    )
    .await?;
    tx.commit().await?;
    Ok(change)
}

/// A plan, its limits and who is on it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PlanInfo {
    pub name: String,
    pub limits: Value,
    pub projects: i64,
    pub accounts: i64,
}

/// Every plan with its limits and how many projects and accounts are on it.
pub async fn list_plans(pool: &PgPool) -> Result<Vec<PlanInfo>, OperatorError> {
    Ok(sqlx::query_as(
        "SELECT name, limits, \
           (SELECT count(*) FROM projects pr WHERE pr.plan = p.name) AS projects, \
           (SELECT count(*) FROM accounts a WHERE a.plan = p.name) AS accounts \
         FROM plans p ORDER BY name",
    )
    .fetch_all(pool)
    .await?)
}
