//! The HTTP surface of a data-plane process: connection endpoints, the server API, health and
//! metrics, served until shutdown; on shutdown every client is disconnected with 3001 so SDKs
//! reconnect elsewhere.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::handoff::HandoffListener;
use crate::node::Node;
use crate::transport;

/// Every route of a data-plane process; the admin routes only with an admin token.
pub fn router(node: Arc<Node>, admin_token: Option<String>) -> Router {
    let mut app = Router::new()
        .route("/connection/websocket", get(transport::websocket::handler))
        .route(
            "/connection/http_stream",
            axum::routing::post(transport::emulation::http_stream)
                .options(transport::emulation::http_stream),
        )
        .route(
            "/connection/sse",
            get(transport::emulation::sse).post(transport::emulation::sse),
        )
        .route(
            "/emulation",
            axum::routing::post(transport::emulation::emulation)
                .options(transport::emulation::emulation),
        )
        .route(
            "/connection/uni_sse",
            get(transport::uni::sse).post(transport::uni::sse),
        )
        .route(
            "/connection/uni_http_stream",
            axum::routing::post(transport::uni::http_stream),
        )
        .route("/connection/uni_websocket", get(transport::uni::websocket))
        .route(
            "/connection/init",
            get(|| async { Json(serde_json::json!({})) }),
        )
        .route("/health", get(|| async { Json(serde_json::json!({})) }))
        .route("/metrics", get(metrics))
        .merge(crate::api::router());
    if let Some(token) = admin_token.filter(|t| !t.is_empty()) {
        app = app.merge(crate::admin::router(token));
    }
    app.with_state(node)
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let (channels, _) = node.hub.counts();
    let mut body = node.metrics.render();
    body.push_str(&format!(
        "# HELP rotor_channels Channels with local subscribers.\n# TYPE rotor_channels gauge\nrotor_channels {channels}\n"
    ));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}

/// Serves `node` on `listener` until `shutdown` resolves, then disconnects every client
/// (3001) and waits up to `drain` for connections to close.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    admin_token: Option<String>,
) -> std::io::Result<()> {
    serve_with_handoff(listener, None, node, shutdown, drain, admin_token).await
}

/// [`serve`], also serving connections handed over on `handoff` (see [`crate::handoff`]); both
/// stop and drain together.
pub async fn serve_with_handoff(
    listener: TcpListener,
    handoff: Option<HandoffListener>,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    admin_token: Option<String>,
) -> std::io::Result<()> {
    let app = router(node.clone(), admin_token);
    let token = node.shutdown.clone();
    let handoff = handoff.map(|h| tokio::spawn(h.serve(app.clone(), token.clone())));
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        let token = token.clone();
        async move {
            shutdown.await;
            token.cancel();
        }
    });
    let served = server.await;
    // An early listener error ends the TCP server: stop the hand-off listener too.
    token.cancel();
    served?;
    let deadline = tokio::time::Instant::now() + drain;
    if let Some(task) = handoff {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    while node.metrics.connections.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
