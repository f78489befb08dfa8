//! Dashboard sessions as stored: a row per session keyed by the SHA-256 of its token (the
//! token itself only the browser holds) with its account, CSRF token and expiry, and the
//! sealed one-time messages (`session_flashes`) a session's actions leave for its next page.
//! The cookies, CSRF checks and sealing are the dashboard's ([`crate::web`]); this is the
//! storage, every call keyed by a session's token hash or scoped by its account.

use std::time::Duration;

use super::ServiceResult;
use crate::ids::AccountId;
use crate::state::AppState;

/// A live session, as its token hash finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub account: AccountId,
    /// The account's email.
    pub email: String,
    pub csrf: String,
}

/// Stores a new session of `account` lasting `ttl`, and sweeps the expired ones (whenever
/// someone logs in).
pub async fn open(
    state: &AppState,
    account: &AccountId,
    token_hash: &str,
    csrf: &str,
    ttl: Duration,
) -> ServiceResult<()> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, account_id, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(token_hash)
    .bind(account)
    .bind(csrf)
    .bind(ttl.as_secs_f64())
    .execute(&state.pool)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// The live (unexpired) session with this token hash, if any.
pub async fn find(state: &AppState, token_hash: &str) -> ServiceResult<Option<StoredSession>> {
    let row: Option<(AccountId, String, String)> = sqlx::query_as(
        "SELECT s.account_id, a.email, s.csrf_token FROM sessions s JOIN accounts a ON a.id = s.account_id \
         WHERE s.token_hash = $1 AND s.expires_at > now()",
    )
    .bind(token_hash)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|(account, email, csrf)| StoredSession {
        account,
        email,
        csrf,
    }))
}

/// Ends the session with this token hash (nothing if there is none).
pub async fn close(state: &AppState, token_hash: &str) -> ServiceResult<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// Ends every session of `account` but the one with token hash `keep` (after a password
/// change); how many ended.
pub async fn close_others(state: &AppState, account: &AccountId, keep: &str) -> ServiceResult<u64> {
    Ok(
        sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND token_hash <> $2")
            .bind(account)
            .bind(keep)
            .execute(&state.pool)
            .await?
            .rows_affected(),
    )
}

/// Leaves the sealed message `payload` for page `path` of the session with this token hash,
/// replacing one waiting there.
pub async fn put_flash(
    state: &AppState,
    token_hash: &str,
    path: &str,
    payload: &str,
) -> ServiceResult<()> {
    sqlx::query(
        "INSERT INTO session_flashes (token_hash, path, payload) VALUES ($1, $2, $3) \
         ON CONFLICT (token_hash, path) DO UPDATE SET payload = EXCLUDED.payload, created_at = now()",
    )
    .bind(token_hash)
    .bind(path)
    .bind(payload)
    .execute(&state.pool)
    .await?;
    Ok(())
}

/// Takes (reads and deletes) the sealed message waiting for page `path` of the session with
/// this token hash: the payload when one was left less than `ttl` ago.
pub async fn take_flash(
    state: &AppState,
    token_hash: &str,
    path: &str,
    ttl: Duration,
) -> ServiceResult<Option<String>> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "DELETE FROM session_flashes WHERE token_hash = $1 AND path = $2 \
         RETURNING payload, created_at > now() - make_interval(secs => $3)",
    )
    .bind(token_hash)
    .bind(path)
    .bind(ttl.as_secs_f64())
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.and_then(|(payload, fresh)| fresh.then_some(payload)))
}
