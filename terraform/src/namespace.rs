//! `rotor_namespace`: a channel namespace of a project with every Centrifugo channel option as
//! a typed attribute (see `options`). Options change in place (the API replaces a namespace's
//! options with a PUT); the project and the name are its identity, so changing either replaces
//! it. Imported as `<project_id>/<name>`.

use async_trait::async_trait;
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use crate::client::{ApiError, ApiResult, Client, Namespace};
use crate::diags::{api_error, invalid_all};
use crate::options::{self, text, Attrs, Scalar, OPTIONS};
use crate::resource::{changed, Managed};
use crate::schema::{schema, string, Attributes};

/// The `rotor_namespace` resource; its id is (project id, namespace name).
pub struct NamespaceResource;

/// Attributes an API error may name: the name and every option.
fn error_attributes() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = OPTIONS.iter().map(|s| s.name).collect();
    names.push("name");
    names
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

#[async_trait]
impl Managed for NamespaceResource {
    type State = Attrs;
    type Id = (String, String);

    const NOUN: &'static str = "the namespace";
    const CREATE_VERB: &'static str = "create";
    const UPDATE_VERB: Option<&'static str> = Some("update");
    const DESTROY_VERB: &'static str = "delete";

    fn schema(&self) -> Schema {
        let mut attributes: Attributes = OPTIONS
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
                format!(
                    "Namespace name ({}): channels `name:…` take these options. Changing it replaces the namespace.",
                    rotor_tenant_config::NAMESPACE_NAME_PATTERN
                ),
                AttributeConstraint::Required,
            ),
        );
        schema(
            "A channel namespace of a Rotor project with Centrifugo's channel options; options left out take Centrifugo's defaults.",
            attributes,
        )
    }

    fn validate(&self, diags: &mut Diagnostics, config: &Attrs) {
        invalid_all(diags, options::validate(text(config, "name"), config));
    }

    fn id(state: &Attrs) -> Option<Self::Id> {
        let project = text(state, "project_id")?;
        let name = text(state, "name")?;
        Some((project.to_owned(), name.to_owned()))
    }

    fn report(diags: &mut Diagnostics, summary: &str, err: &ApiError) {
        api_error(diags, summary, err, &error_attributes());
    }

    async fn fetch(
        &self,
        client: &Client,
        (project, name): &Self::Id,
        prior: Option<&Attrs>,
    ) -> ApiResult<Option<Attrs>> {
        let ns = client.namespace(project, name).await?;
        let none = Attrs::new();
        Ok(Some(state_from_api(project, &ns, prior.unwrap_or(&none))))
    }

    fn plan(&self, _prior: Option<&Attrs>, proposed: Attrs, config: &Attrs) -> Attrs {
        let mut planned = proposed;
        options::plan(&mut planned, config);
        planned
    }

    fn replaces(prior: &Attrs, planned: &Attrs) -> Vec<AttributePath> {
        changed(&[
            (
                "project_id",
                &prior.get("project_id"),
                &planned.get("project_id"),
            ),
            ("name", &prior.get("name"), &planned.get("name")),
        ])
    }

    fn unknown_computed(state: &mut Attrs) {
        state.insert("id".into(), Value::Unknown);
    }

    /// PUTs the planned options. A new namespace must not exist yet: a PUT would silently
    /// take over one made elsewhere, so that is refused with how to adopt it instead.
    async fn write(
        &self,
        diags: &mut Diagnostics,
        client: &Client,
        prior: Option<&Attrs>,
        planned: &Attrs,
        summary: &str,
    ) -> Option<Attrs> {
        let project = text(planned, "project_id")?;
        let name = text(planned, "name")?;
        if prior.is_none() {
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
                    Self::report(diags, summary, &e);
                    return None;
                }
            }
        }
        let body = options::request_body(planned);
        match client.put_namespace(project, name, &body).await {
            Ok(ns) => Some(state_from_api(project, &ns, planned)),
            Err(e) => {
                Self::report(diags, summary, &e);
                None
            }
        }
    }

    async fn delete(&self, client: &Client, (project, name): &Self::Id) -> ApiResult<()> {
        client.delete_namespace(project, name).await
    }

    fn import_id(diags: &mut Diagnostics, raw: &str) -> Option<Self::Id> {
        match parse_import_id(raw) {
            Some((project, name)) => Some((project.to_owned(), name.to_owned())),
            None => {
                diags.root_error(
                    "Invalid import id",
                    format!("{raw:?} is not of the form <project_id>/<namespace name>."),
                );
                None
            }
        }
    }

    fn import_missing(_raw: &str, (project, name): &Self::Id, _api_404: bool) -> String {
        format!("Project {project:?} has no namespace {name:?}.")
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
