//! What every request handler and background job of the control plane shares.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::settings::Settings;
use crate::supervisor::RouteTable;
use crate::web::session::LoginLimiter;

/// Shared state.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// Wakes the reconciler after a change (it also runs periodically on its own).
    pub reconcile: Arc<Notify>,
    /// Where each tenant runs (filled by the reconciler; read by the edge and the dashboard).
    pub routes: Arc<RouteTable>,
    /// Failed dashboard logins, per email and per client address.
    pub login_limiter: Arc<LoginLimiter>,
}

impl AppState {
    /// State over a connected pool, with an empty route table.
    pub fn new(pool: PgPool, settings: Arc<Settings>) -> Self {
        Self {
            pool,
            settings,
            reconcile: Arc::new(Notify::new()),
            routes: Arc::new(RouteTable::default()),
            login_limiter: Arc::new(LoginLimiter::default()),
        }
    }

    /// Asks the reconciler to converge now (call after every committed config change).
    pub fn config_changed(&self) {
        self.reconcile.notify_one();
    }
}
