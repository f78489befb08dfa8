//! The account page: change the password (which replaces the current session with a fresh
//! one, ends every other and, unless unticked, revokes every management token) and manage the management tokens used by
//! Terraform and CI (created with an optional expiry and shown once, listed, revoked after a
//! confirmation page). Changes
//! answer with a redirect to the page; a new token waits there as a [`Flash`], shown once.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use super::extract::CsrfForm;
use super::flash::{self, Flash};
use super::session::Session;
use super::views::{when, when_opt, AccountPage, Layout, RevokeTokenPage, TokenRow};
use super::{page, WebError, WebResult};
use crate::auth_limits::{retry_after_secs, ClientAddr};
use crate::service::accounts::{
    change_password as change, check_token_days, issue_token, revoke_token as revoke, tokens_of,
    PasswordChange, TokenInfo,
};
use crate::service::ServiceError;
use crate::state::AppState;

fn token_row(t: TokenInfo) -> TokenRow {
    TokenRow {
        id: t.id.to_string(),
        name: t.name,
        created: when(&t.created_at),
        last_used: when_opt(&t.last_used_at),
        expires: match t.expires_at {
            None => "no expiry".to_owned(),
            Some(at) if at <= Utc::now() => format!("expired {}", when(&at)),
            Some(at) => when(&at),
        },
    }
}

async fn view(state: &AppState, session: &Session) -> WebResult<AccountPage> {
    let tokens = tokens_of(state, &session.account)
        .await?
        .into_iter()
        .map(token_row)
        .collect();
    Ok(AccountPage {
        layout: Layout::of(session),
        tokens,
        new_token: None,
        token_name: String::new(),
        token_error: None,
        password_error: None,
        notice: None,
    })
}

fn respond(status: StatusCode, v: AccountPage) -> WebResult<Response> {
    let mut resp = page(v.render()?);
    *resp.status_mut() = status;
    Ok(resp)
}

/// The account page's address.
const PAGE: &str = "/account";

pub async fn show(State(state): State<AppState>, session: Session) -> WebResult<Response> {
    let left = flash::take(&state, &session, PAGE).await?;
    let mut v = view(&state, &session).await?;
    match left {
        Some(Flash::NewToken { name, token }) => v.new_token = Some((name, token)),
        Some(Flash::Error { text, typed }) => {
            v.token_error = Some(text);
            v.token_name = typed;
        }
        Some(Flash::Notice { text }) => v.notice = Some(text),
        _ => {}
    }
    respond(StatusCode::OK, v)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
    /// The "also revoke all API management tokens" checkbox (ticked by default; an HTML
    /// checkbox sends nothing when unticked).
    #[serde(default)]
    revoke_tokens: Option<String>,
}

/// A password form refused: the page again with the reason (and when to retry, if limited).
fn password_refused(mut v: AccountPage, error: ServiceError) -> WebResult<Response> {
    let (status, message, retry_after) = match error {
        ServiceError::Unauthorized(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Your current password is not right.".to_owned(),
            None,
        ),
        ServiceError::BadRequest { message, .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, message, None)
        }
        ServiceError::TooManyRequests { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed attempts. Try again in {} minutes.",
                retry_after.as_secs().div_ceil(60).max(1)
            ),
            Some(retry_after_secs(retry_after)),
        ),
        ServiceError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Rotor is very busy right now. Try again in a moment.".to_owned(),
            Some(1),
        ),
        other => return Err(other.into()),
    };
    v.password_error = Some(message);
    let mut resp = respond(status, v)?;
    if let Some(secs) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    Ok(resp)
}

pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    ClientAddr(client): ClientAddr,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> WebResult<Response> {
    let v = view(&state, &session).await?;
    let request = PasswordChange {
        current: form.current,
        new: form.new,
        confirm: form.confirm,
        revoke_tokens: form.revoke_tokens.is_some(),
    };
    // The current password is checked under the same limits as a login: a stolen session
    // cannot be used to guess it.
    let revoked = match change(&state, &session.account, &session.email, &request, client).await {
        Ok(revoked) => revoked,
        Err(e) => return password_refused(v, e),
    };
    // The session that changed the password is replaced too: whoever else holds its cookie
    // is logged out with the others.
    let (session, cookie, ended) = session.renew(&state).await?;
    tracing::info!(
        account = %session.account,
        other_sessions_ended = ended,
        tokens_revoked = revoked,
        "password changed"
    );
    let mut notice = "Password changed.".to_owned();
    if ended > 0 {
        notice.push_str(&format!(" {ended} other session(s) were logged out."));
    }
    if revoked > 0 {
        notice.push_str(&format!(" {revoked} management token(s) were revoked."));
    }
    let mut resp = flash::redirect(&state, &session, PAGE, Flash::notice(notice)).await?;
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    /// Days until the token expires; empty: never.
    #[serde(default)]
    expires_in_days: String,
}

/// The token form's expiry: empty is "never", else days as the REST API takes them.
fn form_days(value: &str) -> Result<Option<i64>, ServiceError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    check_token_days(value.parse().unwrap_or(0)).map(Some)
}

pub async fn create_token(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> WebResult<Response> {
    let issued = match form_days(&form.expires_in_days) {
        Ok(days) => issue_token(&state, &session.account, &form.name, days).await,
        Err(e) => Err(e),
    };
    let left = match issued {
        Ok(t) => Flash::NewToken {
            name: t.name,
            token: t.token,
        },
        Err(e) => Flash::error(super::refusal(e)?.text, form.name),
    };
    flash::redirect(&state, &session, "/account#tokens", left).await
}

/// The confirmation page before a management token is revoked.
pub async fn revoke_confirm(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> WebResult<Response> {
    let token = tokens_of(&state, &session.account)
        .await?
        .into_iter()
        .find(|t| t.id.as_str() == id)
        .ok_or(WebError::NotFound)?;
    let view = RevokeTokenPage {
        layout: Layout::of(&session),
        token: token_row(token),
    };
    Ok(page(view.render()?))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    confirm: String,
}

/// Revokes a token when the form comes from its confirmation page (`confirm=yes`); any other
/// form is sent to that page first.
pub async fn revoke_token(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RevokeForm>,
) -> WebResult<Response> {
    if form.confirm != "yes" {
        let exists = tokens_of(&state, &session.account)
            .await?
            .iter()
            .any(|t| t.id.as_str() == id);
        if !exists {
            return Err(WebError::NotFound);
        }
        let location = format!("/account/tokens/{}/revoke", super::urlencode(&id));
        return Ok(axum::response::IntoResponse::into_response(
            axum::response::Redirect::to(&location),
        ));
    }
    revoke(&state, &session.account, &id).await?;
    tracing::info!(account = %session.account, token = %id, "management token revoked");
    let notice = Flash::notice("Token revoked. Requests using it are refused from now on.");
    flash::redirect(&state, &session, "/account#tokens", notice).await
}
