//! Where things are: service URLs, the workspace root, the interop clients and built binaries.

use std::collections::HashSet;
use std::env;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The Postgres server used when `DATABASE_URL` is unset (what `scripts/ensure-services.sh` runs).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The Redis server used when `REDIS_URL` is unset (what `scripts/ensure-services.sh` runs).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `DATABASE_URL` if set and non-empty, else [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    env_or("DATABASE_URL", DEFAULT_DATABASE_URL)
}

/// `REDIS_URL` if set and non-empty, else [`DEFAULT_REDIS_URL`].
pub fn redis_url() -> String {
    env_or("REDIS_URL", DEFAULT_REDIS_URL)
}

fn env_or(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// `tests/clients`: the Node.js and Python interop clients.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The path of the workspace binary `name` (e.g. `rotor-data-plane`), as built by
/// `cargo build --workspace --bins`.
///
/// Looks, in order, at `ROTOR_BIN_DIR`, `NEXTEST_BIN_EXE_<name>` / `CARGO_BIN_EXE_<name>`, the
/// profile directory the running test executable was built into (so `CARGO_TARGET_DIR`, release
/// builds and nextest archives work), `$CARGO_TARGET_DIR/debug` and `<workspace>/target/debug`.
pub fn binary_path(name: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = env::var_os("ROTOR_BIN_DIR") {
        candidates.push(PathBuf::from(dir).join(name));
    }
    for var in [
        format!("NEXTEST_BIN_EXE_{name}"),
        format!("CARGO_BIN_EXE_{name}"),
    ] {
        if let Some(path) = env::var_os(var) {
            candidates.push(PathBuf::from(path));
        }
    }
    for dir in binary_dirs() {
        candidates.push(dir.join(name));
    }
    let mut seen = HashSet::new();
    candidates.retain(|path| seen.insert(path.clone()));

    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    let searched: Vec<String> = candidates
        .iter()
        .map(|path| format!("  {}", path.display()))
        .collect();
    bail!(
        "binary `{name}` is not built; run `cargo build --workspace --bins` first (or `make test`). \
         Searched:\n{}",
        searched.join("\n")
    )
}

/// Directories that may hold the workspace's built binaries, most specific first.
fn binary_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    if let Ok(exe) = env::current_exe() {
        if let Some(parent) = exe.parent() {
            if parent.file_name().is_some_and(|name| name == "deps") {
                if let Some(profile_dir) = parent.parent() {
                    dirs.push(profile_dir.to_path_buf());
                }
            } else {
                dirs.push(parent.to_path_buf());
            }
        }
    }
    if let Some(target) = env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(target).join("debug"));
    }
    dirs.push(workspace_root().join("target").join("debug"));
    dirs
}
