//! Bearer management-token authentication: the token is hashed and looked up, an expired one
//! is refused; the handler gets the owning account id and nothing else.

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
            Some((_, true)) => Err(RestError::Unauthorized("token expired")),
            None => Err(RestError::Unauthorized("invalid token")),
        }
    }
}
