//! One client connection's protocol state machine, independent of the transport: it takes
//! decoded frames and timer ticks, runs commands in arrival order, and answers through the
//! connection's outbox. A transport only turns a socket into frames and drains the outbox.

mod backend;
mod commands;
mod concurrent;
mod connect;
mod control;
mod identity;
mod pending;
mod permissions;
mod recovery;
mod streams;
mod subscribe;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::budgets::SocketPermit;
use crate::centrifugo_metrics::Frame;
use crate::client::{ClientHandle, Control};
use crate::node::Node;
use crate::protocol::{
    decode_commands, encode_reply, ClientError, Command, Disconnect, ProtocolKind, Reply,
    TransportName,
};
use crate::proxy::ClientHeaders;

/// How a transport carries the session.
#[derive(Debug, Clone, Copy)]
pub struct TransportInfo {
    /// Which transport; emulation transports get `session` and `node` in the connect result,
    /// and on unidirectional ones the connect result goes out as a `connect` push, connect
    /// errors become disconnects, and the transport unwraps every push.
    pub name: TransportName,
    pub protocol: ProtocolKind,
    /// The transport keeps the connection alive with its own frames (WebSocket ping/pong with
    /// `cf_ws_frame_ping_pong=true`): no protocol pings, and none announced at connect.
    pub native_ping: bool,
}

impl TransportInfo {
    /// Commands after the first arrive through `/emulation`.
    pub fn emulation(&self) -> bool {
        self.name.is_emulation()
    }

    /// Push-only: one connect request, then the client only listens.
    pub fn unidirectional(&self) -> bool {
        self.name.is_unidirectional()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for `connect`.
    New,
    Connected,
    /// `connect` failed; nothing more is accepted.
    Failed,
}

/// What a session knows about one of its subscriptions.
#[derive(Debug, Clone)]
struct SubState {
    chan_info: Bytes,
    presence: bool,
    join_leave: bool,
    /// Set by the server (token `channels`/`subs` or server API), not by the client.
    server_side: bool,
    /// Unix seconds after which the subscription must be refreshed.
    expires_at: Option<i64>,
    /// The sub_refresh proxy, not the client, extends this subscription.
    server_refresh: bool,
}

/// A connection's subscriptions by channel. A vector sized to its content rather than a hash
/// map: most connections hold one or a few subscriptions (at most `client.channel_limit`), and
/// a hash map allocates room for several entries plus control bytes for the first one. Lookups
/// are per command, never per delivery.
#[derive(Debug, Default)]
struct SubMap(Vec<(String, SubState)>);

impl SubMap {
    fn position(&self, channel: &str) -> Option<usize> {
        self.0.iter().position(|(c, _)| c == channel)
    }

    fn get(&self, channel: &str) -> Option<&SubState> {
        self.position(channel).map(|i| &self.0[i].1)
    }

    fn get_mut(&mut self, channel: &str) -> Option<&mut SubState> {
        self.position(channel).map(|i| &mut self.0[i].1)
    }

    fn contains_key(&self, channel: &str) -> bool {
        self.position(channel).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds or replaces the subscription of `channel`.
    fn insert(&mut self, channel: String, state: SubState) {
        if let Some(i) = self.position(&channel) {
            self.0[i].1 = state;
            return;
        }
        // Exact growth for the first few (a plain push reserves four entries at once).
        if self.0.len() < 4 {
            self.0.reserve_exact(1);
        }
        self.0.push((channel, state));
    }

    fn remove(&mut self, channel: &str) -> Option<SubState> {
        let i = self.position(channel)?;
        let (_, state) = self.0.swap_remove(i);
        if self.0.capacity() > 4 && self.0.len() * 2 < self.0.capacity() {
            self.0.shrink_to_fit();
        } else if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(state)
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(c, _)| c)
    }

    fn values(&self) -> impl Iterator<Item = &SubState> {
        self.0.iter().map(|(_, s)| s)
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &SubState)> {
        self.0.iter().map(|(c, s)| (c, s))
    }
}

impl<'a> IntoIterator for &'a SubMap {
    type Item = (&'a String, &'a SubState);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, SubState)>,
        fn(&'a (String, SubState)) -> (&'a String, &'a SubState),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(c, s)| (c, s))
    }
}

/// The parts of a session that only some connections have, boxed apart.
#[derive(Debug, Default)]
struct Extras {
    /// Headers of the connection request (and connect command) that proxies may forward.
    headers: ClientHeaders,
    /// The random id `/emulation` routes this connection's commands by (emulation transports
    /// only); told to this client alone, in its connect result.
    emulation_session: Option<Arc<str>>,
    /// The user id the connection request's `client.user_id_http_header` named (standalone
    /// only), for a `connect` without a token.
    header_user: Option<String>,
    /// Commands running side by side (`client.concurrency` above 1), made on first use.
    concurrent: Option<Box<concurrent::Concurrent>>,
    /// Running subscribe streams, by channel.
    streams: streams::Streams,
}

/// One client connection.
pub struct Session {
    node: Arc<Node>,
    handle: Arc<ClientHandle>,
    transport: TransportInfo,
    state: State,
    user: Arc<str>,
    conn_info: Bytes,
    /// Unix seconds after which the connection must be refreshed.
    expires_at: Option<i64>,
    /// The refresh proxy, not the client, extends this connection.
    server_refresh: bool,
    /// Connection `meta` (token claim or connect proxy): sent to proxies, never to clients.
    meta: Option<Bytes>,
    /// What only some connections carry; `None` when there is nothing (no proxy forwards a
    /// header, not an emulation transport), so idle connections stay small.
    extras: Option<Box<Extras>>,
    subs: SubMap,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    stale_deadline: Option<Instant>,
    next_presence_refresh: Option<Instant>,
    /// The command being handled (what an error reply answers, for metrics).
    command_frame: Frame,
}

/// How long a socket may stay without a successful `connect`: `client.stale_close_delay`,
/// or Centrifugo's default 10 s when it is 0 (an unauthenticated socket never lives forever).
pub fn stale_close_delay(client: &rotor_tenant_config::ClientSection) -> Duration {
    match client.stale_close_delay.get() {
        d if d.is_zero() => Duration::from_secs(10),
        d => d,
    }
}

/// Unix time in milliseconds.
pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The monotonic instant of a unix time (seconds), clamped to now.
fn instant_at(unix: i64) -> Instant {
    let delta = unix - unix_now();
    Instant::now() + Duration::from_secs(delta.max(0) as u64)
}

impl Session {
    /// A new, not yet connected session, taking over the client socket's slot (`socket`):
    /// it counts against `client.connection_limit` until the session is dropped, and the
    /// session closes with 3502 if `connect` does not come within `client.stale_close_delay`.
    pub fn new(node: Arc<Node>, transport: TransportInfo, socket: SocketPermit) -> Self {
        let config = node.config.load();
        let queue = config.tenant.client.queue_max_size as usize;
        let stale = stale_close_delay(&config.tenant.client);
        let id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let handle = Arc::new(
            ClientHandle::new(id, transport.protocol, queue).with_transport(transport.name),
        );
        node.metrics.centrifugo.connect_attempt(handle.transport);
        socket.keep();
        Self {
            node,
            handle,
            transport,
            state: State::New,
            user: Arc::from(""),
            conn_info: Bytes::new(),
            expires_at: None,
            server_refresh: false,
            meta: None,
            extras: None,
            subs: SubMap::default(),
            next_ping: None,
            pong_deadline: None,
            stale_deadline: Some(Instant::now() + stale),
            next_presence_refresh: None,
            command_frame: Frame::Connect,
        }
    }

    /// Keeps the headers of the client's connection request that a proxy forwards to the
    /// backend (only those some proxy lists).
    pub fn with_request_headers(mut self, headers: axum::http::HeaderMap) -> Self {
        let config = self.node.config.load();
        let captured = config.proxies.capture_headers(&headers);
        self.set_headers(captured);
        let name = &config.tenant.client.user_id_http_header;
        if !name.is_empty() {
            let user = headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty());
            if let Some(user) = user {
                self.extras.get_or_insert_default().header_user = Some(user.to_owned());
            }
        }
        self
    }

    /// The user id `client.user_id_http_header` gave the connection request, if any.
    fn header_user(&self) -> Option<String> {
        self.extras.as_ref()?.header_user.clone()
    }

    /// Sets the emulation session id the connect result announces (see
    /// [`crate::transport::emulation`]).
    pub fn with_emulation_session(mut self, id: Arc<str>) -> Self {
        self.extras.get_or_insert_default().emulation_session = Some(id);
        self
    }

    /// The emulation session id, for the connect result.
    fn emulation_session(&self) -> Option<&str> {
        self.extras.as_ref()?.emulation_session.as_deref()
    }

    fn set_headers(&mut self, headers: ClientHeaders) {
        match &mut self.extras {
            Some(extras) => extras.headers = headers,
            None if headers.is_empty() => {}
            None => {
                self.extras = Some(Box::new(Extras {
                    headers,
                    ..Extras::default()
                }))
            }
        }
    }

    /// Takes the captured headers out (to add to them).
    fn take_headers(&mut self) -> ClientHeaders {
        self.extras
            .as_mut()
            .map(|extras| std::mem::take(&mut extras.headers))
            .unwrap_or_default()
    }

    /// The captured headers that proxies forward.
    fn headers(&self) -> &ClientHeaders {
        static NONE: std::sync::LazyLock<ClientHeaders> =
            std::sync::LazyLock::new(ClientHeaders::default);
        self.extras
            .as_deref()
            .map_or(&*NONE, |extras| &extras.headers)
    }

    /// The connection's handle (outbox).
    pub fn handle(&self) -> &Arc<ClientHandle> {
        &self.handle
    }

    /// The node's metrics (for transports).
    pub fn node_metrics(&self) -> &crate::metrics::Metrics {
        &self.node.metrics
    }

    /// Whether `connect` succeeded.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Decodes a frame and runs its commands in order (or, with `client.concurrency`, starts
    /// them in order; see [`concurrent`]).
    pub async fn handle_frame(&mut self, frame: &[u8]) -> Result<(), Disconnect> {
        self.node.metrics.bytes_in.add(frame.len() as u64);
        let commands = match decode_commands(self.transport.protocol, frame) {
            Ok(c) => c,
            Err(e) => {
                self.node.metrics.malformed_frames.inc();
                tracing::info!(client = %self.handle.id, error = %e, "malformed frame");
                return Err(Disconnect::BAD_REQUEST);
            }
        };
        // Centrifugo counts each command's size; a batch's frame is shared out evenly.
        let size = frame.len() / commands.len().max(1);
        if self.concurrent().is_some() {
            for command in &commands {
                self.node.metrics.centrifugo.received(
                    self.handle.transport,
                    received_frame(command),
                    size,
                );
            }
            return self.enqueue(commands).await;
        }
        for command in commands {
            if self.state == State::Failed {
                break;
            }
            self.node.metrics.centrifugo.received(
                self.handle.transport,
                received_frame(&command),
                size,
            );
            self.handle_command(command).await?;
        }
        Ok(())
    }

    /// Runs one command (already decoded). Transports with their own framing call this.
    pub async fn handle_command(&mut self, cmd: Command) -> Result<(), Disconnect> {
        let id = cmd.id;
        if id == 0 {
            // An empty command with no id is a pong; `send` has no id either.
            if let Some(send) = cmd.send {
                return self.handle_send(send).await;
            }
            if has_request(&cmd) {
                return Err(Disconnect::BAD_REQUEST);
            }
            self.pong_deadline = None;
            return Ok(());
        }
        if self.state != State::Connected {
            return match cmd.connect {
                Some(req) if self.state == State::New => {
                    self.command_frame = Frame::Connect;
                    let started = std::time::Instant::now();
                    let result = self.handle_connect(id, req).await;
                    self.node
                        .metrics
                        .centrifugo
                        .command(Frame::Connect, started.elapsed());
                    result
                }
                _ => Err(Disconnect::BAD_REQUEST),
            };
        }
        self.command_frame = received_frame(&cmd);
        let started = std::time::Instant::now();
        let method;
        let result = if cmd.connect.is_some() {
            return Err(Disconnect::BAD_REQUEST);
        } else if let Some(req) = cmd.subscribe {
            method = "subscribe";
            if self.concurrency().is_some() {
                match self.start_subscribe(id, req, started) {
                    Ok(()) => return Ok(()),
                    Err(e) => Err(e),
                }
            } else {
                self.handle_subscribe(id, req).await
            }
        } else if let Some(req) = cmd.unsubscribe {
            method = "unsubscribe";
            self.handle_unsubscribe(id, req).await
        } else if let Some(req) = cmd.publish {
            let work = self.start_publish(id, req);
            return self.run_work("publish", id, started, work).await;
        } else if let Some(req) = cmd.presence {
            let work = self.start_presence(id, req);
            return self.run_work("presence", id, started, work).await;
        } else if let Some(req) = cmd.presence_stats {
            let work = self.start_presence_stats(id, req);
            return self.run_work("presence_stats", id, started, work).await;
        } else if let Some(req) = cmd.history {
            let work = self.start_history(id, req);
            return self.run_work("history", id, started, work).await;
        } else if let Some(req) = cmd.rpc {
            let work = self.start_rpc(id, req);
            return self.run_work("rpc", id, started, work).await;
        } else if let Some(send) = cmd.send {
            return self.handle_send(send).await;
        } else if let Some(req) = cmd.refresh {
            method = "refresh";
            self.handle_refresh(id, req).await
        } else if let Some(req) = cmd.sub_refresh {
            method = "sub_refresh";
            self.handle_sub_refresh(id, req).await
        } else {
            return Err(Disconnect::BAD_REQUEST);
        };
        self.finish_command(method, id, started, result.map(|()| None))
    }

    /// Counts a finished command (of `self.command_frame`) and sends its reply: `Some` to send
    /// here, `None` when the handler already queued it, or the error reply.
    fn finish_command(
        &mut self,
        method: &'static str,
        id: u32,
        started: std::time::Instant,
        result: Result<Option<Reply>, CommandError>,
    ) -> Result<(), Disconnect> {
        self.node.metrics.commands.inc(method);
        self.node
            .metrics
            .centrifugo
            .command(self.command_frame, started.elapsed());
        match result {
            Ok(None) => Ok(()),
            Ok(Some(reply)) => self.send_reply(reply),
            Err(CommandError::Client(e)) => {
                self.node.metrics.client_errors.inc(e.code.to_string());
                self.node
                    .metrics
                    .centrifugo
                    .reply_error(self.command_frame, e.code);
                self.send_reply(Reply {
                    id,
                    error: Some(e.to_proto()),
                    ..Default::default()
                })
            }
            Err(CommandError::Disconnect(d)) => Err(d),
        }
    }

    /// Encodes and queues a reply.
    fn send_reply(&self, reply: Reply) -> Result<(), Disconnect> {
        let frame = self.encode(&reply)?;
        self.count_sent(&reply, frame.len());
        if self.handle.outbox.push_frame(frame) {
            Ok(())
        } else {
            Err(Disconnect::SLOW)
        }
    }

    /// Counts a reply or push of `len` bytes for this connection's transport (Centrifugo's
    /// `centrifugo_transport_messages_sent`).
    fn count_sent(&self, reply: &Reply, len: usize) {
        self.node.metrics.centrifugo.sent(
            self.handle.transport,
            sent_frame(reply, self.command_frame),
            len,
        );
    }

    /// Encodes a reply in the connection's protocol. Publications in a history or subscribe
    /// result that JSON cannot carry (another client's binary payload) are left out for a
    /// JSON connection and counted; what still fails is the connection's own data (its
    /// connect, RPC or proxy reply), and closes it with 3506.
    fn encode(&self, reply: &Reply) -> Result<Bytes, Disconnect> {
        let protocol = self.transport.protocol;
        let first = match encode_reply(protocol, reply) {
            Ok(frame) => return Ok(frame),
            Err(e) => e,
        };
        let mut kept = reply.clone();
        let dropped = crate::publication::retain_json_writable(&mut kept);
        let result = if dropped > 0 {
            self.node
                .metrics
                .json_unwritable_dropped
                .add(dropped as u64);
            tracing::debug!(
                client = %self.handle.id,
                dropped,
                "publications JSON cannot carry left out of a reply"
            );
            encode_reply(protocol, &kept)
        } else {
            Err(first)
        };
        result.map_err(|e| {
            tracing::info!(client = %self.handle.id, error = %e, "reply cannot be encoded");
            Disconnect::INAPPROPRIATE_PROTOCOL
        })
    }

    /// When [`Session::on_timer`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let config = self.node.config.load();
        let client = &config.tenant.client;
        let mut next = [
            self.next_ping,
            self.pong_deadline,
            self.stale_deadline,
            self.next_presence_refresh,
        ]
        .into_iter()
        .flatten()
        .min();
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        // A proxy-refreshed connection or subscription is checked when it expires; one the
        // client refreshes gets a grace period first.
        if let Some(exp) = self.expires_at {
            let grace = if self.server_refresh {
                Duration::ZERO
            } else {
                client.expired_close_delay.get()
            };
            consider(instant_at(exp) + grace);
        }
        for sub in self.subs.values() {
            if let Some(exp) = sub.expires_at {
                let grace = if sub.server_refresh {
                    Duration::ZERO
                } else {
                    client.expired_sub_close_delay.get()
                };
                consider(instant_at(exp) + grace);
            }
        }
        next
    }

    /// Runs what is due: pings, pong and stale checks, expiry, presence refresh.
    pub async fn on_timer(&mut self) -> Result<(), Disconnect> {
        let now = Instant::now();
        let config = self.node.config.load();
        let client = &config.tenant.client;
        if self.stale_deadline.is_some_and(|d| now >= d) {
            if self.state != State::Connected {
                return Err(Disconnect::STALE);
            }
            self.stale_deadline = None;
        }
        if self.pong_deadline.is_some_and(|d| now >= d) {
            return Err(Disconnect::NO_PONG);
        }
        if self.next_ping.is_some_and(|d| now >= d) {
            let ping = Bytes::from_static(match self.transport.protocol {
                ProtocolKind::Json => b"{}",
                ProtocolKind::Protobuf => b"\x00",
            });
            self.node
                .metrics
                .centrifugo
                .sent(self.handle.transport, Frame::ServerPing, ping.len());
            if !self.handle.outbox.push_frame(ping) {
                return Err(Disconnect::SLOW);
            }
            // A little early rather than one more wake (see `clock`).
            let interval = client.ping_interval.get();
            self.next_ping = Some(crate::clock::coarse_tokio(now, now + interval));
            let pong = client.pong_timeout.get();
            if !pong.is_zero() && self.transport.name == TransportName::WebSocket {
                self.pong_deadline = Some(now + pong);
            }
        }
        let unix = unix_now();
        if let Some(exp) = self.expires_at {
            if self.server_refresh {
                if unix >= exp {
                    self.refresh_by_proxy().await?;
                }
            } else if unix >= exp + client.expired_close_delay.get().as_secs() as i64 {
                return Err(Disconnect::EXPIRED);
            }
        }
        let sub_delay = client.expired_sub_close_delay.get().as_secs() as i64;
        let expired: Vec<(String, bool, bool)> = self
            .subs
            .iter()
            .filter(|(_, s)| {
                let grace = if s.server_refresh { 0 } else { sub_delay };
                s.expires_at.is_some_and(|e| unix >= e + grace)
            })
            .map(|(ch, s)| (ch.clone(), s.server_side, s.server_refresh))
            .collect();
        for (channel, server_side, server_refresh) in expired {
            if server_refresh && self.sub_refresh_by_proxy(&channel).await {
                continue;
            }
            if server_side {
                return Err(Disconnect::SUBSCRIPTION_EXPIRED);
            }
            let (code, reason) = crate::protocol::unsubscribe::EXPIRED;
            self.server_unsubscribe(&channel, code, reason).await?;
        }
        if self.next_presence_refresh.is_some_and(|d| now >= d) {
            self.refresh_presence().await;
            let every = client.presence_update_interval.get();
            self.next_presence_refresh = Some(crate::clock::coarse_tokio(now, now + every));
        }
        Ok(())
    }

    /// Runs a control request from the server side (hub, server API).
    pub async fn handle_control(&mut self, control: Control) -> Result<(), Disconnect> {
        control::handle(self, control).await
    }

    /// Cleans up after the connection is gone: subscriptions, presence, leaves, registry.
    pub async fn close(&mut self, reason: &Disconnect) {
        // Commands still running are dropped (cancelled) with the connection.
        if let Some(extras) = self.extras.as_mut() {
            extras.concurrent = None;
        }
        self.node.metrics.disconnects.inc(reason.code.to_string());
        if self.state != State::Connected {
            return;
        }
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.leave_channel(&channel).await;
        }
        self.node.registry.remove(&self.handle.id);
        self.node.webhooks.disconnected(
            &*self.node,
            &self.handle.id,
            &self.user,
            reason.code,
            &reason.reason,
        );
        self.node.metrics.connections.dec();
        self.node
            .user_status
            .disconnected(&*self.node, &self.user)
            .await;
        self.state = State::Failed;
    }
}

/// Centrifugo's frame type of a command from a client (an empty command is a pong).
fn received_frame(cmd: &Command) -> Frame {
    let fields = [
        (cmd.connect.is_some(), Frame::Connect),
        (cmd.subscribe.is_some(), Frame::Subscribe),
        (cmd.unsubscribe.is_some(), Frame::Unsubscribe),
        (cmd.publish.is_some(), Frame::Publish),
        (cmd.presence.is_some(), Frame::Presence),
        (cmd.presence_stats.is_some(), Frame::PresenceStats),
        (cmd.history.is_some(), Frame::History),
        (cmd.rpc.is_some(), Frame::Rpc),
        (cmd.send.is_some(), Frame::Send),
        (cmd.refresh.is_some(), Frame::Refresh),
        (cmd.sub_refresh.is_some(), Frame::SubRefresh),
    ];
    fields
        .into_iter()
        .find_map(|(set, frame)| set.then_some(frame))
        .unwrap_or(Frame::ClientPong)
}

/// Centrifugo's frame type of a reply or push to a client; an error reply counts as the
/// command it answers (`command`).
fn sent_frame(reply: &Reply, command: Frame) -> Frame {
    if let Some(push) = &reply.push {
        let fields = [
            (push.r#pub.is_some(), Frame::PushPublication),
            (push.join.is_some(), Frame::PushJoin),
            (push.leave.is_some(), Frame::PushLeave),
            (push.unsubscribe.is_some(), Frame::PushUnsubscribe),
            (push.subscribe.is_some(), Frame::PushSubscribe),
            (push.connect.is_some(), Frame::PushConnect),
            (push.refresh.is_some(), Frame::PushRefresh),
            (push.disconnect.is_some(), Frame::PushDisconnect),
        ];
        return fields
            .into_iter()
            .find_map(|(set, frame)| set.then_some(frame))
            .unwrap_or(Frame::PushMessage);
    }
    let fields = [
        (reply.connect.is_some(), Frame::Connect),
        (reply.subscribe.is_some(), Frame::Subscribe),
        (reply.unsubscribe.is_some(), Frame::Unsubscribe),
        (reply.publish.is_some(), Frame::Publish),
        (reply.presence.is_some(), Frame::Presence),
        (reply.presence_stats.is_some(), Frame::PresenceStats),
        (reply.history.is_some(), Frame::History),
        (reply.rpc.is_some(), Frame::Rpc),
        (reply.refresh.is_some(), Frame::Refresh),
        (reply.sub_refresh.is_some(), Frame::SubRefresh),
    ];
    fields
        .into_iter()
        .find_map(|(set, frame)| set.then_some(frame))
        .unwrap_or(command)
}

/// Whether a command carries any request besides `send`.
fn has_request(cmd: &Command) -> bool {
    cmd.connect.is_some()
        || cmd.subscribe.is_some()
        || cmd.unsubscribe.is_some()
        || cmd.publish.is_some()
        || cmd.presence.is_some()
        || cmd.presence_stats.is_some()
        || cmd.history.is_some()
        || cmd.ping.is_some()
        || cmd.rpc.is_some()
        || cmd.refresh.is_some()
        || cmd.sub_refresh.is_some()
}

/// A command's failure: an error reply, or the end of the connection.
#[derive(Debug)]
pub(crate) enum CommandError {
    Client(ClientError),
    Disconnect(Disconnect),
}

/// Every error with a protocol form (engine, budget and publish failures through their one
/// mapping each) answers the command as it.
impl<E: Into<ClientError>> From<E> for CommandError {
    fn from(e: E) -> Self {
        Self::Client(e.into())
    }
}

impl From<Disconnect> for CommandError {
    fn from(d: Disconnect) -> Self {
        Self::Disconnect(d)
    }
}

pub(crate) type CommandResult = Result<(), CommandError>;
/// A session holds its client's socket (an open file) from its first moment to its last,
/// whether or not it ever connects: that is what the open-file budget counts.
impl Drop for Session {
    fn drop(&mut self) {
        self.node.budgets.release_socket();
    }
}
