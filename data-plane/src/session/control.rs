//! Requests that reach a connection from the server side: server API subscribe, unsubscribe,
//! disconnect and refresh, the hub's "you missed publications" signal, and the end of a
//! subscribe stream.

use super::subscribe::{SubscribeKind, SubscribeSpec};
use super::{unix_now, CommandError, Session};
use crate::client::{Control, ServerSubscribe};
use crate::protocol::{
    unsubscribe, Disconnect, Push, RefreshPush, Reply, SubscribePush, SubscribeRequest,
};

pub(super) async fn handle(session: &mut Session, control: Control) -> Result<(), Disconnect> {
    match control {
        Control::Disconnect(d) => Err(d),
        Control::Unsubscribe {
            channel,
            code,
            reason,
        } => session.server_unsubscribe(&channel, code, &reason).await,
        Control::InsufficientState { channel } => {
            let Some(state) = session.subs.get(&channel) else {
                return Ok(());
            };
            if state.server_side {
                return Err(Disconnect::INSUFFICIENT_STATE);
            }
            let (code, reason) = unsubscribe::INSUFFICIENT_STATE;
            session.server_unsubscribe(&channel, code, reason).await
        }
        Control::StreamEnded {
            channel,
            stream,
            code,
            reason,
        } => {
            if !session.is_stream(&channel, stream) {
                return Ok(());
            }
            session.server_unsubscribe(&channel, code, &reason).await
        }
        Control::Subscribe(sub) => server_subscribe(session, *sub).await,
        Control::Refresh(refresh) => {
            if refresh.expired {
                return Err(Disconnect::EXPIRED);
            }
            session.expires_at = (refresh.expire_at > 0).then_some(refresh.expire_at);
            if !refresh.info.is_empty() {
                session.conn_info = refresh.info;
            }
            let push = RefreshPush {
                expires: session.expires_at.is_some(),
                ttl: session
                    .expires_at
                    .map_or(0, |e| (e - unix_now()).max(1) as u32),
            };
            session.send_reply(Reply {
                push: Some(Push {
                    refresh: Some(push),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
    }
}

async fn server_subscribe(session: &mut Session, sub: ServerSubscribe) -> Result<(), Disconnect> {
    if !session.is_connected() || session.subs.contains_key(&sub.channel) {
        return Ok(());
    }
    let config = session.node.config.load();
    let mut request = SubscribeRequest {
        channel: sub.channel.clone(),
        ..Default::default()
    };
    if let Some(since) = &sub.recover_since {
        request.recover = true;
        request.offset = since.offset;
        request.epoch = since.epoch.clone();
    }
    let spec = SubscribeSpec {
        channel: sub.channel.clone(),
        kind: SubscribeKind::Server,
        request,
        chan_info: sub.info,
        data: sub.data,
        expires_at: (sub.expire_at > 0).then_some(sub.expire_at),
        overrides: sub.overrides,
        cache_recover: false,
        stream: None,
    };
    let prepared = match session.prepare_subscription(&config, spec).await {
        Ok(p) => p,
        Err(CommandError::Disconnect(d)) => return Err(d),
        Err(CommandError::Client(e)) => {
            tracing::info!(channel = %sub.channel, error = %e, "server-side subscribe refused");
            return Ok(());
        }
    };
    let r = &prepared.result;
    let push = SubscribePush {
        recoverable: r.recoverable,
        epoch: r.epoch.clone(),
        offset: r.offset,
        positioned: r.positioned,
        data: r.data.clone(),
    };
    let reply = Reply {
        push: Some(Push {
            channel: sub.channel.clone(),
            subscribe: Some(push),
            ..Default::default()
        }),
        ..Default::default()
    };
    session.activate_subscription(prepared, Some(reply)).await
}
