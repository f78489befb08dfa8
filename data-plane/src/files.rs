//! Open files as a budget: every client connection holds one, so near the process's open-file
//! limit a new connection is refused cleanly (503 with `Retry-After`, before any upgrade, and
//! counted as `rotor_connections_refused_total{reason="open_files"}`) instead of the process
//! failing `accept` and its own file opens (Redis, proxies, logs) at random.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::node::Node;

/// Files kept free for everything that is not a client connection (listeners, Redis and
/// proxy connections, requests being read): 64, or 5 % of a large limit.
pub fn reserve(limit: u64) -> u64 {
    (limit / 20).max(64)
}

/// Whether a new connection fits with `open` connections under the soft limit `limit`.
pub fn fits(open: u64, limit: u64) -> bool {
    open.saturating_add(reserve(limit)) < limit
}

/// Middleware for the connection endpoints: refuses a new connection near the limit.
pub async fn refuse_near_limit(
    State(node): State<Arc<Node>>,
    req: Request,
    next: Next,
) -> Response {
    match room(&node) {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Whether a new connection fits under the open-file limit; the answer that refuses it if not
/// (the middleware's check, also made where a WebSocket opens before the router,
/// [`crate::transport::early`]).
pub(crate) fn room(node: &Node) -> Result<(), AtCapacity> {
    let open = u64::try_from(node.metrics.sockets.get()).unwrap_or(0);
    let limit = soft_limit();
    if fits(open, limit) {
        return Ok(());
    }
    node.metrics.connections_refused.inc("open_files");
    tracing::warn!(open, limit, "connection refused: near the open-file limit");
    Err(AtCapacity)
}

/// How long a reading of the soft limit serves: the limit changes only when this process or
/// its supervisor (`prlimit` on a plan change) sets it, and a connect storm should not pay a
/// system call per connection to learn that it did not.
const LIMIT_FRESH_MS: u32 = 1000;

/// The soft open-file limit, read again at most every [`LIMIT_FRESH_MS`]. A limit lowered
/// from outside is seen within that time; until then `accept` itself fails past it, which
/// the accept loop survives.
fn soft_limit() -> u64 {
    static LIMIT: AtomicU64 = AtomicU64::new(0);
    static READ_AT: AtomicU32 = AtomicU32::new(0);
    let now = crate::clock::millis();
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit != 0 && now.wrapping_sub(READ_AT.load(Ordering::Relaxed)) < LIMIT_FRESH_MS {
        return limit;
    }
    let limit = rotor_tenant_config::fdlimit::soft_limit().max(1);
    LIMIT.store(limit, Ordering::Relaxed);
    READ_AT.store(now, Ordering::Relaxed);
    limit
}

/// A new connection refused for want of room ([`at_capacity`] is its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCapacity;

impl IntoResponse for AtCapacity {
    fn into_response(self) -> Response {
        at_capacity()
    }
}

/// The answer to a new connection the server has no room for (open files here, the tenant's
/// `client.connection_limit` in [`crate::transport::slot`]): 503 with `Retry-After`, before
/// any upgrade, closing the connection; SDKs treat it as a transport error and retry later.
pub(crate) fn at_capacity() -> Response {
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"error": {"code": "too_many_connections", "message": "this server is at its connection capacity; retry shortly"}})),
    )
        .into_response();
    let headers = resp.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_keeps_room_for_everything_else() {
        assert_eq!(reserve(256), 64);
        assert_eq!(reserve(20_000), 1_000);
        assert!(fits(191, 256));
        assert!(!fits(192, 256));
        assert!(fits(18_999, 20_000) && !fits(19_000, 20_000));
        assert!(fits(0, u64::MAX));
    }

    #[test]
    fn the_kept_reading_is_the_limit_in_force() {
        let limit = rotor_tenant_config::fdlimit::soft_limit();
        assert_eq!(soft_limit(), limit);
        assert_eq!(soft_limit(), limit, "read again from the kept value");
    }
}
