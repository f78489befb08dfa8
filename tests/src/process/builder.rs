//! `ProcessBuilder`: what to spawn (a workspace binary, any program, an interop client script),
//! with which arguments and environment, and how to tell it is ready.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::TestProcess;
use crate::{clients, paths};

/// How long [`ProcessBuilder::spawn`] waits for readiness unless told otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The line printed by Rotor's servers once bound: `rotor-data-plane listening on 127.0.0.1:PORT`.
pub const DEFAULT_LISTENING_MARKER: &str = "listening on";

/// When a spawned process counts as ready.
#[derive(Clone, Debug)]
pub enum Readiness {
    /// A line (stdout or stderr) contains this marker followed by the bound address, as in
    /// `rotor-data-plane listening on 127.0.0.1:40123`. The address becomes
    /// [`TestProcess::addr`].
    ListeningOn(String),
    /// A line (stdout or stderr) contains this text. The process has no address.
    Line(String),
}

impl Default for Readiness {
    fn default() -> Self {
        Self::ListeningOn(DEFAULT_LISTENING_MARKER.to_owned())
    }
}

/// A process to spawn; finish with [`spawn`](Self::spawn).
#[derive(Clone, Debug)]
pub struct ProcessBuilder {
    pub(super) program: OsString,
    pub(super) label: String,
    pub(super) args: Vec<OsString>,
    pub(super) envs: Vec<(OsString, OsString)>,
    pub(super) current_dir: Option<PathBuf>,
    pub(super) readiness: Readiness,
    pub(super) ready_timeout: Duration,
}

impl ProcessBuilder {
    /// Any program, found on `PATH` unless it is a path.
    pub fn program(program: impl Into<OsString>) -> Self {
        let program = program.into();
        Self {
            label: PathBuf::from(&program)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| program.to_string_lossy().into_owned()),
            program,
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            readiness: Readiness::default(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// A binary of this workspace (e.g. `rotor-data-plane`), located by [`paths::binary_path`].
    pub fn workspace_binary(name: &str) -> Result<Self> {
        let path = paths::binary_path(name)?;
        Ok(Self::program(path).label(name))
    }

    /// `node tests/clients/node/<script>`, run from that directory. Long-running clients
    /// usually want [`ready_on`](Self::ready_on) with [`Readiness::Line`].
    pub fn node_script(script: &str) -> Result<Self> {
        let command = clients::ClientScript::node(script).command()?;
        Ok(command.into_builder().label(format!("node {script}")))
    }

    /// `tests/clients/python/.venv/bin/python tests/clients/python/<script>`, run from that
    /// directory, unbuffered.
    pub fn python_script(script: &str) -> Result<Self> {
        let command = clients::ClientScript::python(script).command()?;
        Ok(command.into_builder().label(format!("python {script}")))
    }

    /// The name used in error messages (defaults to the program's file name).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable (on top of the inherited environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
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

    /// The working directory of the process (default: the test's).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// When the process counts as ready (default: [`Readiness::ListeningOn`] `"listening on"`).
    pub fn ready_on(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Shorthand for `ready_on(Readiness::ListeningOn(marker))`.
    pub fn listening_marker(self, marker: impl Into<String>) -> Self {
        self.ready_on(Readiness::ListeningOn(marker.into()))
    }

    /// How long to wait for readiness (default [`DEFAULT_READY_TIMEOUT`]).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the process and waits until it is ready; see [`TestProcess`].
    pub async fn spawn(self) -> Result<TestProcess> {
        TestProcess::start(self).await
    }
}
