//! The edge: one public listener. Requests under `/t/{slug}/…` are handed to that tenant's
//! process with the request head rewritten (prefix stripped). A WebSocket upgrade hands the
//! client's TCP socket itself to the tenant (SCM_RIGHTS over its hand-off socket, see
//! [`rotor_tenant_config::handoff`]), so the edge leaves the data path; other requests, and
//! upgrades a tenant cannot take, are spliced byte for byte, so SSE and streaming pass through
//! untouched. Everything else is served by the control plane's own app (REST API, dashboard).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::{Buf, BytesMut};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rotor_tenant_config::handoff::{self, Outcome};
use rotor_tenant_config::prefixed::PrefixedStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::supervisor::{Route, RouteTable};

/// Largest request head the edge reads before routing.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head (slowloris guard); 10 s unless
/// `ROTOR_EDGE_HEAD_TIMEOUT_MS` says otherwise.
fn head_timeout() -> Duration {
    static TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *TIMEOUT.get_or_init(|| {
        std::env::var("ROTOR_EDGE_HEAD_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(10))
    })
}

/// Accepts connections until `stop`, routing each one.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<RouteTable>,
    app: Router,
    stop: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let routes = routes.clone();
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, peer, routes, app).await {
                tracing::debug!(%peer, error = %e, "edge connection ended");
            }
        });
    }
}

enum Target {
    Tenant {
        slug: String,
        head: Vec<u8>,
        upgrade: bool,
    },
    ControlPlane,
}

async fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    routes: Arc<RouteTable>,
    app: Router,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(2048);
    let (head_len, target) =
        match tokio::time::timeout(head_timeout(), read_head(&mut stream, &mut buf, peer)).await {
            Ok(Ok(Some(v))) => v,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(HeadError::TooLarge)) => {
                return respond(
                    &mut stream,
                    "431 Request Header Fields Too Large",
                    "request head too large",
                )
                .await
            }
            Ok(Err(HeadError::Malformed)) => {
                return respond(&mut stream, "400 Bad Request", "malformed request").await
            }
            Ok(Err(HeadError::Io(e))) => return Err(e),
            Err(_) => {
                return respond(&mut stream, "408 Request Timeout", "request head timeout").await
            }
        };
    match target {
        Target::ControlPlane => {
            let io = TokioIo::new(PrefixedStream::new(buf.into(), stream));
            let service = TowerToHyperService::new(app.map_request(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(crate::web::PeerAddr(peer));
                    req
                },
            ));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(head_timeout())
                .serve_connection(io, service)
                .with_upgrades();
            conn.await.map_err(io::Error::other)
        }
        Target::Tenant {
            slug,
            head,
            upgrade,
        } => {
            let (addr, handoff) = match routes.get(&slug) {
                Some(Route::Active { addr, handoff }) => (addr, handoff),
                Some(Route::Suspended) => {
                    return respond(&mut stream, "403 Forbidden", "project is suspended").await
                }
                Some(Route::Starting) => {
                    return respond(
                        &mut stream,
                        "503 Service Unavailable",
                        "project is starting",
                    )
                    .await
                }
                None => return respond(&mut stream, "404 Not Found", "unknown project").await,
            };
            if let Some(path) = handoff.filter(|_| upgrade) {
                let mut payload = head.clone();
                payload.extend_from_slice(&buf[head_len..]);
                match handoff::hand_off(&path, stream.as_fd(), &payload).await {
                    // The tenant owns the connection; dropping this copy leaves it open.
                    Outcome::Accepted => return Ok(()),
                    Outcome::NotTaken(e) => {
                        tracing::debug!(%slug, error = %e, "hand-off not taken; proxying");
                    }
                    Outcome::Unknown(e) => {
                        tracing::warn!(%slug, %peer, error = %e, "hand-off unacknowledged; closing");
                        return Ok(());
                    }
                }
            }
            let mut upstream = match tokio::time::timeout(
                Duration::from_secs(3),
                TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(s)) => s,
                _ => return respond(&mut stream, "502 Bad Gateway", "project unavailable").await,
            };
            let _ = upstream.set_nodelay(true);
            buf.advance(head_len);
            upstream.write_all(&head).await?;
            upstream.write_all(&buf).await?;
            tokio::io::copy_bidirectional(&mut stream, &mut upstream).await?;
            Ok(())
        }
    }
}

enum HeadError {
    TooLarge,
    Malformed,
    Io(io::Error),
}

/// Reads until the request head is complete and decides where it goes. For tenant requests
/// returns the rewritten head: path without `/t/{slug}`, `X-Forwarded-For` set, and
/// `Connection: close` unless it is an upgrade (so a keep-alive connection never carries a
/// second request to the wrong place).
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
) -> Result<Option<(usize, Target)>, HeadError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 96];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let path = req.path.unwrap_or("/");
                let Some(rest) = path.strip_prefix("/t/") else {
                    return Ok(Some((len, Target::ControlPlane)));
                };
                let (slug, tail) = match rest.find(['/', '?']) {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                if slug.is_empty() || !slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(HeadError::Malformed);
                }
                let tail = if tail.starts_with('?') {
                    format!("/{tail}")
                } else {
                    tail.to_owned()
                };
                let upgrade = req
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
                let mut head = Vec::with_capacity(len + 64);
                head.extend_from_slice(
                    format!("{} {} HTTP/1.1\r\n", req.method.unwrap_or("GET"), tail).as_bytes(),
                );
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("x-forwarded-for")
                        || (!upgrade && h.name.eq_ignore_ascii_case("connection"))
                    {
                        continue;
                    }
                    head.extend_from_slice(h.name.as_bytes());
                    head.extend_from_slice(b": ");
                    head.extend_from_slice(h.value);
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(format!("X-Forwarded-For: {}\r\n", peer.ip()).as_bytes());
                if !upgrade {
                    head.extend_from_slice(b"Connection: close\r\n");
                }
                head.extend_from_slice(b"\r\n");
                return Ok(Some((
                    len,
                    Target::Tenant {
                        slug: slug.to_owned(),
                        head,
                        upgrade,
                    },
                )));
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(HeadError::Malformed),
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let n = stream.read_buf(buf).await.map_err(HeadError::Io)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Malformed)
            };
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, message: &str) -> io::Result<()> {
    let code = match status.split(' ').next().unwrap_or_default() {
        "400" => "bad_request",
        "403" => "project_suspended",
        "404" => "unknown_project",
        "408" => "request_timeout",
        "431" => "request_head_too_large",
        "502" => "project_unavailable",
        "503" => "project_starting",
        _ => "edge_error",
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}
