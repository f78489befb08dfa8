//! Logging to standard error at the level the config asks for (`log.level`, or the older
//! `log_level`: Centrifugo's `trace`, `debug`, `info`, `warn`, `error`, `none`), unless the
//! `RUST_LOG` environment variable is set, which then decides alone. A config reloaded or
//! pushed with another level applies it at once. Output is held to a byte budget when
//! `ROTOR_LOG_BYTES_PER_SECOND` is set ([`crate::log_budget`]).

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The filter for a configured level (`None`: Centrifugo's default, `info`). `debug` and
/// `trace` open Rotor's own events; libraries stay at `info`, as Centrifugo's debug log is its
/// own too.
pub fn filter_for(level: Option<&str>) -> String {
    match level.unwrap_or("info") {
        "none" => "off".into(),
        "error" => "error".into(),
        "warn" => "warn".into(),
        level @ ("debug" | "trace") => {
            format!("info,rotor_data_plane={level},rotor_tenant_config={level}")
        }
        _ => "info".into(),
    }
}

/// The installed logger; follows config changes unless `RUST_LOG` decides.
pub struct Logging {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    current: String,
}

impl Logging {
    /// Installs the process's logger for a config asking for `level`.
    pub fn init(level: Option<&str>) -> Self {
        let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
        let (spec, follows_config) = match from_env {
            Some(spec) => (spec, false),
            None => (filter_for(level), true),
        };
        let (filter, handle) = reload::Layer::new(EnvFilter::new(&spec));
        let fmt = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(match crate::log_budget::from_env() {
                Some(rate) => BoxMakeWriter::new(crate::log_budget::BudgetedStderr::new(rate)),
                None => BoxMakeWriter::new(std::io::stderr),
            })
            // A closed stderr (e.g. a parent that went away) must never take a request down.
            .log_internal_errors(false);
        tracing_subscriber::registry().with(filter).with(fmt).init();
        Self {
            handle: follows_config.then_some(handle),
            current: spec,
        }
    }

    /// Applies the level of a new config (nothing when `RUST_LOG` decides).
    pub fn follow(&mut self, level: Option<&str>) {
        let Some(handle) = &self.handle else {
            return;
        };
        let spec = filter_for(level);
        if spec == self.current {
            return;
        }
        match handle.reload(EnvFilter::new(&spec)) {
            Ok(()) => {
                tracing::info!(level = level.unwrap_or("info"), "log level changed");
                self.current = spec;
            }
            Err(e) => tracing::warn!(error = %e, "log level not changed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centrifugo_levels_map_to_filters() {
        assert_eq!(filter_for(None), "info");
        assert_eq!(filter_for(Some("none")), "off");
        assert_eq!(filter_for(Some("warn")), "warn");
        assert!(filter_for(Some("debug")).contains("rotor_data_plane=debug"));
        for level in rotor_tenant_config::LOG_LEVELS {
            assert!(
                EnvFilter::try_new(filter_for(Some(level))).is_ok(),
                "{level}"
            );
        }
    }
}
