//! Helpers shared by this crate's unit tests.

use crate::{Format, TenantConfig};

/// The path and message a JSON config is refused with.
pub fn refused(json: &str) -> (String, String) {
    let err = TenantConfig::parse(json, Format::Json).unwrap_err();
    (err.path().unwrap_or_default().to_owned(), err.to_string())
}
