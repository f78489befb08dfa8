//! This process's side of coalescing: how many local subscriptions each channel has and how
//! many local connections each user has in it, and the removals held back for `grace`. Only a
//! local first acquisition or a release that outlived its grace reaches the shared ledger; an
//! acquisition during a held release cancels both, so a quick reconnect (here, or on another
//! process while this one still holds the channel) sends nothing. Pure and synchronous: the
//! caller holds it under a short lock, never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A channel's occupancy (user `""`) or one user's membership in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub channel: Arc<str>,
    pub user: Arc<str>,
}

impl Key {
    /// The channel's occupancy.
    pub fn channel(channel: &str) -> Self {
        Self {
            channel: channel.into(),
            user: "".into(),
        }
    }

    /// `user`'s membership in `channel` (`user` not empty).
    pub fn member(channel: &str, user: &str) -> Self {
        Self {
            channel: channel.into(),
            user: user.into(),
        }
    }

    /// Whether this is a membership (else an occupancy).
    pub fn is_member(&self) -> bool {
        !self.user.is_empty()
    }
}

/// A connection that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    pub client: Arc<str>,
    pub user: Arc<str>,
    pub code: u16,
    pub reason: String,
    /// When (unix ms).
    pub time_ms: u64,
}

/// What the ledger must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A local first acquisition (`time_ms`: when).
    Acquire(Key, u64),
    /// A release whose grace ended without a new acquisition (`time_ms`: when it was released).
    Release(Key, u64),
    /// A disconnect whose grace ended without the user connecting again here.
    Disconnected(Disconnected),
}

enum Timed {
    Release(Key, u64),
    Disconnect(Arc<str>, u64),
}

/// Local counts and held removals.
#[derive(Default)]
pub struct Tracker {
    counts: HashMap<Key, u32>,
    /// Held releases: key → (generation, when released).
    held: HashMap<Key, (u64, u64)>,
    /// Held disconnects by user: (generation, the disconnect).
    disconnects: HashMap<Arc<str>, Vec<(u64, Disconnected)>>,
    /// Deadlines in the order they were set (entries cancelled since are skipped).
    timers: VecDeque<(Instant, Timed)>,
    generation: u64,
    /// Removals that an acquisition cancelled within grace.
    pub coalesced: u64,
}

impl Tracker {
    /// A local subscription or connection of `key` started: `Some` when the ledger must hear
    /// of it (the first here, and no release of it held).
    pub fn acquire(&mut self, key: Key, time_ms: u64) -> Option<Step> {
        let n = self.counts.entry(key.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            return None;
        }
        if self.held.remove(&key).is_some() {
            self.coalesced += 1;
            return None;
        }
        Some(Step::Acquire(key, time_ms))
    }

    /// A local subscription or connection of `key` ended: `Some` at once when `grace` is zero
    /// and it was the last here; otherwise the release is held until `now + grace`.
    pub fn release(
        &mut self,
        key: Key,
        time_ms: u64,
        now: Instant,
        grace: Duration,
    ) -> Option<Step> {
        let n = self.counts.get_mut(&key)?;
        *n -= 1;
        if *n > 0 {
            return None;
        }
        self.counts.remove(&key);
        self.hold(key, time_ms, now, grace)
    }

    /// Holds the release of `key` until `now + grace` (at once when `grace` is zero).
    fn hold(&mut self, key: Key, time_ms: u64, now: Instant, grace: Duration) -> Option<Step> {
        if grace.is_zero() {
            return Some(Step::Release(key, time_ms));
        }
        self.generation += 1;
        self.held.insert(key.clone(), (self.generation, time_ms));
        self.timers
            .push_back((now + grace, Timed::Release(key, self.generation)));
        None
    }

    /// A holding of a process that died before this one (its state file): held as a
    /// release until `now + grace` (at once when `grace` is zero), so taking it again in
    /// time cancels it.
    pub fn inherit(
        &mut self,
        key: Key,
        time_ms: u64,
        now: Instant,
        grace: Duration,
    ) -> Option<Step> {
        if self.counts.contains_key(&key) || self.held.contains_key(&key) {
            return None;
        }
        self.hold(key, time_ms, now, grace)
    }

    /// A connection ended: `Some` at once when `grace` is zero or the user is anonymous (no
    /// reconnection can be recognised); otherwise held until `now + grace`.
    pub fn disconnected(&mut self, d: Disconnected, now: Instant, grace: Duration) -> Option<Step> {
        if grace.is_zero() || d.user.is_empty() {
            return Some(Step::Disconnected(d));
        }
        self.generation += 1;
        let user = d.user.clone();
        self.disconnects
            .entry(user.clone())
            .or_default()
            .push((self.generation, d));
        self.timers
            .push_back((now + grace, Timed::Disconnect(user, self.generation)));
        None
    }

    /// `user` connected: its held disconnects are dropped (a reconnection).
    pub fn connected(&mut self, user: &str) {
        if let Some(held) = self.disconnects.remove(user) {
            self.coalesced += held.len() as u64;
        }
    }

    /// When the next held removal is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.front().map(|(at, _)| *at)
    }

    /// The held removals due at `now`, in the order they were held.
    pub fn due(&mut self, now: Instant) -> Vec<Step> {
        let mut out = Vec::new();
        while self.timers.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, timed)) = self.timers.pop_front() else {
                break;
            };
            self.fire(timed, &mut out);
        }
        out
    }

    /// Every held removal at once (the process is stopping).
    pub fn flush(&mut self) -> Vec<Step> {
        let mut out = Vec::new();
        while let Some((_, timed)) = self.timers.pop_front() {
            self.fire(timed, &mut out);
        }
        out
    }

    fn fire(&mut self, timed: Timed, out: &mut Vec<Step>) {
        match timed {
            Timed::Release(key, generation) => {
                if let Some(&(g, time_ms)) = self.held.get(&key) {
                    if g == generation {
                        self.held.remove(&key);
                        out.push(Step::Release(key, time_ms));
                    }
                }
            }
            Timed::Disconnect(user, generation) => {
                let Some(list) = self.disconnects.get_mut(&user) else {
                    return;
                };
                if let Some(i) = list.iter().position(|(g, _)| *g == generation) {
                    let (_, d) = list.remove(i);
                    out.push(Step::Disconnected(d));
                }
                if list.is_empty() {
                    self.disconnects.remove(&user);
                }
            }
        }
    }

    /// Everything held here now (counted, or a release held for grace).
    pub fn holdings(&self) -> Vec<Key> {
        self.counts
            .keys()
            .chain(self.held.keys())
            .cloned()
            .collect()
    }

    /// Forgets everything (webhooks were turned off).
    pub fn clear(&mut self) {
        *self = Self {
            coalesced: self.coalesced,
            ..Self::default()
        };
    }

    /// Whether nothing is counted or held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.held.is_empty() && self.disconnects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    fn gone(client: &str, user: &str) -> Disconnected {
        Disconnected {
            client: client.into(),
            user: user.into(),
            code: 3000,
            reason: "transport closed".into(),
            time_ms: 1,
        }
    }

    #[test]
    fn only_the_first_acquisition_and_a_release_past_grace_reach_the_ledger() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        let ch = Key::channel("chat:1");
        assert_eq!(t.acquire(ch.clone(), 1), Some(Step::Acquire(ch.clone(), 1)));
        assert_eq!(t.acquire(ch.clone(), 2), None);
        assert_eq!(t.release(ch.clone(), 3, t0, GRACE), None);
        assert_eq!(t.release(ch.clone(), 4, t0, GRACE), None);
        assert_eq!(t.next_deadline(), Some(t0 + GRACE));
        assert!(t.due(t0 + GRACE - Duration::from_millis(1)).is_empty());
        assert_eq!(t.due(t0 + GRACE), vec![Step::Release(ch, 4)]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_reacquisition_within_grace_cancels_both() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        let m = Key::member("chat:1", "u1");
        assert!(t.acquire(m.clone(), 1).is_some());
        assert_eq!(t.release(m.clone(), 2, t0, GRACE), None);
        assert_eq!(t.acquire(m.clone(), 3), None);
        assert!(t.due(t0 + GRACE * 2).is_empty());
        assert_eq!(t.coalesced, 1);
        // Still held by the new acquisition: its release is held again.
        assert_eq!(t.release(m.clone(), 4, t0 + GRACE, GRACE), None);
        assert_eq!(t.due(t0 + GRACE * 2), vec![Step::Release(m, 4)]);
    }

    #[test]
    fn without_grace_releases_and_disconnects_go_at_once() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        let ch = Key::channel("c");
        t.acquire(ch.clone(), 1);
        assert_eq!(
            t.release(ch.clone(), 2, t0, Duration::ZERO),
            Some(Step::Release(ch, 2))
        );
        assert_eq!(
            t.disconnected(gone("c1", "u1"), t0, Duration::ZERO),
            Some(Step::Disconnected(gone("c1", "u1")))
        );
        // Anonymous connections cannot be matched with a reconnection.
        assert!(t.disconnected(gone("c2", ""), t0, GRACE).is_some());
    }

    #[test]
    fn a_users_reconnection_within_grace_drops_its_disconnects() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        assert_eq!(t.disconnected(gone("c1", "u1"), t0, GRACE), None);
        assert_eq!(t.disconnected(gone("c2", "u2"), t0, GRACE), None);
        t.connected("u1");
        assert_eq!(
            t.due(t0 + GRACE),
            vec![Step::Disconnected(gone("c2", "u2"))]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_release_of_something_never_acquired_is_ignored() {
        let mut t = Tracker::default();
        assert_eq!(
            t.release(Key::channel("c"), 1, Instant::now(), Duration::ZERO),
            None
        );
    }

    #[test]
    fn an_inherited_holding_is_released_after_grace_unless_taken_again() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        let (kept, lost) = (Key::member("c", "u1"), Key::channel("d"));
        assert_eq!(t.inherit(kept.clone(), 5, t0, GRACE), None);
        assert_eq!(t.inherit(lost.clone(), 5, t0, GRACE), None);
        assert_eq!(t.acquire(kept, 6), None, "taken again: no addition either");
        assert_eq!(t.due(t0 + GRACE), vec![Step::Release(lost.clone(), 5)]);
        assert_eq!(
            t.inherit(lost.clone(), 5, t0, Duration::ZERO),
            Some(Step::Release(lost, 5))
        );
    }

    #[test]
    fn flushing_sends_every_held_removal() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        let ch = Key::channel("c");
        t.acquire(ch.clone(), 1);
        t.release(ch.clone(), 2, t0, GRACE);
        t.disconnected(gone("c1", "u1"), t0, GRACE);
        assert_eq!(
            t.flush(),
            vec![Step::Release(ch, 2), Step::Disconnected(gone("c1", "u1"))]
        );
        assert!(t.is_empty());
    }
}
