//! The dashboard's extractors, which replace the preambles its handlers used to repeat:
//! [`OwnedProject`] is the signed-in account's project named by the path (the same 404 page
//! for unknown ids and other accounts' projects), and [`CsrfForm`] is a POSTed form whose
//! `csrf` field matched the session's token before the handler runs (403 page otherwise).

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::session::Session;
use super::views::ProjectHead;
use super::WebError;
use crate::service::{projects, ProjectScope};
use crate::state::AppState;

/// A project of the signed-in account, from the path's `{id}`, with the session and what the
/// page header shows of it.
pub struct OwnedProject {
    pub session: Session,
    pub scope: ProjectScope,
    pub head: ProjectHead,
}

impl FromRequestParts<AppState> for OwnedProject {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        let raw = crate::rest::project_param(parts, state).await?;
        let scope = projects::owned(state, &session.account, &raw).await?;
        let s = projects::summary(state, &scope).await?;
        let head = ProjectHead {
            id: s.id.0,
            name: s.name,
            slug: s.slug,
            status: s.status,
            plan: s.plan,
            engine: s.engine,
        };
        Ok(Self {
            session,
            scope,
            head,
        })
    }
}

/// A form whose `csrf` field is the session's CSRF token (checked in constant time before
/// the rest is read); `T` is the rest of the form. Without a session: the login page.
pub struct CsrfForm<T>(pub T);

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct NoFields {}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let req = Request::from_parts(parts, body);
        let Form(pairs) = Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let presented = pairs
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        session
            .check_csrf(presented)
            .map_err(IntoResponse::into_response)?;
        let encoded = serde_urlencoded::to_string(&pairs).map_err(|e| {
            WebError::Internal(anyhow::anyhow!("re-encoding a form: {e}")).into_response()
        })?;
        let form = serde_urlencoded::from_str::<T>(&encoded).map_err(|e| {
            WebError::BadRequest(format!("The form could not be read: {e}.")).into_response()
        })?;
        Ok(Self(form))
    }
}
