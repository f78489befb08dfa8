//! Rotor's control plane: owns accounts, projects, API keys and namespace configuration in
//! Postgres, supervises one data-plane process per tenant, pushes each tenant its compiled
//! [`rotor_tenant_config::TenantConfig`], and routes one public endpoint to the tenants.

pub mod app;
pub mod audit;
pub mod auth_limits;
pub mod cgroups;
pub mod consumers;
pub mod db;
pub mod demo;
pub mod edge;
pub mod ids;
pub mod limits;
pub mod mail;
pub mod operator;
pub mod parking;
pub mod password_reset;
pub mod percent;
pub mod probe;
pub mod project_settings;
pub mod reconciler;
pub mod redis_deployments;
pub mod redis_move;
pub mod rest;
pub mod routes;
pub mod sandbox;
pub mod sealed;
pub mod secret_store;
pub mod secrets;
pub mod service;
pub mod settings;
pub mod state;
pub mod supervisor;
pub mod tenant;
pub mod tenant_events;
pub mod tenant_logs;
pub mod throttling;
pub mod usage;
pub mod web;
pub mod write_limits;
