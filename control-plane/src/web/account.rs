//! The account page: change the password (which ends every other session) and manage the
//! management tokens used by Terraform and CI (created and shown once, listed, revoked).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::session::Session;
use super::views::{when, when_opt, AccountPage, Layout, TokenRow};
use super::{page, WebResult};
use crate::rest::accounts::{
    authenticate, check_password, issue_token, revoke_token as revoke, tokens_of,
};
use crate::rest::RestError;
use crate::secrets::hash_password;
use crate::state::AppState;

async fn view(state: &AppState, session: &Session) -> WebResult<AccountPage> {
    let tokens = tokens_of(state, &session.account)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id.to_string(),
            name: t.name,
            created: when(&t.created_at),
            last_used: when_opt(&t.last_used_at),
        })
        .collect();
    Ok(AccountPage {
        layout: Layout::of(session),
        tokens,
        new_token: None,
        token_name: String::new(),
        token_error: None,
        password_error: None,
        password_notice: None,
    })
}

fn respond(status: StatusCode, v: AccountPage) -> WebResult<Response> {
    let mut resp = page(v.render()?);
    *resp.status_mut() = status;
    Ok(resp)
}

pub async fn show(State(state): State<AppState>, session: Session) -> WebResult<Response> {
    respond(StatusCode::OK, view(&state, &session).await?)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<PasswordForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let mut v = view(&state, &session).await?;
    let problem = if authenticate(&state, &session.email, &form.current)
        .await
        .is_err()
    {
        Some("Your current password is not right.".to_owned())
    } else if form.new != form.confirm {
        Some("The new passwords do not match.".to_owned())
    } else if let Err(RestError::BadRequest { message, .. }) = check_password(&form.new) {
        Some(message)
    } else if form.new == form.current {
        Some("The new password must differ from the current one.".to_owned())
    } else {
        None
    };
    if let Some(p) = problem {
        v.password_error = Some(p);
        return respond(StatusCode::UNPROCESSABLE_ENTITY, v);
    }
    let hash = hash_password(&form.new).map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1")
        .bind(&session.account)
        .bind(hash)
        .execute(&state.pool)
        .await?;
    let ended = session.end_others(&state).await?;
    tracing::info!(account = %session.account, other_sessions_ended = ended, "password changed");
    v.password_notice = Some(if ended > 0 {
        format!("Password changed. {ended} other session(s) were logged out.")
    } else {
        "Password changed.".to_owned()
    });
    respond(StatusCode::OK, v)
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<TokenForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    match issue_token(&state, &session.account, &form.name).await {
        Ok((_, name, token)) => {
            let mut v = view(&state, &session).await?;
            v.new_token = Some((name, token));
            respond(StatusCode::CREATED, v)
        }
        Err(RestError::BadRequest { message, .. }) => {
            let mut v = view(&state, &session).await?;
            v.token_error = Some(message);
            v.token_name = form.name;
            respond(StatusCode::UNPROCESSABLE_ENTITY, v)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn revoke_token(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    revoke(&state, &session.account, &id).await?;
    tracing::info!(account = %session.account, token = %id, "management token revoked");
    Ok(Redirect::to("/account#tokens").into_response())
}
