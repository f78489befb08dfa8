//! The keys page: server API keys (shown once at creation, then by their first characters;
//! each with its scope and when it was last used, as the tenant reports it), revoked after a
//! confirmation page, and the token secret (revealed on demand, rotated after confirmation).
//! Every change answers with a redirect; what it has to say is a [`Flash`] for the page it
//! lands on.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::flash::{self, Flash, Shown};
use super::projects::head;
use super::session::Session;
use super::views::{when, when_opt, KeyRow, KeysPage, Layout, ProjectHead, RevokeKeyPage};
use super::{page, words, WebError, WebResult};
use crate::ids::ProjectId;
use crate::rest::projects::{
    api_keys_of, create_api_key, revoke_api_key, rotate_hmac_secret, KeyInfo,
};
use crate::rest::RestError;
use crate::state::AppState;

/// What a key may do, in words.
fn scope_words(scope: &str) -> &'static str {
    match scope {
        "publish" => "Publish only",
        _ => "All methods",
    }
}

fn key_row(k: KeyInfo) -> KeyRow {
    KeyRow {
        id: k.id.0,
        name: k.name,
        prefix: if k.prefix.is_empty() {
            "(created before prefixes were kept)".into()
        } else {
            format!("{}…", k.prefix)
        },
        scope: scope_words(&k.scope),
        created: when(&k.created_at),
        last_used: when_opt(&k.last_used_at),
    }
}

async fn keys_view(state: &AppState, session: &Session, p: ProjectHead) -> WebResult<KeysPage> {
    let project = ProjectId(p.id.clone());
    let keys = api_keys_of(state, &project).await?;
    let rotated: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT rotated_at FROM token_secrets WHERE project_id = $1")
            .bind(&p.id)
            .fetch_optional(&state.pool)
            .await?
            .flatten();
    Ok(KeysPage {
        layout: Layout::of(session),
        tab: "keys",
        keys: keys.into_iter().map(key_row).collect(),
        new_key: None,
        secret: None,
        rotated_at: when_opt(&rotated),
        form_name: String::new(),
        form_scope: "all".into(),
        error: None,
        notice: None,
        p,
    })
}

/// The address of a project's keys page.
fn keys_path(p: &ProjectHead) -> String {
    format!("/projects/{}/keys", p.id)
}

/// The keys page, with what the last action left for it: a new key or the token secret shown
/// once, a notice, or an error and what was typed.
pub async fn keys(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> WebResult<Response> {
    let p = head(&state, &session, &id).await?;
    let left = flash::take(&state, &session, &keys_path(&p)).await?;
    let shown = Shown::from(left.as_ref());
    let project = ProjectId(p.id.clone());
    let mut v = keys_view(&state, &session, p).await?;
    match left {
        Some(Flash::NewApiKey { name, key }) => v.new_key = Some((name, key)),
        Some(Flash::TokenSecret { .. }) => {
            v.secret = Some(
                crate::secret_store::token_secret_of(&state.pool, &project)
                    .await
                    .map_err(RestError::from)?,
            );
        }
        _ => {}
    }
    v.notice = shown.notice;
    v.error = shown.error;
    // What was typed: "<scope> <name>" (see `create_key`).
    if let Some((scope, name)) = shown.typed.split_once(' ') {
        v.form_scope = scope.to_owned();
        v.form_name = name.to_owned();
    }
    Ok(page(v.render()?))
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<KeyForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    let project = ProjectId(p.id.clone());
    let scope = if form.scope == "publish" {
        "publish"
    } else {
        "all"
    };
    let left =
        match create_api_key(&state, &session.account, &project, &form.name, Some(scope)).await {
            Ok(created) => Flash::NewApiKey {
                name: created["name"].as_str().unwrap_or_default().to_owned(),
                key: created["key"].as_str().unwrap_or_default().to_owned(),
            },
            Err(
                RestError::BadRequest { message, .. }
                | RestError::PlanLimit(message)
                | RestError::Conflict(message),
            ) => {
                let mut text = words::humanize(&message);
                if let Some(first) = text.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                Flash::error(text, format!("{scope} {}", form.name))
            }
            Err(e) => return Err(e.into()),
        };
    flash::redirect(&state, &session, &keys_path(&p), left).await
}

/// The key `key_id` of project `p`, or 404.
async fn key_of(state: &AppState, p: &ProjectHead, key_id: &str) -> WebResult<KeyInfo> {
    api_keys_of(state, &ProjectId(p.id.clone()))
        .await?
        .into_iter()
        .find(|k| k.id.as_str() == key_id)
        .ok_or(WebError::NotFound)
}

/// The confirmation page before a key is revoked.
pub async fn revoke_confirm(
    State(state): State<AppState>,
    session: Session,
    Path((id, key_id)): Path<(String, String)>,
) -> WebResult<Response> {
    let p = head(&state, &session, &id).await?;
    let key = key_row(key_of(&state, &p, &key_id).await?);
    let view = RevokeKeyPage {
        layout: Layout::of(&session),
        tab: "keys",
        key,
        p,
    };
    Ok(page(view.render()?))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

pub async fn revoke_key(
    State(state): State<AppState>,
    session: Session,
    Path((id, key_id)): Path<(String, String)>,
    Form(form): Form<RevokeForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    let key = key_of(&state, &p, &key_id).await?;
    if form.confirm != "yes" {
        // Not from the confirmation page: show it.
        let location = format!("{}/{}/revoke", keys_path(&p), key.id);
        return Ok(axum::response::IntoResponse::into_response(
            axum::response::Redirect::to(&location),
        ));
    }
    revoke_api_key(&state, &session.account, &ProjectId(p.id.clone()), &key_id).await?;
    let notice = Flash::notice(format!(
        "Key revoked: requests using “{}” are refused from now on.",
        key.name
    ));
    flash::redirect(&state, &session, &keys_path(&p), notice).await
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn reveal_secret(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    let location = format!("{}#token-secret", keys_path(&p));
    flash::redirect(
        &state,
        &session,
        &location,
        Flash::TokenSecret { notice: None },
    )
    .await
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    grace: String,
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RotateForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    let location = format!("{}#token-secret", keys_path(&p));
    if form.confirm.is_none() {
        let error = Flash::error(
            "The secret was not rotated: tick the confirmation box to rotate it.",
            "",
        );
        return flash::redirect(&state, &session, &location, error).await;
    }
    let grace: u32 = match form.grace.trim() {
        "" | "0" => 0,
        "1h" => 3600,
        "24h" => 86_400,
        _ => {
            let error = Flash::error(
                "The secret was not rotated: choose a grace period from the list.",
                "",
            );
            return flash::redirect(&state, &session, &location, error).await;
        }
    };
    rotate_hmac_secret(&state, &session.account, &ProjectId(p.id.clone()), grace).await?;
    tracing::info!(account = %session.account, project = %p.id, grace, "token secret rotated from the dashboard");
    let notice = if grace > 0 {
        "Secret rotated. Tokens signed with the old secret keep working during the grace period."
    } else {
        "Secret rotated. Tokens signed with the old secret no longer work."
    };
    let left = Flash::TokenSecret {
        notice: Some(notice.into()),
    };
    flash::redirect(&state, &session, &location, left).await
}
