//! The events a webhook carries and how they look on the wire.

use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A channel got its first subscriber (project-wide).
    ChannelOccupied,
    /// A channel lost its last subscriber (project-wide), and none came back within grace.
    ChannelVacated,
    /// A user's first connection subscribed to a channel (project-wide).
    MemberAdded,
    /// A user's last connection left a channel, and none came back within grace.
    MemberRemoved,
    /// A connection ended, and its user did not connect again within grace.
    ClientDisconnected,
}

impl EventKind {
    /// The event's name in the config's `webhooks.events` and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChannelOccupied => "channel_occupied",
            Self::ChannelVacated => "channel_vacated",
            Self::MemberAdded => "member_added",
            Self::MemberRemoved => "member_removed",
            Self::ClientDisconnected => "client_disconnected",
        }
    }
}

/// One event of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub name: EventKind,
    /// The channel (channel and member events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The user (member events; `client_disconnected`, "" for an anonymous connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The connection's client id (`client_disconnected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The disconnect code (`client_disconnected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The disconnect reason (`client_disconnected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Grows with every channel and member event of the channel, project-wide: a backend
    /// keeps the highest version it applied per channel and drops anything older.
    pub version: u64,
    /// When it happened (unix milliseconds).
    pub time_ms: u64,
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Versions this process hands out (memory engine, and `client_disconnected`): strictly
/// increasing and starting from the clock in microseconds, so a restarted process continues
/// above the versions of the one before it.
#[derive(Debug, Default)]
pub struct Versions(std::sync::atomic::AtomicU64);

impl Versions {
    /// The next version.
    pub fn next(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let next = now.max(current + 1);
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_only_grow_and_start_from_the_clock() {
        let v = Versions::default();
        let first = v.next();
        assert!(first > 1_700_000_000_000_000, "{first}");
        let mut last = first;
        for _ in 0..1000 {
            let n = v.next();
            assert!(n > last);
            last = n;
        }
    }

    #[test]
    fn events_leave_out_what_they_do_not_carry() {
        let e = Event {
            name: EventKind::ChannelVacated,
            channel: Some("chat:1".into()),
            user: None,
            client: None,
            code: None,
            reason: None,
            version: 7,
            time_ms: 1,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"name": "channel_vacated", "channel": "chat:1", "version": 7, "time_ms": 1})
        );
    }
}
