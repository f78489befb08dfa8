//! What the server asks of one connection beside closing it: a server API `subscribe` or
//! `refresh` (carried by [`super::Control`] to the connection's task).

use bytes::Bytes;

use crate::protocol::{Override, StreamPosition};

/// A server API `subscribe` for one connection.
#[derive(Debug, Clone, Default)]
pub struct ServerSubscribe {
    pub channel: String,
    pub info: Bytes,
    pub data: Bytes,
    /// Unix seconds; 0 = never expires.
    pub expire_at: i64,
    /// Recover from this position.
    pub recover_since: Option<StreamPosition>,
    /// Changes to the namespace's options for this subscription (the request's `override`).
    pub overrides: Option<Override>,
}

/// A server API `refresh` for one connection.
#[derive(Debug, Clone, Default)]
pub struct ServerRefresh {
    pub expired: bool,
    /// Unix seconds; 0 = never expires.
    pub expire_at: i64,
    pub info: Bytes,
}
