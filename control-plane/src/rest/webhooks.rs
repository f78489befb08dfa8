//! `GET /v1/projects/{id}/webhooks` (events waiting, the failures the project's process gave
//! up on) and `POST /v1/projects/{id}/webhooks/redeliver` (`{"webhook_id": "…"}` or
//! `{"all": true}`: send failures again), as JSON over [`crate::service::webhooks`].

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::openapi::{self, PROJECTS};
use super::{OwnedProject, RestResult};
use crate::service::webhooks::{
    check_webhook_id, deliveries_of, redeliver, Redeliver, Redelivered,
};
use crate::service::ServiceError;
use crate::state::AppState;

/// The webhook deliveries of the project's process, as it reports them.
#[derive(Serialize, ToSchema)]
pub struct WebhookDeliveries {
    /// Whether the project's process runs (when not, nothing else is known).
    pub running: bool,
    /// Whether webhooks are on (running projects only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<bool>)]
    pub enabled: Option<Value>,
    /// Events waiting for delivery (running projects only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub queued: Option<Value>,
    /// The failed deliveries kept, oldest first (webhook_id names one for redelivery).
    #[schema(value_type = Vec<Object>)]
    pub dead_letters: Value,
}

#[utoipa::path(get, path = "/v1/projects/{id}/webhooks", tag = PROJECTS, operation_id = "get_webhook_deliveries",
    summary = "Webhook deliveries of the running project: events waiting and the failed deliveries it keeps (dead letters)",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    responses((status = 200, description = "the deliveries", body = WebhookDeliveries)))]
pub async fn get_deliveries(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<WebhookDeliveries>> {
    let view = deliveries_of(&state, &project).await?;
    Ok(Json(match view {
        Some(v) => WebhookDeliveries {
            running: true,
            enabled: Some(v["enabled"].clone()),
            queued: Some(v["queued"].clone()),
            dead_letters: v["dead_letters"].clone(),
        },
        None => WebhookDeliveries {
            running: false,
            enabled: None,
            queued: None,
            dead_letters: Value::Array(Vec::new()),
        },
    }))
}

/// Which failed deliveries to send again: one of webhook_id or all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Redeliver)]
pub struct RedeliverRequest {
    /// the X-Rotor-Webhook-Id of one failed delivery
    #[serde(default)]
    webhook_id: Option<String>,
    /// every failed delivery the project keeps
    #[serde(default)]
    all: bool,
}

#[utoipa::path(post, path = "/v1/projects/{id}/webhooks/redeliver", tag = PROJECTS, operation_id = "redeliver_webhooks",
    summary = "Send failed webhook deliveries again, with their webhook ids, signed with the current secret",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    request_body = RedeliverRequest,
    responses((status = 200, description = "what was queued again", body = Redelivered)))]
pub async fn post_redeliver(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Json(body): Json<RedeliverRequest>,
) -> RestResult<Json<Redelivered>> {
    let what = match (body.webhook_id, body.all) {
        (Some(webhook_id), false) => Redeliver::One(check_webhook_id(&webhook_id)?),
        (None, true) => Redeliver::All,
        _ => {
            return Err(ServiceError::field(
                "webhook_id",
                "give either \"webhook_id\" (one failed delivery) or \"all\": true",
            ))
        }
    };
    Ok(Json(redeliver(&state, &project, &what).await?))
}
