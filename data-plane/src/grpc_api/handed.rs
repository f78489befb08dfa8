//! A hosted project's gRPC server API: HTTP/2 connections the edge hands over (see
//! [`rotor_handoff::grpc`]) instead of a listener of the process's own. The
//! server is started on the first such connection, so a project that never uses gRPC pays
//! nothing for it, and stops with the node like the listener would.
//!
//! Calls on a handed-off connection are held to the plan's request rate for the whole project
//! (the rate the edge marked the connection with, shared with kept HTTP API connections, see
//! [`crate::kept_alive`]), whether their key is good or not; `grpc_api.enabled` is read per
//! call, so switching the API off in the project's settings refuses calls at once, on
//! connections already open too. A connection whose calls fail authentication
//! [`MAX_AUTH_FAILURES`] times is ended (its socket fails under the HTTP/2 server, which drops
//! it), as a kept HTTP connection ends on a 401 or 403: a client cannot try keys without end
//! on one connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use rotor_tenant_config::prefixed::PrefixedStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::kept_alive::FollowUps;
use crate::node::Node;

/// Handed-off connections waiting for the server to take them.
const QUEUE: usize = 256;

/// Calls on one handed-off connection that may fail authentication before it is ended.
pub const MAX_AUTH_FAILURES: u32 = 5;

/// What each call on a handed-off connection knows of it (in the request's extensions).
#[derive(Clone)]
pub struct HandedCall {
    pub peer: SocketAddr,
    /// Calls per second for the whole project (0: no limit).
    pub rate: u32,
    pub follow_ups: Arc<FollowUps>,
    /// This connection's authentication failures, and the switch that ends it.
    pub(crate) guard: Arc<ConnectionGuard>,
}

impl HandedCall {
    /// A new connection from `peer`, held to `rate` with the project's `follow_ups`.
    pub fn new(peer: SocketAddr, rate: u32, follow_ups: Arc<FollowUps>) -> Self {
        Self {
            peer,
            rate,
            follow_ups,
            guard: Arc::default(),
        }
    }
}

/// Counts one connection's failed authentications and ends the connection at
/// [`MAX_AUTH_FAILURES`]: its reads fail from then on, and the server drops it.
#[derive(Default)]
pub(crate) struct ConnectionGuard {
    failures: AtomicU32,
    ended: AtomicBool,
    reader: AtomicWaker,
}

impl ConnectionGuard {
    /// Records a call refused for its key; ends the connection at the limit.
    pub(crate) fn auth_failed(&self, peer: SocketAddr) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= MAX_AUTH_FAILURES && !self.ended.swap(true, Ordering::AcqRel) {
            tracing::debug!(%peer, failures, "gRPC connection ended: too many calls without a valid key");
            self.reader.wake();
        }
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// A handed-off client connection, its first bytes (the preface the edge read) served first.
pub struct HandedStream {
    inner: PrefixedStream,
    call: HandedCall,
}

impl Connected for HandedStream {
    type ConnectInfo = HandedCall;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.call.clone()
    }
}

impl AsyncRead for HandedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.call.guard.reader.register(cx.waker());
        if self.call.guard.ended() {
            return Poll::Ready(Err(ended()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HandedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.call.guard.ended() {
            return Poll::Ready(Err(ended()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error an ended connection's reads and writes fail with.
fn ended() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "too many calls without a valid key",
    )
}

/// The gRPC API of handed-off connections, started on the first one.
pub struct Handed {
    node: Arc<Node>,
    stop: CancellationToken,
    state: Mutex<Option<Running>>,
}

struct Running {
    incoming: mpsc::Sender<io::Result<HandedStream>>,
    task: JoinHandle<()>,
}

impl Handed {
    /// Serves the gRPC API of `node` on handed-off connections until `stop`.
    pub fn new(node: Arc<Node>, stop: CancellationToken) -> Self {
        Self {
            node,
            stop,
            state: Mutex::new(None),
        }
    }

    /// Serves `stream`, whose first bytes `early` the edge read (from the HTTP/2 preface on).
    /// A full queue or a stopping node closes the connection.
    pub fn serve(&self, stream: TcpStream, early: Vec<u8>, call: HandedCall) {
        let peer = call.peer;
        let conn = HandedStream {
            inner: PrefixedStream::new(early, stream),
            call,
        };
        let Some(incoming) = self.incoming() else {
            tracing::debug!(%peer, "gRPC connection closed: the gRPC API could not start");
            return;
        };
        if let Err(e) = incoming.try_send(Ok(conn)) {
            tracing::warn!(%peer, error = %e, "gRPC connection closed: too many waiting to be served");
        }
    }

    fn incoming(&self) -> Option<mpsc::Sender<io::Result<HandedStream>>> {
        if self.stop.is_cancelled() {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = state.as_ref() {
            return Some(running.incoming.clone());
        }
        // Hosted: no TLS (the edge's front ends it) and the default message bound.
        let api = rotor_tenant_config::GrpcApi {
            enabled: true,
            ..Default::default()
        };
        let server = match super::server(&api, self.node.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "gRPC API cannot start");
                return None;
            }
        };
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let stop = self.stop.clone();
        let task = tokio::spawn(async move {
            let incoming = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
            if let Err(e) = server
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
            {
                tracing::warn!(error = %e, "gRPC API of handed-off connections failed");
            }
        });
        tracing::info!("gRPC API started for handed-off connections");
        *state = Some(Running {
            incoming: tx.clone(),
            task,
        });
        Some(tx)
    }

    /// Waits for the server to finish its calls in flight (after `stop`).
    pub async fn finished(&self) {
        let task = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(|r| r.task);
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
