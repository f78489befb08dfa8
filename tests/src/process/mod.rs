//! `TestProcess`: a spawned server (or long-running client) whose output is captured, which is
//! ready once it says so, and which is killed when the test lets go of it.

mod builder;
mod output;

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub use builder::{ProcessBuilder, Readiness, DEFAULT_LISTENING_MARKER, DEFAULT_READY_TIMEOUT};
pub(crate) use output::indent;
use output::CapturedOutput;

/// How long [`TestProcess::terminate`] waits for the process to exit after SIGTERM.
pub const DEFAULT_TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for the last output once a process has exited (its pipes may be held open
/// by grandchildren, so this is bounded).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// A running child process with stdout and stderr captured.
///
/// Created ready: [`spawn`](Self::spawn) and friends return once the process printed its
/// readiness line (by default `… listening on <addr>`), or fail with its output if it exits or
/// stays silent past the timeout. Dropping it kills the process (SIGKILL);
/// [`terminate`](Self::terminate) stops it gracefully instead.
pub struct TestProcess {
    label: String,
    child: Child,
    addr: Option<SocketAddr>,
    output: CapturedOutput,
    drains: Vec<JoinHandle<()>>,
    exit_status: Option<ExitStatus>,
}

impl TestProcess {
    /// Spawns the workspace binary `binary` (e.g. `rotor-data-plane`, see
    /// [`paths::binary_path`](crate::paths::binary_path)) and waits up to 20 s until it prints
    /// `listening on <addr>`.
    pub async fn spawn(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<Self> {
        ProcessBuilder::workspace_binary(binary)?
            .args(args.iter().copied())
            .envs(envs.iter().copied())
            .spawn()
            .await
    }

    /// Like [`spawn`](Self::spawn) for any program (found on `PATH` unless it is a path).
    pub async fn spawn_program(
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self> {
        ProcessBuilder::program(program)
            .args(args.iter().copied())
            .envs(envs.iter().copied())
            .spawn()
            .await
    }

    /// A builder for the workspace binary `binary`, for custom readiness, timeout or directory.
    pub fn builder(binary: &str) -> Result<ProcessBuilder> {
        ProcessBuilder::workspace_binary(binary)
    }

    pub(crate) async fn start(spec: ProcessBuilder) -> Result<Self> {
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(spec.envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &spec.current_dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "spawning {} ({})",
                spec.label,
                spec.program.to_string_lossy()
            )
        })?;

        let output = CapturedOutput::new();
        let mut drains = Vec::with_capacity(2);
        if let Some(stdout) = child.stdout.take() {
            drains.push(output.drain(stdout));
        }
        if let Some(stderr) = child.stderr.take() {
            drains.push(output.drain(stderr));
        }
        let mut process = Self {
            label: spec.label.clone(),
            child,
            addr: None,
            output,
            drains,
            exit_status: None,
        };
        process.addr = process
            .await_readiness(&spec.readiness, spec.ready_timeout)
            .await?;
        Ok(process)
    }

    /// Waits until the readiness line shows up; on failure kills the child and explains why,
    /// with everything it printed.
    async fn await_readiness(
        &mut self,
        readiness: &Readiness,
        timeout: Duration,
    ) -> Result<Option<SocketAddr>> {
        let matcher = readiness.clone();
        let ready = self.output.wait_for(move |text| ready_line(&matcher, text));
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                biased;
                line = ready => Ok(line),
                status = self.child.wait() => Err(status),
            }
        })
        .await;

        let what = match readiness {
            Readiness::ListeningOn(marker) => {
                format!("a line containing {marker:?} and an address")
            }
            Readiness::Line(text) => format!("a line containing {text:?}"),
        };
        match outcome {
            Ok(Ok(line)) => match readiness {
                Readiness::Line(_) => Ok(None),
                Readiness::ListeningOn(marker) => match parse_address(&line, marker) {
                    Some(addr) => Ok(Some(addr)),
                    None => {
                        self.kill_and_collect().await;
                        bail!(
                            "{} printed {line:?}, but no socket address follows {marker:?}; \
                             output:\n{}",
                            self.label,
                            indent(&self.output())
                        )
                    }
                },
            },
            Ok(Err(status)) => {
                self.finish_output().await;
                let status = match status {
                    Ok(status) => {
                        self.exit_status = Some(status);
                        status.to_string()
                    }
                    Err(error) => format!("unknown status ({error})"),
                };
                bail!(
                    "{} exited ({status}) before printing {what}; output:\n{}",
                    self.label,
                    indent(&self.output())
                )
            }
            Err(_) => {
                self.kill_and_collect().await;
                bail!(
                    "{} did not print {what} within {timeout:?} (killed it); output so far:\n{}",
                    self.label,
                    indent(&self.output())
                )
            }
        }
    }

    /// The address from the `listening on <addr>` line.
    ///
    /// # Panics
    /// If the process was spawned with [`Readiness::Line`], which reports no address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.unwrap_or_else(|| {
            panic!(
                "{} was spawned with Readiness::Line and has no address",
                self.label
            )
        })
    }

    /// `http://<addr><path>`, e.g. `process.http_url("/api/publish")`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// `ws://<addr><path>`, e.g. `process.ws_url("/connection/websocket")`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr())
    }

    /// The OS process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The name used in error messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Everything the process printed so far, stdout and stderr lines interleaved.
    pub fn output(&self) -> String {
        self.output.snapshot()
    }

    /// Waits at most `timeout` until a line of output contains `needle`; the error carries the
    /// output so far.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<()> {
        self.output
            .wait_for_text(needle, timeout)
            .await
            .with_context(|| format!("waiting for {} to print {needle:?}", self.label))
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit_status.is_none() {
            self.exit_status = self.child.try_wait()?;
        }
        Ok(self.exit_status)
    }

    /// Sends SIGTERM and waits up to [`DEFAULT_TERMINATE_TIMEOUT`] for the process to exit.
    pub async fn terminate(&mut self) -> Result<ExitStatus> {
        self.terminate_within(DEFAULT_TERMINATE_TIMEOUT).await
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit, then for its last
    /// output. If it does not exit in time it is killed and this fails with its output.
    pub async fn terminate_within(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit_status()? {
            self.finish_output().await;
            return Ok(status);
        }
        let pid = self
            .child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| anyhow!("{} has no pid", self.label))?;
        kill(Pid::from_raw(pid), Signal::SIGTERM)
            .with_context(|| format!("sending SIGTERM to {} (pid {pid})", self.label))?;
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status.with_context(|| format!("waiting for {}", self.label))?;
                self.exit_status = Some(status);
                self.finish_output().await;
                Ok(status)
            }
            Err(_) => {
                self.kill_and_collect().await;
                bail!(
                    "{} did not exit within {timeout:?} after SIGTERM (killed it); output:\n{}",
                    self.label,
                    indent(&self.output())
                )
            }
        }
    }

    /// Kills the process (SIGKILL) and waits briefly for it and its last output.
    pub async fn kill(&mut self) {
        self.kill_and_collect().await;
    }

    async fn kill_and_collect(&mut self) {
        // Fails only if the process is already gone, which is what we want.
        let _ = self.child.start_kill();
        if let Ok(Ok(status)) = tokio::time::timeout(OUTPUT_GRACE, self.child.wait()).await {
            self.exit_status = Some(status);
        }
        self.finish_output().await;
    }

    /// Waits (bounded) until both output pipes reached end of file.
    async fn finish_output(&mut self) {
        let drains = std::mem::take(&mut self.drains);
        let all = futures_util::future::join_all(drains);
        // On timeout the drain tasks keep their pipes; they end with the runtime.
        let _ = tokio::time::timeout(OUTPUT_GRACE, all).await;
    }
}

impl Drop for TestProcess {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            // Fails only if the process is already gone. Tokio reaps it in the background.
            let _ = self.child.start_kill();
        }
        for drain in &self.drains {
            drain.abort();
        }
    }
}

/// The first captured line that makes `readiness` true.
fn ready_line(readiness: &Readiness, text: &str) -> Option<String> {
    let needle = match readiness {
        Readiness::ListeningOn(marker) | Readiness::Line(marker) => marker,
    };
    text.lines()
        .find(|line| line.contains(needle.as_str()))
        .map(str::to_owned)
}

/// The socket address following `marker` in `line`: `… listening on 127.0.0.1:8000`, also
/// accepting `http://`/`ws://` prefixes, `[::1]:8000` and trailing punctuation.
fn parse_address(line: &str, marker: &str) -> Option<SocketAddr> {
    let after = &line[line.find(marker)? + marker.len()..];
    let token = after.split_whitespace().next()?;
    let token = ["http://", "https://", "ws://", "wss://", "tcp://"]
        .iter()
        .find_map(|scheme| token.strip_prefix(scheme))
        .unwrap_or(token);
    let token = token.trim_end_matches(['/', ',', '.', ';', ')', '"', '\'']);
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_address;

    #[test]
    fn addresses_are_parsed_after_the_marker_in_common_spellings() {
        let marker = "listening on";
        for (line, expected) in [
            (
                "rotor-data-plane listening on 127.0.0.1:4000",
                "127.0.0.1:4000",
            ),
            (
                "INFO listening on http://127.0.0.1:80/ (pid 3)",
                "127.0.0.1:80",
            ),
            ("listening on [::1]:9000.", "[::1]:9000"),
        ] {
            assert_eq!(
                parse_address(line, marker),
                Some(expected.parse().unwrap()),
                "{line}"
            );
        }
        assert_eq!(parse_address("listening on port 4000", marker), None);
        assert_eq!(parse_address("ready", marker), None);
    }
}
