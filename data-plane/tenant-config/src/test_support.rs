//! Helpers shared by this crate's unit tests.

use crate::{Format, TenantConfig};

/// The path and message a JSON config is refused with.
pub fn refused(json: &str) -> (String, String) {
    let err = TenantConfig::parse(json, Format::Json).unwrap_err();
    (err.path().unwrap_or_default().to_owned(), err.to_string())
}

/// The message a config given as a JSON value is refused with (panics if it is accepted).
pub fn refused_value(value: serde_json::Value) -> String {
    match TenantConfig::from_value(value) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}
