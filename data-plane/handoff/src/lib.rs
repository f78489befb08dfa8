//! Connection hand-off, both ends of its wire format: the control plane's edge routes a
//! WebSocket upgrade request, then passes the client's TCP socket itself to the tenant process
//! (SCM_RIGHTS over the tenant's Unix-domain hand-off socket) together with the rewritten
//! request head, and leaves the data path entirely.
//!
//! One exchange per Unix connection:
//! - edge → tenant: a 4-byte big-endian length `N` and `N` payload bytes (the rewritten request
//!   head, then any bytes the edge already read after it); the TCP socket rides as SCM_RIGHTS
//!   on the first bytes.
//! - tenant → edge: one byte, [`ACCEPTED`] (the tenant owns the connection now) or
//!   [`REFUSED`] (it did not touch the connection; the edge may still serve it another way).
//!
//! Every step is bounded by [`STEP_TIMEOUT`]; nothing here blocks the runtime (the syscalls run
//! in tokio's readiness loop).

pub mod grpc;

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rustix::net::{
    ipproto, sockopt, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};

/// Largest payload accepted (request head plus early bytes; the edge reads at most 16 KiB of
/// head before routing).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Bound on each step: connect, send, receive, acknowledge.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// The tenant took the connection.
pub const ACCEPTED: u8 = 1;
/// The tenant refused the connection without touching it.
pub const REFUSED: u8 = 0;
/// Longest socket path `sun_path` holds (108 bytes with the terminating NUL).
const MAX_PATH: usize = 107;
/// Descriptors a receive has room for: more than one is refused, and room for a few lets the
/// receiver tell "too many" from "truncated" (the kernel closes what does not fit).
const RECV_FDS: usize = 4;
/// Accept queue of the hand-off socket (the kernel caps it at `net.core.somaxconn`); a full
/// queue makes the edge fall back to proxying.
const BACKLOG: i32 = 4096;

/// Why a hand-off message was not taken.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("hand-off i/o: {0}")]
    Io(#[from] io::Error),
    #[error("hand-off step timed out")]
    Timeout,
    #[error("hand-off connection closed mid-message")]
    Eof,
    #[error("hand-off message carries {0} file descriptors, not exactly one")]
    FdCount(usize),
    #[error("hand-off message carries more file descriptors than fit")]
    FdTruncated,
    #[error("hand-off payload of {0} bytes exceeds {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("handed-off descriptor is not a connected TCP stream socket")]
    NotTcp,
    #[error("the tenant refused the connection")]
    Refused,
}

/// Whether `path` fits a Unix socket address.
pub fn path_fits(path: &Path) -> bool {
    path.as_os_str().len() <= MAX_PATH
}

// ---------------------------------------------------------------- edge side

/// How a hand-off ended, for the edge.
#[derive(Debug)]
pub enum Outcome {
    /// The tenant owns the connection: drop the local copy of the socket.
    Accepted,
    /// The socket was not sent, or the tenant refused it untouched: serve it another way.
    NotTaken(HandoffError),
    /// The socket was sent but no acknowledgement came: the connection's state is unknown,
    /// close the local copy.
    Unknown(HandoffError),
}

/// Hands `socket` and `payload` to the tenant listening at `path`.
pub async fn hand_off(path: &Path, socket: BorrowedFd<'_>, payload: &[u8]) -> Outcome {
    if payload.len() > MAX_PAYLOAD {
        return Outcome::NotTaken(HandoffError::TooLarge(payload.len()));
    }
    let mut unix = match step(UnixStream::connect(path)).await {
        Ok(u) => u,
        Err(e) => return Outcome::NotTaken(e),
    };
    let msg = message(payload);
    // Until sendmsg succeeds the descriptor has not left; afterwards it may be in use.
    match step(send_first(&unix, socket, &msg)).await {
        Ok(sent) => {
            if let Err(e) = step(unix.write_all(&msg[sent..])).await {
                return Outcome::Unknown(e);
            }
        }
        Err(e) => return Outcome::NotTaken(e),
    }
    match step(unix.read_u8()).await {
        Ok(ACCEPTED) => Outcome::Accepted,
        Ok(_) => Outcome::NotTaken(HandoffError::Refused),
        Err(e) => Outcome::Unknown(e),
    }
}

fn message(payload: &[u8]) -> Vec<u8> {
    // `payload.len() <= MAX_PAYLOAD` was checked, so it fits in u32.
    let mut msg = Vec::with_capacity(4 + payload.len());
    msg.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    msg.extend_from_slice(payload);
    msg
}

/// One `sendmsg` carrying the descriptor and as much of `msg` as the socket takes; returns how
/// many bytes went.
async fn send_first(unix: &UnixStream, socket: BorrowedFd<'_>, msg: &[u8]) -> io::Result<usize> {
    let fds = [socket];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    unix.async_io(Interest::WRITABLE, || {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("control buffer too small"));
        }
        Ok(rustix::net::sendmsg(
            unix,
            &[IoSlice::new(msg)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?)
    })
    .await
}

// ---------------------------------------------------------------- tenant side

/// Binds the hand-off socket at `path`, private to this user (0600), replacing a stale socket
/// left by an earlier process; refuses to replace anything that is not a socket.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if !path_fits(path) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path longer than {MAX_PATH} bytes"),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    rustix::net::listen(&listener, BACKLOG)?;
    Ok(listener)
}

/// A connection received from the edge.
#[derive(Debug)]
pub struct Received {
    /// The client's TCP socket (still in blocking mode, as sent).
    pub socket: std::net::TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Bytes to serve before reading from the socket.
    pub payload: Vec<u8>,
}

/// Receives one hand-off message, checking that it carries exactly one descriptor, that the
/// descriptor is a connected TCP socket and that the payload is within [`MAX_PAYLOAD`]. The
/// caller answers with [`ACCEPTED`] or [`REFUSED`].
pub async fn receive(unix: &UnixStream) -> Result<Received, HandoffError> {
    tokio::time::timeout(STEP_TIMEOUT, receive_unbounded(unix))
        .await
        .map_err(|_| HandoffError::Timeout)?
}

async fn receive_unbounded(unix: &UnixStream) -> Result<Received, HandoffError> {
    let mut fds = Vec::new();
    let mut header = [0u8; 4];
    fill(unix, &mut header, &mut fds).await?;
    // The descriptor rides on the first bytes: a header without it is malformed.
    if fds.len() != 1 {
        return Err(HandoffError::FdCount(fds.len()));
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_PAYLOAD {
        return Err(HandoffError::TooLarge(len));
    }
    let mut payload = vec![0; len];
    fill(unix, &mut payload, &mut fds).await?;
    let fd = match <[OwnedFd; 1]>::try_from(fds) {
        Ok([fd]) => fd,
        Err(fds) => return Err(HandoffError::FdCount(fds.len())),
    };
    if !is_tcp_stream(fd.as_fd()) {
        return Err(HandoffError::NotTcp);
    }
    let socket = std::net::TcpStream::from(fd);
    let peer = socket.peer_addr().map_err(|_| HandoffError::NotTcp)?;
    Ok(Received {
        socket,
        peer,
        payload,
    })
}

/// Reads exactly `buf.len()` bytes, collecting any descriptors that come along.
async fn fill(
    unix: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<(), HandoffError> {
    let mut got = 0;
    while got < buf.len() {
        let mut truncated = false;
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(RECV_FDS))];
        let n = unix
            .async_io(Interest::READABLE, || {
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let msg = rustix::net::recvmsg(
                    unix,
                    &mut [IoSliceMut::new(&mut buf[got..])],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )?;
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = m {
                        fds.extend(received);
                    }
                }
                truncated |= msg.flags.contains(ReturnFlags::CTRUNC);
                Ok(msg.bytes)
            })
            .await?;
        if truncated {
            return Err(HandoffError::FdTruncated);
        }
        if n == 0 {
            return Err(HandoffError::Eof);
        }
        got += n;
    }
    Ok(())
}

fn is_tcp_stream(fd: BorrowedFd<'_>) -> bool {
    sockopt::socket_type(fd).ok() == Some(SocketType::STREAM)
        && matches!(sockopt::socket_domain(fd), Ok(d) if d == AddressFamily::INET || d == AddressFamily::INET6)
        && sockopt::socket_protocol(fd).ok().flatten() == Some(ipproto::TCP)
}

async fn step<T, E: Into<HandoffError>>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, HandoffError> {
    match tokio::time::timeout(STEP_TIMEOUT, f).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(HandoffError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_do_not_fit() {
        assert!(path_fits(Path::new("/run/rotor/prj_0123456789abcdef.sock")));
        assert!(!path_fits(&Path::new("/").join("a".repeat(120))));
    }
}
