//! `POST /v1/projects/{id}/consumers/{name}/outbox`: creates the outbox of the project's
//! PostgreSQL consumer `name` in the customer's database, as JSON over
//! [`crate::service::consumers`]. Owner only (another account's project is the same 404 as
//! none).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::{OwnedProject, RestResult};
use crate::service::consumers::provision_outbox;
use crate::state::AppState;

pub async fn post_outbox(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> RestResult<Json<Value>> {
    let made = provision_outbox(&state, &project, &name).await?;
    Ok(Json(json!(made)))
}
