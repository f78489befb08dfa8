//! A TCP stream whose first bytes were already read off the socket: the request head the edge
//! parsed to route a connection. Both planes serve such streams with hyper (the edge its own
//! dashboard and API, the tenant a handed-off socket), so they replay the head first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes already read off a socket, to be read again first.
#[derive(Debug)]
pub struct Prefix {
    bytes: Vec<u8>,
    read: usize,
}

impl Prefix {
    /// `bytes`, none of them replayed yet.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, read: 0 }
    }

    /// Puts `bytes` back in front of what is left, to be read again first (what a reader took
    /// off the stream but did not use).
    pub fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut all = Vec::with_capacity(bytes.len() + self.bytes.len() - self.read);
        all.extend_from_slice(bytes);
        all.extend_from_slice(&self.bytes[self.read..]);
        self.bytes = all;
        self.read = 0;
    }

    /// Copies what is left of the prefix into `out`, as much as fits; false when nothing is
    /// left (read the socket then).
    pub fn replay(&mut self, out: &mut ReadBuf<'_>) -> bool {
        if self.read >= self.bytes.len() {
            return false;
        }
        let rest = &self.bytes[self.read..];
        let n = rest.len().min(out.remaining());
        out.put_slice(&rest[..n]);
        self.read += n;
        if self.read == self.bytes.len() {
            // Free the head once replayed: the connection may live for hours.
            self.bytes = Vec::new();
            self.read = 0;
        }
        true
    }
}

/// Yields `prefix` first, then reads from the socket; writes go straight to the socket.
pub struct PrefixedStream {
    prefix: Prefix,
    inner: TcpStream,
}

impl PrefixedStream {
    pub fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Self {
            prefix: Prefix::new(prefix),
            inner,
        }
    }
}

impl AsyncRead for PrefixedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.prefix.replay(out) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl AsyncWrite for PrefixedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn unread_bytes_come_back_before_what_is_left() {
        let mut p = Prefix::new(b"abcdef".to_vec());
        let mut buf = [0u8; 4];
        let mut out = ReadBuf::new(&mut buf);
        assert!(p.replay(&mut out));
        assert_eq!(out.filled(), b"abcd");
        p.unread(b"cd");
        p.unread(b"");
        let mut buf = [0u8; 16];
        let mut out = ReadBuf::new(&mut buf);
        assert!(p.replay(&mut out));
        assert_eq!(out.filled(), b"cdef");
        assert!(!p.replay(&mut ReadBuf::new(&mut [0u8; 4])));
        p.unread(b"xy");
        let mut buf = [0u8; 16];
        let mut out = ReadBuf::new(&mut buf);
        assert!(p.replay(&mut out));
        assert_eq!(out.filled(), b"xy");
    }

    #[tokio::test]
    async fn the_prefix_is_read_before_the_socket_and_writes_pass_through() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b" world").await.unwrap();
            c.shutdown().await.unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.unwrap();
            back
        });
        let (sock, _) = listener.accept().await.unwrap();
        let mut s = PrefixedStream::new(b"hello".to_vec(), sock);
        let mut got = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            s.read_to_string(&mut got),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(got, "hello world");
        s.write_all(b"ok").await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
        assert_eq!(client.await.unwrap(), b"ok");
    }
}
