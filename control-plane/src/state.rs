//! What every request handler and background job of the control plane shares.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::auth_limits::AuthLimits;
use crate::settings::Settings;
use crate::supervisor::RouteTable;

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
}

impl AppState {
    /// State over a connected pool, with an empty route table.
    pub fn new(pool: PgPool, settings: Arc<Settings>) -> Self {
        let reconcile = Arc::new(Notify::new());
        let auth_limits = Arc::new(AuthLimits::new(pool.clone()));
        Self {
            pool,
            settings,
            routes: Arc::new(RouteTable::new(reconcile.clone())),
            reconcile,
            auth_limits,
        }
    }

    /// Asks the reconciler to converge now (call after every committed config change).
    pub fn config_changed(&self) {
        self.reconcile.notify_one();
    }
}
