//! Moving a Redis-engine project to another of the operator's deployments
//! (`operator move-project <project> <deployment> --history drain|drop`). The operator must
//! say what happens to the project's keys (history, presence, recovery positions): `drain`
//! copies every key under the project's prefix from the old deployment to the new one
//! ([`keys`]), `drop` leaves them behind.
//!
//! Nothing written during the move is lost: the move first holds the project ([`hold`]), so
//! every control plane stops its tenant and starts or wakes none (the edge answers 503 with
//! `Retry-After`, publishers see a temporary error), and it waits until the tenant has let go
//! of the old deployment — a control plane confirmed the stop, and the old deployment counts
//! no subscriber on the tenant's control topic (a process on any box). Only then are the keys
//! copied; the project then points at the new deployment and the hold ends in one
//! transaction, the reconciler starts the tenant there, and the old keys are deleted once
//! that transaction has committed. Keys a failed or interrupted earlier move left on the new
//! deployment are deleted before the copy.
//!
//! A move that fails before the switch (a copy error, an unreachable deployment, a tenant
//! that does not let go in time) is called off: what it copied is deleted from the new
//! deployment, the hold ends, and the project stays where it was with its keys, its tenant
//! started again. A move whose command is killed leaves a hold that lapses by itself within
//! [`hold::LEASE`]; `move-project` can then be run again. The audit entry says how many keys
//! moved and how long the project was held; the command's answer adds how many old keys were
//! deleted.

mod connect;
mod hold;
mod keys;

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use sqlx::PgPool;

use crate::ids::ProjectId;
use crate::operator::{audited, resolve, Change, Operator, OperatorError, Target};
use crate::sealed::{Context, Keyring, Purpose};
use connect::{connect, Connected, Writer};
use hold::Hold;
use keys::{control_subscribers, copy, delete, keyspaces, SHARDED_TARGET};

pub use hold::LEASE;

/// How long a move waits, by default, for the tenant to let go of the old deployment.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the wait looks.
const STOP_POLL: Duration = Duration::from_millis(100);

/// What happens to the project's keys on the old deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Copied to the new deployment before the switch.
    Drain,
    /// Deleted without a copy.
    Drop,
}

impl History {
    pub fn as_str(self) -> &'static str {
        match self {
            History::Drain => "drain",
            History::Drop => "drop",
        }
    }
}

/// Why a move failed (nothing was switched unless the message says so).
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("the project is already on the Redis deployment {0:?}")]
    SameDeployment(String),
    #[error("the Redis deployment {0:?} is the same server and database as the project's current one (the move would delete the keys it copied)")]
    SameKeyspace(String),
    #[error("{0}")]
    Unsupported(&'static str),
    /// A Redis command failed (the message names the node, never credentials).
    #[error("Redis {at}: {message}")]
    Redis { at: String, message: String },
    #[error("another move of this project (to {deployment:?}) is under way: it began {since_secs}s ago and holds the project for {left_secs}s more unless it renews its hold; if its command was interrupted, run move-project again once the hold has lapsed")]
    UnderWay {
        deployment: String,
        since_secs: u64,
        left_secs: u64,
    },
    #[error("the tenant did not let go of the old deployment within {waited_secs}s: {why}")]
    NotReleased { waited_secs: u64, why: String },
    #[error("the move's hold on the project lapsed or was ended by someone else (its tenant may have started again on the old deployment)")]
    HoldLost,
    /// Nothing was done: the project was not even held.
    #[error("the move did not start: the project stays on {stays_on}, untouched and serving. Cause: {cause}")]
    NotStarted { stays_on: String, cause: String },
    /// Nothing was switched; the hold ended.
    #[error("the move was called off and nothing was switched: the project stays on {stays_on} with its keys, and its tenant starts again there{leftovers}. Cause: {cause}")]
    CalledOff {
        stays_on: String,
        cause: String,
        /// Keys of the new deployment that could not be deleted (empty when none).
        leftovers: String,
    },
    /// The switch happened; deleting the old keys did not finish.
    #[error("the project now runs on {deployment:?}, but its keys on the old deployment were not all deleted: {message}")]
    Cleanup { deployment: String, message: String },
}

/// A project as a move finds it.
struct Moving<'a> {
    id: ProjectId,
    prefix: String,
    /// Its deployment, and whether it had a URL of its own, before the move.
    current: Option<String>,
    own: bool,
    deployment: &'a str,
    history: History,
}

impl Moving<'_> {
    /// Where the project stays when the move is called off, for the operator.
    fn stays_on(&self) -> String {
        match (&self.current, self.own) {
            (_, true) => "its own Redis URL".to_owned(),
            (Some(name), false) => format!("the Redis deployment {name:?}"),
            (None, false) => "the installation's Redis (REDIS_URL)".to_owned(),
        }
    }
}

/// Moves a Redis-engine project to `deployment`, draining or dropping its keys (see the
/// module doc). `default_redis_url` is the installation's Redis (where projects on no
/// deployment run); `stop_timeout` bounds the wait for the tenant to let go.
pub async fn move_project(
    pool: &PgPool,
    op: &Operator,
    project: &str,
    deployment: &str,
    history: History,
    default_redis_url: Option<&str>,
    stop_timeout: Duration,
) -> Result<Change, OperatorError> {
    let keyring = Keyring::global()?;
    // What the project runs on now and what it goes to, read without holding locks while
    // the keys are copied.
    let mut tx = pool.begin().await?;
    let Target::Project { id, .. } = resolve(&mut tx, project).await? else {
        return Err(OperatorError::NotAProject(project.to_owned()));
    };
    let (engine, own, prefix, current): (String, Option<String>, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT engine, redis_url, redis_prefix, redis_deployment FROM projects WHERE id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    if engine != "redis" {
        return Err(OperatorError::NotRedisEngine(id.to_string()));
    }
    if current.as_deref() == Some(deployment) && own.is_none() {
        return Err(MoveError::SameDeployment(deployment.to_owned()).into());
    }
    let target = deployment_options(pool, keyring, deployment).await?;
    let source = match (&own, &current) {
        (Some(sealed), _) => {
            let url = keyring
                .open(Context::new(Purpose::RedisUrl, &id), sealed)
                .map_err(OperatorError::Sealed)?;
            Map::from_iter([("address".to_owned(), json!(url))])
        }
        (None, Some(name)) => deployment_options(pool, keyring, name).await?,
        (None, None) => Map::from_iter([(
            "address".to_owned(),
            json!(default_redis_url.unwrap_or("redis://127.0.0.1:6379")),
        )]),
    };
    let moving = Moving {
        prefix: prefix.unwrap_or_else(|| format!("rotor:{id}:")),
        id,
        current,
        own: own.is_some(),
        deployment,
        history,
    };
    // Both ends are reached before the tenant is stopped: an unreachable deployment costs
    // the project nothing.
    let (mut from, mut to) = ends(&source, &target, deployment, history)
        .await
        .map_err(|e| MoveError::NotStarted {
            stays_on: moving.stays_on(),
            cause: e.to_string(),
        })?;

    let hold = Hold::place(pool, &moving.id, deployment, history).await?;
    let mut touched_target = false;
    let switched = held(
        pool,
        op,
        project,
        &moving,
        &hold,
        (&mut from, &mut to),
        stop_timeout,
        &mut touched_target,
    )
    .await;
    let mut change = match switched {
        Ok(change) => change,
        Err(cause) => {
            return Err(call_off(pool, &moving, hold, &mut to, touched_target, cause).await)
        }
    };
    drop(hold);
    // The old keys go once nothing points at them any more.
    let deleted = delete(&mut from, &moving.prefix)
        .await
        .map_err(|e| MoveError::Cleanup {
            deployment: deployment.to_owned(),
            message: e.to_string(),
        })?;
    change.after["keys_deleted"] = json!(deleted);
    Ok(change)
}

/// Both deployments, connected and checked for a move between them.
async fn ends(
    source: &Map<String, Value>,
    target: &Map<String, Value>,
    deployment: &str,
    history: History,
) -> Result<(Connected, Connected), MoveError> {
    let mut from = connect(source).await?;
    let mut to = connect(target).await?;
    if matches!(to.writer, Writer::Sharded) && history == History::Drain {
        return Err(MoveError::Unsupported(SHARDED_TARGET));
    }
    let theirs = keyspaces(&mut to).await;
    if keyspaces(&mut from)
        .await
        .iter()
        .any(|k| theirs.contains(k))
    {
        return Err(MoveError::SameKeyspace(deployment.to_owned()));
    }
    Ok((from, to))
}

/// The move while the project is held: waits for the tenant to let go, clears what an
/// earlier move left on the new deployment, copies (drain) and switches.
#[allow(clippy::too_many_arguments)]
async fn held(
    pool: &PgPool,
    op: &Operator,
    project: &str,
    moving: &Moving<'_>,
    hold: &Hold,
    (from, to): (&mut Connected, &mut Connected),
    stop_timeout: Duration,
    touched_target: &mut bool,
) -> Result<Change, OperatorError> {
    let held_at = Instant::now();
    released(hold, from, &moving.prefix, stop_timeout).await?;
    let stop_ms = held_at.elapsed().as_millis() as u64;
    tracing::info!(tenant = %moving.id, stop_ms, "the tenant let go of the old deployment");
    *touched_target = true;
    let leftovers = delete(to, &moving.prefix).await?;
    if leftovers > 0 {
        tracing::info!(tenant = %moving.id, leftovers, "deleted keys an earlier move left on the new deployment");
    }
    let copied = match moving.history {
        History::Drain => copy(from, to, &moving.prefix).await?,
        History::Drop => 0,
    };
    // The switch, and the hold's end: the reconciler starts the tenant on the new deployment.
    let mut tx = pool.begin().await?;
    let Target::Project { id, account, slug } = resolve(&mut tx, project).await? else {
        return Err(OperatorError::NotAProject(project.to_owned()));
    };
    let still: Option<String> =
        sqlx::query_scalar("SELECT name FROM redis_deployments WHERE name = $1 FOR SHARE")
            .bind(moving.deployment)
            .fetch_optional(&mut *tx)
            .await?;
    if still.is_none() {
        return Err(OperatorError::UnknownDeployment(
            moving.deployment.to_owned(),
        ));
    }
    hold.end_in(&mut tx).await?;
    sqlx::query("UPDATE projects SET redis_deployment = $2, redis_url = NULL WHERE id = $1")
        .bind(&id)
        .bind(moving.deployment)
        .execute(&mut *tx)
        .await?;
    crate::tenant::bump_config_version(&mut tx, &id).await?;
    let change = Change {
        target: format!("project {id} ({slug})"),
        before: json!({"redis_deployment": moving.current, "own_redis_url": moving.own}),
        after: json!({
            "redis_deployment": moving.deployment,
            "history": moving.history.as_str(),
            "keys_moved": copied,
            "stop_ms": stop_ms,
            "held_ms": held_at.elapsed().as_millis() as u64,
        }),
        projects_bumped: 1,
    };
    let scope = (Some(&account), Some(&id));
    let action = "operator.move_project";
    let change = audited(&mut tx, op, scope, action, id.as_str(), change).await?;
    tx.commit().await?;
    Ok(change)
}

/// Waits until a control plane confirmed it stopped the tenant and the old deployment counts
/// no subscriber on the tenant's control topic, at most `timeout`.
async fn released(
    hold: &Hold,
    from: &mut Connected,
    prefix: &str,
    timeout: Duration,
) -> Result<(), OperatorError> {
    let began = Instant::now();
    loop {
        let confirmed = hold.stop_confirmed().await?;
        let subscribers = if confirmed {
            control_subscribers(from, prefix).await?
        } else {
            0
        };
        if confirmed && subscribers == 0 {
            return Ok(());
        }
        if began.elapsed() >= timeout {
            let why = if confirmed {
                format!("{subscribers} process(es) of the tenant are still subscribed to its control topic on {} (running on a box whose control plane does not see the hold?)", from.shown)
            } else {
                "no control plane confirmed it stopped the tenant (is rotor-control-plane running against this database?)".to_owned()
            };
            return Err(MoveError::NotReleased {
                waited_secs: timeout.as_secs(),
                why,
            }
            .into());
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// Calls a failed move off: deletes what it put on the new deployment, ends the hold, and
/// says where the project stays. A switch that committed despite the error (a lost answer to
/// the commit) is reported as done, with its keys left in place.
async fn call_off(
    pool: &PgPool,
    moving: &Moving<'_>,
    hold: Hold,
    to: &mut Connected,
    touched_target: bool,
    cause: OperatorError,
) -> OperatorError {
    let now_on: Option<Option<String>> =
        sqlx::query_scalar("SELECT redis_deployment FROM projects WHERE id = $1")
            .bind(&moving.id)
            .fetch_optional(pool)
            .await
            .ok();
    if now_on.flatten().as_deref() == Some(moving.deployment) {
        return MoveError::Cleanup {
            deployment: moving.deployment.to_owned(),
            message: format!("the switch committed, but then: {cause}"),
        }
        .into();
    }
    let mut leftovers = String::new();
    if touched_target {
        if let Err(e) = delete(to, &moving.prefix).await {
            leftovers = format!(" (keys it copied to {:?} were not all deleted: {e}; the next move there deletes them first)", moving.deployment);
        }
    }
    if let Err(e) = hold.release().await {
        leftovers.push_str(&format!(
            " (the hold could not be ended: {e}; it lapses within {}s)",
            LEASE.as_secs()
        ));
    }
    tracing::warn!(tenant = %moving.id, error = %cause, "move called off");
    MoveError::CalledOff {
        stays_on: moving.stays_on(),
        cause: cause.to_string(),
        leftovers,
    }
    .into()
}

async fn deployment_options(
    pool: &PgPool,
    keyring: &Keyring,
    name: &str,
) -> Result<Map<String, Value>, OperatorError> {
    let sealed: Option<String> =
        sqlx::query_scalar("SELECT options FROM redis_deployments WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    let sealed = sealed.ok_or_else(|| OperatorError::UnknownDeployment(name.to_owned()))?;
    Ok(crate::redis_deployments::open(keyring, name, &sealed)?)
}
