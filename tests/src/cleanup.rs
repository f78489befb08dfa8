//! Runs async cleanup from `Drop`: on its own thread and runtime, bounded by a timeout, reporting
//! failures on stderr instead of panicking.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, Result};

/// Runs the future made by `make` to completion on a fresh current-thread runtime on a separate
/// thread, waiting at most `timeout` for it. Safe to call from `Drop` inside or outside a Tokio
/// runtime; blocks the calling thread until the cleanup finished or timed out.
pub(crate) fn run_in_drop<F, Fut>(what: &str, timeout: Duration, make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>>,
{
    let (done_tx, done_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("rotor-e2e-cleanup".to_owned())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(async {
                        tokio::time::timeout(timeout, make())
                            .await
                            .unwrap_or_else(|_| Err(anyhow!("timed out after {timeout:?}")))
                    })
                });
            // The receiver may have given up waiting; nothing left to report to then.
            let _ = done_tx.send(result);
        });
    if let Err(error) = spawned {
        eprintln!("rotor-e2e: {what}: cannot start a cleanup thread: {error}");
        return;
    }
    match done_rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("rotor-e2e: {what} failed: {error:#}"),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            eprintln!("rotor-e2e: {what} did not finish within {timeout:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            eprintln!("rotor-e2e: {what} failed: the cleanup thread panicked")
        }
    }
}
