//! Presence on the Redis engine, shared by every process of the tenant: per channel a hash of
//! entries (client id → protobuf `ClientInfo`), a sorted set of their expiry times, and, so
//! that `presence_stats` answers in O(1) for channels of any size (as Centrifugo's presence
//! user mapping does), a hash of each entry's user and a hash of each user's entry count. Lua
//! scripts keep the four in step atomically; entries whose connection stopped refreshing them
//! (a killed process) are dropped, counts included, whenever a channel's presence is read.

use std::collections::HashMap;

use async_trait::async_trait;
use prost::Message as _;
use redis::Script;

use super::{unix_now, within, RedisEngine};
use crate::engine::{EngineError, Presence};
use crate::protocol::ClientInfo;

/// The presence scripts, each starting with the shared expiry step.
pub(super) struct Scripts {
    add: Script,
    remove: Script,
    read: Script,
    stats: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let with_expiry = |body: &str| {
            Script::new(&format!(
                "{}\n{body}",
                include_str!("lua/presence_expire.lua")
            ))
        };
        Self {
            add: Script::new(include_str!("lua/presence_add.lua")),
            remove: Script::new(include_str!("lua/presence_remove.lua")),
            read: with_expiry(include_str!("lua/presence.lua")),
            stats: with_expiry(include_str!("lua/presence_stats.lua")),
        }
    }
}

impl RedisEngine {
    /// `script` with a channel's four presence keys, in the order the scripts expect.
    fn presence_keys<'a>(&self, script: &'a Script, channel: &str) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.key(self.keys.presence(channel));
        invocation
            .key(self.keys.presence_expiry(channel))
            .key(self.keys.presence_user_of(channel))
            .key(self.keys.presence_users(channel));
        invocation
    }
}

#[async_trait]
impl Presence for RedisEngine {
    async fn add_presence(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        let ttl = self.presence_ttl.as_secs().max(1);
        let mut conn = self.conn(channel);
        let mut invocation = self.presence_keys(&self.presence.add, channel);
        invocation
            .arg(&info.client)
            .arg(info.encode_to_vec())
            .arg(unix_now() + ttl)
            .arg(ttl)
            .arg(&info.user);
        within(invocation.invoke_async::<()>(&mut conn)).await
    }

    async fn remove_presence(
        &self,
        channel: &str,
        client_id: &str,
        _user: &str,
    ) -> Result<(), EngineError> {
        let mut conn = self.conn(channel);
        let mut invocation = self.presence_keys(&self.presence.remove, channel);
        invocation.arg(client_id);
        within(invocation.invoke_async::<()>(&mut conn)).await
    }

    async fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, EngineError> {
        let mut conn = self.conn(channel);
        let mut invocation = self.presence_keys(&self.presence.read, channel);
        invocation.arg(unix_now());
        let flat: Vec<Vec<u8>> = within(invocation.invoke_async(&mut conn)).await?;
        let mut out = HashMap::with_capacity(flat.len() / 2);
        for kv in flat.chunks(2) {
            if let [client, info] = kv {
                if let Ok(info) = ClientInfo::decode(info.as_slice()) {
                    out.insert(String::from_utf8_lossy(client).into_owned(), info);
                }
            }
        }
        Ok(out)
    }

    async fn presence_stats(&self, channel: &str) -> Result<(u32, u32), EngineError> {
        let mut conn = self.conn(channel);
        let mut invocation = self.presence_keys(&self.presence.stats, channel);
        invocation.arg(unix_now());
        let (clients, users): (u32, u32) = within(invocation.invoke_async(&mut conn)).await?;
        Ok((clients, users))
    }
}
