//! `rotor_project_consumer`: one asynchronous consumer of a project (an entry of the project
//! setting `consumers`, Centrifugo's list: a PostgreSQL outbox, a Redis stream or a NATS
//! JetStream stream whose commands run through the server API) managed as code. Its id is
//! `<project id>/<name>`; changing the project or the name replaces it; destroying it removes
//! the entry. Imported by that id.
//!
//! The kind's own options (`dsn`, `outbox_table_name`, `address`, `url`, …, with Centrifugo's
//! names) are one sensitive JSON attribute, `config` (write it with `jsonencode`): they carry
//! credentials, and their shape follows the kind. A `config` equal as JSON to what the API
//! holds keeps the configuration's own spelling, so plans stay clean.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath, Diagnostics};

use crate::client::{ApiError, ApiResult, Client, Project};
use crate::diags::{invalid_all, Invalid};
use crate::resource::{changed, kept, Managed};
use crate::schema::{boolean, schema, sensitive, string};

/// Kinds of consumer a hosted project may have.
pub const KINDS: &[&str] = &["postgresql", "redis_stream", "nats_jetstream"];

/// The state (and configuration) of `rotor_project_consumer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerState {
    pub id: Value<String>,
    pub project_id: Value<String>,
    pub name: Value<String>,
    pub r#type: Value<String>,
    pub enabled: Value<bool>,
    pub config: Value<String>,
}

impl ConsumerState {
    /// What the API would refuse for sure, with the attribute at fault.
    pub fn problems(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if let Value::Value(name) = &self.name {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                out.push(Invalid::new(
                    "name",
                    "must be 1 to 64 letters, digits, '_' or '-'",
                ));
            }
        }
        if let Value::Value(kind) = &self.r#type {
            if !KINDS.contains(&kind.as_str()) {
                out.push(Invalid::new(
                    "type",
                    format!("unknown kind {kind:?}: one of {KINDS:?}"),
                ));
            }
        }
        if let Value::Value(config) = &self.config {
            match serde_json::from_str::<Json>(config) {
                Ok(Json::Object(_)) => {}
                _ => out.push(Invalid::new(
                    "config",
                    "must be a JSON object of the kind's options (use jsonencode)",
                )),
            }
        }
        out
    }

    /// The `settings.consumers` entry this state asks for.
    pub fn to_entry(&self) -> Option<Json> {
        let name = self.name.as_ref_option()?;
        let kind = self.r#type.as_ref_option()?;
        let config: Json = self
            .config
            .as_ref_option()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_else(|| json!({}));
        let enabled = self.enabled.as_ref_option().copied().unwrap_or(true);
        Some(json!({"enabled": enabled, "name": name, "type": kind, kind: config}))
    }

    /// The state for consumer `name` of `project`; `None` when the project has no such
    /// consumer. `prior`'s `config` text is kept when it says the same as the API.
    pub fn from_project(project: &Project, name: &str, prior: Option<&Self>) -> Option<Self> {
        let entry = project
            .settings
            .get("consumers")?
            .as_array()?
            .iter()
            .find(|c| c.get("name").and_then(Json::as_str) == Some(name))?;
        let kind = entry.get("type").and_then(Json::as_str).unwrap_or_default();
        let held = entry.get(kind).cloned().unwrap_or_else(|| json!({}));
        let config = match prior.and_then(|p| p.config.as_ref_option()) {
            Some(text) if serde_json::from_str::<Json>(text).ok().as_ref() == Some(&held) => {
                text.clone()
            }
            _ => held.to_string(),
        };
        Some(Self {
            id: Value::Value(format!("{}/{name}", project.id)),
            project_id: Value::Value(project.id.clone()),
            name: Value::Value(name.to_owned()),
            r#type: Value::Value(kind.to_owned()),
            enabled: Value::Value(
                entry
                    .get("enabled")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
            ),
            config: Value::Value(config),
        })
    }
}

/// The `rotor_project_consumer` resource; its id is (project id, consumer name).
pub struct ConsumerResource;

#[async_trait]
impl Managed for ConsumerResource {
    type State = ConsumerState;
    type Id = (String, String);

    const NOUN: &'static str = "the consumer";
    const CREATE_VERB: &'static str = "add";
    const UPDATE_VERB: Option<&'static str> = Some("change");
    const DESTROY_VERB: &'static str = "remove";

    fn schema(&self) -> Schema {
        schema(
            "One asynchronous consumer of a project: server API commands your application writes to its own PostgreSQL outbox, Redis stream or NATS JetStream stream, run by the project (at least once). Hosted projects reach public addresses only.",
            map! {
                "id" => string("`<project id>/<name>`.", AttributeConstraint::Computed),
                "project_id" => string(
                    "Id of the project (`prj_…`). Changing it replaces the consumer.",
                    AttributeConstraint::Required,
                ),
                "name" => string(
                    "The consumer's name, unique in the project. Changing it replaces the consumer.",
                    AttributeConstraint::Required,
                ),
                "type" => string(
                    format!("The kind: one of {}.", KINDS.join(", ")),
                    AttributeConstraint::Required,
                ),
                "enabled" => boolean(
                    "Consume (default `true`); `false` keeps the consumer and reads nothing.",
                    AttributeConstraint::OptionalComputed,
                ),
                "config" => sensitive(string(
                    "The kind's options as a JSON object with Centrifugo's names, e.g. jsonencode({dsn = var.dsn, outbox_table_name = \"rotor_outbox\", num_partitions = 1}) for postgresql. Credentials in it are stored sealed.",
                    AttributeConstraint::Required,
                )),
            },
        )
    }

    fn validate(&self, diags: &mut Diagnostics, config: &ConsumerState) {
        invalid_all(diags, config.problems());
    }

    fn id(state: &ConsumerState) -> Option<Self::Id> {
        let project = state.project_id.as_ref_option()?;
        let name = state.name.as_ref_option()?;
        Some((project.clone(), name.clone()))
    }

    /// On `config` when the API names a field of a consumer, else on the whole resource.
    fn report(diags: &mut Diagnostics, summary: &str, err: &ApiError) {
        if err
            .field()
            .is_some_and(|f| f.starts_with("settings.consumers"))
        {
            diags.error(
                summary.to_owned(),
                err.to_string(),
                AttributePath::new("config"),
            );
        } else {
            diags.root_error(summary.to_owned(), err.to_string());
        }
    }

    async fn fetch(
        &self,
        client: &Client,
        (project, name): &Self::Id,
        prior: Option<&ConsumerState>,
    ) -> ApiResult<Option<ConsumerState>> {
        let p = client.project(project).await?;
        Ok(ConsumerState::from_project(&p, name, prior))
    }

    /// Consumes unless told otherwise; the id follows the project and the name.
    fn plan(
        &self,
        _prior: Option<&ConsumerState>,
        proposed: ConsumerState,
        config: &ConsumerState,
    ) -> ConsumerState {
        let mut planned = proposed;
        if config.enabled.is_null() {
            planned.enabled = Value::Value(true);
        }
        planned.id = match (&planned.project_id, &planned.name) {
            (Value::Value(p), Value::Value(n)) => Value::Value(format!("{p}/{n}")),
            _ => Value::Unknown,
        };
        planned
    }

    fn replaces(prior: &ConsumerState, planned: &ConsumerState) -> Vec<AttributePath> {
        changed(&[
            ("project_id", &prior.project_id, &planned.project_id),
            ("name", &prior.name, &planned.name),
        ])
    }

    /// Writes the planned entry into the project's settings.
    async fn write(
        &self,
        diags: &mut Diagnostics,
        client: &Client,
        _prior: Option<&ConsumerState>,
        planned: &ConsumerState,
        summary: &str,
    ) -> Option<ConsumerState> {
        let (Value::Value(project), Value::Value(name), Some(entry)) =
            (&planned.project_id, &planned.name, planned.to_entry())
        else {
            diags.root_error_short("The project id, name or type is not known");
            return None;
        };
        let written = client.set_consumer(project, name, Some(entry)).await;
        kept::<Self>(diags, summary, written, |p| {
            ConsumerState::from_project(p, name, Some(planned))
        })
    }

    async fn delete(&self, client: &Client, (project, name): &Self::Id) -> ApiResult<()> {
        client.set_consumer(project, name, None).await.map(drop)
    }

    fn import_id(diags: &mut Diagnostics, raw: &str) -> Option<Self::Id> {
        match raw.trim().split_once('/') {
            Some((project, name)) => Some((project.to_owned(), name.to_owned())),
            None => {
                diags.root_error(
                    "Cannot import the consumer",
                    format!("{raw:?} is not <project id>/<name>."),
                );
                None
            }
        }
    }

    fn import_missing(_raw: &str, (project, name): &Self::Id, api_404: bool) -> String {
        if api_404 {
            format!("No project with id {project:?} in this account.")
        } else {
            format!("Project {project:?} has no consumer {name:?}.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConsumerState {
        ConsumerState {
            project_id: Value::Value("prj_1".into()),
            name: Value::Value("orders".into()),
            r#type: Value::Value("postgresql".into()),
            config: Value::Value(
                r#"{"dsn":"postgres://a@db.example.com/app","num_partitions":2}"#.into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_configuration_becomes_its_entry_and_problems_name_their_attribute() {
        let c = config();
        assert!(c.problems().is_empty());
        assert_eq!(
            c.to_entry().unwrap(),
            json!({"enabled": true, "name": "orders", "type": "postgresql",
                "postgresql": {"dsn": "postgres://a@db.example.com/app", "num_partitions": 2}})
        );
        let mut bad = config();
        bad.name = Value::Value("a b".into());
        bad.r#type = Value::Value("kafka".into());
        bad.config = Value::Value("[1]".into());
        let attributes: Vec<String> = bad.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(attributes, ["name", "type", "config"]);
    }

    #[test]
    fn state_comes_from_the_entry_keeping_the_configurations_spelling() {
        let project: Project = serde_json::from_value(json!({
            "id": "prj_1", "name": "a", "slug": "a", "engine": "memory", "plan": "free",
            "status": "active", "endpoints": {},
            "settings": {"consumers": [
                {"enabled": true, "name": "other", "type": "redis_stream", "redis_stream": {}},
                {"enabled": false, "name": "orders", "type": "postgresql",
                 "postgresql": {"num_partitions": 2, "dsn": "postgres://a@db.example.com/app"}}]}
        }))
        .unwrap();
        let prior = config();
        let state = ConsumerState::from_project(&project, "orders", Some(&prior)).unwrap();
        assert_eq!(
            state.config, prior.config,
            "same JSON, the configuration's text"
        );
        assert_eq!(state.enabled, Value::Value(false));
        assert_eq!(state.id, Value::Value("prj_1/orders".into()));
        let mut changed = prior.clone();
        changed.config = Value::Value(r#"{"dsn":"postgres://b@db.example.com/app"}"#.into());
        let drift = ConsumerState::from_project(&project, "orders", Some(&changed)).unwrap();
        assert_ne!(
            drift.config, changed.config,
            "a change elsewhere shows as a diff"
        );
        assert!(ConsumerState::from_project(&project, "nope", None).is_none());
    }
}
