//! What the edge does when it is full or out of descriptors: it refuses a connection with one
//! complete answer and closes it cleanly ([`Refuser`]), backs `accept` off while the process has
//! no descriptor to give ([`AcceptBackoff`]), and warns about either at most once per second
//! ([`LogThrottle`]).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::caps::Refusal;

/// What a refused client may have sent that is read and thrown away, so that closing sends a
/// FIN after the answer rather than a reset that could destroy it.
const DISCARD_MAX: usize = 64 * 1024;
/// How long a refused connection is kept, answer sent, for the client to close first.
const LINGER: Duration = Duration::from_secs(1);

/// Refuses connections: the answer is written from the accept loop without waiting (it fits
/// the empty send buffer of a new socket), so a flood costs no task per refusal; then a
/// bounded number of refused sockets linger up to a second, reading and discarding, so
/// the client reads the whole answer before the socket goes away.
#[derive(Debug)]
pub struct Refuser {
    lingering: Arc<Semaphore>,
    warn: LogThrottle,
}

impl Refuser {
    /// At most `max_lingering` refused sockets are kept open at once (each is a descriptor);
    /// beyond that they are closed right after the answer.
    pub fn new(max_lingering: usize) -> Self {
        Self {
            lingering: Arc::new(Semaphore::new(max_lingering)),
            warn: LogThrottle::new(Duration::from_secs(1)),
        }
    }

    /// Answers `refusal` on `stream` and closes it, without reading the request or routing it.
    pub fn refuse(&self, stream: TcpStream, peer: SocketAddr, refusal: Refusal) {
        if let Some(skipped) = self.warn.ready() {
            tracing::warn!(%peer, reason = refusal.reason(), skipped, "edge connection refused: {refusal}");
        }
        let Ok(socket) = stream.into_std() else {
            return;
        };
        discard_pending(&socket);
        // Non-blocking: a new socket's send buffer takes the few hundred bytes at once.
        let _ = (&socket).write(refusal.response().as_bytes());
        let _ = socket.shutdown(Shutdown::Write);
        let Ok(permit) = self.lingering.clone().try_acquire_owned() else {
            return;
        };
        let Ok(stream) = TcpStream::from_std(socket) else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(LINGER, drain(stream)).await;
        });
    }
}

/// Reads and drops what the client already sent (non-blocking, bounded).
fn discard_pending(socket: &std::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < DISCARD_MAX {
        match (&*socket).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// Reads and drops until the client closes (or sends too much).
async fn drain(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < DISCARD_MAX {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// How long the accept loop waits after a failed `accept`. The usual failure is the process
/// (or the system) out of descriptors; the pending connection stays queued, so retrying at once
/// would fail again in a busy loop: waits double from 10 ms to 500 ms and reset after an accept.
/// A connection that died in the queue (aborted, reset) is retried at once.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
    warn: LogThrottle,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: Self::FIRST,
            warn: LogThrottle::new(Duration::from_secs(1)),
        }
    }
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(500);

    /// After a failed accept: how long to wait before the next (logged at most once a second).
    pub fn failed(&mut self, error: &io::Error) -> Duration {
        let delay = match error.kind() {
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted => Duration::ZERO,
            _ => {
                let delay = self.next;
                self.next = (self.next * 2).min(Self::MAX);
                delay
            }
        };
        if let Some(skipped) = self.warn.ready() {
            tracing::warn!(%error, skipped, retry_in_ms = delay.as_millis(), "edge accept failed");
        }
        delay
    }

    /// After an accept.
    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Lets a repeated warning through at most once per period, counting the ones held back.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(skipped)` when a line may be logged now (`skipped`: events held back since the
    /// last line), else `None` (and this event is counted as held back).
    pub fn ready(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock();
        if state
            .0
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            state.1 += 1;
            return None;
        }
        state.0 = Some(now);
        Some(std::mem::take(&mut state.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn warnings_come_at_most_once_a_second_with_what_was_held_back() {
        let t = LogThrottle::new(Duration::from_secs(1));
        assert_eq!(t.ready(), Some(0));
        assert_eq!(t.ready(), None);
        assert_eq!(t.ready(), None);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(t.ready(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(t.ready(), Some(3));
        assert_eq!(t.ready(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_descriptors_the_accept_loop_waits_longer_each_time() {
        let mut b = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let waits: Vec<u128> = (0..8).map(|_| b.failed(&emfile).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 500, 500]);
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&aborted), Duration::ZERO);
        b.succeeded();
        assert_eq!(b.failed(&emfile), Duration::from_millis(10));
    }

    #[tokio::test]
    async fn a_refused_client_reads_the_whole_answer_and_then_the_end() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for refuser in [Refuser::new(4), Refuser::new(0)] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            let (server, peer) = listener.accept().await.unwrap();
            refuser.refuse(server, peer, Refusal::MaxConnections);
            // More sent after the refusal must not destroy the answer.
            let _ = client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(answer, Refusal::MaxConnections.response().as_bytes());
        }
    }
}
