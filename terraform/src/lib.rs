//! Terraform provider for Rotor: projects, channel namespaces, API keys, webhooks and consumers managed
//! through the control plane's REST API, served to Terraform over the plugin protocol v6
//! (`tf-provider`).
//!
//! `provider` holds the configuration and the shared API client; `project`, `namespace`,
//! `api_key`, `webhooks` (`rotor_project_webhooks`) and `consumer` (`rotor_project_consumer`)
//! are the resources, each saying only what is its own to `resource`, which serves them all
//! to Terraform the same way; `data_project` is the data source; `schema` builds their
//! attributes; `options` maps the channel options onto attributes; `client` is the REST
//! client and `diags` turns failures into Terraform diagnostics.

pub mod api_key;
pub mod client;
pub mod consumer;
pub mod data_project;
pub mod diags;
pub mod namespace;
pub mod options;
pub mod project;
pub mod provider;
pub mod resource;
pub mod schema;
pub mod webhooks;

pub use provider::RotorProvider;

/// The provider's local name: resource types are `rotor_<name>`.
pub const PROVIDER_NAME: &str = "rotor";
