//! A project's usage as its owner reads it: points over time (connections, subscriptions,
//! messages, API calls, errors and bytes per minute, hour or day, for the project or one
//! namespace) from the minute and hour rows [`crate::usage`] records, the namespaces seen, the
//! tenant's latest reading, and what happened to the project's process
//! ([`crate::tenant_events`]). Every function takes a [`ProjectScope`].

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{ProjectScope, ServiceError, ServiceResult};
use crate::state::AppState;
use crate::tenant_events::TenantEvent;
use crate::usage::Snapshot;

/// The width of a usage bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Minute,
    Hour,
    Day,
}

impl Step {
    /// Its name, as the API takes it and `date_trunc` reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Minute => "minute",
            Step::Hour => "hour",
            Step::Day => "day",
        }
    }

    /// A step by name: `minute`, `hour` or `day` (400 with field `step` otherwise).
    pub fn parse(name: &str) -> ServiceResult<Self> {
        match name {
            "minute" => Ok(Step::Minute),
            "hour" => Ok(Step::Hour),
            "day" => Ok(Step::Day),
            _ => Err(ServiceError::field(
                "step",
                "step must be minute, hour or day",
            )),
        }
    }

    /// The step a span gets when none is asked for.
    fn for_span(span: TimeDelta) -> Self {
        if span <= TimeDelta::hours(6) {
            Step::Minute
        } else if span <= TimeDelta::days(7) {
            Step::Hour
        } else {
            Step::Day
        }
    }
}

/// One bucket: the most connections and subscriptions at once, the sums of the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct UsagePoint {
    /// The bucket's start.
    #[sqlx(rename = "bucket")]
    pub t: DateTime<Utc>,
    pub connections: i64,
    pub subscriptions: i64,
    pub published: i64,
    pub delivered: i64,
    pub api_calls: i64,
    pub errors: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
}

/// Usage points of one namespace (`*` = project totals) between two instants, by `step`.
pub async fn series(
    state: &AppState,
    scope: &ProjectScope,
    namespace: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Step,
) -> ServiceResult<Vec<UsagePoint>> {
    Ok(sqlx::query_as(
        "SELECT date_trunc($5, t) AS bucket, MAX(connections)::bigint AS connections, MAX(subscriptions)::bigint AS subscriptions, \
                SUM(published)::bigint AS published, SUM(delivered)::bigint AS delivered, SUM(api_calls)::bigint AS api_calls, \
                SUM(errors)::bigint AS errors, SUM(bytes_in)::bigint AS bytes_in, SUM(bytes_out)::bigint AS bytes_out \
         FROM (SELECT minute AS t, * FROM usage_minute WHERE project_id = $1 AND namespace = $2 AND minute >= $3 AND minute < $4 \
               UNION ALL \
               SELECT hour AS t, * FROM usage_hour WHERE project_id = $1 AND namespace = $2 AND hour >= $3 AND hour < $4) u \
         GROUP BY bucket ORDER BY bucket",
    )
    .bind(scope.id())
    .bind(namespace)
    .bind(from)
    .bind(to)
    .bind(step.as_str())
    .fetch_all(&state.pool)
    .await?)
}

/// What usage to read: every part optional.
#[derive(Debug, Clone, Default)]
pub struct UsageRequest {
    /// Default: one hour before `to`.
    pub from: Option<DateTime<Utc>>,
    /// Default: now.
    pub to: Option<DateTime<Utc>>,
    /// `minute` (at most 2 days), `hour` or `day`; default: by the span.
    pub step: Option<String>,
    /// One namespace; default: the whole project (`*`).
    pub namespace: Option<String>,
}

/// Usage over time, as asked for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Usage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `minute`, `hour` or `day`.
    pub step: String,
    /// The namespace read (`*`: the whole project).
    pub namespace: String,
    /// Namespaces with usage since `from`.
    pub namespaces: Vec<String>,
    pub points: Vec<UsagePoint>,
}

/// Usage of the project over time (400 with the field at fault for a bad span or step).
pub async fn over_time(
    state: &AppState,
    scope: &ProjectScope,
    request: UsageRequest,
) -> ServiceResult<Usage> {
    let to = request.to.unwrap_or_else(Utc::now);
    let from = request.from.unwrap_or(to - TimeDelta::hours(1));
    if from >= to {
        return Err(ServiceError::field("from", "must be before `to`"));
    }
    let span = to - from;
    let step = match request.step.as_deref() {
        Some(name) => Step::parse(name)?,
        None => Step::for_span(span),
    };
    if step == Step::Minute && span > TimeDelta::days(2) {
        return Err(ServiceError::field(
            "step",
            "minute steps cover at most 2 days",
        ));
    }
    let namespace = request.namespace.unwrap_or_else(|| "*".into());
    let points = series(state, scope, &namespace, from, to, step).await?;
    let namespaces: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT namespace FROM usage_minute WHERE project_id = $1 AND namespace <> '*' AND minute >= $2 ORDER BY 1",
    )
    .bind(scope.id())
    .bind(from)
    .fetch_all(&state.pool)
    .await?;
    Ok(Usage {
        from,
        to,
        step: step.as_str().to_owned(),
        namespace,
        namespaces,
        points,
    })
}

/// The project's totals of the current minute and the two before it (the live chart's feed).
pub async fn latest_minutes(
    state: &AppState,
    scope: &ProjectScope,
) -> ServiceResult<Vec<UsagePoint>> {
    let now = Utc::now();
    series(
        state,
        scope,
        "*",
        now - TimeDelta::minutes(2),
        now + TimeDelta::minutes(1),
        Step::Minute,
    )
    .await
}

/// Every namespace configured or seen in usage (not `*`, not the empty name), by name.
pub async fn namespace_names(state: &AppState, scope: &ProjectScope) -> ServiceResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM namespaces WHERE project_id = $1 \
         UNION SELECT DISTINCT namespace FROM usage_minute WHERE project_id = $1 AND namespace NOT IN ('*', '') \
         ORDER BY 1",
    )
    .bind(scope.id())
    .fetch_all(&state.pool)
    .await?)
}

/// The tenant's latest usage reading, if one was recorded and still reads.
pub async fn latest_snapshot(
    state: &AppState,
    scope: &ProjectScope,
) -> ServiceResult<Option<Snapshot>> {
    let snapshot: Option<Value> =
        sqlx::query_scalar("SELECT snapshot FROM usage_cursor WHERE project_id = $1")
            .bind(scope.id())
            .fetch_optional(&state.pool)
            .await?;
    Ok(snapshot.and_then(|v| serde_json::from_value::<Snapshot>(v).ok()))
}

/// How many process events [`process_events`] returns.
pub const EVENTS_SHOWN: i64 = 100;

/// What happened to the project's process, newest first (at most [`EVENTS_SHOWN`]).
pub async fn process_events(
    state: &AppState,
    scope: &ProjectScope,
) -> ServiceResult<Vec<TenantEvent>> {
    Ok(crate::tenant_events::list(&state.pool, scope.id(), EVENTS_SHOWN).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_follows_the_span_unless_named() {
        assert_eq!(Step::for_span(TimeDelta::hours(1)), Step::Minute);
        assert_eq!(Step::for_span(TimeDelta::hours(6)), Step::Minute);
        assert_eq!(Step::for_span(TimeDelta::days(2)), Step::Hour);
        assert_eq!(Step::for_span(TimeDelta::days(30)), Step::Day);
        assert_eq!(Step::parse("hour").ok(), Some(Step::Hour));
        assert!(matches!(
            Step::parse("week"),
            Err(ServiceError::BadRequest { field: Some(f), .. }) if f == "step"
        ));
    }
}
