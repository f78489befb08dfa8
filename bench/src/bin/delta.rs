//! `rotor-bench-delta`: bytes on the wire and server CPU per delivery with and without Fossil
//! delta compression (see [`rotor_bench::delta`]); writes `bench/results/delta.json`.

use clap::Parser;
use rotor_bench::delta::{self, DeltaArgs};

#[derive(Parser)]
#[command(
    name = "rotor-bench-delta",
    about = "Fossil delta compression: bytes and server CPU per delivery, with and without"
)]
struct Cli {
    #[command(flatten)]
    args: DeltaArgs,
}

fn main() -> anyhow::Result<()> {
    rotor_bench::scenario::block_on(delta::run(Cli::parse().args))
}
