//! Connections handed over by the control plane's edge. With `--handoff-socket PATH` the process
//! also listens on a Unix-domain socket; the edge sends each routed request it holds whole (a
//! WebSocket upgrade, an API call, an SSE or HTTP-stream request) there as the client's TCP
//! socket itself (SCM_RIGHTS) plus the rewritten request head and body, and this module
//! serves it with the same router as the TCP listener, so the edge is out of the data path. The
//! wire format lives in [`rotor_handoff`], shared with the edge.
//!
//! A gRPC connection (HTTP/2, marked by the edge, see [`rotor_handoff::grpc`])
//! is the gRPC API's for its whole life ([`crate::grpc_api::Handed`]).
//!
//! A handed-off socket otherwise carries exactly one request: the edge routed (and rewrote the head of)
//! that one request only, so a second one pipelined or kept alive behind it — which could
//! forge `X-Forwarded-For` or name another route — is never read; after a response that is not
//! an upgrade the connection closes. The one exception is a server API call the edge granted
//! keep-alive (one of the project's own keys): its follow-up API calls are served here, each
//! checked and rewritten as the edge would have ([`crate::kept_alive`]).
//!
//! Shutdown is the TCP listener's: accepting stops when `node.shutdown` fires, in-flight requests
//! end gracefully, upgraded WebSockets are disconnected with 3001 by their own loops and counted
//! in `node.metrics.connections` like any other.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rotor_handoff::grpc;
use rotor_handoff::{self as wire, ACCEPTED, REFUSED, STEP_TIMEOUT};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::grpc_api::{Handed, HandedCall};
use crate::kept_alive::{self, Connection, FollowUps};
use crate::node::Node;
use crate::socket::SharedSocket;
use crate::transport::early::{self, Opened, Session};

/// The hand-off socket, bound and not yet serving.
pub struct HandoffListener {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file this process created: on exit it removes the file
    /// only if it is still this one (a successor may have replaced it).
    file: Option<(u64, u64)>,
    /// How long a kept API connection may sit without a request.
    idle: Duration,
    /// Where gRPC connections go (a hosted project's gRPC API); without it they are closed.
    grpc: Option<Arc<Handed>>,
}

impl HandoffListener {
    /// Binds `path` (mode 0600), replacing a stale socket left there.
    pub fn bind(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let listener = wire::bind(&path)?;
        let file = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        Ok(Self {
            listener,
            path,
            file,
            idle: kept_alive::IDLE,
            grpc: None,
        })
    }

    /// Closes kept API connections after `idle` without a request instead of
    /// [`kept_alive::IDLE`].
    pub fn with_keep_alive_idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Serves the gRPC connections the edge hands over with `grpc`.
    pub fn with_grpc(mut self, grpc: Arc<Handed>) -> Self {
        self.grpc = Some(grpc);
        self
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts hand-offs until `stop`, serving each with `app` (counting in `metrics` what
    /// only this path refuses); then removes the socket file and waits for the connections it
    /// serves to end.
    pub async fn serve(self, app: Router, stop: CancellationToken, node: Arc<Node>) {
        let tracker = TaskTracker::new();
        let follow_ups = Arc::new(FollowUps::new(node.metrics.clone()));
        loop {
            let unix = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((unix, _)) => unix,
                    Err(e) => {
                        tracing::warn!(error = %e, "hand-off accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let served = Served {
                node: node.clone(),
                app: app.clone(),
                stop: stop.clone(),
                follow_ups: follow_ups.clone(),
                idle: self.idle,
                grpc: self.grpc.clone(),
            };
            // As the TCP listener's tasks: one pointer, to the opening, then to the session.
            let opening = Box::pin(take(unix, served));
            tracker.spawn(async move {
                if let Some(session) = opening.await {
                    session.await;
                }
            });
        }
        drop(self.listener);
        let ours = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == self.file {
            let _ = std::fs::remove_file(&self.path);
        }
        tracker.close();
        tracker.wait().await;
        if let Some(grpc) = &self.grpc {
            grpc.finished().await;
        }
    }
}

/// What serving a handed-off connection needs.
struct Served {
    node: Arc<Node>,
    app: Router,
    stop: CancellationToken,
    follow_ups: Arc<FollowUps>,
    idle: Duration,
    grpc: Option<Arc<Handed>>,
}

/// Receives one connection, acknowledges it and serves it; or, when its request opens a
/// WebSocket, returns the session to run.
async fn take(mut unix: UnixStream, served: Served) -> Option<Session> {
    let received = match wire::receive(&unix).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "hand-off message dropped");
            return None;
        }
    };
    let peer = received.peer;
    let stream = if served.stop.is_cancelled() {
        Err(io::Error::other("shutting down"))
    } else {
        received
            .socket
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(received.socket))
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            // The connection was not touched: the edge may still serve it another way.
            tracing::debug!(%peer, error = %e, "hand-off refused");
            let _ = tokio::time::timeout(STEP_TIMEOUT, unix.write_all(&[REFUSED])).await;
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    // From here the connection is ours whether or not the edge hears it.
    let _ = tokio::time::timeout(STEP_TIMEOUT, unix.write_all(&[ACCEPTED])).await;
    drop(unix);
    if let Some((rate, early)) = grpc::parse(&received.payload) {
        // A gRPC connection (HTTP/2): the whole connection is the gRPC API's.
        let call = HandedCall::new(peer, rate, served.follow_ups.clone());
        match &served.grpc {
            Some(grpc) => grpc.serve(stream, early.to_vec(), call),
            None => tracing::debug!(%peer, "gRPC connection closed: no gRPC API here"),
        }
        return None;
    }
    serve_connection(stream, received.payload, peer, served).await
}

/// Serves the request of a client connection whose first bytes are `prefix` (and its upgrade,
/// if it asks for one) as the TCP listener would, and the API calls that follow it when the
/// edge granted keep-alive; then closes it. A WebSocket's session is returned, to be run.
async fn serve_connection(
    stream: TcpStream,
    prefix: Vec<u8>,
    peer: SocketAddr,
    served: Served,
) -> Option<Session> {
    let Served {
        node,
        app,
        stop,
        follow_ups,
        idle,
        grpc: _,
    } = served;
    // The edge's keep-alive grant is not for a WebSocket's session to see.
    let grant = axum::http::HeaderName::from_static(rotor_tenant_config::keep_alive::HEADER);
    let opened = early::handed(&node, stream, prefix, &grant).await;
    drop(node);
    match opened {
        Opened::Session(session) => return Some(session),
        Opened::Http(io) => serve_http(io, peer, app, stop, follow_ups, idle).await,
        Opened::Done => {}
    }
    None
}

/// Serves HTTP on a handed-off connection (the edge's head replays first).
async fn serve_http(
    io: SharedSocket,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
    follow_ups: Arc<FollowUps>,
    idle: Duration,
) {
    let state = Arc::new(Connection::new(peer, follow_ups, idle));
    let requests = state.clone();
    let service = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let state = requests.clone();
        async move {
            let mut req = match state.admit(req) {
                Ok(req) => req,
                Err(refusal) => return Ok::<_, std::convert::Infallible>(*refusal),
            };
            req.extensions_mut().insert(ConnectInfo(peer));
            let response = match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(state.finish(response))
        }
    });
    let io = TokioIo::new(io);
    // Not `keep_alive(false)`: hyper would then add `Connection: close` to a `101 Switching
    // Protocols` too, and WebSocket clients refuse that handshake. Each response says whether
    // it is the last instead (an upgrade ends HTTP on the connection by itself).
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    let result = loop {
        let idle_check = tokio::time::sleep_until(state.idle_deadline());
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            // A kept connection without requests for its idle time closes (a request in flight
            // finishes first; an upgraded connection has left hyper's hands already).
            _ = idle_check, if !closing => {
                if state.is_kept() && state.is_idle() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "handed-off connection ended");
    }
}
