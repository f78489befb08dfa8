//! Prometheus text exposition (format 0.0.4) of values read at scrape time, for both planes'
//! `/metrics`.
//!
//! The processes count with their own plain atomics (one relaxed `fetch_add` on a hot path, no
//! lock, no lookup by label); a scrape reads them into an [`Exposition`] of families, which
//! [`prometheus_client`] encodes: the `# HELP` and `# TYPE` lines, the `_total` suffix of
//! counters, label value escaping and number formatting are the library's, not ours.
//!
//! What prometheus-client cannot say, this crate does not pretend to: it has no summary type,
//! and it always names a counter `…_total`. Families with those shapes (Centrifugo's) are
//! written by their owners; [`check`] holds every exposition, theirs included, to the format.

pub mod check;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Typed neither way (`# TYPE … untyped`).
    Untyped,
}

/// One sample's value.
#[derive(Debug, Clone, Copy)]
enum Value {
    Unsigned(u64),
    Signed(i64),
}

/// A metric family: its samples, each with its labels.
#[derive(Debug)]
pub struct Family {
    /// The name as prometheus-client is given it: a counter's without `_total`.
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<(Vec<(String, String)>, Value)>,
}

impl Family {
    /// Adds a sample with `labels` (name, value) to a counter family.
    pub fn count(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.samples.push((owned(labels), Value::Unsigned(value)));
        self
    }

    /// Adds a sample with `labels` (name, value) to a gauge or untyped family.
    pub fn set(&mut self, labels: &[(&str, &str)], value: i64) -> &mut Self {
        self.samples.push((owned(labels), Value::Signed(value)));
        self
    }
}

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The families of one scrape, in the order they are exposed.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    /// A new, empty family `name` (a counter's name ends in `_total`, which prometheus-client
    /// writes itself) described by `help`.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Family {
        let name = match kind {
            Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
            Kind::Gauge | Kind::Untyped => name,
        };
        self.families.push(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        });
        let last = self.families.len() - 1;
        &mut self.families[last]
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        self.family(name, help, Kind::Gauge).set(&[], value);
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, Kind::Counter).count(&[], value);
    }

    /// The Prometheus text of every family.
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String fails only if a collector does, and ours do not.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let kind = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Untyped => MetricType::Unknown,
            };
            let mut metric = encoder.encode_descriptor(&f.name, &f.help, None, kind)?;
            for (labels, value) in &f.samples {
                let sample = metric.encode_family(labels)?;
                match (f.kind, *value) {
                    (Kind::Counter, Value::Unsigned(v)) => ConstCounter::new(v).encode(sample)?,
                    (Kind::Counter, Value::Signed(v)) => {
                        ConstCounter::new(u64::try_from(v).unwrap_or(0)).encode(sample)?
                    }
                    (_, Value::Unsigned(v)) => ConstGauge::new(v).encode(sample)?,
                    (_, Value::Signed(v)) => ConstGauge::new(v).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_keep_their_names_types_and_labels() {
        let mut e = Exposition::default();
        e.gauge("rotor_connections", "Current client connections.", 3);
        e.counter("rotor_bytes_in_total", "Bytes received from clients.", 42);
        e.family(
            "rotor_disconnects_total",
            "Disconnects by code.",
            Kind::Counter,
        )
        .count(&[("code", "3000")], 2)
        .count(&[("code", "3001")], 1);
        e.family("rotor_empty_total", "Nothing yet.", Kind::Counter);
        e.family("rotor_namespace_users", "Users.", Kind::Untyped)
            .set(&[("namespace", "chat")], 5);
        let text = e.encode();
        assert_eq!(
            text,
            "# HELP rotor_connections Current client connections.\n\
             # TYPE rotor_connections gauge\n\
             rotor_connections 3\n\
             # HELP rotor_bytes_in_total Bytes received from clients.\n\
             # TYPE rotor_bytes_in_total counter\n\
             rotor_bytes_in_total 42\n\
             # HELP rotor_disconnects_total Disconnects by code.\n\
             # TYPE rotor_disconnects_total counter\n\
             rotor_disconnects_total{code=\"3000\"} 2\n\
             rotor_disconnects_total{code=\"3001\"} 1\n\
             # HELP rotor_empty_total Nothing yet.\n\
             # TYPE rotor_empty_total counter\n\
             # HELP rotor_namespace_users Users.\n\
             # TYPE rotor_namespace_users untyped\n\
             rotor_namespace_users{namespace=\"chat\"} 5\n"
        );
        check::exposition(&text).unwrap();
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.family("x_total", "X.", Kind::Counter)
            .count(&[("method", "a\"b\\c\nd")], 1);
        let text = e.encode();
        assert!(
            text.contains("x_total{method=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        check::exposition(&text).unwrap();
    }
}
