//! The usage page and the JSON its charts poll: connections, messages in and out, API calls and
//! errors over the last hour, day or month, per namespace or for the whole project, with empty
//! buckets filled with zeros so the charts keep their time axis.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::head;
use super::session::Session;
use super::views::{Layout, UsagePage};
use super::{page, WebError, WebResult};
use crate::ids::ProjectId;
use crate::rest::usage::series;
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct UsageParams {
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// (span, bucket step name, bucket width) of a range.
fn range_spec(range: &str) -> Option<(TimeDelta, &'static str, TimeDelta)> {
    match range {
        "1h" => Some((TimeDelta::hours(1), "minute", TimeDelta::minutes(1))),
        "24h" => Some((TimeDelta::hours(24), "hour", TimeDelta::hours(1))),
        "30d" => Some((TimeDelta::days(30), "day", TimeDelta::days(1))),
        _ => None,
    }
}

async fn namespaces_of(state: &AppState, project: &str) -> WebResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM namespaces WHERE project_id = $1 \
         UNION SELECT DISTINCT namespace FROM usage_minute WHERE project_id = $1 AND namespace NOT IN ('*', '') \
         ORDER BY 1",
    )
    .bind(project)
    .fetch_all(&state.pool)
    .await?)
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<UsageParams>,
) -> WebResult<Response> {
    let p = head(&state, &session, &id).await?;
    let range = q
        .range
        .filter(|r| range_spec(r).is_some())
        .unwrap_or_else(|| "1h".into());
    let view = UsagePage {
        layout: Layout::of(&session),
        tab: "usage",
        range,
        namespace: q.namespace.unwrap_or_default(),
        namespaces: namespaces_of(&state, &p.id).await?,
        p,
    };
    Ok(page(view.render()?))
}

const METRICS: [&str; 8] = [
    "connections",
    "subscriptions",
    "published",
    "delivered",
    "api_calls",
    "errors",
    "bytes_in",
    "bytes_out",
];

/// Zero-filled buckets from `from` to `to`.
fn fill(points: &[Value], from: DateTime<Utc>, to: DateTime<Utc>, width: TimeDelta) -> Vec<Value> {
    let start = from.duration_trunc(width).unwrap_or(from);
    let mut out = Vec::new();
    let mut t = start;
    while t <= to {
        let found = points.iter().find(|p| {
            p["t"]
                .as_str()
                .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                .is_some_and(|pt| pt == t)
        });
        out.push(match found {
            Some(p) => p.clone(),
            None => {
                let mut zero = json!({"t": t});
                for m in METRICS {
                    zero[m] = json!(0);
                }
                zero
            }
        });
        t += width;
    }
    out
}

pub async fn data(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<UsageParams>,
) -> WebResult<Response> {
    let p = head(&state, &session, &id).await?;
    let range = q.range.unwrap_or_else(|| "1h".into());
    let (span, step, width) = range_spec(&range)
        .ok_or_else(|| WebError::BadRequest("range must be 1h, 24h or 30d".into()))?;
    let namespace = q
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "*".into());
    let to = Utc::now();
    let from = to - span;
    let raw = series(&state, &ProjectId(p.id.clone()), &namespace, from, to, step).await?;
    let points = fill(&raw, from, to, width);
    let mut totals = json!({});
    for m in [
        "published",
        "delivered",
        "api_calls",
        "errors",
        "bytes_in",
        "bytes_out",
    ] {
        totals[m] = json!(points
            .iter()
            .map(|p| p[m].as_i64().unwrap_or(0))
            .sum::<i64>());
    }
    totals["connections"] = raw
        .last()
        .map(|p| p["connections"].clone())
        .unwrap_or(json!(0));
    totals["peak_connections"] = json!(points
        .iter()
        .map(|p| p["connections"].as_i64().unwrap_or(0))
        .max()
        .unwrap_or(0));
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "range": range,
            "step": step,
            "namespace": namespace,
            "points": points,
            "totals": totals,
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_buckets_are_zero_and_present_ones_kept() {
        let to: DateTime<Utc> = "2026-11-24T10:30:20Z".parse().unwrap();
        let from = to - TimeDelta::minutes(5);
        let points = vec![json!({"t": "2026-11-24T10:27:00Z", "published": 4, "connections": 2})];
        let filled = fill(&points, from, to, TimeDelta::minutes(1));
        assert_eq!(filled.len(), 6, "10:25 … 10:30");
        assert_eq!(filled[2]["published"], 4);
        assert_eq!(filled[0]["published"], 0);
        assert_eq!(filled[5]["t"], json!("2026-11-24T10:30:00Z"));
    }
}
