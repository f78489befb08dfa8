//! Process settings from the environment, with local-development defaults.

use std::path::PathBuf;

/// How the control plane is run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Postgres URL; the database is created if missing.
    pub database_url: String,
    /// Redis URL offered to tenants on the Redis engine.
    pub redis_url: Option<String>,
    /// Public listener: edge, REST API and dashboard.
    pub listen: String,
    /// Base URL users see (endpoints shown in the API and dashboard).
    pub public_url: String,
    /// The `rotor-data-plane` binary to spawn per tenant.
    pub data_plane_bin: PathBuf,
    /// `ROTOR_TENANT_PRIVATE_EGRESS=1`: tenants' proxies and JWKS fetches may reach private
    /// and loopback addresses (development; hosted tenants reach public addresses only).
    pub tenant_private_egress: bool,
}

impl Settings {
    /// Reads `DATABASE_URL`, `REDIS_URL`, `ROTOR_LISTEN`, `ROTOR_PUBLIC_URL`,
    /// `ROTOR_DATA_PLANE_BIN` and `ROTOR_TENANT_PRIVATE_EGRESS`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let listen = var("ROTOR_LISTEN").unwrap_or_else(|| "127.0.0.1:8000".into());
        Self {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/rotor".into()),
            redis_url: var("REDIS_URL"),
            public_url: var("ROTOR_PUBLIC_URL").unwrap_or_else(|| format!("http://{listen}")),
            listen,
            data_plane_bin: var("ROTOR_DATA_PLANE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(default_data_plane_bin),
            tenant_private_egress: var("ROTOR_TENANT_PRIVATE_EGRESS")
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
        }
    }

    /// The public URL with `http` replaced by `ws` (for WebSocket endpoints).
    pub fn public_ws_url(&self) -> String {
        if let Some(rest) = self.public_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.public_url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.public_url.clone()
        }
    }
}

/// `rotor-data-plane` next to this executable.
fn default_data_plane_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("rotor-data-plane")))
        .unwrap_or_else(|| PathBuf::from("rotor-data-plane"))
}
