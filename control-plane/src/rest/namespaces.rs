//! `/v1/projects/{id}/namespaces…`: a project's channel namespaces as JSON (every Centrifugo
//! channel option a field, `id`, `name` and `updated_at` beside them) over
//! [`crate::service::namespaces`], which validates by the data plane's rules and checks the
//! plan's limits in the writing transaction. `PUT` creates or replaces.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::openapi::{self, ChannelOptionsSchema, NAMESPACES};
use super::{OwnedProject, RestResult};
use crate::ids::NamespaceId;
use crate::service::namespaces::{self, Namespace, Written};
use crate::service::ServiceError;
use crate::state::AppState;

/// A namespace: its channel options, with its id, name and last change beside them.
#[derive(Serialize, ToSchema)]
#[schema(as = Namespace)]
pub struct NamespaceBody {
    #[serde(flatten)]
    #[schema(value_type = ChannelOptionsSchema)]
    pub options: Map<String, Value>,
    #[schema(value_type = String)]
    pub id: NamespaceId,
    pub name: String,
    pub updated_at: DateTime<Utc>,
}

impl From<Namespace> for NamespaceBody {
    fn from(ns: Namespace) -> Self {
        let mut options = match ns.options {
            Value::Object(options) => options,
            _ => Map::new(),
        };
        // The fields beside the options win, as they always have.
        for field in ["id", "name", "updated_at"] {
            options.remove(field);
        }
        Self {
            options,
            id: ns.id,
            name: ns.name,
            updated_at: ns.updated_at,
        }
    }
}

/// The project's namespaces.
#[derive(Serialize, ToSchema)]
pub struct NamespaceList {
    pub namespaces: Vec<NamespaceBody>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/namespaces", tag = NAMESPACES, operation_id = "list_namespaces",
    summary = "List namespaces",
    security(("bearer" = [])),
    params(openapi::ProjectPath),
    responses((status = 200, description = "the project's namespaces", body = NamespaceList)))]
pub async fn list(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<NamespaceList>> {
    let namespaces = namespaces::list(&state, &project)
        .await?
        .into_iter()
        .map(NamespaceBody::from)
        .collect();
    Ok(Json(NamespaceList { namespaces }))
}

#[utoipa::path(put, path = "/v1/projects/{id}/namespaces/{name}", tag = NAMESPACES, operation_id = "put_namespace",
    summary = "Create or replace a namespace",
    security(("bearer" = [])),
    params(openapi::ProjectPath, openapi::NamespacePath),
    request_body = ChannelOptionsSchema,
    responses(
        (status = 200, description = "replaced", body = NamespaceBody),
        (status = 201, description = "created", body = NamespaceBody),
        (status = 403, description = "over the plan's namespace limit (plan_limit)", body = super::ErrorBody),
    ))]
pub async fn put(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> RestResult<(StatusCode, Json<NamespaceBody>)> {
    if let Some(n) = body.get("name").and_then(Value::as_str) {
        if n != name {
            return Err(ServiceError::field(
                "name",
                "the name in the body differs from the path",
            ));
        }
    }
    let (written, ns) = namespaces::put(&state, &project, &name, &body).await?;
    let status = match written {
        Written::Created => StatusCode::CREATED,
        Written::Replaced => StatusCode::OK,
    };
    Ok((status, Json(ns.into())))
}

#[utoipa::path(get, path = "/v1/projects/{id}/namespaces/{name}", tag = NAMESPACES, operation_id = "get_namespace",
    summary = "Get a namespace",
    security(("bearer" = [])),
    params(openapi::ProjectPath, openapi::NamespacePath),
    responses((status = 200, description = "the namespace", body = NamespaceBody)))]
pub async fn get(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> RestResult<Json<NamespaceBody>> {
    let ns = namespaces::get(&state, &project, &name).await?;
    Ok(Json(ns.into()))
}

#[utoipa::path(delete, path = "/v1/projects/{id}/namespaces/{name}", tag = NAMESPACES, operation_id = "delete_namespace",
    summary = "Delete a namespace",
    security(("bearer" = [])),
    params(openapi::ProjectPath, openapi::NamespacePath),
    responses((status = 204, description = "deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    namespaces::delete(&state, &project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
