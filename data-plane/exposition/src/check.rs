//! A strict reader of the Prometheus text format (0.0.4), so a test can refuse an exposition
//! a scraper would refuse or misread: a malformed line, an unknown type, a `# TYPE` after its
//! samples or twice, a family whose samples are split, a series exposed twice, a label name
//! repeated, an escape the format lacks, a negative counter or a summary sample without its
//! quantile. (prometheus-client writes the format but does not read it.)

use std::collections::{HashMap, HashSet};

/// Why an exposition is not valid Prometheus text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}: {text:?}")]
pub struct FormatError {
    /// 1-based.
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

/// One sample as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// What a valid exposition holds: each family's type (`untyped` when it has no `# TYPE`) and
/// every sample, in order.
#[derive(Debug, Default)]
pub struct Parsed {
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Parsed {
    /// The value of the sample `name` with exactly `labels` (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(&str, &str)> = labels.to_vec();
        want.sort_unstable();
        self.samples.iter().find_map(|s| {
            let mut have: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            have.sort_unstable();
            (s.name == name && have == want).then_some(s.value)
        })
    }
}

const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// Reads `text` strictly.
pub fn exposition(text: &str) -> Result<Parsed, FormatError> {
    let mut parsed = Parsed::default();
    let mut helped = HashSet::new();
    // Families whose samples have ended (another family's line came after them).
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(err(text.lines().count(), "no newline at the end", ""));
    }
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let fail = |reason| err(n, reason, line);
        if line.trim().is_empty() {
            continue;
        }
        let family = if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start_matches(' ');
            if let Some(rest) = rest.strip_prefix("HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                if !metric_name(name) {
                    return Err(fail("bad metric name in HELP"));
                }
                unescape(help, false).ok_or_else(|| fail("bad escape in HELP"))?;
                if !helped.insert(name.to_owned()) {
                    return Err(fail("second HELP for a family"));
                }
                name.to_owned()
            } else if let Some(rest) = rest.strip_prefix("TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| fail("TYPE without a type"))?;
                if !metric_name(name) {
                    return Err(fail("bad metric name in TYPE"));
                }
                if !TYPES.contains(&kind) {
                    return Err(fail("unknown type"));
                }
                if parsed.types.contains_key(name) {
                    return Err(fail("second TYPE for a family"));
                }
                if parsed
                    .samples
                    .iter()
                    .any(|s| family_of(&parsed.types, &s.name) == name)
                {
                    return Err(fail("TYPE after the family's samples"));
                }
                parsed.types.insert(name.to_owned(), kind.to_owned());
                name.to_owned()
            } else {
                continue; // a plain comment
            }
        } else {
            let sample = sample(line).ok_or_else(|| fail("malformed sample"))?;
            let family = family_of(&parsed.types, &sample.name).to_owned();
            let kind = parsed.types.get(&family).map_or("untyped", String::as_str);
            if kind == "counter" && sample.value < 0.0 {
                return Err(fail("negative counter"));
            }
            if kind == "summary"
                && sample.name == family
                && !sample.labels.iter().any(|(k, _)| k == "quantile")
            {
                return Err(fail("summary sample without a quantile"));
            }
            if kind == "histogram"
                && sample.name.ends_with("_bucket")
                && !sample.labels.iter().any(|(k, _)| k == "le")
            {
                return Err(fail("histogram bucket without le"));
            }
            let mut key = sample.labels.clone();
            key.sort_unstable();
            if !series.insert((sample.name.clone(), key)) {
                return Err(fail("series exposed twice"));
            }
            parsed.samples.push(sample);
            family
        };
        if current.as_deref() != Some(family.as_str()) {
            if closed.contains(&family) {
                return Err(fail("family's lines are not together"));
            }
            if let Some(previous) = current.replace(family) {
                closed.insert(previous);
            }
        }
    }
    Ok(parsed)
}

fn err(line: usize, reason: &'static str, text: &str) -> FormatError {
    FormatError {
        line,
        reason,
        text: text.to_owned(),
    }
}

/// The family a sample named `name` belongs to: a summary's or histogram's `_sum`, `_count`
/// (and a histogram's `_bucket`) belong to it.
fn family_of<'a>(types: &HashMap<String, String>, name: &'a str) -> &'a str {
    for suffix in ["_sum", "_count", "_bucket"] {
        if let Some(base) = name.strip_suffix(suffix) {
            match types.get(base).map(String::as_str) {
                Some("histogram") => return base,
                Some("summary") if suffix != "_bucket" => return base,
                _ => {}
            }
        }
    }
    name
}

fn metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `s` with its escapes undone: `\\` and `\n`, and `\"` in a label value.
fn unescape(s: &str, quotes: bool) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                '"' if quotes => out.push('"'),
                _ => return None,
            },
            '"' if quotes => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        s if s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// `name{labels} value [timestamp]`.
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !metric_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inner.split_once("=\"")?;
            if !label_name(key) || labels.iter().any(|(k, _)| k == key) {
                return None;
            }
            // The closing quote: the first one not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, b) in after.bytes().enumerate() {
                match (escaped, b) {
                    (false, b'\\') => escaped = true,
                    (false, b'"') => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let end = end?;
            labels.push((key.to_owned(), unescape(&after[..end], true)?));
            inner = &after[end + 1..];
            if let Some(after) = inner.strip_prefix(',') {
                inner = after;
            } else if !inner.starts_with('}') {
                return None;
            }
        }
    }
    let rest = rest.strip_prefix(' ')?;
    let mut parts = rest.split(' ');
    let value = value(parts.next()?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_exposition_is_read() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"2\"} 3\n\
                    # TYPE d summary\nd{m=\"x\",quantile=\"0.5\"} NaN\nd_sum{m=\"x\"} 0.5\nd_count{m=\"x\"} 2\n\
                    u 1 1700000000000\n";
        let p = exposition(text).unwrap();
        assert_eq!(p.value("a_total", &[("x", "1\"2")]), Some(3.0));
        assert_eq!(p.value("d_count", &[("m", "x")]), Some(2.0));
        assert_eq!(p.types["d"], "summary");
    }

    #[test]
    fn malformed_expositions_are_refused() {
        for (text, reason) in [
            ("a{x=\"1\" 2\n", "malformed sample"),
            ("a{x=1} 2\n", "malformed sample"),
            ("a 2 3 4\n", "malformed sample"),
            ("a two\n", "malformed sample"),
            ("a{x=\"\\t\"} 1\n", "malformed sample"),
            ("a{x=\"1\",x=\"2\"} 1\n", "malformed sample"),
            ("1a 1\n", "malformed sample"),
            ("# TYPE a countr\n", "unknown type"),
            (
                "# TYPE a gauge\n# TYPE a gauge\n",
                "second TYPE for a family",
            ),
            ("a 1\n# TYPE a gauge\n", "TYPE after the family's samples"),
            (
                "a 1\nb 1\na{x=\"y\"} 2\n",
                "family's lines are not together",
            ),
            ("a 1\na 2\n", "series exposed twice"),
            ("# TYPE a counter\na -1\n", "negative counter"),
            (
                "# TYPE d summary\nd{m=\"x\"} 1\n",
                "summary sample without a quantile",
            ),
            ("a 1", "no newline at the end"),
        ] {
            assert_eq!(exposition(text).unwrap_err().reason, reason, "{text:?}");
        }
    }
}
