//! The dashboard: server-rendered pages (askama templates from `web/templates`) where customers
//! sign up, build projects, keys and namespaces, watch usage and try channels. Sessions live in
//! an HttpOnly cookie backed by the `sessions` table; every form carries a CSRF token. Page
//! errors are one enum turned into a page (or a redirect to the login) in one place.

mod account;
mod assets;
mod auth;
mod console;
mod namespaces;
mod projects;
pub mod session;
mod usage;
mod views;

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::rest::RestError;
use crate::state::AppState;

pub use session::PeerAddr;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No (valid) session: go to the login page and come back to `next` afterwards.
    #[error("login required")]
    LoginRequired { next: String },
    /// A form without the session's CSRF token.
    #[error("the form's security token is missing or stale")]
    Csrf,
    #[error("not found")]
    NotFound,
    /// A request the page cannot act on (a JSON endpoint's bad input).
    #[error("{0}")]
    BadRequest(String),
    /// The tenant process could not be reached (console calls).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<RestError> for WebError {
    fn from(e: RestError) -> Self {
        match e {
            RestError::NotFound => Self::NotFound,
            RestError::Internal(cause) => Self::Internal(cause),
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        Self::Internal(anyhow::anyhow!("template: {e}"))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            WebError::LoginRequired { next } => {
                let target = if next.is_empty() || next == "/" {
                    "/login".to_owned()
                } else {
                    format!("/login?next={}", urlencode(next))
                };
                return Redirect::to(&target).into_response();
            }
            WebError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form was missing its security token or it was stale. Go back, reload the page and try again.".to_owned(),
            ),
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it belongs to another account.".to_owned(),
            ),
            WebError::BadRequest(m) => (StatusCode::BAD_REQUEST, "That did not work", m.clone()),
            WebError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The project is not reachable",
                m.clone(),
            ),
            WebError::Internal(cause) => {
                let request_id = crate::ids::random_suffix(12);
                tracing::error!(%request_id, error = %cause, "dashboard request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    format!("We could not complete this request (reference {request_id})."),
                )
            }
        };
        let page = views::ErrorPage {
            layout: views::Layout::anonymous(),
            title,
            message: &message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message).into_response(),
        }
    }
}

/// Result of a page handler.
pub type WebResult<T> = Result<T, WebError>;

/// Percent-encodes a string for a query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A page response that must not be cached (it shows account data or secrets).
pub(crate) fn page(html: String) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        Html(html),
    )
        .into_response()
}

/// The dashboard routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(auth::home))
        .route("/signup", get(auth::signup_form).post(auth::signup))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/account", get(account::show))
        .route("/account/password", post(account::change_password))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/revoke", post(account::revoke_token))
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/{id}", get(projects::overview))
        .route("/projects/{id}/delete", post(projects::delete))
        .route(
            "/projects/{id}/keys",
            get(projects::keys).post(projects::create_key),
        )
        .route(
            "/projects/{id}/keys/{key_id}/revoke",
            post(projects::revoke_key),
        )
        .route(
            "/projects/{id}/secret/reveal",
            post(projects::reveal_secret),
        )
        .route(
            "/projects/{id}/secret/rotate",
            post(projects::rotate_secret),
        )
        .route(
            "/projects/{id}/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            "/projects/{id}/namespaces/{name}",
            get(namespaces::edit).post(namespaces::save),
        )
        .route(
            "/projects/{id}/namespaces/{name}/delete",
            post(namespaces::delete),
        )
        .route("/projects/{id}/usage", get(usage::show))
        .route("/projects/{id}/usage/data", get(usage::data))
        .route("/projects/{id}/console", get(console::page))
        .route("/projects/{id}/console/token", post(console::token))
        .route("/projects/{id}/console/publish", post(console::publish))
        .route("/projects/{id}/console/presence", post(console::presence))
        .route("/static/{file}", get(assets::serve))
}
