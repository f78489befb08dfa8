//! Listening sockets for the public endpoints of both planes: tokio binds with an accept queue of 1024, which
//! a burst of reconnecting clients overflows; a dropped SYN costs each of those clients a full
//! second (the kernel's first SYN retransmit). Rotor re-listens with a deep queue instead.

use std::io;

use tokio::net::TcpListener;

/// The accept queue Rotor asks for; the kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: i32 = 65_535;

/// Binds `addr` like `TcpListener::bind` and deepens its accept queue to [`BACKLOG`].
pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    deepen(&listener)?;
    Ok(listener)
}

/// Deepens the accept queue of a listening socket (Linux applies a second `listen()` to the
/// socket in place).
pub fn deepen(listener: &TcpListener) -> io::Result<()> {
    socket2::SockRef::from(listener).listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deepened_listener_still_accepts() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        assert_eq!(
            accepted.unwrap().1,
            connected.unwrap().local_addr().unwrap()
        );
    }
}
