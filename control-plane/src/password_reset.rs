//! Password reset links: a visitor asks for one by email address; if an account has that
//! address it gets a mail with a link carrying a random 32-byte token, stored only as its
//! SHA-256 in `password_resets`. A token works once and for [`LINK_TTL`]; a newer request for
//! the account replaces older tokens; a reset sets the new password, ends every session of the
//! account (and, if asked, revokes its management tokens) and writes an audit entry, in one
//! transaction.
//!
//! Asking for a link answers the same whatever the address: the dashboard only queues the
//! address here ([`Resets::request`]) and the lookup, the token and the mail happen on
//! [`Resets`]' worker, off the request path, so neither the answer nor its timing tells
//! whether an account exists. Neither the token nor the link is ever logged.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::audit::{self, Actor, Entry};
use crate::ids::AccountId;
use crate::mail::{Mail, Mailer, SEND_TIMEOUT};
use crate::secrets::{random_token, sha256_hex};

/// How long a reset link works.
pub const LINK_TTL: Duration = Duration::from_secs(30 * 60);
/// Requests waiting for the worker at most; more are dropped (with a warning).
const QUEUE: usize = 256;

/// Why a reset could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The queue of reset requests and the worker that answers them by mail. The worker runs
/// until every handle is dropped.
pub struct Resets {
    queue: mpsc::Sender<String>,
    mail_enabled: bool,
}

impl Resets {
    /// Starts the worker (on the current Tokio runtime). Without a mailer, requests are
    /// logged as undeliverable and nothing is stored.
    pub fn start(pool: PgPool, public_url: String, mailer: Option<Arc<dyn Mailer>>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let mail_enabled = mailer.is_some();
        tokio::spawn(work(rx, pool, public_url, mailer));
        Self {
            queue,
            mail_enabled,
        }
    }

    /// Whether reset links can be mailed at all.
    pub fn mail_enabled(&self) -> bool {
        self.mail_enabled
    }

    /// Queues a request for a link to `email` (normalised); returns at once.
    pub fn request(&self, email: String) {
        if self.queue.try_send(email).is_err() {
            tracing::warn!("password reset queue full: a request was dropped");
        }
    }
}

async fn work(
    mut rx: mpsc::Receiver<String>,
    pool: PgPool,
    public_url: String,
    mailer: Option<Arc<dyn Mailer>>,
) {
    while let Some(email) = rx.recv().await {
        let Some(mailer) = &mailer else {
            tracing::warn!(
                "a password reset link was asked for, but mail is disabled (set ROTOR_SMTP_URL): nothing was sent"
            );
            continue;
        };
        let account: Option<AccountId> =
            match sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1")
                .bind(&email)
                .fetch_optional(&pool)
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "password reset: looking up the account failed");
                    continue;
                }
            };
        let Some(account) = account else {
            tracing::info!("password reset asked for an address without an account");
            continue;
        };
        let token = match issue(&pool, &account).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(account = %account, error = %e, "password reset: storing the link failed");
                continue;
            }
        };
        let mail = reset_mail(&email, &public_url, &token);
        match tokio::time::timeout(SEND_TIMEOUT + Duration::from_secs(5), mailer.send(mail)).await {
            Ok(Ok(())) => tracing::info!(account = %account, "password reset link sent"),
            Ok(Err(e)) => {
                tracing::error!(account = %account, error = %e, "password reset link not sent")
            }
            Err(_) => {
                tracing::error!(account = %account, "password reset link not sent: timed out")
            }
        }
    }
}

/// The address of the page a token opens.
pub fn link(public_url: &str, token: &str) -> String {
    format!(
        "{}/password/reset/{token}",
        public_url.trim_end_matches('/')
    )
}

/// The mail with the link.
fn reset_mail(to: &str, public_url: &str, token: &str) -> Mail {
    let minutes = LINK_TTL.as_secs() / 60;
    Mail {
        to: to.to_owned(),
        subject: "Reset your Rotor password".into(),
        text: format!(
            "Someone (hopefully you) asked to reset the password of the Rotor account\r\n\
             for this address. To choose a new password, open this link:\r\n\
             \r\n\
             {}\r\n\
             \r\n\
             The link works once, for {minutes} minutes. Choosing a new password logs out\r\n\
             every session of the account.\r\n\
             \r\n\
             If you did not ask for this, ignore this mail: your password stays as it is.\r\n",
            link(public_url, token)
        ),
    }
}

/// Makes a new token for `account` (replacing its older ones; links past their time are
/// deleted too) and returns it. Only its SHA-256 is stored.
pub async fn issue(pool: &PgPool, account: &AccountId) -> Result<String, ResetError> {
    let token = random_token("rp_");
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM password_resets WHERE account_id = $1 OR expires_at <= now()")
        .bind(account)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO password_resets (token_hash, account_id, expires_at) \
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(sha256_hex(&token))
    .bind(account)
    .bind(LINK_TTL.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// The account (and its email) a token would reset, if the token is live.
pub async fn account_of(
    pool: &PgPool,
    token: &str,
) -> Result<Option<(AccountId, String)>, ResetError> {
    if token.len() > 200 {
        return Ok(None);
    }
    Ok(sqlx::query_as(
        "SELECT a.id, a.email FROM password_resets r JOIN accounts a ON a.id = r.account_id \
         WHERE r.token_hash = $1 AND r.expires_at > now()",
    )
    .bind(sha256_hex(token))
    .fetch_optional(pool)
    .await?)
}

/// What a reset did.
#[derive(Debug)]
pub struct Done {
    pub account: AccountId,
    pub email: String,
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
}

/// Uses `token` (once) to set the password hash, ends every session of the account, revokes
/// its management tokens if `revoke_tokens`, and records it; `None` when the token is
/// unknown, used or past its time.
pub async fn complete(
    pool: &PgPool,
    token: &str,
    password_hash: &str,
    revoke_tokens: bool,
) -> Result<Option<Done>, ResetError> {
    if token.len() > 200 {
        return Ok(None);
    }
    let mut tx = pool.begin().await?;
    let account: Option<AccountId> = sqlx::query_scalar(
        "DELETE FROM password_resets WHERE token_hash = $1 AND expires_at > now() \
         RETURNING account_id",
    )
    .bind(sha256_hex(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(account) = account else {
        return Ok(None);
    };
    let email: String =
        sqlx::query_scalar("UPDATE accounts SET password_hash = $2 WHERE id = $1 RETURNING email")
            .bind(&account)
            .bind(password_hash)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query("DELETE FROM password_resets WHERE account_id = $1")
        .bind(&account)
        .execute(&mut *tx)
        .await?;
    let sessions_ended = sqlx::query("DELETE FROM sessions WHERE account_id = $1")
        .bind(&account)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let tokens_revoked = if revoke_tokens {
        sqlx::query("DELETE FROM management_tokens WHERE account_id = $1")
            .bind(&account)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    } else {
        0
    };
    audit::record(
        &mut tx,
        Entry {
            actor: Actor::Account(&account),
            account: Some(&account),
            project: None,
            action: "account.password_reset",
            target: account.as_str(),
            before: None,
            after: Some(json!({
                "sessions_ended": sessions_ended,
                "tokens_revoked": tokens_revoked,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Done {
        account,
        email,
        sessions_ended,
        tokens_revoked,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mail_carries_the_link_in_short_ascii_lines() {
        let m = reset_mail("a@x.io", "https://rotor.example.com/", "rp_abc");
        assert!(m
            .text
            .contains("\r\nhttps://rotor.example.com/password/reset/rp_abc\r\n"));
        assert!(m.text.is_ascii());
        assert!(m.text.lines().all(|l| l.len() < 100));
        assert!(m.text.contains("30 minutes"));
    }
}
