//! Transports: each turns a socket into frames for a [`crate::session::Session`] and drains the
//! session's outbox back onto the socket, through the one connection loop of [`driver`].

mod driver;
pub(crate) mod early;
pub mod emulation;
pub(crate) mod origin;
pub(crate) mod slot;
pub(crate) mod streaming;
pub(crate) mod uni;
pub(crate) mod upgrade;
pub(crate) mod websocket;
