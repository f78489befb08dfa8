//! The dead-letter ring: the newest batches that could not be delivered (attempts used up,
//! an address the egress policy refuses) and events dropped before a batch (queue full, the
//! engine unreachable), each with why, kept for the admin surface. Bounded by
//! `webhooks.dead_letter_size`; older entries make room.

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
    /// The batch's id (for a batch that was sent at least once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(attempts: u32) -> DeadLetter {
        DeadLetter {
            time_ms: 1,
            reason: Reason::MaxAttempts,
            webhook_id: None,
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
}
