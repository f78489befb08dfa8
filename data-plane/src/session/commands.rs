//! Channel commands that do not change subscriptions: `publish`, `presence`,
//! `presence_stats`, `history`, and the backend-bound `rpc` and `send`.

use super::permissions::{may_publish, may_read_history, may_read_presence, Caller};
use super::{CommandResult, Session};
use crate::config::ChannelRules;
use crate::engine::HistoryFilter;
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

    pub(super) async fn handle_publish(&mut self, id: u32, req: PublishRequest) -> CommandResult {
        let (config, rules) = self.channel_rules(&req.channel)?;
        let o = &rules.options;
        rules.check_data(&req.data)?;
        // With a publish proxy the backend decides (and may rewrite the publication).
        let proxied = match config.proxies.channel(ChannelProxyKind::Publish, o) {
            Some(proxy) => Some(
                self.publish_by_proxy(proxy?, &req.channel, req.data.clone())
                    .await?,
            ),
            None => None,
        };
        let subscribed = self.subs.get(&req.channel);
        let caller = self.caller(config.tenant.client.insecure);
        if proxied.is_none() && !may_publish(o, caller, subscribed.is_some()) {
            return Err(ClientError::PERMISSION_DENIED.into());
        }
        let (data, tags, extras) = match proxied {
            Some(p) => (p.data, p.tags, p.extras),
            None => (req.data, Default::default(), Default::default()),
        };
        let publication = Publication {
            data,
            tags,
            info: Some(ClientInfo {
                user: self.user.to_string(),
                client: self.handle.id.to_string(),
                conn_info: self.conn_info.clone(),
                chan_info: subscribed.map(|s| s.chan_info.clone()).unwrap_or_default(),
            }),
            ..Default::default()
        };
        self.node
            .publish(&config, &rules, &req.channel, publication, extras)
            .await?;
        self.send_reply(Reply {
            id,
            publish: Some(PublishResult {}),
            ..Default::default()
        })?;
        Ok(())
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

    pub(super) async fn handle_presence(&mut self, id: u32, req: PresenceRequest) -> CommandResult {
        self.check_presence_access(&req.channel)?;
        let presence = self.node.presence.presence(&req.channel).await?;
        self.send_reply(Reply {
            id,
            presence: Some(PresenceResult { presence }),
            ..Default::default()
        })?;
        Ok(())
    }

    pub(super) async fn handle_presence_stats(
        &mut self,
        id: u32,
        req: PresenceStatsRequest,
    ) -> CommandResult {
        self.check_presence_access(&req.channel)?;
        let (num_clients, num_users) = self.node.presence.presence_stats(&req.channel).await?;
        let result = PresenceStatsResult {
            num_clients,
            num_users,
        };
        self.send_reply(Reply {
            id,
            presence_stats: Some(result),
            ..Default::default()
        })?;
        Ok(())
    }

    pub(super) async fn handle_history(&mut self, id: u32, req: HistoryRequest) -> CommandResult {
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
        let filter = HistoryFilter {
            since: req.since,
            limit,
            reverse: req.reverse,
            meta_ttl: meta_ttl(&config, &rules),
        };
        let page = self.node.broker.history(&req.channel, filter).await?;
        let result = HistoryResult {
            publications: page.publications,
            epoch: page.top.epoch,
            offset: page.top.offset,
        };
        self.send_reply(Reply {
            id,
            history: Some(result),
            ..Default::default()
        })?;
        Ok(())
    }

    pub(super) async fn handle_rpc(&mut self, id: u32, req: RpcRequest) -> CommandResult {
        if req.method.is_empty() && req.data.is_empty() {
            return Err(ClientError::BAD_REQUEST.into());
        }
        // Only the RPC proxy answers: 108 without one, 104 for an unknown RPC namespace.
        let config = self.node.config.load();
        let proxy = config.proxies.rpc(&req.method)?;
        let data = self.rpc_by_proxy(proxy, &req.method, &req.data).await?;
        self.send_reply(Reply {
            id,
            rpc: Some(RpcResult { data }),
            ..Default::default()
        })?;
        Ok(())
    }

    pub(super) async fn handle_send(&mut self, _req: SendRequest) -> Result<(), Disconnect> {
        if !self.is_connected() {
            return Err(Disconnect::BAD_REQUEST);
        }
        // Without a backend to hand `send` to, Centrifugo closes the connection (3508).
        Err(Disconnect::NOT_AVAILABLE)
    }
}
