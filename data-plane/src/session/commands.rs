//! Channel commands that do not change subscriptions: `publish`, `presence`,
//! `presence_stats`, `history`, and the backend-bound `rpc` and `send`. Each of the first five
//! is checked against the session when it starts and then runs as [`Work`], owning what it
//! needs, so that with `client.concurrency` it runs beside the session's other commands.

use super::concurrent::Work;
use super::permissions::{may_publish, may_read_history, may_read_presence, Caller};
use super::{CommandError, Session};
use crate::config::ChannelRules;
use crate::engine::HistoryFilter;
use crate::exclusion::{self, Exclusion};
use crate::node::meta_ttl;
use crate::protocol::{
    ClientError, ClientInfo, Disconnect, HistoryRequest, HistoryResult, PresenceRequest,
    PresenceResult, PresenceStatsRequest, PresenceStatsResult, Publication, PublishRequest,
    PublishResult, Reply, RpcRequest, RpcResult, SendRequest,
};
use rotor_tenant_config::ChannelProxyKind;

impl Session {
    fn caller(&self, insecure: bool) -> Caller<'_> {
        Caller {
            user: &self.user,
            insecure,
        }
    }

    fn channel_rules(
        &self,
        channel: &str,
    ) -> Result<
        (
            std::sync::Arc<crate::config::RuntimeConfig>,
            std::sync::Arc<ChannelRules>,
        ),
        ClientError,
    > {
        if channel.is_empty() {
            return Err(ClientError::BAD_REQUEST.with_message("channel is required"));
        }
        let config = self.node.config.load();
        let rules = config.channel_rules(channel)?;
        Ok((config, rules))
    }

    /// `publish`: checked against the session now, run as [`Work`].
    pub(super) fn start_publish(&self, id: u32, req: PublishRequest) -> Result<Work, CommandError> {
        let (config, rules) = self.channel_rules(&req.channel)?;
        rules.check_data(&req.data)?;
        if rules.options.subscribe_stream_proxy_enabled {
            let bidirectional = rules.options.subscribe_stream_proxy_bidirectional;
            return self.start_stream_publish(id, req, bidirectional);
        }
        let chan_info = self.subs.get(&req.channel).map(|s| s.chan_info.clone());
        let proxied = config
            .proxies
            .channel(ChannelProxyKind::Publish, &rules.options)
            .is_some();
        // With a publish proxy the backend decides (and may rewrite the publication).
        let caller = self.caller(config.tenant.client.insecure);
        if !proxied && !may_publish(&rules.options, caller, chan_info.is_some()) {
            return Err(ClientError::PERMISSION_DENIED.into());
        }
        let who = self.identity();
        // In a namespace with `exclude_publisher` the publication is not for the publishing
        // session, live or replayed, whichever connection of it is subscribed.
        let exclude = if rules.options.exclude_publisher {
            let tag = self.handle.owner().map(|o| o.session_tag.clone());
            match &tag {
                Some(tag) => Exclusion::SessionTag(tag).to_field(),
                None => Exclusion::Client(&self.handle.id).to_field(),
            }
        } else {
            String::new()
        };
        Ok(Box::pin(async move {
            let proxy = config
                .proxies
                .channel(ChannelProxyKind::Publish, &rules.options);
            let (data, tags, extras) = match proxy {
                Some(proxy) => {
                    let p = who.publish_by_proxy(proxy?, &req.channel, req.data).await?;
                    (p.data, p.tags, p.extras)
                }
                None => (req.data, Default::default(), Default::default()),
            };
            let publication = Publication {
                data,
                tags,
                info: Some(ClientInfo {
                    user: who.user.to_string(),
                    client: who.client.to_string(),
                    conn_info: who.conn_info.clone(),
                    chan_info: chan_info.unwrap_or_default(),
                }),
                exclude,
                ..Default::default()
            };
            who.node
                .publish(&config, &rules, &req.channel, publication, extras)
                .await?;
            Ok(Reply {
                id,
                publish: Some(PublishResult {}),
                ..Default::default()
            })
        }))
    }

    fn check_presence_access(&self, channel: &str) -> Result<(), ClientError> {
        let (config, rules) = self.channel_rules(channel)?;
        if !rules.options.presence {
            return Err(ClientError::NOT_AVAILABLE);
        }
        let caller = self.caller(config.tenant.client.insecure);
        if !may_read_presence(&rules.options, caller, self.subs.contains_key(channel)) {
            return Err(ClientError::PERMISSION_DENIED);
        }
        Ok(())
    }

    /// `presence`: checked now, run as [`Work`].
    pub(super) fn start_presence(
        &self,
        id: u32,
        req: PresenceRequest,
    ) -> Result<Work, CommandError> {
        self.check_presence_access(&req.channel)?;
        let node = self.node.clone();
        Ok(Box::pin(async move {
            let presence = node.presence.presence(&req.channel).await?;
            Ok(Reply {
                id,
                presence: Some(PresenceResult { presence }),
                ..Default::default()
            })
        }))
    }

    /// `presence_stats`: checked now, run as [`Work`].
    pub(super) fn start_presence_stats(
        &self,
        id: u32,
        req: PresenceStatsRequest,
    ) -> Result<Work, CommandError> {
        self.check_presence_access(&req.channel)?;
        let node = self.node.clone();
        Ok(Box::pin(async move {
            let (num_clients, num_users) = node.presence.presence_stats(&req.channel).await?;
            Ok(Reply {
                id,
                presence_stats: Some(PresenceStatsResult {
                    num_clients,
                    num_users,
                }),
                ..Default::default()
            })
        }))
    }

    /// `history`: checked now, run as [`Work`].
    pub(super) fn start_history(&self, id: u32, req: HistoryRequest) -> Result<Work, CommandError> {
        let (config, rules) = self.channel_rules(&req.channel)?;
        if !rules.options.history_enabled() {
            return Err(ClientError::NOT_AVAILABLE.into());
        }
        let caller = self.caller(config.tenant.client.insecure);
        if !may_read_history(&rules.options, caller, self.subs.contains_key(&req.channel)) {
            return Err(ClientError::PERMISSION_DENIED.into());
        }
        if req.reverse && req.since.as_ref().is_some_and(|s| s.offset == 0) {
            return Err(ClientError::BAD_REQUEST
                .with_message("reverse history needs since.offset")
                .into());
        }
        let cap = config.tenant.client.history_max_publication_limit as i32;
        let limit = if req.limit < 0 || (cap > 0 && req.limit > cap) {
            cap
        } else {
            req.limit
        };
        // A read from a position replays the stream: like recovery, it leaves out what this
        // connection's session published and excluded itself from. A read of the latest
        // publications shows them all.
        let replay = req.since.is_some();
        let filter = HistoryFilter {
            since: req.since,
            limit,
            reverse: req.reverse,
            meta_ttl: meta_ttl(&config, &rules),
        };
        let node = self.node.clone();
        let handle = self.handle.clone();
        Ok(Box::pin(async move {
            let mut page = node.broker.history(&req.channel, filter).await?;
            if replay {
                exclusion::replay_for(&mut page.publications, &handle.id, handle.owner());
            } else {
                exclusion::strip(&mut page.publications);
            }
            Ok(Reply {
                id,
                history: Some(HistoryResult {
                    publications: page.publications,
                    epoch: page.top.epoch,
                    offset: page.top.offset,
                }),
                ..Default::default()
            })
        }))
    }

    /// `rpc`: checked now, run as [`Work`].
    pub(super) fn start_rpc(&self, id: u32, req: RpcRequest) -> Result<Work, CommandError> {
        if req.method.is_empty() && req.data.is_empty() {
            return Err(ClientError::BAD_REQUEST.into());
        }
        // Only the RPC proxy answers: 108 without one, 104 for an unknown RPC namespace.
        let config = self.node.config.load();
        config.proxies.rpc(&req.method)?;
        let who = self.identity();
        Ok(Box::pin(async move {
            let proxy = config.proxies.rpc(&req.method)?;
            let data = who.rpc_by_proxy(proxy, &req.method, &req.data).await?;
            Ok(Reply {
                id,
                rpc: Some(RpcResult { data }),
                ..Default::default()
            })
        }))
    }

    pub(super) async fn handle_send(&mut self, _req: SendRequest) -> Result<(), Disconnect> {
        if !self.is_connected() {
            return Err(Disconnect::BAD_REQUEST);
        }
        // Without a backend to hand `send` to, Centrifugo closes the connection (3508).
        Err(Disconnect::NOT_AVAILABLE)
    }
}
