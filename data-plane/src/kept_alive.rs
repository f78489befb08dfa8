//! Server API calls that follow on a handed-off connection the edge granted for keep-alive
//! (see [`rotor_tenant_config::keep_alive`]): the project's own backend keeps its connections,
//! and its calls stop waiting behind other projects' traffic at the shared edge.
//!
//! The edge rewrote only the first request's head. Every follow-up is read raw from the
//! client, so it is checked here as the edge would have checked it, or refused:
//! - it must name this project's host exactly as the first request did (only projects served
//!   at their own host are granted), and be a server API call (`/api`, `/api/{method}`) that is
//!   not an upgrade: anything else is answered `421 Misdirected Request` and the connection
//!   closes, so the client opens a new one through the edge;
//! - client-supplied forwarding headers and any grant header are removed, Rotor's cookies and
//!   management tokens too ([`credentials::forwardable`], as for proxies), and
//!   `X-Forwarded-For` is set from the real peer;
//! - follow-ups of the whole project are held to the plan's request rate (the edge's budget
//!   for keyed API calls), answered 429 with `Retry-After` past it;
//! - an answer of 401 or 403 (not one of the project's keys, or a key scoped elsewhere) closes
//!   the connection: the grant was for the project's backend, not for guessing;
//! - a connection serves at most [`MAX_REQUESTS`] requests and is closed after
//!   [`Connection::idle_for`] without one.
//!
//! Without a grant (every WebSocket handshake, every request without one of the project's
//! keys, every client that asked to close) the socket carries one request, as before.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use parking_lot::Mutex;
use rotor_tenant_config::keep_alive::{self, KeepAlive};
use tokio::time::Instant;

use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::proxy::credentials;

/// Requests one kept connection serves before it is closed (nginx's `keepalive_requests`).
pub const MAX_REQUESTS: u32 = 1000;
/// How long a kept connection may sit without a request (nginx's `keepalive_timeout` is 75 s;
/// connection pools of HTTP clients keep theirs up to 90 s).
pub const IDLE: Duration = Duration::from_secs(60);

/// What a handed-off connection shares with every other: the project's follow-up budget, at
/// the rate of the newest grant (a plan change reaches connections granted before it), and
/// the count of refusals.
#[derive(Debug, Default)]
pub struct FollowUps {
    limiter: RateLimiter,
    rate: AtomicU32,
    metrics: Arc<Metrics>,
}

impl FollowUps {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            limiter: RateLimiter::default(),
            rate: AtomicU32::new(0),
            metrics,
        }
    }

    /// Admits one gRPC API call on a connection the edge handed over with `rate` (see
    /// [`crate::grpc_api::Handed`]): the same project-wide budget as kept HTTP follow-ups.
    pub fn admit_call(&self, rate: u32) -> bool {
        self.rate.store(rate, Ordering::Relaxed);
        let admitted = self.limiter.try_acquire(rate);
        if !admitted {
            self.metrics.kept_api_refused.inc("over_budget");
        }
        admitted
    }

    fn refused(&self, reason: &'static str, response: Box<Response<Body>>) -> Box<Response<Body>> {
        self.metrics.kept_api_refused.inc(reason);
        response
    }
}

/// One handed-off connection's state, shared by the requests it serves (one at a time).
pub struct Connection {
    peer: SocketAddr,
    shared: Arc<FollowUps>,
    /// The grant the first request carried (`None`: one request only).
    grant: OnceLock<Option<KeepAlive>>,
    served: AtomicU32,
    in_flight: AtomicU32,
    last_active: Mutex<Instant>,
    idle: Duration,
}

impl Connection {
    pub fn new(peer: SocketAddr, shared: Arc<FollowUps>, idle: Duration) -> Self {
        Self {
            peer,
            shared,
            grant: OnceLock::new(),
            served: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            last_active: Mutex::new(Instant::now()),
            idle,
        }
    }

    /// Whether the first request granted keep-alive.
    pub fn is_kept(&self) -> bool {
        self.grant.get().is_some_and(Option::is_some)
    }

    /// When to look again whether the connection is idle: its idle time after the last
    /// answer, or a whole idle time from now while a request is in flight.
    pub fn idle_deadline(&self) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + self.idle;
        }
        *self.last_active.lock() + self.idle
    }

    /// Whether no request is being served and none came for [`Self::idle_deadline`].
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && Instant::now() >= *self.last_active.lock() + self.idle
    }

    /// Takes a request off the connection: the one to serve, or the answer that refuses it.
    /// Every admitted request is matched by one [`Self::finish`].
    pub fn admit<B>(&self, mut req: Request<B>) -> Result<Request<B>, Box<Response<Body>>> {
        let n = self.served.fetch_add(1, Ordering::AcqRel);
        if n == 0 {
            // The edge's own head: its grant, if any, is read and removed.
            let grant = req
                .headers()
                .get(keep_alive::HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(KeepAlive::parse);
            req.headers_mut().remove(keep_alive::HEADER);
            if let Some(g) = &grant {
                self.shared.rate.store(g.rate, Ordering::Relaxed);
            }
            let _ = self.grant.set(grant);
        } else {
            let Some(Some(grant)) = self.grant.get() else {
                return Err(self.shared.refused("misdirected", misdirected()));
            };
            req = follow_up(req, grant, self.peer)
                .map_err(|r| self.shared.refused("misdirected", r))?;
            let rate = self.shared.rate.load(Ordering::Relaxed);
            if !self.shared.limiter.try_acquire(rate) {
                return Err(self.shared.refused("over_budget", Box::new(over_budget())));
            }
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(req)
    }

    /// Marks the admitted request done and says in its response whether the connection stays.
    pub fn finish(&self, mut response: Response<Body>) -> Response<Body> {
        *self.last_active.lock() = Instant::now();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let status = response.status();
        // An upgrade ends HTTP on the connection by itself, and a `close` beside it makes
        // WebSocket clients refuse the handshake.
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return response;
        }
        let last = !self.is_kept()
            || self.served.load(Ordering::Acquire) >= MAX_REQUESTS
            || status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN;
        if last {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A follow-up rewritten as the edge would have, or the answer that refuses it.
fn follow_up<B>(
    mut req: Request<B>,
    grant: &KeepAlive,
    peer: SocketAddr,
) -> Result<Request<B>, Box<Response<Body>>> {
    let uri = req.uri();
    // Origin form only: an absolute URI could name another host than its `Host` header.
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(misdirected());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let named = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host
            .to_str()
            .is_ok_and(|h| h.eq_ignore_ascii_case(&grant.host)),
        _ => false,
    };
    if !named {
        return Err(misdirected());
    }
    let path = uri.path();
    let is_api = path == "/api"
        || path.strip_prefix("/api/").is_some_and(|method| {
            !method.is_empty()
                && method
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if !is_api || req.headers().contains_key(header::UPGRADE) {
        return Err(misdirected());
    }
    let headers = req.headers_mut();
    for name in [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        keep_alive::HEADER,
    ] {
        headers.remove(name);
    }
    // Rotor's cookies and management tokens, as the proxies' allow-lists cut them.
    for name in [header::COOKIE, header::AUTHORIZATION] {
        let kept: Vec<HeaderValue> = headers
            .get_all(&name)
            .iter()
            .filter_map(|v| credentials::forwardable(&name, v))
            .collect();
        headers.remove(&name);
        for v in kept {
            headers.append(name.clone(), v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert("x-forwarded-for", v);
    }
    Ok(req)
}

fn answer(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn misdirected() -> Box<Response<Body>> {
    let mut response = answer(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected_request",
        "this connection serves only this project's server API; send the request on a new connection",
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Box::new(response)
}

fn over_budget() -> Response<Body> {
    let mut response = answer(
        StatusCode::TOO_MANY_REQUESTS,
        "over_request_budget",
        "this project receives more requests per second than its plan allows; retry later",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "203.0.113.7:5000".parse().unwrap()
    }

    fn connection(grant: Option<&KeepAlive>) -> Connection {
        let c = Connection::new(peer(), Arc::new(FollowUps::default()), IDLE);
        let mut first = Request::post("/api/publish");
        if let Some(g) = grant {
            first = first.header(keep_alive::HEADER, g.header_value());
        }
        let first = c.admit(first.body(()).unwrap()).unwrap();
        assert!(!first.headers().contains_key(keep_alive::HEADER));
        c.finish(Response::new(Body::empty()));
        c
    }

    fn grant(rate: u32) -> KeepAlive {
        KeepAlive {
            rate,
            host: "demo.rotor.test".into(),
        }
    }

    /// A follow-up to `path` naming the granted host.
    fn to(path: &str) -> axum::http::request::Builder {
        Request::post(path).header("host", "demo.rotor.test")
    }

    fn status_of(r: Result<Request<()>, Box<Response<Body>>>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(resp) => resp.status().as_u16(),
        }
    }

    #[test]
    fn a_follow_up_is_rewritten_as_the_edge_would() {
        let c = connection(Some(&grant(0)));
        assert!(c.is_kept());
        let req = to("/api/publish?x=1")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-real-ip", "10.0.0.2")
            .header("forwarded", "for=10.0.0.3")
            .header("cookie", "rotor_session=stolen")
            .header("cookie", "__Host-rotor_csrf=x; app=1")
            .header(keep_alive::HEADER, "rate=0; host=other.rotor.test")
            .header("authorization", "Bearer rtr_management")
            .header("x-api-key", "k")
            .body(())
            .unwrap();
        let req = c.admit(req).unwrap();
        assert_eq!(req.uri(), "/api/publish?x=1");
        let h = req.headers();
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
        for gone in [
            "x-real-ip",
            "forwarded",
            keep_alive::HEADER,
            "authorization",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        // Only the tenant's own cookie is left.
        assert_eq!(h.get_all("cookie").iter().collect::<Vec<_>>(), ["app=1"]);
        assert_eq!(h["x-api-key"], "k");
        let kept = c.finish(Response::new(Body::empty()));
        assert!(!kept.headers().contains_key(header::CONNECTION));
    }

    #[test]
    fn a_follow_up_for_anything_but_this_projects_api_is_misdirected() {
        let c = connection(Some(&grant(0)));
        for path in [
            "/",
            "/admin/status",
            "/metrics",
            "/connection/websocket",
            "/api/../admin/status",
            "/api/%2e%2e",
            "/apix",
            "/t/demo/api/publish",
            "http://demo.rotor.test/api/publish",
        ] {
            assert_eq!(
                status_of(c.admit(to(path).body(()).unwrap())),
                421,
                "{path}"
            );
        }
        for host in [
            "other.rotor.test",
            "demo.rotor.test.evil",
            "demo.rotor.test:81",
        ] {
            let req = Request::post("/api/publish")
                .header("host", host)
                .body(())
                .unwrap();
            assert_eq!(status_of(c.admit(req)), 421, "{host}");
        }
        let no_host = Request::post("/api/publish").body(()).unwrap();
        assert_eq!(status_of(c.admit(no_host)), 421);
        let two_hosts = to("/api/publish")
            .header("host", "other.rotor.test")
            .body(())
            .unwrap();
        assert_eq!(status_of(c.admit(two_hosts)), 421);
        let upgrade = to("/api").header("upgrade", "websocket").body(()).unwrap();
        assert_eq!(status_of(c.admit(upgrade)), 421);
        let ok = Request::post("/api/publish")
            .header("host", "DEMO.rotor.test")
            .body(())
            .unwrap();
        assert_eq!(c.admit(ok).unwrap().uri(), "/api/publish");
    }

    #[test]
    fn without_a_grant_the_first_answer_is_the_last() {
        let c = Connection::new(peer(), Arc::new(FollowUps::default()), IDLE);
        c.admit(Request::post("/api/publish").body(()).unwrap())
            .unwrap();
        let last = c.finish(Response::new(Body::empty()));
        assert_eq!(last.headers()[header::CONNECTION], "close");
        let next = to("/api/publish").body(()).unwrap();
        assert_eq!(status_of(c.admit(next)), 421);
        // A forged grant on a follow-up is never read as one.
        let forged = connection(None);
        let req = to("/api/publish")
            .header(keep_alive::HEADER, grant(0).header_value())
            .body(())
            .unwrap();
        assert_eq!(status_of(forged.admit(req)), 421);
    }

    #[test]
    fn refused_keys_and_the_request_cap_close_the_connection() {
        let c = connection(Some(&grant(0)));
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            c.admit(to("/api/publish").body(()).unwrap()).unwrap();
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status;
            assert_eq!(c.finish(r).headers()[header::CONNECTION], "close");
        }
        let c = connection(Some(&grant(0)));
        for n in 2..=MAX_REQUESTS {
            c.admit(to("/api/publish").body(()).unwrap()).unwrap();
            let r = c.finish(Response::new(Body::empty()));
            let closes = r.headers().contains_key(header::CONNECTION);
            assert_eq!(closes, n == MAX_REQUESTS, "request {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follow_ups_of_the_project_are_held_to_the_plan_rate() {
        let shared = Arc::new(FollowUps::default());
        let g = grant(3);
        let mut refused = 0;
        // Two connections share one budget.
        for _ in 0..2 {
            let c = Connection::new(peer(), shared.clone(), IDLE);
            let first = Request::post("/api/publish")
                .header(keep_alive::HEADER, g.header_value())
                .body(())
                .unwrap();
            c.admit(first).unwrap();
            c.finish(Response::new(Body::empty()));
            for _ in 0..3 {
                match c.admit(to("/api/publish").body(()).unwrap()) {
                    Ok(_) => {
                        c.finish(Response::new(Body::empty()));
                    }
                    Err(resp) => {
                        assert_eq!(resp.status(), 429);
                        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
                        assert!(!resp.headers().contains_key(header::CONNECTION));
                        refused += 1;
                    }
                }
            }
        }
        assert_eq!(refused, 3, "six follow-ups at a rate of three");
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = connection(Some(&g));
        let req = to("/api/publish").body(()).unwrap();
        assert!(c.admit(req).is_ok(), "the budget refills");
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_grant_sets_the_rate_for_connections_granted_before() {
        let shared = Arc::new(FollowUps::default());
        let open = |rate: u32| {
            let c = Connection::new(peer(), shared.clone(), IDLE);
            let first = Request::post("/api/publish")
                .header(keep_alive::HEADER, grant(rate).header_value())
                .body(())
                .unwrap();
            c.admit(first).unwrap();
            c.finish(Response::new(Body::empty()));
            c
        };
        let before = open(0);
        let _after = open(1);
        let admitted = (0..3)
            .filter(|_| before.admit(to("/api/publish").body(()).unwrap()).is_ok())
            .count();
        assert_eq!(admitted, 1, "the plan's new rate of one a second holds");
        assert_eq!(shared.metrics.kept_api_refused.get("over_budget"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_flight() {
        let c = connection(Some(&grant(0)));
        assert!(!c.is_idle());
        c.admit(to("/api/publish").body(()).unwrap()).unwrap();
        tokio::time::advance(IDLE * 2).await;
        assert!(!c.is_idle(), "a slow request in flight");
        c.finish(Response::new(Body::empty()));
        assert!(!c.is_idle());
        tokio::time::advance(IDLE).await;
        assert!(c.is_idle());
    }
}
