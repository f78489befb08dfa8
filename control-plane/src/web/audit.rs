//! A project's audit trail in the dashboard: who changed what and when, newest first, a page
//! at a time (`?before=<entry id>`), in words ([`crate::audit::describe`]). Only the owner's
//! entries; another account's project is the same 404 as an unknown one.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::projects::head;
use super::session::Session;
use super::views::{when, AuditPage, AuditRow, Layout};
use super::{page, WebResult};
use crate::audit::{actor_words, describe};
use crate::ids::ProjectId;
use crate::state::AppState;
/// Entries per page.
const PAGE: i64 = 25;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    /// Kept as text: a malformed value shows the first page rather than an error.
    #[serde(default)]
    before: String,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<AuditQuery>,
) -> WebResult<Response> {
    let p = head(&state, &session, &id).await?;
    let before = q.before.trim().parse::<i64>().ok().filter(|b| *b > 0);
    let project = ProjectId(p.id.clone());
    let rows =
        crate::audit::page(&state.pool, &session.account, Some(&project), before, PAGE).await?;
    let older = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let view = AuditPage {
        layout: Layout::of(&session),
        tab: "audit",
        rows: rows
            .iter()
            .map(|r| AuditRow {
                when: when(&r.created_at),
                actor: actor_words(&r.actor, &session.account),
                what: describe(r),
            })
            .collect(),
        older,
        paged: before.is_some(),
        p,
    };
    Ok(page(view.render()?))
}
