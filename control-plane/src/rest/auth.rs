//! Bearer management-token authentication: the token is hashed and looked up
//! ([`crate::service::accounts::account_of_token`]), an expired one is refused; the handler
//! gets the owning account id and nothing else. A request that may change something is charged
//! to the account's write budget here ([`charge_write`]). [`OwnedProject`] adds
//! the ownership check of the path's project.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use crate::ids::AccountId;
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
        let token = bearer(&parts.headers)?;
        let account = crate::service::accounts::account_of_token(state, token).await?;
        charge_write(parts, state, &account)?;
        Ok(Account(account))
    }
}

/// The management token a request presents (`Authorization: Bearer …`).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ServiceError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ServiceError::Unauthorized("missing bearer token"))
}

/// Takes a write from the account's budget when the request may change something
/// ([`crate::write_limits`]); once per request, however many extractors authenticate it.
pub(crate) fn charge_write(
    parts: &mut Parts,
    state: &AppState,
    account: &AccountId,
) -> Result<(), ServiceError> {
    #[derive(Clone)]
    struct Charged;
    if !crate::write_limits::is_write(&parts.method) || parts.extensions.get::<Charged>().is_some()
    {
        return Ok(());
    }
    parts.extensions.insert(Charged);
    state
        .write_limits
        .charge(account)
        .map_err(|retry_after| ServiceError::TooManyRequests { retry_after })
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
