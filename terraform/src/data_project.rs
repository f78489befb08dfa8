//! Data source `rotor_project`: looks up an existing project by `id` or by `slug` and exposes
//! what the resource does (name, engine, endpoints, token secret, user status), for configurations that use
//! a project managed elsewhere.

use async_trait::async_trait;
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics};

use crate::client::{ApiResult, Client};
use crate::diags::api_error;
use crate::project::{computed_attributes, load, ProjectState};
use crate::provider::SharedClient;
use crate::schema::{schema, string};

/// The `rotor_project` data source.
pub struct ProjectDataSource {
    client: SharedClient,
}

impl ProjectDataSource {
    pub fn new(client: SharedClient) -> Self {
        Self { client }
    }
}

/// The id of the project with `slug`, if the account has one.
async fn id_by_slug(client: &Client, slug: &str) -> ApiResult<Option<String>> {
    Ok(client
        .projects()
        .await?
        .into_iter()
        .find(|p| p.slug == slug)
        .map(|p| p.id))
}

#[async_trait]
impl DataSource for ProjectDataSource {
    type State<'a> = ProjectState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut attributes = computed_attributes();
        let lookup = |desc: &str| string(desc, AttributeConstraint::OptionalComputed);
        attributes.insert(
            "id".into(),
            lookup("Project id (`prj_…`) to look up; set this or `slug`."),
        );
        attributes.insert(
            "slug".into(),
            lookup("Project slug to look up; set this or `id`."),
        );
        for (name, desc) in [
            ("name", "Display name."),
            ("engine", "`memory` or `redis`."),
        ] {
            attributes.insert(name.into(), string(desc, AttributeConstraint::Computed));
        }
        Some(schema(
            "An existing Rotor project, found by id or slug.",
            attributes,
        ))
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if config.id.is_value() && config.slug.is_value() {
            diags.error(
                "Conflicting lookup",
                "Set either `id` or `slug`, not both.",
                AttributePath::new("slug"),
            );
        }
        if config.id.is_null() && config.slug.is_null() {
            diags.root_error("Missing lookup", "Set `id` or `slug` to find the project.");
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.client.get(diags)?;
        let (id, attribute, wanted) = match (&config.id, &config.slug) {
            (Value::Value(id), _) => (Some(id.clone()), "id", id.clone()),
            (_, Value::Value(slug)) => match id_by_slug(&client, slug).await {
                Ok(id) => (id, "slug", slug.clone()),
                Err(e) => {
                    api_error(diags, "Cannot list projects", &e, &[]);
                    return None;
                }
            },
            _ => {
                diags.root_error("Missing lookup", "Set `id` or `slug` to find the project.");
                return None;
            }
        };
        let found = match id {
            Some(id) => match load(&client, &id).await {
                Ok(found) => found,
                Err(e) => {
                    api_error(diags, "Cannot read the project", &e, &[]);
                    return None;
                }
            },
            None => None,
        };
        if found.is_none() {
            diags.error(
                "Project not found",
                format!("No project with {attribute} {wanted:?} in this account."),
                AttributePath::new(attribute),
            );
        }
        found
    }
}
