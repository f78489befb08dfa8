//! `rotor_api_key`: a server API key of a project. The API shows the key once, at creation, so
//! it lives on in the Terraform state (sensitive) and every read keeps it; a key revoked
//! outside Terraform drops out of the state and is planned again. Nothing about a key can
//! change in place, so any change replaces it. `scope` is what the key may call: `all` (the
//! default) or `publish` (publish and broadcast only, enforced by the tenant).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath, Diagnostics};

use crate::client::{ApiError, ApiResult, Client};
use crate::diags::api_error;
use crate::project::check_name;
use crate::resource::{changed, Managed};
use crate::schema::{schema, sensitive, string};

/// Attributes the API may name in an error.
const ATTRIBUTES: &[&str] = &["name", "scope"];
/// The scopes a key can have.
const SCOPES: [&str; 2] = ["all", "publish"];

/// The state of an API key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiKeyState {
    pub id: Value<String>,
    pub project_id: Value<String>,
    pub name: Value<String>,
    pub scope: Value<String>,
    pub key: Value<String>,
    pub created_at: Value<String>,
}

/// The `rotor_api_key` resource; its id is (project id, key id).
pub struct ApiKeyResource;

#[async_trait]
impl Managed for ApiKeyResource {
    type State = ApiKeyState;
    type Id = (String, String);

    const NOUN: &'static str = "the API key";
    const CREATE_VERB: &'static str = "create";
    // Every change replaces the key (see `replaces`), so there is nothing to send.
    const UPDATE_VERB: Option<&'static str> = None;
    const DESTROY_VERB: &'static str = "revoke";

    fn schema(&self) -> Schema {
        let attr = |desc: &str, constraint: AttributeConstraint| string(desc, constraint);
        schema(
            "A server API key of a Rotor project (the `X-API-Key` of the server API).",
            map! {
                "id" => attr("Key id (`key_…`).", AttributeConstraint::Computed),
                "project_id" => attr("Id of the project. Changing it replaces the key.", AttributeConstraint::Required),
                "name" => attr("Name of the key (1 to 100 characters). Changing it replaces the key.", AttributeConstraint::Required),
                "scope" => attr("What the key may call: `all` server API methods (default) or `publish` (publish and broadcast only). Changing it replaces the key.", AttributeConstraint::OptionalComputed),
                "key" => sensitive(attr("The key itself; only known from creation on, kept in the state.", AttributeConstraint::Computed)),
                "created_at" => attr("When the key was created (RFC 3339).", AttributeConstraint::Computed),
            },
        )
    }

    fn validate(&self, diags: &mut Diagnostics, config: &ApiKeyState) {
        if let Value::Value(name) = &config.name {
            if let Err(message) = check_name(name) {
                diags.error("Invalid key name", message, AttributePath::new("name"));
            }
        }
        if let Value::Value(scope) = &config.scope {
            if !SCOPES.contains(&scope.as_str()) {
                diags.error(
                    "Invalid key scope",
                    format!("scope must be \"all\" or \"publish\", not {scope:?}"),
                    AttributePath::new("scope"),
                );
            }
        }
    }

    fn id(state: &ApiKeyState) -> Option<Self::Id> {
        let project = state.project_id.as_ref_option()?;
        let id = state.id.as_ref_option()?;
        Some((project.clone(), id.clone()))
    }

    fn report(diags: &mut Diagnostics, summary: &str, err: &ApiError) {
        api_error(diags, summary, err, ATTRIBUTES);
    }

    /// The key as listed (a 404: the project is gone, and its keys with it); the key itself
    /// is only known from `prior`.
    async fn fetch(
        &self,
        client: &Client,
        (project, id): &Self::Id,
        prior: Option<&ApiKeyState>,
    ) -> ApiResult<Option<ApiKeyState>> {
        let keys = client.api_keys(project).await?;
        let Some(found) = keys.into_iter().find(|k| &k.id == id) else {
            return Ok(None);
        };
        let mut fresh = prior.cloned().unwrap_or_default();
        fresh.id = Value::Value(found.id);
        fresh.project_id = Value::Value(project.clone());
        fresh.name = Value::Value(found.name);
        fresh.scope = Value::Value(found.scope);
        fresh.created_at = Value::Value(found.created_at);
        Ok(Some(fresh))
    }

    /// Left out of the configuration, the scope is `all` for a new key and stays what the
    /// key has on a change.
    fn plan(
        &self,
        prior: Option<&ApiKeyState>,
        proposed: ApiKeyState,
        _config: &ApiKeyState,
    ) -> ApiKeyState {
        let mut planned = proposed;
        if !matches!(planned.scope, Value::Value(_)) {
            planned.scope = prior.map_or(Value::Value("all".into()), |p| p.scope.clone());
        }
        planned
    }

    fn replaces(prior: &ApiKeyState, planned: &ApiKeyState) -> Vec<AttributePath> {
        changed(&[
            ("project_id", &prior.project_id, &planned.project_id),
            ("name", &prior.name, &planned.name),
            ("scope", &prior.scope, &planned.scope),
        ])
    }

    fn unknown_computed(state: &mut ApiKeyState) {
        state.id = Value::Unknown;
        state.key = Value::Unknown;
        state.created_at = Value::Unknown;
    }

    /// Creates the key (only ever called for a new one: nothing changes in place).
    async fn write(
        &self,
        diags: &mut Diagnostics,
        client: &Client,
        _prior: Option<&ApiKeyState>,
        planned: &ApiKeyState,
        summary: &str,
    ) -> Option<ApiKeyState> {
        let project = planned.project_id.as_ref_option()?;
        let name = planned.name.as_ref_option()?;
        let scope = planned.scope.as_ref_option().map_or("all", String::as_str);
        match client.create_api_key(project, name, scope).await {
            Ok(key) => Some(ApiKeyState {
                id: Value::Value(key.id),
                project_id: Value::Value(project.clone()),
                name: Value::Value(key.name),
                scope: Value::Value(key.scope),
                key: Value::Value(key.key),
                created_at: Value::Value(key.created_at),
            }),
            Err(e) => {
                Self::report(diags, summary, &e);
                None
            }
        }
    }

    async fn delete(&self, client: &Client, (project, id): &Self::Id) -> ApiResult<()> {
        client.delete_api_key(project, id).await
    }

    fn import_id(diags: &mut Diagnostics, _raw: &str) -> Option<Self::Id> {
        diags.root_error(
            "API keys cannot be imported",
            "The API shows a key only once, when it is created; create a new rotor_api_key and revoke the old key instead.",
        );
        None
    }

    fn import_missing(_raw: &str, (project, id): &Self::Id, _api_404: bool) -> String {
        format!("Project {project:?} has no API key {id:?}.")
    }
}
