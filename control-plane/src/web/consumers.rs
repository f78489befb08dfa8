//! The settings page's consumers card: the project's asynchronous consumers (name, kind, on
//! or off, and where their server is — host and port only, never credentials), with a button
//! that creates a PostgreSQL consumer's outbox in the customer's database ([`outbox`], a
//! CSRF-checked form of the owner, through [`crate::service::consumers::provision_outbox`]), and
//! the owner's edits ([`edit`]): add or replace a consumer (name, kind, and the kind's options
//! as JSON with Centrifugo's names), switch one on or off, remove one. Edits go through the
//! same validation, bounds and sealing as `PATCH /v1/projects/{id}`; the REST API and
//! Terraform write the same `settings.consumers` list.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::extract::{CsrfForm, OwnedProject};
use super::flash::{self, Flash};
use super::WebResult;
use crate::service::ServiceError;
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
    consumer: String,
}

/// `POST /projects/{id}/settings/consumers/outbox`: creates the named consumer's outbox.
pub async fn outbox(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    CsrfForm(form): CsrfForm<OutboxForm>,
) -> WebResult<Response> {
    let location = format!("/projects/{}/settings#consumers", p.id);
    let outcome =
        crate::service::consumers::provision_outbox(&state, &scope, form.consumer.trim()).await;
    let flash = match outcome {
        Ok(made) => {
            let table = &made.table;
            Flash::notice(if made.created {
                format!("Outbox {table} created in your database.")
            } else {
                format!("Outbox {table} was there already; its index and trigger are in place.")
            })
        }
        Err(ServiceError::NotFound) => Flash::error(
            format!(
                "Consumers: no PostgreSQL consumer is named {}.",
                form.consumer.trim()
            ),
            "",
        ),
        Err(ServiceError::BadRequest { message, .. })
        | Err(ServiceError::Upstream(message))
        | Err(ServiceError::Conflict(message)) => {
            Flash::error(format!("Consumers: {message}."), "")
        }
        Err(ServiceError::Busy) => Flash::error(
            "Consumers: too many outboxes are being created right now; try again in a few seconds."
                .to_owned(),
            "",
        ),
        Err(e) => return Err(e.into()),
    };
    flash::redirect(&state, &session, &location, flash).await
}

/// Kinds a consumer can be, as the add form offers them.
pub const KINDS: &[&str] = &["postgresql", "redis_stream", "nats_jetstream"];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EditForm {
    /// Add or replace: the consumer's name, kind and options (JSON object).
    name: String,
    kind: String,
    options: String,
    /// Switch this consumer on or off.
    switch: Option<String>,
    /// Remove this consumer.
    remove: Option<String>,
}

/// `settings.consumers` changed as `form` asks, or the mistake in the form's words.
fn edited(settings: &Value, form: &EditForm) -> Result<(Value, String), String> {
    let mut out = settings.as_object().cloned().unwrap_or_default();
    let mut list = out
        .get("consumers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let named = |list: &[Value], name: &str| {
        list.iter()
            .position(|c| c.get("name").and_then(Value::as_str) == Some(name))
    };
    let done = if let Some(name) = form.switch.as_deref() {
        let i = named(&list, name).ok_or_else(|| format!("no consumer is named {name}"))?;
        let on = list[i].get("enabled").and_then(Value::as_bool) != Some(true);
        list[i]["enabled"] = Value::Bool(on);
        format!(
            "Consumer {name} switched {}.",
            if on { "on" } else { "off" }
        )
    } else if let Some(name) = form.remove.as_deref() {
        let i = named(&list, name).ok_or_else(|| format!("no consumer is named {name}"))?;
        list.remove(i);
        format!("Consumer {name} removed.")
    } else {
        let name = form.name.trim();
        if name.is_empty() {
            return Err("give the consumer a name".into());
        }
        if !KINDS.contains(&form.kind.as_str()) {
            return Err(format!("the kind must be one of {}", KINDS.join(", ")));
        }
        let options: Value = match serde_json::from_str(form.options.trim()) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(
                    "the options must be a JSON object, e.g. {\"dsn\": \"postgresql://…\", \"outbox_table_name\": \"centrifugo_outbox\"}"
                        .into(),
                )
            }
        };
        let mut entry = serde_json::Map::new();
        entry.insert("enabled".into(), Value::Bool(true));
        entry.insert("name".into(), Value::from(name));
        entry.insert("type".into(), Value::from(form.kind.as_str()));
        entry.insert(form.kind.clone(), options);
        match named(&list, name) {
            Some(i) => list[i] = Value::Object(entry),
            None => list.push(Value::Object(entry)),
        }
        format!("Consumer {name} saved.")
    };
    if list.is_empty() {
        out.remove("consumers");
    } else {
        out.insert("consumers".into(), Value::Array(list));
    }
    Ok((Value::Object(out), done))
}

/// `POST /projects/{id}/settings/consumers`: the owner adds, replaces, switches or removes a
/// consumer.
pub async fn edit(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    CsrfForm(form): CsrfForm<EditForm>,
) -> WebResult<Response> {
    let location = format!("/projects/{}/settings#consumers", p.id);
    let stored = crate::service::projects::settings(&state, &scope).await?;
    let flash = match edited(&stored, &form) {
        Err(why) => Flash::error(format!("Consumers: {why}."), ""),
        Ok((settings, done)) => {
            let change = crate::service::projects::ProjectUpdate {
                name: None,
                settings: Some(settings),
            };
            match crate::service::projects::update(&state, &scope, change).await {
                Ok(_) => Flash::notice(done),
                Err(ServiceError::BadRequest { field, message }) => {
                    let field = field.map(|f| format!("{f}: ")).unwrap_or_default();
                    Flash::error(format!("Consumers: {field}{message}"), "")
                }
                Err(e) => return Err(e.into()),
            }
        }
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

    #[test]
    fn the_editor_adds_replaces_switches_and_removes_by_name_keeping_the_rest() {
        let settings = json!({"allowed_origins": ["https://a.example"]});
        let add = EditForm {
            name: "orders".into(),
            kind: "postgresql".into(),
            options: r#"{"dsn": "postgresql://a@db.example.com/app"}"#.into(),
            ..Default::default()
        };
        let (one, _) = edited(&settings, &add).unwrap();
        assert_eq!(one["allowed_origins"], settings["allowed_origins"]);
        assert_eq!(
            one["consumers"],
            json!([{"enabled": true, "name": "orders", "type": "postgresql",
                "postgresql": {"dsn": "postgresql://a@db.example.com/app"}}])
        );
        let switch = EditForm {
            switch: Some("orders".into()),
            ..Default::default()
        };
        let (off, said) = edited(&one, &switch).unwrap();
        assert_eq!(off["consumers"][0]["enabled"], false);
        assert!(said.contains("off"), "{said}");
        let remove = EditForm {
            remove: Some("orders".into()),
            ..Default::default()
        };
        let (none, _) = edited(&off, &remove).unwrap();
        assert!(none.get("consumers").is_none(), "{none}");
        for bad in [
            EditForm {
                kind: "kafka".into(),
                ..add_like(&add)
            },
            EditForm {
                options: "[1]".into(),
                ..add_like(&add)
            },
            EditForm {
                name: " ".into(),
                ..add_like(&add)
            },
            EditForm {
                remove: Some("nope".into()),
                ..Default::default()
            },
        ] {
            assert!(edited(&one, &bad).is_err(), "{bad:?}");
        }
    }

    fn add_like(form: &EditForm) -> EditForm {
        EditForm {
            name: form.name.clone(),
            kind: form.kind.clone(),
            options: form.options.clone(),
            ..Default::default()
        }
    }
}
