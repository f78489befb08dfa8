//! The `rotor` provider: its configuration (`endpoint`, `token`, with `ROTOR_ENDPOINT` and
//! `ROTOR_TOKEN` as fallbacks), the API client it hands to its resources once Terraform has
//! configured it, and the list of resources and data sources.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider};

use crate::api_key::ApiKeyResource;
use crate::client::Client;
use crate::consumer::ConsumerResource;
use crate::data_project::ProjectDataSource;
use crate::namespace::NamespaceResource;
use crate::project::ProjectResource;
use crate::resource::Adapter;
use crate::schema::{schema, sensitive, string};
use crate::webhooks::WebhooksResource;

/// Environment variable read when `endpoint` is not set.
pub const ENDPOINT_ENV: &str = "ROTOR_ENDPOINT";
/// Environment variable read when `token` is not set.
pub const TOKEN_ENV: &str = "ROTOR_TOKEN";

/// The configured API client, shared by the provider and its resources (Terraform configures
/// the provider after it has listed the resources).
#[derive(Clone, Default)]
pub struct SharedClient(Arc<RwLock<Option<Client>>>);

impl SharedClient {
    /// The client, or an error diagnostic when the provider has not been configured.
    pub fn get(&self, diags: &mut Diagnostics) -> Option<Client> {
        let client = self.0.read().ok().and_then(|c| c.clone());
        if client.is_none() {
            diags.root_error(
                "The rotor provider is not configured",
                "Terraform did not configure the provider before using it.",
            );
        }
        client
    }

    fn set(&self, client: Client) {
        if let Ok(mut slot) = self.0.write() {
            *slot = Some(client);
        }
    }
}

/// The provider block.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderConfig {
    pub endpoint: Value<String>,
    pub token: Value<String>,
}

/// The Rotor provider.
#[derive(Clone, Default)]
pub struct RotorProvider {
    client: SharedClient,
}

/// A setting from the configuration, else from the environment; `None` when neither has it
/// (an error naming both has been reported then).
fn setting(
    diags: &mut Diagnostics,
    value: &Value<String>,
    attribute: &'static str,
    env: &'static str,
) -> Option<String> {
    match value {
        Value::Value(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
        Value::Unknown => {
            diags.error(
                format!("The provider's {attribute} is not known yet"),
                "Set it from a value that is known before apply, or use the environment.",
                AttributePath::new(attribute),
            );
            None
        }
        _ => match std::env::var(env) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
            _ => {
                diags.error(
                    format!("Missing {attribute}"),
                    format!("Set `{attribute}` in the provider block or the {env} environment variable."),
                    AttributePath::new(attribute),
                );
                None
            }
        },
    }
}

#[async_trait]
impl Provider for RotorProvider {
    type Config<'a> = ProviderConfig;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(schema(
            "Manages Rotor projects, channel namespaces and API keys through the control plane's REST API.",
            map! {
                "endpoint" => string(
                    format!("Base URL of the Rotor control plane, e.g. https://rotor.example.com. Defaults to the {ENDPOINT_ENV} environment variable."),
                    AttributeConstraint::Optional,
                ),
                "token" => sensitive(string(
                    format!("Management token (sent as a Bearer token). Defaults to the {TOKEN_ENV} environment variable."),
                    AttributeConstraint::Optional,
                )),
            },
        ))
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::Config<'a>) -> Option<()> {
        if let Value::Value(endpoint) = &config.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                diags.error(
                    "Invalid endpoint",
                    format!("{endpoint:?} must be an http:// or https:// URL."),
                    AttributePath::new("endpoint"),
                );
            }
        }
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _terraform_version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let endpoint = setting(diags, &config.endpoint, "endpoint", ENDPOINT_ENV);
        let token = setting(diags, &config.token, "token", TOKEN_ENV);
        let (endpoint, token) = (endpoint?, token?);
        match Client::new(&endpoint, &token) {
            Ok(client) => {
                self.client.set(client);
                Some(())
            }
            Err(e) => {
                diags.error(
                    "Invalid endpoint",
                    e.to_string(),
                    AttributePath::new("endpoint"),
                );
                None
            }
        }
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        let client = || self.client.clone();
        Some(map! {
            "project" => Adapter::new(client(), ProjectResource),
            "namespace" => Adapter::new(client(), NamespaceResource),
            "api_key" => Adapter::new(client(), ApiKeyResource),
            "project_webhooks" => Adapter::new(client(), WebhooksResource),
            "project_consumer" => Adapter::new(client(), ConsumerResource),
        })
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        Some(map! {
            "project" => ProjectDataSource::new(self.client.clone()),
        })
    }
}
