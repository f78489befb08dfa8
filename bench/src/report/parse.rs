//! Parsers for the two measurements that are not load-generator runs: the Redis engine's
//! `cargo bench` output and the config-push e2e test's summary line.

use serde::{Deserialize, Serialize};

impl ConfigPush {
    /// The measurement in BENCHMARKS.md before `make bench` existed (20 changes, debug build),
    /// used while a run does not re-measure it.
    pub const EARLIER: ConfigPush = ConfigPush {
        changes: 20,
        p50_ms: 8.4,
        p99_ms: 9.5,
        max_ms: 0.0,
        line: String::new(),
        first_connection: None,
    };
}

/// `cargo bench -p rotor-data-plane --bench redis_publish`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RedisResult {
    pub rotor_per_sec: f64,
    pub redis_benchmark_per_sec: f64,
    pub ratio: f64,
    pub lines: Vec<String>,
}

/// The config-push e2e tests: change → applied, and project create → first connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConfigPush {
    pub changes: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub line: String,
    #[serde(default)]
    pub first_connection: Option<Timing>,
}

/// Percentiles of one timed e2e summary line.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timing {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub line: String,
}

/// The last number in `text` before `suffix` (e.g. "50741/s").
fn number_before(text: &str, suffix: &str) -> Option<f64> {
    let end = text.find(suffix)?;
    let head = &text[..end];
    let start = head
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    head[start..].parse().ok()
}

/// Reads the bench's stdout.
pub fn redis(text: &str) -> RedisResult {
    let mut r = RedisResult::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with("rotor redis engine:") {
            r.rotor_per_sec = number_before(line, "/s").unwrap_or(0.0);
            r.lines.push(line.to_owned());
        } else if line.starts_with("redis-benchmark PUBLISH:") {
            r.redis_benchmark_per_sec = line
                .split_whitespace()
                .find_map(|w| w.parse::<f64>().ok())
                .unwrap_or(0.0);
            r.lines.push(line.to_owned());
        }
    }
    if r.redis_benchmark_per_sec > 0.0 {
        r.ratio = r.rotor_per_sec / r.redis_benchmark_per_sec;
    }
    r
}

/// A Rust `Duration` debug print ("8.4ms", "950µs", "1.2s") in milliseconds.
fn duration_ms(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches(',');
    let (num, factor) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("µs") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("ns") {
        (v, 1e-6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

/// Reads "<marker> over N <things>: p50 X, p99 Y, max Z".
fn timing(text: &str, marker: &str) -> Option<Timing> {
    let line = text.lines().find(|l| l.contains(marker))?.trim();
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .and_then(|w| duration_ms(w))
    };
    let count = words
        .iter()
        .position(|w| *w == "over")
        .and_then(|i| words.get(i + 1))
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    Some(Timing {
        count,
        p50_ms: after("p50")?,
        p99_ms: after("p99")?,
        max_ms: after("max").unwrap_or(0.0),
        line: line.to_owned(),
    })
}

/// Reads "config change → applied over N changes: …" and, when present, "project create →
/// first connection over N projects: …".
pub fn config_push(text: &str) -> Option<ConfigPush> {
    let push = timing(text, "config change → applied over")?;
    Some(ConfigPush {
        changes: push.count,
        p50_ms: push.p50_ms,
        p99_ms: push.p99_ms,
        max_ms: push.max_ms,
        line: push.line,
        first_connection: timing(text, "project create → first connection over"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_bench_output_is_read() {
        let out = "rotor redis engine: 50000 history publishes, 50 concurrent: 50741/s\n\
                   redis-benchmark PUBLISH: PUBLISH: 47125.35 requests per second, p50=0.5 msec\n\
                   ratio rotor/redis-benchmark: 1.08\n";
        let r = redis(out);
        assert_eq!(r.rotor_per_sec, 50741.0);
        assert_eq!(r.redis_benchmark_per_sec, 47125.35);
        assert!((r.ratio - 1.0767).abs() < 0.001);
    }

    #[test]
    fn the_config_push_line_is_read() {
        let out =
            "noise\nconfig change → applied over 20 changes: p50 8.4ms, p99 9.5ms, max 950µs\n\
             project create → first connection over 5 projects: p50 14.1ms, p99 24.3ms, max 1.2s\n";
        let c = config_push(out).unwrap();
        let first = c.first_connection.clone().unwrap();
        assert_eq!((first.count, first.p50_ms, first.p99_ms), (5, 14.1, 24.3));
        assert_eq!(first.max_ms, 1200.0);
        assert_eq!(c.changes, 20);
        assert_eq!(c.p50_ms, 8.4);
        assert_eq!(c.p99_ms, 9.5);
        assert!((c.max_ms - 0.95).abs() < 1e-9);
        assert!(config_push("nothing").is_none());
    }
}
