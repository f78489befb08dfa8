//! The outbox of a project's PostgreSQL consumer, made in the customer's database (see
//! [`crate::consumers::outbox`]) for the owner and recorded in the audit log.

use rotor_tenant_config::PostgresConsumer;
use serde_json::{json, Value};

use super::{audit, ProjectScope, ServiceError, ServiceResult};
use crate::consumers::outbox::{self, OutboxError, Provisioned};
use crate::probe::Rule;
use crate::state::AppState;

/// Creates the outbox of `project`'s PostgreSQL consumer `name` (404 when it has none by that
/// name) and records it in the audit log (the consumer's name and what was made, never the
/// DSN); what was made.
pub async fn provision_outbox(
    state: &AppState,
    project: &ProjectScope,
    name: &str,
) -> ServiceResult<Provisioned> {
    let (account, id) = (project.account(), project.id());
    let settings = super::projects::settings(state, project).await?;
    let found = settings
        .get("consumers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .find(|(_, c)| {
            c.get("name").and_then(Value::as_str) == Some(name)
                && c.get("type").and_then(Value::as_str) == Some("postgresql")
        });
    let Some((index, consumer)) = found else {
        return Err(ServiceError::NotFound);
    };
    let field = format!("settings.consumers[{index}].postgresql.dsn");
    let config: PostgresConsumer =
        serde_json::from_value(consumer.get("postgresql").cloned().unwrap_or(Value::Null))
            .map_err(|e| ServiceError::field(&field, e.to_string()))?;
    let rule = if state.settings.tenant_private_egress {
        Rule::Any
    } else {
        Rule::PublicOnly
    };
    let service = crate::consumers::service_addresses(
        &state.settings.database_url,
        state.settings.redis_url.as_deref(),
    )
    .await;
    let made = outbox::provision(&config, rule, &service, account.as_str())
        .await
        .map_err(|e| match e {
            OutboxError::Dsn(_) | OutboxError::Refused(_) => {
                ServiceError::field(&field, e.to_string())
            }
            OutboxError::Busy => ServiceError::Busy,
            OutboxError::Worker(_) => ServiceError::Internal(e.into()),
            other => ServiceError::Upstream(other.to_string()),
        })?;
    let mut tx = state.pool.begin().await?;
    audit(
        &mut tx,
        account,
        Some(id),
        "consumers.outbox",
        name,
        None,
        Some(json!(made)),
    )
    .await?;
    tx.commit().await?;
    Ok(made)
}
