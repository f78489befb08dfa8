//! The edge's counters for the operator, in Prometheus text format (prometheus-client's, through
//! [`rotor_exposition`], reading the counters at scrape time), served as `GET /metrics`
//! on the operator's own listener (`ROTOR_METRICS_LISTEN`, e.g. `127.0.0.1:9464`; off when
//! unset), never on the public listener:
//!
//! - `rotor_edge_connections`: connections the edge holds now (see [`super::caps`] for when
//!   one counts); `rotor_edge_connection_addresses`: client addresses (IPv6 /64s) among them;
//! - `rotor_edge_connections_accepted_total`;
//! - `rotor_edge_connections_refused_total{reason="per_address"|"max_connections"|"open_files"}`;
//! - `rotor_edge_accept_errors_total`: failed `accept` calls (usually out of descriptors);
//! - `rotor_edge_max_connections`, `rotor_edge_max_connections_per_address`,
//!   `rotor_edge_open_files_limit`, `rotor_edge_open_files_reserve`: the caps in force;
//! - `rotor_edge_wakes_total`: parked projects woken by a request;
//!   `rotor_edge_wakes_refused_total{reason="rate"|"capacity"}`: wakes refused because the
//!   client's address spent its wake budget (429) or the box had no room (503) (see
//!   [`super::wakes`]); `rotor_edge_wake_burst`, `rotor_edge_wakes_per_minute`: that budget;
//! - `rotor_edge_budget_refused_total{kind="requests"|"connects"}`: requests and WebSocket
//!   handshakes answered 429 at the edge because their project spent its plan's budget per
//!   second (see [`super::budgets`]);
//! - `rotor_tenants_running`: tenant processes running; `rotor_max_running_tenants`: the box's
//!   cap on them; `rotor_tenant_evictions_total`: idle tenants parked early to make room.

use std::sync::Arc;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use rotor_exposition::{Exposition, Kind};

use super::budgets::Kind as BudgetKind;
use super::caps::{Connections, Refusal};
use super::wakes::{WakeRefusal, Wakes};
use crate::routes::RouteTable;

/// What the operator's metrics are read from.
#[derive(Clone)]
pub struct Sources {
    pub connections: Arc<Connections>,
    pub wakes: Arc<Wakes>,
    pub routes: Arc<RouteTable>,
    /// `ROTOR_MAX_RUNNING_TENANTS` in force.
    pub max_running: usize,
}

/// The exposition of the edge's connection snapshot, its wakes and the box's tenants.
pub fn render(sources: &Sources) -> String {
    let s = &sources.connections.snapshot();
    let mut e = Exposition::default();
    // (label name, label value) of a labelled sample; `None`: the family's one sample.
    let mut metric =
        |name: &str, kind: Kind, help: &str, samples: &[(Option<(&str, &str)>, u64)]| {
            let family = e.family(name, help, kind);
            for (label, value) in samples {
                let labels: &[(&str, &str)] = match label {
                    Some(l) => std::slice::from_ref(l),
                    None => &[],
                };
                match kind {
                    Kind::Counter => family.count(labels, *value),
                    Kind::Gauge | Kind::Untyped => {
                        family.set(labels, i64::try_from(*value).unwrap_or(i64::MAX))
                    }
                };
            }
        };
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    metric(
        "rotor_edge_connections",
        Kind::Gauge,
        "Connections the edge holds.",
        &[(None, n(s.open))],
    );
    metric(
        "rotor_edge_connection_addresses",
        Kind::Gauge,
        "Client addresses (IPv6: /64 networks) holding edge connections.",
        &[(None, n(s.addresses))],
    );
    metric(
        "rotor_edge_connections_accepted_total",
        Kind::Counter,
        "Connections admitted by the edge.",
        &[(None, s.accepted)],
    );
    let refused: Vec<_> = Refusal::ALL
        .iter()
        .map(|r| Some(("reason", r.reason())))
        .zip(s.refused)
        .collect();
    metric(
        "rotor_edge_connections_refused_total",
        Kind::Counter,
        "Connections refused at accept, by reason.",
        &refused,
    );
    metric(
        "rotor_edge_accept_errors_total",
        Kind::Counter,
        "Failed accept calls on the public listener.",
        &[(None, s.accept_errors)],
    );
    metric(
        "rotor_edge_max_connections",
        Kind::Gauge,
        "Cap on the edge's connections (ROTOR_EDGE_MAX_CONNECTIONS).",
        &[(None, n(s.limits.max_connections))],
    );
    metric(
        "rotor_edge_max_connections_per_address",
        Kind::Gauge,
        "Cap on one address's edge connections (ROTOR_EDGE_MAX_CONNECTIONS_PER_ADDRESS).",
        &[(None, n(s.limits.max_per_address))],
    );
    metric(
        "rotor_edge_open_files_limit",
        Kind::Gauge,
        "The control plane's soft open-file limit.",
        &[(None, s.file_limit)],
    );
    metric(
        "rotor_edge_open_files_reserve",
        Kind::Gauge,
        "Descriptors kept free for everything but client connections.",
        &[(None, s.file_reserve)],
    );
    let w = &sources.wakes;
    metric(
        "rotor_edge_wakes_total",
        Kind::Counter,
        "Parked projects woken by a request through the edge.",
        &[(None, w.allowed())],
    );
    let refused: Vec<_> = WakeRefusal::ALL
        .iter()
        .map(|r| Some(("reason", r.reason())))
        .zip(WakeRefusal::ALL.map(|r| w.refused_total(r)))
        .collect();
    metric(
        "rotor_edge_wakes_refused_total",
        Kind::Counter,
        "Wakes refused: the address spent its wake budget (rate) or the box had no room (capacity).",
        &refused,
    );
    metric(
        "rotor_edge_wake_burst",
        Kind::Gauge,
        "Wakes one address may cause back to back (ROTOR_EDGE_WAKE_BURST).",
        &[(None, u64::from(w.limits().burst))],
    );
    metric(
        "rotor_edge_wakes_per_minute",
        Kind::Gauge,
        "Wakes one address may cause per minute (ROTOR_EDGE_WAKES_PER_MINUTE).",
        &[(None, u64::from(w.limits().per_minute))],
    );
    let budgets = sources.routes.budgets();
    let labels = BudgetKind::ALL.map(|k| Some(("kind", k.label())));
    let refused: Vec<_> = labels
        .into_iter()
        .zip(BudgetKind::ALL.map(|k| budgets.refused(k)))
        .collect();
    metric(
        "rotor_edge_budget_refused_total",
        Kind::Counter,
        "Requests (requests), WebSocket handshakes (connects) and keyed server API calls (api) answered 429 at the edge because their project spent its plan's budget per second.",
        &refused,
    );
    let by_address: Vec<_> = labels
        .into_iter()
        .zip(BudgetKind::ALL.map(|k| budgets.refused_by_address(k)))
        .collect();
    metric(
        "rotor_edge_address_share_refused_total",
        Kind::Counter,
        "Requests and WebSocket handshakes answered 429 at the edge because their address spent its share of a contended project's budget.",
        &by_address,
    );
    metric(
        "rotor_tenants_running",
        Kind::Gauge,
        "Tenant processes running.",
        &[(None, n(sources.routes.running()))],
    );
    metric(
        "rotor_max_running_tenants",
        Kind::Gauge,
        "Cap on tenant processes running at once (ROTOR_MAX_RUNNING_TENANTS).",
        &[(None, n(sources.max_running))],
    );
    metric(
        "rotor_tenant_evictions_total",
        Kind::Counter,
        "Idle tenants parked early to make room for a wake.",
        &[(None, sources.routes.evictions())],
    );
    e.encode()
}

/// `GET /metrics` over `sources`.
pub fn router(sources: Sources) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let body = render(&sources);
            async move {
                (
                    [(header::CONTENT_TYPE, rotor_exposition::CONTENT_TYPE)],
                    body,
                )
            }
        }),
    )
}

/// Serves [`router`] on the operator's listener until `stop`.
pub async fn serve(listener: TcpListener, sources: Sources, stop: CancellationToken) {
    let served = axum::serve(listener, router(sources))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::caps::EdgeLimits;
    use crate::edge::wakes::WakeLimits;

    #[test]
    fn the_exposition_names_every_reason_and_the_caps() {
        let c = Connections::new(
            EdgeLimits {
                max_connections: 5,
                max_per_address: 1,
            },
            256,
        );
        let _a = c.admit("192.0.2.1".parse().unwrap(), 10).unwrap();
        let _ = c.admit("192.0.2.1".parse().unwrap(), 11);
        let wakes = Arc::new(Wakes::new(WakeLimits {
            burst: 1,
            per_minute: 2,
        }));
        wakes.charge("192.0.2.1".parse().unwrap(), "a").unwrap();
        let _ = wakes.charge("192.0.2.1".parse().unwrap(), "b");
        wakes.refused(WakeRefusal::Capacity);
        let routes = Arc::new(RouteTable::default());
        routes.evicted();
        let one = crate::edge::budgets::EdgeBudget {
            requests_per_second: 1,
            connects_per_second: 1,
        };
        for _ in 0..3 {
            let from = "192.0.2.1".parse().unwrap();
            let _ = routes.budgets().charge("a", one, BudgetKind::Connect, from);
        }
        let text = render(&Sources {
            connections: c,
            wakes,
            routes,
            max_running: 7,
        });
        rotor_exposition::check::exposition(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        for line in [
            "rotor_edge_connections 1",
            "rotor_edge_connections_accepted_total 1",
            "rotor_edge_connections_refused_total{reason=\"per_address\"} 1",
            "rotor_edge_connections_refused_total{reason=\"max_connections\"} 0",
            "rotor_edge_connections_refused_total{reason=\"open_files\"} 0",
            "rotor_edge_max_connections 5",
            "rotor_edge_max_connections_per_address 1",
            "rotor_edge_open_files_limit 256",
            "rotor_edge_open_files_reserve 64",
            "rotor_edge_wakes_total 1",
            "rotor_edge_wakes_refused_total{reason=\"rate\"} 1",
            "rotor_edge_wakes_refused_total{reason=\"capacity\"} 1",
            "rotor_edge_wake_burst 1",
            "rotor_edge_wakes_per_minute 2",
            "rotor_edge_budget_refused_total{kind=\"requests\"} 0",
            "rotor_edge_budget_refused_total{kind=\"connects\"} 1",
            "rotor_edge_budget_refused_total{kind=\"api\"} 0",
            "rotor_edge_address_share_refused_total{kind=\"connects\"} 0",
            "rotor_tenants_running 0",
            "rotor_max_running_tenants 7",
            "rotor_tenant_evictions_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
