//! Terraform provider for Rotor: projects, namespaces and API keys managed through the control
//! plane's REST API. Built out by the Terraform issue.
