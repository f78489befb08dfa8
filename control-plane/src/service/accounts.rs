//! Accounts and their credentials: sign-up, the one login path every surface calls (with the
//! limits of [`crate::auth_limits`] applied: REST token exchange, dashboard login and the
//! dashboard's password change all go through [`authenticate`]), password changes, and
//! management tokens (shown once, stored as SHA-256, optionally expiring; the plan's count
//! checked in the creating transaction).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ServiceError, ServiceResult};
use crate::auth_limits::LimitError;
use crate::ids::{AccountId, TokenId};
use crate::secrets::{
    hash_password_async, password_check_admissible, random_token, sha256_hex, verify_password_async,
};
use crate::state::AppState;

/// The longest a management token can be made to last, in days.
pub const MAX_TOKEN_DAYS: i64 = 365;

/// Lower-cases and checks an email address.
pub fn normalise_email(email: &str) -> ServiceResult<String> {
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
        Err(ServiceError::field(
            "email",
            "a valid email address is required",
        ))
    }
}

/// Checks password strength.
pub fn check_password(password: &str) -> ServiceResult<()> {
    if password.chars().count() < 10 {
        return Err(ServiceError::field(
            "password",
            "password must be at least 10 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(ServiceError::field("password", "password is too long"));
    }
    Ok(())
}

/// Opens an account for a visitor (REST and dashboard): valid input is checked first, then
/// whether a password can be hashed now (else [`ServiceError::Busy`]), then the client address's
/// sign-up limit, then the account is created.
pub async fn sign_up(
    state: &AppState,
    email: &str,
    password: &str,
    client: Option<IpAddr>,
) -> ServiceResult<(AccountId, String)> {
    normalise_email(email)?;
    check_password(password)?;
    if !password_check_admissible() {
        return Err(ServiceError::Busy);
    }
    state.auth_limits.begin_signup(client).await.map_err(|e| {
        if matches!(e, LimitError::Wait(_)) {
            tracing::warn!("sign-up refused: too many from this address");
        }
        ServiceError::from(e)
    })?;
    create_account(state, email, password).await
}

/// Creates an account without any limit (for [`sign_up`] and the operator's demo).
pub async fn create_account(
    state: &AppState,
    email: &str,
    password: &str,
) -> ServiceResult<(AccountId, String)> {
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
        return Err(ServiceError::Conflict(
            "an account with this email already exists".into(),
        ));
    }
    Ok((id, email))
}

/// Logs in, on every surface: refused with [`ServiceError::TooManyRequests`] (before any password
/// check) once the email or the client address has failed too often, with
/// [`ServiceError::Busy`] when no password check would be admitted now or the counters cannot
/// be reached, and otherwise the same [`ServiceError::Unauthorized`] for an unknown email and a
/// wrong password.
pub async fn authenticate(
    state: &AppState,
    email: &str,
    password: &str,
    client: Option<IpAddr>,
) -> ServiceResult<AccountId> {
    // During a flood the box-wide rate of password checks is spent: the attempt would be
    // refused as busy anyway, so it is refused before it costs a round trip to the counters.
    if !password_check_admissible() {
        return Err(ServiceError::Busy);
    }
    let attempt = state
        .auth_limits
        .begin_login(email, client)
        .await
        .map_err(|e| {
            if matches!(e, LimitError::Wait(_)) {
                tracing::warn!("login refused: too many failed attempts");
            }
            ServiceError::from(e)
        })?;
    match check_credentials(state, email, password).await {
        Ok(Some(account)) => {
            attempt.succeeded().await;
            Ok(account)
        }
        Ok(None) => {
            attempt.failed();
            Err(ServiceError::Unauthorized("wrong email or password"))
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
) -> ServiceResult<Option<AccountId>> {
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

/// Checks a token lifetime in days (1 to [`MAX_TOKEN_DAYS`]).
pub fn check_token_days(days: i64) -> ServiceResult<i64> {
    if (1..=MAX_TOKEN_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(ServiceError::field(
            "expires_in_days",
            format!("expires_in_days must be a whole number of days from 1 to {MAX_TOKEN_DAYS}, or absent for no expiry"),
        ))
    }
}

/// A management token just created: the only time `token` is seen.
#[derive(Serialize, ToSchema)]
pub struct NewToken {
    #[schema(value_type = String)]
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
) -> ServiceResult<NewToken> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ServiceError::field(
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

/// The account a management token (as presented) belongs to, marking the token used; an
/// expired token is refused and not marked. Unknown and expired tokens are `Unauthorized`.
pub async fn account_of_token(state: &AppState, token: &str) -> ServiceResult<AccountId> {
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
        Some((account, false)) => Ok(account),
        Some((_, true)) => Err(ServiceError::Unauthorized("token expired")),
        None => Err(ServiceError::Unauthorized("invalid token")),
    }
}

/// An account's management tokens, oldest first (expired ones too, until revoked).
pub async fn tokens_of(state: &AppState, account: &AccountId) -> ServiceResult<Vec<TokenInfo>> {
    Ok(sqlx::query_as(
        "SELECT id, name, created_at, last_used_at, expires_at FROM management_tokens \
         WHERE account_id = $1 ORDER BY created_at",
    )
    .bind(account)
    .fetch_all(&state.pool)
    .await?)
}

/// Revokes one of an account's management tokens; `NotFound` when it is not theirs.
pub async fn revoke_token(state: &AppState, account: &AccountId, id: &str) -> ServiceResult<()> {
    let id = TokenId::parse(id).ok_or(ServiceError::NotFound)?;
    let done = sqlx::query("DELETE FROM management_tokens WHERE id = $1 AND account_id = $2")
        .bind(&id)
        .bind(account)
        .execute(&state.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ServiceError::NotFound);
    }
    Ok(())
}

/// A management token as its owner sees it (never the token itself).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct TokenInfo {
    #[schema(value_type = String)]
    pub id: TokenId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// When the token stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A password change: the current password (checked under the login limits, so a stolen
/// session cannot be used to guess it), the new one and its confirmation.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
    pub confirm: String,
    /// Also revoke every management token of the account.
    pub revoke_tokens: bool,
}

/// Changes the password of `account` (whose email is `email`) after checking the current one
/// as a login would; returns how many management tokens were revoked. Ending the account's
/// other sessions is the dashboard's part.
pub async fn change_password(
    state: &AppState,
    account: &AccountId,
    email: &str,
    change: &PasswordChange,
    client: Option<IpAddr>,
) -> ServiceResult<u64> {
    let checked = authenticate(state, email, &change.current, client).await?;
    if &checked != account {
        return Err(ServiceError::Unauthorized("wrong email or password"));
    }
    if change.new != change.confirm {
        return Err(ServiceError::field(
            "confirm",
            "The new passwords do not match.",
        ));
    }
    check_password(&change.new)?;
    if change.new == change.current {
        return Err(ServiceError::field(
            "new",
            "The new password must differ from the current one.",
        ));
    }
    let hash = hash_password_async(&change.new).await?;
    // The new password and the revocation land together or not at all.
    let mut tx = state.pool.begin().await?;
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1")
        .bind(account)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    let revoked = if change.revoke_tokens {
        sqlx::query("DELETE FROM management_tokens WHERE account_id = $1")
            .bind(account)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    } else {
        0
    };
    tx.commit().await?;
    Ok(revoked)
}
