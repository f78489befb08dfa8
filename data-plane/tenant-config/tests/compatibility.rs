//! `COMPATIBILITY.md` at the repository root is generated from the config schema; this test
//! fails when it drifts (and rewrites it when `ROTOR_REGENERATE=1`).

use std::path::PathBuf;

#[test]
fn compatibility_md_matches_the_schema() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../COMPATIBILITY.md");
    let expected = rotor_tenant_config::compatibility_markdown();
    if std::env::var("ROTOR_REGENERATE").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "COMPATIBILITY.md is out of date: run `ROTOR_REGENERATE=1 cargo test -p rotor-tenant-config --test compatibility`"
    );
}

#[test]
fn every_option_in_the_table_is_either_loaded_or_refused() {
    use rotor_tenant_config::{
        Format, TenantConfig, CHANNEL_OPTION_NAMES, REFUSED_CHANNEL_OPTIONS, REFUSED_OPTIONS,
    };
    for (name, _) in REFUSED_CHANNEL_OPTIONS {
        assert!(!CHANNEL_OPTION_NAMES.contains(name), "{name} is both");
        let text =
            format!(r#"{{"channel": {{"namespaces": [{{"name": "ns", "{name}": true}}]}}}}"#);
        let err = TenantConfig::parse(&text, Format::Json).unwrap_err();
        assert_eq!(
            err.path(),
            Some(format!("channel.namespaces[0].{name}").as_str())
        );
    }
    for (path, _) in REFUSED_OPTIONS {
        let mut value = serde_json::json!(1);
        for part in path.rsplit('.') {
            // `consumers` is a list: its options are those of its entries.
            value = match part {
                "consumers" => serde_json::json!({ part: [value] }),
                _ => serde_json::json!({ part: value }),
            };
        }
        let err = TenantConfig::from_value(value).unwrap_err();
        assert_eq!(err.path(), Some(*path), "{err}");
    }
}
