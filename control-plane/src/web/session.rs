//! Dashboard sessions and CSRF: a random session token in an HttpOnly, SameSite=Lax cookie
//! (Secure when the public URL is HTTPS), stored as its SHA-256 with the session's CSRF token;
//! a pre-login CSRF cookie for the sign-up and login forms; and the failed-login limiter.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use parking_lot::Mutex;

use super::WebError;
use crate::ids::AccountId;
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "rotor_session";
/// Name of the pre-login CSRF cookie (double-submit).
pub const LOGIN_CSRF_COOKIE: &str = "rotor_login_csrf";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The TCP peer of a request, attached by the edge (absent when the app is served otherwise).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// A logged-in dashboard user.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: AccountId,
    pub email: String,
    pub csrf: String,
    token_hash: String,
}

impl Session {
    /// Checks a submitted CSRF token against this session's (constant time).
    pub fn check_csrf(&self, presented: &str) -> Result<(), WebError> {
        if constant_time_eq(presented.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            tracing::info!(account = %self.account, "form refused: bad CSRF token");
            Err(WebError::Csrf)
        }
    }

    /// Checks the `X-CSRF-Token` header of a script request.
    pub fn check_csrf_header(&self, headers: &HeaderMap) -> Result<(), WebError> {
        let presented = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.check_csrf(presented)
    }

    /// Ends every other session of this account (after a password change).
    pub async fn end_others(&self, state: &AppState) -> Result<u64, sqlx::Error> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND token_hash <> $2")
                .bind(&self.account)
                .bind(&self.token_hash)
                .execute(&state.pool)
                .await?
                .rows_affected(),
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    !b.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with Rotor's cookie policy.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let secure = if state.settings.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let v = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&v).expect("cookie values are token characters")
}

/// Starts a session for `account`; returns the `Set-Cookie` header value. Any session the
/// browser had before is replaced (no fixation: the id is always freshly generated here).
pub async fn start(state: &AppState, account: &AccountId) -> Result<HeaderValue, WebError> {
    let token = random_token("s_");
    let csrf = random_token("c_");
    sqlx::query(
        "INSERT INTO sessions (token_hash, account_id, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(sha256_hex(&token))
    .bind(account)
    .bind(&csrf)
    .bind(SESSION_TTL.as_secs_f64())
    .execute(&state.pool)
    .await?;
    // Expired sessions are swept whenever someone logs in.
    sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
        .execute(&state.pool)
        .await?;
    Ok(set_cookie(state, SESSION_COOKIE, &token, SESSION_TTL))
}

/// Ends the session the request carries (if any); returns the cookie that clears it.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, WebError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(sha256_hex(token))
            .execute(&state.pool)
            .await?;
    }
    Ok(set_cookie(state, SESSION_COOKIE, "", Duration::ZERO))
}

/// The session of a request, if it has a live one.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, WebError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let token_hash = sha256_hex(token);
    let row: Option<(AccountId, String, String)> = sqlx::query_as(
        "SELECT s.account_id, a.email, s.csrf_token FROM sessions s JOIN accounts a ON a.id = s.account_id \
         WHERE s.token_hash = $1 AND s.expires_at > now()",
    )
    .bind(&token_hash)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|(account, email, csrf)| Session {
        account,
        email,
        csrf,
        token_hash,
    }))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match current(state, &parts.headers).await? {
            Some(s) => Ok(s),
            None => Err(WebError::LoginRequired {
                next: if parts.method == axum::http::Method::GET {
                    parts.uri.path().to_owned()
                } else {
                    String::new()
                },
            }),
        }
    }
}

/// The pre-login CSRF token of a request, and the cookie to set when it had none.
pub fn login_csrf(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, LOGIN_CSRF_COOKIE).filter(|v| v.len() >= 16) {
        Some(v) => (v.to_owned(), None),
        None => {
            let v = random_token("l_");
            let c = set_cookie(state, LOGIN_CSRF_COOKIE, &v, Duration::from_secs(3600));
            (v, Some(c))
        }
    }
}

/// Checks a sign-up or login form's CSRF field against its cookie.
pub fn check_login_csrf(headers: &HeaderMap, presented: &str) -> Result<(), WebError> {
    let expected = cookie(headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.len() >= 16 && constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        tracing::info!("login form refused: bad CSRF token");
        Err(WebError::Csrf)
    }
}

/// Failed logins allowed per email address within [`LoginLimiter::WINDOW`].
const PER_EMAIL: u32 = 5;
/// Failed logins allowed per client address within the window.
const PER_ADDRESS: u32 = 20;

/// Counts failed logins per email and per client address in a sliding window; once either
/// is over its limit, further attempts are refused without checking the password.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    /// How long failures are remembered.
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    fn keys(email: &str, peer: Option<IpAddr>) -> Vec<(String, u32)> {
        let mut keys = vec![(
            format!("email:{}", email.trim().to_ascii_lowercase()),
            PER_EMAIL,
        )];
        if let Some(ip) = peer {
            keys.push((format!("ip:{ip}"), PER_ADDRESS));
        }
        keys
    }

    /// `Some(wait)` when this email or address must wait before trying again.
    pub fn blocked(&self, email: &str, peer: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock();
        map.retain(|_, (_, since)| now.duration_since(*since) < Self::WINDOW);
        Self::keys(email, peer)
            .into_iter()
            .filter_map(|(key, limit)| {
                map.get(&key)
                    .filter(|(count, _)| *count >= limit)
                    .map(|(_, since)| Self::WINDOW.saturating_sub(now.duration_since(*since)))
            })
            .max()
    }

    /// Records a failed attempt.
    pub fn failed(&self, email: &str, peer: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock();
        for (key, _) in Self::keys(email, peer) {
            let entry = map.entry(key).or_insert((0, now));
            entry.0 += 1;
        }
    }

    /// Forgets an email's failures after a successful login.
    pub fn succeeded(&self, email: &str) {
        self.failures
            .lock()
            .remove(&format!("email:{}", email.trim().to_ascii_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_blocks_an_email_after_five_failures_and_forgets_on_success() {
        let l = LoginLimiter::default();
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        for _ in 0..PER_EMAIL {
            assert!(l.blocked("A@x.io", ip).is_none());
            l.failed("a@x.io", ip);
        }
        let wait = l.blocked("a@x.io", ip).expect("blocked");
        assert!(wait <= LoginLimiter::WINDOW && wait > Duration::from_secs(60));
        assert!(
            l.blocked("b@x.io", ip).is_none(),
            "other emails from the address still try"
        );
        l.succeeded("a@x.io");
        assert!(l.blocked("a@x.io", ip).is_none());
    }

    #[test]
    fn the_limiter_blocks_an_address_trying_many_emails() {
        let l = LoginLimiter::default();
        let ip: Option<IpAddr> = Some("10.0.0.2".parse().unwrap());
        for n in 0..PER_ADDRESS {
            l.failed(&format!("user{n}@x.io"), ip);
        }
        assert!(l.blocked("fresh@x.io", ip).is_some());
        assert!(l
            .blocked("fresh@x.io", Some("10.0.0.3".parse().unwrap()))
            .is_none());
    }

    #[test]
    fn cookies_are_found_among_many() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; rotor_session=s_abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("s_abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
