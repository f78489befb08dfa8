//! The NATS broker (`broker.type: "nats"`): at-most-once PUB/SUB through a NATS server, as
//! Centrifugo's NATS broker. A channel is the subject `<prefix>.client.<channel>` carrying
//! Centrifugo's `Push` framing (its `pub`, `join` or `leave`); node control messages go to
//! `<prefix>.control`, which every process of the tenant listens to. Each process subscribes
//! to a channel's subject while it has subscribers in it.
//!
//! There is no history: publications have no offset or epoch, history reads answer
//! [`EngineError::NotAvailable`] (108), and the config refuses namespaces with history. A
//! publish while the connection is down fails (temporary error); one accepted just before the
//! connection is found dead may be lost — at most once, as Centrifugo documents. The client
//! reconnects by itself and subscribes again to every subject it had.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_trait::async_trait;
use futures_util::StreamExt;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::{Broker, BrokerEvents, EngineError, HistoryFilter, HistoryPage, PublishOptions};
use crate::protocol::{ClientInfo, Join, Leave, Publication, Push, StreamPosition};
use crate::publication::PubMsg;

/// How long a subscription's round trip through the server may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("nats: {e}"))
}

/// Subject names under one prefix. No other code builds a subject.
#[derive(Debug, Clone)]
struct Subjects {
    prefix: String,
}

impl Subjects {
    /// The subject of `channel`, or [`EngineError::BadChannel`] when a NATS subject cannot
    /// hold it: whitespace or control characters (they would end the protocol line), the
    /// wildcards `*` and `>`, or an empty token between dots.
    fn channel(&self, channel: &str) -> Result<String, EngineError> {
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
        };
        if !channel.split('.').all(token_ok) {
            return Err(EngineError::BadChannel);
        }
        Ok(format!("{}.client.{channel}", self.prefix))
    }

    fn control(&self) -> String {
        format!("{}.control", self.prefix)
    }

    /// Requests to this subject find no responder; the server's answer proves that it has
    /// handled everything this connection sent before.
    fn barrier(&self) -> String {
        format!("{}.barrier", self.prefix)
    }
}

/// PUB/SUB over NATS.
pub struct NatsBroker {
    client: async_nats::Client,
    subjects: Subjects,
    events: Arc<dyn BrokerEvents>,
    /// Channels this process is subscribed to; cancelling a token ends that subscription.
    channels: parking_lot::Mutex<HashMap<String, CancellationToken>>,
    write_timeout: Duration,
    stop: CancellationToken,
}

impl NatsBroker {
    /// Connects to `broker.nats.url`, subscribes to the tenant's control subject and returns
    /// once the server has it. Everything it starts stops with `stop`.
    pub async fn connect(
        config: &rotor_tenant_config::NatsBroker,
        events: Arc<dyn BrokerEvents>,
        stop: CancellationToken,
    ) -> Result<Self, EngineError> {
        let dial = config.dial_timeout.get();
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(dial)
            .max_reconnects(None)
            // Quick retries (capped at one second): delivery resumes soon after NATS is back.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50u64 << attempts.min(5)).min(1000))
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("nats broker connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("nats broker disconnected; reconnecting")
                    }
                    other => tracing::debug!(event = %other, "nats broker event"),
                }
            });
        let client = match tokio::time::timeout(
            dial + Duration::from_secs(1),
            options.connect(config.url.as_str()),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => return Err(unavailable("connect timeout")),
        };
        let broker = Self {
            client,
            subjects: Subjects {
                prefix: config.prefix.clone(),
            },
            events,
            channels: Default::default(),
            write_timeout: config.write_timeout.get(),
            stop,
        };
        let control = broker
            .subscribed(broker.subjects.control())
            .await
            .map_err(|e| unavailable(format!("cannot subscribe to the control subject: {e}")))?;
        let (events, stop) = (broker.events.clone(), broker.stop.clone());
        tokio::spawn(async move {
            let mut control = control;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    message = control.next() => match message {
                        Some(message) => events.control(&message.payload),
                        None => break,
                    },
                }
            }
        });
        Ok(broker)
    }

    /// Subscribes to `subject` and waits until the server has the subscription.
    async fn subscribed(&self, subject: String) -> Result<async_nats::Subscriber, EngineError> {
        let round_trip = async {
            let subscriber = self.client.subscribe(subject).await.map_err(unavailable)?;
            match self
                .client
                .request(self.subjects.barrier(), bytes::Bytes::new())
                .await
            {
                Ok(_) => Ok(subscriber),
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(subscriber),
                Err(e) => Err(unavailable(e)),
            }
        };
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, round_trip).await {
            Ok(result) => result,
            Err(_) => Err(unavailable("subscribe timed out")),
        }
    }

    /// Publishes one message; refused while the connection is down.
    async fn send(&self, subject: String, payload: Vec<u8>) -> Result<(), EngineError> {
        if self.client.connection_state() != State::Connected {
            return Err(unavailable("not connected"));
        }
        match tokio::time::timeout(
            self.write_timeout,
            self.client.publish(subject, payload.into()),
        )
        .await
        {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable("write timeout")),
        }
    }

    async fn send_push(&self, channel: &str, push: Push) -> Result<(), EngineError> {
        let subject = self.subjects.channel(channel)?;
        self.send(subject, push.encode_to_vec()).await
    }
}

/// Hands one message of `channel`'s subject to the local hub.
fn deliver(events: &dyn BrokerEvents, channel: &str, payload: &[u8]) {
    let push = match Push::decode(payload) {
        Ok(push) => push,
        Err(e) => {
            tracing::warn!(%channel, error = %e, "undecodable message from nats");
            return;
        }
    };
    if let Some(publication) = push.r#pub {
        events.publication(channel, PubMsg::new(channel, publication, String::new()));
    } else if let Some(info) = push.join.and_then(|j| j.info) {
        events.join(channel, info);
    } else if let Some(info) = push.leave.and_then(|l| l.info) {
        events.leave(channel, info);
    } else {
        tracing::warn!(%channel, "unknown message from nats");
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        if opts.uses_history() {
            return Err(EngineError::NotAvailable);
        }
        let push = Push {
            channel: channel.to_owned(),
            r#pub: Some(publication),
            ..Default::default()
        };
        self.send_push(channel, push).await?;
        Ok(StreamPosition::default())
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        let push = Push {
            channel: channel.to_owned(),
            join: Some(Join { info: Some(info) }),
            ..Default::default()
        };
        self.send_push(channel, push).await
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        let push = Push {
            channel: channel.to_owned(),
            leave: Some(Leave { info: Some(info) }),
            ..Default::default()
        };
        self.send_push(channel, push).await
    }

    async fn history(&self, _: &str, _: HistoryFilter) -> Result<HistoryPage, EngineError> {
        Err(EngineError::NotAvailable)
    }

    async fn remove_history(&self, _: &str) -> Result<(), EngineError> {
        Err(EngineError::NotAvailable)
    }

    async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        let subject = self.subjects.channel(channel)?;
        if self.channels.lock().contains_key(channel) {
            return Ok(());
        }
        // Refused at once while down (the client retries), rather than after the timeout.
        if self.client.connection_state() != State::Connected {
            return Err(unavailable("not connected"));
        }
        let mut subscriber = self.subscribed(subject).await?;
        let token = self.stop.child_token();
        {
            let mut channels = self.channels.lock();
            if channels.contains_key(channel) {
                // Another call subscribed meanwhile; dropping ours unsubscribes it.
                return Ok(());
            }
            channels.insert(channel.to_owned(), token.clone());
        }
        let (events, channel) = (self.events.clone(), channel.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    message = subscriber.next() => match message {
                        Some(message) => deliver(events.as_ref(), &channel, &message.payload),
                        None => break,
                    },
                }
            }
            let _ = subscriber.unsubscribe().await;
        });
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        if let Some(token) = self.channels.lock().remove(channel) {
            token.cancel();
        }
        Ok(())
    }

    async fn broadcast_control(&self, payload: bytes::Bytes) -> Result<(), EngineError> {
        self.send(self.subjects.control(), payload.to_vec()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_to_subjects_under_the_prefix_and_unsafe_names_are_refused() {
        let s = Subjects {
            prefix: "centrifugo".into(),
        };
        assert_eq!(
            s.channel("chat:index").unwrap(),
            "centrifugo.client.chat:index"
        );
        assert_eq!(
            s.channel("a.b#u1,u2").unwrap(),
            "centrifugo.client.a.b#u1,u2"
        );
        assert_eq!(s.control(), "centrifugo.control");
        for bad in [
            "",
            "a b",
            "a\r\nPUB x 1",
            "a\tb",
            "news.*",
            "news.>",
            "a*",
            ">",
            "a..b",
            ".a",
            "a.",
        ] {
            assert!(
                matches!(s.channel(bad), Err(EngineError::BadChannel)),
                "{bad:?}"
            );
        }
    }

    #[derive(Default)]
    struct Seen(parking_lot::Mutex<Vec<String>>);

    impl BrokerEvents for Seen {
        fn publication(&self, channel: &str, msg: Arc<PubMsg>) {
            let data = String::from_utf8_lossy(&msg.publication.data).into_owned();
            self.0.lock().push(format!("pub {channel} {data}"));
        }
        fn join(&self, channel: &str, info: ClientInfo) {
            self.0
                .lock()
                .push(format!("join {channel} {}", info.client));
        }
        fn leave(&self, channel: &str, info: ClientInfo) {
            self.0
                .lock()
                .push(format!("leave {channel} {}", info.client));
        }
    }

    #[test]
    fn pushes_from_nats_reach_the_hub_and_garbage_is_dropped() {
        let seen = Seen::default();
        let info = ClientInfo {
            client: "c1".into(),
            ..Default::default()
        };
        let publication = Push {
            channel: "chat:x".into(),
            r#pub: Some(Publication {
                data: bytes::Bytes::from_static(b"{}"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let join = Push {
            join: Some(Join {
                info: Some(info.clone()),
            }),
            ..Default::default()
        };
        let leave = Push {
            leave: Some(Leave { info: Some(info) }),
            ..Default::default()
        };
        for push in [publication, join, leave] {
            deliver(&seen, "chat:x", &push.encode_to_vec());
        }
        deliver(&seen, "chat:x", b"\xff\xff not protobuf");
        deliver(&seen, "chat:x", &Push::default().encode_to_vec());
        assert_eq!(
            *seen.0.lock(),
            ["pub chat:x {}", "join chat:x c1", "leave chat:x c1"]
        );
    }
}
