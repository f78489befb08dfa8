//! The `terraform` CLI driven for a test: the binary (`TERRAFORM_BIN` or `PATH`), a scratch
//! directory whose CLI config points `rotor/rotor` at the workspace's provider
//! (`dev_overrides`, so no registry and no `terraform init`), and bounded runs of plan, apply
//! and output. Shared by `terraform.rs` and `terraform_webhooks.rs`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

/// Bound on one terraform command.
const TERRAFORM_TIMEOUT: Duration = Duration::from_secs(180);

/// The `terraform` executable: `TERRAFORM_BIN`, else the first `terraform` on `PATH`.
fn terraform_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TERRAFORM_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        ensure!(
            bin.is_file(),
            "TERRAFORM_BIN={} is not a file",
            bin.display()
        );
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("terraform"))
        .find(|candidate| candidate.is_file())
        .context(
            "`terraform` is not on PATH and TERRAFORM_BIN is unset; run scripts/install-test-deps.sh",
        )
}

/// The outcome of one terraform command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!(
            "exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A scratch directory holding the CLI config (with the provider's `dev_overrides`) and one
/// sub-directory per Terraform working directory; removed on drop.
pub struct Terraform {
    bin: PathBuf,
    root: PathBuf,
    env: Vec<(String, String)>,
}

impl Terraform {
    pub fn new(endpoint: &str, token: &str) -> Result<Self> {
        let bin = terraform_binary()?;
        let provider = crate::paths::binary_path("terraform-provider-rotor")?;
        let root = std::env::temp_dir().join(format!(
            "rotor-terraform-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        // The override directory holds only the provider, so nothing else there is mistaken
        // for a plugin.
        let plugins = root.join("plugins");
        std::fs::create_dir_all(&plugins)?;
        std::os::unix::fs::symlink(&provider, plugins.join("terraform-provider-rotor"))?;
        let cli_config = root.join("cli.tfrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"rotor/rotor\" = {:?}\n  }}\n  direct {{}}\n}}\n",
                plugins.display().to_string()
            ),
        )?;
        let env = [
            ("TF_CLI_CONFIG_FILE", cli_config.display().to_string()),
            ("TF_IN_AUTOMATION", "1".into()),
            ("TF_INPUT", "0".into()),
            ("CHECKPOINT_DISABLE", "1".into()),
            ("ROTOR_ENDPOINT", endpoint.to_owned()),
            ("ROTOR_TOKEN", token.to_owned()),
            ("RUST_BACKTRACE", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Self { bin, root, env })
    }

    /// A new working directory with `main.tf`.
    pub fn workdir(&self, name: &str, main_tf: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("main.tf"), main_tf)?;
        Ok(dir)
    }

    /// Runs `terraform <args>` in `dir` with a bounded time.
    pub async fn run(&self, dir: &Path, args: &[&str]) -> Result<Run> {
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .args(args)
            .current_dir(dir)
            .env_remove("TF_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let output = tokio::time::timeout(TERRAFORM_TIMEOUT, command.output())
            .await
            .with_context(|| format!("terraform {args:?} did not finish in {TERRAFORM_TIMEOUT:?}"))?
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "terraform {} → exit {} in {:.1?}",
            args.join(" "),
            run.code,
            started.elapsed()
        );
        Ok(run)
    }

    /// Runs a command that must succeed.
    pub async fn ok(&self, dir: &Path, args: &[&str]) -> Result<Run> {
        let run = self.run(dir, args).await?;
        ensure!(run.code == 0, "terraform {args:?} failed: {}", run.text());
        Ok(run)
    }

    pub async fn apply(&self, dir: &Path) -> Result<Run> {
        self.ok(
            dir,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        )
        .await
    }

    /// `terraform plan -detailed-exitcode`: 0 clean, 2 changes pending.
    pub async fn plan(&self, dir: &Path) -> Result<Run> {
        let run = self
            .run(
                dir,
                &["plan", "-detailed-exitcode", "-input=false", "-no-color"],
            )
            .await?;
        ensure!(
            run.code == 0 || run.code == 2,
            "plan failed: {}",
            run.text()
        );
        Ok(run)
    }

    pub async fn assert_clean(&self, dir: &Path, after: &str) -> Result<()> {
        let run = self.plan(dir).await?;
        ensure!(
            run.code == 0,
            "the plan after {after} is not clean: {}",
            run.text()
        );
        Ok(())
    }

    pub async fn outputs(&self, dir: &Path) -> Result<Value> {
        let run = self.ok(dir, &["output", "-json", "-no-color"]).await?;
        let outputs: Value = serde_json::from_str(&run.stdout)?;
        Ok(outputs)
    }

    /// `terraform destroy`, which must succeed.
    pub async fn destroy(&self, dir: &Path) -> Result<()> {
        self.ok(
            dir,
            &["destroy", "-auto-approve", "-input=false", "-no-color"],
        )
        .await
        .map(drop)
    }
}

/// The string value of output `name` in [`Terraform::outputs`].
pub fn output<'a>(outputs: &'a Value, name: &str) -> Result<&'a str> {
    outputs[name]["value"]
        .as_str()
        .with_context(|| format!("output {name} in {outputs}"))
}

impl Drop for Terraform {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub const HEADER: &str = r#"terraform {
  required_providers {
    rotor = { source = "rotor/rotor" }
  }
}

provider "rotor" {}
"#;
