//! `rotor-bench-report`: the report side of `make bench`.
//! `machine` prints the machine facts as JSON; `parse-redis` and `parse-config-push` turn the
//! Redis `cargo bench` output and the config-push e2e test output (stdin) into JSON;
//! `markdown` writes BENCHMARKS.md from bench/results/.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rotor_bench::report::{machine, markdown, parse};

#[derive(Parser)]
#[command(name = "rotor-bench-report")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Machine facts (CPU, cores, memory, kernel, rustc) as JSON on stdout.
    Machine,
    /// Redis bench output on stdin → JSON.
    ParseRedis,
    /// Config-push test output on stdin → JSON.
    ParseConfigPush,
    /// BENCHMARKS.md from the results directory.
    Markdown {
        #[arg(long, default_value = "bench/results")]
        results: PathBuf,
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// The command that produced the results, quoted in the report.
        #[arg(long, default_value = "make bench")]
        command: String,
        /// Hand-written notes appended at the end.
        #[arg(long, default_value = "bench/profile.md")]
        profile: PathBuf,
    },
}

fn stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    Ok(s)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Machine => println!("{}", serde_json::to_string_pretty(&machine::collect())?),
        Cmd::ParseRedis => println!(
            "{}",
            serde_json::to_string_pretty(&parse::redis(&stdin()?))?
        ),
        Cmd::ParseConfigPush => {
            let push = parse::config_push(&stdin()?).context("no config push line in the input")?;
            println!("{}", serde_json::to_string_pretty(&push)?);
        }
        Cmd::Markdown {
            results,
            out,
            command,
            profile,
        } => {
            let notes = std::fs::read_to_string(&profile).ok();
            let text = markdown::render(&results, &command, notes.as_deref())?;
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}
