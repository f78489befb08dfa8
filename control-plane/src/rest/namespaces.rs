//! Channel namespaces of a project: every Centrifugo channel option as a JSON field, validated
//! by the same rules the data plane applies, so a bad value is refused here with its field.
//! How many a project may have is its plan's, checked in the creating transaction
//! ([`crate::limits::check_namespaces_in_tx`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use rotor_tenant_config::{validate_namespace_name, Namespace, TenantConfig};
use serde_json::{json, Map, Value};
use sqlx::PgConnection;

use super::util::{audit, bump_version, owned_project};
use super::{Account, RestError, RestResult};
use crate::ids::{AccountId, NamespaceId, ProjectId};
use crate::state::AppState;

/// Validates options for namespace `name` of a project with these settings (its proxies);
/// returns them in canonical form (defaults omitted).
pub fn validate_options(name: &str, options: &Value, settings: &Value) -> RestResult<Value> {
    validate_namespace_name(name).map_err(|m| RestError::field("name", m))?;
    let obj = options
        .as_object()
        .ok_or_else(|| RestError::field("options", "must be a JSON object"))?;
    let config = crate::project_settings::with_namespaces(
        settings,
        &[(name.to_owned(), Value::Object(obj.clone()))],
    )
    .map_err(|e| RestError::field(e.field, e.message))?;
    let loaded = TenantConfig::from_value(config).map_err(|e| {
        let field = e
            .path()
            .map(|p| match p.strip_prefix("channel.namespaces[0].") {
                Some(option) => option.to_owned(),
                // The namespace needs something of the project's settings (a proxy).
                None => crate::project_settings::settings_path(p).unwrap_or_else(|| p.to_owned()),
            })
            .unwrap_or_else(|| "options".into());
        // The message without the compiled config's path (`channel.namespaces[0]…` means
        // nothing to the caller, who gets the option's name as `field`).
        RestError::field(field, e.reason())
    })?;
    let namespace: &Namespace = &loaded.config.channel.namespaces[0];
    let mut canonical =
        serde_json::to_value(namespace).map_err(|e| RestError::Internal(e.into()))?;
    if let Some(o) = canonical.as_object_mut() {
        o.remove("name");
    }
    Ok(canonical)
}

fn namespace_json(
    id: &NamespaceId,
    name: &str,
    options: &Value,
    updated_at: DateTime<Utc>,
) -> Value {
    let mut out: Map<String, Value> = options.as_object().cloned().unwrap_or_default();
    out.insert("id".into(), json!(id));
    out.insert("name".into(), json!(name));
    out.insert("updated_at".into(), json!(updated_at));
    Value::Object(out)
}

/// Creates or replaces a namespace; returns (created?, namespace JSON). Shared with the
/// dashboard.
pub async fn put_namespace(
    state: &AppState,
    account: &AccountId,
    project: &ProjectId,
    name: &str,
    options: &Value,
) -> RestResult<(bool, Value)> {
    let settings: Value = sqlx::query_scalar("SELECT settings FROM projects WHERE id = $1")
        .bind(project)
        .fetch_one(&state.pool)
        .await?;
    let settings = crate::project_settings::open_secrets(
        crate::sealed::Keyring::global()?,
        project,
        &settings,
    )?;
    let canonical = validate_options(name, options, &settings)?;
    let mut tx = state.pool.begin().await?;
    let (created, id, updated_at) =
        write_namespace_in_tx(&mut tx, account, project, name, &canonical).await?;
    tx.commit().await?;
    state.config_changed();
    Ok((created, namespace_json(&id, name, &canonical, updated_at)))
}

/// Writes namespace `name` with `canonical` options (from [`validate_options`]) in `tx`: the
/// plan's count and history limits, the row, the config version and the audit entry. Returns
/// (created?, id, updated_at). Shared by [`put_namespace`] and project creation.
pub(crate) async fn write_namespace_in_tx(
    tx: &mut PgConnection,
    account: &AccountId,
    project: &ProjectId,
    name: &str,
    canonical: &Value,
) -> RestResult<(bool, NamespaceId, DateTime<Utc>)> {
    // Locks the project until commit: concurrent creations are counted one after another.
    let limits = crate::limits::check_namespaces_in_tx(&mut *tx, project, name).await?;
    if let Some((field, message)) = limits.history_excess(canonical) {
        return Err(RestError::field(field, message));
    }
    let before: Option<Value> = sqlx::query_scalar(
        "SELECT options FROM namespaces WHERE project_id = $1 AND name = $2 FOR UPDATE",
    )
    .bind(project)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    let (id, updated_at): (NamespaceId, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO namespaces (id, project_id, name, options) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (project_id, name) DO UPDATE SET options = EXCLUDED.options, updated_at = now() \
         RETURNING id, updated_at",
    )
    .bind(NamespaceId::generate())
    .bind(project)
    .bind(name)
    .bind(canonical)
    .fetch_one(&mut *tx)
    .await?;
    let created = before.is_none();
    bump_version(&mut *tx, project).await?;
    let action = if created {
        "namespace.create"
    } else {
        "namespace.update"
    };
    audit(
        &mut *tx,
        account,
        Some(project),
        action,
        name,
        before,
        Some(canonical.clone()),
    )
    .await?;
    Ok((created, id, updated_at))
}

/// Deletes a namespace; shared with the dashboard.
pub async fn delete_namespace(
    state: &AppState,
    account: &AccountId,
    project: &ProjectId,
    name: &str,
) -> RestResult<()> {
    let mut tx = state.pool.begin().await?;
    let before: Option<Value> = sqlx::query_scalar(
        "DELETE FROM namespaces WHERE project_id = $1 AND name = $2 RETURNING options",
    )
    .bind(project)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else {
        return Err(RestError::NotFound);
    };
    bump_version(&mut tx, project).await?;
    audit(
        &mut tx,
        account,
        Some(project),
        "namespace.delete",
        name,
        Some(before),
        None,
    )
    .await?;
    tx.commit().await?;
    state.config_changed();
    Ok(())
}

/// Namespaces of a project as JSON.
pub async fn list_namespaces(state: &AppState, project: &ProjectId) -> RestResult<Vec<Value>> {
    let rows: Vec<(NamespaceId, String, Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, name, options, updated_at FROM namespaces WHERE project_id = $1 ORDER BY name",
    )
    .bind(project)
    .fetch_all(&state.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|(id, name, options, at)| namespace_json(id, name, options, *at))
        .collect())
}

pub async fn list(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> RestResult<Json<Value>> {
    let id = owned_project(&state.pool, &account, &id).await?;
    Ok(Json(
        json!({"namespaces": list_namespaces(&state, &id).await?}),
    ))
}

pub async fn put(
    State(state): State<AppState>,
    Account(account): Account,
    Path((id, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let id = owned_project(&state.pool, &account, &id).await?;
    if let Some(n) = body.get("name").and_then(Value::as_str) {
        if n != name {
            return Err(RestError::field(
                "name",
                "the name in the body differs from the path",
            ));
        }
    }
    let (created, ns) = put_namespace(&state, &account, &id, &name, &body).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(ns),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    Account(account): Account,
    Path((id, name)): Path<(String, String)>,
) -> RestResult<Json<Value>> {
    let id = owned_project(&state.pool, &account, &id).await?;
    let row: Option<(NamespaceId, Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, options, updated_at FROM namespaces WHERE project_id = $1 AND name = $2",
    )
    .bind(&id)
    .bind(&name)
    .fetch_optional(&state.pool)
    .await?;
    let (ns_id, options, at) = row.ok_or(RestError::NotFound)?;
    Ok(Json(namespace_json(&ns_id, &name, &options, at)))
}

pub async fn delete(
    State(state): State<AppState>,
    Account(account): Account,
    Path((id, name)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    let id = owned_project(&state.pool, &account, &id).await?;
    delete_namespace(&state, &account, &id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
