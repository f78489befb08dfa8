//! The audit trail (`audit_log`): who changed what, in which account and project. Each
//! account keeps its newest [`KEPT_PER_ACCOUNT`] entries; older ones are trimmed as new ones
//! are written. Entries say
//! that a secret changed, never what it is: [`record`] redacts every secret-bearing field
//! whatever the caller passed, so a careless `before`/`after` cannot leak one. [`page`] reads
//! an owner's entries newest first, a page at a time, and [`describe`] / [`actor_words`] say
//! them in words for the dashboard.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use crate::ids::{AccountId, ProjectId};

/// What replaces a secret's value in an entry.
pub const REDACTED: &str = "[redacted]";

/// Fields whose string values are secrets (any depth).
const SECRET_FIELDS: &[&str] = &[
    "hmac_secret",
    "previous_hmac_secret",
    "token_hmac_secret",
    "hmac_secret_key",
    "hmac_previous_secret_key",
    "password",
    "password_hash",
    "key",
    "key_hash",
    "token",
    "token_hash",
    "redis_url",
];

/// Who made a change.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A customer, through the dashboard or the REST API.
    Account(&'a AccountId),
    /// The operator, through `rotor-control-plane operator …` (`operator:<name>`).
    Operator(&'a str),
    /// Rotor itself (`system:<component>`), e.g. the supervisor restarting a tenant.
    System(&'a str),
}

impl Actor<'_> {
    /// `account:acc_…` or `operator:<name>`.
    pub fn label(&self) -> String {
        match self {
            Actor::Account(id) => format!("account:{id}"),
            Actor::Operator(name) => format!("operator:{name}"),
            Actor::System(name) => format!("system:{name}"),
        }
    }
}

/// One audit entry.
#[derive(Debug)]
pub struct Entry<'a> {
    pub actor: Actor<'a>,
    /// The account the change concerns (the owner, also when the operator acts).
    pub account: Option<&'a AccountId>,
    pub project: Option<&'a ProjectId>,
    /// `project.update`, `secret.rotate`, `operator.suspend`, …
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Writes an entry in the caller's transaction, secrets redacted.
pub async fn record(conn: &mut PgConnection, entry: Entry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (account_id, project_id, actor, action, target, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(entry.account)
    .bind(entry.project)
    .bind(entry.actor.label())
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.before.map(redact))
    .bind(entry.after.map(redact))
    .execute(&mut *conn)
    .await?;
    if let Some(account) = entry.account {
        trim(conn, account).await?;
    }
    Ok(())
}

/// How many entries each account keeps: the oldest beyond it go as new ones are written, so
/// one account's changes cannot grow the shared database without bound.
pub const KEPT_PER_ACCOUNT: i64 = 1_000;

/// Deletes `account`'s entries older than its newest [`KEPT_PER_ACCOUNT`] (one index range on
/// `(account_id, id)`).
async fn trim(conn: &mut PgConnection, account: &AccountId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM audit_log WHERE account_id = $1 AND id <= \
         (SELECT id FROM audit_log WHERE account_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)",
    )
    .bind(account)
    .bind(KEPT_PER_ACCOUNT)
    .execute(conn)
    .await?;
    Ok(())
}

/// `value` with every secret replaced by [`REDACTED`]: string values of [`SECRET_FIELDS`]
/// (except the marker `"changed"`), every value of a `static_headers` map, and anything that
/// looks sealed.
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if k == "static_headers" {
                        redact_all(v)
                    } else if SECRET_FIELDS.contains(&k.as_str()) {
                        match v {
                            Value::String(s) if s == "changed" => json!(s),
                            Value::Null => Value::Null,
                            other => redact_all(other),
                        }
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) if s.starts_with(crate::sealed::PREFIX) => json!(REDACTED),
        other => other,
    }
}

/// Every leaf of `value` redacted (keys kept, so the entry still says which header changed).
fn redact_all(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, redact_all(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(redact_all).collect()),
        Value::Null => Value::Null,
        _ => json!(REDACTED),
    }
}

/// One stored entry, as the owner reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub project_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub created_at: DateTime<Utc>,
}

/// Entries of `owner` (of one of their projects when `project` is given), newest first: at
/// most `limit`, older than entry `before` when given. Only the owner's entries: the account
/// is part of every query, whatever the project.
pub async fn page(
    pool: &PgPool,
    owner: &AccountId,
    project: Option<&ProjectId>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, project_id, actor, action, target, before, after, created_at FROM audit_log \
         WHERE account_id = $1 AND ($2::text IS NULL OR project_id = $2) \
           AND ($3::bigint IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(owner)
    .bind(project)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Who did it, for `viewer`: "You", "Rotor operator (name)" or "Rotor".
pub fn actor_words(actor: &str, viewer: &AccountId) -> String {
    match actor.split_once(':') {
        Some(("account", id)) if id == viewer.as_str() => "You".into(),
        Some(("account", _)) => "Another account".into(),
        Some(("operator", name)) => format!("Rotor operator ({name})"),
        Some(("system", _)) => "Rotor (automatic)".into(),
        _ => actor.to_owned(),
    }
}

fn quoted(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(|s| format!("“{s}”"))
}

/// What an entry did, in a sentence without the actor ("Created the API key “backend”").
pub fn describe(row: &Row) -> String {
    let after = row.after.as_ref();
    let before = row.before.as_ref();
    let field = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).cloned();
    let target = row.target.clone().unwrap_or_default();
    match row.action.as_str() {
        "project.create" => match quoted(field(after, "name").as_ref()) {
            Some(name) => format!("Created the project {name}"),
            None => "Created the project".into(),
        },
        "project.update" => {
            let renamed = field(after, "name").filter(|n| !n.is_null());
            let settings = field(after, "settings").filter(|s| !s.is_null());
            match (quoted(renamed.as_ref()), settings) {
                (Some(name), Some(_)) => {
                    format!("Renamed the project to {name} and changed its settings")
                }
                (Some(name), None) => format!("Renamed the project to {name}"),
                (None, Some(_)) => "Changed the project's settings".into(),
                (None, None) => "Updated the project".into(),
            }
        }
        "project.delete" => "Deleted the project".into(),
        "api_key.create" => {
            let name = quoted(field(after, "name").as_ref()).unwrap_or_default();
            let scope = match field(after, "scope").as_ref().and_then(Value::as_str) {
                Some("publish") => " (publish only)",
                _ => "",
            };
            format!("Created the API key {name}{scope}").replace("  ", " ")
        }
        "api_key.delete" => match quoted(field(before, "name").as_ref()) {
            Some(name) => format!("Revoked the API key {name}"),
            None => "Revoked an API key".into(),
        },
        "secret.rotate" => {
            let grace = field(after, "grace_seconds")
                .and_then(|g| g.as_u64())
                .unwrap_or(0);
            if grace > 0 {
                format!(
                    "Rotated the token secret (the old one kept working for {})",
                    hours(grace)
                )
            } else {
                "Rotated the token secret".into()
            }
        }
        "namespace.create" => format!("Created the namespace “{target}”"),
        "namespace.update" => format!("Changed the options of the namespace “{target}”"),
        "namespace.delete" => format!("Deleted the namespace “{target}”"),
        "operator.suspend" => "Suspended the project".into(),
        "operator.resume" => "Resumed the project".into(),
        "operator.set_plan" => match quoted(field(after, "plan").as_ref()) {
            Some(plan) => format!("Moved the project to the {plan} plan"),
            None => "Changed the project's plan".into(),
        },
        "operator.set_account_plan" => match quoted(field(after, "plan").as_ref()) {
            Some(plan) => format!("Moved the account to the {plan} plan"),
            None => "Changed the account's plan".into(),
        },
        "operator.set_limits" => "Changed the limits of a plan".into(),
        "operator.set_redis_url" => "Gave the project its own Redis".into(),
        "operator.move_project" => "Moved the project to another Redis deployment".into(),
        "account.password_reset" => {
            "Reset the password with a link sent by email (every session was logged out)".into()
        }
        "tenant.restart_out_of_memory" => {
            "Restarted the project's server after it ran out of memory".into()
        }
        other => other.replace(['.', '_'], " "),
    }
}

/// `3600` → "1 hour", `86400` → "24 hours", else seconds.
fn hours(secs: u64) -> String {
    match secs {
        3600 => "1 hour".into(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_the_rest_is_kept() {
        let v = redact(json!({
            "name": "app",
            "hmac_secret": "changed",
            "previous_hmac_secret": "abc",
            "settings": {"proxies": [{"name": "p", "endpoint": "https://b.example",
                "http": {"static_headers": {"Authorization": "Bearer xyz"}}}]},
            "other": "sealed:v1:0011223344556677:AAAA",
        }));
        assert_eq!(v["name"], "app");
        assert_eq!(v["hmac_secret"], "changed");
        assert_eq!(v["previous_hmac_secret"], REDACTED);
        let p = &v["settings"]["proxies"][0];
        assert_eq!(p["endpoint"], "https://b.example");
        assert_eq!(p["http"]["static_headers"]["Authorization"], REDACTED);
        assert_eq!(v["other"], REDACTED);
        assert!(!v.to_string().contains("xyz"));
    }

    fn row(actor: &str, action: &str, target: &str, before: Value, after: Value) -> Row {
        Row {
            id: 1,
            project_id: None,
            actor: actor.into(),
            action: action.into(),
            target: Some(target.into()),
            before: Some(before),
            after: Some(after),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn entries_read_as_sentences_and_actors_as_people() {
        let me = AccountId("acc_me".into());
        assert_eq!(actor_words("account:acc_me", &me), "You");
        assert_eq!(actor_words("operator:ops", &me), "Rotor operator (ops)");
        assert_eq!(actor_words("system:supervisor", &me), "Rotor (automatic)");
        let r = row(
            "account:acc_me",
            "api_key.create",
            "key_1",
            Value::Null,
            json!({"name": "ci", "scope": "publish"}),
        );
        assert_eq!(describe(&r), "Created the API key “ci” (publish only)");
        let r = row(
            "account:acc_me",
            "api_key.delete",
            "key_1",
            json!({"name": "ci"}),
            Value::Null,
        );
        assert_eq!(describe(&r), "Revoked the API key “ci”");
        let r = row(
            "account:acc_me",
            "project.update",
            "prj_1",
            json!({}),
            json!({"name": "New", "settings": null}),
        );
        assert_eq!(describe(&r), "Renamed the project to “New”");
        let r = row(
            "account:acc_me",
            "project.update",
            "prj_1",
            json!({}),
            json!({"name": null, "settings": {}}),
        );
        assert_eq!(describe(&r), "Changed the project's settings");
        let r = row(
            "account:acc_me",
            "secret.rotate",
            "prj_1",
            Value::Null,
            json!({"grace_seconds": 3600}),
        );
        assert!(describe(&r).contains("1 hour"));
        let r = row(
            "account:acc_me",
            "namespace.update",
            "chat",
            Value::Null,
            Value::Null,
        );
        assert_eq!(describe(&r), "Changed the options of the namespace “chat”");
        let r = row("operator:x", "some.new_thing", "", Value::Null, Value::Null);
        assert_eq!(describe(&r), "some new thing");
    }
}
