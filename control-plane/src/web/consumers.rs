//! The settings page's consumers card: the project's asynchronous consumers (name, kind, on
//! or off, and where their server is — host and port only, never credentials), with a button
//! that creates a PostgreSQL consumer's outbox in the customer's database ([`outbox`], a
//! CSRF-checked form of the owner, through [`crate::rest::consumers::provision_outbox`]).
//! Consumers themselves are set with the REST API or Terraform (`settings.consumers`), which
//! the settings form keeps as they are.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use serde_json::Value;

use super::flash::{self, Flash};
use super::projects::head;
use super::session::Session;
use super::WebResult;
use crate::ids::ProjectId;
use crate::rest::RestError;
use crate::state::AppState;

/// One consumer, as the card shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRow {
    pub name: String,
    pub kind: String,
    pub enabled: bool,
    /// `host:port` of its server (no user, password or database).
    pub server: String,
    /// Whether Rotor can create its outbox (a PostgreSQL consumer).
    pub outbox: bool,
}

/// `host:port` of a URL, without what else it carries.
fn server_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// The rows of (opened) `settings.consumers`.
pub fn rows(settings: &Value) -> Vec<ConsumerRow> {
    let list = settings.get("consumers").and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .map(|c| {
            let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
            let kind = text(c.get("type"));
            let url = match kind.as_str() {
                "postgresql" => text(c.pointer("/postgresql/dsn")),
                "redis_stream" => match c.pointer("/redis_stream/address") {
                    Some(Value::Array(a)) => text(a.first()),
                    other => text(other),
                },
                "nats_jetstream" => text(c.pointer("/nats_jetstream/url")),
                _ => String::new(),
            };
            ConsumerRow {
                name: text(c.get("name")),
                outbox: kind == "postgresql",
                kind,
                enabled: c.get("enabled").and_then(Value::as_bool).unwrap_or(false),
                server: server_of(&url),
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub struct OutboxForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    consumer: String,
}

/// `POST /projects/{id}/settings/consumers/outbox`: creates the named consumer's outbox.
pub async fn outbox(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<OutboxForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    let location = format!("/projects/{}/settings#consumers", p.id);
    let outcome = crate::rest::consumers::provision_outbox(
        &state,
        &session.account,
        &ProjectId(p.id.clone()),
        form.consumer.trim(),
    )
    .await;
    let flash = match outcome {
        Ok(made) => {
            let table = made["table"].as_str().unwrap_or_default();
            Flash::notice(if made["created"] == true {
                format!("Outbox {table} created in your database.")
            } else {
                format!("Outbox {table} was there already; its index and trigger are in place.")
            })
        }
        Err(RestError::NotFound) => Flash::error(
            format!(
                "Consumers: no PostgreSQL consumer is named {}.",
                form.consumer.trim()
            ),
            "",
        ),
        Err(RestError::BadRequest { message, .. })
        | Err(RestError::Upstream(message))
        | Err(RestError::Conflict(message)) => Flash::error(format!("Consumers: {message}."), ""),
        Err(RestError::Busy) => Flash::error(
            "Consumers: too many outboxes are being created right now; try again in a few seconds."
                .to_owned(),
            "",
        ),
        Err(e) => return Err(e.into()),
    };
    flash::redirect(&state, &session, &location, flash).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_show_where_the_servers_are_and_never_credentials() {
        let settings = json!({"consumers": [
            {"enabled": true, "name": "orders", "type": "postgresql",
             "postgresql": {"dsn": "postgresql://app:hunter2@db.example.com:5432/app"}},
            {"name": "events", "type": "redis_stream",
             "redis_stream": {"address": ["rediss://:pw@redis.example.com:6380"]}},
            {"enabled": true, "name": "jobs", "type": "nats_jetstream",
             "nats_jetstream": {"url": "nats://u:pw@nats.example.com"}}
        ]});
        let rows = rows(&settings);
        assert_eq!(
            rows.iter().map(|r| r.server.as_str()).collect::<Vec<_>>(),
            [
                "db.example.com:5432",
                "redis.example.com:6380",
                "nats.example.com"
            ]
        );
        assert_eq!(
            rows.iter().map(|r| r.outbox).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert!(!rows[1].enabled);
        assert!(!format!("{rows:?}").contains("pw"));
        assert!(super::rows(&json!({})).is_empty());
    }
}
