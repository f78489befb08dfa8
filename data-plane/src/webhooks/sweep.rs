//! The Redis engine's answer to a process killed without cleaning up (`kill -9`, a lost
//! host): every process beats a heartbeat every third of `engine.redis.presence_ttl`, and a
//! survivor that finds a heartbeat older than the TTL takes the sweep of that process (one
//! sweeper, by a lock with the TTL's lifetime), releases everything it held — sending
//! `member_removed` and `channel_vacated` where nobody else holds the user or the channel —
//! and reports each of its connections as `client_disconnected` (code 3000, reason
//! `process lost`, time: the dead process's last heartbeat) unless the user's latest
//! connection is on another process and younger than that heartbeat. Clients that reconnected to a survivor in the meantime already hold their channels
//! again, so they cost nothing: the TTL is their grace.

use std::sync::{Arc, Weak};
use std::time::Duration;

use rotor_tenant_config::WebhooksSection;
use tokio_util::sync::CancellationToken;

use super::event::unix_ms;
use super::ledger::IDLE_TTL;
use super::tracker::{Disconnected, Key};
use super::{disconnect_event, key_event, Webhooks, PROCESS_LOST};
use crate::engine::redis::RedisEngine;
use crate::engine::EngineError;
use crate::node_view::NodeView;

/// Beats and sweeps until the node stops.
pub(super) async fn run(
    node: Weak<dyn NodeView>,
    hooks: Arc<Webhooks>,
    engine: Arc<RedisEngine>,
    me: String,
    ttl: Duration,
    stop: CancellationToken,
) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Some(node) = node.upgrade() else { break };
        let config = node.config();
        let w = &config.tenant.webhooks;
        if !w.enabled {
            continue;
        }
        match engine.webhook_beat(&me, unix_ms()).await {
            Ok(true) => hooks.remark(&*node),
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, "webhook heartbeat not written");
                continue;
            }
        }
        if let Err(e) = sweep(&*node, &hooks, &engine, &me, ttl, w).await {
            tracing::warn!(error = %e, "webhook sweep of silent processes failed");
        }
    }
}

/// Sweeps every process silent for longer than `ttl` that no other process is sweeping.
async fn sweep(
    node: &dyn NodeView,
    hooks: &Webhooks,
    engine: &RedisEngine,
    me: &str,
    ttl: Duration,
    w: &WebhooksSection,
) -> Result<(), EngineError> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let silent = engine
        .webhook_silent_nodes(unix_ms().saturating_sub(ttl_ms))
        .await?;
    for (dead, last_beat) in silent {
        if dead == me || !engine.webhook_claim(&dead, me, ttl).await? {
            continue;
        }
        let mut events = Vec::new();
        let mut holdings = engine.webhook_holdings(&dead).await?;
        // Members before their channel, so `member_removed` precedes `channel_vacated`.
        holdings.sort_by(|a, b| (&a.0, a.1.is_empty()).cmp(&(&b.0, b.1.is_empty())));
        for (channel, user) in holdings {
            let version = engine
                .webhook_hold(&channel, &user, &dead, false, IDLE_TTL)
                .await?;
            if version > 0 {
                let key = if user.is_empty() {
                    Key::channel(&channel)
                } else {
                    Key::member(&channel, &user)
                };
                events.push(key_event(&key, false, version, last_beat));
            }
        }
        for (client, user) in engine.webhook_clients(&dead).await? {
            if !user.is_empty() {
                // Connected again since, on a live process: a reconnection.
                let (at, on) = engine.webhook_connected_at(&user).await?;
                if on != dead && at > last_beat {
                    continue;
                }
            }
            let d = Disconnected {
                client: client.into(),
                user: user.into(),
                code: crate::protocol::Disconnect::CONNECTION_CLOSED.code,
                reason: PROCESS_LOST.to_owned(),
                time_ms: last_beat,
            };
            events.push(disconnect_event(d, hooks.versions.next()));
        }
        engine.webhook_forget(&dead).await?;
        tracing::info!(process = %dead, events = events.len(), "swept the webhook holdings of a silent process");
        node.metrics().webhook_processes_swept.inc();
        // Queued together, so whatever is queued later is delivered after all of them.
        for event in events {
            hooks.emit(node, w, event);
        }
    }
    Ok(())
}
