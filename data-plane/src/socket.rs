//! A client's TCP socket shared between its HTTP connection and the fan-out. hyper (and after an
//! upgrade, the WebSocket library) reads and writes the socket through a [`SharedSocket`]; a
//! WebSocket connection also keeps the socket itself ([`SharedSocket::share`]), so the fan-out
//! can write a publication straight to an idle connection's socket instead of waking its task
//! (see [`crate::client::Outbox::lend_or_push`] for who may write when).
//!
//! A socket handed over by the edge starts with the request head the edge already read: the
//! wrapper replays it before reading the socket, as [`rotor_tenant_config::prefixed`] does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rotor_tenant_config::prefixed::Prefix;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
            // time. A spurious readiness clears itself: `try_read` resets it on `WouldBlock`.
            let n = out.remaining().min(READ_CHUNK);
            match this.inner.try_read(out.initialize_unfilled_to(n)) {
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
}
