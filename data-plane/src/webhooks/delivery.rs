//! Delivery: events wait in a bounded outbox; one task takes them in batches of
//! `webhooks.batch_size`, POSTs each batch as `{"time_ms": …, "events": […]}` signed with the
//! project's secret, and retries a batch that failed (non-2xx, transport error, timeout) with
//! exponential backoff and jitter, the same body and `X-Rotor-Webhook-Id` every time, until
//! `webhooks.max_attempts`; then the batch goes to the dead-letter ring. At least once: a
//! receiver may see a batch again (after a lost answer) and deduplicates by its id. Requests
//! follow the tenant's egress policy exactly as the proxies do. Batches the owner sends again
//! from the dead-letter ring wait in their own queue, go first, and keep their id; they are
//! signed with the secret in force when they are sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use rotor_tenant_config::WebhooksSection;
use tokio::sync::Notify;

use super::dead_letter::{DeadLetter, Reason};
use super::event::{unix_ms, Event};
use super::sign::{sign, ID_HEADER, SIGNATURE_HEADER};
use super::Webhooks;
use crate::egress::Egress;
use crate::node_view::NodeView;

/// Events waiting for delivery.
#[derive(Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<Event>>,
    /// Dead-lettered batches the owner sends again: (webhook id, events).
    resend: Mutex<VecDeque<(String, Vec<Event>)>>,
    pub(super) ready: Notify,
    /// Batches being delivered (0 or 1).
    in_flight: AtomicUsize,
}

impl Outbox {
    /// Queues `event` unless `cap` events already wait (then it is handed back).
    pub fn push(&self, event: Event, cap: usize) -> Result<(), Event> {
        {
            let mut q = self.queue.lock();
            if q.len() >= cap {
                return Err(event);
            }
            q.push_back(event);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Queues dead-lettered batches to be sent again with their ids.
    pub fn push_resend(&self, batches: impl IntoIterator<Item = (String, Vec<Event>)>) {
        self.resend.lock().extend(batches);
        self.ready.notify_one();
    }

    /// Batches waiting to be sent again.
    pub fn resend_len(&self) -> usize {
        self.resend.lock().len()
    }

    fn take_resend(&self) -> Option<(String, Vec<Event>)> {
        self.resend.lock().pop_front()
    }

    fn take(&self, n: usize) -> Vec<Event> {
        let mut q = self.queue.lock();
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    /// Events waiting (batches to send again included).
    pub fn len(&self) -> usize {
        let again: usize = self.resend.lock().iter().map(|(_, e)| e.len()).sum();
        self.queue.lock().len() + again
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().is_empty() && self.resend.lock().is_empty()
    }

    /// Whether nothing waits and nothing is being delivered.
    pub fn is_idle(&self) -> bool {
        self.is_empty() && self.in_flight.load(Ordering::Acquire) == 0
    }

    fn clear(&self) {
        self.queue.lock().clear();
        self.resend.lock().clear();
    }
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("the receiver answered {0}")]
    Status(u16),
    #[error("{0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Egress(String),
    #[error("webhooks.url: {0}")]
    Url(String),
}

/// The HTTP client of the webhooks: its own pool, no redirects, no proxy from the
/// environment, the process's egress rule for every name it resolves.
pub fn client() -> reqwest::Client {
    Egress::current().http_client(concat!("rotor-webhooks/", env!("CARGO_PKG_VERSION")))
}

/// The delivery task: runs until the node is gone, or it stopped and everything queued was
/// tried.
pub(super) async fn run(node: Weak<dyn NodeView>, hooks: Arc<Webhooks>, http: reqwest::Client) {
    loop {
        if hooks.outbox.is_empty() {
            if hooks.flushed.load(Ordering::Acquire) {
                break;
            }
            tokio::select! {
                _ = hooks.outbox.ready.notified() => {}
                // Re-check now and then: the flush flag is set without a notification.
                _ = tokio::time::sleep(Duration::from_millis(200)), if hooks.stopping() => {}
            }
            continue;
        }
        let Some(node) = node.upgrade() else { break };
        let settings = node.config().tenant.webhooks.clone();
        if !settings.enabled {
            hooks.outbox.clear();
            continue;
        }
        hooks.outbox.in_flight.fetch_add(1, Ordering::AcqRel);
        let (id, events) = match hooks.outbox.take_resend() {
            Some(again) => again,
            None => (
                uuid::Uuid::new_v4().to_string(),
                hooks.outbox.take(settings.batch_size as usize),
            ),
        };
        if !events.is_empty() {
            deliver(&*node, &hooks, &http, &settings, id, events).await;
        }
        hooks.outbox.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sends one batch under webhook id `id` until it is accepted or given up.
async fn deliver(
    node: &dyn NodeView,
    hooks: &Webhooks,
    http: &reqwest::Client,
    settings: &WebhooksSection,
    id: String,
    events: Vec<Event>,
) {
    let body = serde_json::json!({"time_ms": unix_ms(), "events": &events});
    let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut backoff = settings.retry_backoff.get();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match attempt(http, settings, &id, &body).await {
            Ok(()) => {
                node.metrics().webhook_events_sent.add(events.len() as u64);
                return;
            }
            Err(e) => e,
        };
        let refused = matches!(error, AttemptError::Egress(_) | AttemptError::Url(_));
        if refused || attempts >= settings.max_attempts {
            tracing::warn!(webhook_id = %id, attempts, error = %error, "webhook batch given up");
            let status = match error {
                AttemptError::Status(s) => Some(s),
                _ => None,
            };
            let reason = if refused {
                Reason::EgressRefused
            } else {
                Reason::MaxAttempts
            };
            hooks.dead_letter(
                node,
                settings,
                DeadLetter {
                    time_ms: unix_ms(),
                    reason,
                    webhook_id: id,
                    status,
                    error: (status.is_none()).then(|| error.to_string()),
                    attempts,
                    events,
                },
            );
            return;
        }
        tracing::debug!(webhook_id = %id, attempts, error = %error, "webhook batch will be retried");
        node.metrics().webhook_retries.inc();
        // Exponential backoff, each wait drawn from its upper half.
        let half = backoff / 2;
        let jitter = Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64));
        tokio::time::sleep(half + jitter).await;
        backoff = (backoff * 2).min(settings.max_retry_backoff.get());
    }
}

/// One POST of `body`.
async fn attempt(
    http: &reqwest::Client,
    settings: &WebhooksSection,
    id: &str,
    body: &bytes::Bytes,
) -> Result<(), AttemptError> {
    let url = reqwest::Url::parse(&settings.url).map_err(|e| AttemptError::Url(e.to_string()))?;
    Egress::current()
        .check(&url)
        .map_err(|e| AttemptError::Egress(e.to_string()))?;
    let request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(settings.secret.as_bytes(), body))
        .header(ID_HEADER, id)
        .body(body.clone());
    let timeout = settings.timeout.get();
    let exchange = async {
        let response = request.send().await.map_err(|e| {
            let text = describe(&e.without_url());
            if text.contains("not public") {
                // The resolver refused the name's addresses (egress policy).
                AttemptError::Egress(text)
            } else {
                AttemptError::Transport(text)
            }
        })?;
        let status = response.status();
        // The answer's body is not needed; reading a little lets the connection be reused.
        let _ = response.bytes().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(AttemptError::Status(status.as_u16()))
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| AttemptError::Timeout(timeout))?
}

/// A transport error with its causes (a refused name says "not public" there).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
