//! The fan-out's own writes to idle WebSocket connections. When a publication reaches a
//! connection whose task sleeps with nothing queued, waking the task to write one frame costs
//! more than the write: a wake-up, a poll of the connection's select, a copy of the frame into
//! the WebSocket library's buffer. Instead the fan-out borrows the connection's socket
//! ([`crate::client::Outbox::lend_or_push`]) and writes the frame there itself, with the WebSocket
//! header in front, in one `writev` of the same shared bytes for every subscriber.
//!
//! Only where it pays: a channel publishing more often than every [`CHANNEL_GAP_MS`], a
//! connection that received a frame this way less than [`MIN_GAP_MS`] ago, and any fan-out
//! while an earlier one's lent writes are still waiting ([`InFlight`]) go through the
//! connections' tasks, which join frames that queued meanwhile into one write — under load,
//! fewer writes carry more frames, as before. A write
//! that the socket cannot take whole leaves the rest to the task, which sends it before
//! anything else.
//!
//! Large fan-outs are written by tasks of their own ([`CHUNK`] writes each, yielding now and
//! then, shared by the runtime's workers), so the publisher's request is not held for them;
//! small ones inline.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::client::{ClientHandle, Offered, Returned};
use crate::metrics::Metrics;
use crate::protocol::ProtocolKind;

/// A connection takes at most one lent write per this many milliseconds.
pub const MIN_GAP_MS: u32 = 50;
/// A channel's publication is lent only when the channel's previous one came at least this
/// long before: a large fan-out written frame by frame takes about as long, and a channel
/// publishing faster is better served by its subscribers' tasks, which join frames.
pub const CHANNEL_GAP_MS: u32 = 80;
/// Fan-outs up to this many lent writes run inline in the publisher's call.
const INLINE: usize = 8;
/// Larger ones are written by tasks of this many writes each, which idle workers steal.
const CHUNK: usize = 1024;
/// A writing task yields to the runtime after this many writes.
const YIELD_EVERY: usize = 128;

/// One frame to write to one borrowed socket.
struct Lent {
    client: Arc<ClientHandle>,
    socket: Arc<TcpStream>,
    frame: Bytes,
}

/// Lent writes handed to writing tasks and not written yet, across the process. While there
/// are any, the server is behind: a new fan-out queues to the connections' tasks, which join
/// frames into fewer writes, instead of adding per-frame writes to the backlog.
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    /// Whether every lent write handed out so far has been written.
    pub fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// The lent writes of one fan-out, collected under the hub's lock and written after it.
#[derive(Default)]
pub struct Lends {
    enabled: bool,
    now_ms: u32,
    batch: Vec<Lent>,
}

impl Lends {
    /// A fan-out at `now_ms` ([`crate::clock::millis`]) that borrows idle sockets when
    /// `enabled` and no earlier fan-out's lent writes are still waiting in `in_flight`.
    pub fn new(enabled: bool, in_flight: &InFlight, now_ms: u32) -> Self {
        Self {
            enabled: enabled && in_flight.idle(),
            now_ms,
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

    /// Writes what was lent: inline when it is little, else by tasks of [`CHUNK`] writes
    /// each, which the runtime's workers share.
    pub fn finish(self, metrics: &Arc<Metrics>, in_flight: &Arc<InFlight>) {
        let mut batch = self.batch;
        if batch.is_empty() {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
        let Some(runtime) = runtime.filter(|_| batch.len() > INLINE) else {
            let mut writer = Writer::default();
            for lent in batch {
                writer.write(lent);
            }
            writer.count(metrics);
            return;
        };
        in_flight.0.fetch_add(batch.len(), Ordering::Relaxed);
        while !batch.is_empty() {
            let part = batch.split_off(batch.len().saturating_sub(CHUNK));
            let metrics = metrics.clone();
            let in_flight = in_flight.clone();
            runtime.spawn(async move {
                let mut writer = Writer::default();
                let n = part.len();
                for (i, lent) in part.into_iter().enumerate() {
                    if i > 0 && i % YIELD_EVERY == 0 {
                        tokio::task::yield_now().await;
                    }
                    writer.write(lent);
                }
                writer.count(&metrics);
                in_flight.0.fetch_sub(n, Ordering::Relaxed);
            });
        }
    }
}

/// Writes lent frames one by one, counting what it wrote (added to the shared counters once,
/// not per frame: two writers would fight over their cache line) and remembering the last
/// frame it found to be UTF-8 (a fan-out's frames are the same bytes).
#[derive(Default)]
struct Writer {
    written: u64,
    partial: u64,
    bytes: u64,
    /// Address and length of the last JSON frame checked.
    valid_utf8: (usize, usize),
}

impl Writer {
    /// Writes one lent frame and gives the socket back.
    fn write(&mut self, lent: Lent) {
        let Lent {
            client,
            socket,
            frame,
        } = lent;
        // A JSON frame goes out as a text message, which must be UTF-8; the task's own path
        // refuses one that is not, so it gets the frame.
        if client.protocol == ProtocolKind::Json {
            let key = (frame.as_ptr() as usize, frame.len());
            if key != self.valid_utf8 {
                if std::str::from_utf8(&frame).is_err() {
                    client.outbox.give_back(Returned::Unsent(frame));
                    return;
                }
                self.valid_utf8 = key;
            }
        }
        let len = frame.len();
        let (header, header_len) = header(client.protocol, len);
        let header = &header[..header_len];
        let parts = [IoSlice::new(header), IoSlice::new(&frame)];
        // `sendmsg`, not `writev`: a socket needs no file position.
        let returned = match socket2::SockRef::from(&*socket).send_vectored(&parts) {
            Ok(n) if n == header.len() + len => Returned::Written,
            Ok(0) => Returned::Unsent(frame),
            Ok(n) if n < header.len() => {
                let mut rest = BytesMut::with_capacity(header.len() - n + len);
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
        match returned {
            Returned::Written => self.written += 1,
            Returned::Rest(_) => self.partial += 1,
            Returned::Unsent(_) => {}
        }
        if !matches!(returned, Returned::Unsent(_)) {
            self.bytes += len as u64;
        }
        client.outbox.give_back(returned);
    }

    /// Adds what was written to `metrics`.
    fn count(&self, metrics: &Metrics) {
        metrics.lent_writes.add(self.written + self.partial);
        metrics.lent_writes_partial.add(self.partial);
        metrics.bytes_out.add(self.bytes);
    }
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
