//! Streams only read so far. A read of a channel nobody published into gives it an epoch,
//! which the first publication keeps, so a positioned subscriber of a new channel never sees
//! its epoch change. In Redis that epoch is a key any reader can make (a history call or a
//! positioned subscribe to a new name), so the history script gives such a key only
//! [`EMPTY_STREAM_TTL`] past its last read: ever new names cannot fill a shared Redis.
//!
//! This process keeps the epochs its own subscribers were given. It notes every channel whose
//! read found no publication ([`MAX_FRESH`] at most between two rounds); every
//! [`REFRESH_EVERY`] it reads again, with a [`KEPT_TTL`], those that have local subscribers,
//! and keeps reading each such channel every [`KEEP_AGAIN_AFTER`] while it still has local
//! subscribers and no publication. So what strangers' reads leave lasts a minute, while a
//! subscribed empty channel costs one Redis call every four minutes. A noted channel past the
//! bound may lapse after a minute; its first publication then asks its subscribers to recover
//! (insufficient state), as after a lost message.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use crate::engine::memory::EMPTY_STREAM_TTL;

/// How often noted channels are looked at (well inside [`EMPTY_STREAM_TTL`]).
pub const REFRESH_EVERY: Duration = Duration::from_secs(20);
/// The TTL a subscribed empty stream's key is given by this process.
pub const KEPT_TTL: Duration = Duration::from_secs(600);
/// How long after its last reading a kept channel is read again (with [`REFRESH_EVERY`],
/// well inside [`KEPT_TTL`]).
pub const KEEP_AGAIN_AFTER: Duration = Duration::from_secs(240);
/// Channels noted by reads at most between two rounds.
pub const MAX_FRESH: usize = 65_536;

#[derive(Default)]
struct Noted {
    /// Read with no publication since the last round.
    fresh: HashSet<Box<str>>,
    /// Kept for local subscribers: when each was last read.
    kept: HashMap<Box<str>, Instant>,
}

/// Channels whose reads by this process found no publication.
#[derive(Default)]
pub struct Unpublished {
    noted: Mutex<Noted>,
}

impl Unpublished {
    /// A read of `channel` found no publication.
    pub fn note(&self, channel: &str) {
        let mut noted = self.noted.lock();
        if noted.fresh.len() < MAX_FRESH && !noted.kept.contains_key(channel) {
            noted.fresh.insert(channel.into());
        }
    }

    /// `channel`, read for its subscribers at `at`, still has no publication.
    pub fn kept(&self, channel: &str, at: Instant) {
        let mut noted = self.noted.lock();
        noted.fresh.remove(channel);
        noted.kept.insert(channel.into(), at);
    }

    /// The channels to look at now: every fresh one, and the kept ones last read
    /// [`KEEP_AGAIN_AFTER`] ago. They are taken out; [`Self::kept`] puts back those still
    /// empty and subscribed.
    pub fn due(&self, now: Instant) -> Vec<Box<str>> {
        let mut noted = self.noted.lock();
        let mut due: Vec<Box<str>> = noted.fresh.drain().collect();
        noted.kept.retain(|channel, at| {
            if now.duration_since(*at) < KEEP_AGAIN_AFTER {
                return true;
            }
            due.push(channel.clone());
            false
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_channels_are_due_at_once_and_kept_ones_after_a_while() {
        let u = Unpublished::default();
        let now = Instant::now();
        u.note("a");
        u.note("a");
        u.note("b");
        let mut due = u.due(now);
        due.sort();
        assert_eq!(due, vec!["a".into(), "b".into()] as Vec<Box<str>>);
        assert!(u.due(now).is_empty(), "taken out");
        u.kept("a", now);
        u.note("a");
        assert!(
            u.due(now + REFRESH_EVERY).is_empty(),
            "kept: not read again yet"
        );
        assert_eq!(
            u.due(now + KEEP_AGAIN_AFTER),
            vec!["a".into()] as Vec<Box<str>>
        );
        for n in 0..MAX_FRESH + 10 {
            u.note(&n.to_string());
        }
        assert_eq!(u.due(now).len(), MAX_FRESH, "strangers' reads are bounded");
    }
}
