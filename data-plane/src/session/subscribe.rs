//! `subscribe`, `unsubscribe` and `sub_refresh`, plus the subscription life cycle shared with
//! server-side subscriptions: validate and authorise, hold publications back while history is
//! read for recovery ([`super::recovery`]), answer, then release what the answer did not
//! already carry. A client subscription may carry a tags filter (`tf`), checked here and
//! applied by the hub and recovery.

use bytes::Bytes;

use super::pending::PendingSub;
use super::permissions::{may_read_history, may_read_presence, Caller};
use super::{unix_now, CommandError, CommandResult, Session, SubState};
use crate::auth::jwt::TokenError;
use crate::config::{ChannelRules, RuntimeConfig};
use crate::engine::HistoryFilter;
use crate::filter::TagsFilter;
use crate::hub::{EngineSubscription, Joined, SubFlags};
use crate::node::meta_ttl;
use crate::protocol::Override;
use crate::protocol::{
    ClientError, ClientInfo, Disconnect, Push, Reply, StreamPosition, SubRefreshRequest,
    SubRefreshResult, SubscribeRequest, SubscribeResult, UnsubscribePush, UnsubscribeRequest,
    UnsubscribeResult,
};
use crate::proxy::stream::StreamLink;
use crate::proxy::types::{self, decode_payload};
use rotor_tenant_config::{ChannelOptions, DeltaType};

/// Who asked for a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubscribeKind {
    /// A `subscribe` command.
    Client,
    /// Listed in `ConnectRequest.subs` by the client: permissions apply.
    ClientListed,
    /// From the connection token or the server API: already authorised.
    Server,
}

/// Everything needed to subscribe a connection to one channel.
#[derive(Debug)]
pub(crate) struct SubscribeSpec {
    pub channel: String,
    pub kind: SubscribeKind,
    pub request: SubscribeRequest,
    pub chan_info: Bytes,
    pub data: Bytes,
    pub expires_at: Option<i64>,
    /// Changes to the namespace's options for this subscription (from the backend).
    pub overrides: Option<Override>,
    /// Recover from the cache without the client asking (the connect proxy's
    /// `cache_recover`); only channels in cache recovery mode with recovery on are affected.
    pub cache_recover: bool,
    /// The subscribe stream the backend accepted this subscription on (no history, recovery
    /// or delta then); started once the subscription is made.
    pub stream: Option<StreamLink>,
}

/// Fills in what a subscribe proxy or stream decided: channel info, data, expiry, option
/// overrides.
pub(super) fn apply_subscribe_result(
    spec: &mut SubscribeSpec,
    r: types::SubscribeResult,
) -> Result<(), CommandError> {
    spec.chan_info = decode_payload(r.info, &r.b64info)
        .map_err(super::backend::malformed)?
        .unwrap_or_default();
    spec.data = decode_payload(r.data, &r.b64data)
        .map_err(super::backend::malformed)?
        .unwrap_or_default();
    spec.expires_at = (r.expire_at > 0).then_some(r.expire_at);
    spec.overrides = r.overrides;
    Ok(())
}

impl SubscribeSpec {
    /// A client's `subscribe` command.
    pub fn client(request: SubscribeRequest) -> Self {
        Self {
            channel: request.channel.clone(),
            kind: SubscribeKind::Client,
            chan_info: Bytes::new(),
            data: Bytes::new(),
            expires_at: None,
            overrides: None,
            cache_recover: false,
            stream: None,
            request,
        }
    }

    pub fn server(channel: String, chan_info: Bytes, data: Bytes) -> Self {
        Self {
            request: SubscribeRequest {
                channel: channel.clone(),
                ..Default::default()
            },
            channel,
            kind: SubscribeKind::Server,
            chan_info,
            data,
            expires_at: None,
            overrides: None,
            cache_recover: false,
            stream: None,
        }
    }

    pub fn client_listed(channel: String) -> Self {
        Self {
            kind: SubscribeKind::ClientListed,
            ..Self::server(channel, Bytes::new(), Bytes::new())
        }
    }
}

/// A subscription that is pending in the hub, with its answer ready; undone if dropped
/// before [`Session::activate_subscription`].
pub(crate) struct Prepared {
    pending: PendingSub,
    pub result: SubscribeResult,
    hub_position: Option<StreamPosition>,
    state: SubState,
    info: ClientInfo,
    stream: Option<StreamLink>,
}

/// What a subscription will be, decided before anything is registered.
struct Plan {
    /// The channel's options with the backend's overrides.
    options: ChannelOptions,
    server_refresh: bool,
    recoverable: bool,
    positioned: bool,
    push_join_leave: bool,
    delta: bool,
    tags_filter: Option<TagsFilter>,
}

/// The subscriber's tags filter (`tf`), checked and compiled: only client subscriptions may
/// filter (as in Centrifugo), and only where the namespace allows it (else error 107).
fn tags_filter(
    spec: &SubscribeSpec,
    o: &ChannelOptions,
) -> Result<Option<TagsFilter>, ClientError> {
    let Some(tf) = spec
        .request
        .tf
        .as_ref()
        .filter(|_| spec.kind == SubscribeKind::Client)
    else {
        return Ok(None);
    };
    if !o.allow_tags_filter {
        return Err(
            ClientError::BAD_REQUEST.with_message("tags filter is not allowed in this channel")
        );
    }
    TagsFilter::compile(tf)
        .map(Some)
        .map_err(|e| ClientError::BAD_REQUEST.with_message(format!("invalid tags filter: {e}")))
}

/// `flag` bit asking for error 112 instead of an unrecovered subscription.
const FLAG_REJECT_UNRECOVERED: i64 = 2;
/// How long a subscriber waits for another subscriber's engine subscription of its channel.
const ENGINE_SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Session {
    pub(super) async fn handle_subscribe(
        &mut self,
        id: u32,
        req: SubscribeRequest,
    ) -> CommandResult {
        let config = self.node.config.load();
        let prepared = self
            .prepare_subscription(&config, SubscribeSpec::client(req))
            .await?;
        self.activate_with_reply(id, prepared).await
    }

    /// Finishes a client `subscribe` whose authorisation ran apart (`client.concurrency`).
    pub(super) async fn subscribe_authorised(
        &mut self,
        id: u32,
        config: &RuntimeConfig,
        spec: SubscribeSpec,
    ) -> CommandResult {
        let prepared = self.prepare_authorised(config, spec).await?;
        self.activate_with_reply(id, prepared).await
    }

    async fn activate_with_reply(&mut self, id: u32, prepared: Prepared) -> CommandResult {
        let reply = Reply {
            id,
            subscribe: Some(prepared.result.clone()),
            ..Default::default()
        };
        self.activate_subscription(prepared, Some(reply)).await?;
        Ok(())
    }

    /// Validates, authorises, registers the subscriber as pending and builds the answer.
    pub(crate) async fn prepare_subscription(
        &mut self,
        config: &RuntimeConfig,
        mut spec: SubscribeSpec,
    ) -> Result<Prepared, CommandError> {
        self.check_subscription(config, &spec)?;
        if spec.kind != SubscribeKind::Server {
            self.identity()
                .authorise_subscribe(config, &mut spec)
                .await?;
        }
        self.prepare_authorised(config, spec).await
    }

    /// The checks of a subscription that need no backend: the request's shape, the channel's
    /// name, this connection's subscriptions (already subscribed, or subscribing with
    /// `client.concurrency`; the channel limit).
    pub(super) fn check_subscription(
        &self,
        config: &RuntimeConfig,
        spec: &SubscribeSpec,
    ) -> Result<(), CommandError> {
        let channel = &spec.channel;
        let req = &spec.request;
        if channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        if !req.delta.is_empty() && req.delta != "fossil" {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        let client_cfg = &config.tenant.client;
        // Channels a client names itself (a `subscribe`, or `connect.subs`) are checked;
        // those from the token or the server API come from the backend.
        if spec.kind != SubscribeKind::Server
            && channel.len() > config.tenant.channel.max_length as usize
        {
            return Err(ClientError::BAD_REQUEST
                .with_message("channel name is too long")
                .into());
        }
        if self.subs.contains_key(channel) || self.is_subscribing(channel) {
            return Err(ClientError::ALREADY_SUBSCRIBED.into());
        }
        if self.subs.len() + self.subscribing_count() >= client_cfg.channel_limit as usize {
            return Err(ClientError::LIMIT_EXCEEDED.into());
        }
        let rules = config.channel_rules(channel)?;
        match &rules.regex {
            Some(re) => {
                if !re.is_match(config.channel_rest(channel)) {
                    return Err(ClientError::BAD_REQUEST
                        .with_message("channel name does not match")
                        .into());
                }
            }
            None => {
                if !channel.is_ascii() {
                    return Err(ClientError::BAD_REQUEST
                        .with_message("channel name must be ASCII")
                        .into());
                }
            }
        }
        if req.r#type != 0 {
            return Err(ClientError::NOT_AVAILABLE.into());
        }
        Ok(())
    }

    /// The rest of [`Session::prepare_subscription`] once the subscription is authorised:
    /// registers the subscriber as pending, recovers, and builds the answer. Whatever was
    /// registered is undone if a step fails (see [`PendingSub`]).
    pub(super) async fn prepare_authorised(
        &mut self,
        config: &RuntimeConfig,
        mut spec: SubscribeSpec,
    ) -> Result<Prepared, CommandError> {
        // A stream's publications go to this subscriber alone, past history (as in Centrifugo).
        let stream = spec.stream.take();
        let rules = config.channel_rules(&spec.channel)?;
        let plan = self.plan(config, &rules, &spec, stream.is_some())?;
        let mut pending = self.join_hub(&spec.channel, &plan).await?;

        let mut result = SubscribeResult {
            recoverable: plan.recoverable,
            positioned: plan.positioned,
            delta: plan.delta,
            data: spec.data.clone(),
            ..Default::default()
        };
        if let Some(exp) = spec.expires_at.filter(|_| !plan.server_refresh) {
            if spec.kind != SubscribeKind::Server || exp > 0 {
                result.expires = true;
                result.ttl = (exp - unix_now()).max(1) as u32;
            }
        }
        let hub_position = if plan.positioned {
            let meta = meta_ttl(config, &rules);
            let limit = config.tenant.client.recovery_max_publication_limit;
            let top = self
                .position(&spec, &plan, meta, limit, &mut result)
                .await?;
            Some(top)
        } else {
            None
        };

        let info = ClientInfo {
            user: self.user.to_string(),
            client: self.handle.id.to_string(),
            conn_info: self.conn_info.clone(),
            chan_info: spec.chan_info.clone(),
        };
        if plan.options.presence {
            self.node.budgets.acquire_presence()?;
            if let Err(e) = self
                .node
                .presence
                .add_presence(&spec.channel, info.clone())
                .await
            {
                self.node.budgets.release_presence();
                return Err(e.into());
            }
            pending.joined_presence();
        }
        Ok(Prepared {
            pending,
            result,
            hub_position,
            state: SubState {
                chan_info: spec.chan_info,
                presence: plan.options.presence,
                join_leave: plan.options.join_leave,
                server_side: spec.kind != SubscribeKind::Client,
                expires_at: spec.expires_at.filter(|e| *e > 0),
                server_refresh: plan.server_refresh,
            },
            info,
            stream,
        })
    }

    /// What a subscription will be, from the channel's options (with the backend's overrides),
    /// the request and the caller's permissions.
    fn plan(
        &self,
        config: &RuntimeConfig,
        rules: &ChannelRules,
        spec: &SubscribeSpec,
        streamed: bool,
    ) -> Result<Plan, CommandError> {
        let caller = Caller {
            user: &self.user,
            insecure: config.tenant.client.insecure,
        };
        let req = &spec.request;
        let mut o = rules.options.clone();
        if let Some(overrides) = &spec.overrides {
            overrides.apply(&mut o);
        }
        let history_on = o.history_enabled() && !streamed;
        let history_access = may_read_history(&o, caller, true);
        let recoverable = history_on
            && (o.force_recovery || (req.recoverable && (o.allow_recovery || history_access)));
        let positioned = history_on
            && (recoverable
                || o.force_positioning
                || (req.positioned && (o.allow_positioning || history_access)));
        let push_join_leave = o.force_push_join_leave
            || (req.join_leave && o.join_leave && may_read_presence(&o, caller, true));
        let tags_filter = tags_filter(spec, &o)?;
        // Fossil delta where the namespace allows it; elsewhere the request is answered
        // without `delta` and publications come whole (as in Centrifugo). A server-side
        // subscription has it only when the client asked in its connect `subs`.
        let delta = req.delta == "fossil"
            && o.allowed_delta_types.contains(&DeltaType::Fossil)
            && !streamed;
        Ok(Plan {
            // With a sub_refresh proxy the server extends the subscription; the client sees
            // no expiry.
            server_refresh: o.sub_refresh_proxy_enabled,
            recoverable,
            positioned,
            push_join_leave,
            delta,
            tags_filter,
            options: o,
        })
    }

    /// Registers the subscriber as pending in the hub and waits until the engine delivers the
    /// channel. A channel that does not exist yet must fit the channel budget.
    async fn join_hub(&self, channel: &str, plan: &Plan) -> Result<PendingSub, CommandError> {
        let joined = self.node.hub.add_pending(
            channel,
            &self.handle,
            SubFlags {
                push_join_leave: plan.push_join_leave,
                positioned: plan.positioned,
                delta: plan.delta,
            },
            plan.tags_filter.clone(),
        )?;
        let pending = PendingSub::new(
            self.node.clone(),
            self.handle.id.clone(),
            self.user.clone(),
            channel.to_owned(),
        );
        match joined {
            Joined::First => {
                let subscribed = self.node.broker.subscribe(channel).await;
                self.node.hub.engine_subscribed(channel, subscribed.is_ok());
                subscribed?;
            }
            // Reading the stream position before the engine delivers the channel could miss
            // publications in between: wait for the first subscriber's engine subscription.
            Joined::Wait(mut engine) => {
                let outcome = tokio::time::timeout(
                    ENGINE_SUBSCRIBE_WAIT,
                    engine.wait_for(|s| *s != EngineSubscription::Pending),
                )
                .await;
                let active = matches!(&outcome, Ok(Ok(s)) if **s == EngineSubscription::Active);
                drop(outcome);
                if !active {
                    return Err(ClientError::INTERNAL.into());
                }
            }
            Joined::Active => {}
        }
        Ok(pending)
    }

    /// The stream position a positioned subscription starts from, recovering what the client
    /// missed when it asks (or the channel recovers from its cache by itself) into `result`.
    async fn position(
        &self,
        spec: &SubscribeSpec,
        plan: &Plan,
        meta: std::time::Duration,
        limit: u32,
        result: &mut SubscribeResult,
    ) -> Result<StreamPosition, CommandError> {
        let (channel, req) = (&spec.channel, &spec.request);
        let filter = plan.tags_filter.as_ref();
        // Cache mode (spec §7.2): recovery gives only the latest publication, and with
        // `auto_cache_recover` (or the connect proxy's `cache_recover`) the server starts that
        // recovery itself, so the subscriber gets the channel's current state.
        let (cache_mode, auto_by_namespace) = plan.options.cache_recovery();
        let auto_recover =
            plan.recoverable && cache_mode && (auto_by_namespace || spec.cache_recover);
        let (publications, top, recovered) =
            if auto_recover || (plan.recoverable && req.recover && cache_mode) {
                self.recover_cache(channel, req, meta, limit, filter)
                    .await?
            } else if plan.recoverable && req.recover {
                self.recover(channel, req, limit, meta, filter).await?
            } else {
                let filter = HistoryFilter {
                    limit: 0,
                    meta_ttl: meta,
                    ..Default::default()
                };
                let page = self.node.broker.history(channel, filter).await?;
                (Vec::new(), page.top, false)
            };
        if req.recover || auto_recover {
            result.was_recovering = true;
            result.recovered = recovered;
            // Cache mode has no position to lose: an empty cache is not an error.
            if !recovered && !cache_mode && req.flag & FLAG_REJECT_UNRECOVERED != 0 {
                return Err(ClientError::UNRECOVERABLE_POSITION.into());
            }
        }
        if recovered {
            result.publications = publications;
            if plan.delta {
                // Recovered publications come whole; a JSON delta subscription reads every
                // `data` as a JSON string.
                self.delta_payloads(&mut result.publications);
            }
            result.offset = req.offset;
        } else {
            result.offset = top.offset;
        }
        result.epoch = top.epoch.clone();
        Ok(top)
    }

    /// Publications for a delta subscription of this connection: whole, and in JSON with
    /// `data` as a JSON string (binary payloads stay as they are and fail the JSON encode).
    fn delta_payloads(&self, publications: &mut [crate::protocol::Publication]) {
        if self.handle.protocol != crate::protocol::ProtocolKind::Json {
            return;
        }
        for p in publications {
            if let Some(text) = std::str::from_utf8(&p.data)
                .ok()
                .and_then(crate::publication::json_string)
            {
                p.data = text;
            }
        }
    }

    /// Queues the answer (if any) and releases held-back publications; then announces the join.
    pub(crate) async fn activate_subscription(
        &mut self,
        p: Prepared,
        reply: Option<Reply>,
    ) -> Result<(), Disconnect> {
        let frame = match reply {
            Some(reply) => match self.encode(&reply) {
                Ok(f) => {
                    self.count_sent(&reply, f.len());
                    Some(f)
                }
                // Dropping `p` undoes it.
                Err(d) => return Err(d),
            },
            None => None,
        };
        let join_leave = p.state.join_leave;
        let stream = p.stream;
        // From here the session owns the subscription: its close undoes it.
        let channel = p.pending.commit();
        let ns = crate::metrics::namespace_of(&channel);
        if !self
            .subs
            .keys()
            .any(|c| crate::metrics::namespace_of(c) == ns)
        {
            self.node
                .metrics
                .namespaces
                .connection_entered(ns, &self.user);
        }
        self.subs.insert(channel.clone(), p.state);
        self.node
            .webhooks
            .subscribed(&*self.node, &channel, &self.user);
        self.node.metrics.subscriptions.inc();
        self.node
            .metrics
            .namespaces
            .subscriptions(crate::metrics::namespace_of(&channel), 1);
        if !self
            .node
            .hub
            .activate(&channel, &self.handle.id, p.hub_position.as_ref(), frame)
        {
            return Err(Disconnect::SLOW);
        }
        if let Some(link) = stream {
            self.start_stream(&channel, link);
        }
        if join_leave {
            self.node
                .metrics
                .centrifugo
                .broker_sent(crate::centrifugo_metrics::BrokerMessage::Join);
            if let Err(e) = self.node.broker.publish_join(&channel, p.info).await {
                tracing::warn!(channel = %channel, error = %e, "join not published");
            }
        }
        Ok(())
    }

    pub(super) async fn handle_unsubscribe(
        &mut self,
        id: u32,
        req: UnsubscribeRequest,
    ) -> CommandResult {
        if self.subs.contains_key(&req.channel) {
            self.leave_channel(&req.channel).await;
        }
        self.send_reply(Reply {
            id,
            unsubscribe: Some(UnsubscribeResult {}),
            ..Default::default()
        })?;
        Ok(())
    }

    /// Ends a subscription locally: hub, presence, leave.
    pub(crate) async fn leave_channel(&mut self, channel: &str) {
        let Some(state) = self.subs.remove(channel) else {
            return;
        };
        self.end_stream(channel);
        let ns = crate::metrics::namespace_of(channel);
        if !self
            .subs
            .keys()
            .any(|c| crate::metrics::namespace_of(c) == ns)
        {
            self.node.metrics.namespaces.connection_left(ns, &self.user);
        }
        self.node.metrics.subscriptions.dec();
        self.node
            .webhooks
            .unsubscribed(&*self.node, channel, &self.user);
        self.node
            .metrics
            .namespaces
            .subscriptions(crate::metrics::namespace_of(channel), -1);
        if self.node.hub.remove(channel, &self.handle.id) {
            if let Err(e) = self.node.broker.unsubscribe(channel).await {
                tracing::warn!(%channel, error = %e, "engine unsubscribe failed");
            }
        }
        if state.presence {
            self.node.budgets.release_presence();
            if let Err(e) = self
                .node
                .presence
                .remove_presence(channel, &self.handle.id, &self.user)
                .await
            {
                tracing::warn!(%channel, error = %e, "presence not removed");
            }
        }
        if state.join_leave {
            let info = ClientInfo {
                user: self.user.to_string(),
                client: self.handle.id.to_string(),
                conn_info: self.conn_info.clone(),
                chan_info: state.chan_info,
            };
            self.node
                .metrics
                .centrifugo
                .broker_sent(crate::centrifugo_metrics::BrokerMessage::Leave);
            if let Err(e) = self.node.broker.publish_leave(channel, info).await {
                tracing::warn!(%channel, error = %e, "leave not published");
            }
        }
    }

    /// Ends a subscription from the server side and tells the client with an Unsubscribe push.
    pub(crate) async fn server_unsubscribe(
        &mut self,
        channel: &str,
        code: u32,
        reason: &str,
    ) -> Result<(), Disconnect> {
        if !self.subs.contains_key(channel) {
            return Ok(());
        }
        self.leave_channel(channel).await;
        let push = Push {
            channel: channel.to_owned(),
            unsubscribe: Some(UnsubscribePush {
                code,
                reason: reason.to_owned(),
            }),
            ..Default::default()
        };
        self.send_reply(Reply {
            push: Some(push),
            ..Default::default()
        })
    }

    /// Re-announces presence in every channel that keeps it (keeps TTL-based engines fresh).
    pub(crate) async fn refresh_presence(&self) {
        for (channel, state) in &self.subs {
            if !state.presence {
                continue;
            }
            let info = ClientInfo {
                user: self.user.to_string(),
                client: self.handle.id.to_string(),
                conn_info: self.conn_info.clone(),
                chan_info: state.chan_info.clone(),
            };
            if let Err(e) = self.node.presence.add_presence(channel, info).await {
                tracing::warn!(%channel, error = %e, "presence refresh failed");
            }
        }
    }

    pub(super) async fn handle_sub_refresh(
        &mut self,
        id: u32,
        req: SubRefreshRequest,
    ) -> CommandResult {
        if req.channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        match self.subs.get(&req.channel) {
            None => return Err(ClientError::PERMISSION_DENIED.into()),
            // The server refreshes this one through the sub_refresh proxy.
            Some(state) if state.server_refresh => return Err(Disconnect::BAD_REQUEST.into()),
            Some(_) => {}
        }
        if req.token.is_empty() {
            return Err(ClientError::BAD_REQUEST.into());
        }
        let config = self.node.config.load();
        let verifier = config
            .subscription_token_verifier
            .as_ref()
            .unwrap_or(&config.token_verifier);
        let claims = match verifier.verify_subscribe(&req.token).await {
            Ok(c) => c,
            // The keys could not be fetched: the client retries.
            Err(TokenError::Unavailable(_)) => return Err(ClientError::INTERNAL.into()),
            // Temporary, so the SDK asks its token endpoint again instead of giving up.
            Err(TokenError::Expired) => {
                return Err(ClientError {
                    temporary: true,
                    ..ClientError::TOKEN_EXPIRED
                }
                .into())
            }
            Err(TokenError::Invalid(_)) => return Err(Disconnect::INVALID_TOKEN.into()),
        };
        if claims.channel != req.channel
            || claims.user != *self.user
            || (!claims.client.is_empty() && claims.client != *self.handle.id)
        {
            return Err(Disconnect::INVALID_TOKEN.into());
        }
        let expires_at = if config.tenant.client.insecure {
            None
        } else {
            claims.expires_at()
        };
        if let Some(state) = self.subs.get_mut(&req.channel) {
            state.expires_at = expires_at;
        }
        let mut result = SubRefreshResult::default();
        if let Some(exp) = expires_at {
            result.expires = true;
            result.ttl = (exp - unix_now()).max(1) as u32;
        }
        self.send_reply(Reply {
            id,
            sub_refresh: Some(result),
            ..Default::default()
        })?;
        Ok(())
    }
}
