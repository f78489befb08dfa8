//! `GET /v1/projects/{id}/webhooks` (events waiting, the failures the project's process gave
//! up on) and `POST /v1/projects/{id}/webhooks/redeliver` (`{"webhook_id": "…"}` or
//! `{"all": true}`: send failures again), as JSON over [`crate::service::webhooks`].

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{OwnedProject, RestResult};
use crate::service::webhooks::{check_webhook_id, deliveries_of, redeliver, Redeliver};
use crate::service::ServiceError;
use crate::state::AppState;

pub async fn get_deliveries(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<Value>> {
    let view = deliveries_of(&state, &project).await?;
    Ok(Json(match view {
        Some(v) => json!({
            "running": true,
            "enabled": v["enabled"],
            "queued": v["queued"],
            "dead_letters": v["dead_letters"],
        }),
        None => json!({"running": false, "dead_letters": []}),
    }))
}

/// `POST /v1/projects/{id}/webhooks/redeliver`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    #[serde(default)]
    webhook_id: Option<String>,
    #[serde(default)]
    all: bool,
}

pub async fn post_redeliver(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Json(body): Json<RedeliverRequest>,
) -> RestResult<Json<Value>> {
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
    let done = redeliver(&state, &project, &what).await?;
    Ok(Json(
        json!({"batches": done.batches, "events": done.events}),
    ))
}
