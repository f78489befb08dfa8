//! Redis key and topic names. Every name starts with the tenant's prefix, and all keys of one
//! channel share the hash tag `{channel}` so they live in one Redis Cluster slot. No other code
//! builds a key.

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, channel: &str, suffix: &str) -> String {
        format!("{}{{{}}}:{}", self.prefix, channel, suffix)
    }

    /// History stream (XADD, id = offset).
    pub fn stream(&self, channel: &str) -> String {
        self.key(channel, "s")
    }

    /// Stream meta: `e` epoch, `s` top offset.
    pub fn meta(&self, channel: &str) -> String {
        self.key(channel, "m")
    }

    /// First result of an idempotent publish.
    pub fn idempotency(&self, channel: &str, key: &str) -> String {
        self.key(channel, &format!("i:{key}"))
    }

    /// Presence entries: client id → protobuf ClientInfo.
    pub fn presence(&self, channel: &str) -> String {
        self.key(channel, "p")
    }

    /// Presence expiry: client id → unix seconds.
    pub fn presence_expiry(&self, channel: &str) -> String {
        self.key(channel, "pe")
    }

    /// Presence users of entries: client id → user.
    pub fn presence_user_of(&self, channel: &str) -> String {
        self.key(channel, "pu")
    }

    /// Presence user counts: user → number of its entries (`presence_stats` in O(1)).
    pub fn presence_users(&self, channel: &str) -> String {
        self.key(channel, "pc")
    }

    /// A user's online status (`user_status`): `n:<contributor>` → that process's connections
    /// of the user, `ls` → when the user was last seen (unix ms). Hash tag: the user id, so
    /// it lives on the shard the user id picks.
    pub fn user_status(&self, user: &str) -> String {
        self.key(user, "us")
    }

    /// The `user_status` contributors of one shard: process contributor id → its last
    /// heartbeat (unix ms). Every shard holds one.
    pub fn user_status_nodes(&self) -> String {
        format!("{}us:nodes", self.prefix)
    }

    /// Webhook holders of a channel: `h:<process>` and `h:<process>:<user>` → 1, `c` and
    /// `u:<user>` → how many hold the channel and the user in it, `v` → the last version.
    pub fn webhooks(&self, channel: &str) -> String {
        self.key(channel, "wh")
    }

    /// When a user last connected (webhooks; hash tag: the user id).
    pub fn webhook_connected(&self, user: &str) -> String {
        self.key(user, "whc")
    }

    /// What one process holds for webhooks on this shard (a set of index entries).
    pub fn webhook_index(&self, node: &str) -> String {
        format!("{}wh:n:{node}", self.prefix)
    }

    /// One process's connections for webhooks (first shard): client id → user.
    pub fn webhook_clients(&self, node: &str) -> String {
        format!("{}wh:cl:{node}", self.prefix)
    }

    /// Webhook heartbeats (first shard): process → its last heartbeat (unix ms).
    pub fn webhook_nodes(&self) -> String {
        format!("{}wh:nodes", self.prefix)
    }

    /// Who sweeps a silent process's webhook holdings.
    pub fn webhook_sweep(&self, node: &str) -> String {
        format!("{}wh:sweep:{node}", self.prefix)
    }

    /// The PUB/SUB topic of a channel.
    pub fn topic(&self, channel: &str) -> String {
        format!("{}c:{}", self.prefix, channel)
    }

    /// The tenant's node-to-node control topic.
    pub fn control_topic(&self) -> String {
        format!("{}control", self.prefix)
    }

    /// The channel a topic belongs to (None for foreign topics).
    pub fn channel_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(self.prefix.as_str())?.strip_prefix("c:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_carries_the_prefix_and_the_channel_hash_tag() {
        let k = Keys::new("rotor:prj_a:");
        for key in [
            k.stream("chat:1"),
            k.meta("chat:1"),
            k.idempotency("chat:1", "x"),
            k.presence("chat:1"),
            k.presence_expiry("chat:1"),
            k.user_status("chat:1"),
            k.webhooks("chat:1"),
            k.webhook_connected("chat:1"),
        ] {
            assert!(key.starts_with("rotor:prj_a:{chat:1}:"), "{key}");
        }
        assert!(k.user_status_nodes().starts_with("rotor:prj_a:"));
        for key in [
            k.webhook_index("n1"),
            k.webhook_clients("n1"),
            k.webhook_nodes(),
            k.webhook_sweep("n1"),
        ] {
            assert!(key.starts_with("rotor:prj_a:wh:"), "{key}");
        }
        let topic = k.topic("chat:1");
        assert_eq!(k.channel_of(&topic), Some("chat:1"));
        assert_eq!(Keys::new("rotor:prj_b:").channel_of(&topic), None);
    }
}
