//! Usage metering: each tenant's counters (pushed by the tenant when they change, see
//! [`crate::parking`]; read from `/admin/usage` every few seconds for older processes that do
//! not push) are turned into deltas against the last reading (kept in Postgres, so a restarted control plane
//! neither loses nor double-counts), and added to per-minute rows per project and namespace.
//! Minute rows older than 30 days are rolled up into hourly rows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::ids::ProjectId;
use crate::supervisor::{ProcessRecord, RouteTable};

/// How often tenants are read.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(5);

/// One tenant reading (the fields of the data plane's `/admin/usage`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(default)]
pub struct Snapshot {
    pub node: String,
    pub connections: u64,
    pub messages_published: u64,
    pub messages_delivered: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub api_calls: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub namespaces: BTreeMap<String, NamespaceSnapshot>,
}

/// One namespace of a reading.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(default)]
pub struct NamespaceSnapshot {
    pub published_client: u64,
    pub published_api: u64,
    pub delivered: u64,
    pub subscriptions: i64,
    /// Connections with at least one subscription in the namespace (a level, like the
    /// project's `connections`).
    pub connections: i64,
}

/// The usage row name of the channels without a namespace.
pub const NO_NAMESPACE: &str = "(none)";

/// What one reading adds to a minute row.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub connections: i64,
    pub subscriptions: i64,
    pub published: i64,
    pub delivered: i64,
    pub api_calls: i64,
    pub errors: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
}

/// Counter growth since `prev`; a restarted process (other node id, or a counter that went
/// down) starts from zero.
fn grew(now: u64, prev: u64, restarted: bool) -> i64 {
    if restarted || now < prev {
        now as i64
    } else {
        (now - prev) as i64
    }
}

/// Deltas per namespace (`*` = project totals) between two readings.
pub fn deltas(prev: Option<&Snapshot>, now: &Snapshot) -> BTreeMap<String, Delta> {
    let empty = Snapshot::default();
    let restarted = prev.is_none_or(|p| p.node != now.node);
    let prev = prev.unwrap_or(&empty);
    let sum = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    let mut out = BTreeMap::new();
    out.insert(
        "*".to_owned(),
        Delta {
            connections: now.connections as i64,
            subscriptions: now.namespaces.values().map(|n| n.subscriptions).sum(),
            published: grew(now.messages_published, prev.messages_published, restarted),
            delivered: grew(now.messages_delivered, prev.messages_delivered, restarted),
            api_calls: grew(sum(&now.api_calls), sum(&prev.api_calls), restarted),
            errors: grew(sum(&now.errors), sum(&prev.errors), restarted),
            bytes_in: grew(now.bytes_in, prev.bytes_in, restarted),
            bytes_out: grew(now.bytes_out, prev.bytes_out, restarted),
        },
    );
    for (ns, n) in &now.namespaces {
        let p = prev.namespaces.get(ns).cloned().unwrap_or_default();
        let name = if ns.is_empty() {
            NO_NAMESPACE.to_owned()
        } else {
            ns.clone()
        };
        out.insert(
            name,
            Delta {
                connections: n.connections,
                subscriptions: n.subscriptions,
                published: grew(
                    n.published_client + n.published_api,
                    p.published_client + p.published_api,
                    restarted,
                ),
                delivered: grew(n.delivered, p.delivered, restarted),
                ..Default::default()
            },
        );
    }
    out
}

/// Most keys one report may name (a project has far fewer; the rest is ignored).
const MAX_KEYS_PER_REPORT: usize = 1000;

/// Moves `last_used_at` of the project's API keys named in `used` (key id → unix seconds of
/// the minute of their last use) forward, in one statement; never backwards, never past now,
/// never for another project's keys. Unknown ids (a key revoked meanwhile) change nothing.
pub async fn record_key_use(
    pool: &PgPool,
    project: &ProjectId,
    used: &BTreeMap<String, i64>,
) -> Result<u64, sqlx::Error> {
    let (ids, at): (Vec<&str>, Vec<i64>) = used
        .iter()
        .take(MAX_KEYS_PER_REPORT)
        .map(|(id, at)| (id.as_str(), *at))
        .unzip();
    let done = sqlx::query(
        "UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, LEAST(to_timestamp(u.at), now())) \
         FROM unnest($2::text[], $3::bigint[]) AS u(id, at) \
         WHERE k.project_id = $1 AND k.id = u.id",
    )
    .bind(project)
    .bind(ids)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Adds one reading to the minute rows and moves the cursor, in one transaction.
pub async fn record(
    pool: &PgPool,
    project: &ProjectId,
    now: &Snapshot,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    record_many(pool, &[(project.clone(), now.clone())], at).await
}

/// Adds the readings of many projects (one each: the latest) to their minute rows and moves
/// their cursors, in one transaction of four statements whatever their number, so a thousand
/// tenants reporting cost the control plane a few round trips a second, not a few thousand.
pub async fn record_many(
    pool: &PgPool,
    readings: &[(ProjectId, Snapshot)],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if readings.is_empty() {
        return Ok(());
    }
    let minute = at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at);
    let ids: Vec<&str> = readings.iter().map(|(p, _)| p.as_str()).collect();
    let mut tx = pool.begin().await?;
    // Locked in one order, so two writers (the pushes and a scrape) never deadlock.
    let prev: Vec<(String, Value)> = sqlx::query_as(
        "SELECT project_id, snapshot FROM usage_cursor WHERE project_id = ANY($1) \
         ORDER BY project_id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let prev: BTreeMap<String, Snapshot> = prev
        .into_iter()
        .filter_map(|(id, v)| Some((id, serde_json::from_value(v).ok()?)))
        .collect();
    let mut rows = MinuteRows::default();
    for (project, now) in readings {
        for (ns, d) in deltas(prev.get(project.as_str()), now) {
            rows.push(project.as_str(), ns, d);
        }
    }
    sqlx::query(
        "INSERT INTO usage_minute (project_id, namespace, minute, connections, subscriptions, published, delivered, api_calls, errors, bytes_in, bytes_out) \
         SELECT u.project_id, u.namespace, $3, u.connections, u.subscriptions, u.published, u.delivered, u.api_calls, u.errors, u.bytes_in, u.bytes_out \
         FROM unnest($1::text[], $2::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[]) \
           AS u(project_id, namespace, connections, subscriptions, published, delivered, api_calls, errors, bytes_in, bytes_out) \
         ON CONFLICT (project_id, namespace, minute) DO UPDATE SET \
           connections = GREATEST(usage_minute.connections, EXCLUDED.connections), \
           subscriptions = GREATEST(usage_minute.subscriptions, EXCLUDED.subscriptions), \
           published = usage_minute.published + EXCLUDED.published, \
           delivered = usage_minute.delivered + EXCLUDED.delivered, \
           api_calls = usage_minute.api_calls + EXCLUDED.api_calls, \
           errors = usage_minute.errors + EXCLUDED.errors, \
           bytes_in = usage_minute.bytes_in + EXCLUDED.bytes_in, \
           bytes_out = usage_minute.bytes_out + EXCLUDED.bytes_out",
    )
    .bind(&rows.project)
    .bind(&rows.namespace)
    .bind(minute)
    .bind(&rows.connections)
    .bind(&rows.subscriptions)
    .bind(&rows.published)
    .bind(&rows.delivered)
    .bind(&rows.api_calls)
    .bind(&rows.errors)
    .bind(&rows.bytes_in)
    .bind(&rows.bytes_out)
    .execute(&mut *tx)
    .await?;
    let nodes: Vec<&str> = readings.iter().map(|(_, s)| s.node.as_str()).collect();
    let snapshots: Vec<Value> = readings
        .iter()
        .map(|(_, s)| serde_json::to_value(s).unwrap_or(Value::Null))
        .collect();
    sqlx::query(
        "INSERT INTO usage_cursor (project_id, node_id, snapshot) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) \
         ON CONFLICT (project_id) DO UPDATE SET node_id = EXCLUDED.node_id, snapshot = EXCLUDED.snapshot",
    )
    .bind(&ids)
    .bind(&nodes)
    .bind(&snapshots)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The minute rows of a batch, column by column (for `unnest`).
#[derive(Default)]
struct MinuteRows<'a> {
    project: Vec<&'a str>,
    namespace: Vec<String>,
    connections: Vec<i64>,
    subscriptions: Vec<i64>,
    published: Vec<i64>,
    delivered: Vec<i64>,
    api_calls: Vec<i64>,
    errors: Vec<i64>,
    bytes_in: Vec<i64>,
    bytes_out: Vec<i64>,
}

impl<'a> MinuteRows<'a> {
    fn push(&mut self, project: &'a str, namespace: String, d: Delta) {
        self.project.push(project);
        self.namespace.push(namespace);
        self.connections.push(d.connections);
        self.subscriptions.push(d.subscriptions);
        self.published.push(d.published);
        self.delivered.push(d.delivered);
        self.api_calls.push(d.api_calls);
        self.errors.push(d.errors);
        self.bytes_in.push(d.bytes_in);
        self.bytes_out.push(d.bytes_out);
    }
}

/// Rolls minute rows older than 30 days into hourly rows.
pub async fn roll_up(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO usage_hour (project_id, namespace, hour, connections, subscriptions, published, delivered, api_calls, errors, bytes_in, bytes_out) \
         SELECT project_id, namespace, date_trunc('hour', minute), MAX(connections), MAX(subscriptions), SUM(published), SUM(delivered), SUM(api_calls), SUM(errors), SUM(bytes_in), SUM(bytes_out) \
         FROM usage_minute WHERE minute < now() - interval '30 days' GROUP BY 1, 2, 3 \
         ON CONFLICT (project_id, namespace, hour) DO UPDATE SET \
           connections = GREATEST(usage_hour.connections, EXCLUDED.connections), \
           subscriptions = GREATEST(usage_hour.subscriptions, EXCLUDED.subscriptions), \
           published = usage_hour.published + EXCLUDED.published, delivered = usage_hour.delivered + EXCLUDED.delivered, \
           api_calls = usage_hour.api_calls + EXCLUDED.api_calls, errors = usage_hour.errors + EXCLUDED.errors, \
           bytes_in = usage_hour.bytes_in + EXCLUDED.bytes_in, bytes_out = usage_hour.bytes_out + EXCLUDED.bytes_out",
    )
    .execute(&mut *tx)
    .await?;
    let deleted = sqlx::query("DELETE FROM usage_minute WHERE minute < now() - interval '30 days'")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(deleted.rows_affected())
}

async fn read(http: &reqwest::Client, record: &ProcessRecord) -> Result<Snapshot, reqwest::Error> {
    http.get(format!("{}/admin/usage", record.admin_base()))
        .bearer_auth(&record.admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

/// Reads every running tenant until `stop`.
pub async fn run(pool: PgPool, routes: Arc<RouteTable>, stop: CancellationToken) {
    let http = crate::probe::direct_builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_else(|_| crate::probe::direct_client());
    let mut tick = tokio::time::interval(SCRAPE_INTERVAL);
    let mut last_rollup = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Tenants that push their usage are not read (see crate::parking).
        for (project, process) in routes.processes().into_iter().filter(|(_, p)| !p.reports) {
            match read(&http, &process).await {
                Ok(snapshot) => {
                    if let Err(e) = record(&pool, &project, &snapshot, Utc::now()).await {
                        tracing::warn!(tenant = %project, error = %e, "usage not recorded");
                    }
                }
                Err(e) => tracing::debug!(tenant = %project, error = %e, "usage not read"),
            }
        }
        if last_rollup.elapsed() > Duration::from_secs(3600) {
            last_rollup = tokio::time::Instant::now();
            match roll_up(&pool).await {
                Ok(n) => tracing::info!(rows = n, "usage rolled up"),
                Err(e) => tracing::warn!(error = %e, "usage roll-up failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(node: &str, published: u64, api: u64) -> Snapshot {
        let mut s = Snapshot {
            node: node.into(),
            connections: 3,
            messages_published: published,
            ..Default::default()
        };
        s.api_calls.insert("publish".into(), api);
        s.namespaces.insert(
            "chat".into(),
            NamespaceSnapshot {
                published_client: published,
                delivered: published * 2,
                subscriptions: 2,
                connections: 2,
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn deltas_count_growth_and_survive_process_restarts() {
        let first = deltas(None, &snap("a", 5, 2));
        assert_eq!(first["*"].published, 5);
        assert_eq!(first["*"].api_calls, 2);
        assert_eq!(first["chat"].delivered, 10);
        let next = deltas(Some(&snap("a", 5, 2)), &snap("a", 8, 3));
        assert_eq!(
            (
                next["*"].published,
                next["*"].api_calls,
                next["chat"].published
            ),
            (3, 1, 3)
        );
        assert_eq!(
            next["*"].connections, 3,
            "connections are a level, not a delta"
        );
        assert_eq!(
            next["chat"].connections, 2,
            "a namespace's connections are kept"
        );
        let restarted = deltas(Some(&snap("a", 8, 3)), &snap("b", 1, 0));
        assert_eq!(
            restarted["*"].published, 1,
            "a new process starts from zero"
        );
    }

    #[test]
    fn namespace_rows_add_up_to_the_project_row_with_a_row_for_channels_without_one() {
        let mut s = snap("a", 5, 0);
        s.messages_published = 7;
        s.messages_delivered = 13;
        s.namespaces.insert(
            String::new(),
            NamespaceSnapshot {
                published_api: 2,
                delivered: 3,
                subscriptions: 1,
                connections: 1,
                ..Default::default()
            },
        );
        let d = deltas(None, &s);
        assert!(d.contains_key(NO_NAMESPACE), "{:?}", d.keys());
        let sum = |f: fn(&Delta) -> i64| {
            d.iter()
                .filter(|(k, _)| *k != "*")
                .map(|(_, v)| f(v))
                .sum::<i64>()
        };
        assert_eq!(sum(|v| v.published), d["*"].published);
        assert_eq!(sum(|v| v.delivered), d["*"].delivered);
        assert_eq!(sum(|v| v.subscriptions), d["*"].subscriptions);
    }
}
