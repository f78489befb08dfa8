//! Sign up, log in and log out. Errors are shown inline and keep the email typed; an unknown
//! email and a wrong password get the same answer; failed logins are rate-limited per email
//! and per client address.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::session::{self, check_login_csrf, login_csrf, PeerAddr};
use super::views::{AuthPage, Layout};
use super::{page, WebError, WebResult};
use crate::rest::accounts::{authenticate, create_account};
use crate::rest::RestError;
use crate::state::AppState;

/// `/`: the projects for a logged-in user, the login page otherwise.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> WebResult<Redirect> {
    Ok(match session::current(&state, &headers).await? {
        Some(_) => Redirect::to("/projects"),
        None => Redirect::to("/login"),
    })
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Only same-site paths are followed after login (no open redirect).
fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        "/projects".to_owned()
    }
}

fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    mut view: AuthPage,
) -> WebResult<Response> {
    let (csrf, cookie) = login_csrf(state, headers);
    view.form_csrf = csrf;
    let mut resp = page(view.render()?);
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
        return Ok(Redirect::to(&safe_next(&q.next)).into_response());
    }
    render(&state, &headers, StatusCode::OK, blank(false, q.next))
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
    let mut resp = Redirect::to(&safe_next(next)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

pub async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AuthForm>,
) -> WebResult<Response> {
    check_login_csrf(&headers, &form.csrf)?;
    match create_account(&state, &form.email, &form.password).await {
        Ok((account, email)) => {
            tracing::info!(account = %account, "account created from the dashboard");
            state.login_limiter.succeeded(&email);
            logged_in(&state, &account, "/projects").await
        }
        Err(RestError::BadRequest { field, message }) => {
            let mut view = blank(true, String::new());
            view.email = form.email;
            view.error = Some(message);
            view.error_field = field.unwrap_or_default();
            render(&state, &headers, StatusCode::UNPROCESSABLE_ENTITY, view)
        }
        Err(RestError::Conflict(_)) => {
            let mut view = blank(true, String::new());
            view.email = form.email;
            view.error = Some("An account with this email already exists. Log in instead?".into());
            view.error_field = "email".into();
            render(&state, &headers, StatusCode::CONFLICT, view)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<PeerAddr>>,
    Form(form): Form<AuthForm>,
) -> WebResult<Response> {
    check_login_csrf(&headers, &form.csrf)?;
    let ip = peer.map(|Extension(PeerAddr(a))| a.ip());
    let mut view = blank(false, form.next.clone());
    view.email = form.email.clone();
    if let Some(wait) = state.login_limiter.blocked(&form.email, ip) {
        tracing::warn!("login refused: too many failed attempts");
        view.error = Some(format!(
            "Too many failed attempts. Try again in {} minutes.",
            wait.as_secs().div_ceil(60)
        ));
        return render(&state, &headers, StatusCode::TOO_MANY_REQUESTS, view);
    }
    match authenticate(&state, &form.email, &form.password).await {
        Ok(account) => {
            state.login_limiter.succeeded(&form.email);
            logged_in(&state, &account, &form.next).await
        }
        Err(RestError::Unauthorized(_)) => {
            state.login_limiter.failed(&form.email, ip);
            tracing::info!("dashboard login failed");
            view.error = Some("Wrong email or password.".into());
            view.error_field = "password".into();
            render(&state, &headers, StatusCode::UNAUTHORIZED, view)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> WebResult<Response> {
    if let Some(s) = session::current(&state, &headers).await? {
        s.check_csrf(&form.csrf)?;
    } else {
        return Err(WebError::LoginRequired {
            next: String::new(),
        });
    }
    let cookie = session::end(&state, &headers).await?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}
