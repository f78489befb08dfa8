//! `/v1/signup` and `/v1/tokens`: sign up, exchange email and password for a management token
//! (under the same login limits as the dashboard: [`crate::service::accounts::authenticate`]),
//! list and revoke tokens. The work is [`crate::service::accounts`]'s; this is the JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::openapi::ACCOUNTS;
use super::{Account, ErrorBody, RestResult};
use crate::auth_limits::ClientAddr;
use crate::ids::AccountId;
use crate::service::accounts::{self, check_token_days, NewToken, TokenInfo};
use crate::state::AppState;

/// An email and a password for the new account (`POST /v1/signup`).
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    #[serde(default)]
    #[schema(required = true, format = Email)]
    email: String,
    #[serde(default)]
    #[schema(required = true, min_length = 10)]
    password: String,
    /// Read (a token request's fields are accepted here too) but not used.
    #[serde(default, rename = "name")]
    #[schema(ignore)]
    _name: Option<String>,
}

/// An account's email and password, and a name for the new token (`POST /v1/tokens`).
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    #[serde(default)]
    #[schema(required = true)]
    email: String,
    #[serde(default)]
    #[schema(required = true)]
    password: String,
    #[serde(default)]
    #[schema(value_type = String, required = true)]
    name: Option<String>,
    /// days until the token stops working; absent or null: never (answers show expires_at)
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 365)]
    expires_in_days: Option<Value>,
}

/// A new account.
#[derive(Serialize, ToSchema)]
pub struct NewAccount {
    #[schema(value_type = String)]
    pub id: AccountId,
    pub email: String,
}

/// Create an account.
#[utoipa::path(post, path = "/v1/signup", tag = ACCOUNTS,
    summary = "Create an account",
    request_body = Credentials,
    responses((status = 201, description = "the account", body = NewAccount)))]
pub async fn signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Credentials>,
) -> RestResult<(StatusCode, Json<NewAccount>)> {
    let (id, email) = accounts::sign_up(&state, &body.email, &body.password, client).await?;
    tracing::info!(account = %id, "account created");
    Ok((StatusCode::CREATED, Json(NewAccount { id, email })))
}

/// Exchange email and password for a management token.
#[utoipa::path(post, path = "/v1/tokens", tag = ACCOUNTS,
    summary = "Exchange email and password for a management token (shown once)",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "the token, shown this once", body = NewToken),
        (status = 429, description = "too many attempts (Retry-After says when to try again)", body = ErrorBody),
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<TokenRequest>,
) -> RestResult<(StatusCode, Json<NewToken>)> {
    let days = token_days(body.expires_in_days.as_ref())?;
    let account = accounts::authenticate(&state, &body.email, &body.password, client).await?;
    let t = accounts::issue_token(
        &state,
        &account,
        body.name.as_deref().unwrap_or_default(),
        days,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Reads `expires_in_days`: absent or null is "never", else a whole number of days from 1 to
/// [`accounts::MAX_TOKEN_DAYS`].
pub fn token_days(value: Option<&Value>) -> RestResult<Option<i64>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => check_token_days(v.as_i64().unwrap_or(0)).map(Some),
    }
}

/// The account's management tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// List the account's management tokens.
#[utoipa::path(get, path = "/v1/tokens", tag = ACCOUNTS,
    summary = "List management tokens",
    security(("bearer" = [])),
    responses((status = 200, description = "oldest first", body = TokenList)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Account(account): Account,
) -> RestResult<Json<TokenList>> {
    let tokens = accounts::tokens_of(&state, &account).await?;
    Ok(Json(TokenList { tokens }))
}

/// Revoke a management token.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = ACCOUNTS,
    summary = "Revoke a management token",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the token's id (tok_…)")),
    responses((status = 204, description = "revoked")))]
pub async fn delete_token(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    accounts::revoke_token(&state, &account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
