//! The gRPC side of the proxies: Centrifugo's `CentrifugoProxy` service (`proto/proxy.proto`)
//! at a `grpc://host:port` endpoint. Each endpoint keeps one HTTP/2 connection, opened on first
//! use through [`Egress::connect`] (so a hosted tenant reaches public addresses only, checked
//! after resolution, failing closed), with the proxy's `grpc.*` options: TLS (webpki roots or
//! the given CA, an optional client certificate), per-call credentials, gzip, static metadata.
//! A call carries the forwarded client headers as metadata and the proxy's deadline over the
//! whole exchange; the answer goes through [`settle`] like an HTTP one. Payloads are native
//! bytes (base64 in `b64data` only with `binary_encoding`, as in Centrifugo).

use std::fmt;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use bytes::Bytes;
use rotor_tenant_config::{grpc_authority, ProxyOptions};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::types::{self, DisconnectAnswer, ErrorAnswer, RawBytes, UserRequest};
use super::{settle, Endpoint, ProxyError};
use crate::egress::Egress;

/// Messages and service of Centrifugo's proxy protocol (client and server: tests play the
/// backend).
pub mod pb {
    tonic::include_proto!("centrifugal.centrifugo.proxy");
}

use pb::centrifugo_proxy_client::CentrifugoProxyClient;

/// Longest gRPC status text kept for logs.
const MAX_STATUS_TEXT: usize = 300;

/// The proxy events, each a method of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Connect,
    Refresh,
    Subscribe,
    Publish,
    SubRefresh,
    Rpc,
}

/// A request message of one event.
#[derive(Debug)]
pub enum GrpcRequest {
    Connect(pb::ConnectRequest),
    Refresh(pb::RefreshRequest),
    Subscribe(pb::SubscribeRequest),
    Publish(pb::PublishRequest),
    SubRefresh(pb::SubRefreshRequest),
    Rpc(pb::RpcRequest),
}

/// A result message of one event.
#[derive(Debug)]
pub enum GrpcResult {
    Connect(pb::ConnectResult),
    Refresh(pb::RefreshResult),
    Subscribe(pb::SubscribeResult),
    Publish(pb::PublishResult),
    SubRefresh(pb::SubRefreshResult),
    Rpc(pb::RpcResult),
}

/// A request body that has a gRPC form.
pub trait ToGrpc {
    /// The message for `event`.
    fn to_grpc(&self, event: Event) -> Result<GrpcRequest, ProxyError>;
}

/// A result that has a gRPC form; its event picks the method.
pub trait FromGrpc: Sized {
    /// The event whose result this is.
    const EVENT: Event;
    /// The result from the event's message.
    fn from_grpc(result: GrpcResult) -> Result<Self, ProxyError>;
}

/// One gRPC backend and how to talk to it.
pub struct GrpcTarget {
    host: String,
    port: u16,
    endpoint: tonic::transport::Endpoint,
    credentials: Option<(MetadataKey<Ascii>, MetadataValue<Ascii>)>,
    compression: bool,
    /// Opened on first use (it needs the runtime), under the egress rule of that call.
    channel: OnceLock<Channel>,
}

impl fmt::Debug for GrpcTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        f.debug_struct("GrpcTarget")
            .field("target", &self.to_string())
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for GrpcTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grpc://{}:{}", self.host, self.port)
    }
}

/// Checks that option `option` holds PEM certificates; errors name the option only.
fn certificates(path: &str, option: &str, pem: &str) -> Result<Certificate, String> {
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match parsed {
        Ok(certs) if !certs.is_empty() => Ok(Certificate::from_pem(pem)),
        _ => Err(format!(
            "{path}.grpc.tls.{option}: holds no valid PEM certificate"
        )),
    }
}

impl GrpcTarget {
    /// The target of a validated proxy at `path` with a `grpc://` endpoint.
    pub fn compile(path: &str, o: &ProxyOptions) -> Result<Self, String> {
        let (host, port) = grpc_authority(o.endpoint.trim())
            .ok_or_else(|| format!("{path}.endpoint: a gRPC endpoint is grpc://host:port"))?;
        let tls = &o.grpc.tls;
        let scheme = if tls.enabled { "https" } else { "http" };
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{host}:{port}"))
                .map_err(|e| format!("{path}.endpoint: {e}"))?
                .user_agent(concat!("rotor/", env!("CARGO_PKG_VERSION")))
                .map_err(|e| format!("{path}.endpoint: {e}"))?;
        if tls.enabled {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = if tls.server_name.is_empty() {
                bare
            } else {
                tls.server_name.as_str()
            };
            let mut config = ClientTlsConfig::new().domain_name(name);
            config = if tls.server_ca_pem.is_empty() {
                config.with_webpki_roots()
            } else {
                config.ca_certificate(certificates(path, "server_ca_pem", &tls.server_ca_pem)?)
            };
            if !tls.cert_pem.is_empty() {
                certificates(path, "cert_pem", &tls.cert_pem)?;
                PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
                    .map_err(|_| format!("{path}.grpc.tls.key_pem: holds no valid PEM key"))?;
                config = config.identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| format!("{path}.grpc.tls: {e}"))?;
        }
        let credentials = if o.grpc.credentials_key.is_empty() {
            None
        } else {
            let key =
                MetadataKey::from_bytes(o.grpc.credentials_key.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("{path}.grpc.credentials_key: not a metadata key"))?;
            let value = MetadataValue::try_from(o.grpc.credentials_value.as_str())
                .map_err(|_| format!("{path}.grpc.credentials_value: not a metadata value"))?;
            Some((key, value))
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            endpoint,
            credentials,
            compression: o.grpc.compression,
            channel: OnceLock::new(),
        })
    }

    /// A client of the service at this backend; every connection it opens goes through the
    /// egress rule.
    pub(super) fn client(&self, egress: Egress) -> CentrifugoProxyClient<Channel> {
        let channel = self.channel.get_or_init(|| {
            let host = self.host.clone();
            let port = self.port;
            let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
                let host = host.clone();
                async move {
                    egress
                        .connect(&host, port)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            });
            self.endpoint.clone().connect_with_connector_lazy(connector)
        });
        let mut client = CentrifugoProxyClient::new(channel.clone());
        if self.compression {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        client
    }

    /// Refuses, before any connection, a backend the egress rule does not allow by its port
    /// or literal address.
    pub(super) fn check(&self, egress: Egress) -> Result<(), ProxyError> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        egress
            .check_authority(bare, self.port)
            .map_err(|e| ProxyError::Egress(e.to_string()))
    }

    /// A request carrying `message`, the forwarded `headers` as metadata, the per-call
    /// credentials and the proxy's deadline.
    pub(super) fn request<T>(
        &self,
        endpoint: &Endpoint,
        headers: HeaderMap,
        message: T,
    ) -> tonic::Request<T> {
        let mut request = self.untimed_request(headers, message);
        request.set_timeout(endpoint.timeout);
        request
    }

    /// [`Self::request`] without a deadline, for a stream that lives as long as its
    /// subscription.
    pub(super) fn untimed_request<T>(&self, headers: HeaderMap, message: T) -> tonic::Request<T> {
        let mut metadata = MetadataMap::from_headers(headers);
        if let Some((key, value)) = &self.credentials {
            metadata.insert(key.clone(), value.clone());
        }
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = metadata;
        request
    }

    /// Calls the event's method with `body` and decodes the answer.
    pub(super) async fn call<B: ToGrpc, R: FromGrpc>(
        &self,
        egress: Egress,
        endpoint: &Endpoint,
        headers: HeaderMap,
        body: &B,
    ) -> Result<Option<R>, ProxyError> {
        self.check(egress)?;
        let message = body.to_grpc(R::EVENT)?;
        let mut client = self.client(egress);
        macro_rules! exchange {
            ($method:ident, $message:expr, $variant:ident) => {{
                let answer = client
                    .$method(self.request(endpoint, headers, $message))
                    .await
                    .map_err(status_error)?
                    .into_inner();
                settle(
                    answer.disconnect.map(disconnect),
                    answer.error.map(error),
                    answer.result.map(GrpcResult::$variant),
                )
            }};
        }
        let exchange = async {
            match message {
                GrpcRequest::Connect(m) => exchange!(connect, m, Connect),
                GrpcRequest::Refresh(m) => exchange!(refresh, m, Refresh),
                GrpcRequest::Subscribe(m) => exchange!(subscribe, m, Subscribe),
                GrpcRequest::Publish(m) => exchange!(publish, m, Publish),
                GrpcRequest::SubRefresh(m) => exchange!(sub_refresh, m, SubRefresh),
                GrpcRequest::Rpc(m) => exchange!(rpc, m, Rpc),
            }
        };
        let answer = tokio::time::timeout(endpoint.timeout, exchange)
            .await
            .map_err(|_| ProxyError::Timeout(endpoint.timeout))??;
        answer.map(R::from_grpc).transpose()
    }
}

/// A failed call as text for logs: the status code, its message (cut) and the causes (a refused
/// or failed connection shows here).
pub(super) fn status_error(status: tonic::Status) -> ProxyError {
    let mut text = format!("{:?}", status.code());
    let message = status.message();
    if !message.is_empty() {
        let mut end = message.len().min(MAX_STATUS_TEXT);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        text.push_str(": ");
        text.push_str(&message[..end]);
    }
    let mut source = std::error::Error::source(&status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    ProxyError::Grpc(text)
}

pub(super) fn disconnect(d: pb::Disconnect) -> DisconnectAnswer {
    DisconnectAnswer {
        code: d.code,
        reason: d.reason,
    }
}

pub(super) fn error(e: pb::Error) -> ErrorAnswer {
    ErrorAnswer {
        code: e.code,
        message: e.message,
        temporary: e.temporary,
    }
}

fn mismatch() -> ProxyError {
    ProxyError::Encode("the request has no gRPC form for this event".into())
}

fn payload(p: &types::Payload<'_>) -> (Bytes, String) {
    (
        Bytes::copy_from_slice(p.native),
        p.b64data.clone().unwrap_or_default(),
    )
}

impl ToGrpc for types::ConnectRequest<'_> {
    fn to_grpc(&self, event: Event) -> Result<GrpcRequest, ProxyError> {
        if event != Event::Connect {
            return Err(mismatch());
        }
        let (data, b64data) = payload(&self.payload);
        Ok(GrpcRequest::Connect(pb::ConnectRequest {
            client: self.base.client.to_owned(),
            transport: self.base.transport.as_str().to_owned(),
            protocol: self.base.protocol.to_owned(),
            encoding: self.base.encoding.to_owned(),
            data,
            b64data,
            name: self.name.to_owned(),
            version: self.version.to_owned(),
            channels: self.channels.iter().map(|c| (*c).to_owned()).collect(),
        }))
    }
}

impl ToGrpc for UserRequest<'_> {
    fn to_grpc(&self, event: Event) -> Result<GrpcRequest, ProxyError> {
        let b = &self.base;
        let (client, transport, protocol, encoding) = (
            b.client.to_owned(),
            b.transport.as_str().to_owned(),
            b.protocol.to_owned(),
            b.encoding.to_owned(),
        );
        let user = self.user.to_owned();
        let meta = self
            .meta
            .map(|m| Bytes::copy_from_slice(m.get().as_bytes()))
            .unwrap_or_default();
        let channel = self.channel.to_owned();
        let (data, b64data) = payload(&self.payload);
        Ok(match event {
            Event::Connect => return Err(mismatch()),
            Event::Refresh => GrpcRequest::Refresh(pb::RefreshRequest {
                client,
                transport,
                protocol,
                encoding,
                user,
                meta,
            }),
            Event::Subscribe => GrpcRequest::Subscribe(pb::SubscribeRequest {
                client,
                transport,
                protocol,
                encoding,
                user,
                channel,
                token: self.token.to_owned(),
                meta,
                data,
                b64data,
            }),
            Event::Publish => GrpcRequest::Publish(pb::PublishRequest {
                client,
                transport,
                protocol,
                encoding,
                user,
                channel,
                data,
                b64data,
                meta,
            }),
            Event::SubRefresh => GrpcRequest::SubRefresh(pb::SubRefreshRequest {
                client,
                transport,
                protocol,
                encoding,
                user,
                channel,
                meta,
            }),
            Event::Rpc => GrpcRequest::Rpc(pb::RpcRequest {
                client,
                transport,
                protocol,
                encoding,
                user,
                method: self.method.to_owned(),
                data,
                b64data,
                meta,
            }),
        })
    }
}

fn overrides(o: Option<pb::SubscribeOptionOverride>) -> Option<types::Override> {
    let b = |v: Option<pb::BoolValue>| v.map(|v| types::BoolValue { value: v.value });
    o.map(|o| types::Override {
        presence: b(o.presence),
        join_leave: b(o.join_leave),
        force_push_join_leave: b(o.force_push_join_leave),
        force_recovery: b(o.force_recovery),
        force_positioning: b(o.force_positioning),
    })
}

/// Implements [`FromGrpc`] for a result type from its event's message.
macro_rules! from_grpc {
    ($ty:ty, $variant:ident, |$r:ident| $body:expr) => {
        impl FromGrpc for $ty {
            const EVENT: Event = Event::$variant;
            fn from_grpc(result: GrpcResult) -> Result<Self, ProxyError> {
                let GrpcResult::$variant($r) = result else {
                    return Err(ProxyError::Malformed("answer of another method".into()));
                };
                Ok($body)
            }
        }
    };
}

from_grpc!(types::ConnectResult, Connect, |r| types::ConnectResult {
    user: r.user,
    expire_at: r.expire_at,
    info: RawBytes::of(r.info),
    b64info: r.b64info,
    data: RawBytes::of(r.data),
    b64data: r.b64data,
    channels: r.channels,
    subs: r
        .subs
        .into_iter()
        .map(|(channel, o)| {
            let options = types::SubscribeOptions {
                expire_at: o.expire_at,
                info: RawBytes::of(o.info),
                b64info: o.b64info,
                data: RawBytes::of(o.data),
                b64data: o.b64data,
                overrides: overrides(o.r#override),
                cache_recover: o.cache_recover,
            };
            (channel, options)
        })
        .collect(),
    meta: RawBytes::of(r.meta),
    session_tag: String::new(),
});

from_grpc!(types::RefreshResult, Refresh, |r| types::RefreshResult {
    expired: r.expired,
    expire_at: r.expire_at,
    info: RawBytes::of(r.info),
    b64info: r.b64info,
    meta: RawBytes::of(r.meta),
});

from_grpc!(types::SubscribeResult, Subscribe, |r| {
    types::SubscribeResult {
        expire_at: r.expire_at,
        info: RawBytes::of(r.info),
        b64info: r.b64info,
        data: RawBytes::of(r.data),
        b64data: r.b64data,
        overrides: overrides(r.r#override),
    }
});

from_grpc!(types::PublishResult, Publish, |r| types::PublishResult {
    data: RawBytes::of(r.data),
    b64data: r.b64data,
    skip_history: r.skip_history,
    tags: r.tags.into_iter().collect(),
    idempotency_key: r.idempotency_key,
    delta: r.delta,
    version: r.version,
    version_epoch: r.version_epoch,
});

from_grpc!(types::SubRefreshResult, SubRefresh, |r| {
    types::SubRefreshResult {
        expired: r.expired,
        expire_at: r.expire_at,
        info: RawBytes::of(r.info),
        b64info: r.b64info,
    }
});

from_grpc!(types::RpcResult, Rpc, |r| types::RpcResult {
    data: RawBytes::of(r.data),
    b64data: r.b64data,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_requests_take_each_events_message_with_native_payloads() {
        let req = UserRequest {
            base: types::Base {
                client: "c1",
                transport: crate::protocol::TransportName::WebSocket,
                protocol: "json",
                encoding: "json",
            },
            user: "42",
            meta: None,
            channel: "chat:1",
            token: "t",
            method: "m",
            payload: types::Payload::native(&[0, 159, 1], false),
        };
        match req.to_grpc(Event::Subscribe).unwrap() {
            GrpcRequest::Subscribe(m) => {
                assert_eq!((m.channel.as_str(), m.token.as_str()), ("chat:1", "t"));
                assert_eq!(&m.data[..], &[0, 159, 1]);
                assert!(m.b64data.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            req.to_grpc(Event::Rpc).unwrap(),
            GrpcRequest::Rpc(m) if m.method == "m"
        ));
        assert!(req.to_grpc(Event::Connect).is_err());
        let binary = types::Payload::native(&[0, 1, 2], true);
        assert_eq!(payload(&binary), (Bytes::new(), "AAEC".to_owned()));
    }

    #[test]
    fn results_keep_bytes_and_treat_empty_fields_as_unset() {
        let r = types::RpcResult::from_grpc(GrpcResult::Rpc(pb::RpcResult {
            data: Bytes::from_static(&[0, 255]),
            b64data: String::new(),
        }))
        .unwrap();
        assert_eq!(
            types::decode_payload(r.data, &r.b64data).unwrap().unwrap(),
            &[0u8, 255][..]
        );
        let r = types::SubscribeResult::from_grpc(GrpcResult::Subscribe(pb::SubscribeResult {
            r#override: Some(pb::SubscribeOptionOverride {
                presence: Some(pb::BoolValue { value: true }),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap();
        assert!(r.info.is_none());
        assert!(r.overrides.unwrap().presence.unwrap().value);
        assert!(types::RpcResult::from_grpc(GrpcResult::Refresh(Default::default())).is_err());
    }
}
