//! Channel namespaces of a project: every Centrifugo channel option as a JSON field, validated
//! by the same rules the data plane applies, so a bad value is refused with its field. Writes
//! lock the project first and check the plan's count and history limits in the same
//! transaction; a create of a name that exists is a conflict decided under that lock (and by
//! the `(project_id, name)` unique key), so of concurrent creations of one name exactly one
//! wins.

use chrono::{DateTime, Utc};
use rotor_tenant_config::{validate_namespace_name, Namespace as ConfigNamespace, TenantConfig};
use serde_json::Value;
use sqlx::PgConnection;

use super::projects::ProjectScope;
use super::{audit, bump_version, ServiceError, ServiceResult};
use crate::ids::NamespaceId;
use crate::state::AppState;

/// A namespace as stored: its options in canonical form (defaults omitted).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Namespace {
    pub id: NamespaceId,
    pub name: String,
    pub options: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a write may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Only create: an existing name is a [`ServiceError::Conflict`].
    Create,
    /// Only replace: a missing name is [`ServiceError::NotFound`].
    Replace,
    /// Create or replace.
    Upsert,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Replaced,
}

/// The refusal for a name the project already has.
fn name_taken(name: &str) -> ServiceError {
    ServiceError::Conflict(format!(
        "the project already has a namespace called \"{name}\""
    ))
}

/// Validates options for namespace `name` of a project with these settings (its proxies);
/// returns them in canonical form (defaults omitted).
pub fn validate_options(name: &str, options: &Value, settings: &Value) -> ServiceResult<Value> {
    validate_namespace_name(name).map_err(|m| ServiceError::field("name", m))?;
    let obj = options
        .as_object()
        .ok_or_else(|| ServiceError::field("options", "must be a JSON object"))?;
    crate::project_settings::check_size(
        options,
        crate::project_settings::MAX_NAMESPACE_OPTIONS_BYTES,
        "options",
    )
    .map_err(|e| ServiceError::field(e.field, e.message))?;
    let config = crate::project_settings::with_namespaces(
        settings,
        &[(name.to_owned(), Value::Object(obj.clone()))],
    )
    .map_err(|e| ServiceError::field(e.field, e.message))?;
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
        ServiceError::field(field, e.reason())
    })?;
    let namespace: &ConfigNamespace = &loaded.config.channel.namespaces[0];
    let mut canonical =
        serde_json::to_value(namespace).map_err(|e| ServiceError::Internal(e.into()))?;
    if let Some(o) = canonical.as_object_mut() {
        o.remove("name");
    }
    Ok(canonical)
}

/// Writes namespace `name` with `options`, as `mode` allows: validated against the project's
/// settings, then one transaction with the plan's limits, the row, the version bump and the
/// audit entry.
pub async fn write(
    state: &AppState,
    scope: &ProjectScope,
    name: &str,
    options: &Value,
    mode: Write,
) -> ServiceResult<(Written, Namespace)> {
    let settings = super::projects::settings(state, scope).await?;
    let canonical = validate_options(name, options, &settings)?;
    let mut tx = state.pool.begin().await?;
    let written = write_in_tx(&mut tx, scope, name, &canonical, mode).await?;
    tx.commit().await?;
    state.config_changed();
    Ok(written)
}

/// Creates namespace `name`; [`ServiceError::Conflict`] when the project has it already.
pub async fn create(
    state: &AppState,
    scope: &ProjectScope,
    name: &str,
    options: &Value,
) -> ServiceResult<Namespace> {
    Ok(write(state, scope, name, options, Write::Create).await?.1)
}

/// Replaces the options of namespace `name`; [`ServiceError::NotFound`] when there is none.
pub async fn replace(
    state: &AppState,
    scope: &ProjectScope,
    name: &str,
    options: &Value,
) -> ServiceResult<Namespace> {
    Ok(write(state, scope, name, options, Write::Replace).await?.1)
}

/// Creates or replaces namespace `name`.
pub async fn put(
    state: &AppState,
    scope: &ProjectScope,
    name: &str,
    options: &Value,
) -> ServiceResult<(Written, Namespace)> {
    write(state, scope, name, options, Write::Upsert).await
}

/// Writes namespace `name` with `canonical` options (from [`validate_options`]) in `tx`: locks
/// the project, checks the plan's count and history limits and whether `mode` allows the
/// write, then the row, the config version and the audit entry. Shared with project creation
/// (its starter namespace).
pub(crate) async fn write_in_tx(
    tx: &mut PgConnection,
    scope: &ProjectScope,
    name: &str,
    canonical: &Value,
    mode: Write,
) -> ServiceResult<(Written, Namespace)> {
    let project = scope.id();
    // Locks the project until commit: concurrent writes are decided one after another, and
    // the count and the existence each sees include the others' inserts.
    let limits = crate::limits::check_namespaces_in_tx(&mut *tx, project, name).await?;
    if let Some((field, message)) = limits.history_excess(canonical) {
        return Err(ServiceError::field(field, message));
    }
    let before: Option<Value> = sqlx::query_scalar(
        "SELECT options FROM namespaces WHERE project_id = $1 AND name = $2 FOR UPDATE",
    )
    .bind(project)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    match (mode, &before) {
        (Write::Create, Some(_)) => return Err(name_taken(name)),
        (Write::Replace, None) => return Err(ServiceError::NotFound),
        _ => {}
    }
    let row: Option<(NamespaceId, DateTime<Utc>, DateTime<Utc>)> = if mode == Write::Create {
        // The unique key decides too: a row that appeared after the check is a conflict.
        sqlx::query_as(
            "INSERT INTO namespaces (id, project_id, name, options) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, name) DO NOTHING RETURNING id, created_at, updated_at",
        )
        .bind(NamespaceId::generate())
        .bind(project)
        .bind(name)
        .bind(canonical)
        .fetch_optional(&mut *tx)
        .await?
    } else {
        sqlx::query_as(
            "INSERT INTO namespaces (id, project_id, name, options) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, name) DO UPDATE SET options = EXCLUDED.options, updated_at = now() \
             RETURNING id, created_at, updated_at",
        )
        .bind(NamespaceId::generate())
        .bind(project)
        .bind(name)
        .bind(canonical)
        .fetch_optional(&mut *tx)
        .await?
    };
    let (id, created_at, updated_at) = row.ok_or_else(|| name_taken(name))?;
    let written = if before.is_none() {
        Written::Created
    } else {
        Written::Replaced
    };
    bump_version(&mut *tx, project).await?;
    let action = match written {
        Written::Created => "namespace.create",
        Written::Replaced => "namespace.update",
    };
    audit(
        &mut *tx,
        scope.account(),
        Some(project),
        action,
        name,
        before,
        Some(canonical.clone()),
    )
    .await?;
    Ok((
        written,
        Namespace {
            id,
            name: name.to_owned(),
            options: canonical.clone(),
            created_at,
            updated_at,
        },
    ))
}

/// Deletes namespace `name`; [`ServiceError::NotFound`] when there is none.
pub async fn delete(state: &AppState, scope: &ProjectScope, name: &str) -> ServiceResult<()> {
    let project = scope.id();
    let mut tx = state.pool.begin().await?;
    let before: Option<Value> = sqlx::query_scalar(
        "DELETE FROM namespaces n USING projects p \
         WHERE n.project_id = $1 AND n.name = $2 AND p.id = n.project_id AND p.account_id = $3 \
         RETURNING n.options",
    )
    .bind(project)
    .bind(name)
    .bind(scope.account())
    .fetch_optional(&mut *tx)
    .await?;
    let before = before.ok_or(ServiceError::NotFound)?;
    bump_version(&mut tx, project).await?;
    audit(
        &mut tx,
        scope.account(),
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

/// The project's namespaces, by name.
pub async fn list(state: &AppState, scope: &ProjectScope) -> ServiceResult<Vec<Namespace>> {
    Ok(sqlx::query_as(
        "SELECT n.id, n.name, n.options, n.created_at, n.updated_at FROM namespaces n \
         JOIN projects p ON p.id = n.project_id \
         WHERE n.project_id = $1 AND p.account_id = $2 ORDER BY n.name",
    )
    .bind(scope.id())
    .bind(scope.account())
    .fetch_all(&state.pool)
    .await?)
}

/// Namespace `name` of the project, or [`ServiceError::NotFound`].
pub async fn get(state: &AppState, scope: &ProjectScope, name: &str) -> ServiceResult<Namespace> {
    let found: Option<Namespace> = sqlx::query_as(
        "SELECT n.id, n.name, n.options, n.created_at, n.updated_at FROM namespaces n \
         JOIN projects p ON p.id = n.project_id \
         WHERE n.project_id = $1 AND n.name = $2 AND p.account_id = $3",
    )
    .bind(scope.id())
    .bind(name)
    .bind(scope.account())
    .fetch_optional(&state.pool)
    .await?;
    found.ok_or(ServiceError::NotFound)
}
