//! This session's calls to the tenant's backend through the connect and refresh proxies (spec
//! §10): each builds the request from the session's state (through its [`super::identity`],
//! where the per-command proxies live), asks, and turns the answer into what the connect
//! handler or the expiry timer needs. The backend's own error or disconnect reaches the client as is;
//! a call that fails (timeout, network, bad status, malformed answer) is logged and becomes
//! error 100 — or, for the refresh proxies, one more minute of life.

use std::collections::HashMap;

use bytes::Bytes;
use rotor_tenant_config::ChannelProxyKind;

use super::subscribe::SubscribeSpec;
use super::{unix_now, CommandError, Session};
use crate::node::PublishExtras;
use crate::protocol::{ClientError, ConnectRequest, Disconnect};
use crate::proxy::types::{self, decode_payload};
use crate::proxy::{Endpoint, ProxyError};

/// How long a connection or subscription lives on when its refresh proxy cannot be asked.
const RETRY_REFRESH_SECS: i64 = 60;
/// Cap on an expiry a backend sets (one year from now).
const MAX_TTL_SECS: i64 = 365 * 24 * 3600;

impl From<ProxyError> for CommandError {
    fn from(e: ProxyError) -> Self {
        match e {
            ProxyError::Refused(e) => Self::Client(e),
            ProxyError::Disconnect(d) => Self::Disconnect(d),
            _ => Self::Client(ClientError::INTERNAL),
        }
    }
}

/// What the connect proxy decided about a client.
pub(super) struct ProxiedConnect {
    pub user: String,
    pub info: Bytes,
    /// Unix seconds; `None` = never expires.
    pub expires_at: Option<i64>,
    /// Goes to the client in the connect result.
    pub data: Bytes,
    pub subs: Vec<SubscribeSpec>,
    pub meta: Option<Bytes>,
    /// Rotor's `session_tag` (publisher exclusion); empty when the backend gave none.
    pub session_tag: String,
}

/// What the publish proxy made of a publication.
pub(super) struct ProxiedPublish {
    pub data: Bytes,
    pub tags: HashMap<String, String>,
    /// Idempotency key, history skip and version from the backend.
    pub extras: PublishExtras,
}

pub(super) fn malformed(e: ProxyError) -> CommandError {
    tracing::warn!(error = %e, "proxy answer cannot be used");
    CommandError::Client(ClientError::INTERNAL)
}

impl Session {
    /// Asks the connect proxy who a client without a token is. `None`: the backend gave no
    /// credentials.
    pub(super) async fn connect_by_proxy(
        &self,
        endpoint: &Endpoint,
        req: &ConnectRequest,
    ) -> Result<Option<ProxiedConnect>, CommandError> {
        let mut channels: Vec<&str> = req.subs.keys().map(String::as_str).collect();
        channels.sort_unstable();
        let who = self.identity();
        let body = types::ConnectRequest {
            base: who.proxy_base(endpoint),
            name: &req.name,
            version: &req.version,
            payload: endpoint.payload(&req.data)?,
            channels,
        };
        let Some(r) = who
            .ask::<_, types::ConnectResult>(endpoint, "connect", &body)
            .await?
        else {
            return Ok(None);
        };
        if r.session_tag.len() > crate::exclusion::MAX_LEN {
            return Err(malformed(ProxyError::Malformed(format!(
                "session_tag is longer than {} bytes",
                crate::exclusion::MAX_LEN
            ))));
        }
        let mut subs = Vec::new();
        let mut granted: Vec<(String, types::SubscribeOptions)> = r.subs.into_iter().collect();
        granted.sort_by(|a, b| a.0.cmp(&b.0));
        for channel in r.channels {
            if !granted.iter().any(|(ch, _)| *ch == channel) {
                subs.push(SubscribeSpec::server(channel, Bytes::new(), Bytes::new()));
            }
        }
        for (channel, o) in granted {
            let info = decode_payload(o.info, &o.b64info).map_err(malformed)?;
            let data = decode_payload(o.data, &o.b64data).map_err(malformed)?;
            let mut spec =
                SubscribeSpec::server(channel, info.unwrap_or_default(), data.unwrap_or_default());
            spec.expires_at = (o.expire_at > 0).then_some(o.expire_at);
            spec.overrides = o.overrides;
            spec.cache_recover = o.cache_recover;
            subs.push(spec);
        }
        Ok(Some(ProxiedConnect {
            user: r.user,
            info: decode_payload(r.info, &r.b64info)
                .map_err(malformed)?
                .unwrap_or_default(),
            expires_at: (r.expire_at > 0).then_some(r.expire_at),
            data: decode_payload(r.data, &r.b64data)
                .map_err(malformed)?
                .unwrap_or_default(),
            subs,
            meta: r.meta.map(|m| m.0),
            session_tag: r.session_tag,
        }))
    }

    /// The connection's expiry has come: asks the refresh proxy whether it lives on. A backend
    /// that cannot be asked gets another minute; no result, an error answer or `expired` close
    /// the connection (3005).
    pub(super) async fn refresh_by_proxy(&mut self) -> Result<(), Disconnect> {
        let config = self.node.config.load();
        let Some(endpoint) = config.proxies.refresh().cloned() else {
            return Err(Disconnect::EXPIRED);
        };
        let answer = {
            let who = self.identity();
            let body = who.user_request(&endpoint);
            who.ask::<_, types::RefreshResult>(&endpoint, "refresh", &body)
                .await
        };
        let now = unix_now();
        let r = match answer {
            Err(e) if !e.is_answer() => {
                self.expires_at = Some(now + RETRY_REFRESH_SECS);
                return Ok(());
            }
            Ok(Some(r)) if !r.expired => r,
            _ => return Err(Disconnect::EXPIRED),
        };
        let expires_at = r.expire_at.min(now + MAX_TTL_SECS);
        if expires_at <= now {
            return Err(Disconnect::EXPIRED);
        }
        let info = decode_payload(r.info, &r.b64info).map_err(|e| {
            tracing::warn!(client = %self.handle.id, error = %e, "refresh proxy answer cannot be used");
            Disconnect::INTERNAL
        })?;
        self.expires_at = Some(expires_at);
        if let Some(info) = info.filter(|i| !i.is_empty()) {
            self.conn_info = info;
        }
        if let Some(meta) = r.meta {
            self.meta = Some(meta.0);
        }
        Ok(())
    }

    /// A proxy-refreshed subscription's expiry has come: asks the sub_refresh proxy. Returns
    /// whether the subscription lives on (a backend that cannot be asked gives it a minute).
    pub(super) async fn sub_refresh_by_proxy(&mut self, channel: &str) -> bool {
        let config = self.node.config.load();
        let endpoint = match config.channel_rules(channel).ok().and_then(|rules| {
            config
                .proxies
                .channel(ChannelProxyKind::SubRefresh, &rules.options)
                .and_then(Result::ok)
                .cloned()
        }) {
            Some(e) => e,
            None => return false,
        };
        let answer = {
            let who = self.identity();
            let mut body = who.user_request(&endpoint);
            body.channel = channel;
            who.ask::<_, types::SubRefreshResult>(&endpoint, "sub_refresh", &body)
                .await
        };
        let now = unix_now();
        let (expires_at, info) = match answer {
            Err(e) if !e.is_answer() => (Some(now + RETRY_REFRESH_SECS), None),
            Ok(Some(r)) if !r.expired => {
                let exp = r.expire_at.min(now + MAX_TTL_SECS);
                if exp != 0 && exp <= now {
                    return false;
                }
                match decode_payload(r.info, &r.b64info) {
                    Ok(info) => ((exp > 0).then_some(exp), info),
                    Err(_) => return false,
                }
            }
            _ => return false,
        };
        let Some(state) = self.subs.get_mut(channel) else {
            return false;
        };
        state.expires_at = expires_at;
        if let Some(info) = info.filter(|i| !i.is_empty()) {
            state.chan_info = info;
        }
        true
    }
}
