//! `rotor_api_key`: a server API key of a project. The API shows the key once, at creation, so
//! it lives on in the Terraform state (sensitive) and every read keeps it; a key revoked
//! outside Terraform drops out of the state and is planned again. Nothing about a key can
//! change in place, so any change replaces it. `scope` is what the key may call: `all` (the
//! default) or `publish` (publish and broadcast only, enforced by the tenant).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

use crate::diags::api_error;
use crate::project::check_name;
use crate::provider::SharedClient;

/// Attributes the API may name in an error.
const ATTRIBUTES: &[&str] = &["name", "scope"];
/// The scopes a key can have.
const SCOPES: [&str; 2] = ["all", "publish"];

/// The state of an API key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApiKeyState {
    #[serde(default)]
    pub id: Value<String>,
    #[serde(default)]
    pub project_id: Value<String>,
    #[serde(default)]
    pub name: Value<String>,
    #[serde(default)]
    pub scope: Value<String>,
    #[serde(default)]
    pub key: Value<String>,
    #[serde(default)]
    pub created_at: Value<String>,
}

/// The `rotor_api_key` resource.
pub struct ApiKeyResource {
    client: SharedClient,
}

impl ApiKeyResource {
    pub fn new(client: SharedClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Resource for ApiKeyResource {
    type State<'a> = ApiKeyState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let attr = |desc: &str, constraint: AttributeConstraint, sensitive: bool| Attribute {
            attr_type: AttributeType::String,
            description: Description::plain(desc),
            constraint,
            sensitive,
            ..Default::default()
        };
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "A server API key of a Rotor project (the `X-API-Key` of the server API).",
                ),
                attributes: map! {
                    "id" => attr("Key id (`key_…`).", AttributeConstraint::Computed, false),
                    "project_id" => attr("Id of the project. Changing it replaces the key.", AttributeConstraint::Required, false),
                    "name" => attr("Name of the key (1 to 100 characters). Changing it replaces the key.", AttributeConstraint::Required, false),
                    "scope" => attr("What the key may call: `all` server API methods (default) or `publish` (publish and broadcast only). Changing it replaces the key.", AttributeConstraint::OptionalComputed, false),
                    "key" => attr("The key itself; only known from creation on, kept in the state.", AttributeConstraint::Computed, true),
                    "created_at" => attr("When the key was created (RFC 3339).", AttributeConstraint::Computed, false),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
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
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let (Value::Value(project), Value::Value(id)) = (&state.project_id, &state.id) else {
            return Some((state, private_state));
        };
        let Some(client) = self.client.get(diags) else {
            return Some((state, private_state));
        };
        match client.api_keys(project).await {
            Ok(keys) => {
                let found = keys.into_iter().find(|k| &k.id == id)?;
                let mut fresh = state;
                fresh.name = Value::Value(found.name);
                fresh.scope = Value::Value(found.scope);
                fresh.created_at = Value::Value(found.created_at);
                Some((fresh, private_state))
            }
            // The project is gone, and its keys with it.
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                api_error(diags, "Cannot read the API key", &e, ATTRIBUTES);
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
        planned.id = Value::Unknown;
        planned.key = Value::Unknown;
        planned.created_at = Value::Unknown;
        if !matches!(planned.scope, Value::Value(_)) {
            planned.scope = Value::Value("all".into());
        }
        Some((planned, ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        proposed_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        prior_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut planned = proposed_state;
        let mut replace = Vec::new();
        if planned.project_id != prior_state.project_id {
            replace.push(AttributePath::new("project_id"));
        }
        if planned.name != prior_state.name {
            replace.push(AttributePath::new("name"));
        }
        // Left out of the config, the scope stays what the key has.
        if !matches!(planned.scope, Value::Value(_)) {
            planned.scope = prior_state.scope.clone();
        }
        if planned.scope != prior_state.scope {
            replace.push(AttributePath::new("scope"));
        }
        if !replace.is_empty() {
            planned.id = Value::Unknown;
            planned.key = Value::Unknown;
            planned.created_at = Value::Unknown;
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
        let project = planned_state.project_id.as_ref_option()?.clone();
        let name = planned_state.name.as_ref_option()?.clone();
        let scope = planned_state
            .scope
            .as_ref_option()
            .cloned()
            .unwrap_or_else(|| "all".into());
        match client.create_api_key(&project, &name, &scope).await {
            Ok(key) => Some((
                ApiKeyState {
                    id: Value::Value(key.id),
                    project_id: Value::Value(project),
                    name: Value::Value(key.name),
                    scope: Value::Value(key.scope),
                    key: Value::Value(key.key),
                    created_at: Value::Value(key.created_at),
                },
                planned_private_state,
            )),
            Err(e) => {
                api_error(diags, "Cannot create the API key", &e, ATTRIBUTES);
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Self::State<'a>,
        planned_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        planned_private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // Every change replaces the key (see `plan_update`), so there is nothing to send.
        Some((planned_state, planned_private_state))
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
        let id = prior_state.id.as_ref_option()?;
        match client.delete_api_key(project, id).await {
            Ok(()) => Some(()),
            Err(e) if e.is_not_found() => Some(()),
            Err(e) => {
                api_error(diags, "Cannot revoke the API key", &e, ATTRIBUTES);
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        _id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        diags.root_error(
            "API keys cannot be imported",
            "The API shows a key only once, when it is created; create a new rotor_api_key and revoke the old key instead.",
        );
        None
    }
}
