//! The engine forms in BENCHMARKS.md (`rotor-bench-engines`, issue #23): publishes/s at
//! saturation and publish→deliver latency across two data planes for standalone Redis, a
//! 3-primary Redis Cluster and the NATS broker, beside the raw `redis-benchmark` and NATS
//! numbers measured in the same run.

use std::fmt::Write as _;

use super::markdown::{int, ms};
use super::targets::{Target, Verdict};
use crate::engines::{EnginesResult, Form, FormResult};

fn short(form: Form) -> &'static str {
    match form {
        Form::Standalone => "standalone",
        Form::Cluster => "Cluster",
        Form::Nats => "NATS",
    }
}

fn saturation_cell(f: &FormResult) -> String {
    f.saturation()
        .map(|s| int(s.publishes_per_sec))
        .unwrap_or_else(|| "–".into())
}

/// Where the CPU went at saturation, across the forms: the engines' servers against the data
/// planes, per publish.
fn ceiling_note(e: &EnginesResult) -> Option<String> {
    let steps: Vec<_> = e.forms.iter().filter_map(FormResult::saturation).collect();
    let range = |f: fn(&crate::engines::EngineStep) -> f64| {
        let lo = steps.iter().map(|s| f(s)).fold(f64::INFINITY, f64::min);
        let hi = steps.iter().map(|s| f(s)).fold(0.0, f64::max);
        format!("{lo:.0}–{hi:.0} µs")
    };
    (!steps.is_empty()).then(|| {
        format!(
            ". At saturation the engine's servers spent {} of CPU per publish and the two data \
             planes {}: the ceiling here is the data planes' HTTP API and WebSocket path and the \
             load generator beside them, not the engine",
            range(|s| s.engine_cpu_us_per_publish),
            range(|s| s.rotor_cpu_us_per_publish)
        )
    })
}

/// The targets-table row.
pub fn target(e: Option<&EnginesResult>) -> Target {
    let measured = e.map_or_else(
        || "–".into(),
        |e| {
            let forms: Vec<String> = e
                .forms
                .iter()
                .map(|f| {
                    format!(
                        "{} {}/s (p99 {} ms)",
                        short(f.form),
                        saturation_cell(f),
                        ms(f.fixed.p99_us)
                    )
                })
                .collect();
            let raw: Vec<String> = e
                .raw
                .iter()
                .map(|r| format!("{} {}/s", r.what, int(r.per_sec)))
                .collect();
            format!("{}; raw: {}", forms.join(", "), raw.join(", "))
        },
    );
    Target {
        what: "#23 · engine forms across two data planes: publishes/s at saturation (p99 at the \
               fixed rate), standalone Redis vs Redis Cluster (3 primaries) vs NATS, beside raw \
               `redis-benchmark` / NATS numbers"
            .into(),
        measured,
        goal: "measure".into(),
        verdict: if e.is_some() {
            Verdict::Reported
        } else {
            Verdict::NotMeasured
        },
        why: format!(
            "a publish is an HTTP API request to one data plane, one engine call and a delivery \
             to the other data plane's subscribers over the engine's PUB/SUB; the raw rows are \
             the engine alone with no HTTP, JSON or WebSocket around it, so the gap is Rotor's \
             share. On this box the servers, both data planes and the load generator share two \
             cores{}",
            e.and_then(ceiling_note).unwrap_or_default()
        ),
        next: "",
    }
}

/// The scenario's section.
pub fn section(o: &mut String, e: &EnginesResult) {
    let _ = writeln!(
        o,
        "## Engine forms: Redis standalone, Redis Cluster, NATS\n\n`rotor-bench-engines` \
         (scenario `engines`): per form, its servers (a `redis-server`; three `redis-server` \
         cluster primaries without replicas; a `nats-server`) and two `rotor-data-plane` \
         processes on them. {} JSON WebSocket subscribers on the second process, spread over {} \
         channels; publishes of {} B through the first process's HTTP API ({} in flight at \
         most), so every delivery crosses processes through the engine. Channels have no \
         history (NATS keeps none). Latency and CPU are taken at a fixed moderate rate; \
         saturation is the best of the rising rates and a last unpaced step ({} s each) whose \
         deliveries all arrived. CPU is utime + stime from /proc per acknowledged publish, for \
         both data planes together and for the engine's servers together; at the fixed rate it \
         includes what the idle processes spend anyway (timers, heartbeats), at saturation it is \
         close to the cost of a publish itself. The raw rows run on \
         the same servers right after, without Rotor.\n\n\
         | form | fixed rate /s | p50 ms | p99 ms | CPU / publish: Rotor, engine | publishes/s at saturation | its p99 ms | its CPU / publish: Rotor, engine | steps (asked → acknowledged /s, loss) |\n\
         |---|---|---|---|---|---|---|---|---|",
        e.subscribers, e.channels, e.payload_bytes, e.concurrency, e.step_secs
    );
    for f in &e.forms {
        let steps: Vec<String> = f
            .ramp
            .iter()
            .map(|s| {
                format!(
                    "{} → {} ({:.1} %)",
                    if s.rate > 0.0 {
                        int(s.rate)
                    } else {
                        "unpaced".into()
                    },
                    int(s.publishes_per_sec),
                    s.loss * 100.0
                )
            })
            .collect();
        let sat = f.saturation();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {:.1} µs, {:.1} µs | **{}** | {} | {} | {} |",
            f.form.describe(),
            int(f.fixed.rate),
            ms(f.fixed.p50_us),
            ms(f.fixed.p99_us),
            f.fixed.rotor_cpu_us_per_publish,
            f.fixed.engine_cpu_us_per_publish,
            saturation_cell(f),
            sat.map(|s| ms(s.p99_us)).unwrap_or_else(|| "–".into()),
            sat.map(|s| format!(
                "{:.1} µs, {:.1} µs",
                s.rotor_cpu_us_per_publish, s.engine_cpu_us_per_publish
            ))
            .unwrap_or_else(|| "–".into()),
            steps.join(", ")
        );
    }
    let _ = writeln!(
        o,
        "\nRaw, same run, same servers:\n\n| what | messages/s | the tool's summary |\n|---|---|---|"
    );
    for r in &e.raw {
        let _ = writeln!(o, "| {} | {} | {} |", r.what, int(r.per_sec), r.detail);
    }
    let _ = writeln!(o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::{EngineStep, RawResult};

    fn step(rate: f64, per_sec: f64, loss: f64) -> EngineStep {
        EngineStep {
            rate,
            publishes_per_sec: per_sec,
            loss,
            p99_us: 2500,
            ..Default::default()
        }
    }

    #[test]
    fn saturation_is_the_best_step_without_loss_and_the_section_shows_every_form() {
        let f = FormResult {
            form: Form::Cluster,
            fixed: step(500.0, 499.0, 0.0),
            ramp: vec![
                step(1000.0, 998.0, 0.0),
                step(4000.0, 3100.0, 0.0),
                step(0.0, 5200.0, 0.2),
            ],
        };
        assert_eq!(f.saturation().unwrap().publishes_per_sec, 3100.0);
        let e = EnginesResult {
            subscribers: 32,
            channels: 16,
            payload_bytes: 64,
            step_secs: 4.0,
            concurrency: 64,
            forms: vec![f],
            raw: vec![RawResult {
                what: "raw".into(),
                per_sec: 90000.0,
                detail: "d".into(),
            }],
        };
        let mut o = String::new();
        section(&mut o, &e);
        assert!(o.contains("| **3 100** |"), "{o}");
        assert!(o.contains("unpaced → 5 200 (20.0 %)"), "{o}");
        assert!(target(Some(&e)).measured.contains("Cluster 3 100/s"));
        assert!(target(Some(&e)).why.contains("At saturation"));
        assert_eq!(target(None).verdict, Verdict::NotMeasured);
    }
}
