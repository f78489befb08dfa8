//! Usage over time (`GET /v1/projects/{id}/usage?from&to&step&namespace`) and a live stream of
//! the current minute (`GET /v1/projects/{id}/usage/live`, Server-Sent Events) for charts, and
//! what happened to the project's process (`GET /v1/projects/{id}/events`: restarts after
//! exceeding its memory limit or after a crash).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{OwnedProject, RestResult};
use crate::ids::ProjectId;
use crate::service::ServiceError;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UsageQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    step: Option<String>,
    namespace: Option<String>,
}

type Row = (DateTime<Utc>, i64, i64, i64, i64, i64, i64, i64, i64);

/// Usage points of one namespace (`*` = project totals) between two instants.
pub async fn series(
    state: &AppState,
    project: &ProjectId,
    namespace: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: &str,
) -> RestResult<Vec<Value>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT date_trunc($5, t) AS bucket, MAX(connections)::bigint, MAX(subscriptions)::bigint, SUM(published)::bigint, SUM(delivered)::bigint, \
                SUM(api_calls)::bigint, SUM(errors)::bigint, SUM(bytes_in)::bigint, SUM(bytes_out)::bigint \
         FROM (SELECT minute AS t, * FROM usage_minute WHERE project_id = $1 AND namespace = $2 AND minute >= $3 AND minute < $4 \
               UNION ALL \
               SELECT hour AS t, * FROM usage_hour WHERE project_id = $1 AND namespace = $2 AND hour >= $3 AND hour < $4) u \
         GROUP BY bucket ORDER BY bucket",
    )
    .bind(project)
    .bind(namespace)
    .bind(from)
    .bind(to)
    .bind(step)
    .fetch_all(&state.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, connections, subscriptions, published, delivered, api_calls, errors, bytes_in, bytes_out)| {
            json!({"t": t, "connections": connections, "subscriptions": subscriptions, "published": published,
                   "delivered": delivered, "api_calls": api_calls, "errors": errors, "bytes_in": bytes_in, "bytes_out": bytes_out})
        })
        .collect())
}

pub async fn query(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Query(q): Query<UsageQuery>,
) -> RestResult<Json<Value>> {
    let id = project.id().clone();
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - TimeDelta::hours(1));
    if from >= to {
        return Err(ServiceError::field("from", "must be before `to`"));
    }
    let span = to - from;
    let step = match q.step.as_deref() {
        Some(s @ ("minute" | "hour" | "day")) => s.to_owned(),
        Some(_) => {
            return Err(ServiceError::field(
                "step",
                "step must be minute, hour or day",
            ))
        }
        None if span <= TimeDelta::hours(6) => "minute".into(),
        None if span <= TimeDelta::days(7) => "hour".into(),
        None => "day".into(),
    };
    if step == "minute" && span > TimeDelta::days(2) {
        return Err(ServiceError::field(
            "step",
            "minute steps cover at most 2 days",
        ));
    }
    let namespace = q.namespace.unwrap_or_else(|| "*".into());
    let points = series(&state, &id, &namespace, from, to, &step).await?;
    let namespaces: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT namespace FROM usage_minute WHERE project_id = $1 AND namespace <> '*' AND minute >= $2 ORDER BY 1",
    )
    .bind(&id)
    .bind(from)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(
        json!({"from": from, "to": to, "step": step, "namespace": namespace, "namespaces": namespaces, "points": points}),
    ))
}

pub async fn live(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let id = project.id().clone();
    let stream = futures_util::stream::unfold((state, id), |(state, id)| async move {
        let now = Utc::now();
        let points = series(
            &state,
            &id,
            "*",
            now - TimeDelta::minutes(2),
            now + TimeDelta::minutes(1),
            "minute",
        )
        .await
        .unwrap_or_default();
        let event = Event::default()
            .event("usage")
            .data(json!({"points": points}).to_string());
        tokio::time::sleep(crate::usage::SCRAPE_INTERVAL).await;
        Some((Ok(event), (state, id)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The project's process events, newest first (at most 100).
pub async fn events(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<Value>> {
    let id = project.id().clone();
    let events = crate::tenant_events::list(&state.pool, &id, 100).await?;
    Ok(Json(json!({ "events": events })))
}
