//! What every request handler and background job of the control plane shares.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::settings::Settings;

/// Shared state.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// Wakes the reconciler after a change (it also runs periodically on its own).
    pub reconcile: Arc<Notify>,
}

impl AppState {
    /// Asks the reconciler to converge now (call after every committed config change).
    pub fn config_changed(&self) {
        self.reconcile.notify_one();
    }
}
