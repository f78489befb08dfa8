//! Connections handed over by the control plane's edge. With `--handoff-socket PATH` the process
//! also listens on a Unix-domain socket; the edge sends each routed request it holds whole (a
//! WebSocket upgrade, an API call, an SSE or HTTP-stream request) there as the client's TCP
//! socket itself (SCM_RIGHTS) plus the rewritten request head and body, and this module
//! serves it with the same router as the TCP listener, so the edge is out of the data path. The
//! wire format lives in [`rotor_tenant_config::handoff`], shared with the edge.
//!
//! A handed-off socket carries exactly one request: the edge routed (and rewrote the head of)
//! that one request only, so a second one pipelined or kept alive behind it — which could
//! forge `X-Forwarded-For` or name another route — is never read; after a response that is not
//! an upgrade the connection closes.
//!
//! Shutdown is the TCP listener's: accepting stops when `node.shutdown` fires, in-flight requests
//! end gracefully, upgraded WebSockets are disconnected with 3001 by their own loops and counted
//! in `node.metrics.connections` like any other.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rotor_tenant_config::handoff::{self as wire, ACCEPTED, REFUSED, STEP_TIMEOUT};
use rotor_tenant_config::prefixed::PrefixedStream;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The hand-off socket, bound and not yet serving.
pub struct HandoffListener {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file this process created: on exit it removes the file
    /// only if it is still this one (a successor may have replaced it).
    file: Option<(u64, u64)>,
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
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts hand-offs until `stop`, serving each with `app`; then removes the socket file and
    /// waits for the connections it serves to end.
    pub async fn serve(self, app: Router, stop: CancellationToken) {
        let tracker = TaskTracker::new();
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
            tracker.spawn(take(unix, app.clone(), stop.clone()));
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
    }
}

/// Receives one connection, acknowledges it and serves it.
async fn take(mut unix: UnixStream, app: Router, stop: CancellationToken) {
    let received = match wire::receive(&unix).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "hand-off message dropped");
            return;
        }
    };
    let peer = received.peer;
    let stream = if stop.is_cancelled() {
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
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    // From here the connection is ours whether or not the edge hears it.
    let _ = tokio::time::timeout(STEP_TIMEOUT, unix.write_all(&[ACCEPTED])).await;
    drop(unix);
    serve_connection(stream, received.payload, peer, app, stop).await;
}

/// Serves the one request of a client connection whose first bytes are `prefix` (and its
/// upgrade, if it asks for one), as the TCP listener would; then closes it.
async fn serve_connection(
    stream: TcpStream,
    prefix: Vec<u8>,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
) {
    let io = TokioIo::new(PrefixedStream::new(prefix, stream));
    let service = TowerToHyperService::new(
        app.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        })
        .map_response(last_response),
    );
    // Not `keep_alive(false)`: hyper would then add `Connection: close` to a `101 Switching
    // Protocols` too, and WebSocket clients refuse that handshake. Each response says it is
    // the last instead (an upgrade ends HTTP on the connection by itself).
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service)
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
        tracing::debug!(%peer, error = %e, "handed-off connection ended");
    }
}

/// Makes every response but an upgrade the connection's last: hyper then closes the
/// connection after it and never reads a request pipelined or kept alive behind it.
fn last_response(mut response: Response) -> Response {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
