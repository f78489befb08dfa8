//! The server HTTP API (`POST /api/{method}` and the legacy `POST /api` line protocol),
//! compatible with Centrifugo's: request and reply JSON as Centrifugo's, `X-API-Key` /
//! `Authorization: apikey …` / `?api_key=` authentication, and the same error modes.
//!
//! A key's scope ([`ApiKeyScope`]) limits the methods it may call: a method outside it
//! answers error 103 (permission denied) like any other API error — in the body with 200, or
//! with 403 in transport error mode (Centrifugo's server API never returns 103, so its table
//! has no entry for it; 403 is the status that says what happened). Inside `batch` each
//! command is checked on its own.

mod methods;
mod requests;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::auth::apikey::presented_key;
use crate::node::Node;
use crate::protocol::ClientError;
use rotor_tenant_config::ApiKeyScope;

pub use methods::METHODS;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A Centrifugo error code, answered in the body (200 unless transport error mode).
    #[error("{0}")]
    Client(ClientError),
    /// The request could not be read (400, plain text).
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// Every error with a protocol form (engine failures through their one mapping) answers as it.
impl<E: Into<ClientError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self::Client(e.into())
    }
}

/// The error object of a reply.
pub(crate) fn error_json(e: &ClientError) -> Value {
    json!({"code": e.code, "message": e.message})
}

/// HTTP status of an error code in transport error mode.
fn transport_status(code: u32) -> StatusCode {
    match code {
        102 | 104 => StatusCode::NOT_FOUND,
        103 => StatusCode::FORBIDDEN,
        107 | 108 => StatusCode::BAD_REQUEST,
        112 => StatusCode::RANGE_NOT_SATISFIABLE,
        113 => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// API routes.
pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/api", post(legacy))
        .route("/api/{method}", post(call))
}

/// The scope of the key the request presents, or `None` when it presents no valid key
/// (`http_api.insecure` admits every request with every method).
fn authorised(node: &Node, headers: &HeaderMap, query: Option<&str>) -> Option<ApiKeyScope> {
    let config = node.config.load();
    if config.tenant.http_api.insecure {
        return Some(ApiKeyScope::All);
    }
    presented_key(headers, query).and_then(|k| config.api_keys.check(&k))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The body as JSON text, checked to be one JSON object.
fn parse_body(body: &[u8]) -> Result<&str, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("empty request body".into()));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("request body is not UTF-8".into()))?;
    let object: Result<std::collections::HashMap<String, serde::de::IgnoredAny>, _> =
        serde_json::from_str(text);
    object.map_err(|e| ApiError::BadRequest(format!("request body must be a JSON object: {e}")))?;
    Ok(text)
}

async fn call(
    State(node): State<Arc<Node>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !METHODS.contains(&method.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(scope) = authorised(&node, &headers, query.as_deref()) else {
        tracing::info!(%method, "API call refused: missing or wrong key");
        return StatusCode::UNAUTHORIZED.into_response();
    };
    node.metrics.api_calls.inc(method.as_str());
    let transport_mode = headers
        .get("x-centrifugo-error-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("transport"))
        || node.config.load().tenant.http_api.error_mode == "transport";
    let started = std::time::Instant::now();
    let result = match parse_body(&body) {
        Ok(_) if method != "batch" && !scope.allows(&method) => {
            tracing::info!(%method, scope = scope.as_str(), "API call outside the key's scope");
            Err(ApiError::Client(ClientError::PERMISSION_DENIED))
        }
        Ok(params) => methods::execute(&node, scope, &method, params).await,
        Err(e) => Err(e),
    };
    node.metrics
        .centrifugo
        .api_command(&method, started.elapsed());
    match result {
        Ok(value) if method == "batch" => json_response(StatusCode::OK, &value),
        Ok(value) => json_response(StatusCode::OK, &json!({"result": value})),
        Err(ApiError::BadRequest(reason)) => {
            tracing::info!(%method, %reason, "API call refused");
            (StatusCode::BAD_REQUEST, reason).into_response()
        }
        Err(ApiError::Client(e)) => {
            node.metrics.client_errors.inc(e.code.to_string());
            if transport_mode {
                json_response(transport_status(e.code), &error_json(&e))
            } else {
                json_response(StatusCode::OK, &json!({"error": error_json(&e)}))
            }
        }
    }
}

/// Runs one API method for a trusted internal caller (the admin surface: the control plane's
/// dashboard console). Same validation and accounting as `/api/{method}`; the reply is the
/// usual `{"result": …}` or `{"error": …}` object.
pub async fn call_internal(node: &Node, method: &str, body: &[u8]) -> Result<Value, ApiError> {
    if !METHODS.contains(&method) || method == "batch" {
        return Err(ApiError::Client(ClientError::METHOD_NOT_FOUND));
    }
    node.metrics.api_calls.inc(method);
    let params = parse_body(body)?;
    match methods::execute(node, ApiKeyScope::All, method, params).await {
        Ok(v) => Ok(json!({"result": v})),
        Err(ApiError::Client(e)) => {
            node.metrics.client_errors.inc(e.code.to_string());
            Ok(json!({"error": error_json(&e)}))
        }
        Err(e) => Err(e),
    }
}

/// Runs one API method for another front end of the same API (the gRPC server API, see
/// [`crate::grpc_api`]): `params` is the method's JSON request, as `/api/{method}` takes it.
/// The key's `scope` is checked as here (a `batch` checks each of its commands), and the call
/// is counted in the same metrics. A request the executor cannot read is error 107 (bad
/// request), as in the legacy line protocol and inside `batch`.
pub(crate) async fn call_scoped(
    node: &Node,
    scope: ApiKeyScope,
    method: &str,
    params: &str,
) -> Result<Value, ClientError> {
    if !METHODS.contains(&method) {
        return Err(ClientError::METHOD_NOT_FOUND);
    }
    node.metrics.api_calls.inc(method);
    let started = std::time::Instant::now();
    let result = if method != "batch" && !scope.allows(method) {
        tracing::info!(%method, scope = scope.as_str(), "API call outside the key's scope");
        Err(ApiError::Client(ClientError::PERMISSION_DENIED))
    } else {
        methods::execute(node, scope, method, params).await
    };
    node.metrics
        .centrifugo
        .api_command(method, started.elapsed());
    let result = result.map_err(|e| match e {
        ApiError::Client(e) => e,
        ApiError::BadRequest(m) => ClientError::BAD_REQUEST.with_message(m),
    });
    if let Err(e) = &result {
        node.metrics.client_errors.inc(e.code.to_string());
    }
    result
}

/// Legacy form: newline-delimited `{"method": …, "params": {…}}`, one reply line each.
async fn legacy(
    State(node): State<Arc<Node>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(scope) = authorised(&node, &headers, query.as_deref()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return (StatusCode::BAD_REQUEST, "empty request body").into_response();
    }
    let mut out = String::new();
    for line in body.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let cmd: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")).into_response()
            }
        };
        let method = cmd
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let params = cmd
            .get("params")
            .cloned()
            .unwrap_or_else(|| json!({}))
            .to_string();
        let reply = if !METHODS.contains(&method.as_str()) || method == "batch" {
            json!({"error": error_json(&ClientError::METHOD_NOT_FOUND)})
        } else if !scope.allows(&method) {
            json!({"error": error_json(&ClientError::PERMISSION_DENIED)})
        } else {
            node.metrics.api_calls.inc(method.as_str());
            let started = std::time::Instant::now();
            let result = methods::execute(&node, scope, &method, &params).await;
            node.metrics
                .centrifugo
                .api_command(&method, started.elapsed());
            match result {
                Ok(v) => json!({"result": v}),
                Err(ApiError::Client(e)) => json!({"error": error_json(&e)}),
                Err(ApiError::BadRequest(m)) => {
                    json!({"error": error_json(&ClientError::BAD_REQUEST.with_message(m))})
                }
            }
        };
        out.push_str(&reply.to_string());
        out.push('\n');
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response()
}
