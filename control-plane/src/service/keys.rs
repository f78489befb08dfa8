//! A project's credentials: server API keys (shown once at creation, stored as SHA-256 with
//! their first characters; the plan's key count checked in the creating transaction; revoked
//! by id) and the token secret clients' JWTs are signed with (sealed at rest, revealed to the
//! owner, rotated with an optional grace period).

use chrono::{DateTime, Utc};
use rotor_tenant_config::ApiKeyScope;
use serde_json::json;

use super::projects::{check_name, ProjectScope};
use super::{audit, bump_version, ServiceError, ServiceResult};
use crate::ids::ApiKeyId;
use crate::limits;
use crate::secret_store::{seal_token_secret, token_secret_of};
use crate::secrets::{new_hmac_secret, random_token, sha256_hex};
use crate::state::AppState;

/// How many characters of a key are kept to tell it apart (`rk_` and 7 of its 64 hex digits:
/// 28 of its 256 random bits).
pub const KEY_PREFIX_LEN: usize = 10;

/// The longest grace period of a secret rotation, in seconds (7 days).
pub const MAX_GRACE_SECONDS: u32 = 7 * 24 * 3600;

/// What a new key is: its name and, as typed, its scope (`all`, the default, or `publish`).
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub scope: Option<String>,
}

/// A key just created: the only time `key` is seen.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: ApiKeyId,
    pub name: String,
    pub key: String,
    pub prefix: String,
    pub scope: ApiKeyScope,
    pub created_at: DateTime<Utc>,
}

/// An API key as its owner sees it (never the key, nor its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
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

/// The refusal for a key name the project already uses.
fn name_taken(name: &str) -> ServiceError {
    ServiceError::Conflict(format!(
        "this project already has a key called \"{name}\"; choose another name"
    ))
}

/// Creates an API key and returns it, the only time it is shown. In one transaction the
/// project is locked, its plan's key count and the name checked, the key stored (as its
/// hash), the config version bumped and the creation audited.
pub async fn create(
    state: &AppState,
    scope: &ProjectScope,
    new: NewKey,
) -> ServiceResult<CreatedKey> {
    let project = scope.id();
    let name = check_name(&new.name)?;
    let key_scope = match new
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => ApiKeyScope::All,
        Some(s) => ApiKeyScope::parse(s)
            .ok_or_else(|| ServiceError::field("scope", "scope must be \"all\" or \"publish\""))?,
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
        return Err(name_taken(&name));
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
    .bind(key_scope.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match ServiceError::from(e) {
        ServiceError::Conflict(_) => name_taken(&name),
        other => other,
    })?;
    bump_version(&mut tx, project).await?;
    audit(
        &mut tx,
        scope.account(),
        Some(project),
        "api_key.create",
        id.as_str(),
        None,
        Some(json!({"name": name, "prefix": prefix, "scope": key_scope.as_str()})),
    )
    .await?;
    tx.commit().await?;
    state.config_changed();
    Ok(CreatedKey {
        id,
        name,
        key,
        prefix,
        scope: key_scope,
        created_at,
    })
}

/// The project's keys, oldest first.
pub async fn list(state: &AppState, scope: &ProjectScope) -> ServiceResult<Vec<KeyInfo>> {
    Ok(sqlx::query_as(
        "SELECT k.id, k.name, k.prefix, k.scope, k.created_at, k.last_used_at \
         FROM api_keys k JOIN projects p ON p.id = k.project_id \
         WHERE k.project_id = $1 AND p.account_id = $2 ORDER BY k.created_at, k.id",
    )
    .bind(scope.id())
    .bind(scope.account())
    .fetch_all(&state.pool)
    .await?)
}

/// One key of the project (`key_id` as a path gives it), or [`ServiceError::NotFound`].
pub async fn get(state: &AppState, scope: &ProjectScope, key_id: &str) -> ServiceResult<KeyInfo> {
    let key_id = ApiKeyId::parse(key_id).ok_or(ServiceError::NotFound)?;
    let key: Option<KeyInfo> = sqlx::query_as(
        "SELECT k.id, k.name, k.prefix, k.scope, k.created_at, k.last_used_at \
         FROM api_keys k JOIN projects p ON p.id = k.project_id \
         WHERE k.id = $1 AND k.project_id = $2 AND p.account_id = $3",
    )
    .bind(&key_id)
    .bind(scope.id())
    .bind(scope.account())
    .fetch_optional(&state.pool)
    .await?;
    key.ok_or(ServiceError::NotFound)
}

/// Deletes an API key of the project; the tenant stops accepting it with the next config
/// push. Returns the key's name.
pub async fn revoke(state: &AppState, scope: &ProjectScope, key_id: &str) -> ServiceResult<String> {
    let key_id = ApiKeyId::parse(key_id).ok_or(ServiceError::NotFound)?;
    let project = scope.id();
    let mut tx = state.pool.begin().await?;
    let name: Option<String> = sqlx::query_scalar(
        "DELETE FROM api_keys k USING projects p \
         WHERE k.id = $1 AND k.project_id = $2 AND p.id = k.project_id AND p.account_id = $3 \
         RETURNING k.name",
    )
    .bind(&key_id)
    .bind(project)
    .bind(scope.account())
    .fetch_optional(&mut *tx)
    .await?;
    let name = name.ok_or(ServiceError::NotFound)?;
    bump_version(&mut tx, project).await?;
    audit(
        &mut tx,
        scope.account(),
        Some(project),
        "api_key.delete",
        key_id.as_str(),
        Some(json!({"name": name})),
        None,
    )
    .await?;
    tx.commit().await?;
    state.config_changed();
    Ok(name)
}

/// The project's token secret, opened.
pub async fn token_secret(state: &AppState, scope: &ProjectScope) -> ServiceResult<String> {
    Ok(token_secret_of(&state.pool, scope.id()).await?)
}

/// When the token secret was last rotated (`None`: never).
pub async fn secret_rotated_at(
    state: &AppState,
    scope: &ProjectScope,
) -> ServiceResult<Option<DateTime<Utc>>> {
    Ok(
        sqlx::query_scalar("SELECT rotated_at FROM token_secrets WHERE project_id = $1")
            .bind(scope.id())
            .fetch_optional(&state.pool)
            .await?
            .flatten(),
    )
}

/// Replaces the project's token secret; with `grace` seconds (at most
/// [`MAX_GRACE_SECONDS`]) the old one keeps working that long. Returns the new secret.
pub async fn rotate_secret(
    state: &AppState,
    scope: &ProjectScope,
    grace: u32,
) -> ServiceResult<String> {
    if grace > MAX_GRACE_SECONDS {
        return Err(ServiceError::field(
            "grace_seconds",
            "at most 604800 (7 days)",
        ));
    }
    let id = scope.id();
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
        scope.account(),
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
