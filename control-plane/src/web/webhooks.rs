//! The settings page's webhooks: the form fields (on or off, URL, signing secret, events,
//! grace) turned into `settings.webhooks` and back, and the deliveries card: what the running
//! project has waiting and the failures it gave up on (its dead-letter ring), read from the
//! tenant's admin surface (`GET /admin/webhooks`), each failure with a button that sends it
//! again (and one for all of them: [`redeliver`], a CSRF-checked form of the owner, through
//! [`crate::service::webhooks::redeliver`]). The secret is never shown again nor kept in a
//! flash: a blank secret field keeps the stored one.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::extract::{CsrfForm, OwnedProject};
use super::flash::{self, Flash};
use super::WebResult;
use crate::service::webhooks::{check_webhook_id, redeliver as send_again, Redeliver};
use crate::service::ServiceError;
use crate::state::AppState;

/// The events, with their form field and label, in the README's order.
pub const EVENTS: [(&str, &str); 5] = [
    ("channel_occupied", "A channel gets its first subscriber"),
    ("channel_vacated", "A channel loses its last subscriber"),
    ("member_added", "A user joins a channel (first connection)"),
    (
        "member_removed",
        "A user leaves a channel (last connection)",
    ),
    ("client_disconnected", "A connection ends"),
];

/// How long the page waits for the project's answer.
const STATUS_WAIT: Duration = Duration::from_secs(2);
/// Most dead letters the page lists (the newest).
const SHOWN: usize = 20;

/// The webhooks part of the settings form.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookForm {
    pub webhooks_enabled: Option<String>,
    pub webhooks_url: String,
    /// Never kept in a flash (nor shown): blank keeps the stored secret.
    #[serde(skip_serializing)]
    pub webhooks_secret: String,
    pub webhooks_grace: String,
    pub wh_channel_occupied: Option<String>,
    pub wh_channel_vacated: Option<String>,
    pub wh_member_added: Option<String>,
    pub wh_member_removed: Option<String>,
    pub wh_client_disconnected: Option<String>,
}

impl WebhookForm {
    fn event(&self, name: &str) -> bool {
        match name {
            "channel_occupied" => self.wh_channel_occupied.is_some(),
            "channel_vacated" => self.wh_channel_vacated.is_some(),
            "member_added" => self.wh_member_added.is_some(),
            "member_removed" => self.wh_member_removed.is_some(),
            _ => self.wh_client_disconnected.is_some(),
        }
    }

    /// The form showing stored `settings.webhooks` (every event ticked when none is listed).
    pub fn from_settings(webhooks: Option<&Value>) -> Self {
        let get = |k: &str| webhooks.and_then(|w| w.get(k));
        let listed: Option<Vec<&str>> = get("events")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect());
        let on = |name: &str| {
            listed
                .as_ref()
                .is_none_or(|l| l.contains(&name))
                .then(String::new)
        };
        Self {
            webhooks_enabled: get("enabled")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .then(String::new),
            webhooks_url: get("url")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            webhooks_secret: String::new(),
            webhooks_grace: get("grace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            wh_channel_occupied: on("channel_occupied"),
            wh_channel_vacated: on("channel_vacated"),
            wh_member_added: on("member_added"),
            wh_member_removed: on("member_removed"),
            wh_client_disconnected: on("client_disconnected"),
        }
    }

    /// The events as the page shows them: (name, label, ticked).
    pub fn events(&self) -> Vec<(&'static str, &'static str, bool)> {
        EVENTS
            .iter()
            .map(|&(name, label)| (name, label, self.event(name)))
            .collect()
    }

    /// `settings` with `webhooks` as the form says; fields the form does not show (`timeout`)
    /// and the stored secret (when none is typed) are kept. Err: (form field, message).
    pub fn apply(&self, out: &mut Map<String, Value>) -> Result<(), (String, String)> {
        let url = self.webhooks_url.trim();
        let enabled = self.webhooks_enabled.is_some();
        let mut hooks = out
            .get("webhooks")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if !enabled && url.is_empty() {
            out.remove("webhooks");
            return Ok(());
        }
        if enabled && url.is_empty() {
            return Err((
                "webhooks_url".into(),
                "Webhooks: enter the URL of your backend, or untick “Send webhooks”.".into(),
            ));
        }
        hooks.insert("enabled".into(), json!(enabled));
        hooks.insert("url".into(), json!(url));
        let secret = self.webhooks_secret.trim();
        if !secret.is_empty() {
            hooks.insert("secret".into(), json!(secret));
        }
        let events: Vec<&str> = EVENTS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| self.event(name))
            .collect();
        if events.is_empty() && enabled {
            return Err((
                "webhooks_events".into(),
                "Webhooks: tick at least one event, or untick “Send webhooks”.".into(),
            ));
        }
        if events.len() == EVENTS.len() {
            hooks.remove("events");
        } else {
            hooks.insert("events".into(), json!(events));
        }
        let grace = self.webhooks_grace.trim();
        if grace.is_empty() {
            hooks.remove("grace");
        } else {
            let typed = if grace.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                format!("{grace}s")
            } else {
                grace.to_owned()
            };
            match rotor_tenant_config::parse_go_duration(&typed) {
                Ok(d) if d <= Duration::from_secs(300) => {
                    hooks.insert("grace".into(), json!(typed));
                }
                _ => {
                    return Err((
                        "webhooks_grace".into(),
                        format!(
                        "Webhooks: “{grace}” is not a grace: write it like 5s or 0 (at most 300s)."
                    ),
                    ))
                }
            }
        }
        out.insert("webhooks".into(), Value::Object(hooks));
        Ok(())
    }
}

/// The form field a `settings.webhooks.*` error is about.
pub fn field_of(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("settings.webhooks")?;
    Some(match rest.trim_start_matches('.') {
        r if r.starts_with("url") => "webhooks_url",
        r if r.starts_with("secret") => "webhooks_secret",
        r if r.starts_with("grace") => "webhooks_grace",
        r if r.starts_with("events") => "webhooks_events",
        _ => "webhooks_enabled",
    })
}

/// One failure the project gave up on.
pub struct DeadLetterRow {
    /// Its webhook id (what "Send again" sends it with).
    pub id: String,
    pub when: String,
    pub reason: String,
    /// The last HTTP status, or the transport error, in words.
    pub outcome: String,
    pub attempts: u64,
    pub events: usize,
}

/// The deliveries card: `None` when the project did not answer (not running, parked).
pub struct Deliveries {
    pub queued: u64,
    pub failures: Vec<DeadLetterRow>,
}

/// The card from the project's `/admin/webhooks` answer (newest failures first).
pub fn deliveries_of(snapshot: &Value) -> Deliveries {
    let letters = snapshot["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let failures = letters
        .iter()
        .rev()
        .take(SHOWN)
        .map(|d| {
            let when = d["time_ms"]
                .as_i64()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            let outcome = match (d["status"].as_u64(), d["error"].as_str()) {
                (Some(status), _) => format!("HTTP {status}"),
                (None, Some(e)) => e.to_owned(),
                (None, None) => String::new(),
            };
            DeadLetterRow {
                id: d["webhook_id"].as_str().unwrap_or_default().to_owned(),
                when,
                reason: d["reason"].as_str().unwrap_or_default().replace('_', " "),
                outcome,
                attempts: d["attempts"].as_u64().unwrap_or(0),
                events: d["events"].as_array().map_or(0, Vec::len),
            }
        })
        .collect();
    Deliveries {
        queued: snapshot["queued"].as_u64().unwrap_or(0),
        failures,
    }
}

/// Asks the running project for its webhooks' state.
pub async fn deliveries(state: &AppState, project: &str) -> Option<Deliveries> {
    let record = super::console::running(state, project)?;
    let answer = crate::probe::direct_client()
        .get(format!("{}/admin/webhooks", record.admin_base()))
        .bearer_auth(&record.admin_token)
        .timeout(STATUS_WAIT)
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    answer.json::<Value>().await.ok().map(|v| deliveries_of(&v))
}

/// "Send again" on the deliveries card: one failure (`webhook_id`) or, without it, all.
#[derive(Debug, Deserialize)]
pub struct RedeliverForm {
    #[serde(default)]
    webhook_id: String,
}

/// Sends failed deliveries again and goes back to the card with what happened.
pub async fn redeliver(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    CsrfForm(form): CsrfForm<RedeliverForm>,
) -> WebResult<Response> {
    let location = format!("/projects/{}/settings#webhook-deliveries", p.id);
    let what = if form.webhook_id.trim().is_empty() {
        Ok(Redeliver::All)
    } else {
        check_webhook_id(&form.webhook_id).map(Redeliver::One)
    };
    let outcome = match what {
        Ok(what) => send_again(&state, &scope, &what).await,
        Err(e) => Err(e),
    };
    let flash = match outcome {
        Ok(done) => {
            let batches = done.batches.unwrap_or(0);
            let events = done.events.unwrap_or(0);
            Flash::notice(if batches == 0 {
                "Nothing to send again: no failed deliveries are kept.".to_owned()
            } else {
                format!(
                    "Sending again: {batches} failed {} with {events} {}. One that fails again comes back here.",
                    if batches == 1 { "delivery" } else { "deliveries" },
                    if events == 1 { "event" } else { "events" },
                )
            })
        }
        Err(ServiceError::BadRequest { message, .. }) | Err(ServiceError::Conflict(message)) => {
            Flash::error(format!("Webhooks: {message}."), "")
        }
        Err(e) => return Err(e.into()),
    };
    flash::redirect(&state, &session, &location, flash).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_round_trips_keeps_the_secret_and_what_it_does_not_show() {
        let stored = json!({"enabled": true, "url": "https://b.example/h", "secret": "s".repeat(20),
            "events": ["member_added"], "grace": "3s", "timeout": "4s"});
        let mut form = WebhookForm::from_settings(Some(&stored));
        assert!(form.webhooks_secret.is_empty(), "the secret is never shown");
        assert!(form.wh_member_added.is_some() && form.wh_channel_occupied.is_none());
        form.wh_member_removed = Some("on".into());
        let mut out = Map::new();
        out.insert("webhooks".into(), stored.clone());
        form.apply(&mut out).unwrap();
        assert_eq!(
            out["webhooks"],
            json!({"enabled": true, "url": "https://b.example/h", "secret": "s".repeat(20),
                "events": ["member_added", "member_removed"], "grace": "3s", "timeout": "4s"})
        );
        // Every event ticked: the list goes (the default is all); a typed secret replaces.
        for e in [
            &mut form.wh_channel_occupied,
            &mut form.wh_channel_vacated,
            &mut form.wh_client_disconnected,
        ] {
            *e = Some("on".into());
        }
        form.webhooks_secret = "t".repeat(20);
        form.apply(&mut out).unwrap();
        assert!(out["webhooks"].get("events").is_none());
        assert_eq!(out["webhooks"]["secret"], "t".repeat(20));
        // Off and no URL: no webhooks at all.
        let off = WebhookForm::default();
        off.apply(&mut out).unwrap();
        assert!(out.get("webhooks").is_none());
    }

    #[test]
    fn mistakes_name_their_field() {
        let mut out = Map::new();
        let form = WebhookForm {
            webhooks_enabled: Some("on".into()),
            ..Default::default()
        };
        assert_eq!(form.apply(&mut out).unwrap_err().0, "webhooks_url");
        let form = WebhookForm {
            webhooks_enabled: Some("on".into()),
            webhooks_url: "https://b.example".into(),
            wh_member_added: Some("on".into()),
            webhooks_grace: "an hour".into(),
            ..Default::default()
        };
        assert_eq!(form.apply(&mut out).unwrap_err().0, "webhooks_grace");
        assert_eq!(
            field_of("settings.webhooks.secret"),
            Some("webhooks_secret")
        );
        assert_eq!(
            field_of("settings.webhooks.events[1]"),
            Some("webhooks_events")
        );
        assert_eq!(field_of("settings.user_status"), None);
    }

    #[test]
    fn the_card_lists_the_newest_failures_in_words() {
        let snapshot = json!({"enabled": true, "queued": 3, "dead_letters": [
            {"time_ms": 1_764_876_000_000u64, "reason": "max_attempts", "status": 500, "attempts": 8,
             "webhook_id": "w-1", "events": [{}, {}]},
            {"time_ms": 1_764_876_001_000u64, "reason": "egress_refused",
             "error": "address not allowed", "attempts": 1, "events": [{}]}
        ]});
        let d = deliveries_of(&snapshot);
        assert_eq!(d.queued, 3);
        assert_eq!(d.failures.len(), 2);
        assert_eq!(d.failures[0].reason, "egress refused");
        assert_eq!(d.failures[0].outcome, "address not allowed");
        assert_eq!(d.failures[1].outcome, "HTTP 500");
        assert_eq!((d.failures[1].attempts, d.failures[1].events), (8, 2));
        assert_eq!(d.failures[1].id, "w-1");
        assert!(d.failures[1].when.starts_with("2025-12-04"));
    }
}
