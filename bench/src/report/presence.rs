//! The presence scenario in BENCHMARKS.md (`rotor-bench-presence`, issue #27): `presence_stats`
//! on a big channel with the kept per-user counts, against reading the whole presence.

use std::fmt::Write as _;

use super::targets::{Target, Verdict};
use crate::presence::PresenceResult;

/// The targets-table row.
pub fn target(p: Option<&PresenceResult>) -> Target {
    let measured = p.map_or_else(
        || "–".into(),
        |p| {
            p.runs
                .iter()
                .map(|r| {
                    format!(
                        "{}: {:.1} µs (full read {:.0} µs, {:.0}×)",
                        r.engine,
                        r.stats_us,
                        r.full_read_us,
                        r.full_read_us / r.stats_us.max(0.001)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    );
    let size = p.map_or_else(
        || "100,000 subscribers".into(),
        |p| format!("{} subscribers of {} users", p.entries, p.users),
    );
    Target {
        what: format!("#27 · `presence_stats` on one channel of {size}, both engines"),
        measured,
        goal: "O(1)".into(),
        verdict: if p.is_some() {
            Verdict::Reported
        } else {
            Verdict::NotMeasured
        },
        why: "each channel keeps its users' entry counts as entries come and go (memory: a map \
              beside the entries; Redis: two more hashes kept in step by Lua, expired entries \
              dropped with their counts), so the answer is two lengths, not a scan"
            .into(),
        next: "",
    }
}

/// The scenario's section.
pub fn section(o: &mut String, p: &PresenceResult) {
    let _ = writeln!(
        o,
        "## Presence stats on a big channel\n\n`rotor-bench-presence` (scenario `presence`): one \
         channel with {} presence entries of {} users, filled through the engine (no sockets); \
         `presence_stats` answered from the kept counts against the whole presence read and \
         counted (how the Redis engine answered it before; the memory engine scanned its entries \
         in place, without the copy), mean wall time per call on this box.\n\n\
         | engine | `presence_stats` | full read + count | adding an entry |\n|---|---|---|---|",
        p.entries, p.users
    );
    for r in &p.runs {
        let _ = writeln!(
            o,
            "| {} | {:.1} µs | {:.0} µs | {:.1} µs |",
            r.engine, r.stats_us, r.full_read_us, r.add_us
        );
    }
    let _ = writeln!(o);
}
