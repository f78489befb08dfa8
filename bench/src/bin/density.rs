//! `rotor-density`: the density scenario of `make bench` (see [`rotor_bench::density`])
//! against a control plane that `scripts/bench/run.sh` started with a short
//! `ROTOR_PARK_AFTER_MS`.

use clap::Parser;
use rotor_bench::density::{self, DensityArgs};

#[derive(Parser)]
#[command(
    name = "rotor-density",
    about = "Density: many projects on one control plane, most of them parked"
)]
struct Cli {
    #[command(flatten)]
    args: DensityArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(density::run(cli.args))?;
    Ok(())
}
