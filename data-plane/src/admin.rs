//! The internal admin surface a control plane uses: push a whole config (validated, then
//! swapped without touching connections) and read status. Enabled only when the process has
//! an admin token (`ROTOR_ADMIN_TOKEN`), and every call must present it as a Bearer token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rotor_tenant_config::TenantConfig;
use serde_json::{json, Value};

use crate::config::ApplyError;
use crate::node::Node;

/// Admin routes, guarded by `token`.
pub fn router(token: String) -> Router<Arc<Node>> {
    let token = Arc::new(token);
    Router::new()
        .route("/admin/config", put(put_config))
        .route("/admin/status", get(status))
        .route("/admin/usage", get(usage))
        .route("/admin/api/{method}", post(api_call))
        .route_layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move {
                let presented = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default();
                if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                next.run(req).await
            }
        }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    for w in &loaded.warnings {
        tracing::warn!("pushed config: {w}");
    }
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

/// Counters since the process started; the control plane turns them into per-minute usage.
async fn usage(State(node): State<Arc<Node>>) -> Json<Value> {
    let (clients, users) = node.registry.counts();
    let m = &node.metrics;
    Json(json!({
        "node": node.id,
        "connections": clients,
        "users": users,
        "connections_accepted": m.connections_accepted.get(),
        "messages_published": m.messages_published.get(),
        "messages_delivered": m.messages_delivered.get(),
        "bytes_in": m.bytes_in.get(),
        "bytes_out": m.bytes_out.get(),
        "api_calls": m.api_calls.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "errors": m.client_errors.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "disconnects": m.disconnects.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "namespaces": m.namespaces.snapshot(),
    }))
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
