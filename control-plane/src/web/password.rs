//! "Forgot password?": the form that asks for a reset link (the same answer whatever the
//! address, counted per email and per client address like logins), the page it redirects to,
//! and the page a link opens, where a new password is chosen under the sign-up rules. The
//! work behind them is [`crate::password_reset`]; these pages never show or log a token.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::auth::{cross_site, login_page, reload_same_site};
use super::session::check_login_csrf;
use super::views::{Layout, PasswordPage};
use super::WebResult;
use crate::auth_limits::{retry_after_secs, ClientAddr, LimitError};
use crate::password_reset::{self, LINK_TTL};
use crate::secrets::{hash_password_async, password_check_admissible};
use crate::service::accounts::{check_password, normalise_email};
use crate::service::ServiceError;
use crate::state::AppState;

/// Where a link request lands, whatever the address.
const SENT: &str = "/password/forgot/sent";

fn blank(mode: &'static str) -> PasswordPage {
    PasswordPage {
        layout: Layout::anonymous(),
        mode,
        form_csrf: String::new(),
        email: String::new(),
        token: String::new(),
        error: None,
        error_field: String::new(),
        minutes: LINK_TTL.as_secs() / 60,
    }
}

/// The page with the pre-login CSRF token (and its cookie when the browser had none).
fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    mut view: PasswordPage,
) -> WebResult<Response> {
    login_page(state, headers, status, |csrf| {
        view.form_csrf = csrf;
        view.render()
    })
}

/// `GET /password/forgot`.
pub async fn forgot_form(State(state): State<AppState>, headers: HeaderMap) -> WebResult<Response> {
    render(&state, &headers, StatusCode::OK, blank("forgot"))
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// `POST /password/forgot`: a malformed address is said so; otherwise the request is counted
/// and queued, and the answer is the same redirect whether or not an account has the address.
pub async fn forgot(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddr(client): ClientAddr,
    Form(form): Form<ForgotForm>,
) -> WebResult<Response> {
    check_login_csrf(&state, &headers, &form.csrf)?;
    let mut view = blank("forgot");
    view.email = form.email.clone();
    let Ok(email) = normalise_email(&form.email) else {
        view.error = Some("Enter the email address of your account.".into());
        view.error_field = "email".into();
        return render(&state, &headers, StatusCode::UNPROCESSABLE_ENTITY, view);
    };
    match state.auth_limits.begin_reset(&email, client).await {
        Ok(()) => {}
        Err(LimitError::Wait(wait)) => {
            tracing::warn!("password reset refused: too many requests for this email or address");
            view.error = Some(format!(
                "Too many reset links were asked for. Try again in {} minutes.",
                wait.as_secs().div_ceil(60).max(1)
            ));
            let mut resp = render(&state, &headers, StatusCode::TOO_MANY_REQUESTS, view)?;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs(wait).into());
            return Ok(resp);
        }
        Err(LimitError::Db(e)) => {
            tracing::error!(error = %e, "reset counters unavailable: refusing");
            view.error = Some("Rotor is very busy right now. Try again in a moment.".into());
            let mut resp = render(&state, &headers, StatusCode::SERVICE_UNAVAILABLE, view)?;
            resp.headers_mut().insert(header::RETRY_AFTER, 1.into());
            return Ok(resp);
        }
    }
    state.resets.request(email);
    Ok(Redirect::to(SENT).into_response())
}

/// `GET /password/forgot/sent`.
pub async fn sent(State(state): State<AppState>, headers: HeaderMap) -> WebResult<Response> {
    render(&state, &headers, StatusCode::OK, blank("sent"))
}

/// The page for a link that does not work (unknown, used, or past its time).
fn invalid(state: &AppState, headers: &HeaderMap) -> WebResult<Response> {
    render(state, headers, StatusCode::GONE, blank("invalid"))
}

/// `GET /password/reset/{token}`: the new-password form, for a live token. Opened from a
/// mail client (another site) the page first reloads itself, so the form's cookie is sent.
pub async fn reset_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> WebResult<Response> {
    if cross_site(&headers) {
        return Ok(reload_same_site());
    }
    let Some((_, email)) = password_reset::account_of(&state.pool, &token)
        .await
        .map_err(anyhow::Error::from)?
    else {
        return invalid(&state, &headers);
    };
    let mut view = blank("reset");
    view.email = email;
    view.token = token;
    render(&state, &headers, StatusCode::OK, view)
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    /// "Also revoke all API management tokens" (ticked by default).
    #[serde(default)]
    revoke_tokens: Option<String>,
}

/// `POST /password/reset/{token}`: sets the new password (the token is used up only then),
/// logs out every session, and sends the owner to the login page.
pub async fn reset(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<ResetForm>,
) -> WebResult<Response> {
    check_login_csrf(&state, &headers, &form.csrf)?;
    let Some((_, email)) = password_reset::account_of(&state.pool, &token)
        .await
        .map_err(anyhow::Error::from)?
    else {
        return invalid(&state, &headers);
    };
    let mut view = blank("reset");
    view.email = email;
    view.token = token.clone();
    let problem =
        if let Err(ServiceError::BadRequest { message, .. }) = check_password(&form.password) {
            Some((format!("{}.", capitalised(&message)), "password"))
        } else if form.password != form.confirm {
            Some(("The two passwords do not match.".to_owned(), "confirm"))
        } else {
            None
        };
    if let Some((message, field)) = problem {
        view.error = Some(message);
        view.error_field = field.into();
        return render(&state, &headers, StatusCode::UNPROCESSABLE_ENTITY, view);
    }
    let hash = if password_check_admissible() {
        hash_password_async(&form.password).await.ok()
    } else {
        None
    };
    let Some(hash) = hash else {
        view.error = Some("Rotor is very busy right now. Try again in a moment.".into());
        let mut resp = render(&state, &headers, StatusCode::SERVICE_UNAVAILABLE, view)?;
        resp.headers_mut().insert(header::RETRY_AFTER, 1.into());
        return Ok(resp);
    };
    let done = password_reset::complete(&state.pool, &token, &hash, form.revoke_tokens.is_some())
        .await
        .map_err(anyhow::Error::from)?;
    let Some(done) = done else {
        return invalid(&state, &headers);
    };
    state.auth_limits.forget_login_failures(&done.email).await;
    tracing::info!(
        account = %done.account,
        sessions_ended = done.sessions_ended,
        tokens_revoked = done.tokens_revoked,
        "password reset with a mailed link"
    );
    Ok(Redirect::to("/login?reset=done").into_response())
}

/// `message` with its first letter in upper case.
fn capitalised(message: &str) -> String {
    let mut s = message.to_owned();
    if let Some(first) = s.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    s
}
