//! Bearer management-token authentication: the token is hashed and looked up, an expired one
//! is refused; the handler gets the owning account id and nothing else. [`OwnedProject`] adds
//! the ownership check of the path's project.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use crate::ids::AccountId;
use crate::secrets::sha256_hex;
use crate::service::ProjectScope;
use crate::service::ServiceError;
use crate::state::AppState;

/// The authenticated account of a request.
#[derive(Debug, Clone)]
pub struct Account(pub AccountId);

impl FromRequestParts<AppState> for Account {
    type Rejection = ServiceError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ServiceError::Unauthorized("missing bearer token"))?;
        // One round trip: find the token, and mark it used only if it has not expired.
        let found: Option<(AccountId, bool)> = sqlx::query_as(
            "WITH t AS (SELECT id, account_id, expires_at IS NOT NULL AND expires_at <= now() AS expired \
                        FROM management_tokens WHERE token_hash = $1), \
                  used AS (UPDATE management_tokens m SET last_used_at = now() FROM t \
                           WHERE m.id = t.id AND NOT t.expired) \
             SELECT account_id, expired FROM t",
        )
        .bind(sha256_hex(token))
        .fetch_optional(&state.pool)
        .await?;
        match found {
            Some((account, false)) => Ok(Account(account)),
            Some((_, true)) => Err(ServiceError::Unauthorized("token expired")),
            None => Err(ServiceError::Unauthorized("invalid token")),
        }
    }
}

/// A project of the authenticated account, named by the path's `{id}`: unknown ids, malformed
/// ids and other accounts' projects are the same 404 (after the 401 of a missing token).
#[derive(Debug, Clone)]
pub struct OwnedProject(pub ProjectScope);

impl FromRequestParts<AppState> for OwnedProject {
    type Rejection = ServiceError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Account(account) = Account::from_request_parts(parts, state).await?;
        let raw = project_param(parts, state).await?;
        Ok(OwnedProject(
            crate::service::projects::owned(state, &account, &raw).await?,
        ))
    }
}

/// The path's `{id}` (a project id as given), for the owned-project extractors of both
/// surfaces.
pub(crate) async fn project_param(
    parts: &mut Parts,
    state: &AppState,
) -> Result<String, ServiceError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("path parameters: {e}")))?;
    params
        .iter()
        .find(|(name, _)| *name == "id")
        .map(|(_, value)| value.to_owned())
        .ok_or(ServiceError::NotFound)
}
