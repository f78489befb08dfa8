//! Publication tags filters: the subscribe request's `tf` (Centrifugo's `allow_tags_filter`).
//! A filter is checked and compiled once at subscribe ([`TagsFilter::compile`]), then evaluated
//! against each publication's tags without allocating ([`TagsFilter::matches`]). Compiling also
//! normalises it (set values sorted and deduplicated, `and`/`or` children deduplicated in a
//! canonical order, an `and`/`or` of one node replaced by that node, fields an operator ignores
//! dropped), and its [`TagsFilter::key`] is the Protobuf encoding of
//! that normal form: two subscribers whose filters mean the same thing written differently share
//! one key, so the hub evaluates each distinct filter once per publication.
//!
//! Semantics follow Centrifugo v6: a missing tag reads as `""` for `in`/`nin`, fails `eq`, `sw`,
//! `ew`, `ct` and the numeric comparisons, and passes `neq`; numeric comparisons (`gt`, `gte`,
//! `lt`, `lte`) compare decimal numbers exactly and are false when either side is not a number.
//! Filters are bounded ([`MAX_DEPTH`], [`MAX_NODES`], [`MAX_BYTES`]) so one subscriber cannot
//! make every publication of a hosted tenant expensive.

use std::cmp::Ordering;
use std::collections::HashMap;

use prost::Message as _;

use crate::protocol::FilterNode;

/// Deepest nesting of `and`/`or`/`not` nodes (a lone leaf has depth 1).
pub const MAX_DEPTH: usize = 8;
/// Most nodes (leaves and operators) in one filter.
pub const MAX_NODES: usize = 64;
/// Most bytes of keys and values in one filter.
pub const MAX_BYTES: usize = 8192;

/// Why a filter was refused at subscribe (answered as error 107 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown filter op {0:?}")]
    UnknownOp(String),
    #[error("unknown comparison {0:?}")]
    UnknownCmp(String),
    #[error("a comparison needs cmp")]
    MissingCmp,
    #[error("comparison {0} needs a key")]
    MissingKey(&'static str),
    #[error("comparison {0} needs val (and no vals)")]
    NeedsVal(&'static str),
    #[error("comparison {0} needs vals (and no val)")]
    NeedsVals(&'static str),
    #[error("comparison {0} takes no val or vals")]
    TakesNoValue(&'static str),
    #[error("{0} needs at least one node")]
    EmptyGroup(&'static str),
    #[error("not needs exactly one node")]
    NotArity,
    #[error("filter is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("filter has more than {MAX_NODES} nodes")]
    TooManyNodes,
    #[error("filter keys and values exceed {MAX_BYTES} bytes")]
    TooLarge,
}

/// A checked, normalised filter, ready to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsFilter {
    root: Node,
    key: Box<[u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Leaf { key: Box<str>, test: Test },
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Eq(Box<str>),
    Neq(Box<str>),
    /// Sorted, deduplicated.
    In(Box<[Box<str>]>),
    NotIn(Box<[Box<str>]>),
    Exists,
    NotExists,
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    /// The tag compared with a number: true when the ordering is one of `accept`. `None`: the
    /// filter's value is not a number, so nothing matches.
    Numeric {
        value: Option<Decimal>,
        accept: &'static [Ordering],
    },
}

impl TagsFilter {
    /// Checks `node` against Centrifugo's rules and Rotor's limits, and compiles it.
    pub fn compile(node: &FilterNode) -> Result<Self, FilterError> {
        let mut budget = Budget { nodes: 0, bytes: 0 };
        let normal = normalise(node, 1, &mut budget)?;
        let root = build(&normal);
        Ok(Self {
            root,
            key: normal.encode_to_vec().into_boxed_slice(),
        })
    }

    /// The normal form's encoding: equal for filters that mean the same thing.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Whether a publication with these tags passes.
    pub fn matches(&self, tags: &HashMap<String, String>) -> bool {
        self.root.matches(tags)
    }
}

struct Budget {
    nodes: usize,
    bytes: usize,
}

impl Budget {
    fn take(&mut self, bytes: usize) -> Result<(), FilterError> {
        self.nodes += 1;
        self.bytes += bytes;
        if self.nodes > MAX_NODES {
            return Err(FilterError::TooManyNodes);
        }
        if self.bytes > MAX_BYTES {
            return Err(FilterError::TooLarge);
        }
        Ok(())
    }
}

/// The comparison operators, with how many values each takes.
fn comparison(cmp: &str) -> Result<(&'static str, Arity), FilterError> {
    Ok(match cmp {
        "eq" => ("eq", Arity::One),
        "neq" => ("neq", Arity::One),
        "sw" => ("sw", Arity::One),
        "ew" => ("ew", Arity::One),
        "ct" => ("ct", Arity::One),
        "gt" => ("gt", Arity::One),
        "gte" => ("gte", Arity::One),
        "lt" => ("lt", Arity::One),
        "lte" => ("lte", Arity::One),
        "in" => ("in", Arity::Many),
        "nin" => ("nin", Arity::Many),
        "ex" => ("ex", Arity::None),
        "nex" => ("nex", Arity::None),
        "" => return Err(FilterError::MissingCmp),
        other => return Err(FilterError::UnknownCmp(truncate(other))),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    None,
    One,
    Many,
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

/// Validates one node and returns its normal form (see the module doc).
fn normalise(
    node: &FilterNode,
    depth: usize,
    budget: &mut Budget,
) -> Result<FilterNode, FilterError> {
    if depth > MAX_DEPTH {
        return Err(FilterError::TooDeep);
    }
    match node.op.as_str() {
        "" => {
            let vals_bytes: usize = node.vals.iter().map(String::len).sum();
            budget.take(node.key.len() + node.val.len() + vals_bytes)?;
            let (cmp, arity) = comparison(&node.cmp)?;
            match arity {
                Arity::One if node.val.is_empty() || !node.vals.is_empty() => {
                    return Err(FilterError::NeedsVal(cmp))
                }
                Arity::Many if node.vals.is_empty() || !node.val.is_empty() => {
                    return Err(FilterError::NeedsVals(cmp))
                }
                Arity::None if !node.val.is_empty() || !node.vals.is_empty() => {
                    return Err(FilterError::TakesNoValue(cmp))
                }
                _ => {}
            }
            if node.key.is_empty() && arity != Arity::None {
                return Err(FilterError::MissingKey(cmp));
            }
            let mut vals = node.vals.clone();
            vals.sort_unstable();
            vals.dedup();
            Ok(FilterNode {
                key: node.key.clone(),
                cmp: cmp.to_owned(),
                val: node.val.clone(),
                vals,
                ..Default::default()
            })
        }
        op @ ("and" | "or") => {
            budget.take(0)?;
            if node.nodes.is_empty() {
                return Err(FilterError::EmptyGroup(if op == "and" {
                    "and"
                } else {
                    "or"
                }));
            }
            let mut children = node
                .nodes
                .iter()
                .map(|n| normalise(n, depth + 1, budget).map(|n| (n.encode_to_vec(), n)))
                .collect::<Result<Vec<_>, _>>()?;
            // Evaluation has no side effects, so the order and repeats of children do not
            // change the result: sort and deduplicate them for one canonical form.
            children.sort_by(|a, b| a.0.cmp(&b.0));
            children.dedup_by(|a, b| a.0 == b.0);
            // `and`/`or` of one node is that node.
            if children.len() == 1 {
                return Ok(children.remove(0).1);
            }
            Ok(FilterNode {
                op: op.to_owned(),
                nodes: children.into_iter().map(|(_, n)| n).collect(),
                ..Default::default()
            })
        }
        "not" => {
            budget.take(0)?;
            let [child] = node.nodes.as_slice() else {
                return Err(FilterError::NotArity);
            };
            Ok(FilterNode {
                op: "not".to_owned(),
                nodes: vec![normalise(child, depth + 1, budget)?],
                ..Default::default()
            })
        }
        other => Err(FilterError::UnknownOp(truncate(other))),
    }
}

/// Builds the evaluator of a normal form (already validated).
fn build(node: &FilterNode) -> Node {
    let children = || node.nodes.iter().map(build).collect::<Box<[Node]>>();
    match node.op.as_str() {
        "and" => Node::And(children()),
        "or" => Node::Or(children()),
        "not" => Node::Not(Box::new(build(&node.nodes[0]))),
        _ => {
            let val = || Box::<str>::from(node.val.as_str());
            let vals = || {
                node.vals
                    .iter()
                    .map(|v| Box::<str>::from(v.as_str()))
                    .collect()
            };
            let numeric = |accept| Test::Numeric {
                value: Decimal::parse(&node.val).map(DecimalRef::to_decimal),
                accept,
            };
            let test = match node.cmp.as_str() {
                "eq" => Test::Eq(val()),
                "neq" => Test::Neq(val()),
                "in" => Test::In(vals()),
                "nin" => Test::NotIn(vals()),
                "ex" => Test::Exists,
                "nex" => Test::NotExists,
                "sw" => Test::StartsWith(val()),
                "ew" => Test::EndsWith(val()),
                "ct" => Test::Contains(val()),
                "gt" => numeric(&[Ordering::Greater]),
                "gte" => numeric(&[Ordering::Greater, Ordering::Equal]),
                "lt" => numeric(&[Ordering::Less]),
                _ => numeric(&[Ordering::Less, Ordering::Equal]),
            };
            Node::Leaf {
                key: node.key.as_str().into(),
                test,
            }
        }
    }
}

impl Node {
    fn matches(&self, tags: &HashMap<String, String>) -> bool {
        match self {
            Node::And(nodes) => nodes.iter().all(|n| n.matches(tags)),
            Node::Or(nodes) => nodes.iter().any(|n| n.matches(tags)),
            Node::Not(node) => !node.matches(tags),
            Node::Leaf { key, test } => {
                let tag = tags.get(&**key).map(String::as_str);
                match test {
                    Test::Eq(v) => tag == Some(&**v),
                    Test::Neq(v) => tag != Some(&**v),
                    Test::In(vals) => contains(vals, tag.unwrap_or("")),
                    Test::NotIn(vals) => !contains(vals, tag.unwrap_or("")),
                    Test::Exists => tag.is_some(),
                    Test::NotExists => tag.is_none(),
                    Test::StartsWith(v) => tag.is_some_and(|t| t.starts_with(&**v)),
                    Test::EndsWith(v) => tag.is_some_and(|t| t.ends_with(&**v)),
                    Test::Contains(v) => tag.is_some_and(|t| t.contains(&**v)),
                    Test::Numeric { value, accept } => {
                        match (value, tag.and_then(Decimal::parse)) {
                            (Some(value), Some(tag)) => accept.contains(&tag.cmp(&value.as_ref())),
                            _ => false,
                        }
                    }
                }
            }
        }
    }
}

fn contains(sorted: &[Box<str>], v: &str) -> bool {
    sorted.binary_search_by(|probe| (**probe).cmp(v)).is_ok()
}

/// A decimal number `[+-]digits[.digits]`, compared exactly (no float rounding): borrowed when
/// read from a tag, owned when it is a filter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DecimalRef<'a> {
    negative: bool,
    /// Without leading zeros.
    int: &'a str,
    /// Without trailing zeros.
    frac: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    int: Box<str>,
    frac: Box<str>,
}

impl Decimal {
    fn parse(s: &str) -> Option<DecimalRef<'_>> {
        let (negative, digits) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) || digits.ends_with('.') {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        // Zero has no sign.
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(DecimalRef {
            negative,
            int,
            frac,
        })
    }

    fn as_ref(&self) -> DecimalRef<'_> {
        DecimalRef {
            negative: self.negative,
            int: &self.int,
            frac: &self.frac,
        }
    }
}

impl DecimalRef<'_> {
    fn to_decimal(self) -> Decimal {
        Decimal {
            negative: self.negative,
            int: self.int.into(),
            frac: self.frac.into(),
        }
    }

    fn cmp(&self, other: &DecimalRef<'_>) -> Ordering {
        let magnitude = self
            .int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac));
        match (self.negative, other.negative) {
            (false, false) => magnitude,
            (true, true) => magnitude.reverse(),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
