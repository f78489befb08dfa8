//! The debug console: a page that connects to the project from the browser over the real
//! client protocol (with short-lived tokens minted here from the project's secret), plus
//! server-side publish, presence and history calls run on the tenant through its admin surface,
//! so the console works whatever the namespace lets clients do. The page also carries what the
//! console needs to explain a refusal in the dashboard's words: the project's namespaces and the
//! labels of the options that would change what they allow.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::OwnedProject;
use super::views::{ConsolePage, Layout};
use super::words::label_of;
use super::{page as html_page, WebResult};
use crate::service::ProjectScope;
use crate::state::AppState;

/// How long console tokens live; the console asks for new ones when it reconnects.
const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Bound on a console call to the tenant.
const TENANT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The project's process record, when it has a process.
pub(super) fn running(state: &AppState, project: &str) -> Option<crate::supervisor::ProcessRecord> {
    state
        .routes
        .processes()
        .into_iter()
        .find(|(id, _)| id.as_str() == project)
        .map(|(_, r)| r)
}

pub async fn page(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
) -> WebResult<Response> {
    // The quick start's channel, so what the console shows working is what the snippets do.
    let example = super::quickstart::example_channel(&state, &scope).await?;
    let hints = hints(&state, &scope).await?.to_string();
    let view = ConsolePage {
        layout: Layout::of(&session),
        tab: "console",
        hints,
        ws_url: format!(
            "{}/connection/websocket",
            state.settings.tenant_ws_base(&p.slug)
        ),
        channel: example.channel,
        running: running(&state, &p.id).is_some(),
        p,
    };
    Ok(html_page(view.render()?))
}

/// What the console's refusal hints need: each namespace with its editor's address (a 102 on
/// a namespace not listed here means it does not exist), and the labels of the options a hint
/// names, as the namespace editor shows them.
async fn hints(state: &AppState, project: &ProjectScope) -> WebResult<Value> {
    let names = crate::service::namespaces::list(state, project).await?;
    let base = format!("/projects/{}/namespaces", project.id());
    let namespaces: serde_json::Map<String, Value> = names
        .into_iter()
        .map(|ns| ns.name)
        .map(|name| {
            let url = format!("{base}/{}", super::urlencode(&name));
            (name, json!({ "url": url }))
        })
        .collect();
    Ok(json!({
        "namespaces_url": base,
        "namespaces": namespaces,
        "labels": {
            "subscribe": label_of("allow_subscribe_for_client"),
            "history_size": label_of("history_size"),
            "history_ttl": label_of("history_ttl"),
        },
    }))
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"message": message.into()}}))).into_response()
}

/// A channel name the console may ask about: non-empty, bounded, no control characters. Gives
/// the 400 answer for any other.
fn channel_rejection(channel: &str) -> Option<Response> {
    (channel.is_empty() || channel.len() > 255 || channel.chars().any(char::is_control)).then(
        || {
            json_error(
                StatusCode::BAD_REQUEST,
                "a channel name of 1 to 255 printable characters is required",
            )
        },
    )
}

#[derive(Deserialize, Default)]
pub struct TokenRequest {
    #[serde(default)]
    channel: Option<String>,
}

/// Mints a connection token (and a subscription token for `channel`) for the console's user.
pub async fn token(
    State(state): State<AppState>,
    OwnedProject { session, scope, .. }: OwnedProject,
    headers: HeaderMap,
    body: Option<Json<TokenRequest>>,
) -> WebResult<Response> {
    session.check_csrf_header(&headers)?;
    let secret = crate::service::keys::token_secret(&state, &scope).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = now + TOKEN_TTL.as_secs();
    let user = format!(
        "dashboard-{}",
        session.account.as_str().trim_start_matches("acc_")
    );
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let sign = |claims: Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
            .map_err(|e| anyhow::anyhow!("signing a console token: {e}"))
    };
    let mut reply = json!({
        "user": user,
        "expires_in": TOKEN_TTL.as_secs(),
        "token": sign(json!({"sub": user, "exp": exp, "info": {"name": "Rotor dashboard console"}}))?,
    });
    if let Some(channel) = body.and_then(|b| b.0.channel) {
        if let Some(resp) = channel_rejection(&channel) {
            return Ok(resp);
        }
        reply["sub_token"] = json!(sign(json!({"sub": user, "channel": channel, "exp": exp}))?);
    }
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(reply),
    )
        .into_response())
}

/// Runs one server API method on the tenant.
async fn tenant_call(state: &AppState, project: &str, method: &str, params: Value) -> Response {
    let Some(record) = running(state, project) else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the project is not running yet; try again in a moment",
        );
    };
    let call = crate::probe::direct_client()
        .post(format!("{}/admin/api/{method}", record.admin_base()))
        .bearer_auth(&record.admin_token)
        .timeout(TENANT_CALL_TIMEOUT)
        .json(&params)
        .send()
        .await;
    match call {
        Ok(resp) if resp.status().is_success() => match resp.json::<Value>().await {
            Ok(v) => Json(v).into_response(),
            Err(e) => json_error(StatusCode::BAD_GATEWAY, format!("unreadable reply: {e}")),
        },
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            json_error(
                StatusCode::BAD_GATEWAY,
                format!("the project refused the call ({status}): {text}"),
            )
        }
        Err(e) => {
            tracing::warn!(%project, %method, error = %e, "console call to tenant failed");
            json_error(StatusCode::BAD_GATEWAY, "the project did not answer")
        }
    }
}

#[derive(Deserialize)]
pub struct PublishRequest {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    data: Option<Value>,
}

pub async fn publish(
    State(state): State<AppState>,
    OwnedProject {
        session, head: p, ..
    }: OwnedProject,
    headers: HeaderMap,
    Json(body): Json<PublishRequest>,
) -> WebResult<Response> {
    session.check_csrf_header(&headers)?;
    if let Some(resp) = channel_rejection(&body.channel) {
        return Ok(resp);
    }
    let Some(data) = body.data else {
        return Ok(json_error(
            StatusCode::BAD_REQUEST,
            "data (any JSON value) is required",
        ));
    };
    Ok(tenant_call(
        &state,
        &p.id,
        "publish",
        json!({"channel": body.channel, "data": data}),
    )
    .await)
}

#[derive(Deserialize)]
pub struct PresenceRequest {
    #[serde(default)]
    channel: String,
}

pub async fn presence(
    State(state): State<AppState>,
    OwnedProject {
        session, head: p, ..
    }: OwnedProject,
    headers: HeaderMap,
    Json(body): Json<PresenceRequest>,
) -> WebResult<Response> {
    session.check_csrf_header(&headers)?;
    if let Some(resp) = channel_rejection(&body.channel) {
        return Ok(resp);
    }
    Ok(tenant_call(&state, &p.id, "presence", json!({"channel": body.channel})).await)
}

#[derive(Deserialize)]
pub struct HistoryRequest {
    #[serde(default)]
    channel: String,
}

/// How many publications the console's history view shows, newest first.
const HISTORY_LIMIT: i32 = 20;

/// The channel's newest publications, read on the tenant with the project's own authority
/// (what the server API's `history` answers), so a namespace need not let clients read it.
pub async fn history(
    State(state): State<AppState>,
    OwnedProject {
        session, head: p, ..
    }: OwnedProject,
    headers: HeaderMap,
    Json(body): Json<HistoryRequest>,
) -> WebResult<Response> {
    session.check_csrf_header(&headers)?;
    if let Some(resp) = channel_rejection(&body.channel) {
        return Ok(resp);
    }
    Ok(tenant_call(
        &state,
        &p.id,
        "history",
        json!({"channel": body.channel, "limit": HISTORY_LIMIT, "reverse": true}),
    )
    .await)
}
