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
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

use crate::client::{ApiError, Project};
use crate::provider::SharedClient;

/// Kinds of consumer a hosted project may have.
pub const KINDS: &[&str] = &["postgresql", "redis_stream", "nats_jetstream"];

/// The state (and configuration) of `rotor_project_consumer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerState {
    #[serde(default)]
    pub id: Value<String>,
    #[serde(default)]
    pub project_id: Value<String>,
    #[serde(default)]
    pub name: Value<String>,
    #[serde(default)]
    pub r#type: Value<String>,
    #[serde(default)]
    pub enabled: Value<bool>,
    #[serde(default)]
    pub config: Value<String>,
}

impl ConsumerState {
    /// What the API would refuse for sure, as (attribute, why).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Value::Value(name) = &self.name {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                out.push((
                    "name",
                    "must be 1 to 64 letters, digits, '_' or '-'".to_owned(),
                ));
            }
        }
        if let Value::Value(kind) = &self.r#type {
            if !KINDS.contains(&kind.as_str()) {
                out.push(("type", format!("unknown kind {kind:?}: one of {KINDS:?}")));
            }
        }
        if let Value::Value(config) = &self.config {
            match serde_json::from_str::<Json>(config) {
                Ok(Json::Object(_)) => {}
                _ => out.push((
                    "config",
                    "must be a JSON object of the kind's options (use jsonencode)".to_owned(),
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

/// Reports an API failure: on `config` when the API names a field of a consumer, else on
/// the whole resource.
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

/// The `rotor_project_consumer` resource.
pub struct ConsumerResource {
    client: SharedClient,
}

impl ConsumerResource {
    pub fn new(client: SharedClient) -> Self {
        Self { client }
    }

    /// Writes the planned entry; the new state, or `None` with an error reported.
    async fn save(
        &self,
        diags: &mut Diagnostics,
        planned: &ConsumerState,
        summary: &str,
    ) -> Option<ConsumerState> {
        let client = self.client.get(diags)?;
        let (Value::Value(project), Value::Value(name), Some(entry)) =
            (&planned.project_id, &planned.name, planned.to_entry())
        else {
            diags.root_error_short("The project id, name or type is not known");
            return None;
        };
        match client.set_consumer(project, name, Some(entry)).await {
            Ok(p) => match ConsumerState::from_project(&p, name, Some(planned)) {
                Some(state) => Some(state),
                None => {
                    diags.root_error(summary.to_owned(), "The API did not keep the consumer.");
                    None
                }
            },
            Err(e) => {
                report(diags, summary, &e);
                None
            }
        }
    }
}

/// Fills what the configuration leaves to the provider.
fn plan_defaults(planned: &mut ConsumerState, config: &ConsumerState) {
    if config.enabled.is_null() {
        planned.enabled = Value::Value(true);
    }
    planned.id = match (&planned.project_id, &planned.name) {
        (Value::Value(p), Value::Value(n)) => Value::Value(format!("{p}/{n}")),
        _ => Value::Unknown,
    };
}

#[async_trait]
impl Resource for ConsumerResource {
    type State<'a> = ConsumerState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let string = |desc: String, constraint| Attribute {
            attr_type: AttributeType::String,
            description: Description::plain(desc),
            constraint,
            ..Default::default()
        };
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "One asynchronous consumer of a project: server API commands your application writes to its own PostgreSQL outbox, Redis stream or NATS JetStream stream, run by the project (at least once). Hosted projects reach public addresses only.",
                ),
                attributes: map! {
                    "id" => string("`<project id>/<name>`.".into(), AttributeConstraint::Computed),
                    "project_id" => string(
                        "Id of the project (`prj_…`). Changing it replaces the consumer.".into(),
                        AttributeConstraint::Required,
                    ),
                    "name" => string(
                        "The consumer's name, unique in the project. Changing it replaces the consumer.".into(),
                        AttributeConstraint::Required,
                    ),
                    "type" => string(
                        format!("The kind: one of {}.", KINDS.join(", ")),
                        AttributeConstraint::Required,
                    ),
                    "enabled" => Attribute {
                        attr_type: AttributeType::Bool,
                        description: Description::plain("Consume (default `true`); `false` keeps the consumer and reads nothing."),
                        constraint: AttributeConstraint::OptionalComputed,
                        ..Default::default()
                    },
                    "config" => Attribute {
                        attr_type: AttributeType::String,
                        description: Description::plain(
                            "The kind's options as a JSON object with Centrifugo's names, e.g. jsonencode({dsn = var.dsn, outbox_table_name = \"rotor_outbox\", num_partitions = 1}) for postgresql. Credentials in it are stored sealed.",
                        ),
                        constraint: AttributeConstraint::Required,
                        sensitive: true,
                        ..Default::default()
                    },
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        for (attribute, why) in config.problems() {
            diags.error(
                format!("Invalid value for {attribute}"),
                why,
                AttributePath::new(attribute),
            );
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let (Value::Value(project), Value::Value(name)) = (&state.project_id, &state.name) else {
            return Some((state, private_state));
        };
        let Some(client) = self.client.get(diags) else {
            return Some((state, private_state));
        };
        match client.project(project).await {
            // Removed elsewhere (or the project is gone): the resource is gone.
            Ok(p) => {
                ConsumerState::from_project(&p, name, Some(&state)).map(|s| (s, private_state))
            }
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                report(diags, "Cannot read the consumer", &e);
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed_state: Self::State<'a>,
        config_state: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed_state;
        plan_defaults(&mut planned, &config_state);
        Some((planned, ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        proposed_state: Self::State<'a>,
        config_state: Self::State<'a>,
        prior_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut planned = proposed_state;
        plan_defaults(&mut planned, &config_state);
        let mut replace = Vec::new();
        if planned.project_id != prior_state.project_id {
            replace.push(AttributePath::new("project_id"));
        }
        if planned.name != prior_state.name {
            replace.push(AttributePath::new("name"));
        }
        Some((planned, prior_private_state, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Self::State<'a>,
        prior_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(prior_private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        planned_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let state = self
            .save(diags, &planned_state, "Cannot add the consumer")
            .await?;
        Some((state, planned_private_state))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        planned_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        planned_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // On failure the settings are as they were: keep the prior state.
        match self
            .save(diags, &planned_state, "Cannot change the consumer")
            .await
        {
            Some(state) => Some((state, planned_private_state)),
            None => Some((prior_state, planned_private_state)),
        }
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        _planned_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.client.get(diags)?;
        let project = prior_state.project_id.as_ref_option()?;
        let name = prior_state.name.as_ref_option()?;
        match client.set_consumer(project, name, None).await {
            Ok(_) => Some(()),
            Err(e) if e.is_not_found() => Some(()),
            Err(e) => {
                report(diags, "Cannot remove the consumer", &e);
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags)?;
        let summary = "Cannot import the consumer";
        let Some((project, name)) = id.trim().split_once('/') else {
            diags.root_error(summary, format!("{id:?} is not <project id>/<name>."));
            return None;
        };
        match client.project(project).await {
            Ok(p) => match ConsumerState::from_project(&p, name, None) {
                Some(state) => Some((state, ValueEmpty::default())),
                None => {
                    diags.root_error(
                        summary,
                        format!("Project {project:?} has no consumer {name:?}."),
                    );
                    None
                }
            },
            Err(e) if e.is_not_found() => {
                diags.root_error(
                    summary,
                    format!("No project with id {project:?} in this account."),
                );
                None
            }
            Err(e) => {
                report(diags, summary, &e);
                None
            }
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
        let attributes: Vec<&str> = bad.problems().into_iter().map(|(a, _)| a).collect();
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
