//! A subscription between preparation and activation: registered as pending in the hub (its
//! publications held back while the answer is built), maybe in presence. [`PendingSub`]
//! undoes whatever was registered when it is dropped without [`PendingSub::commit`], so every
//! early return of a preparation, and every prepared subscription a connect does not
//! activate, cleans up by going out of scope.

use std::sync::Arc;

use crate::node::Node;

/// A subscription pending in the hub, undone on drop unless committed.
pub(crate) struct PendingSub {
    node: Arc<Node>,
    client: Arc<str>,
    user: Arc<str>,
    channel: String,
    /// The subscriber is in the channel's presence (and holds a presence budget slot).
    presence: bool,
    committed: bool,
}

impl PendingSub {
    /// Takes charge of `client`'s pending hub entry in `channel`, just made.
    pub(super) fn new(node: Arc<Node>, client: Arc<str>, user: Arc<str>, channel: String) -> Self {
        Self {
            node,
            client,
            user,
            channel,
            presence: false,
            committed: false,
        }
    }

    /// Records that the subscriber was added to the channel's presence.
    pub(super) fn joined_presence(&mut self) {
        self.presence = true;
    }

    /// The session now owns the subscription (its unsubscribe or close undoes it).
    pub(super) fn commit(mut self) -> String {
        self.committed = true;
        std::mem::take(&mut self.channel)
    }
}

impl Drop for PendingSub {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Dropped while the runtime shuts down, only the hub entry is removed: the engine's
        // and presence's go with the process.
        let runtime = tokio::runtime::Handle::try_current().ok();
        if self.presence {
            self.node.budgets.release_presence();
            if let Some(rt) = &runtime {
                let presence = self.node.presence.clone();
                let (channel, client, user) =
                    (self.channel.clone(), self.client.clone(), self.user.clone());
                rt.spawn(async move {
                    let _ = presence.remove_presence(&channel, &client, &user).await;
                });
            }
        }
        if self.node.hub.remove(&self.channel, &self.client) {
            if let Some(rt) = &runtime {
                let broker = self.node.broker.clone();
                let channel = std::mem::take(&mut self.channel);
                rt.spawn(async move {
                    let _ = broker.unsubscribe(&channel).await;
                });
            }
        }
    }
}
