//! `/v1/projects…`: projects and what hangs off them — token secrets (revealed to the owner,
//! rotated), API keys (shown once) and the audit trail — as JSON over
//! [`crate::service::projects`] and [`crate::service::keys`]. Plans and status are the
//! operator's ([`crate::operator`]): a PATCH naming them is answered `operator_only`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Account, OwnedProject, RestResult};
use crate::service::keys::{self, CreatedKey, KeyInfo, NewKey};
use crate::service::projects::{self, Engine, NewProject, Project, ProjectUpdate};
use crate::service::ServiceError;
use crate::state::AppState;

/// A project as its owner sees it, with its endpoints.
fn project_json(state: &AppState, p: &Project) -> Value {
    let http = state.settings.tenant_http_base(&p.slug);
    let ws = state.settings.tenant_ws_base(&p.slug);
    json!({
        "id": p.id,
        "name": p.name,
        "slug": p.slug,
        "engine": p.engine,
        "plan": p.plan,
        "status": p.status,
        "settings": p.settings,
        "config_version": p.config_version,
        "applied_version": p.applied_version,
        "endpoints": {
            "websocket": format!("{ws}/connection/websocket"),
            "sse": format!("{http}/connection/sse"),
            "http_stream": format!("{http}/connection/http_stream"),
            "api": format!("{http}/api"),
        },
        "created_at": p.created_at,
    })
}

#[derive(Deserialize)]
pub struct CreateProject {
    #[serde(default)]
    name: String,
    #[serde(default)]
    engine: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    Account(account): Account,
    Json(body): Json<CreateProject>,
) -> RestResult<(StatusCode, Json<Value>)> {
    // The name is checked before the engine, as the API always has.
    projects::check_name(&body.name)?;
    let new = NewProject {
        name: body.name,
        engine: Engine::parse(body.engine.as_deref())?,
        starter: None,
    };
    let project = projects::create(&state, &account, new).await?;
    Ok((StatusCode::CREATED, Json(project_json(&state, &project))))
}

pub async fn list(
    State(state): State<AppState>,
    Account(account): Account,
) -> RestResult<Json<Value>> {
    let projects: Vec<Value> = projects::list(&state, &account)
        .await?
        .iter()
        .map(|p| project_json(&state, p))
        .collect();
    Ok(Json(json!({ "projects": projects })))
}

pub async fn get(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<Value>> {
    let p = projects::get(&state, &project).await?;
    Ok(Json(project_json(&state, &p)))
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
    OwnedProject(project): OwnedProject,
    Json(body): Json<PatchProject>,
) -> RestResult<Json<Value>> {
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
    Ok(Json(project_json(&state, &p)))
}

pub async fn delete(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<StatusCode> {
    projects::delete(&state, &project).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_secrets(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<Value>> {
    let secret = keys::token_secret(&state, &project).await?;
    Ok(Json(json!({"token_hmac_secret": secret})))
}

#[derive(Deserialize, Default)]
pub struct Rotate {
    #[serde(default)]
    grace_seconds: Option<u32>,
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    body: Option<Json<Rotate>>,
) -> RestResult<Json<Value>> {
    let grace = body.and_then(|b| b.0.grace_seconds).unwrap_or(0);
    let secret = keys::rotate_secret(&state, &project, grace).await?;
    Ok(Json(json!({"token_hmac_secret": secret})))
}

#[derive(Deserialize)]
pub struct CreateKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: Option<String>,
}

fn created_key_json(k: &CreatedKey) -> Value {
    json!({
        "id": k.id, "name": k.name, "key": k.key, "prefix": k.prefix, "scope": k.scope.as_str(),
        "created_at": k.created_at,
    })
}

fn key_json(k: &KeyInfo) -> Value {
    json!({
        "id": k.id, "name": k.name, "prefix": k.prefix, "scope": k.scope,
        "created_at": k.created_at, "last_used_at": k.last_used_at,
    })
}

pub async fn create_key(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Json(body): Json<CreateKey>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let new = NewKey {
        name: body.name,
        scope: body.scope,
    };
    let key = keys::create(&state, &project, new).await?;
    Ok((StatusCode::CREATED, Json(created_key_json(&key))))
}

pub async fn list_keys(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<Value>> {
    let keys: Vec<Value> = keys::list(&state, &project)
        .await?
        .iter()
        .map(key_json)
        .collect();
    Ok(Json(json!({"api_keys": keys})))
}

pub async fn delete_key(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, key_id)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    keys::revoke(&state, &project, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
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
    OwnedProject(project): OwnedProject,
    Query(q): Query<AuditQuery>,
) -> RestResult<Json<Value>> {
    let rows = crate::audit::page(
        &state.pool,
        project.account(),
        Some(project.id()),
        q.before,
        AUDIT_PAGE,
    )
    .await?;
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
