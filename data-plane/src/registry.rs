//! The registry of connected clients: by id and by user, in the order they connected, for the
//! server API's targeted operations, user status and the node's counts.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::client::{ByClientId, ClientHandle, ClientIds};

/// Connected clients by id and by user, for the server API's targeted operations.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

/// One connected client.
struct Entry {
    handle: Arc<ClientHandle>,
    user: Arc<str>,
    /// When it connected (unix microseconds, strictly increasing within the process).
    connected_at: i64,
    /// Its session id (emulation and unidirectional transports only), which the server API's
    /// `session` field targets.
    session: Option<Arc<str>>,
}

#[derive(Default)]
struct RegistryInner {
    clients: ByClientId<Entry>,
    users: HashMap<Arc<str>, ClientIds>,
    /// The latest `connected_at` handed out.
    last_connected_at: i64,
}

impl Registry {
    /// Adds a connected client. Returns when it connected (unix microseconds; later than any
    /// client added before it), the order [`Registry::older`] follows.
    pub fn add(&self, client: Arc<ClientHandle>, user: Arc<str>, session: Option<Arc<str>>) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut inner = self.inner.lock();
        let connected_at = now.max(inner.last_connected_at + 1);
        inner.last_connected_at = connected_at;
        inner
            .users
            .entry(user.clone())
            .or_default()
            .insert(client.id.clone());
        inner.clients.insert(
            client.id.clone(),
            Entry {
                handle: client,
                user,
                connected_at,
                session,
            },
        );
        connected_at
    }

    /// Removes a client.
    pub fn remove(&self, client_id: &str) {
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.clients.remove(client_id) {
            if let Some(set) = inner.users.get_mut(&entry.user) {
                set.remove(client_id);
                if set.is_empty() {
                    inner.users.remove(&entry.user);
                }
            }
        }
    }

    /// Every user with a connection (the anonymous `""` included).
    pub fn user_ids(&self) -> Vec<Arc<str>> {
        self.inner.lock().users.keys().cloned().collect()
    }

    /// Connections of one user.
    pub fn user_connections(&self, user: &str) -> usize {
        self.inner.lock().users.get(user).map_or(0, ClientIds::len)
    }

    /// Number of connections and distinct users.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.clients.len(), inner.users.len())
    }

    /// The connections of `user` (`""`: the anonymous ones, as in Centrifugo), narrowed to
    /// client id `client` and to session id `session` where they are not empty. A client id
    /// of another user matches nothing.
    pub fn find(&self, user: &str, client: &str, session: &str) -> Vec<Arc<ClientHandle>> {
        let inner = self.inner.lock();
        let matches = |e: &Entry| session.is_empty() || e.session.as_deref() == Some(session);
        if !client.is_empty() {
            return inner
                .clients
                .get(client)
                .filter(|e| &*e.user == user)
                .filter(|e| matches(e))
                .map(|e| vec![e.handle.clone()])
                .unwrap_or_default();
        }
        inner
            .users
            .get(user)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| inner.clients.get(id))
                    .filter(|e| matches(e))
                    .map(|e| e.handle.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The connections of `user` other than `client` that connected before `connected_at`
    /// (unix microseconds): what a newer connection of a single-connection user replaces.
    pub fn older(&self, user: &str, client: &str, connected_at: i64) -> Vec<Arc<ClientHandle>> {
        let inner = self.inner.lock();
        let Some(ids) = inner.users.get(user) else {
            return Vec::new();
        };
        ids.iter()
            .filter(|id| ***id != *client)
            .filter_map(|id| inner.clients.get(id))
            .filter(|e| e.connected_at < connected_at)
            .map(|e| e.handle.clone())
            .collect()
    }

    /// Every connected client.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.inner
            .lock()
            .clients
            .values()
            .map(|e| e.handle.clone())
            .collect()
    }
}
