//! Unit tests of the tags filter: every operator, the logical nodes, numbers, normal forms and
//! limits.

use super::*;

fn leaf(key: &str, cmp: &str, val: &str) -> FilterNode {
    FilterNode {
        key: key.into(),
        cmp: cmp.into(),
        val: val.into(),
        ..Default::default()
    }
}

fn set(key: &str, cmp: &str, vals: &[&str]) -> FilterNode {
    FilterNode {
        key: key.into(),
        cmp: cmp.into(),
        vals: vals.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

fn group(op: &str, nodes: Vec<FilterNode>) -> FilterNode {
    FilterNode {
        op: op.into(),
        nodes,
        ..Default::default()
    }
}

fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check(node: FilterNode, pairs: &[(&str, &str)]) -> bool {
    TagsFilter::compile(&node).unwrap().matches(&tags(pairs))
}

#[test]
fn string_comparisons_follow_centrifugo() {
    let t = [("ticker", "AAPL"), ("empty", "")];
    assert!(check(leaf("ticker", "eq", "AAPL"), &t));
    assert!(!check(leaf("ticker", "eq", "MSFT"), &t));
    assert!(!check(leaf("missing", "eq", "AAPL"), &t));
    assert!(check(leaf("ticker", "neq", "MSFT"), &t));
    assert!(!check(leaf("ticker", "neq", "AAPL"), &t));
    // A missing tag is not equal to anything.
    assert!(check(leaf("missing", "neq", "AAPL"), &t));
    assert!(check(leaf("ticker", "sw", "AA"), &t));
    assert!(!check(leaf("ticker", "sw", "PL"), &t));
    assert!(check(leaf("ticker", "ew", "PL"), &t));
    assert!(!check(leaf("ticker", "ew", "AA"), &t));
    assert!(check(leaf("ticker", "ct", "AP"), &t));
    assert!(!check(leaf("ticker", "ct", "X"), &t));
    assert!(!check(leaf("missing", "sw", "A"), &t));
    assert!(!check(leaf("missing", "ew", "A"), &t));
    assert!(!check(leaf("missing", "ct", "A"), &t));
}

#[test]
fn set_and_existence_comparisons_read_a_missing_tag_as_empty() {
    let t = [("source", "NYSE"), ("empty", "")];
    assert!(check(set("source", "in", &["NASDAQ", "NYSE"]), &t));
    assert!(!check(set("source", "in", &["NASDAQ"]), &t));
    assert!(check(set("source", "nin", &["NASDAQ"]), &t));
    assert!(!check(set("source", "nin", &["NYSE", "LSE"]), &t));
    assert!(!check(set("missing", "in", &["NYSE"]), &t));
    assert!(check(set("missing", "in", &["", "NYSE"]), &t));
    assert!(check(set("missing", "nin", &["NYSE"]), &t));
    assert!(check(leaf("source", "ex", ""), &t));
    assert!(check(leaf("empty", "ex", ""), &t));
    assert!(!check(leaf("missing", "ex", ""), &t));
    assert!(check(leaf("missing", "nex", ""), &t));
    assert!(!check(leaf("source", "nex", ""), &t));
}

#[test]
fn numeric_comparisons_are_exact_and_false_for_non_numbers() {
    let t = [
        ("price", "100.50"),
        ("neg", "-3"),
        ("zero", "-0.00"),
        ("word", "cheap"),
        ("big", "123456789012345678901234567890"),
    ];
    assert!(!check(leaf("price", "gt", "100.5"), &t));
    assert!(check(leaf("price", "gte", "100.5"), &t));
    assert!(check(leaf("price", "lte", "100.500"), &t));
    assert!(check(leaf("price", "gt", "99.99"), &t));
    assert!(check(leaf("price", "lt", "100.51"), &t));
    assert!(check(leaf("price", "gt", "+9"), &t));
    assert!(check(leaf("price", "lt", "1000"), &t));
    assert!(check(leaf("neg", "lt", "-2.5"), &t));
    assert!(check(leaf("neg", "gt", "-3.1"), &t));
    assert!(!check(leaf("neg", "gt", "0"), &t));
    assert!(check(leaf("zero", "gte", "0"), &t));
    assert!(check(leaf("zero", "lte", "-0"), &t));
    assert!(check(
        leaf("big", "gt", "123456789012345678901234567889"),
        &t
    ));
    // Not numbers on either side: no match, whatever the operator.
    for cmp in ["gt", "gte", "lt", "lte"] {
        assert!(!check(leaf("word", cmp, "1"), &t), "{cmp}");
        assert!(!check(leaf("price", cmp, "abc"), &t), "{cmp}");
        assert!(!check(leaf("price", cmp, "1e3"), &t), "{cmp}");
        assert!(!check(leaf("missing", cmp, "1"), &t), "{cmp}");
    }
    assert!(!check(leaf("price", "gt", "1."), &t));
    assert!(!check(leaf("price", "gt", "-"), &t));
}

#[test]
fn and_or_not_combine_their_nodes() {
    let t = [("ticker", "AAPL"), ("price", "150")];
    let aapl = || leaf("ticker", "eq", "AAPL");
    let cheap = || leaf("price", "lt", "100");
    assert!(!check(group("and", vec![aapl(), cheap()]), &t));
    assert!(check(group("or", vec![aapl(), cheap()]), &t));
    assert!(check(group("not", vec![cheap()]), &t));
    assert!(check(
        group("and", vec![aapl(), group("not", vec![cheap()])]),
        &t
    ));
    assert!(!check(
        group("or", vec![group("not", vec![aapl()]), cheap()]),
        &t
    ));
}

#[test]
fn malformed_filters_are_refused_with_a_reason() {
    let err = |node: FilterNode| TagsFilter::compile(&node).unwrap_err();
    assert_eq!(err(leaf("k", "", "v")), FilterError::MissingCmp);
    assert_eq!(
        err(leaf("k", "like", "v")),
        FilterError::UnknownCmp("like".into())
    );
    assert_eq!(
        err(group("xor", vec![leaf("k", "eq", "v")])),
        FilterError::UnknownOp("xor".into())
    );
    assert_eq!(err(leaf("k", "eq", "")), FilterError::NeedsVal("eq"));
    assert_eq!(err(set("k", "eq", &["a"])), FilterError::NeedsVal("eq"));
    assert_eq!(err(set("k", "in", &[])), FilterError::NeedsVals("in"));
    assert_eq!(err(leaf("k", "nin", "a")), FilterError::NeedsVals("nin"));
    assert_eq!(err(leaf("k", "ex", "a")), FilterError::TakesNoValue("ex"));
    assert_eq!(err(leaf("", "eq", "a")), FilterError::MissingKey("eq"));
    assert_eq!(err(group("and", vec![])), FilterError::EmptyGroup("and"));
    assert_eq!(err(group("not", vec![])), FilterError::NotArity);
    assert_eq!(
        err(group("not", vec![leaf("a", "ex", ""), leaf("b", "ex", "")])),
        FilterError::NotArity
    );
    // A bad child fails the whole filter.
    assert_eq!(
        err(group("or", vec![leaf("a", "ex", ""), leaf("b", "gt", "")])),
        FilterError::NeedsVal("gt")
    );
    // ex/nex may test the empty key, as in Centrifugo.
    assert!(TagsFilter::compile(&leaf("", "nex", "")).is_ok());
}

#[test]
fn filters_are_bounded_in_depth_nodes_and_bytes() {
    let mut deep = leaf("k", "ex", "");
    for _ in 1..MAX_DEPTH {
        deep = group("not", vec![deep]);
    }
    assert!(TagsFilter::compile(&deep).is_ok());
    assert_eq!(
        TagsFilter::compile(&group("not", vec![deep])).unwrap_err(),
        FilterError::TooDeep
    );
    let wide = |n: usize| {
        group(
            "or",
            (0..n).map(|i| leaf(&format!("k{i}"), "ex", "")).collect(),
        )
    };
    assert!(TagsFilter::compile(&wide(MAX_NODES - 1)).is_ok());
    assert_eq!(
        TagsFilter::compile(&wide(MAX_NODES)).unwrap_err(),
        FilterError::TooManyNodes
    );
    let long = "x".repeat(MAX_BYTES);
    assert_eq!(
        TagsFilter::compile(&leaf("k", "eq", &long)).unwrap_err(),
        FilterError::TooLarge
    );
}

#[test]
fn filters_meaning_the_same_share_one_key() {
    let key = |node: FilterNode| TagsFilter::compile(&node).unwrap().key().to_vec();
    let a = || leaf("ticker", "eq", "AAPL");
    let b = || set("source", "in", &["NYSE", "NASDAQ"]);
    let b_reordered = || set("source", "in", &["NASDAQ", "NYSE", "NYSE"]);
    assert_eq!(
        key(group("and", vec![a(), b()])),
        key(group("and", vec![b_reordered(), a(), a()]))
    );
    // Fields an operator ignores do not split groups.
    let mut noisy = group("not", vec![a()]);
    noisy.key = "ignored".into();
    assert_eq!(key(noisy), key(group("not", vec![a()])));
    // Different meanings, different keys.
    assert_ne!(
        key(group("and", vec![a(), b()])),
        key(group("or", vec![a(), b()]))
    );
    assert_ne!(key(b()), key(set("source", "nin", &["NYSE", "NASDAQ"])));
    // The normal form still means the same.
    let f = TagsFilter::compile(&group("and", vec![b_reordered(), a()])).unwrap();
    assert!(f.matches(&tags(&[("ticker", "AAPL"), ("source", "NYSE")])));
    assert!(!f.matches(&tags(&[("ticker", "AAPL"), ("source", "LSE")])));
}
