//! Project pages: the list and the create form (a new project starts with the quick start's
//! namespace, [`quickstart::STARTER_NAMESPACE`]), a project's overview (endpoints and
//! quick-start snippets from [`quickstart`]) and project deletion (keys and the token secret
//! are [`super::keys`]), over [`crate::service::projects`]. Every change answers with a
//! redirect; what it has to say is a [`Flash`] for the page it lands on.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::{CsrfForm, OwnedProject};
use super::flash::{self, Flash, Shown};
use super::quickstart::{self, STARTER_NAMESPACE};
use super::session::Session;
use super::views::{when, Layout, OverviewPage, ProjectCard, ProjectsPage};
use super::{page, refusal, WebResult};
use crate::service::projects::{self, Engine, NewProject};
use crate::state::AppState;

fn respond(status: StatusCode, html: String) -> Response {
    let mut resp = page(html);
    *resp.status_mut() = status;
    resp
}

async fn projects_view(state: &AppState, session: &Session) -> WebResult<ProjectsPage> {
    let rows = projects::summaries(state, &session.account).await?;
    Ok(ProjectsPage {
        layout: Layout::of(session),
        projects: rows
            .into_iter()
            .map(|p| ProjectCard {
                id: p.id.0,
                name: p.name,
                slug: p.slug,
                status: p.status,
                engine: p.engine,
                plan: p.plan,
                created: when(&p.created_at),
                namespaces: p.namespaces,
            })
            .collect(),
        form_name: String::new(),
        form_engine: "memory".into(),
        error: None,
        notice: None,
        redis_available: projects::redis_available(state).await?,
        starter_namespace: STARTER_NAMESPACE,
    })
}

pub async fn list(State(state): State<AppState>, session: Session) -> WebResult<Response> {
    let shown = Shown::from(flash::take(&state, &session, "/projects").await?.as_ref());
    let mut v = projects_view(&state, &session).await?;
    v.notice = shown.notice;
    Ok(page(v.render()?))
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    engine: String,
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> WebResult<Response> {
    let engine = if form.engine.is_empty() {
        "memory"
    } else {
        form.engine.as_str()
    };
    let created = match Engine::parse(Some(engine)) {
        Ok(engine) => {
            let new = NewProject {
                name: form.name.clone(),
                engine,
                starter: Some((STARTER_NAMESPACE.to_owned(), quickstart::starter_options())),
            };
            projects::create(&state, &session.account, new).await
        }
        Err(e) => Err(e),
    };
    let problem = match created {
        Ok(project) => {
            let notice = format!(
                "Project created with the namespace \"{STARTER_NAMESPACE}\" for the quick start. \
                 The endpoints below are ready to use."
            );
            return flash::redirect(
                &state,
                &session,
                &format!("/projects/{}", project.id),
                Flash::notice(notice),
            )
            .await;
        }
        Err(e) => refusal(e)?.text,
    };
    let mut v = projects_view(&state, &session).await?;
    v.form_name = form.name;
    v.form_engine = engine.to_owned();
    v.error = Some(problem);
    Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, v.render()?))
}

pub async fn overview(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
) -> WebResult<Response> {
    let shown = Shown::from(
        flash::take(&state, &session, &format!("/projects/{}", p.id))
            .await?
            .as_ref(),
    );
    let project = projects::get(&state, &scope).await?;
    let running = state
        .routes
        .processes()
        .iter()
        .any(|(pid, _)| pid.as_str() == p.id);
    let idle = matches!(
        state.routes.get(&p.slug),
        Some(crate::routes::Route::Parked)
    );
    let example = quickstart::example_channel(&state, &scope).await?;
    let eps = quickstart::endpoints(&state, &p.slug);
    let snippets = quickstart::snippets(&eps[0].url, &eps[4].url, &example);
    let view = OverviewPage {
        layout: Layout::of(&session),
        tab: "overview",
        endpoints: eps,
        snippets,
        applied: project.applied_version >= project.config_version,
        running,
        idle,
        notice: shown.notice,
        delete_error: shown.error,
        example,
        starter_namespace: STARTER_NAMESPACE,
        starter_preset: quickstart::STARTER_PRESET,
        p,
    };
    Ok(page(view.render()?))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm_slug: String,
}

pub async fn delete(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> WebResult<Response> {
    if form.confirm_slug.trim() != p.slug {
        let text = if form.confirm_slug.trim().is_empty() {
            format!(
                "Nothing was deleted: type the project's slug \"{}\" to confirm.",
                p.slug
            )
        } else {
            format!(
                "Nothing was deleted: \"{}\" is not this project's slug. Type \"{}\" to confirm.",
                form.confirm_slug.trim(),
                p.slug
            )
        };
        return flash::redirect(
            &state,
            &session,
            &format!("/projects/{}#danger", p.id),
            Flash::error(text, ""),
        )
        .await;
    }
    projects::delete(&state, &scope).await?;
    tracing::info!(account = %session.account, project = %p.id, "project deleted from the dashboard");
    flash::redirect(
        &state,
        &session,
        "/projects",
        Flash::notice(format!(
            "Project \"{}\" deleted: its server is stopped and its keys, namespaces and history are gone.",
            p.name
        )),
    )
    .await
}
