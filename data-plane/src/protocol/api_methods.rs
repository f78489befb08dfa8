//! The server API's method names: what `/api/{method}` answers, and the `method` label of the
//! API's metrics.

/// Every method `/api/{method}` answers.
pub const API_METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "rpc",
    "user_status",
    "batch",
];
