//! Dashboard sessions and CSRF: a random session token in an HttpOnly, SameSite=Strict cookie
//! (`__Host-` prefixed and Secure when the public URL is HTTPS), stored as its SHA-256 with the
//! session's CSRF token; and a pre-login CSRF cookie, under the same policy, for the sign-up
//! and login forms. (The login limits are in [`crate::auth_limits`]; the rows are
//! [`crate::service::sessions`]'s.)

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};

use super::WebError;
use crate::ids::AccountId;
use crate::secrets::{random_token, sha256_hex};
use crate::service::sessions;
use crate::state::AppState;
use rotor_tenant_config::secret_eq::secret_eq;

/// Name of the session cookie on plain HTTP.
pub const SESSION_COOKIE: &str = "rotor_session";
/// Name of the session cookie on HTTPS: the `__Host-` prefix makes browsers refuse it unless
/// it is Secure, host-only and `Path=/` (no subdomain or plain-HTTP page can plant or shadow it).
pub const SECURE_SESSION_COOKIE: &str = "__Host-rotor_session";
/// Name of the pre-login CSRF cookie (double-submit) on plain HTTP.
pub const LOGIN_CSRF_COOKIE: &str = "rotor_login_csrf";
/// Name of the pre-login CSRF cookie on HTTPS.
pub const SECURE_LOGIN_CSRF_COOKIE: &str = "__Host-rotor_login_csrf";
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
    /// Key of this session's one-time messages ([`super::flash`]), derived from the session
    /// token the browser presents (the database holds only the token's hash).
    flash_key: FlashKey,
}

/// A session's flash key; never printed.
#[derive(Clone)]
struct FlashKey([u8; 32]);

impl std::fmt::Debug for FlashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlashKey(…)")
    }
}

impl Session {
    /// Checks a submitted CSRF token against this session's (constant time).
    pub fn check_csrf(&self, presented: &str) -> Result<(), WebError> {
        if secret_eq(self.csrf.as_bytes(), presented.as_bytes()) {
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

    /// The SHA-256 of the session token (the `sessions` row's key).
    pub(super) fn token_hash(&self) -> &str {
        &self.token_hash
    }

    /// The key that seals this session's one-time messages.
    pub(super) fn flash_key(&self) -> &[u8; 32] {
        &self.flash_key.0
    }

    /// A session for unit tests, as a request with session token `token` would have it.
    #[cfg(test)]
    pub(super) fn for_tests(token: &str) -> Self {
        Self {
            account: AccountId(format!("acc_{token}")),
            email: format!("{token}@example.com"),
            csrf: "c_test".into(),
            token_hash: sha256_hex(token),
            flash_key: flash_key_of(token),
        }
    }

    /// Replaces this session with a fresh one of the same account (after a password change):
    /// a new session token and CSRF token, and every other session of the account ended, this
    /// one included, so a copy of the old cookie is worth nothing. Returns the new session,
    /// the `Set-Cookie` value that carries it, and how many sessions besides this one ended.
    pub async fn renew(&self, state: &AppState) -> Result<(Session, HeaderValue, u64), WebError> {
        let (token, csrf, token_hash) = open_new(state, &self.account).await?;
        let ended = sessions::close_others(state, &self.account, &token_hash).await?;
        let fresh = Session {
            account: self.account.clone(),
            email: self.email.clone(),
            csrf,
            token_hash,
            flash_key: flash_key_of(&token),
        };
        let cookie = Cookie::Session.set_for(state, &token, SESSION_TTL);
        Ok((fresh, cookie, ended.saturating_sub(1)))
    }
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

/// Rotor's two cookies. Their names depend on the scheme of the public URL, and only the name
/// for the current scheme is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cookie {
    /// The session token.
    Session,
    /// The pre-login CSRF token of the sign-up and login forms.
    LoginCsrf,
}

impl Cookie {
    /// The cookie's name over HTTPS (`secure`) or plain HTTP.
    pub fn name(self, secure: bool) -> &'static str {
        match (self, secure) {
            (Cookie::Session, false) => SESSION_COOKIE,
            (Cookie::Session, true) => SECURE_SESSION_COOKIE,
            (Cookie::LoginCsrf, false) => LOGIN_CSRF_COOKIE,
            (Cookie::LoginCsrf, true) => SECURE_LOGIN_CSRF_COOKIE,
        }
    }

    /// The `Set-Cookie` value: HttpOnly, `SameSite=Strict` (no cross-site request carries
    /// it, not even a top-level navigation), `Path=/`, and Secure over HTTPS (browsers refuse
    /// a `__Host-` cookie without it, and refuse Secure cookies from plain-HTTP pages).
    pub fn set(self, secure: bool, value: &str, max_age: Duration) -> HeaderValue {
        let v = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.name(secure),
            max_age.as_secs(),
            if secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&v).expect("cookie values are token characters")
    }

    /// The cookie's value in a request.
    pub fn get(self, state: &AppState, headers: &HeaderMap) -> Option<String> {
        cookie(headers, self.name(https(state))).map(str::to_owned)
    }

    /// Rotor's `Set-Cookie` value for this cookie under `state`'s public URL.
    pub fn set_for(self, state: &AppState, value: &str, max_age: Duration) -> HeaderValue {
        self.set(https(state), value, max_age)
    }
}

/// Whether the dashboard is served over HTTPS (from the public URL).
pub fn https(state: &AppState) -> bool {
    state
        .settings
        .public_url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// Starts a session for `account`; returns the `Set-Cookie` header value. Any session the
/// browser had before is replaced (no fixation: the id is always freshly generated here).
pub async fn start(state: &AppState, account: &AccountId) -> Result<HeaderValue, WebError> {
    let (token, _, _) = open_new(state, account).await?;
    Ok(Cookie::Session.set_for(state, &token, SESSION_TTL))
}

/// Stores a new session of `account`: its token, CSRF token and the token's stored hash.
async fn open_new(
    state: &AppState,
    account: &AccountId,
) -> Result<(String, String, String), WebError> {
    let token = random_token("s_");
    let csrf = random_token("c_");
    let token_hash = sha256_hex(&token);
    sessions::open(state, account, &token_hash, &csrf, SESSION_TTL).await?;
    Ok((token, csrf, token_hash))
}

/// The flash key of a session token: a hash of the token under its own label, so it differs
/// from the stored `token_hash` and cannot be derived from it.
fn flash_key_of(token: &str) -> FlashKey {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"rotor dashboard flash key v1\0");
    h.update(token.as_bytes());
    FlashKey(h.finalize().into())
}

/// Ends the session the request carries (if any); returns the cookie that clears it.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, WebError> {
    if let Some(token) = Cookie::Session.get(state, headers) {
        sessions::close(state, &sha256_hex(&token)).await?;
    }
    Ok(Cookie::Session.set_for(state, "", Duration::ZERO))
}

/// The session of a request, if it has a live one.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, WebError> {
    let Some(token) = Cookie::Session
        .get(state, headers)
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let token_hash = sha256_hex(&token);
    let found = sessions::find(state, &token_hash).await?;
    Ok(found.map(|stored| Session {
        account: stored.account,
        email: stored.email,
        csrf: stored.csrf,
        token_hash,
        flash_key: flash_key_of(&token),
    }))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = WebError;

    /// Looked up once per request: the extractors that need it ([`super::extract`]) find it
    /// in the request's extensions after the first.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(s) = parts.extensions.get::<Session>() {
            return Ok(s.clone());
        }
        match current(state, &parts.headers).await? {
            Some(s) => {
                crate::rest::charge_write(parts, state, &s.account)?;
                parts.extensions.insert(s.clone());
                Ok(s)
            }
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
    match Cookie::LoginCsrf
        .get(state, headers)
        .filter(|v| v.len() >= 16)
    {
        Some(v) => (v, None),
        None => {
            let v = random_token("l_");
            let c = Cookie::LoginCsrf.set_for(state, &v, Duration::from_secs(3600));
            (v, Some(c))
        }
    }
}

/// Checks a sign-up or login form's CSRF field against its cookie.
pub fn check_login_csrf(
    state: &AppState,
    headers: &HeaderMap,
    presented: &str,
) -> Result<(), WebError> {
    let expected = Cookie::LoginCsrf.get(state, headers).unwrap_or_default();
    if expected.len() >= 16 && secret_eq(expected.as_bytes(), presented.as_bytes()) {
        Ok(())
    } else {
        tracing::info!("login form refused: bad CSRF token");
        Err(WebError::Csrf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn cookies_over_https_are_host_prefixed_secure_and_strict() {
        let day = Duration::from_secs(86400);
        assert_eq!(
            Cookie::Session.set(true, "s_abc", day),
            "__Host-rotor_session=s_abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=86400; Secure"
        );
        assert_eq!(
            Cookie::LoginCsrf.set(true, "l_abc", day),
            "__Host-rotor_login_csrf=l_abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=86400; Secure"
        );
        assert_eq!(
            Cookie::Session.set(true, "", Duration::ZERO),
            "__Host-rotor_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        );
    }

    #[test]
    fn cookies_over_plain_http_keep_their_name_and_are_strict_but_not_secure() {
        let day = Duration::from_secs(86400);
        assert_eq!(
            Cookie::Session.set(false, "s_abc", day),
            "rotor_session=s_abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=86400"
        );
        assert_eq!(
            Cookie::LoginCsrf.set(false, "l_abc", day),
            "rotor_login_csrf=l_abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=86400"
        );
    }
}
