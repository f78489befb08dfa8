//! `rotor_project`: a Rotor project (one tenant). The name, `user_status_enabled` and
//! `grpc_api_enabled` (the project settings `user_status.enabled` and `grpc_api.enabled`)
//! change in place; the engine can only be chosen at
//! creation, so changing it replaces the project. Exposes the slug, the
//! public endpoints and the connection-token HMAC secret. Imported by project id.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

use crate::client::{Client, Project};
use crate::diags::api_error;
use crate::provider::SharedClient;

/// Engines a project can run on; the first is the default.
pub const ENGINES: &[&str] = &["memory", "redis"];

/// Attributes the API may name in an error.
const ATTRIBUTES: &[&str] = &["name", "engine", "user_status_enabled", "grpc_api_enabled"];

/// The on/off project settings managed as attributes: (attribute, settings section, what it
/// does).
const SWITCHES: [(&str, &str, &str); 2] = [
    (
        "user_status_enabled",
        "user_status",
        "Whether the server API answers `user_status` (is a user online, with how many connections, last seen)",
    ),
    (
        "grpc_api_enabled",
        "grpc_api",
        "Whether the project serves Centrifugo's gRPC server API (api.proto) at its address on the edge, with its API keys",
    ),
];

/// The state of a project (also the shape of the `rotor_project` data source).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProjectState {
    #[serde(default)]
    pub id: Value<String>,
    #[serde(default)]
    pub name: Value<String>,
    #[serde(default)]
    pub engine: Value<String>,
    #[serde(default)]
    pub slug: Value<String>,
    #[serde(default)]
    pub plan: Value<String>,
    #[serde(default)]
    pub status: Value<String>,
    #[serde(default)]
    pub endpoints: Value<BTreeMap<String, Value<String>>>,
    #[serde(default)]
    pub token_hmac_secret: Value<String>,
    #[serde(default)]
    pub user_status_enabled: Value<bool>,
    #[serde(default)]
    pub grpc_api_enabled: Value<bool>,
}

impl ProjectState {
    /// The state for a project as the API returns it, with its token secret.
    pub fn from_api(project: Project, secret: String) -> Self {
        let user_status_enabled = project.switched_on(SWITCHES[0].1);
        let grpc_api_enabled = project.switched_on(SWITCHES[1].1);
        Self {
            id: Value::Value(project.id),
            name: Value::Value(project.name),
            engine: Value::Value(project.engine),
            slug: Value::Value(project.slug),
            plan: Value::Value(project.plan),
            status: Value::Value(project.status),
            endpoints: Value::Value(
                project
                    .endpoints
                    .into_iter()
                    .map(|(k, v)| (k, Value::Value(v)))
                    .collect(),
            ),
            token_hmac_secret: Value::Value(secret),
            user_status_enabled: Value::Value(user_status_enabled),
            grpc_api_enabled: Value::Value(grpc_api_enabled),
        }
    }

    /// The switches' attributes, in [`SWITCHES`] order.
    fn switches_mut(&mut self) -> [&mut Value<bool>; 2] {
        [&mut self.user_status_enabled, &mut self.grpc_api_enabled]
    }

    /// The switches' values, in [`SWITCHES`] order.
    fn switches(&self) -> [&Value<bool>; 2] {
        [&self.user_status_enabled, &self.grpc_api_enabled]
    }

    /// Marks everything the API decides as known only after apply.
    fn unknown_computed(&mut self) {
        self.id = Value::Unknown;
        self.slug = Value::Unknown;
        self.plan = Value::Unknown;
        self.status = Value::Unknown;
        self.endpoints = Value::Unknown;
        self.token_hmac_secret = Value::Unknown;
    }
}

/// Loads a project and its secret; `Ok(None)` when it does not exist (any more).
pub async fn load(
    client: &Client,
    id: &str,
) -> Result<Option<ProjectState>, crate::client::ApiError> {
    let project = match client.project(id).await {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let secret = match client.token_hmac_secret(id).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(ProjectState::from_api(project, secret)))
}

/// Checks a project name the way the API does, and refuses surrounding spaces (the API would
/// trim them, and the plan would never be clean).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err("a name of 1 to 100 characters is required".into());
    }
    if name.trim() != name {
        return Err("must not start or end with spaces".into());
    }
    Ok(())
}

/// Checks an engine name.
pub fn check_engine(engine: &str) -> Result<(), String> {
    if ENGINES.contains(&engine) {
        Ok(())
    } else {
        Err(format!("unknown engine {engine:?}: use one of {ENGINES:?}"))
    }
}

/// Schema attributes shared by the resource and the data source: everything the API computes.
pub fn computed_attributes() -> std::collections::HashMap<String, Attribute> {
    let computed = |desc: &str| Attribute {
        attr_type: AttributeType::String,
        description: Description::plain(desc),
        constraint: AttributeConstraint::Computed,
        ..Default::default()
    };
    let mut attributes = map! {
        "slug" => computed("URL-safe name of the project, part of its endpoint URLs."),
        "plan" => computed("The project's plan (limits on connections, namespaces, history)."),
        "status" => computed("`active` or `suspended`."),
        "endpoints" => Attribute {
            attr_type: AttributeType::Map(Box::new(AttributeType::String)),
            description: Description::plain(
                "Public URLs of the project: `websocket`, `sse`, `http_stream` (client transports) and `api` (server API).",
            ),
            constraint: AttributeConstraint::Computed,
            ..Default::default()
        },
        "token_hmac_secret" => Attribute {
            attr_type: AttributeType::String,
            description: Description::plain("HMAC secret (HS256) for signing connection and subscription tokens."),
            constraint: AttributeConstraint::Computed,
            sensitive: true,
            ..Default::default()
        },
    };
    for (name, _, what) in SWITCHES {
        attributes.insert(
            name.into(),
            Attribute {
                attr_type: AttributeType::Bool,
                description: Description::plain(format!("{what}.")),
                constraint: AttributeConstraint::Computed,
                ..Default::default()
            },
        );
    }
    attributes
}

/// The `rotor_project` resource.
pub struct ProjectResource {
    client: SharedClient,
}

impl ProjectResource {
    pub fn new(client: SharedClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Resource for ProjectResource {
    type State<'a> = ProjectState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut attributes = computed_attributes();
        attributes.insert(
            "id".into(),
            Attribute {
                attr_type: AttributeType::String,
                description: Description::plain("Project id (`prj_…`)."),
                constraint: AttributeConstraint::Computed,
                ..Default::default()
            },
        );
        attributes.insert(
            "name".into(),
            Attribute {
                attr_type: AttributeType::String,
                description: Description::plain(
                    "Display name (1 to 100 characters); the slug is derived from it at creation. Changes in place.",
                ),
                constraint: AttributeConstraint::Required,
                ..Default::default()
            },
        );
        attributes.insert(
            "engine".into(),
            Attribute {
                attr_type: AttributeType::String,
                description: Description::plain(
                    "Broker and presence engine: `memory` (default) or `redis`. Changing it replaces the project.",
                ),
                constraint: AttributeConstraint::OptionalComputed,
                ..Default::default()
            },
        );
        for (name, _, what) in SWITCHES {
            attributes.insert(
                name.into(),
                Attribute {
                    attr_type: AttributeType::Bool,
                    description: Description::plain(format!(
                        "{what}; default `false`. Changes in place."
                    )),
                    constraint: AttributeConstraint::OptionalComputed,
                    ..Default::default()
                },
            );
        }
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "A Rotor project: one Centrifugo-compatible tenant with its own endpoints, secret and keys.",
                ),
                attributes,
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Value::Value(name) = &config.name {
            if let Err(message) = check_name(name) {
                diags.error("Invalid project name", message, AttributePath::new("name"));
            }
        }
        if let Value::Value(engine) = &config.engine {
            if let Err(message) = check_engine(engine) {
                diags.error("Invalid engine", message, AttributePath::new("engine"));
            }
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
        let Value::Value(id) = &state.id else {
            return Some((state, private_state));
        };
        let Some(client) = self.client.get(diags) else {
            return Some((state, private_state));
        };
        match load(&client, id).await {
            Ok(Some(fresh)) => Some((fresh, private_state)),
            Ok(None) => None,
            Err(e) => {
                api_error(diags, "Cannot read the project", &e, ATTRIBUTES);
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed_state;
        if planned.engine.is_null() {
            planned.engine = Value::Value(ENGINES[0].to_owned());
        }
        for switch in planned.switches_mut() {
            if switch.is_null() {
                *switch = Value::Value(false);
            }
        }
        planned.unknown_computed();
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
        if config_state.engine.is_null() {
            planned.engine = Value::Value(ENGINES[0].to_owned());
        }
        for (switch, configured) in planned
            .switches_mut()
            .into_iter()
            .zip(config_state.switches())
        {
            if configured.is_null() {
                *switch = Value::Value(false);
            }
        }
        let mut replace = Vec::new();
        if planned.engine != prior_state.engine {
            replace.push(AttributePath::new("engine"));
            planned.unknown_computed();
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
        let client = self.client.get(diags)?;
        let name = planned_state.name.as_ref_option()?.clone();
        let engine = planned_state
            .engine
            .as_ref_option()
            .map_or(ENGINES[0], String::as_str)
            .to_owned();
        let project = match client.create_project(&name, &engine).await {
            Ok(p) => p,
            Err(e) => {
                api_error(diags, "Cannot create the project", &e, ATTRIBUTES);
                return None;
            }
        };
        let id = project.id.clone();
        let mut project = project;
        for ((attribute, section, _), wanted) in SWITCHES.into_iter().zip(planned_state.switches())
        {
            if *wanted != Value::Value(true) {
                continue;
            }
            match client.set_switch(&id, section, true).await {
                Ok(p) => project = p,
                Err(e) => {
                    // The project exists: keep it in state (switched off) so it is not
                    // orphaned; the next apply switches it on.
                    api_error(
                        diags,
                        &format!("Cannot turn on {attribute}"),
                        &e,
                        ATTRIBUTES,
                    );
                    break;
                }
            }
        }
        match client.token_hmac_secret(&id).await {
            Ok(secret) => Some((
                ProjectState::from_api(project, secret),
                planned_private_state,
            )),
            Err(e) => {
                // The project exists: keep it in state so it is not orphaned.
                api_error(
                    diags,
                    "Cannot read the new project's secret",
                    &e,
                    ATTRIBUTES,
                );
                let mut state = ProjectState::from_api(project, String::new());
                state.token_hmac_secret = Value::Null;
                Some((state, planned_private_state))
            }
        }
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
        // On failure the project is as it was: hand back the prior state (a null state would
        // make Terraform forget the project).
        let Some(client) = self.client.get(diags) else {
            return Some((prior_state, planned_private_state));
        };
        let (Value::Value(id), Value::Value(name)) = (&prior_state.id, &planned_state.name) else {
            diags.root_error_short("The project id or the new name is unknown");
            return Some((prior_state, planned_private_state));
        };
        let mut project = match client.rename_project(id, name).await {
            Ok(p) => p,
            Err(e) => {
                api_error(diags, "Cannot update the project", &e, ATTRIBUTES);
                return Some((prior_state, planned_private_state));
            }
        };
        for ((attribute, section, _), wanted) in SWITCHES.into_iter().zip(planned_state.switches())
        {
            let Value::Value(wanted) = *wanted else {
                continue;
            };
            if project.switched_on(section) == wanted {
                continue;
            }
            match client.set_switch(id, section, wanted).await {
                Ok(p) => project = p,
                Err(e) => {
                    api_error(diags, &format!("Cannot change {attribute}"), &e, ATTRIBUTES);
                    let secret = prior_state.token_hmac_secret.as_ref_option().cloned();
                    return Some((
                        ProjectState::from_api(project, secret.unwrap_or_default()),
                        planned_private_state,
                    ));
                }
            }
        }
        let secret = prior_state
            .token_hmac_secret
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        Some((
            ProjectState::from_api(project, secret),
            planned_private_state,
        ))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        _planned_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.client.get(diags)?;
        let id = prior_state.id.as_ref_option()?;
        match client.delete_project(id).await {
            Ok(()) => Some(()),
            Err(e) if e.is_not_found() => Some(()),
            Err(e) => {
                api_error(diags, "Cannot delete the project", &e, ATTRIBUTES);
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
        match load(&client, id.trim()).await {
            Ok(Some(state)) => Some((state, ValueEmpty::default())),
            Ok(None) => {
                diags.root_error(
                    "Cannot import the project",
                    format!("No project with id {id:?} in this account."),
                );
                None
            }
            Err(e) => {
                api_error(diags, "Cannot import the project", &e, ATTRIBUTES);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_engines_are_checked_like_the_api() {
        assert!(check_name("Chat App").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("   ").is_err());
        assert!(check_name(" padded").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
        assert!(check_engine("redis").is_ok());
        assert!(check_engine("postgres").unwrap_err().contains("memory"));
    }
}
