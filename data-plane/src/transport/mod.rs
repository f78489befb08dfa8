//! Transports: each turns a socket into frames for a [`crate::session::Session`] and drains the
//! session's outbox back onto the socket, through the one connection loop of [`driver`].

mod driver;
pub mod emulation;
pub mod origin;
pub mod slot;
pub mod streaming;
pub mod uni;
pub mod websocket;
