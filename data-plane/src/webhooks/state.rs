//! The memory engine's answer to a process killed without cleaning up: with
//! `ROTOR_WEBHOOK_STATE_FILE` set (by the operator or the supervisor, never by a tenant's
//! config), the process writes what it holds — channels, users in them, connections — to
//! that file about once a second when it changed (written whole to a temporary file, then
//! renamed). The next process started with the same file (the supervisor's restart) takes
//! those as held releases and disconnects: whatever is not taken again within `grace` is
//! sent as `channel_vacated`, `member_removed` and `client_disconnected` (code 3000, reason
//! `process lost`); clients that reconnected in time cost nothing. A graceful stop removes
//! the file, having sent everything itself. Changes of the last second before the kill are
//! not in the file.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::event::unix_ms;
use super::Webhooks;
use crate::node_view::NodeView;

/// The environment variable naming the state file.
pub const STATE_FILE_ENV: &str = "ROTOR_WEBHOOK_STATE_FILE";

/// What one process held.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    /// When it was written (unix ms).
    pub time_ms: u64,
    /// (channel, user): user empty for the channel's occupancy.
    pub holdings: Vec<(String, String)>,
    /// (client id, user) of each connection.
    pub clients: Vec<(String, String)>,
}

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("webhook state file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook state file {path}: {source}")]
    Format {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The file `ROTOR_WEBHOOK_STATE_FILE` names, if any.
    pub fn from_env() -> Option<Self> {
        std::env::var_os(STATE_FILE_ENV)
            .filter(|p| !p.is_empty())
            .map(|p| Self { path: p.into() })
    }

    #[cfg(test)]
    pub fn new(path: impl AsRef<std::path::Path>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
        }
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// What the previous process saved (`None` when there is no file).
    pub fn load(&self) -> Result<Option<Saved>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.shown(),
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Format {
                path: self.shown(),
                source,
            })
    }

    /// Replaces the file with `saved` (a temporary file renamed over it).
    pub fn save(&self, saved: &Saved) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: self.shown(),
            source,
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let bytes = serde_json::to_vec(saved).map_err(|source| StateError::Format {
            path: self.shown(),
            source,
        })?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Removes the file (nothing is held).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What `node` holds now.
fn snapshot(node: &dyn NodeView, hooks: &Webhooks) -> Saved {
    let holdings = hooks
        .tracker
        .lock()
        .holdings()
        .into_iter()
        .map(|k| (k.channel.to_string(), k.user.to_string()))
        .collect();
    let mut clients = Vec::new();
    for user in node.registry().user_ids() {
        for handle in node.registry().find(&user, "", "") {
            clients.push((handle.id.to_string(), user.to_string()));
        }
    }
    Saved {
        time_ms: unix_ms(),
        holdings,
        clients,
    }
}

/// Writes the file about once a second while something changed; when the process stops
/// gracefully, removes it once everything held was sent (the only writer, so no write can
/// land after the removal).
/// Writes the state file a second after a change (changes within that second go into one
/// write); sleeps while nothing changes, so an idle tenant has no timer here. On a stop it
/// waits for the worker to send what was held, then removes the file.
pub(super) async fn run(
    node: Weak<dyn NodeView>,
    hooks: Arc<Webhooks>,
    file: StateFile,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = hooks.state_changed.notified() => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => {}
                }
            }
            _ = stop.cancelled() => {}
        }
        if stop.is_cancelled() {
            while !hooks.flushed.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            file.remove();
            hooks.state_open.store(false, Ordering::Release);
            break;
        }
        if !hooks.dirty.swap(false, Ordering::AcqRel) {
            continue;
        }
        let Some(node) = node.upgrade() else { break };
        let saved = snapshot(&*node, &hooks);
        drop(node);
        let file = file.clone();
        let written = tokio::task::spawn_blocking(move || file.save(&saved)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "webhook state not saved");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_reads_back_and_a_missing_file_is_no_state() {
        let dir = std::env::temp_dir().join(format!("rotor-wh-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = StateFile::new(dir.join("state.json"));
        assert_eq!(file.load().unwrap(), None);
        let saved = Saved {
            time_ms: 7,
            holdings: vec![("chat:1".into(), "".into()), ("chat:1".into(), "u1".into())],
            clients: vec![("c1".into(), "u1".into())],
        };
        file.save(&saved).unwrap();
        assert_eq!(file.load().unwrap(), Some(saved));
        file.remove();
        assert_eq!(file.load().unwrap(), None);
        std::fs::write(dir.join("state.json"), b"garbage").unwrap();
        assert!(file.load().is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
