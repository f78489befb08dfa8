//! `POST /v1/projects/{id}/consumers/{name}/outbox`: creates the outbox of the project's
//! PostgreSQL consumer `name` in the customer's database, as JSON over
//! [`crate::service::consumers`]. Owner only (another account's project is the same 404 as
//! none).

use axum::extract::{Path, State};
use axum::Json;

use super::openapi::{self, PROJECTS};
use super::{ErrorBody, OwnedProject, RestResult};
use crate::consumers::outbox::Provisioned;
use crate::service::consumers::provision_outbox;
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/projects/{id}/consumers/{name}/outbox", tag = PROJECTS, operation_id = "create_consumer_outbox",
    summary = "Create the outbox table (with its partition index and NOTIFY trigger) of the PostgreSQL consumer `name` in your database, if absent: public addresses only, never the service's own database; 502 when your database is unreachable or refuses",
    security(("bearer" = [])),
    params(openapi::ProjectPath,
        ("name" = String, Path, description = "the consumer's name")),
    responses(
        (status = 200, description = "what was made", body = Provisioned),
        (status = 502, description = "your database is unreachable or refused (upstream)", body = ErrorBody),
        (status = 503, description = "too many outbox requests at once (busy)", body = ErrorBody),
    ))]
pub async fn post_outbox(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> RestResult<Json<Provisioned>> {
    Ok(Json(provision_outbox(&state, &project, &name).await?))
}
