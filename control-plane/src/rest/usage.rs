//! Usage over time (`GET /v1/projects/{id}/usage?from&to&step&namespace`) and a live stream of
//! the current minute (`GET /v1/projects/{id}/usage/live`, Server-Sent Events) for charts, and
//! what happened to the project's process (`GET /v1/projects/{id}/events`: restarts after
//! exceeding its memory limit or after a crash), as JSON over [`crate::service::usage`].

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use chrono::{DateTime, Utc};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{self, ACTIVITY};
use super::{OwnedProject, RestResult};
use crate::service::usage::{self, Usage, UsagePoint, UsageRequest};
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
    responses((status = 200, description = "`usage` events, each with this JSON as its data", body = LiveUsage, content_type = "text/event-stream")))]
pub async fn live(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let stream = futures_util::stream::unfold((state, project), |(state, project)| async move {
        let points = usage::latest_minutes(&state, &project)
            .await
            .unwrap_or_default();
        let data = serde_json::to_string(&LiveUsage { points }).unwrap_or_default();
        let event = Event::default().event("usage").data(data);
        tokio::time::sleep(crate::usage::SCRAPE_INTERVAL).await;
        Some((Ok(event), (state, project)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
