//! Who a command runs for, as owned values: the parts of a session that proxy calls and
//! authorisation read (client id, transport, user, connection info, meta, forwarded headers).
//! A command holding an [`Identity`] needs nothing borrowed from its session, so with
//! `client.concurrency` it can run beside the session's other work (see `concurrent`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use rotor_tenant_config::ChannelProxyKind;

use super::backend::{malformed, ProxiedPublish};
use super::permissions::{may_subscribe, Caller};
use super::subscribe::{SubscribeKind, SubscribeSpec};
use super::{unix_now, CommandError, Session, TransportInfo};
use crate::auth::jwt::TokenError;
use crate::config::RuntimeConfig;
use crate::node::{Node, PublishExtras};
use crate::protocol::{ClientError, Disconnect};
use crate::proxy::types::{self, decode_payload, Base, Payload, UserRequest};
use crate::proxy::{ClientHeaders, Endpoint, Outcome, ProxyError, Request};

/// A snapshot of a session's caller, taken when a command starts.
pub(super) struct Identity {
    pub node: Arc<Node>,
    pub client: Arc<str>,
    pub transport: TransportInfo,
    pub user: Arc<str>,
    pub conn_info: Bytes,
    pub meta: Option<Bytes>,
    pub headers: ClientHeaders,
}

impl Session {
    /// The caller as it is now.
    pub(super) fn identity(&self) -> Identity {
        Identity {
            node: self.node.clone(),
            client: self.handle.id.clone(),
            transport: self.transport,
            user: self.user.clone(),
            conn_info: self.conn_info.clone(),
            meta: self.meta.clone(),
            headers: self.headers().clone(),
        }
    }
}

impl Identity {
    pub(super) fn proxy_base<'a>(&'a self, endpoint: &Endpoint) -> Base<'a> {
        Base {
            client: &self.client,
            transport: self.transport.name,
            protocol: self.transport.protocol.as_str(),
            encoding: endpoint.encoding(),
        }
    }

    /// A request on behalf of this connection's user, with nothing event-specific yet.
    pub(super) fn user_request<'a>(&'a self, endpoint: &Endpoint) -> UserRequest<'a> {
        UserRequest {
            base: self.proxy_base(endpoint),
            user: &self.user,
            meta: types::meta(self.meta.as_ref(), endpoint.include_meta()),
            channel: "",
            token: "",
            method: "",
            payload: Payload::default(),
        }
    }

    /// Calls a proxy; failures (not answers) are logged here with the event and proxy name.
    pub(super) async fn ask<B: Request, R: Outcome>(
        &self,
        endpoint: &Endpoint,
        event: &'static str,
        body: &B,
    ) -> Result<Option<R>, ProxyError> {
        let outcome = self.node.proxy.call(endpoint, &self.headers, body).await;
        if let Err(e) = &outcome {
            if !e.is_answer() {
                tracing::warn!(
                    client = %self.client, event, proxy = %endpoint.name, error = %e,
                    "proxy call failed"
                );
            }
        }
        outcome
    }

    /// Subscribe permission (spec §6.2): private channels need a token; a token decides; then
    /// user-limited channels; then the subscribe proxy; then the namespace's permissions.
    pub(super) async fn authorise_subscribe(
        &self,
        config: &RuntimeConfig,
        spec: &mut SubscribeSpec,
    ) -> Result<(), CommandError> {
        let channel = &spec.channel;
        let rules = config.channel_rules(channel)?;
        let o = &rules.options;
        let token = spec.request.token.clone();
        if !token.is_empty() {
            let verifier = config
                .subscription_token_verifier
                .as_ref()
                .unwrap_or(&config.token_verifier);
            let claims = match verifier.verify_subscribe(&token).await {
                Ok(c) => c,
                // The keys could not be fetched: the client retries.
                Err(TokenError::Unavailable(_)) => return Err(ClientError::INTERNAL.into()),
                Err(TokenError::Expired) => return Err(ClientError::TOKEN_EXPIRED.into()),
                Err(TokenError::Invalid(reason)) => {
                    tracing::info!(client = %self.client, %reason, "invalid subscription token");
                    return Err(ClientError::PERMISSION_DENIED.into());
                }
            };
            if claims.channel != *channel
                || claims.user != *self.user
                || (!claims.client.is_empty() && claims.client != *self.client)
            {
                return Err(Disconnect::INVALID_TOKEN.into());
            }
            if claims.expires_at().is_some_and(|e| e <= unix_now()) {
                return Err(ClientError::TOKEN_EXPIRED.into());
            }
            spec.chan_info = claims.info.clone();
            spec.data = claims.data.clone();
            spec.overrides = claims.overrides.clone();
            spec.expires_at = if config.tenant.client.insecure {
                None
            } else {
                claims.expires_at()
            };
            return Ok(());
        }
        if config.is_private(channel) {
            return Err(ClientError::PERMISSION_DENIED.into());
        }
        if o.allow_user_limited_channels {
            if let Some(allowed) = config.user_allowed(channel, &self.user) {
                return if allowed {
                    Ok(())
                } else {
                    Err(ClientError::PERMISSION_DENIED.into())
                };
            }
        }
        if let Some(proxy) = config.proxies.channel(ChannelProxyKind::Subscribe, o) {
            // Channels a client lists at connect are not sent to the backend (as in
            // Centrifugo): it subscribes to them with `subscribe` commands instead.
            if spec.kind == SubscribeKind::ClientListed {
                return Err(ClientError::PERMISSION_DENIED.into());
            }
            return self.subscribe_by_proxy(proxy?, spec).await;
        }
        if let Some(proxy) = config.proxies.channel(ChannelProxyKind::SubscribeStream, o) {
            // Only a client's own `subscribe` opens a stream (as in Centrifugo).
            if spec.kind == SubscribeKind::ClientListed {
                return Err(ClientError::PERMISSION_DENIED.into());
            }
            let bidirectional = o.subscribe_stream_proxy_bidirectional;
            return self.subscribe_by_stream(proxy?, spec, bidirectional).await;
        }
        let caller = Caller {
            user: &self.user,
            insecure: config.tenant.client.insecure,
        };
        if may_subscribe(o, caller) {
            Ok(())
        } else {
            Err(ClientError::PERMISSION_DENIED.into())
        }
    }

    /// Asks the subscribe proxy; on success fills in what the backend decided (channel info,
    /// data, expiry, option overrides).
    async fn subscribe_by_proxy(
        &self,
        endpoint: &Endpoint,
        spec: &mut SubscribeSpec,
    ) -> Result<(), CommandError> {
        let answer = {
            let mut body = self.user_request(endpoint);
            body.channel = &spec.channel;
            body.token = &spec.request.token;
            body.payload = endpoint.payload(&spec.request.data)?;
            self.ask::<_, types::SubscribeResult>(endpoint, "subscribe", &body)
                .await?
        };
        match answer {
            Some(r) => super::subscribe::apply_subscribe_result(spec, r),
            None => Ok(()),
        }
    }

    /// Asks the publish proxy; the answer may replace the payload and set history options.
    pub(super) async fn publish_by_proxy(
        &self,
        endpoint: &Endpoint,
        channel: &str,
        data: Bytes,
    ) -> Result<ProxiedPublish, CommandError> {
        let answer = {
            let mut body = self.user_request(endpoint);
            body.channel = channel;
            body.payload = endpoint.payload(&data)?;
            self.ask::<_, types::PublishResult>(endpoint, "publish", &body)
                .await?
        };
        let mut out = ProxiedPublish {
            data,
            tags: HashMap::new(),
            extras: PublishExtras::default(),
        };
        if let Some(r) = answer {
            // JSON `data` wins over `b64data` here, as in Centrifugo.
            let replaced = match r.data {
                Some(json) => Some(json.0),
                None => decode_payload(None, &r.b64data).map_err(malformed)?,
            };
            if let Some(data) = replaced {
                out.data = data;
            }
            out.tags = r.tags;
            out.extras = PublishExtras {
                idempotency_key: (!r.idempotency_key.is_empty()).then_some(r.idempotency_key),
                skip_history: r.skip_history,
                version: r.version,
                version_epoch: r.version_epoch,
                delta: r.delta,
            };
        }
        Ok(out)
    }

    /// Asks the rpc proxy; returns the data for the client.
    pub(super) async fn rpc_by_proxy(
        &self,
        endpoint: &Endpoint,
        method: &str,
        data: &Bytes,
    ) -> Result<Bytes, CommandError> {
        let mut body = self.user_request(endpoint);
        body.method = method;
        body.payload = endpoint.payload(data)?;
        let answer = self
            .ask::<_, types::RpcResult>(endpoint, "rpc", &body)
            .await?;
        match answer {
            Some(r) => Ok(decode_payload(r.data, &r.b64data)
                .map_err(malformed)?
                .unwrap_or_default()),
            None => Ok(Bytes::new()),
        }
    }
}
