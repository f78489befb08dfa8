//! A tenant's gRPC backend for the subscribe stream tests: a real tonic server of Centrifugo's
//! `CentrifugoProxy` service that serves `SubscribeUnidirectional` and `SubscribeBidirectional`
//! (the unary methods answer "unimplemented") and hands every stream it receives to the test,
//! which then answers it, sends publications down, reads what the client sent up, ends or
//! fails it, and sees when Rotor cancels it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use rotor_data_plane::proxy::grpc::pb::centrifugo_proxy_server::{
    CentrifugoProxy, CentrifugoProxyServer,
};
use rotor_data_plane::proxy::grpc::pb::*;
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::common::WAIT;

/// What goes down one stream: a message, or the failure that ends it.
pub type Down = Result<StreamSubscribeResponse, Status>;

/// One stream the backend received.
pub struct Opened {
    pub metadata: MetadataMap,
    /// The subscribe request (for a bidirectional stream, its first message).
    pub request: SubscribeRequest,
    pub bidirectional: bool,
    /// Sends down the stream; dropping it ends the stream normally.
    pub down: Option<mpsc::Sender<Down>>,
    /// Publications the client sent up (bidirectional streams).
    pub up: mpsc::UnboundedReceiver<Publication>,
    /// Fires when the server side of the stream is gone (ended, or cancelled by Rotor).
    gone: Option<oneshot::Receiver<()>>,
}

impl Opened {
    /// Sends a message down the stream.
    pub async fn send(&self, message: StreamSubscribeResponse) {
        self.down
            .as_ref()
            .expect("stream already ended")
            .send(Ok(message))
            .await
            .expect("stream is gone");
    }

    /// Answers the subscription with `response` (the stream's first message).
    pub async fn answer(&self, response: SubscribeResponse) {
        self.send(StreamSubscribeResponse {
            subscribe_response: Some(response),
            publication: None,
        })
        .await;
    }

    /// Accepts the subscription with an empty result.
    pub async fn accept(&self) {
        self.answer(SubscribeResponse {
            result: Some(SubscribeResult::default()),
            ..Default::default()
        })
        .await;
    }

    /// Sends a publication with `data`.
    pub async fn publish(&self, data: &[u8]) {
        self.send(StreamSubscribeResponse {
            subscribe_response: None,
            publication: Some(Publication {
                data: data.to_vec().into(),
                tags: Default::default(),
            }),
        })
        .await;
    }

    /// Ends the stream normally (the backend's handler returns).
    pub fn end(&mut self) {
        self.down = None;
    }

    /// Fails the stream with `status`.
    pub async fn fail(&mut self, status: Status) {
        let down = self.down.take().expect("stream already ended");
        down.send(Err(status)).await.expect("stream is gone");
    }

    /// Waits until the stream is gone on the server side (Rotor cancelled it).
    pub async fn gone(&mut self) {
        let gone = self.gone.take().expect("already awaited");
        tokio::time::timeout(WAIT, gone)
            .await
            .expect("the stream was not cancelled")
            .ok();
    }

    /// The next publication the client sent up.
    pub async fn next_up(&mut self) -> Publication {
        tokio::time::timeout(WAIT, self.up.recv())
            .await
            .expect("timed out waiting for a publication from the client")
            .expect("the stream's uplink ended")
    }
}

/// The backend: where it listens and the streams it received.
pub struct StreamBackend {
    pub addr: SocketAddr,
    opened: mpsc::UnboundedReceiver<Opened>,
}

impl StreamBackend {
    pub async fn start() -> Self {
        let (tx, opened) = mpsc::unbounded_channel();
        let service = CentrifugoProxyServer::new(Service { opened: tx });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder().add_service(service);
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = router.serve_with_incoming(incoming).await;
        });
        Self { addr, opened }
    }

    /// `grpc://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// The next stream the backend received.
    pub async fn opened(&mut self) -> Opened {
        tokio::time::timeout(WAIT, self.opened.recv())
            .await
            .expect("timed out waiting for a subscribe stream")
            .expect("backend stopped")
    }

    /// A stream received so far, if any (for checks that none arrived).
    pub fn try_opened(&mut self) -> Option<Opened> {
        self.opened.try_recv().ok()
    }
}

/// The stream of messages going down, telling the test when it is dropped.
struct DownStream {
    rx: mpsc::Receiver<Down>,
    _gone: oneshot::Sender<()>,
}

impl Stream for DownStream {
    type Item = Down;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Down>> {
        self.rx.poll_recv(cx)
    }
}

struct Service {
    opened: mpsc::UnboundedSender<Opened>,
}

impl Service {
    /// Registers a stream; returns what the server sends down it.
    fn open(
        &self,
        metadata: MetadataMap,
        request: SubscribeRequest,
        up: mpsc::UnboundedReceiver<Publication>,
        bidirectional: bool,
    ) -> DownStream {
        // Small, so a client that does not read holds the test's sends back.
        let (down, rx) = mpsc::channel(4);
        let (gone_tx, gone) = oneshot::channel();
        let _ = self.opened.send(Opened {
            metadata,
            request,
            bidirectional,
            down: Some(down),
            up,
            gone: Some(gone),
        });
        DownStream { rx, _gone: gone_tx }
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("only subscribe streams here"))
}

type BoxedDown = Pin<Box<dyn Stream<Item = Down> + Send>>;

#[tonic::async_trait]
impl CentrifugoProxy for Service {
    async fn connect(
        &self,
        _: Request<ConnectRequest>,
    ) -> Result<Response<ConnectResponse>, Status> {
        unimplemented()
    }

    async fn refresh(
        &self,
        _: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        unimplemented()
    }

    async fn subscribe(
        &self,
        _: Request<SubscribeRequest>,
    ) -> Result<Response<SubscribeResponse>, Status> {
        unimplemented()
    }

    async fn publish(
        &self,
        _: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        unimplemented()
    }

    async fn rpc(&self, _: Request<RpcRequest>) -> Result<Response<RpcResponse>, Status> {
        unimplemented()
    }

    async fn sub_refresh(
        &self,
        _: Request<SubRefreshRequest>,
    ) -> Result<Response<SubRefreshResponse>, Status> {
        unimplemented()
    }

    type SubscribeUnidirectionalStream = BoxedDown;

    async fn subscribe_unidirectional(
        &self,
        r: Request<SubscribeRequest>,
    ) -> Result<Response<BoxedDown>, Status> {
        let metadata = r.metadata().clone();
        let (_, up) = mpsc::unbounded_channel();
        let down = self.open(metadata, r.into_inner(), up, false);
        Ok(Response::new(Box::pin(down)))
    }

    type SubscribeBidirectionalStream = BoxedDown;

    async fn subscribe_bidirectional(
        &self,
        r: Request<Streaming<StreamSubscribeRequest>>,
    ) -> Result<Response<BoxedDown>, Status> {
        let metadata = r.metadata().clone();
        let mut incoming = r.into_inner();
        let first = incoming
            .message()
            .await?
            .and_then(|m| m.subscribe_request)
            .ok_or_else(|| Status::invalid_argument("the first message is no subscribe request"))?;
        let (up_tx, up) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = incoming.next().await {
                if let Some(publication) = message.publication {
                    if up_tx.send(publication).is_err() {
                        return;
                    }
                }
            }
        });
        let down = self.open(metadata, first, up, true);
        Ok(Response::new(Box::pin(down)))
    }
}
