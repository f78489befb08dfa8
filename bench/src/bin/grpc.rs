//! `rotor-bench-grpc`: publishes per second over the gRPC server API against the HTTP server
//! API in the same run (see [`rotor_bench::grpc`]); writes `bench/results/grpc.json`.

use clap::Parser;
use rotor_bench::grpc::{self, GrpcArgs};

#[derive(Parser)]
#[command(
    name = "rotor-bench-grpc",
    about = "Publishes per second: gRPC server API against the HTTP server API"
)]
struct Cli {
    #[command(flatten)]
    args: GrpcArgs,
}

fn main() -> anyhow::Result<()> {
    rotor_bench::scenario::block_on(grpc::run(Cli::parse().args))
}
