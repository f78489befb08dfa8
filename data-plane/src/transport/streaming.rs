//! What the HTTP streaming transports share: a long-lived response whose body is fed through a
//! bounded channel by the connection's task, and the browser `Origin` check.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::origin::origin_allowed;
use crate::node::Node;

/// The sending side of a streamed body; closed when the client goes away.
pub type BodyTx = mpsc::Sender<Result<Bytes, Infallible>>;

/// A channel and the 200 response streaming whatever is sent into it.
pub fn response(content_type: &'static str) -> (BodyTx, Response) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .header("X-Accel-Buffering", "no")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    (tx, response)
}

/// A 403 when the request's `Origin` is not allowed for this tenant.
pub fn refuse_origin(node: &Node, headers: &HeaderMap) -> Option<Response> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let allowed = origin_allowed(&node.config.load().tenant.client.allowed_origins, origin);
    (!allowed).then(|| (StatusCode::FORBIDDEN, "origin not allowed").into_response())
}
