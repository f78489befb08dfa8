//! `/v1/projects/{id}/namespaces…`: a project's channel namespaces as JSON (every Centrifugo
//! channel option a field, `id`, `name` and `updated_at` beside them) over
//! [`crate::service::namespaces`], which validates by the data plane's rules and checks the
//! plan's limits in the writing transaction. `PUT` creates or replaces.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::{OwnedProject, RestResult};
use crate::service::namespaces::{self, Namespace, Written};
use crate::service::ServiceError;
use crate::state::AppState;

fn namespace_json(ns: &Namespace) -> Value {
    let mut out: Map<String, Value> = ns.options.as_object().cloned().unwrap_or_default();
    out.insert("id".into(), json!(ns.id));
    out.insert("name".into(), json!(ns.name));
    out.insert("updated_at".into(), json!(ns.updated_at));
    Value::Object(out)
}

pub async fn list(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<Value>> {
    let all: Vec<Value> = namespaces::list(&state, &project)
        .await?
        .iter()
        .map(namespace_json)
        .collect();
    Ok(Json(json!({ "namespaces": all })))
}

pub async fn put(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> RestResult<(StatusCode, Json<Value>)> {
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
    Ok((status, Json(namespace_json(&ns))))
}

pub async fn get(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> RestResult<Json<Value>> {
    let ns = namespaces::get(&state, &project, &name).await?;
    Ok(Json(namespace_json(&ns)))
}

pub async fn delete(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    namespaces::delete(&state, &project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
