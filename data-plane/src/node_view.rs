//! What the node's own services (`webhooks/`, `user_status/`) read of the node that owns them:
//! its id, live config, metrics, connection registry and shutdown. The node implements
//! [`NodeView`] and hands itself to them as `&dyn NodeView` (their tasks hold a
//! `Weak<dyn NodeView>` and end with the node), so they never import the node that starts and
//! calls them.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::RuntimeConfig;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// The parts of a node its webhooks and user status read.
pub trait NodeView: Send + Sync + 'static {
    /// The node's id (unique per process).
    fn id(&self) -> &str;
    /// The config in force now (hold it for one operation).
    fn config(&self) -> Arc<RuntimeConfig>;
    /// The node's metrics.
    fn metrics(&self) -> &Metrics;
    /// The node's registry of connected clients.
    fn registry(&self) -> &Registry;
    /// Cancelled when the node shuts down.
    fn shutdown(&self) -> &CancellationToken;
}
