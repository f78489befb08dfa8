//! Rotor's benchmark suite: `rotor-loadgen` (Centrifugo client protocol v2 in JSON and
//! Protobuf, Socket.IO and raw WebSocket peers; publish→receive latency, throughput, server CPU
//! per message and memory per connection), the bare tokio-tungstenite broadcast peer, and the
//! generator of BENCHMARKS.md from the results; and the multi-tenant scenarios against a
//! control plane (`rotor-noisy`: noisy neighbour, `rotor-density`: many idle projects); and
//! `rotor-bench-delta`, what Fossil delta compression saves per delivery; and
//! `rotor-bench-tags`, what publication tag filters cost; `rotor-bench-presence`, what
//! `presence_stats` costs on a big channel; `rotor-bench-engines`, the engine forms (standalone
//! Redis, Redis Cluster, NATS) beside raw `redis-benchmark` and NATS numbers.

pub mod client;
pub mod coordinator;
pub mod cp;
pub mod delta;
pub mod density;
pub mod engines;
pub mod grpc;
pub mod histogram;
pub mod noisy;
pub mod payload;
pub mod pool;
pub mod presence;
pub mod procstat;
pub mod publisher;
pub mod report;
pub mod resolve;
pub mod results;
pub mod scenario;
pub mod tags;
pub mod wire;
pub mod worker;
