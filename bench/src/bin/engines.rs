//! `rotor-bench-engines`: publishes/s and publish→deliver latency across two data planes for
//! each engine form, beside raw `redis-benchmark` and NATS numbers from the same run (see
//! [`rotor_bench::engines`]); writes `bench/results/engines.json`.

use clap::Parser;
use rotor_bench::engines::{self, EnginesArgs};

#[derive(Parser)]
#[command(
    name = "rotor-bench-engines",
    about = "Engine forms (Redis standalone, Redis Cluster, NATS) across two data planes, beside raw numbers"
)]
struct Cli {
    #[command(flatten)]
    args: EnginesArgs,
}

fn main() -> anyhow::Result<()> {
    rotor_bench::scenario::block_on(engines::run(Cli::parse().args))
}
