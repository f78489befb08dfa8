//! Centrifugo's error, unsubscribe and disconnect codes, defined once. Numbers and the
//! temporary/reconnect semantics are what the SDKs act on: a wrong one turns a retry into a
//! permanent failure or the other way round.

use std::borrow::Cow;

/// An error answered to one command (`Reply.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ClientError {
    pub code: u32,
    pub message: Cow<'static, str>,
    pub temporary: bool,
}

impl ClientError {
    const fn new(code: u32, message: &'static str, temporary: bool) -> Self {
        Self {
            code,
            message: Cow::Borrowed(message),
            temporary,
        }
    }
    /// 100, temporary: something broke on our side; SDKs retry.
    pub const INTERNAL: Self = Self::new(100, "internal server error", true);
    /// 101.
    pub const UNAUTHORIZED: Self = Self::new(101, "unauthorized", false);
    /// 102: the channel's namespace does not exist.
    pub const UNKNOWN_CHANNEL: Self = Self::new(102, "unknown channel", false);
    /// 103.
    pub const PERMISSION_DENIED: Self = Self::new(103, "permission denied", false);
    /// 104.
    pub const METHOD_NOT_FOUND: Self = Self::new(104, "method not found", false);
    /// 105.
    pub const ALREADY_SUBSCRIBED: Self = Self::new(105, "already subscribed", false);
    /// 106.
    pub const LIMIT_EXCEEDED: Self = Self::new(106, "limit exceeded", false);
    /// 107.
    pub const BAD_REQUEST: Self = Self::new(107, "bad request", false);
    /// 108: the feature is off for this channel.
    pub const NOT_AVAILABLE: Self = Self::new(108, "not available", false);
    /// 109: the token's `exp` passed; SDKs fetch a new token and retry.
    pub const TOKEN_EXPIRED: Self = Self::new(109, "token expired", false);
    /// 110.
    pub const EXPIRED: Self = Self::new(110, "expired", false);
    /// 111, temporary.
    pub const TOO_MANY_REQUESTS: Self = Self::new(111, "too many requests", true);
    /// 112: the requested stream position cannot be recovered.
    pub const UNRECOVERABLE_POSITION: Self = Self::new(112, "unrecoverable position", false);

    /// The same error with a more specific message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Cow::Owned(message.into());
        self
    }

    /// The wire form.
    pub fn to_proto(&self) -> super::Error {
        super::Error {
            code: self.code,
            message: self.message.clone().into_owned(),
            temporary: self.temporary,
        }
    }
}

/// Why the server closes a connection. Codes 3000–3499 make SDKs reconnect, 3500–3999 do not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("disconnect {code}: {reason}")]
pub struct Disconnect {
    pub code: u16,
    pub reason: Cow<'static, str>,
}

impl Disconnect {
    const fn new(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason: Cow::Borrowed(reason),
        }
    }
    /// 3000: the client went away (never sent).
    pub const CONNECTION_CLOSED: Self = Self::new(3000, "connection closed");
    /// 3001: server shutting down; reconnect elsewhere.
    pub const SHUTDOWN: Self = Self::new(3001, "shutdown");
    /// 3004.
    pub const INTERNAL: Self = Self::new(3004, "internal server error");
    /// 3005: connection expired without a refresh.
    pub const EXPIRED: Self = Self::new(3005, "connection expired");
    /// 3006.
    pub const SUBSCRIPTION_EXPIRED: Self = Self::new(3006, "subscription expired");
    /// 3008: the client does not read fast enough.
    pub const SLOW: Self = Self::new(3008, "slow");
    /// 3009.
    pub const WRITE_ERROR: Self = Self::new(3009, "write error");
    /// 3010.
    pub const INSUFFICIENT_STATE: Self = Self::new(3010, "insufficient state");
    /// 3011.
    pub const FORCE_RECONNECT: Self = Self::new(3011, "force reconnect");
    /// 3012: no pong within the timeout.
    pub const NO_PONG: Self = Self::new(3012, "no pong");
    /// 3013.
    pub const TOO_MANY_REQUESTS: Self = Self::new(3013, "too many requests");
    /// 3500: the connection token is invalid.
    pub const INVALID_TOKEN: Self = Self::new(3500, "invalid token");
    /// 3501: a malformed or out-of-order command.
    pub const BAD_REQUEST: Self = Self::new(3501, "bad request");
    /// 3502: never authenticated.
    pub const STALE: Self = Self::new(3502, "stale");
    /// 3503: disconnected through the server API.
    pub const FORCE_NO_RECONNECT: Self = Self::new(3503, "force disconnect");
    /// 3504.
    pub const CONNECTION_LIMIT: Self = Self::new(3504, "connection limit");
    /// 3505.
    pub const CHANNEL_LIMIT: Self = Self::new(3505, "channel limit");
    /// 3506: a payload of the connection's own that its format cannot carry: its connect,
    /// refresh or RPC reply data (from the token or the proxy), or a non-UTF-8 JSON frame.
    /// Never sent because of another client's publication or join/leave: those are skipped
    /// for the connection instead (see [`crate::hub`]).
    pub const INAPPROPRIATE_PROTOCOL: Self = Self::new(3506, "inappropriate protocol");
    /// 3507.
    pub const PERMISSION_DENIED: Self = Self::new(3507, "permission denied");
    /// 3508.
    pub const NOT_AVAILABLE: Self = Self::new(3508, "not available");
    /// 3509.
    pub const TOO_MANY_ERRORS: Self = Self::new(3509, "too many errors");

    /// A disconnect with a custom code and reason (server API, proxies).
    pub fn custom(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: Cow::Owned(reason.into()),
        }
    }

    /// Whether SDKs reconnect after this code.
    pub fn reconnect(&self) -> bool {
        matches!(self.code, 3000..=3499 | 4000..=4499) || self.code >= 5000
    }

    /// The wire form for emulation and unidirectional transports.
    pub fn to_push(&self) -> super::DisconnectPush {
        super::DisconnectPush {
            code: u32::from(self.code),
            reason: self.reason.clone().into_owned(),
            reconnect: false,
        }
    }
}

/// Codes of the Unsubscribe push.
pub mod unsubscribe {
    /// 2000: unsubscribed through the server API (terminal).
    pub const SERVER: (u32, &str) = (2000, "server unsubscribe");
    /// 2500: the subscription missed publications; SDKs resubscribe and recover.
    pub const INSUFFICIENT_STATE: (u32, &str) = (2500, "insufficient state");
    /// 2501: the subscription token expired without a refresh.
    pub const EXPIRED: (u32, &str) = (2501, "subscription expired");
}
