//! Process counters, exposed in Prometheus text format at `/metrics`. Plain atomics on the hot
//! path; labelled counters (by code or method) sit behind a short mutex on the error path only.
//!
//! The exposition is prometheus-client's (through [`rotor_exposition`], which reads these
//! counters at scrape time), but the counting is not: a prometheus-client `Counter` is the same
//! relaxed `fetch_add` on an `AtomicU64`, so it would save nothing, while its labelled
//! `Family` takes a lock and a hash lookup per increment where [`LabeledCounter`] is only on
//! the error path and the per-delivery counters (`messages_delivered`, `bytes_out`,
//! `lent_writes`) are plain fields the hot-path modules add to without knowing about any
//! metrics library. Nothing on the hot path changed, so there is nothing to measure there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use rotor_exposition::{Exposition, Kind};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Adds one unless the gauge is already at `limit` or above (0 = no limit); atomic, so
    /// racing callers cannot overshoot.
    pub fn try_inc_below(&self, limit: u64) -> bool {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (limit == 0 || v < limit).then_some(v + 1)
            })
            .is_ok()
    }
}

/// Distinct labels one [`LabeledCounter`] keeps; later ones count under [`OTHER_LABEL`].
pub const MAX_LABELS: usize = 64;
/// Where counts of labels past [`MAX_LABELS`] go.
pub const OTHER_LABEL: &str = "other";

/// Counters keyed by a label value. Some labels come from outside (error codes a customer's
/// proxy answers with, disconnect codes of the server API), so a counter keeps at most
/// [`MAX_LABELS`] of them and counts the rest under [`OTHER_LABEL`]: neither the metrics page
/// nor the usage report the supervisor meters can be made to grow without end.
#[derive(Debug, Default)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    pub fn inc(&self, label: impl Into<String>) {
        let label = label.into();
        let mut map = self.0.lock();
        if let Some(n) = map.get_mut(&label) {
            *n += 1;
        } else if map.len() < MAX_LABELS {
            map.insert(label, 1);
        } else {
            *map.entry(OTHER_LABEL.to_owned()).or_default() += 1;
        }
    }
    pub fn get(&self, label: &str) -> u64 {
        self.0.lock().get(label).copied().unwrap_or(0)
    }
    /// The sum over every label.
    pub fn total(&self) -> u64 {
        self.0.lock().values().sum()
    }
    /// Every label with its count.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.0.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Usage of one namespace ("" = channels without a namespace).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NamespaceUsage {
    /// Publications from clients.
    pub published_client: u64,
    /// Publications through the server API.
    pub published_api: u64,
    /// Publications queued to subscribers.
    pub delivered: u64,
    /// Current subscriptions.
    pub subscriptions: i64,
    /// Connections with at least one subscription in the namespace.
    pub connections: i64,
    /// Distinct users among those connections.
    pub users: i64,
}

/// Per-namespace counters; touched once per publish or fan-out, never per delivery.
#[derive(Debug, Default)]
pub struct NamespaceCounters(Mutex<NamespaceMaps>);

#[derive(Debug, Default)]
struct NamespaceMaps {
    usage: std::collections::HashMap<String, NamespaceUsage>,
    /// namespace → user → connections in it.
    users: std::collections::HashMap<String, std::collections::HashMap<String, u32>>,
}

impl NamespaceCounters {
    fn with(&self, namespace: &str, f: impl FnOnce(&mut NamespaceUsage)) {
        let mut maps = self.0.lock();
        let map = &mut maps.usage;
        match map.get_mut(namespace) {
            Some(u) => f(u),
            None => f(map.entry(namespace.to_owned()).or_default()),
        }
    }
    /// A publication accepted into `namespace`.
    pub fn published(&self, namespace: &str, from_client: bool) {
        self.with(namespace, |u| {
            if from_client {
                u.published_client += 1
            } else {
                u.published_api += 1
            }
        });
    }
    /// `n` deliveries of one publication.
    pub fn delivered(&self, namespace: &str, n: u64) {
        if n > 0 {
            self.with(namespace, |u| u.delivered += n);
        }
    }
    /// A subscription started (+1) or ended (-1).
    pub fn subscriptions(&self, namespace: &str, delta: i64) {
        self.with(namespace, |u| u.subscriptions += delta);
    }
    /// A copy of every namespace's counters.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, NamespaceUsage> {
        let maps = self.0.lock();
        maps.usage
            .iter()
            .map(|(k, v)| {
                let users = maps.users.get(k);
                let mut u = *v;
                u.connections = users.map_or(0, |m| m.values().map(|c| i64::from(*c)).sum());
                u.users = users.map_or(0, |m| m.len() as i64);
                (k.clone(), u)
            })
            .collect()
    }

    /// A connection of `user` got its first subscription in `namespace`.
    pub fn connection_entered(&self, namespace: &str, user: &str) {
        let mut maps = self.0.lock();
        // Keys are copied only when new (most calls find the namespace and many the user).
        if !maps.usage.contains_key(namespace) {
            maps.usage
                .insert(namespace.to_owned(), NamespaceUsage::default());
        }
        let users = match maps.users.get_mut(namespace) {
            Some(users) => users,
            None => maps.users.entry(namespace.to_owned()).or_default(),
        };
        match users.get_mut(user) {
            Some(n) => *n += 1,
            None => {
                users.insert(user.to_owned(), 1);
            }
        }
    }

    /// A connection of `user` lost its last subscription in `namespace`.
    pub fn connection_left(&self, namespace: &str, user: &str) {
        let mut maps = self.0.lock();
        if let Some(users) = maps.users.get_mut(namespace) {
            if let Some(n) = users.get_mut(user) {
                *n -= 1;
                if *n == 0 {
                    users.remove(user);
                }
            }
        }
    }
}

/// The namespace part of a channel name for usage accounting (`chat:room` → `chat`,
/// `$chat:room` → `chat`, `news` → "").
pub fn namespace_of(channel: &str) -> &str {
    let name = channel.strip_prefix('$').unwrap_or(channel);
    name.split_once(':').map_or("", |(ns, _)| ns)
}

/// Everything this process counts.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: Gauge,
    /// Client sockets held by a session, connected yet or not (the open-file budget).
    pub sockets: Gauge,
    pub connections_accepted: Counter,
    /// New connections refused by the server's own capacity, by reason (`open_files`).
    pub connections_refused: LabeledCounter,
    /// Follow-up requests on kept server API connections refused, by reason (`misdirected`,
    /// `over_budget`; see [`crate::kept_alive`]).
    pub kept_api_refused: LabeledCounter,
    pub subscriptions: Gauge,
    pub commands: LabeledCounter,
    pub messages_published: Counter,
    pub messages_delivered: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub api_calls: LabeledCounter,
    pub client_errors: LabeledCounter,
    pub disconnects: LabeledCounter,
    pub malformed_frames: Counter,
    /// Tags filter evaluations: one per distinct filter of a channel per publication.
    pub tags_filter_evaluations: Counter,
    /// Publications a subscriber's tags filter kept from it.
    pub tags_filter_dropped: Counter,
    /// Publications (and join/leave pushes) left out for a JSON connection because they carry
    /// bytes JSON cannot hold (someone else's binary payload).
    pub json_unwritable_dropped: Counter,
    /// Deliveries skipped because the publication excludes that subscriber (its publisher).
    pub publisher_excluded: Counter,
    /// Frames the fan-out wrote straight to an idle WebSocket connection's socket
    /// ([`crate::lent_write`]), and of those, the ones the socket took only in part.
    pub lent_writes: Counter,
    pub lent_writes_partial: Counter,
    pub namespaces: NamespaceCounters,
    /// Webhook events delivered (accepted by the backend with a 2xx).
    pub webhook_events_sent: Counter,
    /// Webhook batches sent again after a failed attempt.
    pub webhook_retries: Counter,
    /// Silent processes (Redis engine) whose webhook holdings this process released.
    pub webhook_processes_swept: Counter,
    /// Webhook events given up, by reason (`queue_full`, `max_attempts`, `egress_refused`,
    /// `engine_unavailable`); each is in the dead-letter ring until newer ones push it out.
    pub webhook_events_dropped: LabeledCounter,
    /// Centrifugo's metric families (see [`crate::centrifugo_metrics`]).
    pub centrifugo: crate::centrifugo_metrics::CentrifugoMetrics,
}

impl Metrics {
    /// The Prometheus text of this process's own families alone (`/metrics` adds the
    /// budgets' and Centrifugo's).
    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        self.expose(&mut e);
        e.encode()
    }

    /// Adds this process's own families (`rotor_…`) to `e`, read from the counters now.
    pub fn expose(&self, e: &mut Exposition) {
        e.gauge(
            "rotor_connections",
            "Current client connections.",
            self.connections.get(),
        );
        e.gauge(
            "rotor_client_sockets",
            "Client sockets held, whether their connect command came yet or not.",
            self.sockets.get(),
        );
        e.gauge(
            "rotor_subscriptions",
            "Current channel subscriptions.",
            self.subscriptions.get(),
        );
        for (name, help, v) in [
            (
                "connections_accepted_total",
                "Client connections accepted.",
                &self.connections_accepted,
            ),
            (
                "messages_published_total",
                "Publications accepted (client and API).",
                &self.messages_published,
            ),
            (
                "messages_delivered_total",
                "Pushes queued to subscribers.",
                &self.messages_delivered,
            ),
            (
                "lent_writes_total",
                "Pushes the fan-out wrote straight to an idle WebSocket connection's socket.",
                &self.lent_writes,
            ),
            (
                "lent_writes_partial_total",
                "Lent writes the socket took only in part (the connection sent the rest).",
                &self.lent_writes_partial,
            ),
            (
                "bytes_in_total",
                "Bytes received from clients.",
                &self.bytes_in,
            ),
            (
                "bytes_out_total",
                "Bytes written to clients.",
                &self.bytes_out,
            ),
            (
                "malformed_frames_total",
                "Frames that could not be decoded.",
                &self.malformed_frames,
            ),
            (
                "tags_filter_evaluations_total",
                "Tags filter evaluations (one per distinct filter of a channel per publication).",
                &self.tags_filter_evaluations,
            ),
            (
                "tags_filter_dropped_total",
                "Publications a subscriber's tags filter kept from it.",
                &self.tags_filter_dropped,
            ),
            (
                "json_unwritable_dropped_total",
                "Publications and join/leave pushes left out for a JSON connection because their payload is not JSON.",
                &self.json_unwritable_dropped,
            ),
            (
                "publisher_excluded_total",
                "Deliveries skipped because the publication excludes that subscriber (its publisher).",
                &self.publisher_excluded,
            ),
            (
                "webhook_events_sent_total",
                "Webhook events the backend accepted.",
                &self.webhook_events_sent,
            ),
            (
                "webhook_retries_total",
                "Webhook batches sent again after a failed attempt.",
                &self.webhook_retries,
            ),
            (
                "webhook_processes_swept_total",
                "Silent processes whose webhook holdings this process released.",
                &self.webhook_processes_swept,
            ),
        ] {
            e.counter(&format!("rotor_{name}"), help, v.get());
        }
        for (name, label, help, c) in [
            (
                "commands_total",
                "method",
                "Client commands by method.",
                &self.commands,
            ),
            (
                "api_calls_total",
                "method",
                "Server API calls by method.",
                &self.api_calls,
            ),
            (
                "client_errors_total",
                "code",
                "Command errors by code.",
                &self.client_errors,
            ),
            (
                "disconnects_total",
                "code",
                "Disconnects by code.",
                &self.disconnects,
            ),
            (
                "connections_refused_total",
                "reason",
                "New connections refused by the server's capacity, by reason.",
                &self.connections_refused,
            ),
            (
                "kept_api_refused_total",
                "reason",
                "Follow-up requests on kept server API connections refused, by reason.",
                &self.kept_api_refused,
            ),
            (
                "webhook_events_dropped_total",
                "reason",
                "Webhook events given up (kept in the dead-letter ring), by reason.",
                &self.webhook_events_dropped,
            ),
        ] {
            let family = e.family(&format!("rotor_{name}"), help, Kind::Counter);
            for (k, v) in c.snapshot() {
                family.count(&[(label, &k)], v);
            }
        }
        self.expose_namespaces(e);
    }

    /// The per-namespace families. They have always been exposed without a `# TYPE` line, so
    /// they stay untyped (a scraper reads them as it did).
    fn expose_namespaces(&self, e: &mut Exposition) {
        let snapshot = self.namespaces.snapshot();
        let published = e.family(
            "rotor_namespace_published_total",
            "Publications accepted into a namespace, by source (client or api).",
            Kind::Untyped,
        );
        for (ns, u) in &snapshot {
            published
                .set(
                    &[("namespace", ns), ("source", "client")],
                    as_i64(u.published_client),
                )
                .set(
                    &[("namespace", ns), ("source", "api")],
                    as_i64(u.published_api),
                );
        }
        let per_namespace: [(&str, &str, UsageField); 4] = [
            (
                "rotor_namespace_delivered_total",
                "Pushes of a namespace's publications queued to subscribers.",
                |u| as_i64(u.delivered),
            ),
            (
                "rotor_namespace_subscriptions",
                "Current subscriptions in a namespace.",
                |u| u.subscriptions,
            ),
            (
                "rotor_namespace_connections",
                "Connections with at least one subscription in a namespace.",
                |u| u.connections,
            ),
            (
                "rotor_namespace_users",
                "Distinct users among a namespace's connections.",
                |u| u.users,
            ),
        ];
        for (name, help, value) in per_namespace {
            let family = e.family(name, help, Kind::Untyped);
            for (ns, u) in &snapshot {
                family.set(&[("namespace", ns)], value(u));
            }
        }
    }
}

/// Reads one number of a namespace's usage.
type UsageField = fn(&NamespaceUsage) -> i64;

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_keeps_a_bounded_number_of_labels_and_counts_the_rest_as_other() {
        // The attack: a customer's proxy answers each call with another error code.
        let c = LabeledCounter::default();
        for code in 0..100_000u32 {
            c.inc(code.to_string());
        }
        c.inc("5");
        let snapshot = c.snapshot();
        assert_eq!(snapshot.len(), MAX_LABELS + 1);
        assert_eq!(c.get("5"), 2, "a label it keeps still counts");
        assert_eq!(c.get(OTHER_LABEL), 100_000 - MAX_LABELS as u64);
        assert_eq!(c.total(), 100_001, "nothing is lost from the total");
    }

    #[test]
    fn namespaces_are_taken_from_channel_names() {
        assert_eq!(namespace_of("chat:room"), "chat");
        assert_eq!(namespace_of("$chat:room"), "chat");
        assert_eq!(namespace_of("news"), "");
    }

    #[test]
    fn namespace_counters_add_up() {
        let m = Metrics::default();
        m.namespaces.published("chat", true);
        m.namespaces.published("chat", false);
        m.namespaces.delivered("chat", 10);
        m.namespaces.subscriptions("chat", 1);
        m.namespaces.connection_entered("chat", "u1");
        m.namespaces.connection_entered("chat", "u1");
        m.namespaces.connection_entered("chat", "u2");
        m.namespaces.connection_left("chat", "u2");
        let snap = m.namespaces.snapshot();
        assert_eq!(
            snap["chat"],
            NamespaceUsage {
                published_client: 1,
                published_api: 1,
                delivered: 10,
                subscriptions: 1,
                connections: 2,
                users: 1,
            }
        );
        let text = m.render();
        let parsed = rotor_exposition::check::exposition(&text).unwrap();
        assert_eq!(
            parsed.value("rotor_namespace_delivered_total", &[("namespace", "chat")]),
            Some(10.0),
            "{text}"
        );
    }
}
