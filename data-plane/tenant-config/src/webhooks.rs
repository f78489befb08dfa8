//! `webhooks.*`: channel and connection events POSTed to the project's backend (Rotor's own
//! option, off unless enabled): where to send them, the secret that signs them, which events,
//! how long a removal waits for its matching addition (`grace`), and the bounds of the queue,
//! the retries and the dead-letter ring. Validated here so the control plane applies the same
//! rules before it pushes a project's settings.

use serde::{Deserialize, Serialize};

use crate::duration::ConfigDuration;
use crate::load::ConfigError;

/// Every event a webhook may carry, in the order the README lists them.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_disconnected",
];

/// Longest `webhooks.grace` accepted.
pub const MAX_WEBHOOK_GRACE_SECS: u64 = 300;
/// Largest `webhooks.queue_size` accepted (events waiting for delivery).
pub const MAX_WEBHOOK_QUEUE_SIZE: u32 = 100_000;
/// Largest `webhooks.batch_size` accepted.
pub const MAX_WEBHOOK_BATCH_SIZE: u32 = 1_000;
/// Largest `webhooks.max_attempts` accepted.
pub const MAX_WEBHOOK_ATTEMPTS: u32 = 20;
/// Largest `webhooks.dead_letter_size` accepted.
pub const MAX_WEBHOOK_DEAD_LETTERS: u32 = 10_000;
/// Longest `webhooks.url` accepted, in bytes.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// Longest `webhooks.timeout` a hosted project may set (the control plane's rule, shared
/// with the Terraform provider so a plan refuses what the API would).
pub const HOSTED_MAX_WEBHOOK_TIMEOUT_SECS: u64 = 10;
/// Shortest `webhooks.secret` a hosted project may set (same sharing).
pub const HOSTED_MIN_WEBHOOK_SECRET_LEN: usize = 16;

/// `webhooks.*`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhooksSection {
    /// Send events at all.
    pub enabled: bool,
    /// `https://` or `http://` URL every batch is POSTed to.
    pub url: String,
    /// Key of the `X-Rotor-Signature` HMAC-SHA256 over each request body. Never logged.
    pub secret: String,
    /// Which of [`WEBHOOK_EVENTS`] to send (default: all of them).
    pub events: Vec<String>,
    /// How long a `channel_vacated`, `member_removed` or `client_disconnected` waits for the
    /// matching `channel_occupied`, `member_added` or reconnection of the same user, which
    /// cancels both (default 5 s; 0 sends every event at once).
    pub grace: ConfigDuration,
    /// Deadline of one delivery attempt (connect, send, answer).
    pub timeout: ConfigDuration,
    /// Attempts per batch (the first included) before it goes to the dead-letter ring.
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry doubles it (with jitter).
    pub retry_backoff: ConfigDuration,
    /// Longest wait between two attempts.
    pub max_retry_backoff: ConfigDuration,
    /// Events waiting for delivery; past it new events go to the dead-letter ring
    /// (`queue_full`).
    pub queue_size: u32,
    /// Most events in one request.
    pub batch_size: u32,
    /// Failed batches and dropped events kept for the admin surface (the newest).
    pub dead_letter_size: u32,
}

impl std::fmt::Debug for WebhooksSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("WebhooksSection")
            .field("enabled", &self.enabled)
            .field("url", &self.url)
            .field("secret", &if self.secret.is_empty() { "" } else { "…" })
            .field("events", &self.events)
            .field("grace", &self.grace)
            .field("queue_size", &self.queue_size)
            .finish_non_exhaustive()
    }
}

impl Default for WebhooksSection {
    fn default() -> Self {
        Self {
            enabled: false,
            url: String::new(),
            secret: String::new(),
            events: WEBHOOK_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            grace: ConfigDuration::from_secs(5),
            timeout: ConfigDuration::from_secs(5),
            max_attempts: 8,
            retry_backoff: ConfigDuration::from_secs(1),
            max_retry_backoff: ConfigDuration::from_secs(60),
            queue_size: 10_000,
            batch_size: 100,
            dead_letter_size: 100,
        }
    }
}

impl WebhooksSection {
    /// Whether nothing differs from the defaults (left out of a rendered config).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `event` (one of [`WEBHOOK_EVENTS`]) is sent.
    pub fn wants(&self, event: &str) -> bool {
        self.enabled && self.events.iter().any(|e| e == event)
    }

    /// The rules the types cannot say, with the path of the bad field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |field: &str, why: String| Err(ConfigError::invalid(format!("webhooks.{field}"), why));
        if self.enabled || !self.url.is_empty() {
            if let Err(why) = check_url(&self.url) {
                return bad("url", why);
            }
        }
        if self.enabled && self.secret.is_empty() {
            return bad(
                "secret",
                "must not be empty: it signs every request (X-Rotor-Signature)".into(),
            );
        }
        if self.secret.len() > 1024 {
            return bad("secret", "must be at most 1024 bytes".into());
        }
        if self.enabled && self.events.is_empty() {
            return bad("events", "must list at least one event".into());
        }
        for (i, e) in self.events.iter().enumerate() {
            if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                return bad(
                    &format!("events[{i}]"),
                    format!("unknown event {e:?}: one of {}", WEBHOOK_EVENTS.join(", ")),
                );
            }
            if self.events[..i].contains(e) {
                return bad(&format!("events[{i}]"), format!("{e:?} is listed twice"));
            }
        }
        if self.grace.get().as_secs() > MAX_WEBHOOK_GRACE_SECS
            || (self.grace.get().as_secs() == MAX_WEBHOOK_GRACE_SECS
                && self.grace.get().subsec_nanos() > 0)
        {
            return bad(
                "grace",
                format!("must be between 0 (off) and {MAX_WEBHOOK_GRACE_SECS}s"),
            );
        }
        let timeout = self.timeout.get();
        if timeout.as_millis() < 100 || timeout.as_secs() > 60 {
            return bad("timeout", "must be between 100ms and 60s".into());
        }
        if self.max_attempts == 0 || self.max_attempts > MAX_WEBHOOK_ATTEMPTS {
            return bad(
                "max_attempts",
                format!("must be between 1 and {MAX_WEBHOOK_ATTEMPTS}"),
            );
        }
        let backoff = self.retry_backoff.get();
        if backoff.as_millis() < 10 || backoff.as_secs() > 600 {
            return bad("retry_backoff", "must be between 10ms and 600s".into());
        }
        let max_backoff = self.max_retry_backoff.get();
        if max_backoff < backoff || max_backoff.as_secs() > 3600 {
            return bad(
                "max_retry_backoff",
                "must be at least webhooks.retry_backoff and at most 3600s".into(),
            );
        }
        if self.queue_size == 0 || self.queue_size > MAX_WEBHOOK_QUEUE_SIZE {
            return bad(
                "queue_size",
                format!("must be between 1 and {MAX_WEBHOOK_QUEUE_SIZE}"),
            );
        }
        if self.batch_size == 0 || self.batch_size > MAX_WEBHOOK_BATCH_SIZE {
            return bad(
                "batch_size",
                format!("must be between 1 and {MAX_WEBHOOK_BATCH_SIZE}"),
            );
        }
        if self.dead_letter_size == 0 || self.dead_letter_size > MAX_WEBHOOK_DEAD_LETTERS {
            return bad(
                "dead_letter_size",
                format!("must be between 1 and {MAX_WEBHOOK_DEAD_LETTERS}"),
            );
        }
        Ok(())
    }
}

/// What an `http://` or `https://` URL needs before the data plane parses it in full: a
/// scheme, a host, no credentials, no whitespace. Err: why not, in words.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    check_url(url)
}

fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("must be set: the http:// or https:// URL events are POSTed to".into());
    }
    if url.len() > MAX_WEBHOOK_URL_LEN {
        return Err(format!("must be at most {MAX_WEBHOOK_URL_LEN} bytes"));
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err("must start with https:// or http://".into());
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "must not carry credentials (user:password@): the secret signs requests".into(),
        );
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err("must name a host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_support::refused_value as refused;
    use crate::TenantConfig;
    use serde_json::json;

    fn on(extra: serde_json::Value) -> serde_json::Value {
        let mut w =
            json!({"enabled": true, "url": "https://app.example.com/hooks", "secret": "s3cret"});
        for (k, v) in extra.as_object().unwrap() {
            w[k] = v.clone();
        }
        json!({ "webhooks": w })
    }

    #[test]
    fn webhooks_are_off_by_default_and_send_every_event_after_five_seconds_of_grace() {
        let c = TenantConfig::from_value(json!({})).unwrap().config;
        assert!(!c.webhooks.enabled);
        assert!(!c.webhooks.wants("channel_occupied"));
        let c = TenantConfig::from_value(on(json!({}))).unwrap().config;
        assert!(c.webhooks.wants("channel_occupied"));
        assert!(c.webhooks.wants("client_disconnected"));
        assert_eq!(c.webhooks.grace.get().as_secs(), 5);
        let c = TenantConfig::from_value(on(json!({"events": ["member_added"], "grace": "0s"})))
            .unwrap()
            .config;
        assert!(c.webhooks.wants("member_added"));
        assert!(!c.webhooks.wants("channel_occupied"));
        assert!(c.webhooks.grace.is_zero());
    }

    #[test]
    fn bad_webhook_values_are_refused_naming_their_path() {
        for (extra, path) in [
            (json!({"url": ""}), "webhooks.url"),
            (json!({"url": "ftp://x/"}), "webhooks.url"),
            (json!({"url": "https://"}), "webhooks.url"),
            (
                json!({"url": "https://u:p@app.example.com/"}),
                "webhooks.url",
            ),
            (json!({"url": "https://app .example.com/"}), "webhooks.url"),
            (json!({"secret": ""}), "webhooks.secret"),
            (json!({"events": []}), "webhooks.events"),
            (
                json!({"events": ["channel_occupied", "bogus"]}),
                "webhooks.events[1]",
            ),
            (
                json!({"events": ["member_added", "member_added"]}),
                "webhooks.events[1]",
            ),
            (json!({"grace": "301s"}), "webhooks.grace"),
            (json!({"timeout": "1ms"}), "webhooks.timeout"),
            (json!({"max_attempts": 0}), "webhooks.max_attempts"),
            (json!({"max_attempts": 21}), "webhooks.max_attempts"),
            (json!({"retry_backoff": "1ms"}), "webhooks.retry_backoff"),
            (
                json!({"retry_backoff": "10s", "max_retry_backoff": "1s"}),
                "webhooks.max_retry_backoff",
            ),
            (json!({"queue_size": 0}), "webhooks.queue_size"),
            (json!({"queue_size": 100001}), "webhooks.queue_size"),
            (json!({"batch_size": 0}), "webhooks.batch_size"),
            (json!({"dead_letter_size": 0}), "webhooks.dead_letter_size"),
            (json!({"frob": 1}), "webhooks.frob"),
        ] {
            let e = refused(on(extra.clone()));
            assert!(e.contains(path), "{extra}: {e}");
        }
    }

    #[test]
    fn a_rendered_config_reads_back_the_same_and_the_environment_sets_webhooks() {
        // The control plane renders a TenantConfig; the data plane parses it.
        let c = TenantConfig::from_value(on(json!({"events": ["member_added"], "grace": "2s"})))
            .unwrap()
            .config;
        let rendered = serde_json::to_value(&c).unwrap();
        let back = TenantConfig::from_value(rendered).unwrap().config;
        assert_eq!(back.webhooks, c.webhooks);
        // Off and default: left out of a rendered config.
        let plain = serde_json::to_value(TenantConfig::default()).unwrap();
        assert!(plain.get("webhooks").is_none());
        // ROTOR_WEBHOOKS_* (e.g. the secret from a secret store) over a file.
        let mut value = on(json!({}));
        crate::load::overlay_env(
            &mut value,
            [
                ("ROTOR_WEBHOOKS_SECRET".to_owned(), "from-env".to_owned()),
                ("ROTOR_WEBHOOKS_GRACE".to_owned(), "9s".to_owned()),
            ]
            .into_iter(),
        )
        .unwrap();
        let c = TenantConfig::from_value(value).unwrap().config;
        assert_eq!(c.webhooks.secret, "from-env");
        assert_eq!(c.webhooks.grace.get().as_secs(), 9);
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let c = TenantConfig::from_value(on(json!({}))).unwrap().config;
        let shown = format!("{:?}", c.webhooks);
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
