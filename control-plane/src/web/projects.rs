//! Project pages: the list and the create form, a project's overview (endpoints and
//! quick-start snippets filled with its real values), API keys (shown once, revoked), the token
//! secret (revealed on demand, rotated after confirmation) and project deletion.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::session::Session;
use super::views::{
    when, when_opt, Endpoint, KeyRow, KeysPage, Layout, OverviewPage, ProjectCard, ProjectHead,
    ProjectsPage, Snippet,
};
use super::{page, WebError, WebResult};
use crate::ids::ProjectId;
use crate::rest::projects::{
    create_api_key, create_project, delete_project, revoke_api_key, rotate_hmac_secret,
};
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
        redis_available: state.settings.redis_url.is_some(),
    })
}

pub async fn list(State(state): State<AppState>, session: Session) -> WebResult<Response> {
    Ok(page(projects_view(&state, &session).await?.render()?))
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
    let problem = if engine == "redis" && state.settings.redis_url.is_none() {
        Some("The Redis engine is not available on this installation.".to_owned())
    } else {
        match create_project(&state, &session.account, &form.name, Some(engine)).await {
            Ok(project) => {
                let id = project["id"].as_str().unwrap_or_default().to_owned();
                return Ok(Redirect::to(&format!("/projects/{id}?created=1")).into_response());
            }
            Err(RestError::BadRequest { message, .. } | RestError::PlanLimit(message)) => {
                Some(message)
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

/// The example channel of the snippets: in the first namespace when there is one.
async fn example_channel(state: &AppState, project: &str) -> WebResult<String> {
    let ns: Option<String> = sqlx::query_scalar(
        "SELECT name FROM namespaces WHERE project_id = $1 ORDER BY created_at LIMIT 1",
    )
    .bind(project)
    .fetch_optional(&state.pool)
    .await?;
    Ok(ns
        .map(|n| format!("{n}:lobby"))
        .unwrap_or_else(|| "lobby".into()))
}

fn endpoints(state: &AppState, slug: &str) -> Vec<Endpoint> {
    let http = state.settings.tenant_http_base(slug);
    let ws = state.settings.tenant_ws_base(slug);
    vec![
        Endpoint {
            label: "WebSocket",
            url: format!("{ws}/connection/websocket"),
            help: "Bidirectional client connections (centrifuge-js, centrifuge-python, …), JSON or Protobuf.",
        },
        Endpoint {
            label: "SSE",
            url: format!("{http}/connection/sse"),
            help: "Server-Sent Events fallback (with the emulation endpoint for commands).",
        },
        Endpoint {
            label: "HTTP streaming",
            url: format!("{http}/connection/http_stream"),
            help: "HTTP-streaming fallback for browsers without WebSocket.",
        },
        Endpoint {
            label: "Uni SSE",
            url: format!("{http}/connection/uni_sse"),
            help: "Follow channels with a plain EventSource and a token.",
        },
        Endpoint {
            label: "Server API",
            url: format!("{http}/api"),
            help: "POST /api/publish, /api/broadcast, /api/presence, … with an X-API-Key header.",
        },
    ]
}

fn snippets(ws_url: &str, api_url: &str, channel: &str) -> Vec<Snippet> {
    vec![
        Snippet {
            id: "snippet-js",
            title: "Connect and subscribe (browser, centrifuge-js)",
            code: format!(
                "import {{ Centrifuge }} from 'centrifuge';\n\n\
                 const client = new Centrifuge('{ws_url}', {{\n  \
                 // A connection token minted by your backend (see below).\n  \
                 getToken: () => fetch('/rotor-token').then((r) => r.text()),\n}});\n\n\
                 const sub = client.newSubscription('{channel}');\n\
                 sub.on('publication', (ctx) => console.log('message', ctx.data));\n\
                 sub.subscribe();\n\
                 client.connect();\n"
            ),
        },
        Snippet {
            id: "snippet-node",
            title: "Mint a connection token (Node.js, jsonwebtoken)",
            code: "import jwt from 'jsonwebtoken';\n\n\
                   // ROTOR_TOKEN_SECRET is this project's token secret (Keys & secret tab).\n\
                   const token = jwt.sign({ sub: user.id }, process.env.ROTOR_TOKEN_SECRET, {\n  \
                   algorithm: 'HS256',\n  expiresIn: '1h',\n});\n"
                .to_owned(),
        },
        Snippet {
            id: "snippet-python",
            title: "Mint a connection token (Python, PyJWT)",
            code: "import os, time, jwt\n\n\
                   token = jwt.encode(\n    \
                   {\"sub\": user_id, \"exp\": int(time.time()) + 3600},\n    \
                   os.environ[\"ROTOR_TOKEN_SECRET\"],\n    algorithm=\"HS256\",\n)\n"
                .to_owned(),
        },
        Snippet {
            id: "snippet-curl",
            title: "Publish from your server (curl)",
            code: format!(
                "curl -sS -X POST '{api_url}/publish' \\\n  \
                 -H \"X-API-Key: $ROTOR_API_KEY\" \\\n  \
                 -H 'Content-Type: application/json' \\\n  \
                 -d '{{\"channel\": \"{channel}\", \"data\": {{\"text\": \"hello\"}}}}'\n"
            ),
        },
    ]
}

#[derive(Deserialize, Default)]
pub struct OverviewQuery {
    #[serde(default)]
    created: Option<String>,
}

pub async fn overview(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<OverviewQuery>,
) -> WebResult<Response> {
    let p = head(&state, &session, &id).await?;
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
    let channel = example_channel(&state, &p.id).await?;
    let eps = endpoints(&state, &p.slug);
    let snippets = snippets(&eps[0].url, &eps[4].url, &channel);
    let view = OverviewPage {
        layout: Layout::of(&session),
        tab: "overview",
        endpoints: eps,
        snippets,
        applied: applied_version >= config_version,
        running,
        error: q.created.map(|_| {
            "Project created. It starts in a moment; the endpoints below are ready to use.".into()
        }),
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
        return Err(WebError::BadRequest(format!(
            "To delete the project, type its slug \"{}\" to confirm.",
            p.slug
        )));
    }
    delete_project(&state, &session.account, &ProjectId(p.id.clone())).await?;
    tracing::info!(account = %session.account, project = %p.id, "project deleted from the dashboard");
    Ok(Redirect::to("/projects").into_response())
}

async fn keys_view(state: &AppState, session: &Session, p: ProjectHead) -> WebResult<KeysPage> {
    type Row = (String, String, DateTime<Utc>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, created_at, last_used_at FROM api_keys WHERE project_id = $1 ORDER BY created_at",
    )
    .bind(&p.id)
    .fetch_all(&state.pool)
    .await?;
    let rotated: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT rotated_at FROM token_secrets WHERE project_id = $1")
            .bind(&p.id)
            .fetch_optional(&state.pool)
            .await?
            .flatten();
    Ok(KeysPage {
        layout: Layout::of(session),
        tab: "keys",
        keys: rows
            .into_iter()
            .map(|(id, name, created, used)| KeyRow {
                id,
                name,
                created: when(&created),
                last_used: when_opt(&used),
            })
            .collect(),
        new_key: None,
        secret: None,
        rotated_at: when_opt(&rotated),
        form_name: String::new(),
        error: None,
        notice: None,
        p,
    })
}

pub async fn keys(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> WebResult<Response> {
    let p = head(&state, &session, &id).await?;
    Ok(page(keys_view(&state, &session, p).await?.render()?))
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<KeyForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    let project = ProjectId(p.id.clone());
    match create_api_key(&state, &session.account, &project, &form.name).await {
        Ok(created) => {
            let mut v = keys_view(&state, &session, p).await?;
            v.new_key = Some((
                created["name"].as_str().unwrap_or_default().to_owned(),
                created["key"].as_str().unwrap_or_default().to_owned(),
            ));
            Ok(respond(StatusCode::CREATED, v.render()?))
        }
        Err(RestError::BadRequest { message, .. } | RestError::PlanLimit(message)) => {
            let mut v = keys_view(&state, &session, p).await?;
            v.error = Some(message);
            v.form_name = form.name;
            Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, v.render()?))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn revoke_key(
    State(state): State<AppState>,
    session: Session,
    Path((id, key_id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    revoke_api_key(&state, &session.account, &ProjectId(p.id.clone()), &key_id).await?;
    let mut v = keys_view(&state, &session, p).await?;
    v.notice = Some("Key revoked. Requests using it are refused from now on.".into());
    Ok(page(v.render()?))
}

pub async fn reveal_secret(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    let secret = crate::secret_store::token_secret_of(&state.pool, &ProjectId(p.id.clone()))
        .await
        .map_err(RestError::from)?;
    let mut v = keys_view(&state, &session, p).await?;
    v.secret = Some(secret);
    Ok(page(v.render()?))
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    grace: String,
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RotateForm>,
) -> WebResult<Response> {
    session.check_csrf(&form.csrf)?;
    let p = head(&state, &session, &id).await?;
    if form.confirm.is_none() {
        let mut v = keys_view(&state, &session, p).await?;
        v.error = Some("Tick the confirmation box to rotate the secret.".into());
        return Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, v.render()?));
    }
    let grace: u32 = match form.grace.trim() {
        "" | "0" => 0,
        "1h" => 3600,
        "24h" => 86_400,
        _ => return Err(WebError::BadRequest("unknown grace period".into())),
    };
    let secret =
        rotate_hmac_secret(&state, &session.account, &ProjectId(p.id.clone()), grace).await?;
    tracing::info!(account = %session.account, project = %p.id, grace, "token secret rotated from the dashboard");
    let mut v = keys_view(&state, &session, p).await?;
    v.secret = Some(secret);
    v.notice = Some(if grace > 0 {
        "Secret rotated. Tokens signed with the old secret keep working during the grace period."
            .into()
    } else {
        "Secret rotated. Tokens signed with the old secret no longer work.".into()
    });
    Ok(page(v.render()?))
}
