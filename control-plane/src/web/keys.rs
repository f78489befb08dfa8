//! The keys page: server API keys (shown once at creation, then by their first characters;
//! each with its scope and when it was last used, as the tenant reports it), revoked after a
//! confirmation page, and the token secret (revealed on demand, rotated after confirmation),
//! over [`crate::service::keys`]. Every change answers with a redirect; what it has to say is
//! a [`Flash`] for the page it lands on.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::extract::{CsrfForm, NoFields, OwnedProject};
use super::flash::{self, Flash, Shown};
use super::session::Session;
use super::views::{when, when_opt, KeyRow, KeysPage, Layout, ProjectHead, RevokeKeyPage};
use super::{page, refusal, WebResult};
use crate::service::keys::{self, KeyInfo, NewKey};
use crate::service::ProjectScope;
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

async fn keys_view(
    state: &AppState,
    session: &Session,
    scope: &ProjectScope,
    p: ProjectHead,
) -> WebResult<KeysPage> {
    let keys = keys::list(state, scope).await?;
    let rotated = keys::secret_rotated_at(state, scope).await?;
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
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
) -> WebResult<Response> {
    let left = flash::take(&state, &session, &keys_path(&p)).await?;
    let shown = Shown::from(left.as_ref());
    let mut v = keys_view(&state, &session, &scope, p).await?;
    match left {
        Some(Flash::NewApiKey { name, key }) => v.new_key = Some((name, key)),
        Some(Flash::TokenSecret { .. }) => {
            v.secret = Some(keys::token_secret(&state, &scope).await?);
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
    name: String,
    #[serde(default)]
    scope: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope: project,
        head: p,
    }: OwnedProject,
    CsrfForm(form): CsrfForm<KeyForm>,
) -> WebResult<Response> {
    let scope = if form.scope == "publish" {
        "publish"
    } else {
        "all"
    };
    let new = NewKey {
        name: form.name.clone(),
        scope: Some(scope.to_owned()),
    };
    let left = match keys::create(&state, &project, new).await {
        Ok(created) => Flash::NewApiKey {
            name: created.name,
            key: created.key,
        },
        Err(e) => Flash::error(refusal(e)?.sentence(), format!("{scope} {}", form.name)),
    };
    flash::redirect(&state, &session, &keys_path(&p), left).await
}

/// The confirmation page before a key is revoked.
pub async fn revoke_confirm(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Path((_, key_id)): Path<(String, String)>,
) -> WebResult<Response> {
    let key = key_row(keys::get(&state, &scope, &key_id).await?);
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
    confirm: String,
}

pub async fn revoke_key(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Path((_, key_id)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<RevokeForm>,
) -> WebResult<Response> {
    let key = keys::get(&state, &scope, &key_id).await?;
    if form.confirm != "yes" {
        // Not from the confirmation page: show it.
        let location = format!("{}/{}/revoke", keys_path(&p), key.id);
        return Ok(axum::response::IntoResponse::into_response(
            axum::response::Redirect::to(&location),
        ));
    }
    let name = keys::revoke(&state, &scope, &key_id).await?;
    let notice = Flash::notice(format!(
        "Key revoked: requests using “{name}” are refused from now on."
    ));
    flash::redirect(&state, &session, &keys_path(&p), notice).await
}

pub async fn reveal_secret(
    State(state): State<AppState>,
    OwnedProject {
        session, head: p, ..
    }: OwnedProject,
    CsrfForm(_): CsrfForm<NoFields>,
) -> WebResult<Response> {
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
    confirm: Option<String>,
    #[serde(default)]
    grace: String,
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    CsrfForm(form): CsrfForm<RotateForm>,
) -> WebResult<Response> {
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
    keys::rotate_secret(&state, &scope, grace).await?;
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
