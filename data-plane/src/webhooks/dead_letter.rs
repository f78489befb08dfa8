//! The dead-letter ring: the newest batches that could not be delivered (attempts used up,
//! an address the egress policy refuses) and events dropped before a batch (queue full, the
//! engine unreachable), each with why and the webhook id it is (or would have been) sent
//! with, kept for the admin surface. Bounded by `webhooks.dead_letter_size`; older entries
//! make room. The owner can take entries out to send them again ([`DeadLetters::take`]).

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;

use super::event::Event;

/// Why events were given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every attempt failed (`webhooks.max_attempts`).
    MaxAttempts,
    /// The URL's address is not allowed for this tenant (egress policy).
    EgressRefused,
    /// The queue was full (`webhooks.queue_size`).
    QueueFull,
    /// The shared ledger (Redis) could not be reached to decide the event.
    EngineUnavailable,
}

impl Reason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxAttempts => "max_attempts",
            Self::EgressRefused => "egress_refused",
            Self::QueueFull => "queue_full",
            Self::EngineUnavailable => "engine_unavailable",
        }
    }
}

/// One entry of the ring.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// When it was given up (unix ms).
    pub time_ms: u64,
    pub reason: Reason,
    /// The batch's `X-Rotor-Webhook-Id`: the one it was sent with, or for events dropped
    /// before a batch, the one a redelivery sends them with. Names the entry for redelivery.
    pub webhook_id: String,
    /// The last HTTP status answered, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The last error (transport, timeout, egress), without the URL's query or the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempts: u32,
    pub events: Vec<Event>,
}

/// The ring.
#[derive(Debug, Default)]
pub struct DeadLetters(Mutex<VecDeque<DeadLetter>>);

impl DeadLetters {
    /// Adds `letter`, keeping at most `cap` entries (the newest).
    pub fn push(&self, letter: DeadLetter, cap: usize) {
        let mut ring = self.0.lock();
        while ring.len() >= cap.max(1) {
            ring.pop_front();
        }
        ring.push_back(letter);
    }

    /// The entries, oldest first.
    pub fn snapshot(&self) -> Vec<DeadLetter> {
        self.0.lock().iter().cloned().collect()
    }

    /// Takes out the entry with webhook id `id` (every entry when `None`), oldest first, at
    /// most `max` of them; the rest stay.
    pub fn take(&self, id: Option<&str>, max: usize) -> Vec<DeadLetter> {
        let mut ring = self.0.lock();
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(ring.len());
        for letter in ring.drain(..) {
            let wanted = id.is_none_or(|id| letter.webhook_id == id);
            if wanted && taken.len() < max {
                taken.push(letter);
            } else {
                kept.push_back(letter);
            }
        }
        *ring = kept;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(attempts: u32) -> DeadLetter {
        DeadLetter {
            time_ms: 1,
            reason: Reason::MaxAttempts,
            webhook_id: format!("id-{attempts}"),
            status: Some(500),
            error: None,
            attempts,
            events: Vec::new(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_entries() {
        let ring = DeadLetters::default();
        for i in 0..5 {
            ring.push(letter(i), 3);
        }
        let kept: Vec<u32> = ring.snapshot().iter().map(|l| l.attempts).collect();
        assert_eq!(kept, vec![2, 3, 4]);
    }

    #[test]
    fn entries_are_taken_out_by_id_or_all_within_a_bound() {
        let ring = DeadLetters::default();
        for i in 0..4 {
            ring.push(letter(i), 10);
        }
        let one = ring.take(Some("id-2"), 10);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].webhook_id, "id-2");
        assert!(ring.take(Some("id-2"), 10).is_empty(), "taken once");
        let two = ring.take(None, 2);
        let ids: Vec<&str> = two.iter().map(|l| l.webhook_id.as_str()).collect();
        assert_eq!(ids, ["id-0", "id-1"], "oldest first");
        let left: Vec<u32> = ring.snapshot().iter().map(|l| l.attempts).collect();
        assert_eq!(left, vec![3]);
    }
}
