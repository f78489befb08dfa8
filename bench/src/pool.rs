//! The coordinator's side of its worker processes: spawns `rotor-loadgen worker --spec …`
//! children (each with its own fd limit), gathers their JSON-line events into one channel and
//! sends them commands. Children are killed when the pool is dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::wire::{Command as WorkerCommand, Event, WorkerSpec};

/// Why the pool failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("spawning a worker: {0}")]
    Spawn(std::io::Error),
    #[error("worker spec: {0}")]
    Spec(#[from] serde_json::Error),
    #[error("all workers exited")]
    Gone,
    #[error("timed out waiting for the workers ({0})")]
    Timeout(&'static str),
    #[error("writing to worker {0}: {1}")]
    Write(usize, std::io::Error),
}

/// Running workers.
pub struct Pool {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    events: mpsc::Receiver<(usize, Event)>,
}

impl Pool {
    /// Starts one process per spec.
    pub fn spawn(specs: &[WorkerSpec]) -> Result<Self, PoolError> {
        let exe = std::env::current_exe().map_err(PoolError::Spawn)?;
        let (tx, events) = mpsc::channel(1024);
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        for spec in specs {
            let mut child = Command::new(&exe)
                .arg("worker")
                .arg("--spec")
                .arg(serde_json::to_string(spec)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(PoolError::Spawn)?;
            let stdout = child.stdout.take().ok_or(PoolError::Gone)?;
            stdins.push(child.stdin.take().ok_or(PoolError::Gone)?);
            let tx = tx.clone();
            let index = spec.index;
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Event>(&line) {
                        Ok(ev) => {
                            if tx.send((index, ev)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => eprintln!("worker {index}: unreadable line ({e}): {line:.120}"),
                    }
                }
            });
            children.push(child);
        }
        Ok(Self {
            children,
            stdins,
            events,
        })
    }

    /// The workers' process ids (for their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.stdins.len()
    }

    /// True without workers.
    pub fn is_empty(&self) -> bool {
        self.stdins.is_empty()
    }

    /// The next event from any worker, within `limit`.
    pub async fn next(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<(usize, Event), PoolError> {
        match tokio::time::timeout(limit, self.events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(PoolError::Gone),
            Err(_) => Err(PoolError::Timeout(what)),
        }
    }

    /// Sends a command to every worker.
    pub async fn broadcast(&mut self, cmd: &WorkerCommand) -> Result<(), PoolError> {
        let line = cmd.line();
        for (i, stdin) in self.stdins.iter_mut().enumerate() {
            stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| PoolError::Write(i, e))?;
            stdin.flush().await.map_err(|e| PoolError::Write(i, e))?;
        }
        Ok(())
    }

    /// Asks every worker to stop and waits (bounded) for them to exit.
    pub async fn stop(mut self) {
        let _ = self.broadcast(&WorkerCommand::Stop).await;
        self.stdins.clear();
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}
