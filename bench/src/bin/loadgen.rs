//! `rotor-loadgen`: bounded load against a Centrifugo-compatible server or a peer.
//! `rotor-loadgen run …` coordinates one run (see `--help`); `rotor-loadgen worker --spec JSON`
//! is the connection-holding child it spawns.

use clap::{Parser, Subcommand};
use rotor_bench::coordinator::{self, RunArgs};
use rotor_bench::wire::WorkerSpec;

#[derive(Parser)]
#[command(
    name = "rotor-loadgen",
    about = "Load generator for Rotor and its peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One benchmark run: connect, (ramp) publish, measure, write results JSON.
    Run(Box<RunArgs>),
    /// Internal: a worker process holding a share of the connections.
    Worker {
        #[arg(long)]
        spec: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Worker { spec } => {
            let spec: WorkerSpec = serde_json::from_str(&spec)?;
            rotor_bench::worker::run(spec)
        }
        Cmd::Run(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(coordinator::run(*args))?;
            Ok(())
        }
    }
}
