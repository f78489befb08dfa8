//! The demo tenant `make run` starts with: an account, a project with a `chat` namespace, an API
//! key and a connection token, printed so a newcomer can connect at once.

use serde_json::json;

use crate::ids::{AccountId, ProjectId};
use crate::service::keys::{CreatedKey, NewKey};
use crate::service::projects::{Engine, NewProject, ProjectScope};
use crate::service::{accounts, keys, namespaces, projects, ServiceError};
use crate::state::AppState;

const EMAIL: &str = "demo@rotor.local";
const PASSWORD: &str = "rotor-demo-password";
const PROJECT: &str = "demo";

/// What the demo consists of, for printing.
pub struct Demo {
    pub email: &'static str,
    pub password: &'static str,
    pub project_id: ProjectId,
    pub slug: String,
    pub websocket: String,
    pub api: String,
    pub api_key: String,
    pub hmac_secret: String,
    pub user_token: String,
}

/// Creates the demo account and project if missing; always mints a fresh API key (keys are
/// shown only once) and a one-day connection token for user `demo-user`.
pub async fn ensure(state: &AppState) -> anyhow::Result<Demo> {
    let account = match accounts::create_account(state, EMAIL, PASSWORD).await {
        Ok((id, _)) => id,
        Err(ServiceError::Conflict(_)) => accounts::authenticate(state, EMAIL, PASSWORD, None)
            .await
            .map_err(|e| anyhow::anyhow!("demo account exists with another password: {e}"))?,
        Err(e) => return Err(anyhow::anyhow!("creating demo account: {e}")),
    };
    let project = match existing_project(state, &account).await? {
        Some(id) => projects::owned(state, &account, id.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        None => {
            let new = NewProject {
                name: PROJECT.to_owned(),
                engine: Engine::Memory,
                starter: None,
            };
            let p = projects::create(state, &account, new)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let scope = projects::owned(state, &account, p.id.as_str())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let options = json!({
                "presence": true, "join_leave": true, "force_push_join_leave": true,
                "history_size": 100, "history_ttl": "300s", "force_recovery": true,
                "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
                "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true
            });
            namespaces::put(state, &scope, "chat", &options)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            scope
        }
    };
    let project_id = project.id().clone();
    let (slug,): (String,) = sqlx::query_as("SELECT slug FROM projects WHERE id = $1")
        .bind(&project_id)
        .fetch_one(&state.pool)
        .await?;
    let hmac_secret = keys::token_secret(state, &project)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = fresh_api_key(state, &project).await?;
    let exp = chrono::Utc::now().timestamp() + 24 * 3600;
    let user_token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "demo-user", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(hmac_secret.as_bytes()),
    )?;
    Ok(Demo {
        email: EMAIL,
        password: PASSWORD,
        websocket: format!(
            "{}/connection/websocket",
            state.settings.tenant_ws_base(&slug)
        ),
        api: format!("{}/api", state.settings.tenant_http_base(&slug)),
        project_id,
        slug,
        api_key: key.key,
        hmac_secret,
        user_token,
    })
}

/// A new API key named `make run …`; when the plan's key limit is reached, the oldest key a
/// previous `make run` minted is revoked first (each run prints a new one).
async fn fresh_api_key(state: &AppState, project: &ProjectScope) -> anyhow::Result<CreatedKey> {
    let name = format!(
        "make run {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
    );
    let new = || NewKey {
        name: name.clone(),
        scope: None,
    };
    match keys::create(state, project, new()).await {
        Err(ServiceError::PlanLimit(_)) => {
            let oldest: Option<String> = sqlx::query_scalar(
                "SELECT id FROM api_keys WHERE project_id = $1 AND name LIKE 'make run %' \
                 ORDER BY created_at LIMIT 1",
            )
            .bind(project.id())
            .fetch_optional(&state.pool)
            .await?;
            let oldest = oldest.ok_or_else(|| {
                anyhow::anyhow!("the demo project has no room for another API key")
            })?;
            keys::revoke(state, project, &oldest)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            keys::create(state, project, new())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
        other => other.map_err(|e| anyhow::anyhow!("{e}")),
    }
}

async fn existing_project(
    state: &AppState,
    account: &AccountId,
) -> anyhow::Result<Option<ProjectId>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM projects WHERE account_id = $1 AND name = $2 ORDER BY created_at LIMIT 1",
    )
    .bind(account)
    .bind(PROJECT)
    .fetch_optional(&state.pool)
    .await?)
}

impl Demo {
    /// A human-readable summary with copy-paste examples.
    pub fn describe(&self, public_url: &str) -> String {
        format!(
            "\nRotor is running at {public_url}\n\n\
             Demo account   {email} / {password}\n\
             Demo project   {slug} ({id})\n\
             WebSocket      {ws}\n\
             Server API     {api}\n\
             API key        {key}\n\
             Token secret   {secret}\n\
             User token     {token}   (user demo-user, valid 24 h)\n\n\
             Publish:  curl -s -X POST {api}/publish -H 'X-API-Key: {key}' -d '{{\"channel\":\"chat:lobby\",\"data\":{{\"text\":\"hello\"}}}}'\n\
             REST API: curl -s -X POST {public_url}/v1/tokens -H 'Content-Type: application/json' -d '{{\"email\":\"{email}\",\"password\":\"{password}\",\"name\":\"cli\"}}'\n",
            email = self.email,
            password = self.password,
            slug = self.slug,
            id = self.project_id,
            ws = self.websocket,
            api = self.api,
            key = self.api_key,
            secret = self.hmac_secret,
            token = self.user_token,
        )
    }
}
