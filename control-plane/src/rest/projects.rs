//! `/v1/projects…`: projects and what hangs off them — token secrets (revealed to the owner,
//! rotated), API keys (shown once) and the audit trail — as JSON over
//! [`crate::service::projects`] and [`crate::service::keys`]. Plans and status are the
//! operator's ([`crate::operator`]): a PATCH naming them is answered `operator_only`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::openapi::{self, ACTIVITY, KEYS, PROJECTS};
use super::{Account, OwnedProject, RestResult};
use crate::ids::{ApiKeyId, ProjectId};
use crate::service::keys::{self, CreatedKey, KeyInfo, NewKey};
use crate::service::projects::{self, Engine, NewProject, Project, ProjectUpdate};
use crate::service::ServiceError;
use crate::state::AppState;

/// A project as its owner sees it, with its endpoints.
#[derive(Serialize, ToSchema)]
#[schema(as = Project)]
pub struct ProjectBody {
    #[schema(value_type = String)]
    pub id: ProjectId,
    pub name: String,
    /// The project's host name part on the edge.
    pub slug: String,
    /// `memory` or `redis`.
    pub engine: String,
    pub plan: String,
    pub status: String,
    #[schema(schema_with = openapi::settings_schema)]
    pub settings: Value,
    /// Bumped by every change of the configuration.
    pub config_version: i64,
    /// The configuration version the running project has loaded.
    pub applied_version: i64,
    pub endpoints: Endpoints,
    pub created_at: DateTime<Utc>,
}

/// Where clients and the backend reach the project.
#[derive(Serialize, ToSchema)]
pub struct Endpoints {
    pub websocket: String,
    pub sse: String,
    pub http_stream: String,
    /// The server API (`/api/<method>`).
    pub api: String,
}

impl ProjectBody {
    fn of(state: &AppState, p: Project) -> Self {
        let http = state.settings.tenant_http_base(&p.slug);
        let ws = state.settings.tenant_ws_base(&p.slug);
        Self {
            endpoints: Endpoints {
                websocket: format!("{ws}/connection/websocket"),
                sse: format!("{http}/connection/sse"),
                http_stream: format!("{http}/connection/http_stream"),
                api: format!("{http}/api"),
            },
            id: p.id,
            name: p.name,
            slug: p.slug,
            engine: p.engine,
            plan: p.plan,
            status: p.status,
            settings: p.settings,
            config_version: p.config_version,
            applied_version: p.applied_version,
            created_at: p.created_at,
        }
    }
}

/// A new project (`POST /v1/projects`).
#[derive(Deserialize, ToSchema)]
pub struct ProjectCreate {
    #[serde(default)]
    #[schema(required = true)]
    name: String,
    /// redis needs an open Redis deployment or the installation's Redis; without either, 400
    /// with field engine
    #[serde(default)]
    #[schema(schema_with = engine_schema)]
    engine: Option<String>,
}

fn engine_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    openapi::schema_of(
        serde_json::json!({"type": "string", "enum": ["memory", "redis"],
        "description": "redis needs an open Redis deployment or the installation's Redis; without either, 400 with field engine"}),
    )
}

#[utoipa::path(post, path = "/v1/projects", tag = PROJECTS, operation_id = "create_project",
    summary = "Create a project",
    security(("bearer" = [])),
    request_body = ProjectCreate,
    responses((status = 201, description = "the project", body = ProjectBody)))]
pub async fn create(
    State(state): State<AppState>,
    Account(account): Account,
    Json(body): Json<ProjectCreate>,
) -> RestResult<(StatusCode, Json<ProjectBody>)> {
    // The name is checked before the engine, as the API always has.
    projects::check_name(&body.name)?;
    let new = NewProject {
        name: body.name,
        engine: Engine::parse(body.engine.as_deref())?,
        starter: None,
    };
    let project = projects::create(&state, &account, new).await?;
    Ok((StatusCode::CREATED, Json(ProjectBody::of(&state, project))))
}

/// The account's projects.
#[derive(Serialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectBody>,
}

#[utoipa::path(get, path = "/v1/projects", tag = PROJECTS, operation_id = "list_projects",
    summary = "List projects",
    security(("bearer" = [])),
    responses((status = 200, description = "the account's projects", body = ProjectList)))]
pub async fn list(
    State(state): State<AppState>,
    Account(account): Account,
) -> RestResult<Json<ProjectList>> {
    let projects = projects::list(&state, &account)
        .await?
        .into_iter()
        .map(|p| ProjectBody::of(&state, p))
        .collect();
    Ok(Json(ProjectList { projects }))
}

#[utoipa::path(get, path = "/v1/projects/{id}", tag = PROJECTS, operation_id = "get_project",
    summary = "Get a project with its endpoints",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    responses((status = 200, description = "the project", body = ProjectBody)))]
pub async fn get(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<ProjectBody>> {
    let p = projects::get(&state, &project).await?;
    Ok(Json(ProjectBody::of(&state, p)))
}

/// What to change (`PATCH /v1/projects/{id}`); absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    // `plan` and `status` are read only to answer them clearly: they are the operator's
    // (403 `operator_only`), so the document does not offer them.
    name: Option<String>,
    #[schema(schema_with = openapi::settings_schema)]
    settings: Option<Value>,
    #[schema(ignore)]
    status: Option<Value>,
    #[schema(ignore)]
    plan: Option<Value>,
}

#[utoipa::path(patch, path = "/v1/projects/{id}", tag = PROJECTS, operation_id = "patch_project",
    summary = "Rename or change settings (plan and status are the operator's: 403 operator_only)",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    request_body = ProjectPatch,
    responses(
        (status = 200, description = "the project as changed", body = ProjectBody),
        (status = 403, description = "plan or status named (operator_only), or over the plan's limits (plan_limit)", body = super::ErrorBody),
    ))]
pub async fn patch(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Json(body): Json<ProjectPatch>,
) -> RestResult<Json<ProjectBody>> {
    for (field, value) in [("plan", &body.plan), ("status", &body.status)] {
        if value.is_some() {
            return Err(ServiceError::OperatorOnly(format!(
                "\"{field}\" is set by the operator only; contact support to change a project's plan or to suspend or resume it"
            )));
        }
    }
    let change = ProjectUpdate {
        name: body.name,
        settings: body.settings,
    };
    let p = projects::update(&state, &project, change).await?;
    Ok(Json(ProjectBody::of(&state, p)))
}

#[utoipa::path(delete, path = "/v1/projects/{id}", tag = PROJECTS, operation_id = "delete_project",
    summary = "Delete a project and stop its tenant",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    responses((status = 204, description = "deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<StatusCode> {
    projects::delete(&state, &project).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The secret connection tokens (JWTs) are signed with.
#[derive(Serialize, ToSchema)]
pub struct TokenSecret {
    pub token_hmac_secret: String,
}

#[utoipa::path(get, path = "/v1/projects/{id}/secrets", tag = KEYS,
    summary = "Reveal the token HMAC secret",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    responses((status = 200, description = "the secret", body = TokenSecret)))]
pub async fn get_secrets(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<TokenSecret>> {
    let token_hmac_secret = keys::token_secret(&state, &project).await?;
    Ok(Json(TokenSecret { token_hmac_secret }))
}

/// How to rotate (`POST /v1/projects/{id}/secrets/rotate`; the body is optional).
#[derive(Deserialize, Default, ToSchema)]
pub struct Rotate {
    /// How long the old secret keeps verifying tokens, in seconds; default 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    grace_seconds: Option<u32>,
}

#[utoipa::path(post, path = "/v1/projects/{id}/secrets/rotate", tag = KEYS,
    summary = "Rotate the token HMAC secret",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    request_body = Rotate,
    responses((status = 200, description = "the new secret", body = TokenSecret)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    body: Option<Json<Rotate>>,
) -> RestResult<Json<TokenSecret>> {
    let grace = body.and_then(|b| b.0.grace_seconds).unwrap_or(0);
    let token_hmac_secret = keys::rotate_secret(&state, &project, grace).await?;
    Ok(Json(TokenSecret { token_hmac_secret }))
}

/// A new API key (`POST /v1/projects/{id}/api-keys`).
#[derive(Deserialize, ToSchema)]
pub struct ApiKeyCreate {
    /// unique within the project
    #[serde(default)]
    #[schema(required = true)]
    name: String,
    #[serde(default)]
    #[schema(schema_with = scope_schema)]
    scope: Option<String>,
}

fn scope_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    openapi::schema_of(
        serde_json::json!({"type": "string", "enum": ["all", "publish"], "default": "all",
        "description": "publish: the key may call publish and broadcast only (other methods answer error 103)"}),
    )
}

/// A new API key: the only time `key` is shown.
#[derive(Serialize, ToSchema)]
pub struct NewApiKey {
    #[schema(value_type = String)]
    pub id: ApiKeyId,
    pub name: String,
    pub key: String,
    /// The key's first characters, which tell it apart in lists.
    pub prefix: String,
    /// `all` or `publish`.
    pub scope: String,
    pub created_at: DateTime<Utc>,
}

impl From<CreatedKey> for NewApiKey {
    fn from(k: CreatedKey) -> Self {
        Self {
            scope: k.scope.as_str().to_owned(),
            id: k.id,
            name: k.name,
            key: k.key,
            prefix: k.prefix,
            created_at: k.created_at,
        }
    }
}

/// An API key as its owner sees it (never the key).
#[derive(Serialize, ToSchema)]
pub struct ApiKey {
    #[schema(value_type = String)]
    pub id: ApiKeyId,
    pub name: String,
    /// The key's first characters ('' for keys created before prefixes were kept).
    pub prefix: String,
    /// `all` or `publish`.
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<KeyInfo> for ApiKey {
    fn from(k: KeyInfo) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scope: k.scope,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

#[utoipa::path(post, path = "/v1/projects/{id}/api-keys", tag = KEYS,
    summary = "Create an API key (shown once)",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    request_body = ApiKeyCreate,
    responses((status = 201, description = "the key, shown this once", body = NewApiKey)))]
pub async fn create_key(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Json(body): Json<ApiKeyCreate>,
) -> RestResult<(StatusCode, Json<NewApiKey>)> {
    let new = NewKey {
        name: body.name,
        scope: body.scope,
    };
    let key = keys::create(&state, &project, new).await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

/// The project's API keys.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKey>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/api-keys", tag = KEYS,
    summary = "List API keys",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    responses((status = 200, description = "the project's keys", body = ApiKeyList)))]
pub async fn list_keys(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<ApiKeyList>> {
    let api_keys = keys::list(&state, &project)
        .await?
        .into_iter()
        .map(ApiKey::from)
        .collect();
    Ok(Json(ApiKeyList { api_keys }))
}

#[utoipa::path(delete, path = "/v1/projects/{id}/api-keys/{key_id}", tag = KEYS,
    summary = "Revoke an API key",
    security(("bearer" = [])),
    params(openapi::ProjectPath,
        ("key_id" = String, Path, description = "the key's id (key_…)")),
    responses((status = 204, description = "revoked")))]
pub async fn delete_key(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, key_id)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    keys::revoke(&state, &project, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?before=<entry id>`: the page of older entries.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// an entry id: the page of older entries
    #[serde(default)]
    before: Option<i64>,
}

/// Entries per page of the audit trail.
pub const AUDIT_PAGE: i64 = 50;

/// One change to the project.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// Who made it (`account:…`, `operator:…`, `system:…`).
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// What it was (secrets redacted).
    pub before: Option<Value>,
    /// What it became (secrets redacted).
    pub after: Option<Value>,
    pub at: DateTime<Utc>,
}

/// A page of the audit trail.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next page; null on the last.
    pub next_before: Option<i64>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/audit", tag = ACTIVITY,
    summary = "Changes to the project, newest first (?before=<id> for the next page)",
    security(("bearer" = [])),
    params(openapi::ProjectPath, AuditQuery),
    responses((status = 200, description = "a page of entries", body = AuditPage)))]
pub async fn audit_entries(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Query(q): Query<AuditQuery>,
) -> RestResult<Json<AuditPage>> {
    let rows = crate::audit::page(
        &state.pool,
        project.account(),
        Some(project.id()),
        q.before,
        AUDIT_PAGE,
    )
    .await?;
    let next_before = (rows.len() as i64 == AUDIT_PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            actor: r.actor,
            action: r.action,
            target: r.target,
            before: r.before,
            after: r.after,
            at: r.created_at,
        })
        .collect();
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}
