//! `rotor_namespace`: a channel namespace of a project with every Centrifugo channel option as
//! a typed attribute (see `options`). Options change in place (the API replaces a namespace's
//! options with a PUT); the project and the name are its identity, so changing either replaces
//! it. Imported as `<project_id>/<name>`.

use async_trait::async_trait;
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::client::{ApiError, Client, Namespace};
use crate::diags::{api_error, invalid};
use crate::options::{self, text, Attrs, Scalar, OPTIONS};
use crate::provider::SharedClient;

/// The `rotor_namespace` resource.
pub struct NamespaceResource {
    client: SharedClient,
}

impl NamespaceResource {
    pub fn new(client: SharedClient) -> Self {
        Self { client }
    }
}

/// Attributes an API error may name: the name and every option.
fn error_attributes() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = OPTIONS.iter().map(|s| s.name).collect();
    names.push("name");
    names
}

fn report(diags: &mut Diagnostics, summary: &str, err: &ApiError) {
    api_error(diags, summary, err, &error_attributes());
}

fn set_text(attrs: &mut Attrs, name: &str, value: impl Into<String>) {
    attrs.insert(name.to_owned(), Value::Value(Scalar::Text(value.into())));
}

/// The state for a namespace as the API returns it; option values meaning the same as in
/// `prior` keep their spelling there.
fn state_from_api(project_id: &str, ns: &Namespace, prior: &Attrs) -> Attrs {
    let mut state = Attrs::new();
    set_text(&mut state, "id", ns.id.clone());
    set_text(&mut state, "project_id", project_id);
    set_text(&mut state, "name", ns.name.clone());
    options::fill_from_api(&mut state, &ns.options, prior);
    state
}

/// Splits an import id `<project_id>/<name>`.
fn parse_import_id(id: &str) -> Option<(&str, &str)> {
    let (project, name) = id.trim().split_once('/')?;
    (!project.is_empty() && !name.is_empty() && !name.contains('/')).then_some((project, name))
}

impl NamespaceResource {
    /// PUTs the planned options; the new state, or `None` with an error reported.
    async fn save(
        &self,
        diags: &mut Diagnostics,
        client: &Client,
        planned: &Attrs,
        summary: &str,
    ) -> Option<Attrs> {
        let project = text(planned, "project_id")?;
        let name = text(planned, "name")?;
        let body = options::request_body(planned);
        match client.put_namespace(project, name, &body).await {
            Ok(ns) => Some(state_from_api(project, &ns, planned)),
            Err(e) => {
                report(diags, summary, &e);
                None
            }
        }
    }
}

#[async_trait]
impl Resource for NamespaceResource {
    type State<'a> = Attrs;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let string = |desc: &str, constraint: AttributeConstraint| Attribute {
            attr_type: AttributeType::String,
            description: Description::plain(desc),
            constraint,
            ..Default::default()
        };
        let mut attributes: std::collections::HashMap<String, Attribute> = OPTIONS
            .iter()
            .map(|spec| (spec.name.to_owned(), spec.attribute()))
            .collect();
        attributes.insert(
            "id".into(),
            string("Namespace id (`ns_…`).", AttributeConstraint::Computed),
        );
        attributes.insert(
            "project_id".into(),
            string(
                "Id of the project. Changing it replaces the namespace.",
                AttributeConstraint::Required,
            ),
        );
        attributes.insert(
            "name".into(),
            string(
                &format!(
                    "Namespace name ({}): channels `name:…` take these options. Changing it replaces the namespace.",
                    rotor_tenant_config::NAMESPACE_NAME_PATTERN
                ),
                AttributeConstraint::Required,
            ),
        );
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "A channel namespace of a Rotor project with Centrifugo's channel options; options left out take Centrifugo's defaults.",
                ),
                attributes,
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        for problem in options::validate(text(&config, "name"), &config) {
            invalid(diags, &problem);
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
        let (Some(project), Some(name)) = (text(&state, "project_id"), text(&state, "name")) else {
            return Some((state, private_state));
        };
        let Some(client) = self.client.get(diags) else {
            return Some((state, private_state));
        };
        match client.namespace(project, name).await {
            Ok(ns) => Some((state_from_api(project, &ns, &state), private_state)),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                report(diags, "Cannot read the namespace", &e);
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
        options::plan(&mut planned, &config_state);
        planned.insert("id".into(), Value::Unknown);
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
        options::plan(&mut planned, &config_state);
        let mut replace = Vec::new();
        for identity in ["project_id", "name"] {
            if planned.get(identity) != prior_state.get(identity) {
                replace.push(AttributePath::new(identity));
            }
        }
        if !replace.is_empty() {
            planned.insert("id".into(), Value::Unknown);
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
        let project = text(&planned_state, "project_id")?;
        let name = text(&planned_state, "name")?;
        // A PUT would silently take over a namespace made elsewhere: refuse, and say how to
        // adopt it instead.
        match client.namespace(project, name).await {
            Ok(_) => {
                diags.error(
                    "Namespace already exists",
                    format!(
                        "Project {project} already has a namespace {name:?}. Adopt it with `terraform import <address> {project}/{name}`."
                    ),
                    AttributePath::new("name"),
                );
                return None;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                report(diags, "Cannot create the namespace", &e);
                return None;
            }
        }
        let state = self
            .save(
                diags,
                &client,
                &planned_state,
                "Cannot create the namespace",
            )
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
        // On failure the namespace is as it was: hand back the prior state (a null state
        // would make Terraform forget the namespace).
        let Some(client) = self.client.get(diags) else {
            return Some((prior_state, planned_private_state));
        };
        match self
            .save(
                diags,
                &client,
                &planned_state,
                "Cannot update the namespace",
            )
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
        let project = text(&prior_state, "project_id")?;
        let name = text(&prior_state, "name")?;
        match client.delete_namespace(project, name).await {
            Ok(()) => Some(()),
            Err(e) if e.is_not_found() => Some(()),
            Err(e) => {
                report(diags, "Cannot delete the namespace", &e);
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Some((project, name)) = parse_import_id(&id) else {
            diags.root_error(
                "Invalid import id",
                format!("{id:?} is not of the form <project_id>/<namespace name>."),
            );
            return None;
        };
        let client = self.client.get(diags)?;
        match client.namespace(project, name).await {
            Ok(ns) => Some((
                state_from_api(project, &ns, &Attrs::new()),
                ValueEmpty::default(),
            )),
            Err(e) if e.is_not_found() => {
                diags.root_error(
                    "Cannot import the namespace",
                    format!("Project {project:?} has no namespace {name:?}."),
                );
                None
            }
            Err(e) => {
                report(diags, "Cannot import the namespace", &e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_ids_are_project_slash_name() {
        assert_eq!(parse_import_id("prj_1/chat"), Some(("prj_1", "chat")));
        assert_eq!(parse_import_id(" prj_1/chat "), Some(("prj_1", "chat")));
        assert_eq!(parse_import_id("prj_1"), None);
        assert_eq!(parse_import_id("/chat"), None);
        assert_eq!(parse_import_id("a/b/c"), None);
    }

    #[test]
    fn api_state_has_every_attribute() {
        let ns = Namespace {
            id: "ns_1".into(),
            name: "chat".into(),
            options: serde_json::json!({"presence": true})
                .as_object()
                .cloned()
                .unwrap(),
        };
        let state = state_from_api("prj_1", &ns, &Attrs::new());
        assert_eq!(state.len(), OPTIONS.len() + 3);
        assert_eq!(text(&state, "project_id"), Some("prj_1"));
        assert_eq!(state["presence"], Value::Value(Scalar::Bool(true)));
    }
}
