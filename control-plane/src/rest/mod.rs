//! The REST API (`/v1`, JSON, Bearer management tokens) used by scripts, the Terraform
//! provider and the dashboard's JavaScript. One error type turns into one response shape:
//! `{"error": {"code", "message", "field"?}}`.

pub mod accounts;
mod auth;
pub mod consumers;
pub mod namespaces;
pub mod openapi;
pub mod projects;
pub mod usage;
pub mod util;
pub mod webhooks;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

pub use auth::Account;

/// Everything a REST call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("missing or invalid credentials")]
    Unauthorized(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The project's plan does not allow this.
    #[error("{0}")]
    PlanLimit(String),
    /// Only the operator may change this (plans, status, limits).
    #[error("{0}")]
    OperatorOnly(String),
    /// Too many failed logins or sign-ups (429 with `Retry-After`); the same for every email.
    #[error("too many attempts, try again later")]
    TooManyRequests { retry_after: std::time::Duration },
    /// Password checks are queued beyond their bound (503 with `Retry-After`).
    #[error("the service is busy, try again in a moment")]
    Busy,
    /// A server of the customer's (their database) failed or refused (502).
    #[error("{0}")]
    Upstream(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl RestError {
    /// A 400 naming the bad field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for RestError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error() {
            if db.code().as_deref() == Some("23505") {
                return Self::Conflict("already exists".into());
            }
        }
        Self::Internal(e.into())
    }
}

impl From<crate::secrets::PasswordError> for RestError {
    fn from(e: crate::secrets::PasswordError) -> Self {
        match e {
            crate::secrets::PasswordError::Busy => Self::Busy,
            other => Self::Internal(other.into()),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            RestError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            RestError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            RestError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            RestError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            RestError::PlanLimit(_) => (StatusCode::FORBIDDEN, "plan_limit"),
            RestError::OperatorOnly(_) => (StatusCode::FORBIDDEN, "operator_only"),
            RestError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            RestError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            RestError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream"),
            RestError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let retry_after = match &self {
            RestError::TooManyRequests { retry_after } => {
                Some(crate::auth_limits::retry_after_secs(*retry_after))
            }
            RestError::Busy => Some(1),
            _ => None,
        };
        let message = match &self {
            RestError::Internal(cause) => {
                let request_id = crate::ids::random_suffix(12);
                tracing::error!(%request_id, error = %cause, "request failed");
                format!("internal error (request {request_id})")
            }
            RestError::Unauthorized(m) => (*m).to_owned(),
            other => other.to_string(),
        };
        let mut error = json!({"code": code, "message": message});
        if let RestError::BadRequest { field: Some(f), .. } = &self {
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
pub type RestResult<T> = Result<T, RestError>;

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
