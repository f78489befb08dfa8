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
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ServiceError;
use crate::state::AppState;

pub(crate) use auth::{charge_write, project_param};
pub use auth::{Account, OwnedProject};

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `not_found`, `conflict`, `plan_limit`,
    /// `operator_only`, `rate_limited`, `busy`, `upstream` or `internal`.
    pub code: String,
    pub message: String,
    /// The request field at fault (bad requests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

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
        let field = match &self {
            ServiceError::BadRequest { field, .. } => field.clone(),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                field,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// Result of a REST handler.
pub type RestResult<T> = Result<T, ServiceError>;

/// Declares the `/v1` routes once: [`ROUTES`] (what the router serves, by method and path,
/// which the OpenAPI document is checked against) and [`router`] are both made from it.
macro_rules! v1_routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every `(method, path)` the REST router serves, in the order it is built.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// The `/v1` routes. No answer may be kept by a cache on the way or in a browser: they
        /// carry secrets shown once (management tokens, API keys, token secrets) and an
        /// account's own data.
        pub fn router() -> Router<AppState> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
                .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                    axum::http::header::CACHE_CONTROL,
                    axum::http::HeaderValue::from_static("no-store"),
                ))
        }
    };
}

v1_routes! {
    post "/v1/signup" => accounts::signup;
    post "/v1/tokens" => accounts::create_token;
    get "/v1/tokens" => accounts::list_tokens;
    delete "/v1/tokens/{id}" => accounts::delete_token;
    get "/v1/projects" => projects::list;
    post "/v1/projects" => projects::create;
    get "/v1/projects/{id}" => projects::get;
    patch "/v1/projects/{id}" => projects::patch;
    delete "/v1/projects/{id}" => projects::delete;
    get "/v1/projects/{id}/secrets" => projects::get_secrets;
    post "/v1/projects/{id}/secrets/rotate" => projects::rotate_secret;
    get "/v1/projects/{id}/api-keys" => projects::list_keys;
    post "/v1/projects/{id}/api-keys" => projects::create_key;
    delete "/v1/projects/{id}/api-keys/{key_id}" => projects::delete_key;
    get "/v1/projects/{id}/audit" => projects::audit_entries;
    get "/v1/projects/{id}/namespaces" => namespaces::list;
    put "/v1/projects/{id}/namespaces/{name}" => namespaces::put;
    get "/v1/projects/{id}/namespaces/{name}" => namespaces::get;
    delete "/v1/projects/{id}/namespaces/{name}" => namespaces::delete;
    get "/v1/projects/{id}/usage" => usage::query;
    get "/v1/projects/{id}/usage/live" => usage::live;
    get "/v1/projects/{id}/events" => usage::events;
    get "/v1/projects/{id}/webhooks" => webhooks::get_deliveries;
    post "/v1/projects/{id}/webhooks/redeliver" => webhooks::post_redeliver;
    post "/v1/projects/{id}/consumers/{name}/outbox" => consumers::post_outbox;
    get "/v1/openapi.json" => openapi::document;
}
