//! Projects and what hangs off them: token secrets (sealed at rest; revealed to the owner,
//! rotated), API keys (shown once, stored as SHA-256), settings (proxy static headers sealed),
//! and the audit trail. Plans and status are the operator's ([`crate::operator`]); how many
//! projects and keys an account may have is checked by [`crate::limits`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::util::{audit, bump_version, owned_project};
use super::{Account, RestError, RestResult};
use crate::ids::{random_suffix, AccountId, ApiKeyId, ProjectId};
use crate::sealed::Keyring;
use crate::secret_store::{seal_token_secret, token_secret_of};
use crate::secrets::{new_hmac_secret, random_token, sha256_hex};
use crate::state::AppState;
use crate::{limits, project_settings};
use rotor_tenant_config::ApiKeyScope;

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: ProjectId,
    name: String,
    slug: String,
    engine: String,
    plan: String,
    status: String,
    settings: Value,
    config_version: i64,
    applied_version: i64,
    created_at: DateTime<Utc>,
}

const PROJECT_COLUMNS: &str =
    "id, name, slug, engine, plan, status, settings, config_version, applied_version, created_at";

/// A project as its owner sees it (proxy static headers opened).
fn project_json(state: &AppState, p: &ProjectRow) -> RestResult<Value> {
    let settings = project_settings::open_secrets(Keyring::global()?, &p.id, &p.settings)?;
    let http = state.settings.tenant_http_base(&p.slug);
    let ws = state.settings.tenant_ws_base(&p.slug);
    let slug = &p.slug;
    Ok(json!({
        "id": p.id,
        "name": p.name,
        "slug": slug,
        "engine": p.engine,
        "plan": p.plan,
        "status": p.status,
        "settings": settings,
        "config_version": p.config_version,
        "applied_version": p.applied_version,
        "endpoints": {
            "websocket": format!("{ws}/connection/websocket"),
            "sse": format!("{http}/connection/sse"),
            "http_stream": format!("{http}/connection/http_stream"),
            "api": format!("{http}/api"),
        },
        "created_at": p.created_at,
    }))
}

async fn load(state: &AppState, account: &AccountId, id: &ProjectId) -> RestResult<ProjectRow> {
    sqlx::query_as::<_, ProjectRow>(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 AND account_id = $2"
    ))
    .bind(id)
    .bind(account)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(RestError::NotFound)
}

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

fn check_name(name: &str) -> RestResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(RestError::field(
            "name",
            "a name of 1 to 100 characters is required",
        ));
    }
    Ok(name.to_owned())
}

/// Validates project settings (see [`crate::project_settings`]) together with the project's
/// namespaces, by the data plane's own config rules.
async fn validate_settings(state: &AppState, id: &ProjectId, settings: &Value) -> RestResult<()> {
    let namespaces: Vec<(String, Value)> =
        sqlx::query_as("SELECT name, options FROM namespaces WHERE project_id = $1 ORDER BY name")
            .bind(id)
            .fetch_all(&state.pool)
            .await?;
    crate::project_settings::validate(settings, &namespaces)
        .map_err(|e| RestError::field(e.field, e.message))?;
    // Options of channels without a namespace stay within the plan, as namespaces do.
    let limits = crate::tenant::PlanLimits::of_project(&state.pool, id).await?;
    if let Some((field, message)) = settings
        .get("without_namespace")
        .and_then(|options| limits.history_excess(options))
    {
        return Err(RestError::field(
            format!("settings.without_namespace.{field}"),
            message,
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct CreateProject {
    #[serde(default)]
    name: String,
    #[serde(default)]
    engine: Option<String>,
}

/// A namespace a project is created with: (name, channel options).
pub type StarterNamespace<'a> = (&'a str, &'a Value);

/// Creates a project (with its token secret and, when given, a first namespace, in one
/// transaction: its first config already has the namespace). Shared with the dashboard.
pub async fn create_project(
    state: &AppState,
    account: &AccountId,
    name: &str,
    engine: Option<&str>,
    starter: Option<StarterNamespace<'_>>,
) -> RestResult<Value> {
    let name = check_name(name)?;
    // A new project has no settings yet: the options are checked against the defaults.
    let starter = starter
        .map(|(ns, options)| {
            super::namespaces::validate_options(ns, options, &json!({}))
                .map(|canonical| (ns, canonical))
        })
        .transpose()?;
    let engine = engine.unwrap_or("memory");
    if engine != "memory" && engine != "redis" {
        return Err(RestError::field(
            "engine",
            "engine must be \"memory\" or \"redis\"",
        ));
    }
    let id = ProjectId::generate();
    let base = slugify(&name);
    let mut tx = state.pool.begin().await?;
    // Locks the account until commit: concurrent creations are counted one after another.
    let plan = limits::check_projects_in_tx(&mut tx, account).await?;
    let mut slug = base.clone();
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
    let redis_prefix = (engine == "redis").then(|| format!("rotor:{id}:"));
    // The operator's deployments take Redis-engine projects, the emptiest open one first.
    let deployment = if engine == "redis" {
        crate::redis_deployments::place(&mut tx).await?
    } else {
        None
    };
    sqlx::query("INSERT INTO projects (id, account_id, name, slug, engine, redis_prefix, redis_deployment, plan) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&id)
        .bind(account)
        .bind(&name)
        .bind(&slug)
        .bind(engine)
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
    audit(
        &mut tx,
        account,
        Some(&id),
        "project.create",
        id.as_str(),
        None,
        Some(json!({"name": name, "slug": slug, "engine": engine})),
    )
    .await?;
    if let Some((ns, canonical)) = &starter {
        super::namespaces::write_namespace_in_tx(&mut tx, account, &id, ns, canonical).await?;
    }
    tx.commit().await?;
    state.config_changed();
    let row = load(state, account, &id).await?;
    project_json(state, &row)
}

pub async fn create(
    State(state): State<AppState>,
    Account(account): Account,
    Json(body): Json<CreateProject>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let project =
        create_project(&state, &account, &body.name, body.engine.as_deref(), None).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

pub async fn list(
    State(state): State<AppState>,
    Account(account): Account,
) -> RestResult<Json<Value>> {
    let rows: Vec<ProjectRow> = sqlx::query_as(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE account_id = $1 ORDER BY created_at"
    ))
    .bind(&account)
    .fetch_all(&state.pool)
    .await?;
    let projects = rows
        .iter()
        .map(|p| project_json(&state, p))
        .collect::<RestResult<Vec<_>>>()?;
    Ok(Json(json!({ "projects": projects })))
}

pub async fn get(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> RestResult<Json<Value>> {
    let id = owned_project(&state.pool, &account, &id).await?;
    Ok(Json(project_json(
        &state,
        &load(&state, &account, &id).await?,
    )?))
}

/// `PATCH /v1/projects/{id}`: the customer's fields. `plan` and `status` are accepted as
/// fields only to answer them clearly: they are the operator's (403 `operator_only`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchProject {
    name: Option<String>,
    settings: Option<Value>,
    status: Option<Value>,
    plan: Option<Value>,
}

pub async fn patch(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
    Json(body): Json<PatchProject>,
) -> RestResult<Json<Value>> {
    let id = owned_project(&state.pool, &account, &id).await?;
    for (field, value) in [("plan", &body.plan), ("status", &body.status)] {
        if value.is_some() {
            return Err(RestError::OperatorOnly(format!(
                "\"{field}\" is set by the operator only; contact support to change a project's plan or to suspend or resume it"
            )));
        }
    }
    update_project(
        &state,
        &account,
        &id,
        body.name.as_deref(),
        body.settings.as_ref(),
    )
    .await?;
    Ok(Json(project_json(
        &state,
        &load(&state, &account, &id).await?,
    )?))
}

/// Renames a project the caller owns and/or replaces its settings (plaintext, as the owner
/// sees them: static headers are sealed here), validated by the data plane's rules; one
/// transaction with the version bump and the audit entry. Shared with the dashboard.
pub async fn update_project(
    state: &AppState,
    account: &AccountId,
    id: &ProjectId,
    name: Option<&str>,
    settings: Option<&Value>,
) -> RestResult<()> {
    let name = name.map(check_name).transpose()?;
    if let Some(settings) = settings {
        validate_settings(state, id, settings).await?;
    }
    let sealed = match settings {
        Some(s) => Some(project_settings::seal_secrets(Keyring::global()?, id, s)),
        None => None,
    };
    let mut tx = state.pool.begin().await?;
    let (before_name, before_settings): (String, Value) =
        sqlx::query_as("SELECT name, settings FROM projects WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query("UPDATE projects SET name = COALESCE($2, name), settings = COALESCE($3, settings) WHERE id = $1")
        .bind(id)
        .bind(&name)
        .bind(&sealed)
        .execute(&mut *tx)
        .await?;
    bump_version(&mut tx, id).await?;
    audit(
        &mut tx,
        account,
        Some(id),
        "project.update",
        id.as_str(),
        Some(json!({"name": before_name, "settings": project_settings::redact_secrets(&before_settings)})),
        Some(json!({"name": name, "settings": settings.map(project_settings::redact_secrets)})),
    )
    .await?;
    tx.commit().await?;
    state.config_changed();
    Ok(())
}

/// A project's settings as its owner sees them (static headers opened).
pub async fn settings_of(state: &AppState, id: &ProjectId) -> RestResult<Value> {
    let stored: Value = sqlx::query_scalar("SELECT settings FROM projects WHERE id = $1")
        .bind(id)
        .fetch_one(&state.pool)
        .await?;
    Ok(project_settings::open_secrets(
        Keyring::global()?,
        id,
        &stored,
    )?)
}

pub async fn delete(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    let id = owned_project(&state.pool, &account, &id).await?;
    delete_project(&state, &account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a project the caller owns; the reconciler stops its tenant. Shared with the
/// dashboard.
pub async fn delete_project(
    state: &AppState,
    account: &AccountId,
    id: &ProjectId,
) -> RestResult<()> {
    let mut tx = state.pool.begin().await?;
    audit(
        &mut tx,
        account,
        Some(id),
        "project.delete",
        id.as_str(),
        None,
        None,
    )
    .await?;
    sqlx::query("DELETE FROM projects WHERE id = $1 AND account_id = $2")
        .bind(id)
        .bind(account)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state.config_changed();
    Ok(())
}

pub async fn get_secrets(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> RestResult<Json<Value>> {
    let id = owned_project(&state.pool, &account, &id).await?;
    let secret = token_secret_of(&state.pool, &id).await?;
    Ok(Json(json!({"token_hmac_secret": secret})))
}

#[derive(Deserialize, Default)]
pub struct Rotate {
    #[serde(default)]
    grace_seconds: Option<u32>,
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
    body: Option<Json<Rotate>>,
) -> RestResult<Json<Value>> {
    let id = owned_project(&state.pool, &account, &id).await?;
    let grace = body.and_then(|b| b.0.grace_seconds).unwrap_or(0);
    let secret = rotate_hmac_secret(&state, &account, &id, grace).await?;
    Ok(Json(json!({"token_hmac_secret": secret})))
}

/// Replaces a project's token secret; with `grace` seconds the old one keeps working that
/// long. Returns the new secret. Shared with the dashboard.
pub async fn rotate_hmac_secret(
    state: &AppState,
    account: &AccountId,
    id: &ProjectId,
    grace: u32,
) -> RestResult<String> {
    if grace > 7 * 24 * 3600 {
        return Err(RestError::field("grace_seconds", "at most 604800 (7 days)"));
    }
    let secret = new_hmac_secret();
    let sealed = seal_token_secret(id, &secret)?;
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "UPDATE token_secrets SET \
           previous_hmac_secret = CASE WHEN $3 > 0 THEN hmac_secret ELSE NULL END, \
           previous_valid_until = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) ELSE NULL END, \
           hmac_secret = $2, rotated_at = now() \
         WHERE project_id = $1",
    )
    .bind(id)
    .bind(&sealed)
    .bind(f64::from(grace))
    .execute(&mut *tx)
    .await?;
    bump_version(&mut tx, id).await?;
    audit(
        &mut tx,
        account,
        Some(id),
        "secret.rotate",
        id.as_str(),
        None,
        Some(json!({"hmac_secret": "changed", "grace_seconds": grace})),
    )
    .await?;
    tx.commit().await?;
    state.config_changed();
    Ok(secret)
}

#[derive(Deserialize)]
pub struct CreateKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: Option<String>,
}

/// How many characters of a key are kept to tell it apart (`rk_` and 7 of its 64 hex digits:
/// 28 of its 256 random bits).
pub const KEY_PREFIX_LEN: usize = 10;

/// The message for a key name the project already uses.
pub fn key_name_taken(name: &str) -> RestError {
    RestError::Conflict(format!(
        "this project already has a key called \"{name}\"; choose another name"
    ))
}

/// Creates an API key and returns it once; shared with the dashboard. `scope` is `all`
/// (default) or `publish`.
pub async fn create_api_key(
    state: &AppState,
    account: &AccountId,
    project: &ProjectId,
    name: &str,
    scope: Option<&str>,
) -> RestResult<Value> {
    let name = check_name(name)?;
    let scope = match scope.map(str::trim).filter(|s| !s.is_empty()) {
        None => ApiKeyScope::All,
        Some(s) => ApiKeyScope::parse(s)
            .ok_or_else(|| RestError::field("scope", "scope must be \"all\" or \"publish\""))?,
    };
    let id = ApiKeyId::generate();
    let key = random_token("rk_");
    let prefix: String = key.chars().take(KEY_PREFIX_LEN).collect();
    let mut tx = state.pool.begin().await?;
    // Locks the project until commit: concurrent creations are counted one after another
    // (and a name is checked before another creation can take it).
    limits::check_api_keys_in_tx(&mut tx, project).await?;
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE project_id = $1 AND name = $2)",
    )
    .bind(project)
    .bind(&name)
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Err(key_name_taken(&name));
    }
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO api_keys (id, project_id, name, key_hash, prefix, scope) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
    )
    .bind(&id)
    .bind(project)
    .bind(&name)
    .bind(sha256_hex(&key))
    .bind(&prefix)
    .bind(scope.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match RestError::from(e) {
        RestError::Conflict(_) => key_name_taken(&name),
        other => other,
    })?;
    bump_version(&mut tx, project).await?;
    audit(
        &mut tx,
        account,
        Some(project),
        "api_key.create",
        id.as_str(),
        None,
        Some(json!({"name": name, "prefix": prefix, "scope": scope.as_str()})),
    )
    .await?;
    tx.commit().await?;
    state.config_changed();
    Ok(json!({
        "id": id, "name": name, "key": key, "prefix": prefix, "scope": scope.as_str(),
        "created_at": created_at,
    }))
}

pub async fn create_key(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
    Json(body): Json<CreateKey>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let id = owned_project(&state.pool, &account, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(create_api_key(&state, &account, &id, &body.name, body.scope.as_deref()).await?),
    ))
}

/// An API key as its owner sees it (never the key, nor its hash).
#[derive(Debug, sqlx::FromRow)]
pub struct KeyInfo {
    pub id: ApiKeyId,
    pub name: String,
    /// The key's first characters ('' for keys created before prefixes were kept).
    pub prefix: String,
    /// `all` or `publish`.
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The keys of a project the caller owns, oldest first; shared with the dashboard.
pub async fn api_keys_of(state: &AppState, project: &ProjectId) -> RestResult<Vec<KeyInfo>> {
    Ok(sqlx::query_as(
        "SELECT id, name, prefix, scope, created_at, last_used_at FROM api_keys \
         WHERE project_id = $1 ORDER BY created_at, id",
    )
    .bind(project)
    .fetch_all(&state.pool)
    .await?)
}

pub async fn list_keys(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> RestResult<Json<Value>> {
    let id = owned_project(&state.pool, &account, &id).await?;
    let keys: Vec<Value> = api_keys_of(&state, &id)
        .await?
        .into_iter()
        .map(|k| {
            json!({
                "id": k.id, "name": k.name, "prefix": k.prefix, "scope": k.scope,
                "created_at": k.created_at, "last_used_at": k.last_used_at,
            })
        })
        .collect();
    Ok(Json(json!({"api_keys": keys})))
}

pub async fn delete_key(
    State(state): State<AppState>,
    Account(account): Account,
    Path((id, key_id)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    let id = owned_project(&state.pool, &account, &id).await?;
    revoke_api_key(&state, &account, &id, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an API key of a project the caller owns; the tenant stops accepting it with the
/// next config push. Shared with the dashboard.
pub async fn revoke_api_key(
    state: &AppState,
    account: &AccountId,
    id: &ProjectId,
    key_id: &str,
) -> RestResult<()> {
    let key_id = ApiKeyId::parse(key_id).ok_or(RestError::NotFound)?;
    let mut tx = state.pool.begin().await?;
    let name: Option<String> =
        sqlx::query_scalar("DELETE FROM api_keys WHERE id = $1 AND project_id = $2 RETURNING name")
            .bind(&key_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(name) = name else {
        return Err(RestError::NotFound);
    };
    bump_version(&mut tx, id).await?;
    audit(
        &mut tx,
        account,
        Some(id),
        "api_key.delete",
        key_id.as_str(),
        Some(json!({"name": name})),
        None,
    )
    .await?;
    tx.commit().await?;
    state.config_changed();
    Ok(())
}

/// `?before=<entry id>`: the page of older entries.
#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    before: Option<i64>,
}

/// Entries per page of the audit trail.
pub const AUDIT_PAGE: i64 = 50;

pub async fn audit_entries(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> RestResult<Json<Value>> {
    let id = owned_project(&state.pool, &account, &id).await?;
    let rows = crate::audit::page(&state.pool, &account, Some(&id), q.before, AUDIT_PAGE).await?;
    let next = (rows.len() as i64 == AUDIT_PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "actor": r.actor, "action": r.action, "target": r.target,
                "before": r.before, "after": r.after, "at": r.created_at,
            })
        })
        .collect();
    Ok(Json(json!({"entries": entries, "next_before": next})))
}
