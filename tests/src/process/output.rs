//! The output a spawned process has printed so far, captured line by line from its stdout and
//! stderr, with a way to await a line.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Stdout and stderr lines, interleaved in the order they arrived (each ends with `\n`).
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    text: watch::Sender<String>,
}

impl CapturedOutput {
    pub(crate) fn new() -> Self {
        Self {
            text: watch::Sender::new(String::new()),
        }
    }

    /// Spawns a task that appends every line `reader` yields until end of file.
    pub(crate) fn drain<R>(&self, reader: R) -> JoinHandle<()>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let text = self.text.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let mut decoded = String::from_utf8_lossy(&line).into_owned();
                        if !decoded.ends_with('\n') {
                            decoded.push('\n');
                        }
                        text.send_modify(|text| text.push_str(&decoded));
                    }
                }
            }
        })
    }

    /// Everything captured so far.
    pub(crate) fn snapshot(&self) -> String {
        self.text.borrow().clone()
    }

    /// Resolves once `found` returns `Some` for the captured text, with that value. Pending
    /// forever if it never does: callers bound it with a timeout.
    pub(crate) fn wait_for<T>(
        &self,
        mut found: impl FnMut(&str) -> Option<T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static
    where
        T: Send + 'static,
    {
        let mut receiver = self.text.subscribe();
        async move {
            let mut value = None;
            // The sender lives as long as `self`, and `CapturedOutput` holds one, so this only
            // errs once everything is being torn down; then pend like "never found".
            let seen = receiver
                .wait_for(|text| {
                    value = found(text);
                    value.is_some()
                })
                .await
                .is_ok();
            match value {
                Some(value) if seen => value,
                _ => std::future::pending().await,
            }
        }
    }

    /// Waits at most `timeout` until a captured line contains `needle`.
    pub(crate) async fn wait_for_text(&self, needle: &str, timeout: Duration) -> Result<()> {
        let needle_owned = needle.to_owned();
        let seen = self.wait_for(move |text| text.contains(&needle_owned).then_some(()));
        tokio::time::timeout(timeout, seen).await.map_err(|_| {
            anyhow!(
                "no output containing {needle:?} within {timeout:?}; output so far:\n{}",
                indent(&self.snapshot())
            )
        })
    }
}

/// Output indented for an error message, or a note that there was none.
pub(crate) fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "    (no output)".to_owned();
    }
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
