//! `user_status.*`: the server API's `user_status` method (is a user online, with how many
//! connections, and when was it last seen), Rotor's own option, off unless enabled. Its
//! validation and the bounds a hosted project's settings may not pass live here too, so the
//! data plane and the control plane apply the same numbers.

use serde::{Deserialize, Serialize};

use crate::duration::ConfigDuration;
use crate::load::ConfigError;

/// Shortest `user_status.last_seen_ttl` accepted.
pub const MIN_LAST_SEEN_TTL_SECS: u64 = 1;
/// Longest `user_status.last_seen_ttl` accepted from a standalone config (30 days).
pub const MAX_LAST_SEEN_TTL_SECS: u64 = 30 * 24 * 3600;
/// Longest `user_status.last_seen_ttl` a hosted project may set (7 days): with the Redis
/// engine a last-seen record lives in Redis that long.
pub const HOSTED_MAX_LAST_SEEN_TTL_SECS: u64 = 7 * 24 * 3600;
/// Shortest `user_status.last_seen_ttl` a hosted project may set (one minute).
pub const HOSTED_MIN_LAST_SEEN_TTL_SECS: u64 = 60;
/// Largest `user_status.max_last_seen_bytes` accepted (1 GiB).
pub const MAX_LAST_SEEN_BYTES: u64 = 1 << 30;
/// What one last-seen record costs besides its user id's bytes (map and queue entries).
pub const LAST_SEEN_RECORD_OVERHEAD: u64 = 64;

/// `user_status.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserStatusSection {
    /// Whether `user_status` answers (error 108, not available, otherwise) and connections
    /// are tracked for it.
    pub enabled: bool,
    /// How long a user's last-seen time is kept after its last connection ended (default
    /// 24 h); after that the user reads as never seen (`last_seen: 0`).
    pub last_seen_ttl: ConfigDuration,
    /// Memory engine: bytes the process's last-seen records may hold, each counting its user
    /// id's length plus [`LAST_SEEN_RECORD_OVERHEAD`] (default 16 MiB, about 170 000 records
    /// of 32-byte ids); past it the oldest records go first. The Redis engine keeps its records
    /// in Redis, bounded by `last_seen_ttl`.
    pub max_last_seen_bytes: u64,
}

impl Default for UserStatusSection {
    fn default() -> Self {
        Self {
            enabled: false,
            last_seen_ttl: ConfigDuration::from_secs(24 * 3600),
            max_last_seen_bytes: 16 << 20,
        }
    }
}

impl UserStatusSection {
    /// Whether nothing differs from the defaults (left out of a rendered config).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The rules the types cannot say, with the path of the bad field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let ttl = self.last_seen_ttl.get();
        if ttl.as_secs() < MIN_LAST_SEEN_TTL_SECS || ttl.as_secs() > MAX_LAST_SEEN_TTL_SECS {
            return Err(ConfigError::invalid(
                "user_status.last_seen_ttl",
                format!(
                    "must be between {MIN_LAST_SEEN_TTL_SECS}s and {}h",
                    MAX_LAST_SEEN_TTL_SECS / 3600
                ),
            ));
        }
        if self.max_last_seen_bytes < 1024 || self.max_last_seen_bytes > MAX_LAST_SEEN_BYTES {
            return Err(ConfigError::invalid(
                "user_status.max_last_seen_bytes",
                format!("must be between 1024 and {MAX_LAST_SEEN_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::refused_value as refused;
    use crate::TenantConfig;
    use serde_json::json;

    #[test]
    fn user_status_is_off_by_default_and_keeps_a_day_of_last_seen() {
        let c = TenantConfig::from_value(json!({})).unwrap().config;
        assert!(!c.user_status.enabled);
        assert_eq!(c.user_status.last_seen_ttl.get().as_secs(), 86_400);
        let c = TenantConfig::from_value(
            json!({"user_status": {"enabled": true, "last_seen_ttl": "10m"}}),
        )
        .unwrap()
        .config;
        assert!(c.user_status.enabled);
        assert_eq!(c.user_status.last_seen_ttl.get().as_secs(), 600);
    }

    #[test]
    fn bad_user_status_values_are_refused_naming_their_path() {
        let e = refused(json!({"user_status": {"last_seen_ttl": "0s"}}));
        assert!(e.contains("user_status.last_seen_ttl"), "{e}");
        let e = refused(json!({"user_status": {"last_seen_ttl": "9000h"}}));
        assert!(e.contains("user_status.last_seen_ttl"), "{e}");
        let e = refused(json!({"user_status": {"max_last_seen_bytes": 10}}));
        assert!(e.contains("user_status.max_last_seen_bytes"), "{e}");
        let e = refused(json!({"user_status": {"enabled": "yes"}}));
        assert!(e.contains("user_status.enabled"), "{e}");
        let e = refused(json!({"user_status": {"bogus": 1}}));
        assert!(e.contains("user_status"), "{e}");
    }
}
