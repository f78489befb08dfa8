//! A project's webhook deliveries, read from and acted on in its running process (the tenant's
//! admin surface, with the node's admin token): the events waiting and the failures it gave up
//! on, and sending failures again (with their webhook ids, signed with the current secret).
//! Only a [`ProjectScope`] reaches a project's process, and a webhook id is checked before it
//! is sent on, as JSON.

use std::time::Duration;

use serde_json::{json, Value};

use super::{audit, ProjectScope, ServiceError, ServiceResult};
use crate::ids::ProjectId;
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
pub fn check_webhook_id(id: &str) -> ServiceResult<String> {
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
pub async fn deliveries_of(state: &AppState, scope: &ProjectScope) -> ServiceResult<Option<Value>> {
    let Some((base, token)) = process_of(state, scope.id()) else {
        return Ok(None);
    };
    let answer = crate::probe::direct_client()
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

/// What the project's process took to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Redelivered {
    /// Failed deliveries (batches of events) queued again; `None` if the process did not say.
    pub batches: Option<u64>,
    /// Events in them.
    pub events: Option<u64>,
}

/// Asks the project's process to send failures again; recorded in the audit log.
pub async fn redeliver(
    state: &AppState,
    scope: &ProjectScope,
    what: &Redeliver,
) -> ServiceResult<Redelivered> {
    let (account, project) = (scope.account(), scope.id());
    let (base, token) = process_of(state, project).ok_or_else(not_running)?;
    let answer = crate::probe::direct_client()
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
    Ok(Redelivered {
        batches: body["batches"].as_u64(),
        events: body["events"].as_u64(),
    })
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
