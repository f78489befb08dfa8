//! Usage over time (`GET /v1/projects/{id}/usage?from&to&step&namespace`) and a live stream of
//! the current minute (`GET /v1/projects/{id}/usage/live`, Server-Sent Events, authorised again
//! before every event and at most [`MAX_LIVE_STREAMS_PER_ACCOUNT`] per account) for charts, and
//! what happened to the project's process (`GET /v1/projects/{id}/events`: restarts after
//! exceeding its memory limit or after a crash), as JSON over [`crate::service::usage`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use chrono::{DateTime, Utc};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{self, ACTIVITY};
use super::{OwnedProject, RestResult};
use crate::ids::AccountId;
use crate::service::usage::{self, Usage, UsagePoint, UsageRequest};
use crate::service::{accounts, projects, ProjectScope, ServiceError};
use crate::state::AppState;
use crate::tenant_events::TenantEvent;

/// `?from&to&step&namespace`.
#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// RFC 3339 instant; default: one hour before `to`
    from: Option<DateTime<Utc>>,
    /// RFC 3339 instant; default: now
    to: Option<DateTime<Utc>>,
    /// minute (at most 2 days), hour or day; default: by the span
    step: Option<String>,
    /// one namespace's usage; default: the whole project
    namespace: Option<String>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/usage", tag = ACTIVITY, operation_id = "get_usage",
    summary = "Usage over time: connections, subscriptions, messages, API calls, errors and bytes per step",
    security(("bearer" = [])),
    params(openapi::ProjectPath, UsageQuery),
    responses((status = 200, description = "points oldest first", body = Usage)))]
pub async fn query(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Query(q): Query<UsageQuery>,
) -> RestResult<Json<Usage>> {
    let request = UsageRequest {
        from: q.from,
        to: q.to,
        step: q.step,
        namespace: q.namespace,
    };
    Ok(Json(usage::over_time(&state, &project, request).await?))
}

/// The data of one `usage` event of the live stream.
#[derive(Serialize, ToSchema)]
pub struct LiveUsage {
    /// The project's totals of the current minute and the two before it.
    pub points: Vec<UsagePoint>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/usage/live", tag = ACTIVITY, operation_id = "get_usage_live",
    summary = "The current minute's usage as Server-Sent Events",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    responses((status = 200, description = "`usage` events, each with this JSON as its data; the stream ends when the token or the project's ownership no longer holds", body = LiveUsage, content_type = "text/event-stream"),
        (status = 429, description = "the account holds as many live streams as it may", body = super::ErrorBody)))]
pub async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedProject(project): OwnedProject,
) -> RestResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let token = super::auth::bearer(&headers)?.to_owned();
    let slot = state
        .live_streams
        .open(project.account())
        .ok_or(ServiceError::TooManyRequests {
            retry_after: crate::usage::SCRAPE_INTERVAL,
        })?;
    let live = Live {
        state,
        project,
        token,
        _slot: slot,
        first: true,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        if !live.first {
            tokio::time::sleep(crate::usage::SCRAPE_INTERVAL).await;
            // The token may have been revoked or expired, or the project deleted, since the
            // stream was opened: each event is authorised again, and the stream ends when
            // it is no longer.
            if !live.still_allowed().await {
                return None;
            }
        }
        live.first = false;
        let points = usage::latest_minutes(&live.state, &live.project)
            .await
            .unwrap_or_default();
        let data = serde_json::to_string(&LiveUsage { points }).unwrap_or_default();
        let event = Event::default().event("usage").data(data);
        Some((Ok(event), live))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One open live stream: who opened it, with which token, and its place under the account's
/// cap (given back when the stream is dropped).
struct Live {
    state: AppState,
    project: ProjectScope,
    token: String,
    _slot: LiveSlot,
    first: bool,
}

impl Live {
    /// Whether the token still names the project's owner (unrevoked, unexpired) and the
    /// project is still theirs.
    async fn still_allowed(&self) -> bool {
        let account = match accounts::account_of_token(&self.state, &self.token).await {
            Ok(account) if &account == self.project.account() => account,
            _ => return false,
        };
        projects::owned(&self.state, &account, self.project.id().as_str())
            .await
            .is_ok()
    }
}

/// The most live usage streams one account may hold open at once (all its tokens and
/// projects together); one more is answered 429.
pub const MAX_LIVE_STREAMS_PER_ACCOUNT: usize = 8;

/// How many live streams each account holds open.
#[derive(Debug, Default)]
pub struct LiveStreams(Mutex<HashMap<AccountId, usize>>);

impl LiveStreams {
    /// A place for one more stream of `account`, or `None` at its cap.
    pub fn open(self: &Arc<Self>, account: &AccountId) -> Option<LiveSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(account.clone()).or_default();
        if *count >= MAX_LIVE_STREAMS_PER_ACCOUNT {
            return None;
        }
        *count += 1;
        Some(LiveSlot {
            streams: self.clone(),
            account: account.clone(),
        })
    }
}

/// One stream's place under its account's cap, held as long as the stream.
#[derive(Debug)]
pub struct LiveSlot {
    streams: Arc<LiveStreams>,
    account: AccountId,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut open = self.streams.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.account) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.account);
            }
        }
    }
}

/// What happened to the project's process.
#[derive(Serialize, ToSchema)]
pub struct ProcessEvents {
    /// Newest first, at most 100.
    pub events: Vec<TenantEvent>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/events", tag = ACTIVITY, operation_id = "list_events",
    summary = "What happened to the project's process (restarts after exceeding its memory limit or a crash)",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    responses((status = 200, description = "newest first (at most 100)", body = ProcessEvents)))]
pub async fn events(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<ProcessEvents>> {
    let events = usage::process_events(&state, &project).await?;
    Ok(Json(ProcessEvents { events }))
}
