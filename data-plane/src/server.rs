//! The public HTTP surface of a data-plane process: connection endpoints, the server API, health
//! and metrics, served until shutdown together with the hand-off socket and the admin listener
//! (see [`crate::admin`]); on shutdown every client is disconnected with 3001 so SDKs reconnect
//! elsewhere.
//!
//! Nothing internal is public: `/admin/...` exists only on the admin listener, and `/metrics`
//! here answers only a request with one of the project's API keys (as the server API checks
//! them); `http_api.insecure` opens it only to a standalone process (no admin listener), and
//! `prometheus.enabled: false` closes it. It carries Rotor's metric families and Centrifugo's
//! (see [`crate::centrifugo_metrics`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::admin::{metrics, AdminListener};
use crate::auth::apikey::presented_key;
use crate::handoff::HandoffListener;
use crate::node::Node;
use crate::socket::SharedSocket;
use crate::transport;

/// How the process runs, which decides who may read the public `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Alone, from a config file: `http_api.insecure` opens `/metrics` as it opens the API.
    Standalone,
    /// Under a control plane, with an admin listener: `/metrics` needs an API key here.
    Hosted,
}

/// Every public route of a data-plane process (TCP listener and hand-off socket alike).
pub fn router(node: Arc<Node>, mode: Mode) -> Router {
    // Endpoints that open a client connection: each holds an open file while it lasts.
    let connections = Router::new()
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
            "/connection/uni_sse",
            get(transport::uni::sse).post(transport::uni::sse),
        )
        .route(
            "/connection/uni_http_stream",
            axum::routing::post(transport::uni::http_stream),
        )
        .route("/connection/uni_websocket", get(transport::uni::websocket))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            transport::slot::within_stale_delay,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            crate::files::refuse_near_limit,
        ));
    Router::new()
        .merge(connections)
        .route(
            "/emulation",
            axum::routing::post(transport::emulation::emulation)
                .options(transport::emulation::emulation),
        )
        .route(
            "/connection/init",
            get(|| async { Json(serde_json::json!({})) }),
        )
        .route("/health", get(|| async { Json(serde_json::json!({})) }))
        .route(
            "/metrics",
            get(
                move |State(node): State<Arc<Node>>,
                      RawQuery(query): RawQuery,
                      headers: HeaderMap| async move {
                    if node.config.load().tenant.prometheus.enabled == Some(false) {
                        StatusCode::NOT_FOUND.into_response()
                    } else if metrics_allowed(&node, mode, &headers, query.as_deref()) {
                        metrics(&node)
                    } else {
                        StatusCode::UNAUTHORIZED.into_response()
                    }
                },
            ),
        )
        .merge(crate::api::router())
        .layer(axum::middleware::from_fn(close_after_refused_upgrade))
        .with_state(node)
}

/// A request that asked to switch protocols and was answered otherwise is the connection's
/// last: the edge splices such a handshake to this listener when it cannot hand the socket
/// over, so a request kept alive behind a refused handshake would reach the tenant without
/// the edge's rewrite (route, `X-Forwarded-For`, credentials stripped).
async fn close_after_refused_upgrade(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let mut response = next.run(req).await;
    if upgrade && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Whether a public `/metrics` request may read the metrics: with an API key of the project
/// that may call every method (`X-API-Key`, `Authorization: apikey …`, `?api_key=`; a
/// publish-only key may not), or standalone with `http_api.insecure`.
fn metrics_allowed(node: &Node, mode: Mode, headers: &HeaderMap, query: Option<&str>) -> bool {
    let config = node.config.load();
    let api = &config.tenant.http_api;
    presented_key(headers, query)
        .and_then(|k| config.api_keys.check(&k))
        .is_some_and(|scope| scope == rotor_tenant_config::ApiKeyScope::All)
        || (api.insecure && mode == Mode::Standalone)
}

/// Serves `node` on `listener` (and the admin surface on `admin`, when given) until `shutdown`
/// resolves, then disconnects every client (3001) and waits up to `drain` for connections to
/// close.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    admin: Option<AdminListener>,
) -> std::io::Result<()> {
    serve_with_handoff(listener, None, node, shutdown, drain, admin).await
}

/// Accepts TCP connections until `stop` and serves each (HTTP/1.1 with upgrades; a first
/// request that opens a WebSocket, before the router: [`transport::early`]), then waits up to
/// `drain` for the connections being served to finish. Each request head must arrive within
/// `client.stale_close_delay` (which also bounds an idle keep-alive connection), so a socket
/// that never sends a request is closed as one that never sends `connect` is; what a request
/// head routes to a connection endpoint is counted from then on ([`crate::transport::slot`]).
async fn serve_tcp(
    listener: TcpListener,
    app: Router,
    node: Arc<Node>,
    stop: CancellationToken,
    drain: Duration,
) {
    let tracker = TaskTracker::new();
    let nodelay_inherited = nodelay_on_listener(&listener);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of files or a peer that reset during accept: keep listening.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        let opening = Box::pin(serve_tcp_connection(
            stream,
            peer,
            app.clone(),
            node.clone(),
            stop.clone(),
        ));
        // The task itself holds one pointer: the opening, freed once it is done, then the
        // session, if the connection became one.
        tracker.spawn(async move {
            if let Some(session) = opening.await {
                session.await;
            }
        });
    }
    drop(listener);
    tracker.close();
    // WebSocket sessions end on the node's shutdown (3001); the caller waits for the rest.
    let _ = tokio::time::timeout(drain, tracker.wait()).await;
}

/// Sets `TCP_NODELAY` on the listening socket; true where the sockets it accepts inherit it
/// (Linux), so a connection does not need its own system call for it.
fn nodelay_on_listener(listener: &TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

/// Serves one accepted TCP connection until it closes, or gracefully once `stop` fires; or,
/// when its first request opens a WebSocket, returns the session to run.
async fn serve_tcp_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    node: Arc<Node>,
    stop: CancellationToken,
) -> Option<transport::early::Session> {
    let head_timeout = crate::session::stale_close_delay(&node.config.load().tenant.client);
    let opened = transport::early::accepted(&node, stream, head_timeout).await;
    drop(node);
    match opened {
        transport::early::Opened::Session(session) => return Some(session),
        transport::early::Opened::Http(io) => serve_http(io, peer, app, stop, head_timeout).await,
        transport::early::Opened::Done => {}
    }
    None
}

/// Serves HTTP on a client's connection (what was read of it already replays first).
async fn serve_http(
    io: SharedSocket,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
    head_timeout: Duration,
) {
    let service = TowerToHyperService::new(app.map_request(
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        },
    ));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// [`serve`], also serving connections handed over on `handoff` (see [`crate::handoff`]); the
/// public listener, the hand-off socket and the admin listener stop and drain together (and
/// when one of them fails, all stop).
pub async fn serve_with_handoff(
    listener: TcpListener,
    handoff: Option<HandoffListener>,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    admin: Option<AdminListener>,
) -> std::io::Result<()> {
    let mode = if admin.is_some() {
        Mode::Hosted
    } else {
        Mode::Standalone
    };
    let app = router(node.clone(), mode);
    let token = node.shutdown.clone();
    let handoff = handoff.map(|h| {
        let grpc = Arc::new(crate::grpc_api::Handed::new(node.clone(), token.clone()));
        tokio::spawn(
            h.with_grpc(grpc)
                .serve(app.clone(), token.clone(), node.clone()),
        )
    });
    let admin = admin.map(|a| tokio::spawn(a.serve(node.clone(), token.clone())));
    let stop_on_signal = {
        let token = token.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                // The admin listener ended: stop the public one with it.
                _ = token.cancelled() => {}
            }
            token.cancel();
        }
    };
    // On a worker of the runtime, not on the thread that waits for this function: each new
    // connection's task then starts on the worker that accepted it, not through the shared
    // queue and a wake-up of another thread.
    let tcp = tokio::spawn(serve_tcp(listener, app, node.clone(), token.clone(), drain));
    tokio::join!(
        async {
            if let Err(e) = tcp.await {
                tracing::warn!(error = %e, "TCP listener task failed");
            }
        },
        stop_on_signal
    );
    let deadline = tokio::time::Instant::now() + drain;
    if let Some(task) = handoff {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    if let Some(task) = admin {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "admin listener failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "admin listener task failed"),
            Ok(Ok(Ok(()))) | Err(_) => {}
        }
    }
    while node.metrics.connections.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Events of the connections that just closed (and removals held for grace) are sent
    // before the process goes.
    node.webhooks
        .drained(deadline.max(tokio::time::Instant::now() + Duration::from_secs(2)))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted connection must have Nagle's algorithm off (small frames go out at
    /// once), whether the listener passed it on or the connection set it itself.
    #[tokio::test]
    async fn accepted_connections_have_nodelay_from_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inherited = nodelay_on_listener(&listener);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        if inherited {
            assert!(accepted.nodelay().unwrap(), "inherited from the listener");
        }
    }
}
