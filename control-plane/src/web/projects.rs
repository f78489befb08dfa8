//! Project pages: the list and the create form (a new project starts with the quick start's
//! namespace, [`quickstart::STARTER_NAMESPACE`]), a project's overview (endpoints and
//! quick-start snippets from [`quickstart`]) and project deletion (keys and the token secret
//! are [`super::keys`]). Every change answers with a redirect; what it has to say is a
//! [`Flash`] for the page it lands on.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::flash::{self, Flash, Shown};
use super::quickstart::{self, STARTER_NAMESPACE};
use super::session::Session;
use super::views::{when, Layout, OverviewPage, ProjectCard, ProjectHead, ProjectsPage};
use super::{page, words, WebResult};
use crate::ids::ProjectId;
use crate::rest::projects::{create_project, delete_project};
use crate::rest::util::owned_project;
use crate::rest::RestError;
use crate::state::AppState;

fn respond(status: StatusCode, html: String) -> Response {
    let mut resp = page(html);
    *resp.status_mut() = status;
    resp
}

/// The project `id` of the session's account, or 404 (also for other accounts' projects).
pub async fn head(state: &AppState, session: &Session, id: &str) -> WebResult<ProjectHead> {
    let id = owned_project(&state.pool, &session.account, id).await?;
    Ok(sqlx::query_as(
        "SELECT id, name, slug, status, plan, engine FROM projects WHERE id = $1 AND account_id = $2",
    )
    .bind(&id)
    .bind(&session.account)
    .fetch_one(&state.pool)
    .await?)
}

async fn projects_view(state: &AppState, session: &Session) -> WebResult<ProjectsPage> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        DateTime<Utc>,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.id, p.name, p.slug, p.status, p.engine, p.plan, p.created_at, \
                (SELECT count(*) FROM namespaces n WHERE n.project_id = p.id) \
         FROM projects p WHERE p.account_id = $1 ORDER BY p.created_at",
    )
    .bind(&session.account)
    .fetch_all(&state.pool)
    .await?;
    Ok(ProjectsPage {
        layout: Layout::of(session),
        projects: rows
            .into_iter()
            .map(
                |(id, name, slug, status, engine, plan, created, namespaces)| ProjectCard {
                    id,
                    name,
                    slug,
                    status,
                    engine,
                    plan,
                    created: when(&created),
                    namespaces,
                },
            )
            .collect(),
        form_name: String::new(),
        form_engine: "memory".into(),
        error: None,
        notice: None,
        redis_available: redis_available(state).await?,
        starter_namespace: STARTER_NAMESPACE,
    })
}

/// Whether Redis-engine projects can be made: the installation has a Redis or an open
/// deployment.
async fn redis_available(state: &AppState) -> Result<bool, sqlx::Error> {
    Ok(state.settings.redis_url.is_some()
        || crate::redis_deployments::any_open(&state.pool).await?)
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
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    engine: String,
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CreateForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let engine = if form.engine.is_empty() {
        "memory"
    } else {
        form.engine.as_str()
    };
    let problem = if engine == "redis" && !redis_available(&state).await? {
        Some("The Redis engine is not available on this installation.".to_owned())
    } else {
        let starter = quickstart::starter_options();
        match create_project(
            &state,
            &session.account,
            &form.name,
            Some(engine),
            Some((STARTER_NAMESPACE, &starter)),
        )
        .await
        {
            Ok(project) => {
                let id = project["id"].as_str().unwrap_or_default().to_owned();
                let notice = format!(
                    "Project created with the namespace \"{STARTER_NAMESPACE}\" for the quick start. \
                     The endpoints below are ready to use."
                );
                return flash::redirect(
                    &state,
                    &session,
                    &format!("/projects/{id}"),
                    Flash::notice(notice),
                )
                .await;
            }
            Err(RestError::BadRequest { message, .. } | RestError::PlanLimit(message)) => {
                Some(words::humanize(&message))
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut v = projects_view(&state, &session).await?;
    v.form_name = form.name;
    v.form_engine = engine.to_owned();
    v.error = problem;
    Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, v.render()?))
}

pub async fn overview(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> WebResult<Response> {
    let p = head(&state, &session, &id).await?;
    let shown = Shown::from(
        flash::take(&state, &session, &format!("/projects/{}", p.id))
            .await?
            .as_ref(),
    );
    let (config_version, applied_version): (i64, i64) =
        sqlx::query_as("SELECT config_version, applied_version FROM projects WHERE id = $1")
            .bind(&p.id)
            .fetch_one(&state.pool)
            .await?;
    let running = state
        .routes
        .processes()
        .iter()
        .any(|(pid, _)| pid.as_str() == p.id);
    let idle = matches!(
        state.routes.get(&p.slug),
        Some(crate::routes::Route::Parked)
    );
    let example = quickstart::example_channel(&state, &p.id).await?;
    let eps = quickstart::endpoints(&state, &p.slug);
    let snippets = quickstart::snippets(&eps[0].url, &eps[4].url, &example);
    let view = OverviewPage {
        layout: Layout::of(&session),
        tab: "overview",
        endpoints: eps,
        snippets,
        applied: applied_version >= config_version,
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
    csrf: String,
    #[serde(default)]
    confirm_slug: String,
}

pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
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
    delete_project(&state, &session.account, &ProjectId(p.id.clone())).await?;
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
