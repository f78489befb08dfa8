//! The tag-filter scenario in BENCHMARKS.md (`rotor-bench-tags`, issue #22): its target row and
//! its table, side by side with the same load without filters.

use std::fmt::Write as _;

use super::targets::{Target, Verdict};
use crate::tags::{Layout, TagsResult};

fn find(t: &TagsResult, layout: Layout) -> Option<&crate::tags::TagsRun> {
    t.runs.iter().find(|r| r.layout == layout)
}

/// The targets-table row.
pub fn target(tags: Option<&TagsResult>) -> Target {
    let pair = |without: Layout, with: Layout, label: &str| {
        let t = tags?;
        let (a, b) = (find(t, without)?, find(t, with)?);
        Some(format!(
            "{label}: {:.2} → {:.2} µs per delivery, {:.0} → {:.0} µs per publication",
            a.cpu_us_per_delivery,
            b.cpu_us_per_delivery,
            a.cpu_us_per_publication,
            b.cpu_us_per_publication
        ))
    };
    let measured = match (
        pair(
            Layout::OneChannel,
            Layout::SharedFilter,
            "every publication matches",
        ),
        pair(
            Layout::ChannelPerTicker,
            Layout::TickerFilters,
            "10 filters vs 10 channels",
        ),
    ) {
        (Some(a), Some(b)) => format!("{a}; {b}"),
        _ => "–".into(),
    };
    let size = tags
        .map(|t| {
            format!(
                "{} subscribers, {} publications at {}/s",
                t.conns, t.messages, t.rate
            )
        })
        .unwrap_or_else(|| "1,000 subscribers".into());
    Target {
        what: format!(
            "#22 · publication tag filters: server CPU with `tf` filters vs the same deliveries \
             without ({size})"
        ),
        measured,
        goal: "measure".into(),
        verdict: if tags.is_some() {
            Verdict::Reported
        } else {
            Verdict::NotMeasured
        },
        why: "subscribers with the same filter share one compiled filter, evaluated once per \
              publication (the evaluations column counts them), and matching subscribers get the \
              frame encoded once for the channel"
            .into(),
        next: "",
    }
}

/// The scenario's section.
pub fn section(o: &mut String, t: &TagsResult) {
    let _ = writeln!(
        o,
        "## Publication tag filters\n\n`rotor-bench-tags` (scenario `tags`): {} JSON WebSocket \
         subscribers, {} publications tagged with one of ten tickers and a price, published at \
         {}/s through the server API. Runs 1 and 2 deliver every publication to every \
         subscriber, without and with a filter; runs 3 and 4 deliver each subscriber the tenth \
         of the publications for its ticker, by a filter on one channel or by a channel per \
         ticker. CPU is the data plane's threads' scheduler runtime over the run; evaluations are the \
         server's own count (`rotor_tags_filter_evaluations_total`). Every subscriber checks it \
         got exactly its publications, in order.\n\n\
         | run | deliveries | filter evaluations | server CPU / delivery | server CPU / publication |\n\
         |---|---|---|---|---|",
        t.conns, t.messages, t.rate
    );
    for (i, r) in t.runs.iter().enumerate() {
        let _ = writeln!(
            o,
            "| {}. {} | {} | {} | {:.2} µs | {:.0} µs |",
            i + 1,
            r.layout.describe(),
            r.deliveries,
            r.evaluations,
            r.cpu_us_per_delivery,
            r.cpu_us_per_publication
        );
    }
    let _ = writeln!(o);
}
