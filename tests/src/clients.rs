//! Runs the Node.js and Python interop clients in `tests/clients` (real Centrifugo SDKs pinned
//! by lockfiles, installed by `scripts/install-test-deps.sh`) to completion, with a timeout.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::paths;
use crate::process::{indent, ProcessBuilder};

/// How long a client script may run unless told otherwise.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

const OUTPUT_GRACE: Duration = Duration::from_secs(2);
const INSTALL_HINT: &str = "run `scripts/install-test-deps.sh` (or `make test`)";

/// Runs `node tests/clients/node/<script> <args…>` with `env` added, for at most 60 s.
///
/// Returns its output whatever its exit status; use [`ClientOutput::ensure_success`] to require
/// a zero exit.
pub async fn run_node(script: &str, args: &[&str], env: &[(&str, &str)]) -> Result<ClientOutput> {
    ClientScript::node(script)
        .args(args.iter().copied())
        .envs(env.iter().copied())
        .run()
        .await
}

/// Runs `tests/clients/python/<script> <args…>` with the venv's python and `env` added, for at
/// most 60 s.
///
/// Returns its output whatever its exit status; use [`ClientOutput::ensure_success`] to require
/// a zero exit.
pub async fn run_python(script: &str, args: &[&str], env: &[(&str, &str)]) -> Result<ClientOutput> {
    ClientScript::python(script)
        .args(args.iter().copied())
        .envs(env.iter().copied())
        .run()
        .await
}

/// The interpreter a client script runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    Node,
    Python,
}

/// A client script to run; [`run_node`] and [`run_python`] are the short forms.
#[derive(Clone, Debug)]
pub struct ClientScript {
    runtime: Runtime,
    script: String,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    timeout: Duration,
}

/// A resolved command line for a client script.
pub(crate) struct ClientCommand {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    dir: PathBuf,
}

impl ClientCommand {
    /// A [`ProcessBuilder`] for this command, to run the client alongside the test.
    pub(crate) fn into_builder(self) -> ProcessBuilder {
        ProcessBuilder::program(self.program)
            .args(self.args)
            .envs(self.envs)
            .current_dir(self.dir)
    }
}

impl ClientScript {
    /// `tests/clients/node/<script>` under `node`.
    pub fn node(script: &str) -> Self {
        Self::new(Runtime::Node, script)
    }

    /// `tests/clients/python/<script>` under `tests/clients/python/.venv/bin/python`.
    pub fn python(script: &str) -> Self {
        Self::new(Runtime::Python, script)
    }

    fn new(runtime: Runtime, script: &str) -> Self {
        Self {
            runtime,
            script: script.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            timeout: DEFAULT_CLIENT_TIMEOUT,
        }
    }

    /// Appends arguments after the script path.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets environment variables (on top of the inherited environment).
    pub fn envs<I, K, V>(mut self, envs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.envs.extend(
            envs.into_iter()
                .map(|(key, value)| (key.into(), value.into())),
        );
        self
    }

    /// How long the script may run (default [`DEFAULT_CLIENT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn describe(&self) -> String {
        let runtime = match self.runtime {
            Runtime::Node => "node",
            Runtime::Python => "python",
        };
        format!("{runtime} {}", self.script)
    }

    /// The interpreter, script path and directory, checking the dependencies are installed.
    pub(crate) fn command(&self) -> Result<ClientCommand> {
        let (dir, program, mut envs) = match self.runtime {
            Runtime::Node => {
                let dir = paths::clients_dir().join("node");
                if !dir.join("node_modules").is_dir() {
                    bail!("{} has no node_modules; {INSTALL_HINT}", dir.display());
                }
                (dir, PathBuf::from("node"), Vec::new())
            }
            Runtime::Python => {
                let dir = paths::clients_dir().join("python");
                let python = dir.join(".venv").join("bin").join("python");
                if !python.is_file() {
                    bail!("{} is missing; {INSTALL_HINT}", python.display());
                }
                let envs = vec![
                    (OsString::from("PYTHONUNBUFFERED"), OsString::from("1")),
                    (
                        OsString::from("PYTHONDONTWRITEBYTECODE"),
                        OsString::from("1"),
                    ),
                ];
                (dir, python, envs)
            }
        };
        let script = dir.join(&self.script);
        if !script.is_file() {
            bail!("no client script {}", script.display());
        }
        envs.extend(self.envs.iter().cloned());
        let mut args = vec![script.into_os_string()];
        args.extend(self.args.iter().cloned());
        Ok(ClientCommand {
            program,
            args,
            envs,
            dir,
        })
    }

    /// Runs the script to completion (or kills it at the timeout, which is an error carrying
    /// the output so far).
    pub async fn run(self) -> Result<ClientOutput> {
        let describe = self.describe();
        let command = self.command()?;
        let mut child = Command::new(&command.program)
            .args(&command.args)
            .envs(command.envs.iter().map(|(key, value)| (key, value)))
            .current_dir(&command.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {describe}"))?;
        let stdout = Collected::drain(child.stdout.take());
        let stderr = Collected::drain(child.stderr.take());

        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        if waited.is_err() {
            // Fails only if it already exited, which is fine.
            let _ = child.start_kill();
            let _ = tokio::time::timeout(OUTPUT_GRACE, child.wait()).await;
        }
        let stdout = stdout.finish().await;
        let stderr = stderr.finish().await;
        match waited {
            Ok(status) => Ok(ClientOutput {
                describe,
                status: status.context("waiting for the client script")?,
                stdout,
                stderr,
            }),
            Err(_) => bail!(
                "{describe} did not finish within {:?} (killed it)\nstdout:\n{}\nstderr:\n{}",
                self.timeout,
                indent(&stdout),
                indent(&stderr)
            ),
        }
    }
}

/// What a client script printed, and how it exited.
#[derive(Debug)]
pub struct ClientOutput {
    describe: String,
    /// The exit status.
    pub status: ExitStatus,
    /// Everything printed on stdout (lossily decoded as UTF-8).
    pub stdout: String,
    /// Everything printed on stderr (lossily decoded as UTF-8).
    pub stderr: String,
}

impl ClientOutput {
    /// `self` if the script exited with status 0, else an error with both outputs.
    pub fn ensure_success(self) -> Result<Self> {
        if self.status.success() {
            Ok(self)
        } else {
            bail!("{self}")
        }
    }

    /// Stdout parsed as one JSON value; the error carries both outputs.
    pub fn stdout_json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "stdout of {} is not the expected JSON\n{self}",
                self.describe
            )
        })
    }

    /// Each non-empty stdout line parsed as JSON (for scripts that print one event per line).
    pub fn stdout_json_lines<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).with_context(|| {
                    format!(
                        "a stdout line of {} is not the expected JSON: {line}\n{self}",
                        self.describe
                    )
                })
            })
            .collect()
    }
}

impl fmt::Display for ClientOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.describe,
            self.status,
            indent(&self.stdout),
            indent(&self.stderr)
        )
    }
}

/// Bytes read from a pipe so far, kept even if the reader is cut short.
struct Collected {
    bytes: Arc<Mutex<Vec<u8>>>,
    task: Option<JoinHandle<()>>,
}

impl Collected {
    fn drain<R>(reader: Option<R>) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let task = reader.map(|mut reader| {
            let bytes = Arc::clone(&bytes);
            tokio::spawn(async move {
                let mut chunk = [0u8; 8192];
                while let Ok(read @ 1..) = reader.read(&mut chunk).await {
                    if let Ok(mut bytes) = bytes.lock() {
                        bytes.extend_from_slice(&chunk[..read]);
                    }
                }
            })
        });
        Self { bytes, task }
    }

    /// Waits (bounded) for end of file and returns the text.
    async fn finish(mut self) -> String {
        if let Some(task) = self.task.take() {
            if tokio::time::timeout(OUTPUT_GRACE, task).await.is_err() {
                // A grandchild holds the pipe open; keep what arrived.
            }
        }
        let bytes = match self.bytes.lock() {
            Ok(bytes) => bytes.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
