//! Centrifugo's gRPC server API (`grpc_api.*`): service `centrifugal.centrifugo.api.CentrifugoApi`
//! from `data-plane/proto/api.proto` on a listener of its own, plain or TLS, served by the same
//! executor as the HTTP API (see [`service`]). The listener is bound by the binary next to the
//! public one and stops with the node's shutdown, letting calls in flight finish. A hosted
//! project has no listener: the edge hands its gRPC connections over ([`handed`]).

mod auth;
mod handed;
mod replies;
mod requests;
mod service;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use rotor_tenant_config::GrpcApi;

pub use handed::{Handed, HandedCall, MAX_AUTH_FAILURES};
pub use service::Service;

/// The messages and the service generated from `proto/api.proto` (client included, for tests
/// and tools).
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod proto {
    tonic::include_proto!("centrifugal.centrifugo.api");
}

/// Why the gRPC API could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GrpcApiError {
    /// `grpc_api.tls.*_pem_file` could not be read (the path is the option's value, which is
    /// not a secret; the file's content is never shown).
    #[error("grpc_api.tls.{option}: cannot read {path}: {source}")]
    ReadPem {
        option: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// The listener failed to bind.
    #[error("grpc_api: cannot bind {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    /// The certificate or key of `grpc_api.tls` is not usable (the cause says why; the
    /// material itself is never shown).
    #[error("grpc_api.tls: the certificate or key is not usable")]
    Tls(#[source] tonic::transport::Error),
    /// The server failed while serving.
    #[error("grpc_api: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The address `grpc_api` listens on: its own `address`, else `http_server_address`, else all
/// interfaces.
pub fn bind_address(api: &GrpcApi, http_server_address: &str) -> String {
    let host = [api.address.as_str(), http_server_address]
        .into_iter()
        .find(|a| !a.is_empty())
        .unwrap_or("0.0.0.0");
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", api.port)
    } else {
        format!("{host}:{}", api.port)
    }
}

/// Binds the gRPC API's listener.
pub async fn bind(address: &str) -> Result<TcpListener, GrpcApiError> {
    crate::listen::bind(address)
        .await
        .map_err(|source| GrpcApiError::Bind {
            address: address.to_owned(),
            source,
        })
}

fn pem(option: &'static str, text: &str, file: &str) -> Result<String, GrpcApiError> {
    if file.is_empty() {
        return Ok(text.to_owned());
    }
    std::fs::read_to_string(file).map_err(|source| GrpcApiError::ReadPem {
        option,
        path: file.to_owned(),
        source,
    })
}

/// The gRPC API of `node` with the settings of `api` (as loaded at start: the listener's
/// address and TLS do not follow a reload; keys do, per call). Fails on unreadable or invalid
/// TLS material, so the process can refuse to start.
pub fn server(
    api: &GrpcApi,
    node: Arc<Node>,
) -> Result<tonic::transport::server::Router, GrpcApiError> {
    let service = proto::centrifugo_api_server::CentrifugoApiServer::new(Service::new(node))
        .max_decoding_message_size(api.receive_limit());
    let mut builder = tonic::transport::Server::builder();
    if api.tls.enabled {
        let cert = pem("cert_pem_file", &api.tls.cert_pem, &api.tls.cert_pem_file)?;
        let key = pem("key_pem_file", &api.tls.key_pem, &api.tls.key_pem_file)?;
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(GrpcApiError::Tls)?;
    }
    Ok(builder.add_service(service))
}

/// Serves `server` on `listener` until `stop`, then lets calls in flight finish.
pub async fn serve(
    server: tonic::transport::server::Router,
    listener: TcpListener,
    stop: CancellationToken,
) -> Result<(), GrpcApiError> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    server
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await?;
    Ok(())
}
