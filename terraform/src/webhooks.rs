//! `rotor_project_webhooks`: a project's webhooks (the project setting `webhooks`: channel and
//! connection events POSTed to the customer's backend) managed as code. One per project, its
//! id is the project's id; changing `project_id` replaces it; destroying it removes the
//! setting, which turns webhooks off. Imported by project id.
//!
//! The signing secret is sensitive. The API shows it to the owner today, so a secret changed
//! elsewhere (the dashboard) shows up as a diff; should the API stop returning it, the state
//! keeps the secret it last wrote instead of planning a change on every run.

use async_trait::async_trait;
use rotor_tenant_config::{
    check_webhook_url, parse_go_duration, HOSTED_MAX_WEBHOOK_TIMEOUT_SECS,
    HOSTED_MIN_WEBHOOK_SECRET_LEN, MAX_WEBHOOK_GRACE_SECS, WEBHOOK_EVENTS,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use tf_provider::schema::{AttributeConstraint, AttributeType, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath, Diagnostics};

use crate::client::{ApiError, ApiResult, Client, Project};
use crate::diags::{api_error_under, invalid_all, Invalid};
use crate::resource::{changed, kept, Managed};
use crate::schema::{attribute, boolean, schema, sensitive, string};

/// Attributes an API error may name (`settings.webhooks.<attribute>`).
const ATTRIBUTES: &[&str] = &["enabled", "url", "secret", "events", "grace", "timeout"];

/// Longest secret the data plane takes, in bytes.
const MAX_SECRET_LEN: usize = 1024;

/// Shortest `timeout` the data plane takes.
const MIN_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// The state (and configuration) of `rotor_project_webhooks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhooksState {
    pub id: Value<String>,
    pub project_id: Value<String>,
    pub enabled: Value<bool>,
    pub url: Value<String>,
    pub secret: Value<String>,
    pub events: Value<Vec<Value<String>>>,
    pub grace: Value<String>,
    pub timeout: Value<String>,
}

/// A duration attribute checked against `max` (and `min`); `None` when fine.
fn check_duration(
    text: &str,
    min: std::time::Duration,
    max: std::time::Duration,
    what: &str,
) -> Option<String> {
    match parse_go_duration(text) {
        Ok(d) if d >= min && d <= max => None,
        Ok(_) => Some(format!(
            "{what} must be between {min:?} and {max:?}, got {text:?}"
        )),
        Err(e) => Some(format!(
            "{text:?} is not a duration such as \"5s\" or \"1m30s\": {e}"
        )),
    }
}

impl WebhooksState {
    /// Everything in the configuration the API would refuse, with the attribute at fault:
    /// the data plane's rules and the bounds of hosted projects.
    pub fn problems(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if let Value::Value(url) = &self.url {
            if let Err(why) = check_webhook_url(url) {
                out.push(Invalid::new("url", why));
            }
        }
        if let Value::Value(secret) = &self.secret {
            if secret.len() < HOSTED_MIN_WEBHOOK_SECRET_LEN || secret.len() > MAX_SECRET_LEN {
                out.push(Invalid::new(
                    "secret",
                    format!(
                        "must be {HOSTED_MIN_WEBHOOK_SECRET_LEN} to {MAX_SECRET_LEN} bytes: it signs every request (X-Rotor-Signature)"
                    ),
                ));
            }
        }
        if let Value::Value(events) = &self.events {
            if events.is_empty() {
                out.push(Invalid::new(
                    "events",
                    format!(
                        "must list at least one event (leave it out for all: {})",
                        WEBHOOK_EVENTS.join(", ")
                    ),
                ));
            }
            let mut seen: Vec<&str> = Vec::new();
            for (i, event) in events.iter().enumerate() {
                let Value::Value(event) = event else { continue };
                if !WEBHOOK_EVENTS.contains(&event.as_str()) {
                    out.push(Invalid::new(
                        format!("events[{i}]"),
                        format!(
                            "unknown event {event:?}: one of {}",
                            WEBHOOK_EVENTS.join(", ")
                        ),
                    ));
                } else if seen.contains(&event.as_str()) {
                    out.push(Invalid::new(
                        format!("events[{i}]"),
                        format!("{event:?} is listed twice"),
                    ));
                }
                seen.push(event);
            }
        }
        if let Value::Value(grace) = &self.grace {
            let max = std::time::Duration::from_secs(MAX_WEBHOOK_GRACE_SECS);
            if let Some(why) = check_duration(grace, std::time::Duration::ZERO, max, "grace") {
                out.push(Invalid::new("grace", why));
            }
        }
        if let Value::Value(timeout) = &self.timeout {
            let max = std::time::Duration::from_secs(HOSTED_MAX_WEBHOOK_TIMEOUT_SECS);
            if let Some(why) = check_duration(timeout, MIN_TIMEOUT, max, "timeout") {
                out.push(Invalid::new("timeout", why));
            }
        }
        out
    }

    /// The `settings.webhooks` object this state asks for (unset attributes left out: the
    /// data plane's defaults apply).
    pub fn to_setting(&self) -> Json {
        let mut out = Map::new();
        out.insert(
            "enabled".into(),
            json!(self.enabled.as_ref_option().copied().unwrap_or(true)),
        );
        if let Value::Value(url) = &self.url {
            out.insert("url".into(), json!(url));
        }
        if let Value::Value(secret) = &self.secret {
            out.insert("secret".into(), json!(secret));
        }
        if let Value::Value(events) = &self.events {
            let names: Vec<&String> = events.iter().filter_map(Value::as_ref_option).collect();
            out.insert("events".into(), json!(names));
        }
        for (name, value) in [("grace", &self.grace), ("timeout", &self.timeout)] {
            if let Value::Value(v) = value {
                out.insert(name.into(), json!(v));
            }
        }
        Json::Object(out)
    }

    /// The state for a project's `settings.webhooks`; `None` when the project has none. A
    /// secret the API does not return is taken from `prior`.
    pub fn from_project(project: &Project, prior: Option<&Self>) -> Option<Self> {
        let hooks = project.settings.get("webhooks")?.as_object()?;
        let text = |name: &str| match hooks.get(name).and_then(Json::as_str) {
            Some(s) => Value::Value(s.to_owned()),
            None => Value::Null,
        };
        let secret = match hooks.get("secret").and_then(Json::as_str) {
            Some(s) if !s.is_empty() => Value::Value(s.to_owned()),
            _ => prior.map_or(Value::Null, |p| p.secret.clone()),
        };
        let events = match hooks.get("events").and_then(Json::as_array) {
            Some(list) => Value::Value(
                list.iter()
                    .filter_map(Json::as_str)
                    .map(|e| Value::Value(e.to_owned()))
                    .collect(),
            ),
            None => Value::Null,
        };
        Some(Self {
            id: Value::Value(project.id.clone()),
            project_id: Value::Value(project.id.clone()),
            enabled: Value::Value(
                hooks
                    .get("enabled")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
            ),
            url: text("url"),
            secret,
            events,
            grace: text("grace"),
            timeout: text("timeout"),
        })
    }
}

/// The `rotor_project_webhooks` resource; its id is the project's id.
pub struct WebhooksResource;

#[async_trait]
impl Managed for WebhooksResource {
    type State = WebhooksState;
    type Id = String;

    const NOUN: &'static str = "the webhooks";
    const CREATE_VERB: &'static str = "set";
    const UPDATE_VERB: Option<&'static str> = Some("change");
    const DESTROY_VERB: &'static str = "remove";

    fn schema(&self) -> Schema {
        schema(
            "A project's webhooks: channel_occupied / channel_vacated, member_added / member_removed and client_disconnected POSTed to your backend, signed (X-Rotor-Signature). Destroying it turns webhooks off.",
            map! {
                "id" => string("The project's id.", AttributeConstraint::Computed),
                "project_id" => string(
                    "Id of the project (`prj_…`). Changing it replaces the resource.",
                    AttributeConstraint::Required,
                ),
                "enabled" => boolean(
                    "Send events (default `true`); `false` keeps the settings and sends nothing.",
                    AttributeConstraint::OptionalComputed,
                ),
                "url" => string(
                    "The https:// (or http://) URL every batch is POSTed to; hosted projects reach public addresses only.",
                    AttributeConstraint::Required,
                ),
                "secret" => sensitive(string(
                    format!(
                        "Key of the X-Rotor-Signature HMAC-SHA256 over each request body ({HOSTED_MIN_WEBHOOK_SECRET_LEN} to {MAX_SECRET_LEN} bytes). Stored sealed."
                    ),
                    AttributeConstraint::Required,
                )),
                "events" => attribute(
                    AttributeType::List(Box::new(AttributeType::String)),
                    format!(
                        "Which events to send, from {}; every one when left out.",
                        WEBHOOK_EVENTS.join(", ")
                    ),
                    AttributeConstraint::Optional,
                ),
                "grace" => string(
                    format!("How long a removal waits for the matching addition, which cancels both, so a reconnect sends nothing (e.g. \"5s\"; 0 to {MAX_WEBHOOK_GRACE_SECS}s; default 5s)."),
                    AttributeConstraint::Optional,
                ),
                "timeout" => string(
                    format!("Deadline of one delivery attempt (100ms to {HOSTED_MAX_WEBHOOK_TIMEOUT_SECS}s; default 5s)."),
                    AttributeConstraint::Optional,
                ),
            },
        )
    }

    fn validate(&self, diags: &mut Diagnostics, config: &WebhooksState) {
        invalid_all(diags, config.problems());
    }

    fn id(state: &WebhooksState) -> Option<String> {
        state.project_id.as_ref_option().cloned()
    }

    /// On the attribute when the API names `settings.webhooks.<it>`.
    fn report(diags: &mut Diagnostics, summary: &str, err: &ApiError) {
        api_error_under(diags, summary, err, "settings.webhooks.", ATTRIBUTES);
    }

    async fn fetch(
        &self,
        client: &Client,
        project: &String,
        prior: Option<&WebhooksState>,
    ) -> ApiResult<Option<WebhooksState>> {
        let p = client.project(project).await?;
        Ok(WebhooksState::from_project(&p, prior))
    }

    /// Sends events unless told otherwise; the id is the project's.
    fn plan(
        &self,
        _prior: Option<&WebhooksState>,
        proposed: WebhooksState,
        config: &WebhooksState,
    ) -> WebhooksState {
        let mut planned = proposed;
        if config.enabled.is_null() {
            planned.enabled = Value::Value(true);
        }
        planned.id = planned.project_id.clone();
        planned
    }

    fn replaces(prior: &WebhooksState, planned: &WebhooksState) -> Vec<AttributePath> {
        changed(&[("project_id", &prior.project_id, &planned.project_id)])
    }

    /// Writes the planned setting into the project's settings.
    async fn write(
        &self,
        diags: &mut Diagnostics,
        client: &Client,
        _prior: Option<&WebhooksState>,
        planned: &WebhooksState,
        summary: &str,
    ) -> Option<WebhooksState> {
        let Value::Value(project) = &planned.project_id else {
            diags.root_error_short("The project id is not known");
            return None;
        };
        let written = client
            .set_webhooks(project, Some(planned.to_setting()))
            .await;
        kept::<Self>(diags, summary, written, |p| {
            WebhooksState::from_project(p, Some(planned))
        })
    }

    async fn delete(&self, client: &Client, project: &String) -> ApiResult<()> {
        client.set_webhooks(project, None).await.map(drop)
    }

    fn import_id(_diags: &mut Diagnostics, raw: &str) -> Option<String> {
        Some(raw.trim().to_owned())
    }

    fn import_missing(raw: &str, _project: &String, api_404: bool) -> String {
        if api_404 {
            format!("No project with id {raw:?} in this account.")
        } else {
            format!("Project {raw:?} has no webhooks set.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WebhooksState {
        WebhooksState {
            project_id: Value::Value("prj_1".into()),
            url: Value::Value("https://backend.example.com/hooks".into()),
            secret: Value::Value("s".repeat(20)),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_configuration_has_no_problem_and_becomes_the_setting() {
        let mut c = config();
        assert!(c.problems().is_empty());
        c.events = Value::Value(vec![Value::Value("member_added".into())]);
        c.grace = Value::Value("3s".into());
        assert_eq!(
            c.to_setting(),
            json!({"enabled": true, "url": "https://backend.example.com/hooks",
                "secret": "s".repeat(20), "events": ["member_added"], "grace": "3s"})
        );
    }

    #[test]
    fn problems_name_their_attribute() {
        let paths = |c: WebhooksState| -> Vec<String> {
            c.problems().into_iter().map(|p| p.path).collect()
        };
        let mut c = config();
        c.url = Value::Value("ftp://x".into());
        c.secret = Value::Value("short".into());
        c.events = Value::Value(vec![
            Value::Value("member_added".into()),
            Value::Value("member_added".into()),
            Value::Value("typo".into()),
        ]);
        c.grace = Value::Value("301s".into());
        c.timeout = Value::Value("11s".into());
        assert_eq!(
            paths(c),
            [
                "url",
                "secret",
                "events[1]",
                "events[2]",
                "grace",
                "timeout"
            ]
        );
        let mut c = config();
        c.events = Value::Value(Vec::new());
        c.timeout = Value::Value("50ms".into());
        assert_eq!(paths(c), ["events", "timeout"]);
    }

    #[test]
    fn state_comes_from_the_settings_and_keeps_a_secret_the_api_does_not_return() {
        let project: Project = serde_json::from_value(json!({
            "id": "prj_1", "name": "a", "slug": "a", "engine": "memory", "plan": "free",
            "status": "active", "endpoints": {},
            "settings": {"webhooks": {"enabled": true, "url": "https://b.example/h", "grace": "1s"}}
        }))
        .unwrap();
        let prior = config();
        let state = WebhooksState::from_project(&project, Some(&prior)).unwrap();
        assert_eq!(state.secret, prior.secret);
        assert_eq!(state.grace, Value::Value("1s".into()));
        assert!(state.events.is_null() && state.timeout.is_null());
        assert_eq!(state.id, Value::Value("prj_1".into()));
        let mut bare = project.clone();
        bare.settings = json!({});
        assert!(WebhooksState::from_project(&bare, None).is_none());
    }
}
