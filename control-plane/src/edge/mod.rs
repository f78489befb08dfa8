//! The edge: one public listener. Requests for a tenant (its own host, or `/t/{slug}/…`) go to
//! that tenant's process with the request head rewritten ([`head`]: prefix stripped, Rotor's
//! credentials removed, internal paths refused). A WebSocket handshake, and any other request
//! once the edge holds all of it (head and a body of known, small length), hands the client's
//! TCP socket itself to the tenant (SCM_RIGHTS over its hand-off socket, see
//! [`rotor_handoff`]), which serves that one request (SSE and HTTP streams
//! included) and closes: the edge leaves the data path and a tenant's traffic costs the shared
//! edge one read and one `sendmsg`. Requests with a streamed or large body, and those a tenant
//! cannot take, are spliced byte for byte until both sides end or the connection idles
//! ([`splice`]). A connection that begins with HTTP/2's preface is a hosted project's gRPC
//! server API: routed on its first request and handed over whole ([`grpc`], [`h2`]).
//! Everything else is served by the control plane's own app (REST API, dashboard).
//!
//! Behind the operator's own balancers (`ROTOR_EDGE_TRUSTED_PROXIES`), a connection's client
//! address is the one its PROXY header names ([`proxy_protocol`]), and every per-address rule
//! below counts that address. Every connection, whatever it is for, is first admitted against
//! the edge's caps (overall, per client address, and a reserve of open files; see [`caps`]) or
//! refused at once with one complete answer ([`overload`]); the counts are the operator's
//! metrics ([`metrics`]). A request
//! that finds its project parked wakes it only within its address's wake budget, and only if
//! the box has room for one more tenant ([`wakes`]). A project's traffic past its plan's
//! requests and handshakes per second is answered 429 here, before its process sees it, and
//! so is one address's traffic past its share of a contended project ([`budgets`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::{Buf, BytesMut};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rotor_handoff::Outcome;
use rotor_tenant_config::keep_alive::KeepAlive;
use rotor_tenant_config::prefixed::PrefixedStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::routes::{Route, RouteTable, Wake};
use crate::settings::TenantHost;

pub mod budgets;
pub mod caps;
mod grpc;
pub mod h2;
pub mod head;
pub mod metrics;
pub mod overload;
pub mod proxy_protocol;
mod splice;
pub mod wakes;
use caps::{Admitted, Connections};
use head::{Body, HeadError, Target};
use overload::{AcceptBackoff, Refuser};
use proxy_protocol::{Source, TrustedProxies};
use wakes::{WakeRefusal, Wakes};

/// How long a request for a parked project waits for it to wake before a 503.
const WAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `Retry-After` when the box has no room to start a project.
const CAPACITY_RETRY: Duration = Duration::from_secs(5);
/// The `Retry-After` of a request to a project moving to another Redis deployment (a move
/// holds it for seconds).
const MOVING_RETRY: Duration = Duration::from_secs(1);
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

/// How long a connection kept open after one of the edge's own answers (a budget 429) may
/// stay idle before its next request head begins.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
/// The edge's own answers on one connection before it closes it anyway.
const MAX_ANSWERS_PER_CONNECTION: u32 = 1000;

/// Refused sockets kept open at once to finish their answer (see [`Refuser`]); a share of the
/// open-file reserve.
const MAX_LINGERING: u64 = 1024;

/// Accepts connections until `stop`, admitting (see [`caps`]) and routing each one. A
/// connection from one of the `trusted` balancers is admitted and routed as coming from the
/// client its PROXY header names ([`proxy_protocol`]).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    routes: Arc<RouteTable>,
    app: Router,
    tenant_host: Option<TenantHost>,
    connections: Arc<Connections>,
    wakes: Arc<Wakes>,
    trusted: TrustedProxies,
    stop: CancellationToken,
) {
    let tenant_host = Arc::new(tenant_host);
    let lingering = (connections.snapshot().file_reserve / 2).min(MAX_LINGERING);
    let refuser = Arc::new(Refuser::new(usize::try_from(lingering).unwrap_or(1)));
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.succeeded();
                a
            }
            Err(e) => {
                connections.accept_failed();
                let wait = backoff.failed(&e);
                if !wait.is_zero() {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                continue;
            }
        };
        let fd = u64::try_from(stream.as_raw_fd()).unwrap_or(u64::MAX);
        if trusted.contains(peer.ip()) {
            // The client's address comes first on the connection; it is admitted under that
            // address once read, in the connection's own task.
            let (connections, refuser) = (connections.clone(), refuser.clone());
            let edge = Edge {
                routes: routes.clone(),
                app: app.clone(),
                wakes: wakes.clone(),
            };
            let tenant_host = tenant_host.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                let mut buf = BytesMut::with_capacity(2048);
                let client = match proxy_protocol::read(&mut stream, &mut buf, head_timeout()).await
                {
                    Ok(Source::Client(client)) => client,
                    Ok(Source::Local) => peer,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "trusted proxy's connection closed");
                        return;
                    }
                };
                let admitted = match connections.admit(client.ip(), fd) {
                    Ok(admitted) => admitted,
                    Err(refusal) => return refuser.refuse(stream, client, refusal),
                };
                if let Err(e) = handle(stream, client, edge, &tenant_host, admitted, buf).await {
                    tracing::debug!(peer = %client, error = %e, "edge connection ended");
                }
            });
            continue;
        }
        let admitted = match connections.admit(peer.ip(), fd) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                refuser.refuse(stream, peer, refusal);
                continue;
            }
        };
        let routes = routes.clone();
        let app = app.clone();
        let tenant_host = tenant_host.clone();
        let wakes = wakes.clone();
        tokio::spawn(async move {
            let edge = Edge { routes, app, wakes };
            let buf = BytesMut::with_capacity(2048);
            if let Err(e) = handle(stream, peer, edge, &tenant_host, admitted, buf).await {
                tracing::debug!(%peer, error = %e, "edge connection ended");
            }
        });
    }
}

/// What a connection's handler shares with the others.
struct Edge {
    routes: Arc<RouteTable>,
    app: Router,
    wakes: Arc<Wakes>,
}

async fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    Edge { routes, app, wakes }: Edge,
    tenant_host: &Option<TenantHost>,
    // Counts this connection until the edge lets go of the socket (returns).
    _admitted: Admitted,
    // What was read from the connection before its request head began (after a PROXY header).
    mut buf: BytesMut,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    // The edge's own answers so far: a client over its project's budget is answered 429 on a
    // connection kept open (when it asked for that), so a client that backs off and retries
    // costs the shared edge a head to read, not a TCP connection per attempt.
    let mut answered = 0u32;
    loop {
        let wait = if answered == 0 {
            head_timeout()
        } else {
            KEEP_ALIVE_IDLE.min(head_timeout())
        };
        let read = read_head(&mut stream, &mut buf, peer, tenant_host.as_ref());
        let (head_len, target) = match tokio::time::timeout(wait, read).await {
            Ok(Ok(Some(Start::Http(len, target)))) => (len, target),
            Ok(Ok(Some(Start::Http2))) => {
                let edge = Edge { routes, app, wakes };
                return grpc::serve(stream, buf, peer, &edge, tenant_host.as_ref()).await;
            }
            Ok(Ok(None)) => return Ok(()),
            // A kept connection idle past its time is closed without an answer.
            Err(_) if answered > 0 && buf.is_empty() => return Ok(()),
            Ok(Err(ReadError::TooLarge)) => {
                return respond(
                    &mut stream,
                    "431 Request Header Fields Too Large",
                    "request head too large",
                )
                .await
            }
            Ok(Err(ReadError::Head(HeadError::Malformed))) => {
                return respond(&mut stream, "400 Bad Request", "malformed request").await
            }
            Ok(Err(ReadError::Io(e))) => return Err(e),
            Err(_) => {
                return respond(&mut stream, "408 Request Timeout", "request head timeout").await
            }
        };
        return match target {
            Target::NotFound(message) => respond(&mut stream, "404 Not Found", message).await,
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
                websocket,
                body,
                api_key,
                keeps_alive,
                own_host,
            } => {
                // A plain request is handed over only whole: its body is read ahead here, so the
                // tenant is given a complete request (and a client trickling its body holds the
                // edge's connection, counted against its address, not a tenant's).
                let whole = match body {
                    _ if websocket => true,
                    Body::Length(n) => {
                        let read = read_body(&mut stream, &mut buf, head_len + n);
                        match tokio::time::timeout(head_timeout(), read).await {
                            Ok(Ok(true)) => true,
                            Ok(Ok(false)) => return Ok(()),
                            Ok(Err(e)) => return Err(e),
                            // Slow but alive: spliced, as a streamed body is.
                            Err(_) => false,
                        }
                    }
                    Body::Streamed => false,
                };
                let Active {
                    addr,
                    handoff,
                    budget,
                    api_keys,
                } = match resolve(&routes, &wakes, &slug, peer).await {
                    Ok(active) => active,
                    Err(unroutable) => return respond_unroutable(&mut stream, unroutable).await,
                };
                // The project's excess is answered here, before it costs its process anything.
                let kind = if websocket {
                    budgets::Kind::Connect
                } else if api_key.is_some_and(|k| api_keys.holds(&k)) {
                    budgets::Kind::Api
                } else {
                    budgets::Kind::Request
                };
                if let Err(refusal) = routes.budgets().charge(&slug, budget, kind, peer.ip()) {
                    let (code, message) = budget_refusal(kind, refusal);
                    let body_len = match body {
                        Body::Length(n) if whole && !websocket => Some(n),
                        _ => None,
                    };
                    let keep = body_len
                        .filter(|_| keeps_alive && answered + 1 < MAX_ANSWERS_PER_CONNECTION);
                    let retry = Some((code, refusal.retry_after()));
                    answer(
                        &mut stream,
                        "429 Too Many Requests",
                        message,
                        retry,
                        keep.is_some(),
                    )
                    .await?;
                    let Some(body_len) = keep else {
                        return Ok(());
                    };
                    // What the client sent behind this request stays for the next round.
                    buf.advance(head_len + body_len);
                    answered += 1;
                    continue;
                }
                if let Some(path) = handoff.filter(|_| whole) {
                    // The project's own backend keeps its connection: its follow-ups go straight
                    // to the tenant, which checks them as this edge would, within the plan's rate.
                    let mut payload = match own_host {
                        Some(host) if kind == budgets::Kind::Api && keeps_alive => {
                            let grant = KeepAlive {
                                rate: budget.requests_per_second,
                                host,
                            };
                            head::grant_keep_alive(&head, &grant)
                        }
                        _ => head.clone(),
                    };
                    payload.extend_from_slice(&buf[head_len..]);
                    match rotor_handoff::hand_off(&path, stream.as_fd(), &payload).await {
                        // The tenant owns the connection; dropping this copy leaves it open (and
                        // no longer counted: the tenant applies its own limits).
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
                let mut upstream =
                    match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        _ => {
                            return respond(&mut stream, "502 Bad Gateway", "project unavailable")
                                .await
                        }
                    };
                let _ = upstream.set_nodelay(true);
                buf.advance(head_len);
                upstream.write_all(&head).await?;
                upstream.write_all(&buf).await?;
                splice::relay(&mut stream, &mut upstream, splice::idle_timeout()).await
            }
        };
    }
}

/// A running project's process, as a request is routed to it.
struct Active {
    addr: SocketAddr,
    handoff: Option<std::path::PathBuf>,
    budget: budgets::EdgeBudget,
    api_keys: crate::routes::ApiKeys,
}

/// Why a request's project cannot take it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unroutable {
    /// The project is parked and this address has woken too many lately (retry after).
    WakeBudget(Duration),
    /// The project is parked and the box has no room to start it.
    Capacity,
    /// The project did not wake within [`WAKE_TIMEOUT`].
    Parked,
    Suspended,
    Starting,
    /// The project is moving to another Redis deployment.
    Moving,
    Unknown,
}

/// The running process of `slug`: a parked project is woken, within this address's budget
/// and the box's room, and the request waits for it (bounded).
async fn resolve(
    routes: &RouteTable,
    wakes: &Wakes,
    slug: &str,
    peer: SocketAddr,
) -> Result<Active, Unroutable> {
    let route = match routes.get(slug) {
        Some(Route::Parked) => {
            if let Err(wait) = wakes.charge(peer.ip(), slug) {
                tracing::info!(%peer, %slug, "wake refused: this address's wake budget is spent");
                return Err(Unroutable::WakeBudget(wait));
            }
            match routes.wait_awake(slug, WAKE_TIMEOUT).await {
                Wake::Awake(route) => route,
                Wake::TimedOut => Some(Route::Parked),
                Wake::Refused => {
                    wakes.refused(WakeRefusal::Capacity);
                    return Err(Unroutable::Capacity);
                }
            }
        }
        other => other,
    };
    match route {
        Some(Route::Active {
            addr,
            handoff,
            budget,
            api_keys,
        }) => Ok(Active {
            addr,
            handoff,
            budget,
            api_keys,
        }),
        Some(Route::Parked) => Err(Unroutable::Parked),
        Some(Route::Suspended) => Err(Unroutable::Suspended),
        Some(Route::Starting) => Err(Unroutable::Starting),
        Some(Route::Moving) => Err(Unroutable::Moving),
        None => Err(Unroutable::Unknown),
    }
}

/// The HTTP answer to a request whose project cannot take it.
async fn respond_unroutable(stream: &mut TcpStream, unroutable: Unroutable) -> io::Result<()> {
    match unroutable {
        Unroutable::WakeBudget(wait) => {
            respond_retry(
                stream,
                "429 Too Many Requests",
                "too_many_wakes",
                "too many sleeping projects woken from this address; retry later",
                wait,
            )
            .await
        }
        Unroutable::Capacity => {
            respond_retry(
                stream,
                "503 Service Unavailable",
                "at_capacity",
                "the service is at capacity and cannot start this project now; retry shortly",
                CAPACITY_RETRY,
            )
            .await
        }
        Unroutable::Parked => {
            respond(stream, "503 Service Unavailable", "project is waking up").await
        }
        Unroutable::Suspended => respond(stream, "403 Forbidden", "project is suspended").await,
        Unroutable::Starting => {
            respond(stream, "503 Service Unavailable", "project is starting").await
        }
        Unroutable::Moving => {
            respond_retry(
                stream,
                "503 Service Unavailable",
                "project_moving",
                "the project is moving to another Redis deployment; retry shortly",
                MOVING_RETRY,
            )
            .await
        }
        Unroutable::Unknown => respond(stream, "404 Not Found", "unknown project").await,
    }
}

/// The code and message of a 429 for a request over its project's budget or its address's share.
fn budget_refusal(kind: budgets::Kind, refusal: budgets::Refusal) -> (&'static str, &'static str) {
    use budgets::{Kind, Refusal};
    match (refusal, kind) {
        (Refusal::Address(_), Kind::Connect) => (
            "over_address_share",
            "this address opens more of this busy project's connections than its share; retry later",
        ),
        (Refusal::Address(_), _) => (
            "over_address_share",
            "this address sends more of this busy project's requests than its share; retry later",
        ),
        (Refusal::Project(_), Kind::Connect) => (
            "over_connect_budget",
            "this project opens more connections per second than its plan allows; retry later",
        ),
        (Refusal::Project(_), _) => (
            "over_request_budget",
            "this project receives more requests per second than its plan allows; retry later",
        ),
    }
}

enum ReadError {
    TooLarge,
    Head(HeadError),
    Io(io::Error),
}

/// How a connection's next request begins.
enum Start {
    /// An HTTP/1 request head of this length, and where it goes (see [`head::route`]).
    Http(usize, Target),
    /// The HTTP/2 connection preface: a gRPC client (see [`grpc`]).
    Http2,
}

/// Reads until the request head is complete and decides where it goes (see [`head::route`]),
/// or until the bytes are HTTP/2's preface.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    tenant_host: Option<&TenantHost>,
) -> Result<Option<Start>, ReadError> {
    loop {
        if !buf.is_empty() && h2::may_be_preface(buf) {
            if buf.len() >= h2::PREFACE.len() {
                return Ok(Some(Start::Http2));
            }
        } else if let Some((len, target)) =
            head::route(buf, peer, tenant_host).map_err(ReadError::Head)?
        {
            return Ok(Some(Start::Http(len, target)));
        }
        if buf.len() >= MAX_HEAD {
            return Err(ReadError::TooLarge);
        }
        let n = stream.read_buf(buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Head(HeadError::Malformed))
            };
        }
    }
}

/// Reads until `buf` holds `len` bytes; `false` when the client closed before.
async fn read_body(stream: &mut TcpStream, buf: &mut BytesMut, len: usize) -> io::Result<bool> {
    while buf.len() < len {
        buf.reserve(len - buf.len());
        if stream.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn respond(stream: &mut TcpStream, status: &str, message: &str) -> io::Result<()> {
    answer(stream, status, message, None, false).await
}

/// [`respond`] with its own error `code` and `Retry-After` (whole seconds, at least one).
async fn respond_retry(
    stream: &mut TcpStream,
    status: &str,
    code: &str,
    message: &str,
    after: Duration,
) -> io::Result<()> {
    answer(stream, status, message, Some((code, after)), false).await
}

/// Writes one of the edge's own answers; unless `keep_alive`, it says so and closes.
async fn answer(
    stream: &mut TcpStream,
    status: &str,
    message: &str,
    retry: Option<(&str, Duration)>,
    keep_alive: bool,
) -> io::Result<()> {
    let code = match (status.split(' ').next().unwrap_or_default(), retry) {
        (_, Some((code, _))) => code,
        ("400", _) => "bad_request",
        ("403", _) => "project_suspended",
        ("404", _) if message == "unknown project" => "unknown_project",
        ("404", _) => "not_found",
        ("408", _) => "request_timeout",
        ("431", _) => "request_head_too_large",
        ("502", _) => "project_unavailable",
        ("503", _) => "project_starting",
        _ => "edge_error",
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let retry = retry.map_or(String::new(), |(_, d)| {
        format!(
            "Retry-After: {}\r\n",
            d.as_secs_f64().ceil().max(1.0) as u64
        )
    });
    let connection = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}{connection}\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    if keep_alive {
        return Ok(());
    }
    stream.shutdown().await
}
