//! The control plane's own HTTP app (everything on the public listener that is not a tenant's
//! `/t/{slug}/…` traffic): REST API, dashboard, health; unknown addresses get the REST API's
//! JSON 404 under `/v1` and the dashboard's page elsewhere.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

/// The app served for non-tenant paths.
pub fn public_app(state: AppState) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .merge(crate::rest::router())
        .merge(crate::web::router())
        .route(
            "/t/{*rest}",
            axum::routing::any(tenant_on_reused_connection),
        )
        .fallback(crate::web::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::web::error_pages,
        ))
        .with_state(state)
}

/// A tenant request that arrived on a keep-alive connection the edge already gave to the
/// control plane: send the client around once more on a fresh connection, where the edge
/// routes it to the tenant.
async fn tenant_on_reused_connection(uri: Uri) -> Response {
    let location = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    (
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, location),
            (header::CONNECTION, "close".to_owned()),
        ],
    )
        .into_response()
}
