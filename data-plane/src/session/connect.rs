//! `connect` and `refresh`: authentication, connection expiry, limits and the server-side
//! subscriptions a connection starts with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::subscribe::{Prepared, SubscribeSpec};
use super::{unix_now, unix_now_ms, CommandError, CommandResult, Session, State};
use crate::auth::jwt::TokenError;
use crate::config::RuntimeConfig;
use crate::exclusion::{self, Owner};
use crate::protocol::{
    ClientError, ConnectPush, ConnectRequest, ConnectResult, Disconnect, Push, RefreshRequest,
    RefreshResult, Reply, SubscribeRequest,
};
use crate::VERSION;

/// Who a connect authenticated as, and what it was granted.
struct Granted {
    user: String,
    info: Bytes,
    expires_at: Option<i64>,
    /// The session the credentials name, for publisher exclusion (empty: none named).
    session_tag: String,
    /// Server-side subscriptions: the token's, or the connect proxy's.
    subs: Vec<SubscribeSpec>,
    /// Data for the client (from the connect proxy).
    data: Bytes,
    /// Whether channels the client lists in its `subs` are subscribed (not when the connect
    /// proxy, rather than the client's list, decides the server-side subscriptions).
    client_lists_channels: bool,
}

impl Granted {
    /// Just a user, with nothing else.
    fn user(user: String) -> Self {
        Self {
            user,
            info: Bytes::new(),
            expires_at: None,
            session_tag: String::new(),
            subs: Vec::new(),
            data: Bytes::new(),
            client_lists_channels: true,
        }
    }
}

/// The connect's server-side subscriptions: `granted`, the personal channel, and the channels
/// the client lists (subscribed when `client_lists_channels`; their recovery requests apply to
/// granted channels either way). A listed channel with no namespace is a bad request.
fn connect_subscriptions(
    config: &RuntimeConfig,
    mut granted: Vec<SubscribeSpec>,
    personal_channel: Option<&str>,
    listed: HashMap<String, SubscribeRequest>,
    client_lists_channels: bool,
) -> Result<Vec<SubscribeSpec>, CommandError> {
    if let Some(channel) = personal_channel {
        if !granted.iter().any(|s| s.channel == channel) {
            granted.push(SubscribeSpec::server(
                channel.to_owned(),
                Bytes::new(),
                Bytes::new(),
            ));
        }
    }
    let mut requested: Vec<(String, SubscribeRequest)> = listed.into_iter().collect();
    requested.sort_by(|a, b| a.0.cmp(&b.0));
    let mut recovery: HashMap<String, SubscribeRequest> = HashMap::new();
    for (channel, sub_req) in requested {
        if config.channel_rules(&channel).is_err() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        if granted.iter().any(|s| s.channel == channel) {
            recovery.insert(channel, sub_req);
        } else if client_lists_channels {
            let mut spec = SubscribeSpec::client_listed(channel.clone());
            spec.request = sub_req;
            granted.push(spec);
        }
    }
    for spec in &mut granted {
        if let Some(r) = recovery.remove(&spec.channel) {
            spec.request = r;
        }
    }
    Ok(granted)
}

impl Session {
    pub(super) async fn handle_connect(
        &mut self,
        id: u32,
        req: ConnectRequest,
    ) -> Result<(), Disconnect> {
        match self.connect(id, req).await {
            Ok(()) => Ok(()),
            Err(CommandError::Client(e)) if self.transport.unidirectional() => {
                self.node.metrics.client_errors.inc(e.code.to_string());
                self.node
                    .metrics
                    .centrifugo
                    .reply_error(crate::centrifugo_metrics::Frame::Connect, e.code);
                Err(match e.code {
                    109 | 110 => Disconnect::EXPIRED,
                    111 => Disconnect::TOO_MANY_REQUESTS,
                    103 => Disconnect::PERMISSION_DENIED,
                    _ => Disconnect::INTERNAL,
                })
            }
            Err(CommandError::Client(e)) => {
                self.state = State::Failed;
                self.node.metrics.client_errors.inc(e.code.to_string());
                self.node
                    .metrics
                    .centrifugo
                    .reply_error(crate::centrifugo_metrics::Frame::Connect, e.code);
                // The client gets the error and a few seconds to close by itself.
                self.stale_deadline = Some(Instant::now() + Duration::from_secs(5));
                self.send_reply(Reply {
                    id,
                    error: Some(e.to_proto()),
                    ..Default::default()
                })
            }
            Err(CommandError::Disconnect(d)) => Err(d),
        }
    }

    /// Who a connection is when neither a token nor the connect proxy said: anonymous when
    /// anonymous access or insecure mode is on, else the user `client.user_id_http_header`
    /// named (Centrifugo's order: its handler answers anonymous credentials before the
    /// header's are looked at), else nobody (3501).
    fn without_credentials(
        &self,
        client_cfg: &rotor_tenant_config::ClientSection,
    ) -> Result<Granted, CommandError> {
        if client_cfg.insecure || client_cfg.allow_anonymous_connect_without_token {
            return Ok(Granted::user(String::new()));
        }
        if let Some(user) = self.header_user() {
            return Ok(Granted::user(user));
        }
        tracing::info!(client = %self.handle.id, "connect without credentials refused");
        Err(Disconnect::BAD_REQUEST.into())
    }

    async fn connect(&mut self, id: u32, mut req: ConnectRequest) -> CommandResult {
        let config = self.node.config.load();
        let client_cfg = &config.tenant.client;
        let mut headers = self.take_headers();
        config.proxies.capture_emulated(&mut headers, &req.headers);
        self.set_headers(headers);
        let granted = self.credentials(&config, &req).await?;
        // An authenticated user's personal channel, subscribed server-side like the token's
        // channels (Centrifugo adds it whoever authenticated the connection).
        let personal = &client_cfg.subscribe_to_user_personal_channel;
        let personal_channel = (personal.enabled && !granted.user.is_empty())
            .then(|| config.tenant.personal_channel(&granted.user));
        let server_subs = connect_subscriptions(
            &config,
            granted.subs,
            personal_channel.as_deref(),
            std::mem::take(&mut req.subs),
            granted.client_lists_channels,
        )?;
        let user: Arc<str> = granted.user.into();
        self.check_connection_limits(client_cfg, &user, server_subs.len())?;

        self.user = user.clone();
        self.handle.set_owner(Owner {
            user: user.clone(),
            session_tag: exclusion::session_tag(
                &granted.session_tag,
                &req.token,
                &user,
                &self.handle.id,
            ),
        });
        self.conn_info = granted.info;
        self.expires_at = granted.expires_at;
        // With a refresh proxy the server extends connections itself; clients see no expiry.
        self.server_refresh = config.proxies.refresh().is_some();
        let (session, connected_at) = self.register().await;
        let ping = self.start_timers(client_cfg);
        let mut result = self.connect_result(client_cfg, granted.data, ping);

        // Server-side subscriptions are prepared (pending in the hub) before the reply and
        // activated after it, so no publication can overtake the connect reply. Whatever is
        // not activated is undone when dropped: a prepared subscription holds a hub entry (its
        // channel, for the budget) and maybe a presence entry.
        let prepared = self
            .prepare_server_subscriptions(&config, server_subs, &mut result)
            .await?;
        let reply = self.connect_reply(id, result, session);
        self.send_reply(reply)?;
        for p in prepared {
            self.activate_subscription(p, None).await?;
        }
        if let Some(channel) = personal_channel.filter(|_| personal.single_connection) {
            self.replace_older_connections(&channel, connected_at)
                .await?;
        }
        Ok(())
    }

    /// Who the connection is: from its token, else from the connect proxy, else as
    /// [`Session::without_credentials`] says; refused once expired.
    async fn credentials(
        &mut self,
        config: &RuntimeConfig,
        req: &ConnectRequest,
    ) -> Result<Granted, CommandError> {
        let client_cfg = &config.tenant.client;
        let granted = if !req.token.is_empty() {
            self.credentials_from_token(config, &req.token).await?
        } else if let Some(proxy) = config.proxies.connect() {
            match self.connect_by_proxy(proxy, req).await? {
                Some(granted) => {
                    self.meta = granted.meta;
                    Granted {
                        user: granted.user,
                        info: granted.info,
                        expires_at: granted.expires_at,
                        session_tag: granted.session_tag,
                        subs: granted.subs,
                        data: granted.data,
                        client_lists_channels: false,
                    }
                }
                None => self.without_credentials(client_cfg)?,
            }
        } else {
            self.without_credentials(client_cfg)?
        };
        if let Some(exp) = granted.expires_at {
            if exp <= unix_now() {
                return Err(ClientError::TOKEN_EXPIRED.into());
            }
        }
        Ok(granted)
    }

    /// Who a connection token says the connection is, and the channels it subscribes.
    async fn credentials_from_token(
        &mut self,
        config: &RuntimeConfig,
        token: &str,
    ) -> Result<Granted, CommandError> {
        let client_cfg = &config.tenant.client;
        let token = match config.token_verifier.verify_connect(token).await {
            Ok(t) => t,
            // The keys could not be fetched: the client retries.
            Err(TokenError::Unavailable(_)) => return Err(ClientError::INTERNAL.into()),
            Err(TokenError::Expired) => return Err(ClientError::TOKEN_EXPIRED.into()),
            Err(TokenError::Invalid(reason)) => {
                tracing::info!(client = %self.handle.id, %reason, "invalid connection token");
                return Err(Disconnect::INVALID_TOKEN.into());
            }
        };
        if token.user.is_empty() && client_cfg.disallow_anonymous_connection_tokens {
            return Err(Disconnect::PERMISSION_DENIED.into());
        }
        let mut subs = Vec::new();
        // `subs` wins over `channels` for the same channel.
        for (channel, opts) in &token.subs {
            let mut spec =
                SubscribeSpec::server(channel.clone(), opts.info.clone(), opts.data.clone());
            spec.overrides = opts.overrides.clone();
            subs.push(spec);
        }
        for channel in &token.channels {
            if !token.subs.contains_key(channel) {
                subs.push(SubscribeSpec::server(
                    channel.clone(),
                    Bytes::new(),
                    Bytes::new(),
                ));
            }
        }
        let expires_at = if client_cfg.insecure {
            None
        } else {
            token.expires_at()
        };
        self.meta = token.meta;
        Ok(Granted {
            user: token.user,
            info: token.info,
            expires_at,
            session_tag: token.session_tag,
            subs,
            data: Bytes::new(),
            client_lists_channels: true,
        })
    }

    /// The node's and the user's connection limits, and the channel limit for the connect's
    /// subscriptions.
    fn check_connection_limits(
        &self,
        client_cfg: &rotor_tenant_config::ClientSection,
        user: &str,
        subscriptions: usize,
    ) -> Result<(), Disconnect> {
        let limit = client_cfg.connection_limit as usize;
        let (connections, _) = self.node.registry.counts();
        if limit > 0 && connections >= limit {
            return Err(Disconnect::CONNECTION_LIMIT);
        }
        let user_limit = client_cfg.user_connection_limit as usize;
        if user_limit > 0
            && !user.is_empty()
            && self.node.registry.user_connections(user) >= user_limit
        {
            return Err(Disconnect::CONNECTION_LIMIT);
        }
        if subscriptions > client_cfg.channel_limit as usize {
            return Err(Disconnect::CHANNEL_LIMIT);
        }
        Ok(())
    }

    /// Marks the session connected and registers it with the node (registry, metrics,
    /// webhooks, user status). Returns Centrifugo's session id — emulation's routing id, or a
    /// random one for a unidirectional connection (never the client id); the server API can
    /// target it — and when the connection was registered.
    async fn register(&mut self) -> (Option<Arc<str>>, i64) {
        self.state = State::Connected;
        self.stale_deadline = None;
        let session: Option<Arc<str>> = if self.transport.emulation() {
            self.emulation_session().map(Arc::from)
        } else if self.transport.unidirectional() {
            Some(uuid::Uuid::new_v4().to_string().into())
        } else {
            None
        };
        let user = self.user.clone();
        let connected_at =
            self.node
                .registry
                .add(self.handle.clone(), user.clone(), session.clone());
        self.node.metrics.connections.inc();
        self.node
            .webhooks
            .connected(&*self.node, &self.handle.id, &user);
        self.node.user_status.connected(&*self.node, &user).await;
        self.node.metrics.connections_accepted.inc();
        (session, connected_at)
    }

    /// Starts the protocol pings (unless the transport pings itself) and presence refreshes;
    /// returns the ping interval announced to the client (zero: none).
    fn start_timers(&mut self, client_cfg: &rotor_tenant_config::ClientSection) -> Duration {
        let ping = if self.transport.native_ping {
            Duration::ZERO
        } else {
            client_cfg.ping_interval.get()
        };
        if !ping.is_zero() {
            // The first ping is spread over [interval/2, interval) so reconnect waves do not
            // ping in lockstep (then put on the process's wake grid, see `clock`).
            let half = ping / 2;
            let jitter = Duration::from_millis(fastrand::u64(0..half.as_millis().max(1) as u64));
            self.next_ping = Some(crate::clock::after(half + jitter));
        }
        let presence_every = client_cfg.presence_update_interval.get();
        if !presence_every.is_zero() {
            self.next_presence_refresh = Some(crate::clock::after(presence_every));
        }
        ping
    }

    /// The connect result, without its subscriptions yet.
    fn connect_result(
        &self,
        client_cfg: &rotor_tenant_config::ClientSection,
        data: Bytes,
        ping: Duration,
    ) -> ConnectResult {
        let mut result = ConnectResult {
            client: self.handle.id.to_string(),
            version: VERSION.to_owned(),
            data,
            ping: ping.as_secs() as u32,
            pong: !ping.is_zero(),
            time: if client_cfg.connect_include_server_time {
                unix_now_ms()
            } else {
                0
            },
            ..Default::default()
        };
        if let Some(exp) = self.expires_at.filter(|_| !self.server_refresh) {
            result.expires = true;
            result.ttl = (exp - unix_now()).max(1) as u32;
        }
        if self.transport.emulation() {
            // The routing secret of `/emulation`, never the (public) client id.
            result.session = self.emulation_session().unwrap_or_default().to_owned();
            result.node = self.node.id.clone();
        }
        result
    }

    /// Prepares the connect's server-side subscriptions, their answers into `result`. A
    /// client-listed channel the client may not join is skipped, as Centrifugo does; any other
    /// failure fails the connect (and drops, so undoes, what was prepared).
    async fn prepare_server_subscriptions(
        &mut self,
        config: &RuntimeConfig,
        specs: Vec<SubscribeSpec>,
        result: &mut ConnectResult,
    ) -> Result<Vec<Prepared>, CommandError> {
        let mut prepared = Vec::with_capacity(specs.len());
        for spec in specs {
            let channel = spec.channel.clone();
            match self.prepare_subscription(config, spec).await {
                Ok(p) => {
                    result.subs.insert(channel, p.result.clone());
                    prepared.push(p);
                }
                Err(CommandError::Client(e)) if e.code == ClientError::PERMISSION_DENIED.code => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        Ok(prepared)
    }

    /// The connect reply: a reply to command `id`, or on a unidirectional transport a
    /// `connect` push (with the session id).
    fn connect_reply(&self, id: u32, result: ConnectResult, session: Option<Arc<str>>) -> Reply {
        if !self.transport.unidirectional() {
            return Reply {
                id,
                connect: Some(result),
                ..Default::default()
            };
        }
        let push = ConnectPush {
            client: result.client,
            version: result.version,
            data: result.data,
            subs: result.subs,
            expires: result.expires,
            ttl: result.ttl,
            ping: result.ping,
            pong: false,
            session: session.as_deref().unwrap_or_default().to_owned(),
            node: String::new(),
            time: result.time,
        };
        Reply {
            push: Some(Push {
                connect: Some(push),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `single_connection`: once this connection is in its personal channel's presence, a
    /// second entry there means the user has older connections (on any process of the
    /// tenant); every process closes those with 3504, never this one nor a newer one.
    async fn replace_older_connections(
        &self,
        channel: &str,
        connected_at: i64,
    ) -> Result<(), Disconnect> {
        let clients = match self.node.presence.presence_stats(channel).await {
            Ok((clients, _)) => clients,
            Err(e) => {
                tracing::warn!(client = %self.handle.id, error = %e, "presence of the personal channel unavailable");
                return Err(Disconnect::INTERNAL);
            }
        };
        if clients < 2 {
            return Ok(());
        }
        let control = crate::cluster::ClusterControl::SingleConnection {
            user: self.user.to_string(),
            client: self.handle.id.to_string(),
            connected_at,
        };
        if let Err(e) = self.node.broadcast_control(&control).await {
            tracing::warn!(client = %self.handle.id, error = %e, "older connections of the user not closed");
        }
        Ok(())
    }

    pub(super) async fn handle_refresh(&mut self, id: u32, req: RefreshRequest) -> CommandResult {
        if req.token.is_empty() || self.server_refresh {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        let config = self.node.config.load();
        let token = match config.token_verifier.verify_connect(&req.token).await {
            Ok(t) => t,
            // The keys could not be fetched: the client retries.
            Err(TokenError::Unavailable(_)) => return Err(ClientError::INTERNAL.into()),
            Err(TokenError::Expired) => return Err(Disconnect::EXPIRED.into()),
            Err(TokenError::Invalid(reason)) => {
                tracing::info!(client = %self.handle.id, %reason, "invalid refresh token");
                return Err(Disconnect::INVALID_TOKEN.into());
            }
        };
        if token.user != *self.user {
            return Err(Disconnect::INVALID_TOKEN.into());
        }
        let expires_at = if config.tenant.client.insecure {
            None
        } else {
            token.expires_at()
        };
        if let Some(exp) = expires_at {
            if exp <= unix_now() {
                return Err(Disconnect::EXPIRED.into());
            }
        }
        self.expires_at = expires_at;
        if !token.info.is_empty() {
            self.conn_info = token.info;
        }
        let mut result = RefreshResult {
            client: self.handle.id.to_string(),
            version: VERSION.to_owned(),
            ..Default::default()
        };
        if let Some(exp) = expires_at {
            result.expires = true;
            result.ttl = (exp - unix_now()).max(1) as u32;
        }
        self.send_reply(Reply {
            id,
            refresh: Some(result),
            ..Default::default()
        })?;
        Ok(())
    }
}
