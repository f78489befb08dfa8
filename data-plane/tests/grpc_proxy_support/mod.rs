//! A tenant's gRPC backend for the proxy tests: a real tonic server of Centrifugo's
//! `CentrifugoProxy` service (Rotor's generated server code, so the wire is real gRPC over
//! HTTP/2) that answers each unary call with a handler and records every call with its
//! metadata.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use rotor_data_plane::proxy::grpc::pb::centrifugo_proxy_server::{
    CentrifugoProxy, CentrifugoProxyServer,
};
use rotor_data_plane::proxy::grpc::pb::*;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::common::WAIT;

/// One unary request the backend received.
#[derive(Debug, Clone)]
pub enum Req {
    Connect(ConnectRequest),
    Refresh(RefreshRequest),
    Subscribe(SubscribeRequest),
    Publish(PublishRequest),
    Rpc(RpcRequest),
    SubRefresh(SubRefreshRequest),
}

/// What the backend does with one unary request.
pub enum Reply {
    Connect(ConnectResponse),
    Refresh(RefreshResponse),
    Subscribe(SubscribeResponse),
    Publish(PublishResponse),
    Rpc(RpcResponse),
    SubRefresh(SubRefreshResponse),
    /// Fails the call with this status.
    Status(Status),
    /// Never answers.
    Hang,
}

/// One call: its metadata and request.
#[derive(Debug)]
pub struct Call {
    pub metadata: MetadataMap,
    pub req: Req,
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

struct Service {
    handler: Handler,
    calls: mpsc::UnboundedSender<Call>,
}

/// The backend: where it listens and the calls it received.
pub struct GrpcBackend {
    pub addr: SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
}

impl GrpcBackend {
    /// A plain-text backend answering unary calls with `handler`.
    pub async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve(Arc::new(handler), None).await
    }

    /// A backend behind TLS with this certificate and key (PEM).
    pub async fn start_tls(
        handler: impl Fn(&Req) -> Reply + Send + Sync + 'static,
        cert: &str,
        key: &str,
    ) -> Self {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        Self::serve(Arc::new(handler), Some(tls)).await
    }

    async fn serve(handler: Handler, tls: Option<tonic::transport::ServerTlsConfig>) -> Self {
        let (tx, calls) = mpsc::unbounded_channel();
        let service = CentrifugoProxyServer::new(Service { handler, calls: tx })
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls).unwrap();
        }
        let router = server.add_service(service);
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = router.serve_with_incoming(incoming).await;
        });
        Self { addr, calls }
    }

    /// `grpc://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// The next call the backend received.
    pub async fn call(&mut self) -> Call {
        tokio::time::timeout(WAIT, self.calls.recv())
            .await
            .expect("timed out waiting for a gRPC proxy call")
            .expect("backend stopped")
    }

    /// A call received so far, if any (for checks that nothing arrived).
    pub fn try_call(&mut self) -> Option<Call> {
        self.calls.try_recv().ok()
    }
}

impl Service {
    async fn handle<T>(&self, request: Request<T>, wrap: fn(T) -> Req) -> Result<Reply, Status> {
        let metadata = request.metadata().clone();
        let req = wrap(request.into_inner());
        let reply = (self.handler)(&req);
        let _ = self.calls.send(Call { metadata, req });
        match reply {
            Reply::Status(s) => Err(s),
            Reply::Hang => std::future::pending().await,
            other => Ok(other),
        }
    }
}

fn unexpected() -> Status {
    Status::internal("the test handler answered with another method's reply")
}

type DownStream = Pin<Box<dyn Stream<Item = Result<StreamSubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CentrifugoProxy for Service {
    async fn connect(
        &self,
        r: Request<ConnectRequest>,
    ) -> Result<Response<ConnectResponse>, Status> {
        match self.handle(r, Req::Connect).await? {
            Reply::Connect(x) => Ok(Response::new(x)),
            _ => Err(unexpected()),
        }
    }

    async fn refresh(
        &self,
        r: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        match self.handle(r, Req::Refresh).await? {
            Reply::Refresh(x) => Ok(Response::new(x)),
            _ => Err(unexpected()),
        }
    }

    async fn subscribe(
        &self,
        r: Request<SubscribeRequest>,
    ) -> Result<Response<SubscribeResponse>, Status> {
        match self.handle(r, Req::Subscribe).await? {
            Reply::Subscribe(x) => Ok(Response::new(x)),
            _ => Err(unexpected()),
        }
    }

    async fn publish(
        &self,
        r: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        match self.handle(r, Req::Publish).await? {
            Reply::Publish(x) => Ok(Response::new(x)),
            _ => Err(unexpected()),
        }
    }

    async fn rpc(&self, r: Request<RpcRequest>) -> Result<Response<RpcResponse>, Status> {
        match self.handle(r, Req::Rpc).await? {
            Reply::Rpc(x) => Ok(Response::new(x)),
            _ => Err(unexpected()),
        }
    }

    async fn sub_refresh(
        &self,
        r: Request<SubRefreshRequest>,
    ) -> Result<Response<SubRefreshResponse>, Status> {
        match self.handle(r, Req::SubRefresh).await? {
            Reply::SubRefresh(x) => Ok(Response::new(x)),
            _ => Err(unexpected()),
        }
    }

    type SubscribeUnidirectionalStream = DownStream;

    async fn subscribe_unidirectional(
        &self,
        _: Request<SubscribeRequest>,
    ) -> Result<Response<DownStream>, Status> {
        Err(Status::unimplemented("no subscribe streams here"))
    }

    type SubscribeBidirectionalStream = DownStream;

    async fn subscribe_bidirectional(
        &self,
        _: Request<Streaming<StreamSubscribeRequest>>,
    ) -> Result<Response<DownStream>, Status> {
        Err(Status::unimplemented("no subscribe streams here"))
    }
}
