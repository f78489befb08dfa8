//! `rotor-bench-presence`: what `presence_stats` costs on a channel with many subscribers, on
//! both engines, side by side with reading the whole presence and counting (what answering it
//! cost before per-user counts were kept). It fills one channel with `entries` presence
//! entries of `users` distinct users straight through the engine (no sockets), then times
//! `presence_stats` and the full read, and what adding an entry costs with the counts kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use rotor_data_plane::engine::memory::MemoryPresence;
use rotor_data_plane::engine::redis::RedisEngine;
use rotor_data_plane::engine::{BrokerEvents, Presence};
use rotor_data_plane::protocol::ClientInfo;
use rotor_data_plane::publication::PubMsg;
use serde::{Deserialize, Serialize};

/// Options of the presence scenario.
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// Presence entries (subscribers) in the channel.
    #[arg(long, default_value_t = 100_000)]
    pub entries: usize,
    /// Distinct users among them.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Redis for the Redis engine's run.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Where the JSON result goes.
    #[arg(long, default_value = "bench/results/presence.json")]
    pub out: std::path::PathBuf,
}

/// One engine's numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PresenceRun {
    pub engine: String,
    /// `presence_stats` with the kept counts, microseconds per call.
    pub stats_us: f64,
    /// The whole presence read and counted, microseconds per call.
    pub full_read_us: f64,
    /// Adding one entry (with its user count), microseconds.
    pub add_us: f64,
}

/// The scenario's result file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PresenceResult {
    pub entries: usize,
    pub users: usize,
    pub runs: Vec<PresenceRun>,
}

struct Ignore;

impl BrokerEvents for Ignore {
    fn publication(&self, _: &str, _: Arc<PubMsg>) {}
    fn join(&self, _: &str, _: ClientInfo) {}
    fn leave(&self, _: &str, _: ClientInfo) {}
}

/// Mean time of `f` over `n` calls.
async fn time<F, Fut>(n: u32, mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    for _ in 0..n {
        f().await?;
    }
    Ok(started.elapsed() / n.max(1))
}

async fn measure(
    engine: &str,
    p: &dyn Presence,
    channel: &str,
    a: &PresenceArgs,
) -> anyhow::Result<PresenceRun> {
    let started = Instant::now();
    for i in 0..a.entries {
        let info = ClientInfo {
            user: format!("user-{}", i % a.users.max(1)),
            client: format!("client-{i:08}"),
            ..Default::default()
        };
        p.add_presence(channel, info).await?;
    }
    let add = started.elapsed() / a.entries.max(1) as u32;
    let expected = (a.entries as u32, a.users.min(a.entries) as u32);
    if p.presence_stats(channel).await? != expected {
        bail!("{engine}: presence_stats is not {expected:?}");
    }
    let stats = time(200, || async {
        p.presence_stats(channel).await?;
        Ok(())
    })
    .await?;
    let full = time(5, || async {
        let entries = p.presence(channel).await?;
        let users: std::collections::HashSet<&str> =
            entries.values().map(|i| i.user.as_str()).collect();
        if (entries.len() as u32, users.len() as u32) != expected {
            bail!("{engine}: the full read counts differently");
        }
        Ok(())
    })
    .await?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Ok(PresenceRun {
        engine: engine.into(),
        stats_us: us(stats),
        full_read_us: us(full),
        add_us: us(add),
    })
}

/// Runs both engines and writes the result.
pub async fn run(a: PresenceArgs) -> anyhow::Result<PresenceResult> {
    let mut runs = vec![measure("memory", &MemoryPresence::default(), "bench:p", &a).await?];
    let stop = tokio_util::sync::CancellationToken::new();
    let prefix = format!("rotor-bench-presence:{}:", crate::payload::now_micros());
    let redis = RedisEngine::connect_standalone(
        std::slice::from_ref(&a.redis_url),
        &rotor_tenant_config::RedisTls::default(),
        &prefix,
        Duration::from_secs(300),
        Arc::new(Ignore),
        stop.clone(),
    )
    .await
    .context("redis")?;
    let measured = measure("redis", &redis, "bench:p", &a).await;
    // Leave nothing behind in the shared Redis.
    for i in 0..a.entries {
        let _ = redis
            .remove_presence("bench:p", &format!("client-{i:08}"), "")
            .await;
    }
    stop.cancel();
    runs.push(measured?);
    for r in &runs {
        eprintln!(
            "presence bench: {}: presence_stats {:.1} µs, full read {:.0} µs, add {:.1} µs",
            r.engine, r.stats_us, r.full_read_us, r.add_us
        );
    }
    let result = PresenceResult {
        entries: a.entries,
        users: a.users,
        runs,
    };
    crate::scenario::write_result(&a.out, &result)?;
    Ok(result)
}
