//! Moving a Redis-engine project to another of the operator's deployments
//! (`operator move-project <project> <deployment> --history drain|drop`). The operator must
//! say what happens to the project's keys (history, presence, recovery positions): `drain`
//! copies every key under the project's prefix from the old deployment to the new one (SCAN
//! on every data node, DUMP and RESTORE with the key's remaining TTL; on a Cluster each key
//! goes to its slot's node) before the switch, `drop` leaves them behind; either way the old
//! keys are deleted once the project points at the new deployment. The switch bumps the
//! project's config version: its tenant cannot change engines live, so the reconciler
//! restarts it on the new deployment, and clients reconnect and recover from the drained
//! history. Publications made between the copy and that restart stay on the old deployment
//! and are deleted with it. The audit entry says how many keys moved and how many were
//! deleted.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates, TlsMode};
use rotor_tenant_config::redis_deployment::{is_sentinel_url, node_url, parse_sentinel_url};
use rotor_tenant_config::RedisEngine;
use serde_json::{json, Map, Value};
use sqlx::PgPool;

use crate::operator::{audited, resolve, Change, Operator, OperatorError, Target};
use crate::sealed::{Context, Keyring, Purpose};

/// How long one Redis command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys per SCAN step.
const SCAN_COUNT: usize = 500;

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
    #[error("{0}")]
    Unsupported(&'static str),
    /// A Redis command failed (the message names the node, never credentials).
    #[error("Redis {at}: {message}")]
    Redis { at: String, message: String },
    /// The switch happened; deleting the old keys did not finish.
    #[error("the project now runs on {deployment:?}, but its keys on the old deployment were not all deleted: {message}")]
    Cleanup { deployment: String, message: String },
}

fn redis_error(at: &str) -> impl Fn(redis::RedisError) -> MoveError + '_ {
    move |e| MoveError::Redis {
        at: at.to_owned(),
        message: e.to_string(),
    }
}

async fn within<T>(
    at: &str,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, MoveError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => r.map_err(redis_error(at)),
        Err(_) => Err(MoveError::Redis {
            at: at.to_owned(),
            message: format!("no answer within {COMMAND_TIMEOUT:?}"),
        }),
    }
}

/// A connected deployment: where keys are written (by key, on a Cluster) and each data node
/// to SCAN.
struct Connected {
    shown: String,
    writer: Writer,
    nodes: Vec<(String, MultiplexedConnection)>,
}

#[derive(Clone)]
enum Writer {
    Single(MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
    /// A sharded list: written only as a source.
    Sharded,
}

/// The client certificates and CA of `tls`, when it sets any.
fn certificates(tls: &rotor_tenant_config::RedisTls) -> Option<TlsCertificates> {
    let pem = |s: &str| (!s.is_empty()).then(|| s.as_bytes().to_vec());
    let root_cert = pem(&tls.server_ca_pem);
    let client_tls = match (pem(&tls.cert_pem), pem(&tls.key_pem)) {
        (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
            client_cert,
            client_key,
        }),
        _ => None,
    };
    (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// `address` as connection info, over TLS when the section asks for it.
fn info(address: &str, engine: &RedisEngine) -> Result<redis::ConnectionInfo, MoveError> {
    let mut info = node_url(address)
        .into_connection_info()
        .map_err(|_| MoveError::Unsupported("an address is not host:port or a redis:// URL"))?;
    let tls = engine.tls.applies_to(&node_url(address));
    if let ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } =
        info.addr.clone()
    {
        if tls {
            info.addr = ConnectionAddr::TcpTls {
                host,
                port,
                insecure: engine.tls.insecure_skip_verify,
                tls_params: None,
            };
        }
    }
    Ok(info)
}

fn shown(info: &redis::ConnectionInfo) -> String {
    match &info.addr {
        ConnectionAddr::Tcp(h, p) => format!("redis://{h}:{p}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        ConnectionAddr::Unix(p) => p.display().to_string(),
    }
}

async fn direct(
    info: redis::ConnectionInfo,
    engine: &RedisEngine,
) -> Result<(String, MultiplexedConnection), MoveError> {
    let at = shown(&info);
    let client = match certificates(&engine.tls) {
        Some(certs) => redis::Client::build_with_tls(info, certs),
        None => redis::Client::open(info),
    }
    .map_err(redis_error(&at))?;
    let conn = within(&at, client.get_multiplexed_async_connection()).await?;
    Ok((at, conn))
}

/// The primary a group of Sentinels names.
async fn sentinel_primary(
    sentinels: &[String],
    master: &str,
    primary: redis::RedisConnectionInfo,
    tls: bool,
    engine: &RedisEngine,
) -> Result<(String, MultiplexedConnection), MoveError> {
    let at = format!("sentinel group {master}");
    let mut addrs = Vec::new();
    for s in sentinels {
        let mut i = info(s, engine)?;
        if let (true, ConnectionAddr::Tcp(host, port)) = (tls, i.addr.clone()) {
            i.addr = ConnectionAddr::TcpTls {
                host,
                port,
                insecure: engine.tls.insecure_skip_verify,
                tls_params: None,
            };
        }
        addrs.push(i.addr);
    }
    let any_tls = addrs
        .iter()
        .any(|a| matches!(a, ConnectionAddr::TcpTls { .. }));
    let mut b = SentinelClientBuilder::new(addrs, master.to_owned(), SentinelServerType::Master)
        .map_err(redis_error(&at))?
        .set_client_to_redis_db(primary.db);
    if let Some(u) = primary.username {
        b = b.set_client_to_redis_username(u);
    }
    if let Some(p) = primary.password {
        b = b.set_client_to_redis_password(p);
    }
    if !engine.sentinel_user.is_empty() {
        b = b.set_client_to_sentinel_username(engine.sentinel_user.clone());
    }
    if !engine.sentinel_password.is_empty() {
        b = b.set_client_to_sentinel_password(engine.sentinel_password.clone());
    }
    if any_tls {
        b = b.set_client_to_redis_tls_mode(if engine.tls.insecure_skip_verify {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        });
        if let Some(certs) = certificates(&engine.tls) {
            b = b
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
    }
    let mut client = b.build().map_err(redis_error(&at))?;
    let conn = within(&at, client.get_async_connection()).await?;
    Ok((at, conn))
}

/// Connects to the deployment `options` names (any form the data plane takes).
async fn connect(options: &Map<String, Value>) -> Result<Connected, MoveError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let engine: RedisEngine = serde_json::from_value(Value::Object(options.clone()))
        .map_err(|_| MoveError::Unsupported("the deployment's options do not load"))?;
    if !engine.cluster_address.0.is_empty() {
        let seeds = engine
            .cluster_address
            .0
            .iter()
            .map(|a| info(a, &engine))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = seeds
            .iter()
            .any(|s| matches!(s.addr, ConnectionAddr::TcpTls { .. }));
        let at = format!("cluster {}", shown(&seeds[0]));
        let mut b = ClusterClientBuilder::new(seeds.clone())
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(COMMAND_TIMEOUT);
        if tls {
            b = b.tls(if engine.tls.insecure_skip_verify {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
            if let Some(certs) = certificates(&engine.tls) {
                b = b.certs(certs);
            }
        }
        let client = b.build().map_err(redis_error(&at))?;
        let cluster = within(&at, client.get_async_connection()).await?;
        // Every primary, for SCAN: reached with the seed's credentials and TLS.
        let (_, mut seed) = direct(seeds[0].clone(), &engine).await?;
        let slots: Vec<Value> = within(
            &at,
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<redis::Value>(&mut seed),
        )
        .await
        .map(|v| slot_primaries(&v))?;
        let mut nodes = Vec::new();
        for primary in slots {
            let (Some(host), Some(port)) = (primary[0].as_str(), primary[1].as_u64()) else {
                continue;
            };
            let mut i = seeds[0].clone();
            i.addr = match &i.addr {
                ConnectionAddr::TcpTls {
                    insecure,
                    tls_params,
                    ..
                } => ConnectionAddr::TcpTls {
                    host: host.to_owned(),
                    port: port as u16,
                    insecure: *insecure,
                    tls_params: tls_params.clone(),
                },
                _ => ConnectionAddr::Tcp(host.to_owned(), port as u16),
            };
            if nodes.iter().any(|(s, _)| *s == shown(&i)) {
                continue;
            }
            nodes.push(direct(i, &engine).await?);
        }
        return Ok(Connected {
            shown: at,
            writer: Writer::Cluster(cluster),
            nodes,
        });
    }
    if !engine.sentinel_address.0.is_empty() {
        let (at, conn) = sentinel_primary(
            &engine.sentinel_address.0,
            &engine.sentinel_master_name,
            redis::RedisConnectionInfo::default(),
            engine.tls.enabled,
            &engine,
        )
        .await?;
        return Ok(Connected {
            shown: at.clone(),
            writer: Writer::Single(conn.clone()),
            nodes: vec![(at, conn)],
        });
    }
    let mut nodes = Vec::new();
    for a in &engine.address.0 {
        nodes.push(if is_sentinel_url(a) {
            let url = parse_sentinel_url(a).map_err(|_| {
                MoveError::Unsupported("a redis+sentinel:// address does not parse")
            })?;
            let userinfo = if url.userinfo.is_empty() {
                String::new()
            } else {
                format!("{}@", url.userinfo)
            };
            let primary = format!("redis://{userinfo}{}/{}", url.sentinels[0], url.db)
                .into_connection_info()
                .map_err(|_| MoveError::Unsupported("invalid credentials in a Sentinel URL"))?
                .redis;
            sentinel_primary(&url.sentinels, &url.master_name, primary, url.tls, &engine).await?
        } else {
            direct(info(a, &engine)?, &engine).await?
        });
    }
    let writer = match nodes.as_slice() {
        [(_, one)] => Writer::Single(one.clone()),
        _ => Writer::Sharded,
    };
    Ok(Connected {
        shown: nodes
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join(","),
        writer,
        nodes,
    })
}

/// `[host, port]` of each slot range's primary in a `CLUSTER SLOTS` answer.
fn slot_primaries(v: &redis::Value) -> Vec<Value> {
    let redis::Value::Array(ranges) = v else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|r| match r {
            redis::Value::Array(parts) => match parts.get(2) {
                Some(redis::Value::Array(node)) => {
                    let host = match node.first() {
                        Some(redis::Value::BulkString(b)) => {
                            String::from_utf8_lossy(b).into_owned()
                        }
                        _ => return None,
                    };
                    let port = match node.get(1) {
                        Some(redis::Value::Int(p)) => *p,
                        _ => return None,
                    };
                    Some(json!([host, port]))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `prefix` as a SCAN MATCH pattern matching every key that starts with it.
fn pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('*');
    p
}

/// Every key under `prefix` on `node`.
async fn scan(
    at: &str,
    node: &mut MultiplexedConnection,
    prefix: &str,
) -> Result<Vec<Vec<u8>>, MoveError> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = within(
            at,
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern(prefix))
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(node),
        )
        .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

async fn restore(
    at: &str,
    conn: &mut impl ConnectionLike,
    key: &[u8],
    ttl_ms: i64,
    payload: &[u8],
) -> Result<(), MoveError> {
    within(
        at,
        redis::cmd("RESTORE")
            .arg(key)
            .arg(ttl_ms.max(0))
            .arg(payload)
            .arg("REPLACE")
            .query_async::<()>(conn),
    )
    .await
}

/// Copies every key under `prefix` from `from` to `to`; returns how many were copied.
async fn copy(from: &mut Connected, to: &Connected, prefix: &str) -> Result<u64, MoveError> {
    let mut copied = 0;
    for (at, node) in &mut from.nodes {
        for key in scan(at, node, prefix).await? {
            let (payload, ttl): (Option<Vec<u8>>, i64) = within(
                at,
                redis::pipe()
                    .cmd("DUMP")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async(node),
            )
            .await?;
            // Gone meanwhile (expired), or expiring as we speak: nothing to carry.
            let Some(payload) = payload else { continue };
            if ttl == -2 || ttl == 0 {
                continue;
            }
            let ttl = if ttl < 0 { 0 } else { ttl };
            match to.writer.clone() {
                Writer::Single(mut c) => restore(&to.shown, &mut c, &key, ttl, &payload).await?,
                Writer::Cluster(mut c) => restore(&to.shown, &mut c, &key, ttl, &payload).await?,
                Writer::Sharded => return Err(MoveError::Unsupported(SHARDED_TARGET)),
            }
            copied += 1;
        }
    }
    Ok(copied)
}

const SHARDED_TARGET: &str = "a sharded list of standalone servers cannot take a drained project (its shards are chosen per channel by the data plane); move to a single server, a Cluster or a Sentinel group, or drop the history";

/// Deletes every key under `prefix` on `deployment`; returns how many.
async fn delete(deployment: &mut Connected, prefix: &str) -> Result<u64, MoveError> {
    let mut deleted = 0;
    for (at, node) in &mut deployment.nodes {
        for keys in scan(at, node, prefix).await?.chunks(1) {
            // One key per command: on a Cluster node every key of a batch must share a slot.
            let n: u64 = within(at, redis::cmd("UNLINK").arg(keys).query_async(node)).await?;
            deleted += n;
        }
    }
    Ok(deleted)
}

/// Moves a Redis-engine project to `deployment`, draining or dropping its keys (see the
/// module doc). `default_redis_url` is the installation's Redis (where projects on no
/// deployment run).
pub async fn move_project(
    pool: &PgPool,
    op: &Operator,
    project: &str,
    deployment: &str,
    history: History,
    default_redis_url: Option<&str>,
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
    let prefix = prefix.unwrap_or_else(|| format!("rotor:{id}:"));
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
    let mut from = connect(&source).await?;
    let to = connect(&target).await?;
    if matches!(to.writer, Writer::Sharded) && history == History::Drain {
        return Err(MoveError::Unsupported(SHARDED_TARGET).into());
    }
    let copied = match history {
        History::Drain => copy(&mut from, &to, &prefix).await?,
        History::Drop => 0,
    };
    // The switch: the tenant restarts on the new deployment.
    let mut tx = pool.begin().await?;
    let Target::Project { id, account, slug } = resolve(&mut tx, project).await? else {
        return Err(OperatorError::NotAProject(project.to_owned()));
    };
    let still: Option<String> =
        sqlx::query_scalar("SELECT name FROM redis_deployments WHERE name = $1 FOR SHARE")
            .bind(deployment)
            .fetch_optional(&mut *tx)
            .await?;
    if still.is_none() {
        return Err(OperatorError::UnknownDeployment(deployment.to_owned()));
    }
    sqlx::query("UPDATE projects SET redis_deployment = $2, redis_url = NULL WHERE id = $1")
        .bind(&id)
        .bind(deployment)
        .execute(&mut *tx)
        .await?;
    crate::tenant::bump_config_version(&mut tx, &id).await?;
    let change = Change {
        target: format!("project {id} ({slug})"),
        before: json!({"redis_deployment": current, "own_redis_url": own.is_some()}),
        after: json!({
            "redis_deployment": deployment,
            "history": history.as_str(),
            "keys_moved": copied,
        }),
        projects_bumped: 1,
    };
    let scope = (Some(&account), Some(&id));
    let action = "operator.move_project";
    let mut change = audited(&mut tx, op, scope, action, id.as_str(), change).await?;
    tx.commit().await?;
    // The old keys go once nothing points at them any more.
    let deleted = delete(&mut from, &prefix)
        .await
        .map_err(|e| MoveError::Cleanup {
            deployment: deployment.to_owned(),
            message: e.to_string(),
        })?;
    change.after["keys_deleted"] = json!(deleted);
    Ok(change)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_literally() {
        assert_eq!(pattern("rotor:prj_1:"), "rotor:prj_1:*");
        assert_eq!(pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
