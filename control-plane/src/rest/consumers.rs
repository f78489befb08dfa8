//! `POST /v1/projects/{id}/consumers/{name}/outbox`: creates the outbox of the project's
//! PostgreSQL consumer `name` in the customer's database (see [`crate::consumers::outbox`]).
//! Owner only (another account's project is the same 404 as none); recorded in the audit log
//! (the consumer's name and what was made, never the DSN). Shared with the dashboard's
//! consumers card ([`provision_outbox`]).

use axum::extract::{Path, State};
use axum::Json;
use rotor_tenant_config::PostgresConsumer;
use serde_json::{json, Value};

use super::util::audit;
use super::{OwnedProject, RestResult};
use crate::consumers::outbox::{self, OutboxError};
use crate::probe::Rule;
use crate::service::ProjectScope;
use crate::service::ServiceError;
use crate::state::AppState;

pub async fn post_outbox(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> RestResult<Json<Value>> {
    Ok(Json(provision_outbox(&state, &project, &name).await?))
}

/// Creates the outbox of `project`'s PostgreSQL consumer `name` (404 when it has none by that
/// name) and records it in the audit log; what was made.
pub async fn provision_outbox(
    state: &AppState,
    project: &ProjectScope,
    name: &str,
) -> RestResult<Value> {
    let (account, id) = (project.account(), project.id());
    let settings = crate::service::projects::settings(state, project).await?;
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
    let made = outbox::provision(&config, rule, &service)
        .await
        .map_err(|e| match e {
            OutboxError::Dsn(_) | OutboxError::Refused(_) => {
                ServiceError::field(&field, e.to_string())
            }
            OutboxError::Busy => ServiceError::Busy,
            other => ServiceError::Upstream(other.to_string()),
        })?;
    let answer = json!(made);
    let mut tx = state.pool.begin().await?;
    audit(
        &mut tx,
        account,
        Some(id),
        "consumers.outbox",
        name,
        None,
        Some(answer.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(answer)
}
