//! A project's webhook deliveries, read from and acted on in its running process (the tenant's
//! admin surface, with the node's admin token): `GET /v1/projects/{id}/webhooks` (events
//! waiting, the failures it gave up on) and `POST /v1/projects/{id}/webhooks/redeliver`
//! (`{"webhook_id": "…"}` or `{"all": true}`: send failures again, with their webhook ids,
//! signed with the current secret). Only the owner reaches a project's process: the project
//! is looked up by account first, and the id sent on is checked and sent as JSON. Shared with
//! the dashboard's deliveries card.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::util::audit;
use super::{OwnedProject, RestResult};
use crate::ids::{AccountId, ProjectId};
use crate::service::ServiceError;
use crate::state::AppState;

/// Bound on a call to the project's process.
const TENANT_WAIT: Duration = Duration::from_secs(5);

/// Longest webhook id accepted (the data plane's are 36-character UUIDs).
const MAX_WEBHOOK_ID_LEN: usize = 64;

/// What to send again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeliver {
    /// The failure with this webhook id.
    One(String),
    /// Every failure the project keeps.
    All,
}

impl Redeliver {
    /// The request to the project's process.
    fn body(&self) -> Value {
        match self {
            Self::One(id) => json!({"webhook_id": id}),
            Self::All => json!({"all": true}),
        }
    }
}

/// Checks a webhook id from the customer before it is sent on (letters, digits, dashes).
pub fn check_webhook_id(id: &str) -> RestResult<String> {
    let id = id.trim();
    if id.is_empty()
        || id.len() > MAX_WEBHOOK_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ServiceError::field(
            "webhook_id",
            "must be the webhook id of a failed delivery (X-Rotor-Webhook-Id)",
        ));
    }
    Ok(id.to_owned())
}

/// The project's process: its admin base URL and token; `None` when it is not running.
fn process_of(state: &AppState, project: &ProjectId) -> Option<(String, String)> {
    state
        .routes
        .processes()
        .into_iter()
        .find(|(id, _)| id.as_str() == project.as_str())
        .map(|(_, r)| (r.admin_base(), r.admin_token.clone()))
}

fn not_running() -> ServiceError {
    ServiceError::Conflict(
        "the project is not running: its deliveries live in its process, which starts with its first connection or API call".into(),
    )
}

/// The project's webhooks as its process reports them (`enabled`, `queued`, `dead_letters`);
/// `Ok(None)` when it is not running.
pub async fn deliveries_of(state: &AppState, project: &ProjectId) -> RestResult<Option<Value>> {
    let Some((base, token)) = process_of(state, project) else {
        return Ok(None);
    };
    let answer = reqwest::Client::new()
        .get(format!("{base}/admin/webhooks"))
        .bearer_auth(token)
        .timeout(TENANT_WAIT)
        .send()
        .await
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("tenant webhooks: {e}")))?;
    if !answer.status().is_success() {
        return Err(ServiceError::Internal(anyhow::anyhow!(
            "tenant webhooks answered {}",
            answer.status()
        )));
    }
    let view = answer
        .json::<Value>()
        .await
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("tenant webhooks: {e}")))?;
    Ok(Some(view))
}

/// Asks the project's process to send failures again; its answer (`batches`, `events`).
/// Recorded in the audit log. The caller has checked that `account` owns `project`.
pub async fn redeliver(
    state: &AppState,
    account: &AccountId,
    project: &ProjectId,
    what: &Redeliver,
) -> RestResult<Value> {
    let (base, token) = process_of(state, project).ok_or_else(not_running)?;
    let answer = reqwest::Client::new()
        .post(format!("{base}/admin/webhooks/redeliver"))
        .bearer_auth(token)
        .json(&what.body())
        .timeout(TENANT_WAIT)
        .send()
        .await
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("tenant redeliver: {e}")))?;
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match status {
        200 => {}
        404 => {
            return Err(ServiceError::field(
                "webhook_id",
                format!("{message}: it was sent again already or is no longer kept"),
            ))
        }
        409 => return Err(ServiceError::Conflict(message)),
        other => {
            return Err(ServiceError::Internal(anyhow::anyhow!(
                "tenant redeliver answered {other}: {message}"
            )))
        }
    }
    let target = match what {
        Redeliver::One(id) => id.clone(),
        Redeliver::All => "all".into(),
    };
    let mut tx = state.pool.begin().await?;
    audit(
        &mut tx,
        account,
        Some(project),
        "webhooks.redeliver",
        &target,
        None,
        Some(json!({"batches": body["batches"], "events": body["events"]})),
    )
    .await?;
    tx.commit().await?;
    Ok(json!({"batches": body["batches"], "events": body["events"]}))
}

pub async fn get_deliveries(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
) -> RestResult<Json<Value>> {
    let id = project.id();
    let view = deliveries_of(&state, id).await?;
    Ok(Json(match view {
        Some(v) => json!({
            "running": true,
            "enabled": v["enabled"],
            "queued": v["queued"],
            "dead_letters": v["dead_letters"],
        }),
        None => json!({"running": false, "dead_letters": []}),
    }))
}

/// `POST /v1/projects/{id}/webhooks/redeliver`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    #[serde(default)]
    webhook_id: Option<String>,
    #[serde(default)]
    all: bool,
}

pub async fn post_redeliver(
    State(state): State<AppState>,
    OwnedProject(project): OwnedProject,
    Json(body): Json<RedeliverRequest>,
) -> RestResult<Json<Value>> {
    let (account, id) = (project.account(), project.id());
    let what = match (body.webhook_id, body.all) {
        (Some(webhook_id), false) => Redeliver::One(check_webhook_id(&webhook_id)?),
        (None, true) => Redeliver::All,
        _ => {
            return Err(ServiceError::field(
                "webhook_id",
                "give either \"webhook_id\" (one failed delivery) or \"all\": true",
            ))
        }
    };
    Ok(Json(redeliver(&state, account, id, &what).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_are_checked_before_they_reach_a_process() {
        assert_eq!(
            check_webhook_id(" 6f1c2f7e-0b9a-4c61-9a51-2f0e4d7e9b10 ").unwrap(),
            "6f1c2f7e-0b9a-4c61-9a51-2f0e4d7e9b10"
        );
        for bad in ["", "../admin/config", "a b", "\"}", &"a".repeat(65)] {
            assert!(check_webhook_id(bad).is_err(), "{bad:?}");
        }
    }
}
