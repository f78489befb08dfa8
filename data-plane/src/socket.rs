//! A client's TCP socket shared between its HTTP connection and the fan-out. hyper (and after an
//! upgrade, the WebSocket library) reads and writes the socket through a [`SharedSocket`]; a
//! WebSocket connection also keeps the socket itself ([`SharedSocket::share`]), so the fan-out
//! can write a publication straight to an idle connection's socket instead of waking its task
//! (see [`crate::client::Outbox::lend_or_push`] for who may write when).
//!
//! A socket handed over by the edge starts with the request head the edge already read: the
//! wrapper replays it before reading the socket, as [`rotor_tenant_config::prefixed`] does.

use std::io::{self, Read as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rotor_tenant_config::prefixed::Prefix;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The most one read takes (and zeroes first) of the caller's buffer.
const READ_CHUNK: usize = 4096;

/// A TCP socket that others may also hold (by [`SharedSocket::share`]); reads replay `prefix`
/// first.
#[derive(Debug)]
pub struct SharedSocket {
    prefix: Prefix,
    inner: Arc<TcpStream>,
}

impl SharedSocket {
    /// `stream`, with `prefix` to be read before its own bytes.
    pub fn new(prefix: Vec<u8>, stream: TcpStream) -> Self {
        Self {
            prefix: Prefix::new(prefix),
            inner: Arc::new(stream),
        }
    }

    /// The socket itself, for writes outside the connection's task.
    pub fn share(&self) -> Arc<TcpStream> {
        self.inner.clone()
    }

    /// Puts `bytes` (read off this socket but not used) back, to be read again first.
    pub fn unread(&mut self, bytes: &[u8]) {
        self.prefix.unread(bytes);
    }
}

impl AsyncRead for SharedSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.prefix.replay(out) {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            // A safe read needs initialised memory, and hyper lends its whole spare buffer
            // uninitialised: zero (and read) at most `READ_CHUNK` of it, not all of it, each
            // time. A spurious readiness clears itself: the read resets it on `WouldBlock`.
            let n = out.remaining().min(READ_CHUNK);
            match read_draining(&this.inner, out.initialize_unfilled_to(n)) {
                Ok(n) => {
                    out.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write_with(&self.inner, cx, |s| s.try_write(data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_write_with(&self.inner, cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = socket2::SockRef::from(&*self.inner).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match r {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}

/// Reads what `socket` holds into `buf` (`WouldBlock` when tokio has not seen it readable).
/// A read that fills less than `buf` has drained the socket, so its readiness is cleared then,
/// as tokio's own `poll_read` does: the next read waits for epoll's next edge instead of
/// making a system call that finds nothing. (tokio clears only if no new edge came in since,
/// and never clears a closed read side, so a FIN that came with the data is still seen.)
pub fn read_draining(socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut drained = 0;
    let read = socket.try_io(Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(socket)).read(buf)?;
        if n > 0 && n < buf.len() {
            // `WouldBlock` is how `try_io` is told to clear the readiness.
            drained = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match read {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && drained > 0 => Ok(drained),
        r => r,
    }
}

/// Waits until `socket` is writable and runs `write` on it; not ready again until it is.
pub fn poll_write_with(
    socket: &TcpStream,
    cx: &mut Context<'_>,
    mut write: impl FnMut(&TcpStream) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(socket.poll_write_ready(cx))?;
        match write(socket) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_shared_handle_writes_to_the_same_socket_in_turn() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"hi").await.unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.unwrap();
            back
        });
        let (sock, _) = listener.accept().await.unwrap();
        let mut s = SharedSocket::new(b">".to_vec(), sock);
        let direct = s.share();
        let mut got = [0u8; 3];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b">hi");
        s.write_all(b"ok").await.unwrap();
        assert_eq!(direct.try_write(b"+direct").unwrap(), 7);
        s.shutdown().await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), client)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, b"ok+direct");
    }

    /// A pair of connected sockets: (the server's, the client's).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    async fn read_within(s: &mut SharedSocket, buf: &mut [u8]) -> usize {
        tokio::time::timeout(Duration::from_secs(5), s.read(buf))
            .await
            .expect("a read that should end waited on a readiness that was cleared")
            .unwrap()
    }

    #[tokio::test]
    async fn after_a_short_read_the_next_bytes_still_wake_the_reader() {
        let (server, mut client) = pair().await;
        let mut s = SharedSocket::new(Vec::new(), server);
        let mut buf = [0u8; 64];
        for round in 0..3u8 {
            client.write_all(&[b'a' + round; 5]).await.unwrap();
            // Five bytes into a 64-byte buffer: a short read, which clears the readiness.
            assert_eq!(read_within(&mut s, &mut buf).await, 5);
            assert_eq!(&buf[..5], &[b'a' + round; 5]);
        }
        // A buffer filled exactly is not a short read: what is left is read next.
        client.write_all(&[b'z'; 80]).await.unwrap();
        let mut got = 0;
        while got < 80 {
            got += read_within(&mut s, &mut buf).await;
        }
        assert_eq!(got, 80);
    }

    #[tokio::test]
    async fn a_close_that_came_with_the_last_bytes_is_still_seen() {
        let (server, mut client) = pair().await;
        client.write_all(b"bye").await.unwrap();
        client.shutdown().await.unwrap();
        drop(client);
        // The bytes and the FIN have both arrived before the first read.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !server
                .ready(Interest::READABLE)
                .await
                .unwrap()
                .is_read_closed()
            {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the FIN arrives");
        let mut s = SharedSocket::new(Vec::new(), server);
        let mut buf = [0u8; 64];
        assert_eq!(read_within(&mut s, &mut buf).await, 3);
        assert_eq!(read_within(&mut s, &mut buf).await, 0, "end of stream");
    }
}
