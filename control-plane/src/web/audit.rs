//! The audit trail in the dashboard: who changed what and when, newest first, a page at a time
//! (`?before=<entry id>`), in words ([`crate::audit::describe`]) — a project's, and the whole
//! account's with the project each entry concerns. Only the owner's entries; another account's
//! project is the same 404 as an unknown one.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::extract::OwnedProject;
use super::session::Session;
use super::views::{when, AccountAuditPage, AccountAuditRow, AuditPage, AuditRow, Layout};
use super::{page, WebResult};
use crate::audit::{actor_words, describe};
use crate::state::AppState;
/// Entries per page.
const PAGE: i64 = 25;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    /// Kept as text: a malformed value shows the first page rather than an error.
    #[serde(default)]
    before: String,
}

fn row_of(r: &crate::audit::Row, session: &Session) -> AuditRow {
    AuditRow {
        when: when(&r.created_at),
        actor: actor_words(&r.actor, &session.account),
        what: describe(r),
    }
}

/// `?before=` as an entry id; a malformed value means the first page.
fn cursor(q: &AuditQuery) -> Option<i64> {
    q.before.trim().parse::<i64>().ok().filter(|b| *b > 0)
}

/// The account's audit trail, across its projects.
pub async fn account(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> WebResult<Response> {
    let before = cursor(&q);
    let rows = crate::audit::page(&state.pool, &session.account, None, before, PAGE).await?;
    let names: HashMap<String, String> =
        crate::service::projects::summaries(&state, &session.account)
            .await?
            .into_iter()
            .map(|p| (p.id.0, p.name))
            .collect();
    let older = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let view = AccountAuditPage {
        layout: Layout::of(&session),
        rows: rows
            .iter()
            .map(|r| AccountAuditRow {
                row: row_of(r, &session),
                project: match &r.project_id {
                    Some(id) => names
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| "(deleted project)".into()),
                    None => "—".into(),
                },
            })
            .collect(),
        older,
        paged: before.is_some(),
    };
    Ok(page(view.render()?))
}

pub async fn show(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Query(q): Query<AuditQuery>,
) -> WebResult<Response> {
    let before = cursor(&q);
    let rows =
        crate::audit::page(&state.pool, scope.account(), Some(scope.id()), before, PAGE).await?;
    let older = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let view = AuditPage {
        layout: Layout::of(&session),
        tab: "audit",
        rows: rows.iter().map(|r| row_of(r, &session)).collect(),
        older,
        paged: before.is_some(),
        p,
    };
    Ok(page(view.render()?))
}
