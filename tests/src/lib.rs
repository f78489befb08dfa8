//! Shared harness for Rotor's end-to-end tests: throwaway Postgres databases and Redis key
//! prefixes, spawned server processes, the Node.js / Python interop clients, and a test
//! mailbox (an SMTP server that keeps what it receives).
//!
//! Every wait in here is bounded by a timeout, and every resource cleans up after itself on
//! drop, so tests can run in parallel against one Postgres and one Redis.

mod cleanup;
pub mod clients;
pub mod database;
pub mod paths;
pub mod process;
pub mod redis_prefix;
pub mod smtp;

pub use clients::{run_node, run_python, ClientOutput, ClientScript};
pub use database::TestDatabase;
pub use process::{ProcessBuilder, Readiness, TestProcess};
pub use redis_prefix::TestRedis;
pub use smtp::{ReceivedMail, SmtpSink};
