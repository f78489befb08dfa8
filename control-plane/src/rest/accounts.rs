//! Accounts and management tokens: sign up, exchange email and password for a token (shown
//! once, stored as SHA-256), list and revoke tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Account, RestError, RestResult};
use crate::ids::{AccountId, TokenId};
use crate::secrets::{hash_password, random_token, sha256_hex, verify_password};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    name: Option<String>,
}

/// Lower-cases and checks an email address.
pub fn normalise_email(email: &str) -> RestResult<String> {
    let email = email.trim().to_ascii_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(RestError::field(
            "email",
            "a valid email address is required",
        ))
    }
}

/// Checks password strength.
pub fn check_password(password: &str) -> RestResult<()> {
    if password.chars().count() < 10 {
        return Err(RestError::field(
            "password",
            "password must be at least 10 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(RestError::field("password", "password is too long"));
    }
    Ok(())
}

/// Creates an account; shared by the REST API and the dashboard.
pub async fn create_account(
    state: &AppState,
    email: &str,
    password: &str,
) -> RestResult<(AccountId, String)> {
    let email = normalise_email(email)?;
    check_password(password)?;
    let hash = hash_password(password)
        .map_err(|e| RestError::Internal(anyhow::anyhow!("hashing: {e}")))?;
    let id = AccountId::generate();
    let inserted = sqlx::query("INSERT INTO accounts (id, email, password_hash) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
        .bind(&id)
        .bind(&email)
        .bind(hash)
        .execute(&state.pool)
        .await?;
    if inserted.rows_affected() == 0 {
        return Err(RestError::Conflict(
            "an account with this email already exists".into(),
        ));
    }
    Ok((id, email))
}

/// Checks credentials; the same error for an unknown email and a wrong password, and an
/// argon2 verification either way so timing does not tell them apart.
pub async fn authenticate(state: &AppState, email: &str, password: &str) -> RestResult<AccountId> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let email = email.trim().to_ascii_lowercase();
    let row: Option<(AccountId, String)> =
        sqlx::query_as("SELECT id, password_hash FROM accounts WHERE email = $1")
            .bind(&email)
            .fetch_optional(&state.pool)
            .await?;
    match row {
        Some((id, hash)) if verify_password(password, &hash) => Ok(id),
        Some(_) => Err(RestError::Unauthorized("wrong email or password")),
        None => {
            let dummy =
                DUMMY.get_or_init(|| hash_password("rotor-timing-dummy").unwrap_or_default());
            let _ = verify_password(password, dummy);
            Err(RestError::Unauthorized("wrong email or password"))
        }
    }
}

pub async fn signup(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let (id, email) = create_account(&state, &body.email, &body.password).await?;
    tracing::info!(account = %id, "account created");
    Ok((StatusCode::CREATED, Json(json!({"id": id, "email": email}))))
}

pub async fn create_token(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let account = authenticate(&state, &body.email, &body.password).await?;
    let (id, name, token) =
        issue_token(&state, &account, body.name.as_deref().unwrap_or_default()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "name": name, "token": token})),
    ))
}

/// Creates a management token for an account and returns (id, name, token); the token is
/// stored only as its SHA-256 and never shown again. Shared with the dashboard.
pub async fn issue_token(
    state: &AppState,
    account: &AccountId,
    name: &str,
) -> RestResult<(TokenId, String, String)> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(RestError::field(
            "name",
            "a name of 1 to 100 characters is required",
        ));
    }
    let id = TokenId::generate();
    let token = random_token("rtr_");
    sqlx::query(
        "INSERT INTO management_tokens (id, account_id, name, token_hash) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(account)
    .bind(&name)
    .bind(sha256_hex(&token))
    .execute(&state.pool)
    .await?;
    tracing::info!(account = %account, token = %id, "management token created");
    Ok((id, name, token))
}

/// An account's management tokens, oldest first.
pub async fn tokens_of(state: &AppState, account: &AccountId) -> RestResult<Vec<TokenInfo>> {
    Ok(sqlx::query_as(
        "SELECT id, name, created_at, last_used_at FROM management_tokens WHERE account_id = $1 ORDER BY created_at",
    )
    .bind(account)
    .fetch_all(&state.pool)
    .await?)
}

/// Revokes one of an account's management tokens; `NotFound` when it is not theirs.
pub async fn revoke_token(state: &AppState, account: &AccountId, id: &str) -> RestResult<()> {
    let id = TokenId::parse(id).ok_or(RestError::NotFound)?;
    let done = sqlx::query("DELETE FROM management_tokens WHERE id = $1 AND account_id = $2")
        .bind(&id)
        .bind(account)
        .execute(&state.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(RestError::NotFound);
    }
    Ok(())
}

#[derive(Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: TokenId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn list_tokens(
    State(state): State<AppState>,
    Account(account): Account,
) -> RestResult<Json<Value>> {
    let tokens = tokens_of(&state, &account).await?;
    Ok(Json(json!({"tokens": tokens})))
}

pub async fn delete_token(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    revoke_token(&state, &account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
