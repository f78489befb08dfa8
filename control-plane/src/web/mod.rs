//! The dashboard: server-rendered pages (askama templates from `web/templates`) where visitors
//! meet Rotor (the front page, the REST API reference), customers sign up (and reset a
//! forgotten password by mail), build projects, keys and namespaces, watch usage and try channels. Sessions live in
//! an HttpOnly cookie backed by the `sessions` table; every form carries a CSRF token and every
//! change answers with a redirect (POST/redirect/GET, one-time messages in [`flash`]). Page
//! errors are one enum turned into a branded page (or a redirect to the login) in one place:
//! [`WebError`]'s `IntoResponse` says what to show, [`error_pages`] renders it in the frame of
//! whoever is looking (signed in or not), also for unknown addresses and wrong methods.

mod account;
mod api_docs;
mod assets;
mod audit;
mod auth;
mod console;
mod consumers;
pub mod extract;
pub mod flash;
mod front;
mod keys;
mod namespaces;
mod password;
mod projects;
mod quickstart;
pub mod session;
mod settings;
mod usage;
mod views;
mod webhooks;
mod words;

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::service::ServiceError;
use crate::state::AppState;

pub use session::PeerAddr;

/// Why a page could not be shown. The service's errors become one of these in one place
/// (`From<ServiceError>`), or a [`Refusal`] shown on the form ([`refusal`]).
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
    /// A method the address does not take (a form's action opened some other way).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A request the page cannot act on (a JSON endpoint's bad input).
    #[error("{0}")]
    BadRequest(String),
    /// The tenant process could not be reached (console calls).
    #[error("{0}")]
    Unavailable(String),
    /// The account spent its budget of changes ([`crate::write_limits`]); seconds to wait.
    #[error("too many changes, try again in {0} s")]
    TooManyChanges(u64),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<ServiceError> for WebError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound => Self::NotFound,
            ServiceError::Internal(cause) => Self::Internal(cause),
            ServiceError::TooManyRequests { retry_after } => {
                Self::TooManyChanges(crate::auth_limits::retry_after_secs(retry_after))
            }
            ServiceError::BadRequest { message, .. } | ServiceError::PlanLimit(message) => {
                Self::BadRequest(words::humanize(&message))
            }
            other => Self::BadRequest(words::humanize(&other.to_string())),
        }
    }
}

/// A refused change the visitor can fix (bad input, a plan limit, a name taken), in the
/// dashboard's words: what a form shows inline or a [`flash::Flash`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The field the service named, if any (`history_ttl`, `settings.proxies…`).
    pub field: Option<String>,
    /// The service's message with option names as the forms label them.
    pub text: String,
}

impl Refusal {
    /// The text as a sentence: its first letter capitalised.
    pub fn sentence(&self) -> String {
        let mut text = self.text.clone();
        if let Some(first) = text.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        text
    }
}

/// How the service's errors reach a dashboard form: the visitor's mistakes become a
/// [`Refusal`] to show; anything else is an error page ([`WebError`]).
pub fn refusal(e: ServiceError) -> Result<Refusal, WebError> {
    match e {
        ServiceError::BadRequest { field, message } => Ok(Refusal {
            field,
            text: words::humanize(&message),
        }),
        ServiceError::PlanLimit(message) | ServiceError::Conflict(message) => Ok(Refusal {
            field: None,
            text: words::humanize(&message),
        }),
        other => Err(other.into()),
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

/// An error page to render: attached to the response by [`WebError`], rendered by
/// [`error_pages`] once the viewer's session is known.
#[derive(Debug, Clone)]
struct ErrorView {
    title: &'static str,
    message: String,
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
                "The form was missing its security token or it was stale, so nothing was changed. Go back, reload the page and try again.".to_owned(),
            ),
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing at this address, or it belongs to another account. Check the link, or start again from your projects.".to_owned(),
            ),
            WebError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "This address is not a page",
                "It is where one of the dashboard's forms sends its changes; opening it some other way does nothing. Go back to the page the form is on.".to_owned(),
            ),
            WebError::BadRequest(m) => (StatusCode::BAD_REQUEST, "That did not work", m.clone()),
            WebError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The project is not reachable",
                m.clone(),
            ),
            WebError::TooManyChanges(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many changes at once",
                format!("This account made more changes in a short time than the dashboard and API take. Nothing was changed; try again in {secs} seconds."),
            ),
            WebError::Internal(cause) => {
                let request_id = crate::ids::random_suffix(12);
                tracing::error!(%request_id, error = %cause, "dashboard request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    format!("We could not complete this request (reference {request_id}). Try again in a moment."),
                )
            }
        };
        // Rendered here without a header (safe on its own); [`error_pages`] renders it again
        // in the viewer's frame.
        let anonymous = views::ErrorPage {
            layout: views::Layout::anonymous(),
            title,
            message: &message,
            signed_in: false,
        };
        let mut resp = match anonymous.render() {
            Ok(html) => page(html),
            Err(_) => message.clone().into_response(),
        };
        *resp.status_mut() = status;
        if let WebError::TooManyChanges(secs) = &self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(*secs));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            resp.headers_mut().insert(
                header::ALLOW,
                header::HeaderValue::from_static("GET, HEAD, POST"),
            );
        }
        resp.extensions_mut().insert(ErrorView { title, message });
        resp
    }
}

/// Renders the error pages [`WebError`] asks for, in the frame of the viewer: with the
/// signed-in header and its links when the request carries a live session.
pub async fn error_pages(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let cookies: HeaderMap = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .map(|v| (header::COOKIE, v.clone()))
        .collect();
    let mut resp = next.run(req).await;
    let Some(view) = resp.extensions_mut().remove::<ErrorView>() else {
        return resp;
    };
    let session = session::current(&state, &cookies).await.ok().flatten();
    let signed_in = session.is_some();
    let page_view = views::ErrorPage {
        layout: session
            .as_ref()
            .map(views::Layout::of)
            .unwrap_or_else(views::Layout::anonymous),
        title: view.title,
        message: &view.message,
        signed_in,
    };
    match page_view.render() {
        Ok(html) => {
            let status = resp.status();
            let mut fresh = page(html);
            *fresh.status_mut() = status;
            for name in [header::ALLOW, header::RETRY_AFTER] {
                if let Some(value) = resp.headers().get(&name).cloned() {
                    fresh.headers_mut().insert(name, value);
                }
            }
            fresh
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering an error page");
            resp
        }
    }
}

/// What the public app answers for an address nothing else takes: the REST API's JSON 404
/// under `/v1`, the dashboard's page everywhere else.
pub async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if path == "/v1" || path.starts_with("/v1/") {
        ServiceError::NotFound.into_response()
    } else {
        WebError::NotFound.into_response()
    }
}

async fn method_not_allowed() -> WebError {
    WebError::MethodNotAllowed
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

/// A GET on a form's action address: back to the page the form is on (the address a browser
/// is left at when a form's answer was not a redirect, or a bookmark of one).
fn back_to(page: fn(&[String]) -> String) -> axum::routing::MethodRouter<AppState> {
    get(
        move |axum::extract::Path(parts): axum::extract::Path<Vec<(String, String)>>| async move {
            let values: Vec<String> = parts.into_iter().map(|(_, v)| urlencode(&v)).collect();
            Redirect::to(&page(&values))
        },
    )
}

fn project_page(p: &[String]) -> String {
    format!("/projects/{}", p[0])
}

fn keys_page(p: &[String]) -> String {
    format!("/projects/{}/keys", p[0])
}

fn settings_page(p: &[String]) -> String {
    format!("/projects/{}/settings", p[0])
}

fn account_page(_: &[String]) -> String {
    "/account".to_owned()
}

/// The dashboard routes. Every POST answers with a redirect or, for a form with mistakes, the
/// form again; a GET on a POST-only address goes back to its page; other methods get the
/// branded 405 page.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(front::home))
        .route("/docs/api", get(front::api_reference))
        .route("/signup", get(auth::signup_form).post(auth::signup))
        .route("/login", get(auth::login_form).post(auth::login))
        .route(
            "/password/forgot",
            get(password::forgot_form).post(password::forgot),
        )
        .route("/password/forgot/sent", get(password::sent))
        .route(
            "/password/reset/{token}",
            get(password::reset_form).post(password::reset),
        )
        .route("/logout", back_to(|_| "/".to_owned()).post(auth::logout))
        .route("/account", get(account::show))
        .route("/account/audit", get(audit::account))
        .route(
            "/account/password",
            back_to(account_page).post(account::change_password),
        )
        .route(
            "/account/tokens",
            back_to(account_page).post(account::create_token),
        )
        .route(
            "/account/tokens/{id}/revoke",
            get(account::revoke_confirm).post(account::revoke_token),
        )
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/{id}", get(projects::overview))
        .route(
            "/projects/{id}/delete",
            back_to(project_page).post(projects::delete),
        )
        .route(
            "/projects/{id}/keys",
            get(keys::keys).post(keys::create_key),
        )
        .route(
            "/projects/{id}/keys/{key_id}/revoke",
            get(keys::revoke_confirm).post(keys::revoke_key),
        )
        .route(
            "/projects/{id}/secret/reveal",
            back_to(keys_page).post(keys::reveal_secret),
        )
        .route(
            "/projects/{id}/secret/rotate",
            back_to(keys_page).post(keys::rotate_secret),
        )
        .route(
            "/projects/{id}/settings",
            get(settings::show).post(settings::save),
        )
        .route(
            "/projects/{id}/settings/test/{proxy}",
            back_to(settings_page).post(settings::test),
        )
        .route(
            "/projects/{id}/settings/webhooks/redeliver",
            back_to(settings_page).post(webhooks::redeliver),
        )
        .route(
            "/projects/{id}/settings/consumers/outbox",
            back_to(settings_page).post(consumers::outbox),
        )
        .route(
            "/projects/{id}/settings/consumers",
            back_to(settings_page).post(consumers::edit),
        )
        .route("/projects/{id}/audit", get(audit::show))
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
            get(namespaces::delete_confirm).post(namespaces::delete),
        )
        .route("/projects/{id}/usage", get(usage::show))
        .route("/projects/{id}/usage/data", get(usage::data))
        .route("/projects/{id}/console", get(console::page))
        .route("/projects/{id}/console/token", post(console::token))
        .route("/projects/{id}/console/publish", post(console::publish))
        .route("/projects/{id}/console/presence", post(console::presence))
        .route("/projects/{id}/console/history", post(console::history))
        .route("/static/{file}", get(assets::serve))
        .method_not_allowed_fallback(method_not_allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visitors_mistakes_become_refusals_in_the_dashboards_words_and_the_rest_pages() {
        let r = refusal(ServiceError::field("history_ttl", "must be at least 1s")).unwrap();
        assert_eq!(r.field.as_deref(), Some("history_ttl"));
        assert_eq!(r.text, "must be at least 1s");
        assert_eq!(r.sentence(), "Must be at least 1s");
        let limit = "your plan (free) allows at most 5 API keys per project (max_api_keys)";
        let r = refusal(ServiceError::PlanLimit(limit.into())).unwrap();
        assert_eq!(r.field, None);
        assert!(
            r.text.starts_with("your plan (free) allows at most 5"),
            "{}",
            r.text
        );
        assert!(refusal(ServiceError::Conflict("taken".into())).is_ok());
        assert!(matches!(
            refusal(ServiceError::NotFound),
            Err(WebError::NotFound)
        ));
        assert!(matches!(
            refusal(ServiceError::Internal(anyhow::anyhow!("db down"))),
            Err(WebError::Internal(_))
        ));
    }
}
