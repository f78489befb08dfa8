//! Streams only read so far. A read of a channel nobody published into gives it an epoch,
//! which the first publication keeps, so a positioned subscriber of a new channel never sees
//! its epoch change. In Redis that epoch is a key any reader can make (a history call or a
//! positioned subscribe to a new name), so the history script gives such a key only
//! [`EMPTY_STREAM_TTL`] past its last read: ever new names cannot fill a shared Redis.
//!
//! This process keeps the epochs its own subscribers were given: it notes every channel whose
//! read found no publication, and every [`REFRESH_EVERY`] reads those again that still have
//! local subscribers (renewing the key), forgetting those without or published into since.
//! What it notes is bounded by [`MAX_NOTED`]; past it, a subscriber's empty stream may lapse
//! after a minute, and the first publication then asks it to recover (insufficient state).

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::Mutex;

pub use crate::engine::memory::EMPTY_STREAM_TTL;

/// How often noted channels are read again (well inside [`EMPTY_STREAM_TTL`]).
pub const REFRESH_EVERY: Duration = Duration::from_secs(20);
/// Channels noted at most between two refreshes.
pub const MAX_NOTED: usize = 65_536;

/// Channels whose last read by this process found no publication.
#[derive(Default)]
pub struct Unpublished {
    noted: Mutex<HashSet<Box<str>>>,
}

impl Unpublished {
    /// A read of `channel` found no publication.
    pub fn note(&self, channel: &str) {
        let mut noted = self.noted.lock();
        if noted.len() < MAX_NOTED && !noted.contains(channel) {
            noted.insert(channel.into());
        }
    }

    /// Takes every noted channel out, for a refresh (which notes again those still empty).
    pub fn take(&self) -> Vec<Box<str>> {
        self.noted.lock().drain().collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.noted.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_noted_once_up_to_the_bound_and_taken_out() {
        let u = Unpublished::default();
        u.note("a");
        u.note("a");
        u.note("b");
        assert_eq!(u.len(), 2);
        let mut taken = u.take();
        taken.sort();
        assert_eq!(taken, vec!["a".into(), "b".into()] as Vec<Box<str>>);
        assert_eq!(u.len(), 0);
        for n in 0..MAX_NOTED + 10 {
            u.note(&n.to_string());
        }
        assert_eq!(u.len(), MAX_NOTED);
    }
}
