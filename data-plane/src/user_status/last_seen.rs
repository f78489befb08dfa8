//! The memory engine's last-seen records: user → when its last connection on this process
//! ended (unix ms), each kept for the configured TTL and all of them held under a byte bound
//! (a record costs its user id's bytes plus [`LAST_SEEN_RECORD_OVERHEAD`]); past the bound the
//! oldest records go first, so a flood of distinct users cannot grow memory without limit.
//! Every operation is O(1) amortised: records sit in a map and, oldest first, in a queue from
//! which superseded entries are dropped lazily.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rotor_tenant_config::LAST_SEEN_RECORD_OVERHEAD;

/// Last-seen records under a byte bound.
#[derive(Debug, Default)]
pub struct LastSeen {
    records: HashMap<Arc<str>, u64>,
    /// (user, time) in the order recorded; an entry whose time differs from the map's is
    /// superseded and skipped.
    order: VecDeque<(Arc<str>, u64)>,
    /// Bytes the records count for.
    bytes: u64,
}

fn cost(user: &str) -> u64 {
    user.len() as u64 + LAST_SEEN_RECORD_OVERHEAD
}

impl LastSeen {
    /// Records that `user` was last seen at `now` (unix ms), dropping expired records (older
    /// than `ttl_ms`) and then the oldest ones while the records pass `max_bytes`. A user id
    /// too long to fit at all is not recorded.
    pub fn record(&mut self, user: &str, now: u64, ttl_ms: u64, max_bytes: u64) {
        if cost(user) > max_bytes {
            return;
        }
        let user: Arc<str> = match self.records.get_key_value(user) {
            Some((key, _)) => key.clone(),
            None => {
                self.bytes += cost(user);
                Arc::from(user)
            }
        };
        self.records.insert(user.clone(), now);
        self.order.push_back((user, now));
        self.trim(now, ttl_ms, max_bytes);
        // Superseded queue entries never outnumber the records by much.
        if self.order.len() > 2 * self.records.len() + 16 {
            let records = &self.records;
            self.order
                .retain(|(user, at)| records.get(user).is_some_and(|t| t == at));
        }
    }

    /// When `user` was last seen (unix ms), or `None` when not recorded or expired.
    pub fn get(&self, user: &str, now: u64, ttl_ms: u64) -> Option<u64> {
        self.records
            .get(user)
            .copied()
            .filter(|at| now < at.saturating_add(ttl_ms))
    }

    /// Drops every record (user status was turned off).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// How many users have a record.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no user has a record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes the records count for against the bound.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn trim(&mut self, now: u64, ttl_ms: u64, max_bytes: u64) {
        while let Some((user, at)) = self.order.front() {
            let expired = now >= at.saturating_add(ttl_ms);
            let current = self.records.get(user) == Some(at);
            if current && !expired && self.bytes <= max_bytes {
                break;
            }
            if current {
                self.bytes -= cost(user);
                self.records.remove(user);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn a_record_is_read_back_until_it_expires() {
        let mut seen = LastSeen::default();
        seen.record("alice", 1_000, 500, 1 << 20);
        assert_eq!(seen.get("alice", 1_200, 500), Some(1_000));
        assert_eq!(seen.get("alice", 1_500, 500), None);
        assert_eq!(seen.get("bob", 1_200, 500), None);
        // A later record replaces the earlier one and is counted once.
        seen.record("alice", 1_400, 500, 1 << 20);
        assert_eq!(seen.get("alice", 1_600, 500), Some(1_400));
        assert_eq!((seen.len(), seen.bytes()), (1, cost("alice")));
    }

    #[test]
    fn expired_records_are_dropped_as_new_ones_arrive() {
        let mut seen = LastSeen::default();
        for i in 0..100 {
            seen.record(&format!("u{i}"), i, 10, 1 << 20);
        }
        // Only the records of the last 10 ms remain.
        assert_eq!(seen.len(), 10);
        assert_eq!(seen.bytes(), 10 * cost("u90"));
    }

    #[test]
    fn a_flood_of_distinct_users_stays_under_the_byte_bound_dropping_the_oldest() {
        let mut seen = LastSeen::default();
        let max = 100 * cost("user-00000");
        for i in 0..100_000u64 {
            seen.record(&format!("user-{i:05}"), i, DAY, max);
            assert!(seen.bytes() <= max);
        }
        assert_eq!(seen.len(), 100);
        assert_eq!(seen.get("user-99999", 100_000, DAY), Some(99_999));
        assert_eq!(seen.get("user-00000", 100_000, DAY), None);
        assert!(seen.order.len() <= 2 * seen.len() + 16);
    }

    #[test]
    fn one_user_seen_again_and_again_does_not_grow_the_queue() {
        let mut seen = LastSeen::default();
        for i in 0..10_000 {
            seen.record("alice", i, DAY, 1 << 20);
        }
        assert_eq!(seen.len(), 1);
        assert!(seen.order.len() <= 18, "{}", seen.order.len());
    }

    #[test]
    fn a_user_id_longer_than_the_bound_is_not_recorded() {
        let mut seen = LastSeen::default();
        let long = "x".repeat(2048);
        seen.record(&long, 1, DAY, 1024);
        assert!(seen.is_empty());
        assert_eq!(seen.bytes(), 0);
    }
}
