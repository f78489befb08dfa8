//! Redis key and topic names. Every name starts with the tenant's prefix, and all keys of one
//! channel share the hash tag `{channel}` so they live in one Redis Cluster slot. No other code
//! builds a key.
//!
//! On a Redis Cluster ([`Keys::clustered`]) a script's keys must share one slot, and so must a
//! script's SPUBLISH topic: a channel's topic carries the channel's hash tag, the control topic
//! one of its own, and the keys a script reads together with a per-process or per-shard key
//! (user status, webhook holdings) are spread over [`CLUSTER_BUCKETS`] buckets, each bucket one
//! hash tag holding both. Elsewhere the bucket is the shard and names nothing.

/// How many buckets user status and webhook keys are spread over on a Redis Cluster.
pub const CLUSTER_BUCKETS: usize = 16;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            cluster: false,
        }
    }

    /// Names for a Redis Cluster.
    pub fn clustered(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            cluster: true,
        }
    }

    /// Whether these are names for a Redis Cluster (sharded PUB/SUB).
    pub fn is_clustered(&self) -> bool {
        self.cluster
    }

    /// A key of bucket `bucket` of `kind` (cluster only).
    fn bucket_key(&self, kind: &str, bucket: usize, rest: &str) -> String {
        format!("{}{{{kind}:{bucket}}}:{rest}", self.prefix)
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
    /// it lives on the shard the user id picks (on a cluster: the user's bucket `bucket`).
    pub fn user_status(&self, user: &str, bucket: usize) -> String {
        if self.cluster {
            return self.bucket_key("us", bucket, &format!("u:{user}"));
        }
        self.key(user, "us")
    }

    /// The `user_status` contributors of one shard (bucket): process contributor id → its
    /// last heartbeat (unix ms). Every shard holds one.
    pub fn user_status_nodes(&self, bucket: usize) -> String {
        if self.cluster {
            return self.bucket_key("us", bucket, "nodes");
        }
        format!("{}us:nodes", self.prefix)
    }

    /// Webhook holders of a channel: `h:<process>` and `h:<process>:<user>` → 1, `c` and
    /// `u:<user>` → how many hold the channel and the user in it, `v` → the last version.
    /// On a cluster it lives in the channel's bucket `bucket`, with the holders' indexes.
    pub fn webhooks(&self, channel: &str, bucket: usize) -> String {
        if self.cluster {
            return self.bucket_key("wh", bucket, &format!("c:{channel}"));
        }
        self.key(channel, "wh")
    }

    /// When a user last connected (webhooks; hash tag: the user id).
    pub fn webhook_connected(&self, user: &str) -> String {
        self.key(user, "whc")
    }

    /// What one process holds for webhooks on this shard (bucket) (a set of index entries).
    pub fn webhook_index(&self, node: &str, bucket: usize) -> String {
        if self.cluster {
            return self.bucket_key("wh", bucket, &format!("n:{node}"));
        }
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

    /// The PUB/SUB topic of a channel (on a cluster: in the slot of the channel's keys).
    pub fn topic(&self, channel: &str) -> String {
        if self.cluster {
            return self.key(channel, "t");
        }
        format!("{}c:{}", self.prefix, channel)
    }

    /// The tenant's node-to-node control topic.
    pub fn control_topic(&self) -> String {
        if self.cluster {
            return format!("{}{{control}}", self.prefix);
        }
        format!("{}control", self.prefix)
    }

    /// The channel a topic belongs to (None for foreign topics).
    pub fn channel_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(self.prefix.as_str())?;
        if self.cluster {
            return rest.strip_prefix('{')?.strip_suffix("}:t");
        }
        rest.strip_prefix("c:")
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
            k.user_status("chat:1", 3),
            k.webhooks("chat:1", 3),
            k.webhook_connected("chat:1"),
        ] {
            assert!(key.starts_with("rotor:prj_a:{chat:1}:"), "{key}");
        }
        assert!(k.user_status_nodes(0).starts_with("rotor:prj_a:"));
        for key in [
            k.webhook_index("n1", 0),
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

    /// The slot of a key as Redis Cluster computes it: CRC16 (XMODEM) of the hash tag, or of
    /// the whole key without one, modulo 16384.
    fn slot(key: &str) -> u16 {
        let bytes = key.as_bytes();
        let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
            let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &bytes[open + 1..open + 1 + close])
        });
        let mut crc: u16 = 0;
        for b in tagged.unwrap_or(bytes) {
            crc ^= u16::from(*b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn on_a_cluster_every_script_reads_keys_of_one_slot() {
        assert_eq!(
            slot("123456789"),
            12739,
            "the CRC16 of Redis Cluster's spec"
        );
        let k = Keys::clustered("rotor:prj_a:");
        for channel in ["chat:1", "news", "a}b", "{x}"] {
            // publish.lua and history.lua (with the SPUBLISH topic), the presence scripts.
            let one = [
                k.stream(channel),
                k.meta(channel),
                k.idempotency(channel, "key"),
                k.topic(channel),
                k.presence(channel),
                k.presence_expiry(channel),
                k.presence_user_of(channel),
                k.presence_users(channel),
            ];
            assert!(one.iter().all(|key| slot(key) == slot(&one[0])), "{one:?}");
            assert_eq!(k.channel_of(&k.topic(channel)), Some(channel));
        }
        for bucket in 0..CLUSTER_BUCKETS {
            // The user status scripts and webhooks_hold.lua.
            let nodes = slot(&k.user_status_nodes(bucket));
            assert_eq!(slot(&k.user_status("alice", bucket)), nodes);
            assert_eq!(slot(&k.user_status("bob", bucket)), nodes);
            let index = slot(&k.webhook_index("n1", bucket));
            assert_eq!(slot(&k.webhooks("chat:1", bucket)), index);
        }
        assert_ne!(
            slot(&k.user_status_nodes(0)),
            slot(&k.user_status_nodes(1)),
            "buckets spread over slots"
        );
        assert_eq!(k.channel_of(&k.control_topic()), None);
    }
}
