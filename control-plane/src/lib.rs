//! Rotor's control plane: owns accounts, projects, API keys and namespace configuration in
//! Postgres, supervises one data-plane process per tenant and pushes each tenant its compiled
//! [`rotor_tenant_config::TenantConfig`]. Built out by the control-plane issue.
