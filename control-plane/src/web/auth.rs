//! Sign up, log in and log out (the front page for visitors is [`super::front`], "Forgot
//! password?" is [`super::password`]). Errors are shown inline and keep the email typed; an unknown
//! email and a wrong password get the same answer; failed logins and sign-ups are limited by
//! the same code as the REST API's ([`crate::service::accounts::authenticate`], [`sign_up`]);
//! after login only a same-site path is followed.

use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::uri::PathAndQuery;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::extract::{CsrfForm, NoFields};
use super::session::{self, check_login_csrf, login_csrf};
use super::views::{AuthPage, Layout};
use super::{page, WebResult};
use crate::auth_limits::{retry_after_secs, ClientAddr};
use crate::service::accounts::{authenticate, sign_up};
use crate::service::ServiceError;
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
    /// `done` after a password reset: the page says so.
    #[serde(default)]
    reset: String,
}

/// Where a login goes when `next` is missing or refused.
const HOME: &str = "/projects";

/// `next` as a normalised same-site path (with its query), or `None` when it is not one.
/// Refused: anything that does not start with a single `/` (schemes, `//host`, `/\host`),
/// control characters and backslashes, raw or percent-encoded (browsers drop tabs and newlines
/// and read `\` as `/`, so `/\t/evil.example` is `//evil.example` to them), dot segments, and
/// anything that percent-decodes (up to three times) into one of these.
fn safe_next(next: &str) -> Option<String> {
    if next.len() > 2048 {
        return None;
    }
    let mut layer = next.as_bytes().to_vec();
    let mut settled = false;
    for _ in 0..4 {
        if !plain_path(&layer) {
            return None;
        }
        let decoded = crate::percent::decode(&layer);
        if decoded == layer {
            settled = true;
            break;
        }
        layer = decoded;
    }
    if !settled {
        return None;
    }
    let parsed: PathAndQuery = next.parse().ok()?;
    Some(parsed.as_str().to_owned())
}

/// A path (and query) with one leading `/`, no control character, no backslash and no dot
/// segment.
fn plain_path(p: &[u8]) -> bool {
    let path = p
        .split(|b| *b == b'?' || *b == b'#')
        .next()
        .unwrap_or_default();
    p.first() == Some(&b'/')
        && p.get(1) != Some(&b'/')
        && !p.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\')
        && !path
            .split(|b| *b == b'/')
            .any(|seg| seg == b"." || seg == b"..")
}

/// Where to go after login.
fn after_login(next: &str) -> String {
    safe_next(next).unwrap_or_else(|| HOME.to_owned())
}

/// A page that reloads itself. With `SameSite=Strict` a navigation from another site arrives
/// without the session cookie; this reload comes from Rotor's own page, so it carries it and
/// a logged-in user goes on to where the link pointed instead of seeing the login form.
pub(super) fn reload_same_site() -> Response {
    page(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0\"><title>Rotor</title></head>\
         <body><p><a href=\"\">Continue to Rotor</a></p></body></html>"
            .to_owned(),
    )
}

pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
}

fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    mut view: AuthPage,
) -> WebResult<Response> {
    login_page(state, headers, status, |csrf| {
        view.form_csrf = csrf;
        view.render()
    })
}

/// A page shown before login, answered with `status`: `render` gets the pre-login CSRF token,
/// whose cookie is set when the browser had none.
pub(super) fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    render: impl FnOnce(String) -> askama::Result<String>,
) -> WebResult<Response> {
    let (csrf, cookie) = login_csrf(state, headers);
    let mut resp = page(render(csrf)?);
    *resp.status_mut() = status;
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

fn blank(signup: bool, next: String) -> AuthPage {
    AuthPage {
        layout: Layout::anonymous(),
        signup,
        form_csrf: String::new(),
        email: String::new(),
        error: None,
        error_field: String::new(),
        next,
        notice: None,
    }
}

pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> WebResult<Response> {
    if session::current(&state, &headers).await?.is_some() {
        return Ok(Redirect::to(&after_login(&q.next)).into_response());
    }
    if cross_site(&headers) {
        return Ok(reload_same_site());
    }
    let next = safe_next(&q.next).unwrap_or_default();
    let mut view = blank(false, next);
    if q.reset == "done" {
        view.notice = Some(
            "Your password was changed and every session was logged out. Log in with the new password."
                .into(),
        );
    }
    render(&state, &headers, StatusCode::OK, view)
}

pub async fn signup_form(State(state): State<AppState>, headers: HeaderMap) -> WebResult<Response> {
    if session::current(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/projects").into_response());
    }
    render(&state, &headers, StatusCode::OK, blank(true, String::new()))
}

#[derive(Deserialize)]
pub struct AuthForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// Logs in with a fresh session and goes where the user was headed.
async fn logged_in(
    state: &AppState,
    account: &crate::ids::AccountId,
    next: &str,
) -> WebResult<Response> {
    let cookie = session::start(state, account).await?;
    let mut resp = Redirect::to(&after_login(next)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// The auth page again with an error for a refused attempt (`TooManyRequests` and `Busy`
/// also tell the browser when to come back); errors that are not the visitor's pass through.
fn refused(
    state: &AppState,
    headers: &HeaderMap,
    mut view: AuthPage,
    error: ServiceError,
) -> WebResult<Response> {
    let (status, message, field, retry_after) = match error {
        ServiceError::BadRequest { field, message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            field.unwrap_or_default(),
            None,
        ),
        ServiceError::Conflict(_) => (
            StatusCode::CONFLICT,
            "An account with this email already exists. Log in instead?".to_owned(),
            "email".to_owned(),
            None,
        ),
        ServiceError::Unauthorized(_) => (
            StatusCode::UNAUTHORIZED,
            "Wrong email or password.".to_owned(),
            "password".to_owned(),
            None,
        ),
        ServiceError::TooManyRequests { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            if view.signup {
                format!(
                    "Too many accounts were opened from your network. Try again in {} minutes.",
                    retry_after.as_secs().div_ceil(60).max(1)
                )
            } else {
                format!(
                    "Too many failed attempts. Try again in {} minutes.",
                    retry_after.as_secs().div_ceil(60).max(1)
                )
            },
            String::new(),
            Some(retry_after),
        ),
        ServiceError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Rotor is very busy right now. Try again in a moment.".to_owned(),
            String::new(),
            Some(Duration::from_secs(1)),
        ),
        other => return Err(other.into()),
    };
    view.error = Some(message);
    view.error_field = field;
    let mut resp = render(state, headers, status, view)?;
    if let Some(wait) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, retry_after_secs(wait).into());
    }
    Ok(resp)
}

pub async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddr(client): ClientAddr,
    Form(form): Form<AuthForm>,
) -> WebResult<Response> {
    check_login_csrf(&state, &headers, &form.csrf)?;
    match sign_up(&state, &form.email, &form.password, client).await {
        Ok((account, _)) => {
            tracing::info!(account = %account, "account created from the dashboard");
            logged_in(&state, &account, HOME).await
        }
        Err(e) => {
            let mut view = blank(true, String::new());
            view.email = form.email;
            refused(&state, &headers, view, e)
        }
    }
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddr(client): ClientAddr,
    Form(form): Form<AuthForm>,
) -> WebResult<Response> {
    check_login_csrf(&state, &headers, &form.csrf)?;
    match authenticate(&state, &form.email, &form.password, client).await {
        Ok(account) => logged_in(&state, &account, &form.next).await,
        Err(e) => {
            if matches!(e, ServiceError::Unauthorized(_)) {
                tracing::info!("dashboard login failed");
            }
            let mut view = blank(false, safe_next(&form.next).unwrap_or_default());
            view.email = form.email;
            refused(&state, &headers, view, e)
        }
    }
}

/// Ends the session (a POST with the session's CSRF token; without a session, the login page).
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    CsrfForm(_): CsrfForm<NoFields>,
) -> WebResult<Response> {
    let cookie = session::end(&state, &headers).await?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_same_site_path_or_nothing() {
        for bad in [
            "/%09/evil.example",
            "/\t/evil.example",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/%2F%2Fevil.example",
            "/%25%32%46%25%32%46evil.example",
            "/%5c/evil.example",
            "/%0d%0aLocation:%20x",
            "/a/%2e%2e/%2e%2e//evil.example",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(
            safe_next("/projects/prj_x?tab=keys").as_deref(),
            Some("/projects/prj_x?tab=keys")
        );
        assert_eq!(
            safe_next("/projects?q=a%20b").as_deref(),
            Some("/projects?q=a%20b")
        );
    }
}
