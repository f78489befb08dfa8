//! Secrets at rest in Postgres: projects' token HMAC secrets (`token_secrets`), proxy static
//! header values (in `projects.settings`) and a project's own Redis URL (`projects.redis_url`,
//! which may carry a password) are stored sealed ([`crate::sealed`]). This module seals what an
//! older version (or an operator's hand) left in plaintext (at start-up, idempotent), opens a
//! project's token secret for its owner, and erases previous secrets whose grace period has
//! ended. The Redis URL is opened only where the tenant's config is built
//! ([`crate::tenant::compile`]); no API shows it.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::ids::ProjectId;
use crate::sealed::{is_sealed, Context, Keyring, Purpose, SealError};

/// Why a secret could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("project {0} has no token secret")]
    Missing(ProjectId),
    #[error("token secret of project {project}: {source}")]
    Sealed {
        project: ProjectId,
        source: SealError,
    },
    /// No usable key-encryption key.
    #[error(transparent)]
    Key(SealError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A token secret sealed for `project`, ready to store.
pub fn seal_token_secret(project: &ProjectId, secret: &str) -> Result<String, SecretError> {
    let keyring = Keyring::global().map_err(|source| SecretError::Sealed {
        project: project.clone(),
        source,
    })?;
    Ok(keyring.seal(Context::new(Purpose::TokenSecret, project), secret))
}

/// A Redis URL sealed for `project`, ready to store in `projects.redis_url`.
pub fn seal_redis_url(project: &ProjectId, url: &str) -> Result<String, SealError> {
    Ok(Keyring::global()?.seal(Context::new(Purpose::RedisUrl, project), url))
}

/// The project's current token secret in plaintext (for its owner: reveal, console tokens,
/// the demo). Callers check ownership first.
pub async fn token_secret(
    conn: &mut PgConnection,
    project: &ProjectId,
) -> Result<String, SecretError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT hmac_secret FROM token_secrets WHERE project_id = $1")
            .bind(project)
            .fetch_optional(conn)
            .await?;
    let stored = stored.ok_or_else(|| SecretError::Missing(project.clone()))?;
    let sealed = |source| SecretError::Sealed {
        project: project.clone(),
        source,
    };
    Keyring::global()
        .map_err(sealed)?
        .open(Context::new(Purpose::TokenSecret, project), &stored)
        .map_err(sealed)
}

/// [`token_secret`] over the pool.
pub async fn token_secret_of(pool: &PgPool, project: &ProjectId) -> Result<String, SecretError> {
    let mut conn = pool.acquire().await?;
    token_secret(&mut conn, project).await
}

/// Erases every previous token secret whose grace period has ended (or that has none).
/// Returns how many were erased. The compiled config already leaves them out, so no config
/// version changes.
pub async fn sweep(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE token_secrets SET previous_hmac_secret = NULL, previous_valid_until = NULL \
         WHERE previous_hmac_secret IS NOT NULL \
           AND (previous_valid_until IS NULL OR previous_valid_until <= now())",
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// [`sweep`] for one project (what compiling its config does first).
pub async fn sweep_project(pool: &PgPool, project: &ProjectId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE token_secrets SET previous_hmac_secret = NULL, previous_valid_until = NULL \
         WHERE project_id = $1 AND previous_hmac_secret IS NOT NULL \
           AND (previous_valid_until IS NULL OR previous_valid_until <= now())",
    )
    .bind(project)
    .execute(pool)
    .await?;
    Ok(())
}

/// Runs [`sweep`] every `every` until `stop` (spawn it next to the reconciler).
pub async fn run_sweeper(pool: PgPool, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sweep(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(erased = n, "previous token secrets past their grace erased"),
            Err(e) => tracing::warn!(error = %e, "secret sweep failed"),
        }
    }
}

/// What [`seal_at_rest`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SealReport {
    /// Token secret rows sealed or re-sealed.
    pub token_rows: u64,
    /// Projects whose settings had static header values sealed or re-sealed.
    pub settings_rows: u64,
    /// Projects whose `redis_url` was sealed or re-sealed.
    pub redis_url_rows: u64,
    /// Redis deployments whose options were re-sealed under the current key.
    pub deployment_rows: u64,
    /// Values sealed under a key that is not configured, left as they are.
    pub unknown_key: u64,
}

/// Seals every secret an older version stored in plaintext and re-seals values sealed under a
/// previous key, in one transaction (rows locked, so concurrent start-ups agree). Idempotent:
/// a second run changes nothing.
pub async fn seal_at_rest(pool: &PgPool) -> Result<SealReport, SecretError> {
    let keyring = Keyring::global().map_err(SecretError::Key)?;
    let current = format!("{}v1:{}:%", crate::sealed::PREFIX, keyring.key_id());
    let mut report = SealReport::default();
    let mut tx = pool.begin().await?;
    let rows: Vec<(ProjectId, String, Option<String>)> = sqlx::query_as(
        "SELECT project_id, hmac_secret, previous_hmac_secret FROM token_secrets \
         WHERE hmac_secret NOT LIKE $1 \
            OR (previous_hmac_secret IS NOT NULL AND previous_hmac_secret NOT LIKE $1) \
         FOR UPDATE",
    )
    .bind(&current)
    .fetch_all(&mut *tx)
    .await?;
    for (project, secret, previous) in rows {
        let ctx = Context::new(Purpose::TokenSecret, &project);
        let mut reseal = |value: &str| -> Option<String> {
            if is_sealed(value) && !keyring.is_sealed_under_older_key(value) {
                return None;
            }
            if !is_sealed(value) {
                return Some(keyring.seal(ctx, value));
            }
            match keyring.open(ctx, value) {
                Ok(plain) => Some(keyring.seal(ctx, &plain)),
                Err(e) => {
                    report.unknown_key += 1;
                    tracing::error!(%project, error = %e, "a token secret cannot be re-sealed; the project will not compile until it is rotated or the key is configured");
                    None
                }
            }
        };
        let new_secret = reseal(&secret);
        let new_previous = previous.as_deref().and_then(&mut reseal);
        if new_secret.is_none() && new_previous.is_none() {
            continue;
        }
        sqlx::query(
            "UPDATE token_secrets SET hmac_secret = COALESCE($2, hmac_secret), \
               previous_hmac_secret = COALESCE($3, previous_hmac_secret) WHERE project_id = $1",
        )
        .bind(&project)
        .bind(new_secret)
        .bind(new_previous)
        .execute(&mut *tx)
        .await?;
        report.token_rows += 1;
    }
    let rows: Vec<(ProjectId, serde_json::Value)> = sqlx::query_as(
        "SELECT id, settings FROM projects WHERE settings::text LIKE '%static_headers%' FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (project, settings) in rows {
        match crate::project_settings::reseal_secrets(keyring, &project, &settings) {
            Ok(Some(sealed)) => {
                sqlx::query("UPDATE projects SET settings = $2 WHERE id = $1")
                    .bind(&project)
                    .bind(sealed)
                    .execute(&mut *tx)
                    .await?;
                report.settings_rows += 1;
            }
            Ok(None) => {}
            Err(e) => {
                report.unknown_key += 1;
                tracing::error!(%project, error = %e, "proxy static headers cannot be re-sealed");
            }
        }
    }
    let rows: Vec<(ProjectId, String)> = sqlx::query_as(
        "SELECT id, redis_url FROM projects \
         WHERE redis_url IS NOT NULL AND redis_url NOT LIKE $1 FOR UPDATE",
    )
    .bind(&current)
    .fetch_all(&mut *tx)
    .await?;
    for (project, url) in rows {
        let ctx = Context::new(Purpose::RedisUrl, &project);
        let sealed = if is_sealed(&url) {
            match keyring.open(ctx, &url) {
                Ok(plain) => keyring.seal(ctx, &plain),
                Err(e) => {
                    report.unknown_key += 1;
                    tracing::error!(%project, error = %e, "a project's redis_url cannot be re-sealed; the project will not compile until it is set again or the key is configured");
                    continue;
                }
            }
        } else {
            keyring.seal(ctx, &url)
        };
        sqlx::query("UPDATE projects SET redis_url = $2 WHERE id = $1")
            .bind(&project)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        report.redis_url_rows += 1;
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, options FROM redis_deployments WHERE options NOT LIKE $1 FOR UPDATE",
    )
    .bind(&current)
    .fetch_all(&mut *tx)
    .await?;
    for (name, sealed) in rows {
        match crate::redis_deployments::open(keyring, &name, &sealed) {
            Ok(options) => {
                sqlx::query("UPDATE redis_deployments SET options = $2 WHERE name = $1")
                    .bind(&name)
                    .bind(crate::redis_deployments::seal(keyring, &name, &options))
                    .execute(&mut *tx)
                    .await?;
                report.deployment_rows += 1;
            }
            Err(e) => {
                report.unknown_key += 1;
                tracing::error!(deployment = %name, error = %e, "a Redis deployment's options cannot be re-sealed; its projects will not compile until it is added again or the key is configured");
            }
        }
    }
    tx.commit().await?;
    if report != SealReport::default() {
        tracing::info!(
            token_rows = report.token_rows,
            settings_rows = report.settings_rows,
            redis_url_rows = report.redis_url_rows,
            deployment_rows = report.deployment_rows,
            unknown_key = report.unknown_key,
            "secrets at rest sealed"
        );
    }
    Ok(report)
}
