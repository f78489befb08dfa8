//! Rotor's data plane: one process per tenant, a Centrifugo-compatible real-time server. It
//! speaks the client protocol v2 over WebSocket (JSON and Protobuf) and the server HTTP API, with
//! channels, namespaces, history with recovery, presence and join/leave.

pub mod admin;
pub mod api;
pub(crate) mod auth;
pub mod budgets;
pub(crate) mod centrifugo_metrics;
pub mod client;
pub mod clock;
pub(crate) mod cluster;
pub mod config;
pub mod consumers;
pub mod egress;
pub mod engine;
pub(crate) mod exclusion;
pub(crate) mod files;
pub mod filter;
pub mod fossil;
pub mod grpc_api;
pub mod handoff;
pub mod hub;
pub(crate) mod kept_alive;
pub mod lent_write;
pub(crate) mod limits;
pub mod log_budget;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod node_view;
pub mod protocol;
pub mod proxy;
pub mod publication;
pub(crate) mod registry;
pub mod report;
pub mod server;
pub(crate) mod session;
pub(crate) mod socket;
pub mod transport;
pub(crate) mod user_status;
pub mod webhooks;

/// Server version reported to clients and in `info`.
pub const VERSION: &str = concat!("rotor ", env!("CARGO_PKG_VERSION"));

/// Listening sockets with a deep accept queue (shared with the control plane).
pub use rotor_tenant_config::listen;
