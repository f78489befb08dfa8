//! Accounts and management tokens: sign up, exchange email and password for a token (shown
//! once, stored as SHA-256, optionally expiring), list and revoke tokens. The one login path
//! ([`authenticate`]) and sign-up path ([`sign_up`]) every surface calls, with the limits of
//! [`crate::auth_limits`] applied.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Account, RestError, RestResult};
use crate::auth_limits::{ClientAddr, LimitError};
use crate::ids::{AccountId, TokenId};
use crate::secrets::{
    hash_password_async, password_check_admissible, random_token, sha256_hex, verify_password_async,
};
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

/// The longest a management token can be made to last, in days.
pub const MAX_TOKEN_DAYS: i64 = 365;

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

/// Opens an account for a visitor (REST and dashboard): valid input is checked first, then
/// whether a password can be hashed now (else [`RestError::Busy`]), then the client address's
/// sign-up limit, then the account is created.
pub async fn sign_up(
    state: &AppState,
    email: &str,
    password: &str,
    client: Option<IpAddr>,
) -> RestResult<(AccountId, String)> {
    normalise_email(email)?;
    check_password(password)?;
    if !password_check_admissible() {
        return Err(RestError::Busy);
    }
    state.auth_limits.begin_signup(client).await.map_err(|e| {
        if matches!(e, LimitError::Wait(_)) {
            tracing::warn!("sign-up refused: too many from this address");
        }
        RestError::from(e)
    })?;
    create_account(state, email, password).await
}

/// Creates an account without any limit (for [`sign_up`] and the operator's demo).
pub async fn create_account(
    state: &AppState,
    email: &str,
    password: &str,
) -> RestResult<(AccountId, String)> {
    let email = normalise_email(email)?;
    check_password(password)?;
    let hash = hash_password_async(password).await?;
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

/// Logs in, on every surface: refused with [`RestError::TooManyRequests`] (before any password
/// check) once the email or the client address has failed too often, with
/// [`RestError::Busy`] when no password check would be admitted now or the counters cannot
/// be reached, and otherwise the same [`RestError::Unauthorized`] for an unknown email and a
/// wrong password.
pub async fn authenticate(
    state: &AppState,
    email: &str,
    password: &str,
    client: Option<IpAddr>,
) -> RestResult<AccountId> {
    // During a flood the box-wide rate of password checks is spent: the attempt would be
    // refused as busy anyway, so it is refused before it costs a round trip to the counters.
    if !password_check_admissible() {
        return Err(RestError::Busy);
    }
    let attempt = state
        .auth_limits
        .begin_login(email, client)
        .await
        .map_err(|e| {
            if matches!(e, LimitError::Wait(_)) {
                tracing::warn!("login refused: too many failed attempts");
            }
            RestError::from(e)
        })?;
    match check_credentials(state, email, password).await {
        Ok(Some(account)) => {
            attempt.succeeded().await;
            Ok(account)
        }
        Ok(None) => {
            attempt.failed();
            Err(RestError::Unauthorized("wrong email or password"))
        }
        Err(e) => {
            attempt.not_counted().await;
            Err(e)
        }
    }
}

/// The account these credentials open, if any; an argon2 verification runs either way so
/// timing does not tell an unknown email from a wrong password.
async fn check_credentials(
    state: &AppState,
    email: &str,
    password: &str,
) -> RestResult<Option<AccountId>> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let email = email.trim().to_ascii_lowercase();
    let row: Option<(AccountId, String)> =
        sqlx::query_as("SELECT id, password_hash FROM accounts WHERE email = $1")
            .bind(&email)
            .fetch_optional(&state.pool)
            .await?;
    match row {
        Some((id, hash)) => Ok(verify_password_async(password, &hash).await?.then_some(id)),
        None => {
            let dummy = DUMMY
                .get_or_try_init(|| hash_password_async("rotor-timing-dummy"))
                .await?;
            verify_password_async(password, dummy).await?;
            Ok(None)
        }
    }
}

pub async fn signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Credentials>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let (id, email) = sign_up(&state, &body.email, &body.password, client).await?;
    tracing::info!(account = %id, "account created");
    Ok((StatusCode::CREATED, Json(json!({"id": id, "email": email}))))
}

pub async fn create_token(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Credentials>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let days = token_days(body.expires_in_days.as_ref())?;
    let account = authenticate(&state, &body.email, &body.password, client).await?;
    let t = issue_token(
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
/// [`MAX_TOKEN_DAYS`].
pub fn token_days(value: Option<&Value>) -> RestResult<Option<i64>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => check_token_days(v.as_i64().unwrap_or(0)).map(Some),
    }
}

/// Checks a token lifetime in days (1 to [`MAX_TOKEN_DAYS`]).
pub fn check_token_days(days: i64) -> RestResult<i64> {
    if (1..=MAX_TOKEN_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(RestError::field(
            "expires_in_days",
            format!("expires_in_days must be a whole number of days from 1 to {MAX_TOKEN_DAYS}, or absent for no expiry"),
        ))
    }
}

/// A management token just created: the only time `token` is seen.
pub struct NewToken {
    pub id: TokenId,
    pub name: String,
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates a management token for an account, expiring after `days` if given; the token is
/// stored only as its SHA-256 and never shown again. Shared with the dashboard.
pub async fn issue_token(
    state: &AppState,
    account: &AccountId,
    name: &str,
    days: Option<i64>,
) -> RestResult<NewToken> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(RestError::field(
            "name",
            "a name of 1 to 100 characters is required",
        ));
    }
    let days = days.map(check_token_days).transpose()?;
    let id = TokenId::generate();
    let token = random_token("rtr_");
    // The plan's token limit is counted under a lock on the account, in the inserting
    // transaction, so concurrent requests cannot overshoot it.
    let mut tx = state.pool.begin().await?;
    crate::limits::check_tokens_in_tx(&mut tx, account).await?;
    let expires_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO management_tokens (id, account_id, name, token_hash, expires_at) \
         VALUES ($1, $2, $3, $4, now() + make_interval(days => $5::int)) RETURNING expires_at",
    )
    .bind(&id)
    .bind(account)
    .bind(&name)
    .bind(sha256_hex(&token))
    .bind(days.and_then(|d| i32::try_from(d).ok()))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(account = %account, token = %id, ?expires_at, "management token created");
    Ok(NewToken {
        id,
        name,
        token,
        expires_at,
    })
}

/// Revokes every management token of an account (after a password change); returns how many.
pub async fn revoke_all_tokens(state: &AppState, account: &AccountId) -> RestResult<u64> {
    Ok(
        sqlx::query("DELETE FROM management_tokens WHERE account_id = $1")
            .bind(account)
            .execute(&state.pool)
            .await?
            .rows_affected(),
    )
}

/// An account's management tokens, oldest first (expired ones too, until revoked).
pub async fn tokens_of(state: &AppState, account: &AccountId) -> RestResult<Vec<TokenInfo>> {
    Ok(sqlx::query_as(
        "SELECT id, name, created_at, last_used_at, expires_at FROM management_tokens \
         WHERE account_id = $1 ORDER BY created_at",
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
    /// When the token stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
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
