//! The pages anyone may open: `/`, the product page for visitors (what Rotor is, the
//! two-minute quick start with the same snippets a project's overview fills in, sign-up and
//! log-in), which sends a signed-in user on to their projects; and `/docs/api`, the REST API
//! reference rendered from the OpenAPI document.

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::views::{ApiDocsPage, HomePage, Layout};
use super::{api_docs, page, quickstart, session, WebResult};
use crate::state::AppState;

/// The project slug the front page's snippets show in place of a real one.
const EXAMPLE_SLUG: &str = "your-project";

/// `GET /`: the product page, or the projects of a signed-in user.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> WebResult<Response> {
    if session::current(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/projects").into_response());
    }
    let ws = format!(
        "{}/connection/websocket",
        state.settings.tenant_ws_base(EXAMPLE_SLUG)
    );
    let api = format!("{}/api", state.settings.tenant_http_base(EXAMPLE_SLUG));
    let example = quickstart::starter_example();
    let snippets = quickstart::snippets(&ws, &api, &example)
        .into_iter()
        .filter(|s| s.id != "snippet-python")
        .collect();
    let view = HomePage {
        layout: Layout::anonymous(),
        snippets,
        channel: example.channel,
        namespace: example.namespace,
    };
    Ok(page(view.render()?))
}

/// `GET /docs/api`: the REST API reference, in the frame of whoever looks.
pub async fn api_reference(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> WebResult<Response> {
    let layout = match session::current(&state, &headers).await? {
        Some(s) => Layout::of(&s),
        None => Layout::anonymous(),
    };
    let spec = crate::rest::openapi::spec();
    let view = ApiDocsPage {
        layout,
        base: format!("{}/v1", state.settings.public_url.trim_end_matches('/')),
        version: spec["info"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        groups: api_docs::groups(&spec),
        schemas: api_docs::schemas(&spec),
    };
    Ok(page(view.render()?))
}
