//! `rotor_project`: a Rotor project (one tenant). The name, `user_status_enabled` and
//! `grpc_api_enabled` (the project settings `user_status.enabled` and `grpc_api.enabled`)
//! change in place; the engine can only be chosen at
//! creation, so changing it replaces the project. Exposes the slug, the
//! public endpoints and the connection-token HMAC secret. Imported by project id.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint, AttributeType, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath, Diagnostics};

use crate::client::{ApiError, ApiResult, Client, Project};
use crate::diags::api_error;
use crate::resource::{changed, Managed};
use crate::schema::{attribute, boolean, schema, sensitive, string, Attributes};

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
#[serde(default)]
pub struct ProjectState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub engine: Value<String>,
    pub slug: Value<String>,
    pub plan: Value<String>,
    pub status: Value<String>,
    pub endpoints: Value<BTreeMap<String, Value<String>>>,
    pub token_hmac_secret: Value<String>,
    pub user_status_enabled: Value<bool>,
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
pub async fn load(client: &Client, id: &str) -> ApiResult<Option<ProjectState>> {
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
pub fn computed_attributes() -> Attributes {
    let computed = |desc: &str| string(desc, AttributeConstraint::Computed);
    let mut attributes = map! {
        "slug" => computed("URL-safe name of the project, part of its endpoint URLs."),
        "plan" => computed("The project's plan (limits on connections, namespaces, history)."),
        "status" => computed("`active` or `suspended`."),
        "endpoints" => attribute(
            AttributeType::Map(Box::new(AttributeType::String)),
            "Public URLs of the project: `websocket`, `sse`, `http_stream` (client transports) and `api` (server API).",
            AttributeConstraint::Computed,
        ),
        "token_hmac_secret" => sensitive(computed(
            "HMAC secret (HS256) for signing connection and subscription tokens.",
        )),
    };
    for (name, _, what) in SWITCHES {
        attributes.insert(
            name.into(),
            boolean(format!("{what}."), AttributeConstraint::Computed),
        );
    }
    attributes
}

/// The `rotor_project` resource; its id is the project's id.
pub struct ProjectResource;

impl ProjectResource {
    /// Creates the project, then turns on the switches it is planned with.
    async fn create(
        diags: &mut Diagnostics,
        client: &Client,
        planned: &ProjectState,
        summary: &str,
    ) -> Option<ProjectState> {
        let name = planned.name.as_ref_option()?;
        let engine = planned
            .engine
            .as_ref_option()
            .map_or(ENGINES[0], String::as_str);
        let mut project = match client.create_project(name, engine).await {
            Ok(p) => p,
            Err(e) => {
                Self::report(diags, summary, &e);
                return None;
            }
        };
        let id = project.id.clone();
        for ((attribute, section, _), wanted) in SWITCHES.into_iter().zip(planned.switches()) {
            if *wanted != Value::Value(true) {
                continue;
            }
            match client.set_switch(&id, section, true).await {
                Ok(p) => project = p,
                Err(e) => {
                    // The project exists: keep it in state (switched off) so it is not
                    // orphaned; the next apply switches it on.
                    Self::report(diags, &format!("Cannot turn on {attribute}"), &e);
                    break;
                }
            }
        }
        match client.token_hmac_secret(&id).await {
            Ok(secret) => Some(ProjectState::from_api(project, secret)),
            Err(e) => {
                // The project exists: keep it in state so it is not orphaned.
                Self::report(diags, "Cannot read the new project's secret", &e);
                let mut state = ProjectState::from_api(project, String::new());
                state.token_hmac_secret = Value::Null;
                Some(state)
            }
        }
    }

    /// Renames the project and flips the switches that differ from the plan.
    async fn update(
        diags: &mut Diagnostics,
        client: &Client,
        prior: &ProjectState,
        planned: &ProjectState,
        summary: &str,
    ) -> Option<ProjectState> {
        let (Value::Value(id), Value::Value(name)) = (&prior.id, &planned.name) else {
            diags.root_error_short("The project id or the new name is unknown");
            return None;
        };
        let mut project = match client.rename_project(id, name).await {
            Ok(p) => p,
            Err(e) => {
                Self::report(diags, summary, &e);
                return None;
            }
        };
        // The secret does not change in place.
        let secret = prior
            .token_hmac_secret
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        for ((attribute, section, _), wanted) in SWITCHES.into_iter().zip(planned.switches()) {
            let Value::Value(wanted) = *wanted else {
                continue;
            };
            if project.switched_on(section) == wanted {
                continue;
            }
            match client.set_switch(id, section, wanted).await {
                Ok(p) => project = p,
                Err(e) => {
                    Self::report(diags, &format!("Cannot change {attribute}"), &e);
                    return Some(ProjectState::from_api(project, secret));
                }
            }
        }
        Some(ProjectState::from_api(project, secret))
    }
}

#[async_trait]
impl Managed for ProjectResource {
    type State = ProjectState;
    type Id = String;

    const NOUN: &'static str = "the project";
    const CREATE_VERB: &'static str = "create";
    const UPDATE_VERB: Option<&'static str> = Some("update");
    const DESTROY_VERB: &'static str = "delete";

    fn schema(&self) -> Schema {
        let mut attributes = computed_attributes();
        attributes.insert(
            "id".into(),
            string("Project id (`prj_…`).", AttributeConstraint::Computed),
        );
        attributes.insert(
            "name".into(),
            string(
                "Display name (1 to 100 characters); the slug is derived from it at creation. Changes in place.",
                AttributeConstraint::Required,
            ),
        );
        attributes.insert(
            "engine".into(),
            string(
                "Broker and presence engine: `memory` (default) or `redis`. Changing it replaces the project.",
                AttributeConstraint::OptionalComputed,
            ),
        );
        for (name, _, what) in SWITCHES {
            attributes.insert(
                name.into(),
                boolean(
                    format!("{what}; default `false`. Changes in place."),
                    AttributeConstraint::OptionalComputed,
                ),
            );
        }
        schema(
            "A Rotor project: one Centrifugo-compatible tenant with its own endpoints, secret and keys.",
            attributes,
        )
    }

    fn validate(&self, diags: &mut Diagnostics, config: &ProjectState) {
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
    }

    fn id(state: &ProjectState) -> Option<String> {
        state.id.as_ref_option().cloned()
    }

    fn report(diags: &mut Diagnostics, summary: &str, err: &ApiError) {
        api_error(diags, summary, err, ATTRIBUTES);
    }

    async fn fetch(
        &self,
        client: &Client,
        id: &String,
        _prior: Option<&ProjectState>,
    ) -> ApiResult<Option<ProjectState>> {
        load(client, id).await
    }

    /// The first engine and switches off where the configuration leaves them out. (On
    /// creation the proposed state holds exactly what the configuration sets of these
    /// optional attributes.)
    fn plan(
        &self,
        _prior: Option<&ProjectState>,
        proposed: ProjectState,
        config: &ProjectState,
    ) -> ProjectState {
        let mut planned = proposed;
        if config.engine.is_null() {
            planned.engine = Value::Value(ENGINES[0].to_owned());
        }
        for (switch, configured) in planned.switches_mut().into_iter().zip(config.switches()) {
            if configured.is_null() {
                *switch = Value::Value(false);
            }
        }
        planned
    }

    fn replaces(prior: &ProjectState, planned: &ProjectState) -> Vec<AttributePath> {
        changed(&[("engine", &prior.engine, &planned.engine)])
    }

    fn unknown_computed(state: &mut ProjectState) {
        state.unknown_computed();
    }

    async fn write(
        &self,
        diags: &mut Diagnostics,
        client: &Client,
        prior: Option<&ProjectState>,
        planned: &ProjectState,
        summary: &str,
    ) -> Option<ProjectState> {
        match prior {
            None => Self::create(diags, client, planned, summary).await,
            Some(prior) => Self::update(diags, client, prior, planned, summary).await,
        }
    }

    async fn delete(&self, client: &Client, id: &String) -> ApiResult<()> {
        client.delete_project(id).await
    }

    fn import_id(_diags: &mut Diagnostics, raw: &str) -> Option<String> {
        Some(raw.trim().to_owned())
    }

    fn import_missing(raw: &str, _id: &String, _api_404: bool) -> String {
        format!("No project with id {raw:?} in this account.")
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
