//! The socket slot every connection endpoint takes before anything else: a client socket
//! counts against `client.connection_limit` from the moment its request reaches a connection
//! endpoint, before its upgrade or body and long before its `connect` command, so sockets that
//! never authenticate cannot pile up past the limit (they are closed after
//! `client.stale_close_delay`, see [`crate::session::Session::new`]). Past the limit the request
//! is answered 503 before any upgrade and counted in
//! `rotor_connections_refused_total{reason="connection_limit"}` and
//! `rotor_budget_refusals_total{budget="connections"}`. [`within_stale_delay`] bounds the time
//! a request may take to arrive whole (the HTTP transports' `connect` is in the body), and the
//! TCP listener bounds the wait for a request head the same way ([`crate::server`]).
//!
//! Before the slot, `client.connection_rate_limit` (new sockets per second, as Centrifugo's
//! connection middleware): a request past the rate is answered 503 the same way and counted in
//! `rotor_connections_refused_total{reason="connection_rate_limit"}`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;

use crate::budgets::SocketPermit;
use crate::files::AtCapacity;
use crate::node::Node;

/// A counted client socket, handed to the session the request starts.
#[derive(Debug)]
pub struct SocketSlot(pub SocketPermit);

impl FromRequestParts<Arc<Node>> for SocketSlot {
    type Rejection = AtCapacity;

    async fn from_request_parts(
        _parts: &mut Parts,
        node: &Arc<Node>,
    ) -> Result<Self, Self::Rejection> {
        take(node).map(SocketSlot)
    }
}

/// Counts a new client socket, or answers why it may not open: past
/// `client.connection_rate_limit`, or at `client.connection_limit`.
pub(crate) fn take(node: &Arc<Node>) -> Result<SocketPermit, AtCapacity> {
    let rate = node.config.load().tenant.client.connection_rate_limit;
    if !node.connect_limiter.try_acquire(rate) {
        node.metrics
            .connections_refused
            .inc("connection_rate_limit");
        tracing::debug!(rate, "connection refused: connection rate limit");
        return Err(AtCapacity);
    }
    node.budgets.admit_socket().map_err(|e| {
        node.metrics.connections_refused.inc("connection_limit");
        tracing::info!(error = %e, "connection refused: connection limit");
        AtCapacity
    })
}

/// Middleware for the connection endpoints: the request must be complete (head and body, which
/// carries the `connect` command of the HTTP transports) within `client.stale_close_delay`, or
/// it is answered 408 and its connection closed — a slow body holds its slot no longer than a
/// silent WebSocket does.
pub async fn within_stale_delay(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let delay = crate::session::stale_close_delay(&node.config.load().tenant.client);
    match tokio::time::timeout(delay, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let mut resp =
                (StatusCode::REQUEST_TIMEOUT, "request not completed in time").into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}
