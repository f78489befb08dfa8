//! `rotor-bench-presence`: `presence_stats` on a channel of many subscribers, both engines,
//! against reading the whole presence (see [`rotor_bench::presence`]); writes
//! `bench/results/presence.json`.

use clap::Parser;
use rotor_bench::presence::{self, PresenceArgs};

#[derive(Parser)]
#[command(
    name = "rotor-bench-presence",
    about = "presence_stats in O(1) against the full presence read"
)]
struct Cli {
    #[command(flatten)]
    args: PresenceArgs,
}

fn main() -> anyhow::Result<()> {
    rotor_bench::scenario::block_on(presence::run(Cli::parse().args))
}
