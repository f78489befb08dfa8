//! `terraform-provider-rotor`: the plugin process Terraform starts. Serves the provider over
//! the plugin protocol v6 until Terraform stops it.

use terraform_provider_rotor::{RotorProvider, PROVIDER_NAME};

fn main() -> anyhow::Result<()> {
    // tf-provider appends a backtrace to every diagnostic when library backtraces are on (as
    // `RUST_BACKTRACE=1` turns them on); users should see the message, not our stack. Set
    // before any thread starts.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(tf_provider::serve(PROVIDER_NAME, RotorProvider::default()))
}
