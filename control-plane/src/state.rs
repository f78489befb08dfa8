//! What every request handler and background job of the control plane shares.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::auth_limits::AuthLimits;
use crate::mail::{Mailer, SmtpMailer};
use crate::password_reset::Resets;
use crate::settings::Settings;
use crate::supervisor::RouteTable;
use crate::write_limits::WriteLimits;

/// Shared state.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// Wakes the reconciler after a change (it also runs periodically on its own).
    pub reconcile: Arc<Notify>,
    /// Where each tenant runs (filled by the reconciler; read by the edge and the dashboard).
    pub routes: Arc<RouteTable>,
    /// Failed logins and sign-ups, per email and per client address (REST and dashboard),
    /// counted in Postgres so every control-plane process shares them.
    pub auth_limits: Arc<AuthLimits>,
    /// Password reset requests, answered by mail off the request path.
    pub resets: Arc<Resets>,
    /// Each account's budget of management writes (REST and dashboard).
    pub write_limits: Arc<WriteLimits>,
    /// Live usage streams open per account ([`crate::rest::usage`]).
    pub live_streams: Arc<crate::rest::usage::LiveStreams>,
}

impl AppState {
    /// State over a connected pool, with an empty route table, mailing through the SMTP
    /// relay of `settings` (if any). Call it on a Tokio runtime: it starts the reset worker.
    pub fn new(pool: PgPool, settings: Arc<Settings>) -> Self {
        let mailer = settings.mail.clone().and_then(|config| {
            if config.credentials_in_clear() {
                tracing::warn!(host = %config.host, "ROTOR_SMTP_URL sends its password without TLS");
            }
            SmtpMailer::new(config)
                .inspect_err(|e| tracing::error!("mail disabled: {e}"))
                .ok()
                .map(|m| Arc::new(m) as Arc<dyn Mailer>)
        });
        Self::with_mailer(pool, settings, mailer)
    }

    /// [`AppState::new`] with another way to deliver mail (or none).
    pub fn with_mailer(
        pool: PgPool,
        settings: Arc<Settings>,
        mailer: Option<Arc<dyn Mailer>>,
    ) -> Self {
        let reconcile = Arc::new(Notify::new());
        let auth_limits = Arc::new(AuthLimits::new(pool.clone()));
        match &mailer {
            Some(m) => tracing::info!(mail = %m.describe(), "mail enabled"),
            None => tracing::warn!(
                "mail disabled (ROTOR_SMTP_URL is not set): password reset links cannot be sent"
            ),
        }
        let resets = Arc::new(Resets::start(
            pool.clone(),
            settings.public_url.clone(),
            mailer,
        ));
        Self {
            pool,
            settings,
            routes: Arc::new(RouteTable::new(reconcile.clone())),
            reconcile,
            auth_limits,
            resets,
            write_limits: Arc::new(WriteLimits::from_env()),
            live_streams: Arc::default(),
        }
    }

    /// Asks the reconciler to converge now (call after every committed config change).
    pub fn config_changed(&self) {
        self.reconcile.notify_one();
    }
}
