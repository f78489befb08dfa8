//! Projects of an account: create (with its token secret, its plan's project count checked and
//! its Redis deployment chosen in the creating transaction), list, read, rename or re-configure,
//! delete. A project is reached through a [`ProjectScope`], which only [`owned`] makes: the
//! proof that the project belongs to the acting account. Plans and status are the operator's
//! ([`crate::operator`]).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{audit, bump_version, namespaces, ServiceError, ServiceResult};
use crate::ids::{random_suffix, AccountId, ProjectId};
use crate::limits;
use crate::project_settings;
use crate::sealed::Keyring;
use crate::secret_store::seal_token_secret;
use crate::secrets::new_hmac_secret;
use crate::state::AppState;

/// A project of the acting account, checked: every project-level operation takes one. Made
/// only by [`owned`] (and by [`create`] for the project it makes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectScope {
    account: AccountId,
    id: ProjectId,
}

impl ProjectScope {
    /// The acting account, which owns the project.
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The project.
    pub fn id(&self) -> &ProjectId {
        &self.id
    }
}

/// The project `raw` (an id as a path gives it) when `account` owns it; unknown ids, malformed
/// ids and other accounts' projects are the same [`ServiceError::NotFound`].
pub async fn owned(
    state: &AppState,
    account: &AccountId,
    raw: &str,
) -> ServiceResult<ProjectScope> {
    let id = ProjectId::parse(raw).ok_or(ServiceError::NotFound)?;
    let found: Option<ProjectId> =
        sqlx::query_scalar("SELECT id FROM projects WHERE id = $1 AND account_id = $2")
            .bind(&id)
            .bind(account)
            .fetch_optional(&state.pool)
            .await?;
    let id = found.ok_or(ServiceError::NotFound)?;
    Ok(ProjectScope {
        account: account.clone(),
        id,
    })
}

/// The engine a project's channels run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Memory,
    Redis,
}

impl Engine {
    /// `memory` (also for `None`) or `redis`; anything else is refused with its field.
    pub fn parse(s: Option<&str>) -> ServiceResult<Self> {
        match s {
            None | Some("memory") => Ok(Self::Memory),
            Some("redis") => Ok(Self::Redis),
            Some(_) => Err(ServiceError::field(
                "engine",
                "engine must be \"memory\" or \"redis\"",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// What a new project is made of.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub engine: Engine,
    /// A first namespace (name, channel options), written in the creating transaction so the
    /// project's first config already has it.
    pub starter: Option<(String, Value)>,
}

/// A project as its owner sees it (proxy static headers opened).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub slug: String,
    pub engine: String,
    pub plan: String,
    pub status: String,
    pub settings: Value,
    pub config_version: i64,
    pub applied_version: i64,
    pub created_at: DateTime<Utc>,
}

/// A project in a list: what it is called and runs on, and how many namespaces it has.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectSummary {
    pub id: ProjectId,
    pub name: String,
    pub slug: String,
    pub status: String,
    pub engine: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
    pub namespaces: i64,
}

/// What may change of a project: its name and its settings (plaintext, as the owner sees
/// them). `None` leaves it as it is.
#[derive(Debug, Clone, Default)]
pub struct ProjectUpdate {
    pub name: Option<String>,
    pub settings: Option<Value>,
}

const PROJECT_COLUMNS: &str =
    "id, name, slug, engine, plan, status, settings, config_version, applied_version, created_at";

/// A URL-safe slug from a project name.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_ascii_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug
        .trim_end_matches('-')
        .chars()
        .take(40)
        .collect::<String>();
    if slug.is_empty() {
        format!("project-{}", random_suffix(6))
    } else {
        slug
    }
}

/// Slugs no project gets: names an operator gives hosts of its own next to the tenant hosts
/// (the dashboard, the API, mail, status pages, …), so a project can never answer for one of
/// them under `{slug}.<tenant host>`. A project named so gets a random suffix instead.
pub const RESERVED_SLUGS: &[&str] = &[
    "about",
    "account",
    "accounts",
    "admin",
    "api",
    "app",
    "apps",
    "assets",
    "auth",
    "autoconfig",
    "autodiscover",
    "billing",
    "blog",
    "cdn",
    "console",
    "control",
    "dashboard",
    "dev",
    "docs",
    "edge",
    "ftp",
    "help",
    "imap",
    "internal",
    "login",
    "mail",
    "manage",
    "metrics",
    "mx",
    "ns",
    "ns1",
    "ns2",
    "operator",
    "pop",
    "pop3",
    "portal",
    "root",
    "rotor",
    "signup",
    "smtp",
    "staging",
    "static",
    "status",
    "support",
    "webmail",
    "www",
];

/// Whether `slug` is one no project may have ([`RESERVED_SLUGS`]).
pub fn is_reserved_slug(slug: &str) -> bool {
    RESERVED_SLUGS.contains(&slug)
}

/// A trimmed name of 1 to 100 characters (projects and API keys).
pub fn check_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ServiceError::field(
            "name",
            "a name of 1 to 100 characters is required",
        ));
    }
    Ok(name.to_owned())
}

/// The refusal for a Redis-engine project on an installation without a Redis or an open
/// deployment.
fn redis_unavailable() -> ServiceError {
    ServiceError::field(
        "engine",
        "The Redis engine is not available on this installation.",
    )
}

/// Whether Redis-engine projects can be made now: the installation has a Redis or an open
/// deployment. (For showing the choice; [`create`] decides in its transaction.)
pub async fn redis_available(state: &AppState) -> ServiceResult<bool> {
    Ok(state.settings.redis_url.is_some()
        || crate::redis_deployments::any_open(&state.pool).await?)
}

/// Creates a project for `account`: in one transaction the account is locked and its plan's
/// project count checked, a Redis-engine project is placed on the emptiest open deployment
/// (refused when there is none and no installation Redis), the token secret is made, the
/// starter namespace written and the creation audited.
pub async fn create(
    state: &AppState,
    account: &AccountId,
    new: NewProject,
) -> ServiceResult<Project> {
    let name = check_name(&new.name)?;
    // A new project has no settings yet: the options are checked against the defaults.
    let starter = new
        .starter
        .map(|(ns, options)| {
            namespaces::validate_options(&ns, &options, &json!({})).map(|canonical| (ns, canonical))
        })
        .transpose()?;
    let engine = new.engine;
    let id = ProjectId::generate();
    let base = slugify(&name);
    let mut tx = state.pool.begin().await?;
    // Locks the account until commit: concurrent creations are counted one after another.
    let plan = limits::check_projects_in_tx(&mut tx, account).await?;
    let mut slug = if is_reserved_slug(&base) {
        format!("{base}-{}", random_suffix(5))
    } else {
        base.clone()
    };
    for _ in 0..5 {
        let taken: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM projects WHERE slug = $1)")
                .bind(&slug)
                .fetch_one(&mut *tx)
                .await?;
        if !taken {
            break;
        }
        slug = format!("{base}-{}", random_suffix(5));
    }
    let redis_prefix = (engine == Engine::Redis).then(|| format!("rotor:{id}:"));
    // The operator's deployments take Redis-engine projects, the emptiest open one first;
    // without one, only an installation Redis can serve the project.
    let deployment = match engine {
        Engine::Redis => {
            let placed = crate::redis_deployments::place(&mut tx).await?;
            if placed.is_none() && state.settings.redis_url.is_none() {
                return Err(redis_unavailable());
            }
            placed
        }
        Engine::Memory => None,
    };
    sqlx::query("INSERT INTO projects (id, account_id, name, slug, engine, redis_prefix, redis_deployment, plan) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&id)
        .bind(account)
        .bind(&name)
        .bind(&slug)
        .bind(engine.as_str())
        .bind(redis_prefix)
        .bind(&deployment)
        .bind(&plan)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO token_secrets (project_id, hmac_secret) VALUES ($1, $2)")
        .bind(&id)
        .bind(seal_token_secret(&id, &new_hmac_secret())?)
        .execute(&mut *tx)
        .await?;
    let scope = ProjectScope {
        account: account.clone(),
        id,
    };
    audit(
        &mut tx,
        &scope.account,
        Some(&scope.id),
        "project.create",
        scope.id.as_str(),
        None,
        Some(json!({"name": name, "slug": slug, "engine": engine.as_str()})),
    )
    .await?;
    if let Some((ns, canonical)) = &starter {
        namespaces::write_in_tx(&mut tx, &scope, ns, canonical, namespaces::Write::Upsert).await?;
    }
    tx.commit().await?;
    state.config_changed();
    get(state, &scope).await
}

/// The account's projects, oldest first.
pub async fn list(state: &AppState, account: &AccountId) -> ServiceResult<Vec<Project>> {
    let rows: Vec<Project> = sqlx::query_as(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE account_id = $1 ORDER BY created_at"
    ))
    .bind(account)
    .fetch_all(&state.pool)
    .await?;
    rows.into_iter().map(opened).collect()
}

/// The account's projects with their namespace counts, oldest first.
pub async fn summaries(
    state: &AppState,
    account: &AccountId,
) -> ServiceResult<Vec<ProjectSummary>> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.name, p.slug, p.status, p.engine, p.plan, p.created_at, \
                (SELECT count(*) FROM namespaces n WHERE n.project_id = p.id) AS namespaces \
         FROM projects p WHERE p.account_id = $1 ORDER BY p.created_at",
    )
    .bind(account)
    .fetch_all(&state.pool)
    .await?)
}

/// One project as a list shows it.
pub async fn summary(state: &AppState, scope: &ProjectScope) -> ServiceResult<ProjectSummary> {
    let found: Option<ProjectSummary> = sqlx::query_as(
        "SELECT p.id, p.name, p.slug, p.status, p.engine, p.plan, p.created_at, \
                (SELECT count(*) FROM namespaces n WHERE n.project_id = p.id) AS namespaces \
         FROM projects p WHERE p.id = $1 AND p.account_id = $2",
    )
    .bind(&scope.id)
    .bind(&scope.account)
    .fetch_optional(&state.pool)
    .await?;
    found.ok_or(ServiceError::NotFound)
}

/// One project, with its settings opened.
pub async fn get(state: &AppState, scope: &ProjectScope) -> ServiceResult<Project> {
    let row: Project = sqlx::query_as(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 AND account_id = $2"
    ))
    .bind(&scope.id)
    .bind(&scope.account)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ServiceError::NotFound)?;
    opened(row)
}

/// A project's stored settings with the proxies' static headers opened.
fn opened(mut p: Project) -> ServiceResult<Project> {
    p.settings = project_settings::open_secrets(Keyring::global()?, &p.id, &p.settings)?;
    Ok(p)
}

/// A project's settings as its owner sees them (static headers opened).
pub async fn settings(state: &AppState, scope: &ProjectScope) -> ServiceResult<Value> {
    let stored: Option<Value> =
        sqlx::query_scalar("SELECT settings FROM projects WHERE id = $1 AND account_id = $2")
            .bind(&scope.id)
            .bind(&scope.account)
            .fetch_optional(&state.pool)
            .await?;
    let stored = stored.ok_or(ServiceError::NotFound)?;
    Ok(project_settings::open_secrets(
        Keyring::global()?,
        &scope.id,
        &stored,
    )?)
}

/// Validates project settings (see [`crate::project_settings`]) together with the project's
/// namespaces, by the data plane's own config rules, and the options of channels without a
/// namespace against the plan's history limits.
async fn validate_settings(
    state: &AppState,
    id: &ProjectId,
    settings: &Value,
) -> ServiceResult<()> {
    let namespaces: Vec<(String, Value)> =
        sqlx::query_as("SELECT name, options FROM namespaces WHERE project_id = $1 ORDER BY name")
            .bind(id)
            .fetch_all(&state.pool)
            .await?;
    crate::project_settings::validate(settings, &namespaces)
        .map_err(|e| ServiceError::field(e.field, e.message))?;
    let limits = crate::tenant::PlanLimits::of_project(&state.pool, id).await?;
    if let Some((field, message)) = settings
        .get("without_namespace")
        .and_then(|options| limits.history_excess(options))
    {
        return Err(ServiceError::field(
            format!("settings.without_namespace.{field}"),
            message,
        ));
    }
    Ok(())
}

/// Renames a project and/or replaces its settings (static headers are sealed here), validated
/// by the data plane's rules; one transaction with the version bump and the audit entry.
/// Returns the project as it is now.
pub async fn update(
    state: &AppState,
    scope: &ProjectScope,
    change: ProjectUpdate,
) -> ServiceResult<Project> {
    let id = &scope.id;
    let name = change.name.as_deref().map(check_name).transpose()?;
    if let Some(settings) = &change.settings {
        validate_settings(state, id, settings).await?;
    }
    let sealed = match &change.settings {
        Some(s) => Some(project_settings::seal_secrets(Keyring::global()?, id, s)),
        None => None,
    };
    let mut tx = state.pool.begin().await?;
    let before: Option<(String, Value)> = sqlx::query_as(
        "SELECT name, settings FROM projects WHERE id = $1 AND account_id = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(&scope.account)
    .fetch_optional(&mut *tx)
    .await?;
    let (before_name, before_settings) = before.ok_or(ServiceError::NotFound)?;
    sqlx::query("UPDATE projects SET name = COALESCE($2, name), settings = COALESCE($3, settings) WHERE id = $1")
        .bind(id)
        .bind(&name)
        .bind(&sealed)
        .execute(&mut *tx)
        .await?;
    bump_version(&mut tx, id).await?;
    audit(
        &mut tx,
        &scope.account,
        Some(id),
        "project.update",
        id.as_str(),
        Some(json!({"name": before_name, "settings": project_settings::redact_secrets(&before_settings)})),
        Some(json!({"name": name, "settings": change.settings.as_ref().map(project_settings::redact_secrets)})),
    )
    .await?;
    tx.commit().await?;
    state.config_changed();
    get(state, scope).await
}

/// Deletes a project; the reconciler stops its tenant.
pub async fn delete(state: &AppState, scope: &ProjectScope) -> ServiceResult<()> {
    let mut tx = state.pool.begin().await?;
    audit(
        &mut tx,
        &scope.account,
        Some(&scope.id),
        "project.delete",
        scope.id.as_str(),
        None,
        None,
    )
    .await?;
    let gone = sqlx::query("DELETE FROM projects WHERE id = $1 AND account_id = $2")
        .bind(&scope.id)
        .bind(&scope.account)
        .execute(&mut *tx)
        .await?;
    if gone.rows_affected() == 0 {
        return Err(ServiceError::NotFound);
    }
    tx.commit().await?;
    state.config_changed();
    Ok(())
}
