//! This connection's subscribe streams ([`crate::proxy::stream`]): opening one when a client
//! subscribes to a channel whose namespace sets `subscribe_stream_proxy_enabled`, keeping the
//! running ones by channel (in the session's extras: most connections have none), ending one
//! with its subscription, and sending a bidirectional subscriber's publishes up its stream.

use super::concurrent::Work;
use super::identity::Identity;
use super::subscribe::{apply_subscribe_result, SubscribeSpec};
use super::{CommandError, Session};
use crate::protocol::{ClientError, PublishRequest, PublishResult, Reply};
use crate::proxy::stream::{Delivery, StreamLink};
use crate::proxy::Endpoint;

/// The running streams of one connection, by channel.
#[derive(Debug, Default)]
pub(super) struct Streams(Vec<(String, StreamLink)>);

impl Streams {
    fn get(&self, channel: &str) -> Option<&StreamLink> {
        self.0.iter().find(|(c, _)| c == channel).map(|(_, l)| l)
    }
}

impl Identity {
    /// Opens the channel's stream and waits for the backend's answer; on success fills in
    /// what the backend decided (as the subscribe proxy does) and keeps the stream in `spec`
    /// until the subscription is made.
    pub(super) async fn subscribe_by_stream(
        &self,
        endpoint: &Endpoint,
        spec: &mut SubscribeSpec,
        bidirectional: bool,
    ) -> Result<(), CommandError> {
        let opened = {
            let mut body = self.user_request(endpoint);
            body.channel = &spec.channel;
            body.token = &spec.request.token;
            body.payload = endpoint.payload(&spec.request.data)?;
            self.node
                .proxy
                .open_stream(endpoint, &self.headers, &body, bidirectional)
                .await
        };
        let opened = opened.inspect_err(|e| {
            if !e.is_answer() {
                tracing::warn!(
                    client = %self.client, channel = %spec.channel, proxy = %endpoint.name,
                    error = %e, "subscribe stream not opened"
                );
            }
        })?;
        if let Some(result) = opened.result {
            apply_subscribe_result(spec, result)?;
        }
        spec.stream = Some(opened.link);
        Ok(())
    }
}

impl Session {
    fn streams(&self) -> Option<&Streams> {
        self.extras.as_deref().map(|e| &e.streams)
    }

    /// Starts the stream of a subscription just made (its reply is queued).
    pub(super) fn start_stream(&mut self, channel: &str, mut link: StreamLink) {
        link.start(Delivery {
            channel: channel.to_owned(),
            client: self.handle.clone(),
            metrics: self.node.metrics.clone(),
        });
        let streams = &mut self.extras.get_or_insert_default().streams;
        streams.0.retain(|(c, _)| c != channel);
        streams.0.push((channel.to_owned(), link));
    }

    /// Cancels the channel's stream, if it has one.
    pub(super) fn end_stream(&mut self, channel: &str) {
        if let Some(extras) = self.extras.as_mut() {
            extras.streams.0.retain(|(c, _)| c != channel);
        }
    }

    /// Whether stream `id` is still the channel's stream.
    pub(super) fn is_stream(&self, channel: &str, id: u64) -> bool {
        self.streams()
            .and_then(|s| s.get(channel))
            .is_some_and(|l| l.id() == id)
    }

    /// `publish` into a channel of a stream namespace: up the subscriber's own bidirectional
    /// stream (answered once queued), else 108 as in Centrifugo.
    pub(super) fn start_stream_publish(
        &self,
        id: u32,
        req: PublishRequest,
        bidirectional: bool,
    ) -> Result<Work, CommandError> {
        let uplink = self
            .streams()
            .and_then(|s| s.get(&req.channel))
            .and_then(StreamLink::uplink)
            .filter(|_| bidirectional)
            .cloned()
            .ok_or(ClientError::NOT_AVAILABLE)?;
        Ok(Box::pin(async move {
            uplink.publish(req.data).await?;
            Ok(Reply {
                id,
                publish: Some(PublishResult {}),
                ..Default::default()
            })
        }))
    }
}
