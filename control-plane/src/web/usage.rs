//! The usage page and the JSON its charts poll: connections, messages in and out, API calls and
//! errors over the last hour, day or month, per namespace or for the whole project, with empty
//! buckets filled with zeros so the charts keep their time axis.
//!
//! "Connections now" is the tenant's latest reading, not a bucket of the chosen range, so every
//! range shows the same number. Channels without a namespace have their own row, so the
//! namespaces add up to "All channels". API calls and errors are counted for the project only:
//! with a namespace chosen they are `null` and listed in `not_per_namespace`. The plan's
//! connection and publication-rate limits come along for the charts to draw. The readings are
//! [`crate::service::usage`]'s.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::OwnedProject;
use super::views::{Layout, UsagePage};
use super::{page, WebError, WebResult};
use crate::service::usage::{self, Step};
use crate::service::ProjectScope;
use crate::state::AppState;
use crate::tenant::PlanLimits;
use crate::usage::NO_NAMESPACE;

/// What the namespace menu calls the channels without a namespace.
const NO_NAMESPACE_LABEL: &str = "(no namespace)";

/// Metrics the tenant counts for the whole project only.
const PROJECT_ONLY: [&str; 2] = ["api_calls", "errors"];

#[derive(Deserialize, Default)]
pub struct UsageParams {
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// (span, bucket step name, bucket width) of a range.
fn range_spec(range: &str) -> Option<(TimeDelta, Step, TimeDelta)> {
    match range {
        "1h" => Some((TimeDelta::hours(1), Step::Minute, TimeDelta::minutes(1))),
        "24h" => Some((TimeDelta::hours(24), Step::Hour, TimeDelta::hours(1))),
        "30d" => Some((TimeDelta::days(30), Step::Day, TimeDelta::days(1))),
        _ => None,
    }
}

/// The namespace menu: (value, label) of every namespace configured or seen in usage, the
/// channels without a namespace last.
async fn namespaces_of(state: &AppState, scope: &ProjectScope) -> WebResult<Vec<(String, String)>> {
    Ok(menu(usage::namespace_names(state, scope).await?))
}

fn menu(names: Vec<String>) -> Vec<(String, String)> {
    let (none, mut named): (Vec<_>, Vec<_>) = names.into_iter().partition(|n| n == NO_NAMESPACE);
    named.sort();
    let mut out: Vec<(String, String)> = named.into_iter().map(|n| (n.clone(), n)).collect();
    if !none.is_empty() {
        out.push((NO_NAMESPACE.to_owned(), NO_NAMESPACE_LABEL.to_owned()));
    }
    out
}

/// Connections open now, from the tenant's latest reading: the project's, or those with a
/// subscription in `namespace`. Zero when the project has no process.
async fn connections_now(
    state: &AppState,
    scope: &ProjectScope,
    namespace: &str,
) -> WebResult<i64> {
    if super::console::running(state, scope.id().as_str()).is_none() {
        return Ok(0);
    }
    let Some(snapshot) = usage::latest_snapshot(state, scope).await? else {
        return Ok(0);
    };
    Ok(match namespace {
        "*" => i64::try_from(snapshot.connections).unwrap_or(i64::MAX),
        NO_NAMESPACE => snapshot.namespaces.get("").map_or(0, |n| n.connections),
        ns => snapshot.namespaces.get(ns).map_or(0, |n| n.connections),
    })
}

/// The plan's limits the charts draw: connections at once, and publications per bucket of
/// `width` (the per-second rate times the bucket's seconds). `null` where the plan sets none.
fn chart_limits(limits: &PlanLimits, width: TimeDelta) -> Value {
    let positive = |v: u32| (v > 0).then_some(v);
    json!({
        "connections": positive(limits.max_connections),
        "publish_rate": positive(limits.publish_rate),
        "published_per_bucket": positive(limits.publish_rate)
            .map(|r| i64::from(r) * width.num_seconds()),
    })
}

pub async fn show(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Query(q): Query<UsageParams>,
) -> WebResult<Response> {
    let range = q
        .range
        .filter(|r| range_spec(r).is_some())
        .unwrap_or_else(|| "1h".into());
    let view = UsagePage {
        layout: Layout::of(&session),
        tab: "usage",
        range,
        namespace: q.namespace.unwrap_or_default(),
        namespaces: namespaces_of(&state, &scope).await?,
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
    OwnedProject { scope, .. }: OwnedProject,
    Query(q): Query<UsageParams>,
) -> WebResult<Response> {
    let range = q.range.unwrap_or_else(|| "1h".into());
    let (span, step, width) = range_spec(&range)
        .ok_or_else(|| WebError::BadRequest("range must be 1h, 24h or 30d".into()))?;
    let namespace = q
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "*".into());
    let to = Utc::now();
    let from = to - span;
    let raw: Vec<Value> = usage::series(&state, &scope, &namespace, from, to, step)
        .await?
        .iter()
        .map(|p| json!(p))
        .collect();
    let mut points = fill(&raw, from, to, width);
    let per_namespace = namespace != "*";
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
    if per_namespace {
        for m in PROJECT_ONLY {
            totals[m] = Value::Null;
            for p in &mut points {
                p[m] = Value::Null;
            }
        }
    }
    totals["connections"] = json!(connections_now(&state, &scope, &namespace).await?);
    let limits = PlanLimits::of_project(&state.pool, scope.id()).await?;
    totals["peak_connections"] = json!(points
        .iter()
        .map(|p| p["connections"].as_i64().unwrap_or(0))
        .max()
        .unwrap_or(0));
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "range": range,
            "step": step.as_str(),
            "namespace": namespace,
            "points": points,
            "totals": totals,
            "not_per_namespace": if per_namespace { json!(PROJECT_ONLY) } else { json!([]) },
            "limits": chart_limits(&limits, width),
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

    #[test]
    fn channels_without_a_namespace_are_named_and_listed_last() {
        let m = menu(vec!["(none)".into(), "chat".into(), "alpha".into()]);
        assert_eq!(
            m,
            vec![
                ("alpha".to_owned(), "alpha".to_owned()),
                ("chat".to_owned(), "chat".to_owned()),
                ("(none)".to_owned(), "(no namespace)".to_owned()),
            ]
        );
    }

    #[test]
    fn the_publication_limit_is_scaled_to_the_bucket() {
        let limits = PlanLimits {
            max_connections: 200,
            publish_rate: 100,
            ..Default::default()
        };
        let l = chart_limits(&limits, TimeDelta::minutes(1));
        assert_eq!(l["connections"], 200);
        assert_eq!(l["published_per_bucket"], 6000);
        let none = chart_limits(&PlanLimits::default(), TimeDelta::hours(1));
        assert!(none["connections"].is_null() && none["published_per_bucket"].is_null());
    }
}
