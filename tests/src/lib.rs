//! Shared harness for Rotor's end-to-end tests: throwaway Postgres databases and Redis key
//! prefixes, spawned server processes, the Node.js / Python interop clients, and a test
//! mailbox (an SMTP server that keeps what it receives); and the fixtures the test files in
//! `tests/tests/` share: a control plane with REST helpers and raw clients
//! ([`control_plane`]), private Redis deployments for placement ([`placement`]), a data plane
//! for the SDK interop scenarios ([`interop`]), a webhook receiver ([`hooks_rx`]), the Terraform
//! CLI against the provider ([`terraform`]) and the servers faults are injected into
//! ([`faults`]).
//!
//! Every wait in here is bounded by a timeout, and every resource cleans up after itself on
//! drop, so tests can run in parallel against one Postgres and one Redis.

mod cleanup;
pub mod clients;
pub mod control_plane;
pub mod database;
pub mod faults;
pub mod hooks_rx;
pub mod interop;
pub mod paths;
pub mod placement;
pub mod process;
pub mod redis_prefix;
pub mod smtp;
pub mod terraform;

pub use clients::{run_node, run_python, ClientOutput, ClientScript};
pub use database::TestDatabase;
pub use process::{ProcessBuilder, Readiness, TestProcess};
pub use redis_prefix::TestRedis;
pub use smtp::{ReceivedMail, SmtpSink};

/// A port nobody listens on right now (bound and released; a test that needs it listened on
/// must start its listener before anyone dials).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
