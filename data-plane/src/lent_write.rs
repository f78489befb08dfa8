//! The fan-out's own writes to idle WebSocket connections. When a publication reaches a
//! connection whose task sleeps with nothing queued, waking the task to write one frame costs
//! more than the write: a wake-up, a poll of the connection's select, a copy of the frame into
//! the WebSocket library's buffer. Instead the fan-out borrows the connection's socket
//! ([`crate::client::Outbox::lend_or_push`]) and writes the frame there itself, with the WebSocket
//! header in front, in one `writev` of the same shared bytes for every subscriber.
//!
//! Only where it pays: a connection that received a frame this way less than
//! [`MIN_GAP_MS`] ago takes the next through its task, which joins frames that queued
//! meanwhile into one write — under load, fewer writes carry more frames, as before. A write
//! that the socket cannot take whole leaves the rest to the task, which sends it before
//! anything else.
//!
//! Large fan-outs are written by tasks of their own (one per runtime worker, yielding now and
//! then), so the publisher's request is not held for them; small ones inline.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::client::{ClientHandle, Offered, Returned};
use crate::metrics::Metrics;
use crate::protocol::ProtocolKind;

/// A connection takes at most one lent write per this many milliseconds.
pub const MIN_GAP_MS: u32 = 50;
/// Fan-outs up to this many lent writes run inline in the publisher's call.
const INLINE: usize = 8;
/// A writing task yields to the runtime after this many writes.
const YIELD_EVERY: usize = 128;

/// One frame to write to one borrowed socket.
struct Lent {
    client: Arc<ClientHandle>,
    socket: Arc<TcpStream>,
    frame: Bytes,
}

/// The lent writes of one fan-out, collected under the hub's lock and written after it.
#[derive(Default)]
pub struct Lends {
    enabled: bool,
    now_ms: u32,
    batch: Vec<Lent>,
}

impl Lends {
    /// A fan-out that borrows idle sockets when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            now_ms: if enabled { crate::clock::millis() } else { 0 },
            batch: Vec::new(),
        }
    }

    /// A fan-out that only queues (replies and catch-up, whose order the task keeps).
    pub fn off() -> Self {
        Self::default()
    }

    /// Sends `frame` to `client`: by a lent write when its socket can be borrowed, else
    /// through its outbox. False when the client is closing (or was just found slow).
    pub fn offer(&mut self, client: &Arc<ClientHandle>, frame: Bytes) -> bool {
        if !self.enabled {
            return client.outbox.push_frame(frame);
        }
        match client.outbox.lend_or_push(frame, self.now_ms, MIN_GAP_MS) {
            Offered::Lent(socket, frame) => {
                self.batch.push(Lent {
                    client: client.clone(),
                    socket,
                    frame,
                });
                true
            }
            Offered::Queued => true,
            Offered::Refused => false,
        }
    }

    /// Writes what was lent: inline when it is little, else on the runtime's workers.
    pub fn finish(self, metrics: &Arc<Metrics>) {
        let mut batch = self.batch;
        if batch.is_empty() {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
        let Some(runtime) = runtime.filter(|_| batch.len() > INLINE) else {
            for lent in batch {
                write_one(lent, metrics);
            }
            return;
        };
        let workers = runtime.metrics().num_workers().max(1);
        let chunk = batch.len().div_ceil(workers).max(INLINE);
        while !batch.is_empty() {
            let part = batch.split_off(batch.len().saturating_sub(chunk));
            let metrics = metrics.clone();
            runtime.spawn(async move {
                for (i, lent) in part.into_iter().enumerate() {
                    if i > 0 && i % YIELD_EVERY == 0 {
                        tokio::task::yield_now().await;
                    }
                    write_one(lent, &metrics);
                }
            });
        }
    }
}

/// Writes one lent frame and gives the socket back.
fn write_one(lent: Lent, metrics: &Metrics) {
    let Lent {
        client,
        socket,
        frame,
    } = lent;
    // A JSON frame goes out as a text message, which must be UTF-8; the task's own path
    // refuses one that is not, so it gets the frame.
    if client.protocol == ProtocolKind::Json && std::str::from_utf8(&frame).is_err() {
        client.outbox.give_back(Returned::Unsent(frame));
        return;
    }
    let len = frame.len();
    let (header, header_len) = header(client.protocol, len);
    let header = &header[..header_len];
    let returned = match socket.try_write_vectored(&[IoSlice::new(header), IoSlice::new(&frame)]) {
        Ok(n) if n == header.len() + frame.len() => Returned::Written,
        Ok(0) => Returned::Unsent(frame),
        Ok(n) if n < header.len() => {
            let mut rest = BytesMut::with_capacity(header.len() - n + frame.len());
            rest.extend_from_slice(&header[n..]);
            rest.extend_from_slice(&frame);
            Returned::Rest(rest.freeze())
        }
        Ok(n) => Returned::Rest(frame.slice(n - header.len()..)),
        // Would block, or the socket failed: the task's own write finds out which.
        Err(e) => {
            if e.kind() != io::ErrorKind::WouldBlock {
                tracing::debug!(client = %client.id, error = %e, "lent write failed");
            }
            Returned::Unsent(frame)
        }
    };
    // Counted as the task's path counts it: the frame's bytes, once it is on its way.
    if !matches!(returned, Returned::Unsent(_)) {
        metrics.lent_writes.inc();
        metrics.bytes_out.add(len as u64);
    }
    if matches!(returned, Returned::Rest(_)) {
        metrics.lent_writes_partial.inc();
    }
    client.outbox.give_back(returned);
}

/// The header of an unmasked, final WebSocket message of `len` bytes: text for JSON, binary
/// for Protobuf. Returns the bytes and how many of them are used.
pub fn header(protocol: ProtocolKind, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = match protocol {
        ProtocolKind::Json => 0x81,
        ProtocolKind::Protobuf => 0x82,
    };
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;

    /// The header is the one the WebSocket library writes for the same message.
    #[test]
    fn the_header_matches_the_websocket_librarys_for_every_length_class() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            for (protocol, data) in [
                (ProtocolKind::Json, Data::Text),
                (ProtocolKind::Protobuf, Data::Binary),
            ] {
                let payload = vec![b'a'; len];
                let mut expected = Vec::new();
                Frame::message(payload, OpCode::Data(data), true)
                    .format(&mut expected)
                    .unwrap();
                let (h, n) = header(protocol, len);
                assert_eq!(&h[..n], &expected[..expected.len() - len], "{len} bytes");
            }
        }
    }
}
