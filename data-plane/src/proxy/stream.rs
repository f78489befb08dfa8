//! Subscribe stream proxies (Centrifugo's `SubscribeUnidirectional` and
//! `SubscribeBidirectional`): a gRPC stream to the tenant's backend per client subscription.
//! [`ProxyClient::open_stream`] dials through the egress rule like every gRPC proxy, sends the
//! subscribe request and waits, within the proxy's timeout, for the first message: the
//! backend's subscribe answer, settled like a unary one. What follows runs in a task of its own
//! that, once the session has queued the subscribe reply ([`StreamLink::start`]), turns each
//! publication from the backend into a push frame for that one connection's outbox (the
//! connection's own encoding; never the hub, engine or history). The stream ending asks the
//! session to unsubscribe the client with 2000 ("server unsubscribe"); the stream failing, with
//! 2500 ("insufficient state", SDKs resubscribe), as Centrifugo does.
//!
//! Memory stays bounded: the task reads one message at a time (HTTP/2 flow control holds the
//! backend back) into the outbox, whose byte limit disconnects a slow client (3008); the
//! publications a bidirectional subscriber sends up wait in a small channel, and a publish that
//! finds it full for the proxy's timeout fails. Dropping the [`StreamLink`] (unsubscribe,
//! disconnect, a subscription that is not made after all) aborts the task and so cancels the
//! stream: the backend sees the call cancelled.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tonic::Streaming;

use super::grpc::{self, pb, Event, FromGrpc, GrpcRequest, GrpcResult, ToGrpc};
use super::{settle, types, ClientHeaders, Endpoint, ProxyClient, ProxyError, Target};
use crate::centrifugo_metrics::Frame;
use crate::client::{ClientHandle, Control};
use crate::metrics::Metrics;
use crate::protocol::{encode_reply, unsubscribe, Publication, Push, Reply};

/// Client publications waiting to go up one bidirectional stream.
const UPLINK_BUFFER: usize = 16;

/// Tells streams apart across a connection's life (a channel may be subscribed again).
static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// A stream whose backend accepted the subscription.
pub struct Opened {
    /// The backend's subscribe result (`None`: accepted with nothing to add).
    pub result: Option<types::SubscribeResult>,
    /// The running stream.
    pub link: StreamLink,
}

/// Where a started stream delivers its publications.
pub struct Delivery {
    pub channel: String,
    pub client: Arc<ClientHandle>,
    pub metrics: Arc<Metrics>,
}

/// One subscription's stream. Dropping it cancels the stream.
pub struct StreamLink {
    id: u64,
    start: Option<oneshot::Sender<Delivery>>,
    uplink: Option<Uplink>,
    task: tokio::task::AbortHandle,
}

impl fmt::Debug for StreamLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamLink")
            .field("id", &self.id)
            .field("bidirectional", &self.uplink.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for StreamLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StreamLink {
    /// Identifies this stream in the [`Control::StreamEnded`] it sends.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Starts delivering publications (call once the subscribe reply is queued).
    pub fn start(&mut self, to: Delivery) {
        if let Some(start) = self.start.take() {
            let _ = start.send(to);
        }
    }

    /// The way up a bidirectional stream; `None` for a unidirectional one.
    pub fn uplink(&self) -> Option<&Uplink> {
        self.uplink.as_ref()
    }
}

/// Sends a bidirectional subscriber's publications up its stream. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Uplink {
    tx: mpsc::Sender<pb::StreamSubscribeRequest>,
    timeout: Duration,
}

impl Uplink {
    /// Queues one publication for the backend; fails when the stream is gone or its queue
    /// stays full for the proxy's timeout.
    pub async fn publish(&self, data: Bytes) -> Result<(), ProxyError> {
        let message = pb::StreamSubscribeRequest {
            subscribe_request: None,
            publication: Some(pb::Publication {
                data,
                tags: Default::default(),
            }),
        };
        match tokio::time::timeout(self.timeout, self.tx.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ProxyError::Grpc("the subscribe stream is closed".into())),
            Err(_) => Err(ProxyError::Timeout(self.timeout)),
        }
    }
}

impl ProxyClient {
    /// Opens a subscribe stream for `body` (a subscribe request) and waits for the backend's
    /// answer. The backend's error or disconnect comes back as [`ProxyError::Refused`] or
    /// [`ProxyError::Disconnect`] (the stream is then closed).
    pub async fn open_stream<B: ToGrpc>(
        &self,
        endpoint: &Endpoint,
        headers: &ClientHeaders,
        body: &B,
        bidirectional: bool,
    ) -> Result<Opened, ProxyError> {
        let Target::Grpc(target) = &endpoint.target else {
            return Err(ProxyError::Encode(
                "subscribe streams need a grpc:// endpoint".into(),
            ));
        };
        target.check(self.egress)?;
        let GrpcRequest::Subscribe(request) = body.to_grpc(Event::Subscribe)? else {
            return Err(ProxyError::Encode("not a subscribe request".into()));
        };
        let metadata = endpoint.forwarded_headers(headers);
        let mut client = target.client(self.egress);
        let (uplink, opening) = if bidirectional {
            let (tx, mut rx) = mpsc::channel(UPLINK_BUFFER);
            let first = pb::StreamSubscribeRequest {
                subscribe_request: Some(request),
                publication: None,
            };
            // The channel is new and has room.
            let _ = tx.try_send(first);
            let up = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
            let call = client.subscribe_bidirectional(target.untimed_request(metadata, up));
            let uplink = Uplink {
                tx,
                timeout: endpoint.timeout,
            };
            (Some(uplink), futures_util::future::Either::Left(call))
        } else {
            let call = client.subscribe_unidirectional(target.untimed_request(metadata, request));
            (None, futures_util::future::Either::Right(call))
        };
        let first = async {
            let mut down = opening.await.map_err(grpc::status_error)?.into_inner();
            let first = down.message().await.map_err(grpc::status_error)?;
            Ok::<_, ProxyError>((down, first))
        };
        let (down, first) = tokio::time::timeout(endpoint.timeout, first)
            .await
            .map_err(|_| ProxyError::Timeout(endpoint.timeout))??;
        let answer = first
            .ok_or_else(|| ProxyError::Malformed("the stream ended before its answer".into()))?
            .subscribe_response
            .ok_or_else(|| {
                ProxyError::Malformed("the stream's first message is not a subscribe answer".into())
            })?;
        let result = settle(
            answer.disconnect.map(grpc::disconnect),
            answer.error.map(grpc::error),
            answer.result,
        )?
        .map(|r| types::SubscribeResult::from_grpc(GrpcResult::Subscribe(r)))
        .transpose()?;
        let id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
        let (start, started) = oneshot::channel();
        let proxy = endpoint.name.clone();
        let task = tokio::spawn(deliver(down, started, id, proxy)).abort_handle();
        Ok(Opened {
            result,
            link: StreamLink {
                id,
                start: Some(start),
                uplink,
                task,
            },
        })
    }
}

/// The stream's task: waits to be started, then delivers each publication until the stream
/// ends, fails, or the connection can take no more.
async fn deliver(
    mut down: Streaming<pb::StreamSubscribeResponse>,
    started: oneshot::Receiver<Delivery>,
    id: u64,
    proxy: String,
) {
    // Never started: the subscription was not made; dropping the stream cancels it.
    let Ok(to) = started.await else { return };
    let (code, reason) = loop {
        match down.message().await {
            Ok(Some(message)) => {
                // Later subscribe answers mean nothing; only publications are delivered.
                if let Some(publication) = message.publication {
                    if !to.push(publication) {
                        return;
                    }
                }
            }
            Ok(None) => break unsubscribe::SERVER,
            Err(status) => {
                tracing::info!(
                    client = %to.client.id, channel = %to.channel, %proxy,
                    error = %grpc::status_error(status), "subscribe stream failed"
                );
                break unsubscribe::INSUFFICIENT_STATE;
            }
        }
    };
    to.client.outbox.push_control(Control::StreamEnded {
        channel: to.channel.clone(),
        stream: id,
        code,
        reason: reason.to_owned(),
    });
}

impl Delivery {
    /// Queues one publication for the client; false when the connection takes no more (closing
    /// or found slow). A payload its encoding cannot carry is skipped and counted.
    fn push(&self, publication: pb::Publication) -> bool {
        let reply = Reply {
            push: Some(Push {
                channel: self.channel.clone(),
                r#pub: Some(Publication {
                    data: publication.data,
                    tags: publication.tags.into_iter().collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let Ok(frame) = encode_reply(self.client.protocol, &reply) else {
            // As for any publication a connection's encoding cannot carry (a binary payload
            // to a JSON client): skipped, the connection and its stream go on.
            self.metrics.json_unwritable_dropped.inc();
            tracing::debug!(client = %self.client.id, channel = %self.channel, "stream publication JSON cannot carry skipped");
            return true;
        };
        let len = frame.len();
        if !self.client.outbox.push_frame(frame) {
            return false;
        }
        self.metrics.messages_delivered.inc();
        self.metrics
            .centrifugo
            .sent(self.client.transport, Frame::PushPublication, len);
        true
    }
}
