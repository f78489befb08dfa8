//! The audit trail (`audit_log`): who changed what, in which account and project. Entries say
//! that a secret changed, never what it is: [`record`] redacts every secret-bearing field
//! whatever the caller passed, so a careless `before`/`after` cannot leak one.

use serde_json::{json, Value};
use sqlx::PgConnection;

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
}
