//! Proxies to the tenant's application backend, as Centrifugo's proxy protocol defines them:
//! connect (authenticate a client without a token), refresh (extend an expiring connection),
//! subscribe, publish, sub_refresh and rpc, over HTTP (JSON, [`http`]) or gRPC
//! ([`grpc`]) as the endpoint's scheme says. The config is compiled once per config version into
//! [`Proxies`]; the calls go through one shared [`ProxyClient`] with each proxy's own timeout,
//! which picks the transport, so sessions never care which one a proxy speaks. Both transports
//! end in [`settle`], the one place an answer becomes a result, the backend's error or its
//! disconnect; a session turns that into a reply: the backend's own error or disconnect passes
//! through, anything else that goes wrong becomes internal error 100. Subscribe streams
//! ([`stream`]) are gRPC only and outlive the call that opens them.

pub(crate) mod credentials;
pub mod grpc;
pub(crate) mod http;
pub(crate) mod stream;
pub(crate) mod types;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use rotor_tenant_config::{
    ChannelOptions, ChannelProxyKind, ProxyOptions, RpcOptions, TenantConfig, DEFAULT_PROXY_NAME,
};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::egress::Egress;
use crate::protocol::{ClientError, Disconnect};
use types::{DisconnectAnswer, ErrorAnswer};

/// Longest disconnect reason a WebSocket close frame can carry.
const MAX_REASON_BYTES: usize = 123;

/// Why a proxy call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The backend answered with an error for the client (or a status transform made one).
    #[error("backend refused: {0}")]
    Refused(ClientError),
    /// The backend asked to close the connection.
    #[error("backend disconnect: {0}")]
    Disconnect(Disconnect),
    /// No complete answer within the proxy's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading failed.
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The gRPC call failed (no connection, or the backend answered with a gRPC status).
    #[error("gRPC call failed: {0}")]
    Grpc(String),
    /// An HTTP status other than 200 without a transform.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The answer is not a valid proxy answer.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The endpoint's address is not allowed for this process (see [`crate::egress`]).
    #[error("endpoint refused: {0}")]
    Egress(String),
    /// The request could not be built (e.g. a binary payload without `binary_encoding`).
    #[error("request cannot be encoded: {0}")]
    Encode(String),
}

impl ProxyError {
    /// True when the backend answered on purpose (an error or a disconnect), false when the call
    /// itself failed.
    pub fn is_answer(&self) -> bool {
        matches!(self, Self::Refused(_) | Self::Disconnect(_))
    }
}

/// A status transform: an HTTP status the backend uses instead of a JSON error.
#[derive(Debug, Clone)]
enum Transform {
    Error(ClientError),
    Disconnect(Disconnect),
}

/// A proxy's request body, whatever the transport: JSON for HTTP, a proxy message for gRPC.
pub trait Request: Serialize + grpc::ToGrpc {}
impl<T: Serialize + grpc::ToGrpc> Request for T {}

/// A proxy's result, whatever the transport.
pub trait Outcome: DeserializeOwned + grpc::FromGrpc {}
impl<T: DeserializeOwned + grpc::FromGrpc> Outcome for T {}

/// Where a proxy's calls go.
#[derive(Debug)]
enum Target {
    /// POSTs to this URL.
    Http(reqwest::Url),
    /// Calls Centrifugo's proxy service at this backend.
    Grpc(Box<grpc::GrpcTarget>),
}

/// One configured proxy, ready to call.
#[derive(Debug)]
pub struct Endpoint {
    /// `connect`, `refresh`, `default` or the proxy's name (for logs).
    pub name: String,
    target: Target,
    timeout: Duration,
    /// Lower-case names of the connection request's headers to forward (for gRPC also the
    /// `grpc_metadata` names).
    http_headers: Vec<HeaderName>,
    /// Lower-case names of the connect command's `headers` to forward.
    emulated_headers: Vec<HeaderName>,
    /// HTTP's `http.static_headers`, or gRPC's `grpc.static_metadata`.
    static_headers: HeaderMap,
    binary: bool,
    include_meta: bool,
    transforms: HashMap<u16, Transform>,
}

fn header_names(names: &[String], path: &str) -> Result<Vec<HeaderName>, String> {
    names
        .iter()
        .map(|n| {
            HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("{path}: {n:?} is not a valid header name"))
        })
        .collect()
}

impl Endpoint {
    fn compile(name: &str, path: &str, o: &ProxyOptions) -> Result<Self, String> {
        let (target, statics, mut forwarded) = if o.endpoint.starts_with("grpc://") {
            let names = [o.http_headers.as_slice(), o.grpc_metadata.as_slice()].concat();
            let target = grpc::GrpcTarget::compile(path, o)?;
            (
                Target::Grpc(Box::new(target)),
                &o.grpc.static_metadata,
                names,
            )
        } else {
            let url = reqwest::Url::parse(&o.endpoint)
                .map_err(|e| format!("{path}.endpoint: {e}"))
                .and_then(|u| match u.scheme() {
                    "http" | "https" => Ok(u),
                    _ => Err(format!(
                        "{path}.endpoint: only http, https and grpc are supported"
                    )),
                })?;
            (
                Target::Http(url),
                &o.http.static_headers,
                o.http_headers.clone(),
            )
        };
        let grpc = matches!(target, Target::Grpc(_));
        if grpc {
            // gRPC metadata cannot carry binary (`-bin`) keys as text.
            forwarded.retain(|n| !n.to_ascii_lowercase().ends_with("-bin"));
        }
        let mut static_headers = HeaderMap::new();
        for (k, v) in statics {
            let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes());
            let value = HeaderValue::from_str(v);
            let section = if grpc {
                "grpc.static_metadata"
            } else {
                "http.static_headers"
            };
            match (name, value) {
                (Ok(n), Ok(v)) => {
                    static_headers.insert(n, v);
                }
                _ => return Err(format!("{path}.{section}.{k}: not valid")),
            }
        }
        let transforms = o
            .http
            .status_to_code_transforms
            .iter()
            .map(|t| {
                let to = if t.to_error.code > 0 {
                    Transform::Error(ClientError {
                        code: t.to_error.code,
                        message: t.to_error.message.clone().into(),
                        temporary: t.to_error.temporary,
                    })
                } else {
                    Transform::Disconnect(Disconnect::custom(
                        u16::try_from(t.to_disconnect.code).unwrap_or(3004),
                        t.to_disconnect.reason.clone(),
                    ))
                };
                (t.status_code, to)
            })
            .collect();
        Ok(Self {
            name: name.to_owned(),
            target,
            timeout: o.timeout.get(),
            http_headers: header_names(&forwarded, &format!("{path}.http_headers"))?,
            emulated_headers: header_names(
                &o.emulated_headers,
                &format!("{path}.emulated_headers"),
            )?,
            static_headers,
            binary: o.binary_encoding,
            include_meta: o.include_connection_meta,
            transforms,
        })
    }

    /// `encoding` of this proxy's requests.
    pub fn encoding(&self) -> &'static str {
        if self.binary {
            "binary"
        } else {
            "json"
        }
    }

    /// Whether payloads go base64-encoded.
    pub fn binary(&self) -> bool {
        self.binary
    }

    /// A payload of a request to this proxy: embedded JSON (HTTP; the bytes must be JSON),
    /// native bytes (gRPC), or base64 with `binary_encoding`.
    pub fn payload<'a>(&self, bytes: &'a [u8]) -> Result<types::Payload<'a>, ProxyError> {
        match self.target {
            Target::Http(_) => types::Payload::new(bytes, self.binary),
            Target::Grpc(_) => Ok(types::Payload::native(bytes, self.binary)),
        }
    }

    /// Where this proxy's calls go, for logs and tests (`http://…` or `grpc://host:port`).
    pub fn target(&self) -> String {
        match &self.target {
            Target::Http(url) => url.to_string(),
            Target::Grpc(g) => g.to_string(),
        }
    }

    /// Whether requests carry the connection's `meta`.
    pub fn include_meta(&self) -> bool {
        self.include_meta
    }

    /// The headers (HTTP) or metadata (gRPC) of one request: static ones, then allowed emulated
    /// ones, then allowed headers of the client's connection request (which win).
    fn forwarded_headers(&self, client: &ClientHeaders) -> HeaderMap {
        let mut out = self.static_headers.clone();
        for (name, value) in &client.emulated {
            if self.emulated_headers.contains(name) {
                out.insert(name.clone(), value.clone());
            }
        }
        let mut replaced: Vec<&HeaderName> = Vec::new();
        for (name, value) in &client.transport {
            if self.http_headers.contains(name) {
                if !replaced.contains(&name) {
                    out.remove(name);
                    replaced.push(name);
                }
                out.append(name.clone(), value.clone());
            }
        }
        out
    }

    /// The headers of one HTTP request: [`Self::forwarded_headers`] and
    /// `Content-Type: application/json`.
    fn request_headers(&self, client: &ClientHeaders) -> HeaderMap {
        let mut out = self.forwarded_headers(client);
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        out
    }

    /// The client-facing outcome of a non-200 status.
    fn status_error(&self, status: u16) -> ProxyError {
        match self.transforms.get(&status) {
            Some(Transform::Error(e)) => ProxyError::Refused(e.clone()),
            Some(Transform::Disconnect(d)) => ProxyError::Disconnect(d.clone()),
            None => ProxyError::Status(status),
        }
    }
}

/// Calls proxies over the transport each endpoint names. Cheap to share: HTTP calls reuse one
/// pool of keep-alive connections, gRPC calls one connection per backend.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    http: http::HttpTransport,
    egress: Egress,
}

impl Default for ProxyClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyClient {
    /// A client following this process's egress rule ([`Egress::current`]).
    pub fn new() -> Self {
        let egress = Egress::current();
        Self {
            http: http::HttpTransport::new(egress),
            egress,
        }
    }

    /// Sends `body` to the proxy and decodes its answer. `Ok(None)` is an answer without a
    /// result; the backend's `error` and `disconnect` come back as [`ProxyError::Refused`] and
    /// [`ProxyError::Disconnect`].
    pub async fn call<B: Request, R: Outcome>(
        &self,
        endpoint: &Endpoint,
        headers: &ClientHeaders,
        body: &B,
    ) -> Result<Option<R>, ProxyError> {
        match &endpoint.target {
            Target::Http(url) => self.http.call(endpoint, url, headers, body).await,
            Target::Grpc(target) => {
                target
                    .call(
                        self.egress,
                        endpoint,
                        endpoint.forwarded_headers(headers),
                        body,
                    )
                    .await
            }
        }
    }
}

/// The backend's answer, whatever the transport: a `disconnect` wins over an `error`, which wins
/// over the `result`. Codes and reasons are checked here: an error needs a code, a disconnect a
/// code in 3000-4999 (its reason is cut to what a close frame holds).
pub(crate) fn settle<R>(
    disconnect: Option<DisconnectAnswer>,
    error: Option<ErrorAnswer>,
    result: Option<R>,
) -> Result<Option<R>, ProxyError> {
    if let Some(d) = disconnect {
        let code = u16::try_from(d.code)
            .ok()
            .filter(|c| (3000..=4999).contains(c))
            .ok_or_else(|| {
                ProxyError::Malformed(format!("disconnect code {} is not in 3000-4999", d.code))
            })?;
        let mut reason = d.reason;
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        return Err(ProxyError::Disconnect(Disconnect::custom(code, reason)));
    }
    if let Some(e) = error {
        if e.code == 0 {
            return Err(ProxyError::Malformed("error without a code".into()));
        }
        return Err(ProxyError::Refused(ClientError {
            code: e.code,
            message: e.message.into(),
            temporary: e.temporary,
        }));
    }
    Ok(result)
}

/// The headers of a client's connection that some proxy may forward, captured once per
/// connection (only the names some proxy lists, so idle connections stay small).
#[derive(Debug, Default, Clone)]
pub struct ClientHeaders {
    transport: Vec<(HeaderName, HeaderValue)>,
    emulated: Vec<(HeaderName, HeaderValue)>,
}

impl ClientHeaders {
    /// Whether no header was captured (no proxy forwards any).
    pub fn is_empty(&self) -> bool {
        self.transport.is_empty() && self.emulated.is_empty()
    }
}

/// Every proxy of one config version, and how names and methods resolve to them.
#[derive(Debug, Default)]
pub struct Proxies {
    connect: Option<Arc<Endpoint>>,
    refresh: Option<Arc<Endpoint>>,
    channel_defaults: HashMap<ChannelProxyKind, Arc<Endpoint>>,
    named: HashMap<String, Arc<Endpoint>>,
    rpc_default: Option<Arc<Endpoint>>,
    rpc_without_namespace: RpcOptions,
    rpc_namespaces: HashMap<String, RpcOptions>,
    rpc_boundary: String,
    /// Whether any RPC scope uses a proxy (else `rpc` is not available at all).
    rpc_enabled: bool,
    /// Union of every proxy's `http_headers`.
    transport_headers: HashSet<HeaderName>,
    /// Union of every proxy's `emulated_headers`.
    emulated_headers: HashSet<HeaderName>,
}

impl Proxies {
    /// Compiles the proxies of a validated config.
    pub fn compile(tenant: &TenantConfig) -> Result<Self, String> {
        let mut p = Proxies {
            rpc_without_namespace: tenant.rpc.without_namespace.clone(),
            rpc_boundary: tenant.rpc.namespace_boundary.clone(),
            ..Default::default()
        };
        let mut all: Vec<Arc<Endpoint>> = Vec::new();
        let mut compile = |name: &str, path: &str, o: &ProxyOptions| {
            let e = Arc::new(Endpoint::compile(name, path, o)?);
            all.push(e.clone());
            Ok::<_, String>(e)
        };
        let client = &tenant.client.proxy;
        if client.connect.enabled {
            p.connect = Some(compile(
                "connect",
                "client.proxy.connect",
                &client.connect.options(),
            )?);
        }
        if client.refresh.enabled {
            p.refresh = Some(compile(
                "refresh",
                "client.proxy.refresh",
                &client.refresh.options(),
            )?);
        }
        for kind in ChannelProxyKind::ALL {
            let o = tenant.channel.proxy.get(kind);
            if !o.endpoint.is_empty() {
                let path = format!("channel.proxy.{}", kind.as_str());
                p.channel_defaults
                    .insert(kind, compile(DEFAULT_PROXY_NAME, &path, o)?);
            }
        }
        for (i, named) in tenant.proxies.iter().enumerate() {
            let e = compile(&named.name, &format!("proxies[{i}]"), &named.options())?;
            p.named.insert(named.name.clone(), e);
        }
        if !tenant.rpc.proxy.endpoint.is_empty() {
            p.rpc_default = Some(compile(DEFAULT_PROXY_NAME, "rpc.proxy", &tenant.rpc.proxy)?);
        }
        p.rpc_enabled = tenant.rpc.without_namespace.proxy_enabled;
        for ns in &tenant.rpc.namespaces {
            p.rpc_enabled |= ns.proxy_enabled;
            p.rpc_namespaces.insert(ns.name.clone(), ns.options());
        }
        for e in &all {
            p.transport_headers.extend(e.http_headers.iter().cloned());
            p.emulated_headers
                .extend(e.emulated_headers.iter().cloned());
        }
        Ok(p)
    }

    /// The connect proxy, when enabled.
    pub fn connect(&self) -> Option<&Arc<Endpoint>> {
        self.connect.as_ref()
    }

    /// The refresh proxy, when enabled (connections are then refreshed by the server).
    pub fn refresh(&self) -> Option<&Arc<Endpoint>> {
        self.refresh.as_ref()
    }

    /// The proxy a channel's options pick for `kind`: `None` when the options do not enable
    /// one, error 108 when they name one that is not configured.
    pub fn channel(
        &self,
        kind: ChannelProxyKind,
        options: &ChannelOptions,
    ) -> Option<Result<&Arc<Endpoint>, ClientError>> {
        let (enabled, name) = kind.of(options);
        if !enabled {
            return None;
        }
        let found = if name == DEFAULT_PROXY_NAME {
            self.channel_defaults.get(&kind)
        } else {
            self.named.get(name)
        };
        Some(found.ok_or(ClientError::NOT_AVAILABLE))
    }

    /// The proxy that answers RPC `method`: 108 when no RPC proxy is in use or the method's
    /// namespace does not enable one, 104 for an unknown RPC namespace.
    pub fn rpc(&self, method: &str) -> Result<&Arc<Endpoint>, ClientError> {
        if !self.rpc_enabled {
            return Err(ClientError::NOT_AVAILABLE);
        }
        let options = match method.split_once(self.rpc_boundary.as_str()) {
            Some((ns, _)) => self
                .rpc_namespaces
                .get(ns)
                .ok_or(ClientError::METHOD_NOT_FOUND)?,
            None => &self.rpc_without_namespace,
        };
        if !options.proxy_enabled {
            return Err(ClientError::NOT_AVAILABLE);
        }
        let found = if options.proxy_name == DEFAULT_PROXY_NAME {
            self.rpc_default.as_ref()
        } else {
            self.named.get(&options.proxy_name)
        };
        found.ok_or(ClientError::NOT_AVAILABLE)
    }

    /// Keeps the connection request's headers that some proxy forwards, less Rotor's own
    /// credentials (see [`credentials`]).
    pub fn capture_headers(&self, headers: &HeaderMap) -> ClientHeaders {
        if self.transport_headers.is_empty() {
            return ClientHeaders::default();
        }
        ClientHeaders {
            transport: headers
                .iter()
                .filter(|(name, _)| self.transport_headers.contains(*name))
                .filter_map(|(n, v)| Some((n.clone(), credentials::forwardable(n, v)?)))
                .collect(),
            emulated: Vec::new(),
        }
    }

    /// Adds the connect command's `headers` (client-controlled) that some proxy forwards.
    pub fn capture_emulated(&self, into: &mut ClientHeaders, headers: &HashMap<String, String>) {
        if self.emulated_headers.is_empty() {
            return;
        }
        for (k, v) in headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                continue;
            };
            if !self.emulated_headers.contains(&name) {
                continue;
            }
            if let Some(value) = credentials::forwardable(&name, &value) {
                into.emulated.push((name, value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotor_tenant_config::Format;

    fn proxies(json: &str) -> Proxies {
        let config = TenantConfig::parse(json, Format::Json).unwrap().config;
        Proxies::compile(&config).unwrap()
    }

    #[test]
    fn rpc_methods_resolve_through_their_namespace() {
        let p = proxies(
            r#"{"rpc": {"proxy": {"endpoint": "http://a/rpc"},
                        "without_namespace": {"proxy_enabled": true},
                        "namespaces": [{"name": "off"}, {"name": "named", "proxy_enabled": true, "proxy_name": "other"}]},
                "proxies": [{"name": "other", "endpoint": "http://b/rpc"}]}"#,
        );
        assert_eq!(p.rpc("plain").unwrap().target(), "http://a/rpc");
        assert_eq!(p.rpc("named:m").unwrap().target(), "http://b/rpc");
        assert_eq!(p.rpc("off:m").unwrap_err().code, 108);
        assert_eq!(p.rpc("nope:m").unwrap_err().code, 104);
        assert_eq!(proxies("{}").rpc("m").unwrap_err().code, 108);
    }

    #[test]
    fn status_transforms_turn_statuses_into_errors_or_disconnects() {
        let p = proxies(
            r#"{"client": {"proxy": {"connect": {"enabled": true, "endpoint": "http://a",
                 "http": {"status_to_code_transforms": [
                    {"status_code": 404, "to_error": {"code": 1404, "message": "not found"}},
                    {"status_code": 403, "to_disconnect": {"code": 4403, "reason": "forbidden"}}]}}}}}"#,
        );
        let e = p.connect().unwrap();
        assert!(matches!(e.status_error(404), ProxyError::Refused(c) if c.code == 1404));
        assert!(matches!(e.status_error(403), ProxyError::Disconnect(d) if d.code == 4403));
        assert!(matches!(e.status_error(500), ProxyError::Status(500)));
    }

    #[test]
    fn forwarded_headers_follow_each_proxys_allow_list() {
        let p = proxies(
            r#"{"client": {"proxy": {"connect": {"enabled": true, "endpoint": "http://a",
                 "http_headers": ["Authorization", "X-Forwarded-For"], "emulated_headers": ["X-Token"],
                 "http": {"static_headers": {"X-Static": "s", "Authorization": "static"}}}}}}"#,
        );
        let mut incoming = HeaderMap::new();
        incoming.insert("authorization", HeaderValue::from_static("Bearer t"));
        incoming.insert("cookie", HeaderValue::from_static("secret"));
        let mut captured = p.capture_headers(&incoming);
        assert_eq!(captured.transport.len(), 1, "only listed headers are kept");
        p.capture_emulated(
            &mut captured,
            &HashMap::from([
                ("X-Token".to_owned(), "e".to_owned()),
                ("Cookie".to_owned(), "c".to_owned()),
            ]),
        );
        let out = p.connect().unwrap().request_headers(&captured);
        assert_eq!(out["authorization"], "Bearer t");
        assert_eq!(out["x-static"], "s");
        assert_eq!(out["x-token"], "e");
        assert_eq!(out[header::CONTENT_TYPE], "application/json");
        assert!(out.get("cookie").is_none());
    }

    #[test]
    fn an_allow_list_naming_cookie_and_authorization_still_never_forwards_rotor_credentials() {
        let p = proxies(
            r#"{"client": {"proxy": {"connect": {"enabled": true, "endpoint": "http://a",
                 "http_headers": ["Cookie", "Authorization"], "emulated_headers": ["Cookie"]}}}}"#,
        );
        let mut incoming = HeaderMap::new();
        incoming.insert("cookie", HeaderValue::from_static("rotor_session=x; app=1"));
        incoming.append("cookie", HeaderValue::from_static("__Host-rotor_csrf=y"));
        incoming.insert(
            "authorization",
            HeaderValue::from_static("Bearer rtr_secret"),
        );
        let mut captured = p.capture_headers(&incoming);
        p.capture_emulated(
            &mut captured,
            &HashMap::from([("Cookie".to_owned(), "rotor_csrf=z".to_owned())]),
        );
        let out = p.connect().unwrap().request_headers(&captured);
        let cookies: Vec<_> = out.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["app=1"]);
        assert!(out.get("authorization").is_none());
    }
}
