//! The Redis side of webhooks (see `crate::webhooks::ledger`): one hash per channel marks
//! which processes hold the channel and each user in it, so `channel_occupied` and
//! `member_added` are decided once project-wide, with a per-channel version; and a per-user
//! key records the user's latest connection, so a process holding a disconnect can tell a
//! reconnection on another process.

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

impl RedisEngine {
    /// Marks (`acquire`) or unmarks `holder` in `channel`'s webhook hash, counted in
    /// `counter`; the channel's new version when the count crossed zero, else 0.
    pub async fn webhook_hold(
        &self,
        channel: &str,
        acquire: bool,
        holder: &str,
        counter: &str,
        idle_ttl: Duration,
    ) -> Result<u64, EngineError> {
        let mut invocation = HOLD.key(self.keys.webhooks(channel));
        invocation
            .arg(if acquire { "+" } else { "-" })
            .arg(holder)
            .arg(counter)
            .arg(millis(idle_ttl));
        let mut conn = self.conn(channel);
        within(invocation.invoke_async::<u64>(&mut conn)).await
    }

    /// Records that `user` connected at `time_ms`, kept for `keep`.
    pub async fn webhook_connected(
        &self,
        user: &str,
        time_ms: u64,
        keep: Duration,
    ) -> Result<(), EngineError> {
        let mut conn = self.conn(user);
        within(
            redis::cmd("SET")
                .arg(self.keys.webhook_connected(user))
                .arg(time_ms)
                .arg("PX")
                .arg(millis(keep))
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// When `user` last connected (unix ms; 0 when not recorded).
    pub async fn webhook_connected_at(&self, user: &str) -> Result<u64, EngineError> {
        let mut conn = self.conn(user);
        let at: Option<u64> = within(
            redis::cmd("GET")
                .arg(self.keys.webhook_connected(user))
                .query_async(&mut conn),
        )
        .await?;
        Ok(at.unwrap_or(0))
    }
}
