//! `/v1/signup` and `/v1/tokens`: sign up, exchange email and password for a management token
//! (under the same login limits as the dashboard: [`crate::service::accounts::authenticate`]),
//! list and revoke tokens. The work is [`crate::service::accounts`]'s; this is the JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Account, RestResult};
use crate::auth_limits::ClientAddr;
use crate::service::accounts::{self, check_token_days};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    name: Option<String>,
    /// Days until a new management token expires (1 to 365); absent or null: never.
    #[serde(default)]
    expires_in_days: Option<Value>,
}

pub async fn signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Credentials>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let (id, email) = accounts::sign_up(&state, &body.email, &body.password, client).await?;
    tracing::info!(account = %id, "account created");
    Ok((StatusCode::CREATED, Json(json!({"id": id, "email": email}))))
}

pub async fn create_token(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Credentials>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let days = token_days(body.expires_in_days.as_ref())?;
    let account = accounts::authenticate(&state, &body.email, &body.password, client).await?;
    let t = accounts::issue_token(
        &state,
        &account,
        body.name.as_deref().unwrap_or_default(),
        days,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": t.id, "name": t.name, "token": t.token, "expires_at": t.expires_at})),
    ))
}

/// Reads `expires_in_days`: absent or null is "never", else a whole number of days from 1 to
/// [`accounts::MAX_TOKEN_DAYS`].
pub fn token_days(value: Option<&Value>) -> RestResult<Option<i64>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => check_token_days(v.as_i64().unwrap_or(0)).map(Some),
    }
}

pub async fn list_tokens(
    State(state): State<AppState>,
    Account(account): Account,
) -> RestResult<Json<Value>> {
    let tokens = accounts::tokens_of(&state, &account).await?;
    Ok(Json(json!({"tokens": tokens})))
}

pub async fn delete_token(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    accounts::revoke_token(&state, &account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
