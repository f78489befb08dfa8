//! Bearer management-token authentication: the token is hashed and looked up; the handler gets
//! the owning account id and nothing else.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::RestError;
use crate::ids::AccountId;
use crate::secrets::sha256_hex;
use crate::state::AppState;

/// The authenticated account of a request.
#[derive(Debug, Clone)]
pub struct Account(pub AccountId);

impl FromRequestParts<AppState> for Account {
    type Rejection = RestError;

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
            .ok_or(RestError::Unauthorized("missing bearer token"))?;
        let account: Option<AccountId> = sqlx::query_scalar(
            "UPDATE management_tokens SET last_used_at = now() WHERE token_hash = $1 RETURNING account_id",
        )
        .bind(sha256_hex(token))
        .fetch_optional(&state.pool)
        .await?;
        account
            .map(Account)
            .ok_or(RestError::Unauthorized("invalid token"))
    }
}
