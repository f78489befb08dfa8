//! The operator's Redis deployments (#23): standalone servers, Redis Clusters and Sentinel
//! groups that Redis-engine projects are placed on. A deployment is its `engine.redis` options
//! (addresses, credentials, TLS) checked by the data plane's own schema
//! ([`rotor_tenant_config`]) and stored sealed under its name; each project on it keeps its
//! own key prefix. A new Redis-engine project without its own URL goes to the open deployment
//! with the fewest projects ([`place`], inside the creating transaction); with none configured
//! it stays on the installation's `REDIS_URL`. Listing shows hosts, never credentials.

use rotor_tenant_config::TenantConfig;
use serde_json::{json, Map, Value};
use sqlx::{PgConnection, PgPool};

use crate::operator::{audited, require_server_key, Change, Operator, OperatorError};
use crate::sealed::{deployment_subject, Context, Keyring, SealError};

/// The `engine.redis` options a deployment takes (the prefix and presence TTL are each
/// project's own).
pub const OPTION_NAMES: [&str; 7] = [
    "address",
    "cluster_address",
    "sentinel_address",
    "sentinel_master_name",
    "sentinel_user",
    "sentinel_password",
    "tls",
];

/// What kind of deployment the options name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Standalone,
    Cluster,
    Sentinel,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Standalone => "standalone",
            Form::Cluster => "cluster",
            Form::Sentinel => "sentinel",
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> OperatorError {
    OperatorError::InvalidDeployment {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Every string the options hold (to keep them out of error messages).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Checks a deployment's options with the data plane's schema; the error names the option
/// (`engine.redis.…`) and never repeats a value.
pub fn check_options(options: &Value) -> Result<(Form, Map<String, Value>), OperatorError> {
    let obj = options
        .as_object()
        .ok_or_else(|| invalid("engine.redis", "the options must be a JSON object"))?;
    for key in obj.keys() {
        if !OPTION_NAMES.contains(&key.as_str()) {
            return Err(invalid(
                &format!("engine.redis.{key}"),
                format!(
                    "not a deployment option (deployments take {}; the key prefix is each project's own)",
                    OPTION_NAMES.join(", ")
                ),
            ));
        }
    }
    if let Some(tls) = obj.get("tls").and_then(Value::as_object) {
        for file in rotor_tenant_config::TLS_FILE_OPTIONS {
            if tls.get(file).is_some_and(|v| v != "") {
                return Err(invalid(
                    &format!("engine.redis.tls.{file}"),
                    "tenant processes never read files of the box: give the PEM text in the option without `_file`",
                ));
            }
        }
    }
    let set = |k: &str| match obj.get(k) {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    if !set("address") && !set("cluster_address") && !set("sentinel_address") {
        return Err(invalid(
            "engine.redis.address",
            "name the deployment: `address`, `cluster_address` or `sentinel_address`",
        ));
    }
    let mut redis = obj.clone();
    redis.insert("prefix".into(), json!("rotor:placement-check:"));
    let config = json!({"engine": {"type": "redis", "redis": redis}});
    let loaded = TenantConfig::from_value(config).map_err(|e| {
        let mut message = e.reason();
        let mut secrets = Vec::new();
        strings(options, &mut secrets);
        for s in secrets {
            message = message.replace(&s, "…");
        }
        invalid(e.path().unwrap_or("engine.redis"), message)
    })?;
    let engine = &loaded.config.engine.redis;
    let form = if !engine.cluster_address.0.is_empty() {
        Form::Cluster
    } else if !engine.sentinel_address.0.is_empty()
        || engine
            .address
            .0
            .iter()
            .any(|a| rotor_tenant_config::redis_deployment::is_sentinel_url(a))
    {
        Form::Sentinel
    } else {
        Form::Standalone
    };
    Ok((form, obj.clone()))
}

fn check_name(name: &str) -> Result<(), OperatorError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            "1–63 lowercase letters, digits, `-` or `_`, starting with a letter or digit",
        ))
    }
}

/// Seals a deployment's options for storage.
pub fn seal(keyring: &Keyring, name: &str, options: &Map<String, Value>) -> String {
    let subject = deployment_subject(name);
    keyring.seal(
        Context::deployment(&subject),
        &Value::Object(options.clone()).to_string(),
    )
}

/// Opens a deployment's stored options.
pub fn open(keyring: &Keyring, name: &str, sealed: &str) -> Result<Map<String, Value>, SealError> {
    let subject = deployment_subject(name);
    let text = keyring.open(Context::deployment(&subject), sealed)?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(SealError::Corrupt),
    }
}

/// The deployment's nodes as `scheme://host:port` (no credentials, no query).
pub fn nodes(options: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["address", "cluster_address", "sentinel_address"] {
        let mut list = Vec::new();
        if let Some(v) = options.get(key) {
            strings(v, &mut list);
        }
        for a in list {
            let a = a.trim();
            let (scheme, rest) = a.split_once("://").unwrap_or(("", a));
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let path = path.split(['?', '#']).next().unwrap_or("");
            let mut shown = if scheme.is_empty() {
                host.to_owned()
            } else {
                format!("{scheme}://{host}")
            };
            // A Sentinel URL's path is the master group (and database): not a secret.
            if scheme.ends_with("+sentinel") && !path.is_empty() {
                shown = format!("{shown}/{path}");
            }
            out.push(shown);
        }
    }
    out
}

fn uses_tls(options: &Map<String, Value>) -> bool {
    options
        .get("tls")
        .and_then(|t| t.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || nodes(options).iter().any(|n| n.starts_with("rediss"))
}

/// Adds a deployment (or, with `replace`, changes an existing one's options: the projects on
/// it get the new options pushed and their tenants restart on them).
pub async fn add(
    pool: &PgPool,
    op: &Operator,
    name: &str,
    options: &Value,
    replace: bool,
) -> Result<Change, OperatorError> {
    let name = name.trim();
    check_name(name)?;
    let (form, options) = check_options(options)?;
    let keyring = require_server_key()?;
    let sealed = seal(keyring, name, &options);
    let mut tx = pool.begin().await?;
    let before: Option<String> =
        sqlx::query_scalar("SELECT form FROM redis_deployments WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    if before.is_some() && !replace {
        return Err(OperatorError::DeploymentExists(name.to_owned()));
    }
    sqlx::query(
        "INSERT INTO redis_deployments (name, form, options) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET form = $2, options = $3, updated_at = now()",
    )
    .bind(name)
    .bind(form.as_str())
    .bind(&sealed)
    .execute(&mut *tx)
    .await?;
    let bumped = sqlx::query(
        "UPDATE projects SET config_version = config_version + 1, updated_at = now() \
         WHERE redis_deployment = $1",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let change = Change {
        target: format!("redis deployment {name}"),
        before: before.map_or(Value::Null, |f| json!({"form": f, "options": "set"})),
        after: json!({"form": form.as_str(), "nodes": nodes(&options).len(), "options": "changed"}),
        projects_bumped: bumped,
    };
    let action = if replace {
        "operator.redis_deployment_replace"
    } else {
        "operator.redis_deployment_add"
    };
    let change = audited(&mut tx, op, (None, None), action, name, change).await?;
    tx.commit().await?;
    Ok(change)
}

/// A deployment as `list-redis-deployments` shows it: no credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentInfo {
    pub name: String,
    pub form: String,
    /// `scheme://host:port` of each node (or why the options do not open).
    pub nodes: Result<Vec<String>, String>,
    pub tls: bool,
    pub accepts_new: bool,
    pub projects: i64,
}

/// Every deployment with how many projects it holds.
pub async fn list(pool: &PgPool) -> Result<Vec<DeploymentInfo>, OperatorError> {
    let keyring = Keyring::global()?;
    let rows: Vec<(String, String, String, bool, i64)> = sqlx::query_as(
        "SELECT d.name, d.form, d.options, d.accepts_new, \
           (SELECT count(*) FROM projects p WHERE p.redis_deployment = d.name) \
         FROM redis_deployments d ORDER BY d.name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, form, sealed, accepts_new, projects)| {
            let opened = open(keyring, &name, &sealed);
            DeploymentInfo {
                tls: opened.as_ref().is_ok_and(uses_tls),
                nodes: opened.map(|o| nodes(&o)).map_err(|e| e.to_string()),
                name,
                form,
                accepts_new,
                projects,
            }
        })
        .collect())
}

/// Opens (`true`) or closes a deployment to new projects; projects on it stay.
pub async fn set_accepting(
    pool: &PgPool,
    op: &Operator,
    name: &str,
    accepts_new: bool,
) -> Result<Change, OperatorError> {
    let mut tx = pool.begin().await?;
    let before: Option<bool> =
        sqlx::query_scalar("SELECT accepts_new FROM redis_deployments WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    let before = before.ok_or_else(|| OperatorError::UnknownDeployment(name.to_owned()))?;
    sqlx::query(
        "UPDATE redis_deployments SET accepts_new = $2, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(accepts_new)
    .execute(&mut *tx)
    .await?;
    let change = Change {
        target: format!("redis deployment {name}"),
        before: json!({"accepts_new": before}),
        after: json!({"accepts_new": accepts_new}),
        projects_bumped: 0,
    };
    let action = if accepts_new {
        "operator.redis_deployment_open"
    } else {
        "operator.redis_deployment_close"
    };
    let change = audited(&mut tx, op, (None, None), action, name, change).await?;
    tx.commit().await?;
    Ok(change)
}

/// Removes a deployment no project uses.
pub async fn remove(pool: &PgPool, op: &Operator, name: &str) -> Result<Change, OperatorError> {
    let mut tx = pool.begin().await?;
    let form: Option<String> =
        sqlx::query_scalar("SELECT form FROM redis_deployments WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    let form = form.ok_or_else(|| OperatorError::UnknownDeployment(name.to_owned()))?;
    let projects: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projects WHERE redis_deployment = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    if projects > 0 {
        return Err(OperatorError::DeploymentInUse {
            name: name.to_owned(),
            projects,
        });
    }
    sqlx::query("DELETE FROM redis_deployments WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let change = Change {
        target: format!("redis deployment {name}"),
        before: json!({"form": form}),
        after: Value::Null,
        projects_bumped: 0,
    };
    let action = "operator.redis_deployment_remove";
    let change = audited(&mut tx, op, (None, None), action, name, change).await?;
    tx.commit().await?;
    Ok(change)
}

/// Whether some deployment takes new projects.
pub async fn any_open(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM redis_deployments WHERE accepts_new)")
        .fetch_one(pool)
        .await
}

/// The open deployment with the fewest projects for a new Redis-engine project, in the
/// creating transaction (`None`: no deployment is configured or open). The open deployments
/// are locked until the caller commits, so concurrent creations count one another.
pub async fn place(conn: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM redis_deployments WHERE accepts_new ORDER BY name FOR UPDATE",
    )
    .fetch_all(&mut *conn)
    .await?;
    if open.is_empty() {
        return Ok(None);
    }
    // A statement of its own, after the locks: it sees every creation committed before them.
    sqlx::query_scalar(
        "SELECT d.name FROM redis_deployments d WHERE d.name = ANY($1) \
         ORDER BY (SELECT count(*) FROM projects p WHERE p.redis_deployment = d.name), d.name \
         LIMIT 1",
    )
    .bind(&open)
    .fetch_optional(&mut *conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_with_the_data_planes_schema_naming_the_field() {
        let (form, _) = check_options(&json!({"address": "redis://:pw@10.0.0.5:6379"})).unwrap();
        assert_eq!(form, Form::Standalone);
        let (form, _) = check_options(&json!({"cluster_address": ["10.0.0.1:7000"]})).unwrap();
        assert_eq!(form, Form::Cluster);
        let (form, _) = check_options(&json!({"sentinel_address": ["10.0.0.1:26379"],
            "sentinel_master_name": "m", "sentinel_password": "pw"}))
        .unwrap();
        assert_eq!(form, Form::Sentinel);
        let (form, _) =
            check_options(&json!({"address": "redis+sentinel://:pw@s1,s2/mymaster"})).unwrap();
        assert_eq!(form, Form::Sentinel);
        for (bad, field) in [
            (json!([]), "engine.redis"),
            (json!({}), "engine.redis.address"),
            (
                json!({"address": "redis://a:1", "prefix": "x"}),
                "engine.redis.prefix",
            ),
            (
                json!({"cluster_address": ["a:1"], "address": "redis://b:1"}),
                "engine.redis.cluster_address",
            ),
            (
                json!({"sentinel_address": ["s:26379"]}),
                "engine.redis.sentinel_master_name",
            ),
            (
                json!({"address": "rediss://a:1", "tls": {"server_ca_pem_file": "/etc/ca.pem"}}),
                "engine.redis.tls.server_ca_pem_file",
            ),
            (
                json!({"address": "redis://a:1", "tls": {"enabled": "hunter2-secret"}}),
                "engine.redis.tls.enabled",
            ),
        ] {
            match check_options(&bad) {
                Err(OperatorError::InvalidDeployment { field: f, message }) => {
                    assert_eq!(f, field, "{bad}: {message}");
                    assert!(!message.contains("hunter2"), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn nodes_are_shown_without_credentials() {
        let options = json!({"address": ["redis://u:hunter2@10.0.0.1:6379/0?x=1",
            "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/2"]});
        let shown = nodes(options.as_object().unwrap());
        assert_eq!(
            shown,
            [
                "redis://10.0.0.1:6379",
                "redis+sentinel://s1:26379,s2:26379/mymaster/2"
            ]
        );
    }

    #[test]
    fn names_are_short_and_plain() {
        assert!(check_name("eu-1_a").is_ok());
        for bad in ["", "-a", "A", "a b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
