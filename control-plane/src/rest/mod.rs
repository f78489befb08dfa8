//! The REST API (`/v1`, JSON, Bearer management tokens) used by scripts, the Terraform
//! provider and the dashboard's JavaScript: an adapter over [`crate::service`] that parses
//! requests, calls the service and renders its typed results as JSON. The service's one error
//! ([`ServiceError`]) turns into one response shape here:
//! `{"error": {"code", "message", "field"?}}`.

pub mod accounts;
mod auth;
pub mod consumers;
pub mod namespaces;
pub mod openapi;
pub mod projects;
pub mod usage;
pub mod webhooks;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::service::ServiceError;
use crate::state::AppState;

pub(crate) use auth::project_param;
pub use auth::{Account, OwnedProject};

/// How the service's errors answer a REST call: status, `code`, message (internal causes are
/// logged with a request id and not shown) and `Retry-After` where there is a time to wait.
impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ServiceError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ServiceError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ServiceError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::PlanLimit(_) => (StatusCode::FORBIDDEN, "plan_limit"),
            ServiceError::OperatorOnly(_) => (StatusCode::FORBIDDEN, "operator_only"),
            ServiceError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ServiceError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ServiceError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream"),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let retry_after = match &self {
            ServiceError::TooManyRequests { retry_after } => {
                Some(crate::auth_limits::retry_after_secs(*retry_after))
            }
            ServiceError::Busy => Some(1),
            _ => None,
        };
        let message = match &self {
            ServiceError::Internal(cause) => {
                let request_id = crate::ids::random_suffix(12);
                tracing::error!(%request_id, error = %cause, "request failed");
                format!("internal error (request {request_id})")
            }
            ServiceError::Unauthorized(m) => (*m).to_owned(),
            other => other.to_string(),
        };
        let mut error = json!({"code": code, "message": message});
        if let ServiceError::BadRequest { field: Some(f), .. } = &self {
            error["field"] = json!(f);
        }
        let mut resp = (status, Json(json!({ "error": error }))).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// Result of a REST handler.
pub type RestResult<T> = Result<T, ServiceError>;

/// The `/v1` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/signup", post(accounts::signup))
        .route(
            "/v1/tokens",
            post(accounts::create_token).get(accounts::list_tokens),
        )
        .route("/v1/tokens/{id}", delete(accounts::delete_token))
        .route("/v1/projects", get(projects::list).post(projects::create))
        .route(
            "/v1/projects/{id}",
            get(projects::get)
                .patch(projects::patch)
                .delete(projects::delete),
        )
        .route("/v1/projects/{id}/secrets", get(projects::get_secrets))
        .route(
            "/v1/projects/{id}/secrets/rotate",
            post(projects::rotate_secret),
        )
        .route(
            "/v1/projects/{id}/api-keys",
            get(projects::list_keys).post(projects::create_key),
        )
        .route(
            "/v1/projects/{id}/api-keys/{key_id}",
            delete(projects::delete_key),
        )
        .route("/v1/projects/{id}/audit", get(projects::audit_entries))
        .route("/v1/projects/{id}/namespaces", get(namespaces::list))
        .route(
            "/v1/projects/{id}/namespaces/{name}",
            put(namespaces::put)
                .get(namespaces::get)
                .delete(namespaces::delete),
        )
        .route("/v1/projects/{id}/usage", get(usage::query))
        .route("/v1/projects/{id}/usage/live", get(usage::live))
        .route("/v1/projects/{id}/events", get(usage::events))
        .route("/v1/projects/{id}/webhooks", get(webhooks::get_deliveries))
        .route(
            "/v1/projects/{id}/webhooks/redeliver",
            post(webhooks::post_redeliver),
        )
        .route(
            "/v1/projects/{id}/consumers/{name}/outbox",
            post(consumers::post_outbox),
        )
        .route("/v1/openapi.json", get(openapi::document))
}
