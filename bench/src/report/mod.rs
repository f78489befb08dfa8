//! The report side of `make bench`: machine facts, parsers for the outputs of the Redis
//! `cargo bench` and the config-push e2e test, and BENCHMARKS.md generated from
//! `bench/results/`, with the multi-tenant scenarios (noisy neighbour, density).

mod engines;
mod filters;
mod grpc;
pub mod machine;
pub mod markdown;
pub mod parse;
mod presence;
mod targets;
mod tenancy;

use std::collections::BTreeMap;
use std::path::Path;

use crate::results::RunResult;

/// Why the report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("parsing {0}: {1}")]
    Json(String, serde_json::Error),
}

/// Every run result in `dir`, by name (other JSON files are skipped).
pub fn load_runs(dir: &Path) -> Result<BTreeMap<String, RunResult>, ReportError> {
    let mut out = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| ReportError::Read(dir.display().to_string(), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ReportError::Read(path.display().to_string(), e))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ReportError::Json(path.display().to_string(), e))?;
        if value.get("steps").is_none() || value.get("name").is_none() {
            continue;
        }
        let run: RunResult = serde_json::from_value(value)
            .map_err(|e| ReportError::Json(path.display().to_string(), e))?;
        out.insert(run.name.clone(), run);
    }
    Ok(out)
}

/// Reads an optional JSON file of type `T` (None when missing or unreadable).
pub fn load_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}
