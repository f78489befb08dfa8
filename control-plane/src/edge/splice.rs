//! Byte-for-byte relaying of the requests the edge cannot hand over (a chunked or large body, a
//! body still arriving after the head timeout) between the client and its tenant. A relayed
//! connection holds two of the edge's descriptors, so it must not outlive its use: when neither
//! side has sent a byte for the idle time (`ROTOR_EDGE_SPLICE_IDLE_MS`, 60 s by default; a
//! Centrifugo stream pings every 25 s) or one side stops taking bytes for that long, both are
//! closed. Each direction is closed for writing once its reader ends, as an HTTP client
//! half-closing after its request expects.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes read from one side before they are written to the other.
const CHUNK: usize = 16 * 1024;

/// The idle time after which a relayed connection is closed.
pub fn idle_timeout() -> Duration {
    static IDLE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *IDLE.get_or_init(|| {
        std::env::var("ROTOR_EDGE_SPLICE_IDLE_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(60))
    })
}

/// Relays between `client` and `upstream` until both directions end, or until nothing has
/// moved for `idle` (an error of kind `TimedOut`).
pub async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
) -> io::Result<()> {
    let (mut client_rx, mut client_tx) = client.split();
    let (mut upstream_rx, mut upstream_tx) = upstream.split();
    let mut up = vec![0u8; CHUNK];
    let mut down = vec![0u8; CHUNK];
    let (mut up_done, mut down_done) = (false, false);
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "relayed connection idle");
    while !(up_done && down_done) {
        let deadline = Instant::now() + idle;
        tokio::select! {
            read = client_rx.read(&mut up), if !up_done => match read? {
                0 => {
                    up_done = true;
                    upstream_tx.shutdown().await?;
                }
                n => tokio::time::timeout_at(deadline, upstream_tx.write_all(&up[..n]))
                    .await
                    .map_err(|_| timed_out())??,
            },
            read = upstream_rx.read(&mut down), if !down_done => match read? {
                0 => {
                    down_done = true;
                    client_tx.shutdown().await?;
                }
                n => tokio::time::timeout_at(deadline, client_tx.write_all(&down[..n]))
                    .await
                    .map_err(|_| timed_out())??,
            },
            _ = tokio::time::sleep_until(deadline) => return Err(timed_out()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Two connected sockets: (the one handed to `relay`, its peer).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (b.unwrap().0, a.unwrap())
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_while_either_side_keeps_talking() {
        let (mut client, mut client_peer) = pair().await;
        let (mut upstream, mut upstream_peer) = pair().await;
        let idle = Duration::from_millis(300);
        let relay = tokio::spawn(async move { relay(&mut client, &mut upstream, idle).await });
        // Longer in all than the idle time, but never idle that long.
        for i in 0..6u8 {
            client_peer.write_all(&[i]).await.unwrap();
            let mut b = [0u8; 1];
            upstream_peer.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i);
            upstream_peer.write_all(&[i + 100]).await.unwrap();
            client_peer.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i + 100);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each side's end reaches the other; then the relay is done.
        client_peer.shutdown().await.unwrap();
        let mut rest = Vec::new();
        upstream_peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        upstream_peer.shutdown().await.unwrap();
        client_peer.read_to_end(&mut rest).await.unwrap();
        relay.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_silent_connection_is_ended_after_the_idle_time() {
        let (mut client, _client_peer) = pair().await;
        let (mut upstream, _upstream_peer) = pair().await;
        let started = std::time::Instant::now();
        let ended = relay(&mut client, &mut upstream, Duration::from_millis(200)).await;
        assert_eq!(ended.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
