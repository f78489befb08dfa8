//! The Redis side of webhooks (see `crate::webhooks::ledger`): one hash per channel marks
//! which processes hold the channel and each user in it, so `channel_occupied` and
//! `member_added` are decided once project-wide, with a per-channel version; a per-user key
//! records the user's latest connection, so a process holding a disconnect can tell a
//! reconnection on another process. For processes that die without cleaning up (`kill -9`),
//! each process also keeps, per shard, an index of what it holds and, on the first shard, its
//! connections and a heartbeat: a survivor that finds a heartbeat older than the presence TTL
//! releases what the dead process held and reports its connections.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{within, RedisEngine};
use crate::engine::EngineError;

static HOLD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/webhooks_hold.lua")));

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// How a process's index names a holding: the channel's length, `:`, the channel, the user
/// (empty for the channel's occupancy). Unambiguous whatever the names hold.
fn entry(channel: &str, user: &str) -> String {
    format!("{}:{channel}{user}", channel.len())
}

fn parse_entry(entry: &str) -> Option<(String, String)> {
    let (len, rest) = entry.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if rest.len() < len || !rest.is_char_boundary(len) {
        return None;
    }
    Some((rest[..len].to_owned(), rest[len..].to_owned()))
}

impl RedisEngine {
    /// Marks (`acquire`) or unmarks process `node` as a holder of `channel` (`user` empty) or
    /// of `user` in it; the channel's new version when the count of holders crossed zero,
    /// else 0. A channel hash holding nothing keeps its version for `idle_ttl`.
    pub async fn webhook_hold(
        &self,
        channel: &str,
        user: &str,
        node: &str,
        acquire: bool,
        idle_ttl: Duration,
    ) -> Result<u64, EngineError> {
        let (holder, counter) = if user.is_empty() {
            (node.to_owned(), "c".to_owned())
        } else {
            (format!("{node}:{user}"), format!("u:{user}"))
        };
        let bucket = self.shard_of(channel);
        let mut invocation = HOLD.key(self.keys.webhooks(channel, bucket));
        invocation
            .key(self.keys.webhook_index(node, bucket))
            .arg(if acquire { "+" } else { "-" })
            .arg(holder)
            .arg(counter)
            .arg(millis(idle_ttl))
            .arg(entry(channel, user));
        let mut conn = self.conn(channel);
        within(invocation.invoke_async::<u64>(&mut conn)).await
    }

    /// Records that `user` connected at `time_ms` on process `node`, kept for `keep`.
    pub async fn webhook_connected(
        &self,
        user: &str,
        node: &str,
        time_ms: u64,
        keep: Duration,
    ) -> Result<(), EngineError> {
        let mut conn = self.conn(user);
        within(
            redis::cmd("SET")
                .arg(self.keys.webhook_connected(user))
                .arg(format!("{time_ms}:{node}"))
                .arg("PX")
                .arg(millis(keep))
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// When and on which process `user` last connected (`(0, "")` when not recorded).
    pub async fn webhook_connected_at(&self, user: &str) -> Result<(u64, String), EngineError> {
        let mut conn = self.conn(user);
        let at: Option<String> = within(
            redis::cmd("GET")
                .arg(self.keys.webhook_connected(user))
                .query_async(&mut conn),
        )
        .await?;
        Ok(at
            .as_deref()
            .and_then(|v| v.split_once(':'))
            .and_then(|(ms, node)| Some((ms.parse().ok()?, node.to_owned())))
            .unwrap_or_default())
    }

    /// Adds (`Some(user)`) or removes connection `client` of process `node` (first shard).
    pub async fn webhook_client(
        &self,
        node: &str,
        client: &str,
        user: Option<&str>,
    ) -> Result<(), EngineError> {
        let mut conn = self.shards[0].conn.clone();
        let mut cmd = redis::cmd(if user.is_some() { "HSET" } else { "HDEL" });
        cmd.arg(self.keys.webhook_clients(node)).arg(client);
        if let Some(user) = user {
            cmd.arg(user);
        }
        within(cmd.query_async::<()>(&mut conn)).await
    }

    /// Process `node`'s heartbeat at `now_ms` (first shard); `true` when it was not known
    /// (new, or swept as dead: what it holds must be marked again).
    pub async fn webhook_beat(&self, node: &str, now_ms: u64) -> Result<bool, EngineError> {
        let mut conn = self.shards[0].conn.clone();
        let added: i64 = within(
            redis::cmd("ZADD")
                .arg(self.keys.webhook_nodes())
                .arg(now_ms)
                .arg(node)
                .query_async(&mut conn),
        )
        .await?;
        Ok(added == 1)
    }

    /// Processes whose last heartbeat is before `before_ms`, with that heartbeat.
    pub async fn webhook_silent_nodes(
        &self,
        before_ms: u64,
    ) -> Result<Vec<(String, u64)>, EngineError> {
        let mut conn = self.shards[0].conn.clone();
        within(
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.keys.webhook_nodes())
                .arg("-inf")
                .arg(format!("({before_ms}"))
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(16)
                .query_async(&mut conn),
        )
        .await
    }

    /// Takes the sweep of silent process `node` for `sweeper` for `ttl`: `false` when
    /// another process has it.
    pub async fn webhook_claim(
        &self,
        node: &str,
        sweeper: &str,
        ttl: Duration,
    ) -> Result<bool, EngineError> {
        let mut conn = self.shards[0].conn.clone();
        let set: Option<String> = within(
            redis::cmd("SET")
                .arg(self.keys.webhook_sweep(node))
                .arg(sweeper)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query_async(&mut conn),
        )
        .await?;
        Ok(set.is_some())
    }

    /// What process `node` held, on every shard: (channel, user) pairs, user empty for a
    /// channel's occupancy.
    pub async fn webhook_holdings(&self, node: &str) -> Result<Vec<(String, String)>, EngineError> {
        let mut out = Vec::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let mut conn = shard.conn.clone();
            let entries: Vec<String> = within(
                redis::cmd("SMEMBERS")
                    .arg(self.keys.webhook_index(node, i))
                    .query_async(&mut conn),
            )
            .await?;
            out.extend(entries.iter().filter_map(|e| parse_entry(e)));
        }
        Ok(out)
    }

    /// Process `node`'s connections: (client id, user).
    pub async fn webhook_clients(&self, node: &str) -> Result<Vec<(String, String)>, EngineError> {
        let mut conn = self.shards[0].conn.clone();
        within(
            redis::cmd("HGETALL")
                .arg(self.keys.webhook_clients(node))
                .query_async(&mut conn),
        )
        .await
    }

    /// Forgets process `node`: its heartbeat, connections and (emptied) indexes. One key a
    /// command, as the keys may live in different cluster slots.
    pub async fn webhook_forget(&self, node: &str) -> Result<(), EngineError> {
        for (i, shard) in self.shards.iter().enumerate() {
            let mut conn = shard.conn.clone();
            let del = |key: String| redis::cmd("DEL").arg(key).to_owned();
            let mut cmds = vec![del(self.keys.webhook_index(node, i))];
            if i == 0 {
                cmds.push(del(self.keys.webhook_clients(node)));
                cmds.push(
                    redis::cmd("ZREM")
                        .arg(self.keys.webhook_nodes())
                        .arg(node)
                        .to_owned(),
                );
            }
            for cmd in cmds {
                within(cmd.query_async::<()>(&mut conn)).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_keep_channel_and_user_apart_whatever_they_hold() {
        for (channel, user) in [
            ("chat:1", ""),
            ("chat:1", "u1"),
            ("a:b", ":c"),
            ("", "x"),
            ("ü:1", "é"),
        ] {
            assert_eq!(
                parse_entry(&entry(channel, user)),
                Some((channel.to_owned(), user.to_owned()))
            );
        }
        assert_eq!(parse_entry("9:short"), None);
        assert_eq!(parse_entry("nonsense"), None);
    }
}
