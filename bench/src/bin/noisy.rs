//! `rotor-noisy`: the noisy-neighbour scenario of `make bench` (see
//! [`rotor_bench::noisy`]) against a control plane that `scripts/bench/run.sh` started.
//! `rotor-noisy run …` measures; `worker --spec JSON` (B's subscribers) and `noise --spec
//! JSON` (A's flood and storm) are the child processes it spawns.

use clap::{Parser, Subcommand};
use rotor_bench::noisy::{self, noise::NoiseSpec, NoisyArgs};
use rotor_bench::wire::WorkerSpec;

#[derive(Parser)]
#[command(
    name = "rotor-noisy",
    about = "Noisy neighbour: one tenant's latency while another is saturated"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The whole scenario: set up both projects, measure, write the results JSON.
    Run(Box<NoisyArgs>),
    /// Internal: a worker process holding B's subscribers.
    Worker {
        #[arg(long)]
        spec: String,
    },
    /// Internal: A's publish flood and connection storm.
    Noise {
        #[arg(long)]
        spec: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Worker { spec } => {
            rotor_bench::worker::run(serde_json::from_str::<WorkerSpec>(&spec)?)
        }
        Cmd::Noise { spec } => noisy::noise::run(serde_json::from_str::<NoiseSpec>(&spec)?),
        Cmd::Run(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(noisy::run(*args))?;
            Ok(())
        }
    }
}
