//! The Redis side of the server API's `user_status`, shared by every process of the tenant.
//! Per user one hash on the shard the user id picks: each process (a *contributor*, its node
//! id plus a generation) writes its own connection count of the user there, and `ls` holds
//! when the user was last seen. Per shard a sorted set of contributors' heartbeats tells live
//! counts from those of a process that died without cleaning up (`kill -9`): readers and
//! writers drop a silent contributor's counts and date the user's last-seen time to its last
//! heartbeat. Each step is one Lua call per shard, whatever the number of users.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::{shard, unavailable, within, RedisEngine};
use crate::engine::EngineError;

/// The user status scripts.
pub(super) struct Scripts {
    read: Script,
    write: Script,
    beat: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let with_live = |body: &str| {
            Script::new(&format!(
                "{}\n{body}",
                include_str!("lua/user_status_live.lua")
            ))
        };
        Self {
            read: with_live(include_str!("lua/user_status_read.lua")),
            write: with_live(include_str!("lua/user_status_write.lua")),
            beat: Script::new(include_str!("lua/user_status_beat.lua")),
        }
    }
}

/// One user's status as Redis holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredStatus {
    /// Live connections over every process.
    pub connections: u64,
    /// When the user's last connection ended (unix ms; 0 = not known).
    pub last_seen: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Unix milliseconds now.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RedisEngine {
    /// Indices of `users` grouped by the shard their user id picks.
    fn by_shard<T>(&self, users: &[T], id: impl Fn(&T) -> &str) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.shards.len()];
        for (i, user) in users.iter().enumerate() {
            groups[shard::shard_index(id(user), self.shards.len())].push(i);
        }
        groups
    }

    /// The status of each of `users` (in their order): one Lua call per shard holding any of
    /// them, the shards asked side by side. A contributor silent for longer than `node_ttl`
    /// counts for nothing; a record whose last-seen time it sets is kept for `keep` from
    /// that time.
    pub async fn user_status_read(
        &self,
        users: &[String],
        node_ttl: Duration,
        keep: Duration,
    ) -> Result<Vec<StoredStatus>, EngineError> {
        let now = unix_now_ms();
        let calls = self
            .by_shard(users, |u| u.as_str())
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .map(|(shard, group)| {
                let mut invocation = self
                    .user_status
                    .read
                    .key(self.keys.user_status_nodes(shard));
                for &i in &group {
                    invocation.key(self.keys.user_status(&users[i], shard));
                }
                invocation.arg(now).arg(millis(node_ttl)).arg(millis(keep));
                let mut conn = self.shards[shard].conn.clone();
                async move {
                    let flat: Vec<u64> = within(invocation.invoke_async(&mut conn)).await?;
                    if flat.len() != group.len() * 2 {
                        return Err(unavailable("unexpected user status reply"));
                    }
                    Ok::<_, EngineError>((group, flat))
                }
            });
        let mut out = vec![StoredStatus::default(); users.len()];
        for result in futures_util::future::join_all(calls).await {
            let (group, flat) = result?;
            for (i, pair) in group.into_iter().zip(flat.chunks(2)) {
                out[i] = StoredStatus {
                    connections: pair[0],
                    last_seen: pair[1],
                };
            }
        }
        Ok(out)
    }

    /// Sets `contributor`'s connection count of each user (0 = none left here), keeping each
    /// record for `keep`: one Lua call per shard, side by side.
    pub async fn user_status_write(
        &self,
        contributor: &str,
        counts: &[(Arc<str>, usize)],
        node_ttl: Duration,
        keep: Duration,
    ) -> Result<(), EngineError> {
        let now = unix_now_ms();
        let calls = self
            .by_shard(counts, |(u, _)| u)
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .map(|(shard, group)| {
                let mut invocation = self
                    .user_status
                    .write
                    .key(self.keys.user_status_nodes(shard));
                for &i in &group {
                    invocation.key(self.keys.user_status(&counts[i].0, shard));
                }
                invocation
                    .arg(contributor)
                    .arg(now)
                    .arg(millis(node_ttl))
                    .arg(millis(keep));
                for &i in &group {
                    invocation.arg(counts[i].1);
                }
                let mut conn = self.shards[shard].conn.clone();
                async move { within(invocation.invoke_async::<()>(&mut conn)).await }
            });
        for result in futures_util::future::join_all(calls).await {
            result?;
        }
        Ok(())
    }

    /// `contributor`'s heartbeat on every shard, contributors silent for longer than
    /// `retention` dropped. `true` when some shard did not know it as live (its counts there
    /// may be gone: write them all again).
    pub async fn user_status_beat(
        &self,
        contributor: &str,
        node_ttl: Duration,
        retention: Duration,
    ) -> Result<bool, EngineError> {
        let now = unix_now_ms();
        let calls = self.shards.iter().enumerate().map(|(i, shard)| {
            let mut invocation = self.user_status.beat.key(self.keys.user_status_nodes(i));
            invocation
                .arg(contributor)
                .arg(now)
                .arg(millis(node_ttl))
                .arg(millis(retention));
            let mut conn = shard.conn.clone();
            async move { within(invocation.invoke_async::<i64>(&mut conn)).await }
        });
        let mut stale = false;
        for result in futures_util::future::join_all(calls).await {
            stale |= result? != 0;
        }
        Ok(stale)
    }
}
