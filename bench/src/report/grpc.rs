//! The gRPC server API scenario in BENCHMARKS.md (`rotor-bench-grpc`, issue #26): publishes per
//! second over gRPC against the HTTP server API, in the same run on the same process.

use std::fmt::Write as _;

use super::targets::{Target, Verdict};
use crate::grpc::GrpcResult;

fn median_of(g: &GrpcResult, via: &str) -> f64 {
    g.runs
        .iter()
        .find(|r| r.via == via)
        .map(crate::grpc::GrpcRun::median)
        .unwrap_or_default()
}

/// The targets-table row.
pub fn target(g: Option<&GrpcResult>) -> Target {
    let measured = g.map_or_else(
        || "–".into(),
        |g| {
            format!(
                "gRPC {:.0}/s, HTTP {:.0}/s ({} in flight)",
                median_of(g, "grpc"),
                median_of(g, "http"),
                g.concurrency
            )
        },
    );
    Target {
        what: "#26 · server API publishes/s: gRPC against HTTP, same run".into(),
        measured,
        goal: "measure".into(),
        verdict: if g.is_some() {
            Verdict::Reported
        } else {
            Verdict::NotMeasured
        },
        why: "both front ends run the same executor; the gRPC one also turns each message into \
              the executor's JSON request and the JSON result back into a message, and its calls \
              share one HTTP/2 connection where HTTP/1.1 has one per call in flight (where the \
              difference goes is not profiled yet)"
            .into(),
        next: "",
    }
}

/// The scenario's section.
pub fn section(o: &mut String, g: &GrpcResult) {
    let _ = writeln!(
        o,
        "## Server API over gRPC and HTTP\n\n`rotor-bench-grpc` (scenario `grpc`): one \
         in-process data plane (memory engine) serving the HTTP API and the gRPC API on \
         loopback; {} publishes of a small JSON payload to one channel per round, {} calls in \
         flight (HTTP/1.1: a keep-alive pool; gRPC: one HTTP/2 connection), the two protocols \
         alternating after a warm-up; the client shares the box's two cores with the server.\n\n\
         | via | publishes/s (median) | rounds |\n|---|---|---|",
        g.publishes, g.concurrency
    );
    for r in &g.runs {
        let rounds: Vec<String> = r.per_second.iter().map(|v| format!("{v:.0}")).collect();
        let _ = writeln!(
            o,
            "| {} | {:.0} | {} |",
            r.via,
            r.median(),
            rounds.join(", ")
        );
    }
    let _ = writeln!(o);
}
