//! "Test this endpoint" on a project's settings page: one harmless request from the control
//! plane to a proxy URL the customer configured, and what came back in plain words (the HTTP
//! status and how long it took, or why there was no answer). The URL is the customer's, so the
//! probe obeys the rule their tenant's own proxies obey ([`rotor_tenant_config::egress`]):
//! in hosted mode (unless the operator allows private egress, `ROTOR_TENANT_PRIVATE_EGRESS`)
//! only public addresses on the allowed ports, checked for literal hosts before the request and
//! for every resolved address of a name; redirects are not followed (a redirect could point
//! anywhere). The request is a `POST` of `{}` with the proxy's static headers and
//! `X-Rotor-Probe: 1`, so a backend can recognise and ignore it; its body is never read. At
//! most a few probes run at once on a control plane.
//!
//! Every HTTP client of the control plane comes from [`direct_builder`] or [`direct_client`]:
//! they never use a proxy from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`), so
//! tenants' admin tokens and configs go only to the tenant, and a probe's host name is resolved
//! here, by the rule above, not by a proxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rotor_tenant_config::egress::{self, EgressError, Ports};

/// Longest a probe waits for an answer.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// Probes in flight at once on this control plane (each waits at most [`MAX_WAIT`]), so the
/// button cannot turn the control plane into a request cannon.
static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// What a probe learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub elapsed: Duration,
}

/// Why a probe got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the URL is not valid: {0}")]
    BadUrl(String),
    #[error("only http:// and https:// endpoints can be called")]
    Scheme,
    /// The egress rule refused the address or port.
    #[error("{0}")]
    Refused(EgressError),
    #[error("the name could not be resolved (check the host name)")]
    Dns,
    #[error("the connection was refused (nothing is listening on that port)")]
    ConnectionRefused,
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the TLS handshake failed (check the certificate)")]
    Tls,
    #[error("the connection failed: {0}")]
    Connect(String),
    #[error("too many endpoint tests are running right now; try again in a few seconds")]
    Busy,
}

/// A client builder that connects directly, whatever proxy the environment names.
pub fn direct_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy()
}

/// A client from [`direct_builder`] with reqwest's defaults otherwise. Like
/// `reqwest::Client::new`, it panics only when the TLS backend cannot start.
pub fn direct_client() -> reqwest::Client {
    direct_builder()
        .build()
        .expect("the HTTP client's TLS backend starts")
}

/// Whether probes follow the public-only rule (as the supervisor's tenants do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Any,
    PublicOnly,
}

/// Sends the probe to `url` with `headers`, waiting at most `wait` (capped at [`MAX_WAIT`]).
pub async fn probe(
    url: &str,
    headers: &BTreeMap<String, String>,
    wait: Duration,
    rule: Rule,
) -> Result<Answer, ProbeError> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| ProbeError::BadUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProbeError::Scheme);
    }
    let mut builder = direct_builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(wait.min(MAX_WAIT))
        .connect_timeout(wait.min(MAX_WAIT))
        .user_agent("Rotor endpoint test");
    if rule == Rule::PublicOnly {
        egress::check_host(
            parsed.host_str().unwrap_or_default(),
            parsed.port_or_known_default(),
            Ports::current(),
        )
        .map_err(ProbeError::Refused)?;
        builder = builder.dns_resolver(Arc::new(PublicResolver));
    }
    let client = builder
        .build()
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    let mut req = client
        .post(parsed)
        .header("content-type", "application/json")
        .header("x-rotor-probe", "1")
        .body("{}");
    for (name, value) in headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let Ok(_slot) = IN_FLIGHT.try_acquire() else {
        return Err(ProbeError::Busy);
    };
    let started = Instant::now();
    match req.send().await {
        Ok(resp) => Ok(Answer {
            status: resp.status().as_u16(),
            elapsed: started.elapsed(),
        }),
        Err(e) => Err(classify(&e, wait.min(MAX_WAIT))),
    }
}

/// The reason behind a failed request, in the words of [`ProbeError`].
fn classify(e: &reqwest::Error, wait: Duration) -> ProbeError {
    if e.is_timeout() {
        return ProbeError::Timeout(wait);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = String::new();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<EgressError>() {
            return ProbeError::Refused(refused.clone());
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return ProbeError::ConnectionRefused;
            }
        }
        text = s.to_string();
        source = s.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("dns") || lower.contains("name or service") || lower.contains("lookup") {
        ProbeError::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        ProbeError::Tls
    } else if lower.contains("refused") {
        ProbeError::ConnectionRefused
    } else {
        ProbeError::Connect(text)
    }
}

/// Resolves with the system resolver and keeps allowed addresses only (all of a name's
/// addresses must be allowed).
struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || !addrs.iter().all(|a| egress::is_allowed(a.ip())) {
                return Err(Box::new(EgressError::NotPublic) as Box<_>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// One sentence about a probe's outcome, for the settings page.
pub fn describe(url: &str, outcome: &Result<Answer, ProbeError>) -> String {
    match outcome {
        Ok(a) => {
            let ms = a.elapsed.as_millis();
            let verdict = match a.status {
                200..=299 => "it is reachable and answered with success",
                300..=399 => "it answered with a redirect, which proxies do not follow",
                401 | 403 => "it is reachable but refused the request (check the static headers it expects)",
                404 => "the server is reachable but has nothing at this path",
                400..=499 => "it is reachable; it refused the test request, which may be expected for an empty body",
                _ => "it is reachable but answered with a server error",
            };
            format!("{url} answered HTTP {} in {ms} ms: {verdict}.", a.status)
        }
        Err(e) => format!("{url} could not be reached: {e}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hosted_probes_never_reach_loopback_or_private_addresses() {
        // A listener on loopback that would answer: the probe must not get there.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let wait = Duration::from_secs(2);
        for url in [
            format!("http://127.0.0.1:{port}/connect"),
            "http://127.0.0.1/connect".to_owned(),
            "http://localhost/connect".to_owned(),
            "http://[::1]/x".to_owned(),
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "http://10.0.0.1/".to_owned(),
        ] {
            let outcome = probe(&url, &BTreeMap::new(), wait, Rule::PublicOnly).await;
            assert!(
                matches!(outcome, Err(ProbeError::Refused(_))),
                "{url}: {outcome:?}"
            );
            assert!(describe(&url, &outcome).contains("could not be reached"));
        }
        assert_eq!(
            probe("ftp://example.com/", &BTreeMap::new(), wait, Rule::Any).await,
            Err(ProbeError::Scheme)
        );
        assert!(matches!(
            probe("not a url", &BTreeMap::new(), wait, Rule::Any).await,
            Err(ProbeError::BadUrl(_))
        ));
    }

    #[tokio::test]
    async fn a_probe_ignores_a_proxy_named_in_the_environment() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        // nextest runs each test in its own process, so the variables stay in this test.
        for name in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"] {
            std::env::set_var(name, &proxy_url);
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/connect", target.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = target.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
        });
        let outcome = probe(&url, &BTreeMap::new(), Duration::from_secs(5), Rule::Any).await;
        assert_eq!(outcome.map(|a| a.status), Ok(204), "the target answered");
        server.await.unwrap();
        let contacted = tokio::time::timeout(Duration::from_millis(200), proxy.accept()).await;
        assert!(contacted.is_err(), "the proxy was contacted");
        // The admin clients are built the same way.
        let admin = direct_client();
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = target.local_addr().unwrap();
        let request = admin.get(format!("http://{addr}/admin/status")).send();
        let accepted = tokio::select! {
            _ = request => panic!("no server answered, yet the request ended"),
            accepted = target.accept() => accepted.is_ok(),
            _ = proxy.accept() => false,
        };
        assert!(accepted, "the admin client went to the proxy");
    }

    #[tokio::test]
    async fn a_probe_reports_the_status_or_a_refused_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            socket
                .write_all(
                    b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            head
        });
        let mut headers = BTreeMap::new();
        headers.insert("Authorization".to_owned(), "Bearer t".to_owned());
        let url = format!("http://{addr}/connect");
        let outcome = probe(&url, &headers, Duration::from_secs(5), Rule::Any).await;
        let answer = outcome.clone().unwrap();
        assert_eq!(answer.status, 418);
        let head = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(head.starts_with("post /connect"), "{head}");
        assert!(head.contains("x-rotor-probe: 1"), "{head}");
        assert!(head.contains("authorization: bearer t"), "{head}");
        assert!(describe(&url, &outcome).contains("answered HTTP 418"));
        // Nothing listens there any more.
        let outcome = probe(&url, &BTreeMap::new(), Duration::from_secs(5), Rule::Any).await;
        assert_eq!(outcome, Err(ProbeError::ConnectionRefused), "{outcome:?}");
    }
}
