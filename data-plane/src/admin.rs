//! The internal admin surface a control plane uses: push a whole config (validated, then
//! swapped without touching connections), read status and usage, scrape metrics. Enabled only
//! when the process has an admin token (`ROTOR_ADMIN_TOKEN`), and served only on its own
//! listener ([`AdminListener`], loopback by default), never on the public one or the hand-off
//! socket: `/admin/...` and `/metrics` there need the token as a Bearer token; `/health` is open.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rotor_tenant_config::secret_eq::secret_eq;
use rotor_tenant_config::TenantConfig;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ApplyError;
use crate::node::Node;

/// Where the admin listener binds unless told otherwise (`ROTOR_ADMIN_ADDRESS`,
/// `--admin-address`).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:0";

/// Why the admin listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// An empty token would let anyone in.
    #[error("the admin token is empty")]
    EmptyToken,
    /// The address cannot be bound.
    #[error("cannot bind the admin listener at {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: io::Error,
    },
}

/// The admin listener: a TCP socket apart from the public one and the token every call there
/// presents. Bound, not yet serving.
pub struct AdminListener {
    listener: TcpListener,
    token: String,
}

impl std::fmt::Debug for AdminListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("AdminListener")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl AdminListener {
    /// Serves the admin surface on `listener`, guarded by `token` (which must not be empty).
    pub fn new(listener: TcpListener, token: String) -> Result<Self, AdminError> {
        if token.is_empty() {
            return Err(AdminError::EmptyToken);
        }
        Ok(Self { listener, token })
    }

    /// Binds `address` (`host:port`, port 0 picks a free one) for the admin surface.
    pub async fn bind(address: &str, token: String) -> Result<Self, AdminError> {
        if token.is_empty() {
            // Refused before anything is bound.
            return Err(AdminError::EmptyToken);
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError::Bind {
                address: address.to_owned(),
                source,
            })?;
        Self::new(listener, token)
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` fires, then finishes in-flight requests. Ending for any other
    /// reason fires `stop` too, so the public listener never outlives its admin surface.
    pub async fn serve(self, node: Arc<Node>, stop: CancellationToken) -> io::Result<()> {
        let app = router(node, self.token);
        let served = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .await;
        stop.cancel();
        served
    }
}

/// Every route of the admin listener: the admin API and `/metrics` guarded by `token`, and
/// `/health`.
pub fn router(node: Arc<Node>, token: String) -> Router {
    let token = Arc::new(token);
    Router::new()
        .route("/admin/config", put(put_config))
        .route("/admin/status", get(status))
        .route("/admin/usage", get(usage))
        .route("/admin/park", axum::routing::post(park))
        .route("/admin/webhooks", get(webhooks))
        .route("/admin/webhooks/redeliver", post(redeliver))
        .route("/admin/api/{method}", post(api_call))
        .route(
            "/metrics",
            get(|State(node): State<Arc<Node>>| async move { metrics(&node) }),
        )
        .route_layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move {
                let presented = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default();
                if !secret_eq(token.as_bytes(), presented.as_bytes()) {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                next.run(req).await
            }
        }))
        .route("/health", get(|| async { Json(json!({})) }))
        .with_state(node)
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn put_config(State(node): State<Arc<Node>>, Json(body): Json<Value>) -> Response {
    let loaded = match TenantConfig::from_value(body) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_config", e.to_string()),
    };
    match node.config.apply(loaded.config) {
        Ok(version) => {
            tracing::info!(version, "config applied");
            Json(json!({"version": version})).into_response()
        }
        Err(e @ ApplyError::Stale { .. }) => {
            error(StatusCode::CONFLICT, "stale_version", e.to_string())
        }
        Err(e @ ApplyError::Invalid(_)) => {
            error(StatusCode::BAD_REQUEST, "invalid_config", e.to_string())
        }
        Err(e @ ApplyError::Restart(_)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "restart_required",
            e.to_string(),
        ),
    }
}

async fn status(State(node): State<Arc<Node>>) -> Json<Value> {
    let config = node.config.load();
    let (clients, users) = node.registry.counts();
    let (channels, subs) = node.hub.counts();
    Json(json!({
        "tenant_id": config.tenant.rotor.tenant_id,
        "config_version": config.tenant.rotor.config_version,
        "node": node.id,
        "num_clients": clients,
        "num_users": users,
        "num_channels": channels,
        "num_subs": subs,
        "uptime": node.started.elapsed().as_secs(),
    }))
}

/// Counters since the process started; the control plane turns them into per-minute usage
/// (supervised tenants also push them, see [`crate::report`]).
async fn usage(State(node): State<Arc<Node>>) -> Json<Value> {
    Json(crate::report::usage(&node))
}

/// The webhooks' state: whether they are on, events waiting, and the dead-letter ring (what
/// the dashboard will show).
async fn webhooks(State(node): State<Arc<Node>>) -> Json<Value> {
    Json(json!(node.webhooks.snapshot(&*node)))
}

/// `POST /admin/webhooks/redeliver`: `{"webhook_id": "…"}` sends that dead letter again,
/// `{"all": true}` every one; answers how many batches and events were queued.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Redeliver {
    #[serde(default)]
    webhook_id: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn redeliver(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    use crate::webhooks::RedeliverError;
    let asked = match serde_json::from_slice::<Redeliver>(&body) {
        Ok(Redeliver {
            webhook_id: Some(id),
            all: false,
        }) if !id.is_empty() => Some(id),
        Ok(Redeliver {
            webhook_id: None,
            all: true,
        }) => None,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give either {\"webhook_id\": \"…\"} or {\"all\": true}".into(),
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    };
    match node.webhooks.redeliver(&*node, asked.as_deref()) {
        Ok(done) => Json(json!(done)).into_response(),
        Err(e @ RedeliverError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        Err(e @ (RedeliverError::Disabled | RedeliverError::Busy(_))) => {
            error(StatusCode::CONFLICT, "conflict", e.to_string())
        }
    }
}

/// The supervisor parks an idle tenant: 200 and a graceful stop, or 409 while stopping would
/// lose something (open sockets, unexpired memory-engine history).
async fn park(State(node): State<Arc<Node>>) -> Response {
    match crate::report::park(&node).await {
        Ok(()) => Json(json!({"parked": true})).into_response(),
        Err(busy) => error(StatusCode::CONFLICT, "busy", busy.to_string()),
    }
}

/// A server API call made by the control plane on the tenant owner's behalf (the dashboard's
/// debug console): the same methods and replies as `/api/{method}`, authorised by the admin
/// token instead of an API key.
async fn api_call(
    State(node): State<Arc<Node>>,
    Path(method): Path<String>,
    body: Bytes,
) -> Response {
    match crate::api::call_internal(&node, &method, &body).await {
        Ok(reply) => Json(reply).into_response(),
        Err(crate::api::ApiError::BadRequest(m)) => {
            error(StatusCode::BAD_REQUEST, "bad_request", m)
        }
        Err(crate::api::ApiError::Client(e)) => {
            Json(json!({"error": crate::api::error_json(&e)})).into_response()
        }
    }
}

/// The Prometheus exposition of `node` (public `/metrics` once allowed, and the admin one).
pub(crate) fn metrics(node: &Node) -> Response {
    // One walk of the hub's shards serves both families.
    let (num_channels, num_subscriptions) = node.hub.counts();
    let mut exposition = rotor_exposition::Exposition::default();
    node.metrics.expose(&mut exposition);
    exposition.gauge(
        "rotor_channels",
        "Channels with local subscribers.",
        i64::try_from(num_channels).unwrap_or(i64::MAX),
    );
    node.budgets.expose(&mut exposition);
    let (num_clients, num_users) = node.registry.counts();
    let gauges = crate::centrifugo_metrics::NodeGauges {
        num_clients,
        num_users,
        num_channels,
        num_subscriptions,
        num_nodes: node.cluster.live_nodes().len().max(1),
    };
    node.metrics
        .centrifugo
        .expose_node(&mut exposition, &gauges);
    let mut body = exposition.encode();
    // Centrifugo counts the disconnects the server decides, not a client going away (3000).
    let server_disconnects: Vec<(String, u64)> = node
        .metrics
        .disconnects
        .snapshot()
        .into_iter()
        .filter(|(code, _)| code != "3000")
        .collect();
    node.metrics
        .centrifugo
        .render(&mut body, &server_disconnects);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, rotor_exposition::CONTENT_TYPE)],
        body,
    )
        .into_response()
}
