//! `rotor-bench-tags`: server CPU per delivery and per publication with publication tag
//! filters, side by side with the same deliveries without them (see [`rotor_bench::tags`]);
//! writes `bench/results/tags.json`.

use clap::Parser;
use rotor_bench::tags::{self, TagsArgs};

#[derive(Parser)]
#[command(
    name = "rotor-bench-tags",
    about = "Publication tag filters: server CPU per delivery, with and without"
)]
struct Cli {
    #[command(flatten)]
    args: TagsArgs,
}

fn main() -> anyhow::Result<()> {
    rotor_bench::scenario::block_on(tags::run(Cli::parse().args))
}
