//! The keys of a project on a deployment: every key under its prefix found with SCAN on each
//! data node, copied to another deployment with DUMP and RESTORE (the remaining TTL kept; on a
//! Cluster each key goes to its slot's node) or deleted, and the count of processes still
//! subscribed to the tenant's control topic there (the sign a tenant process, on any box,
//! still uses the deployment).

use redis::aio::{ConnectionLike, MultiplexedConnection};

use super::connect::{within, Connected, Writer};
use super::MoveError;

/// Keys per SCAN step.
const SCAN_COUNT: usize = 500;

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
pub(super) async fn copy(
    from: &mut Connected,
    to: &Connected,
    prefix: &str,
) -> Result<u64, MoveError> {
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

pub(super) const SHARDED_TARGET: &str = "a sharded list of standalone servers cannot take a drained project (its shards are chosen per channel by the data plane); move to a single server, a Cluster or a Sentinel group, or drop the history";

/// Deletes every key under `prefix` on `deployment`; returns how many.
pub(super) async fn delete(deployment: &mut Connected, prefix: &str) -> Result<u64, MoveError> {
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

/// How many connections are subscribed to the tenant's control topic on `deployment`: every
/// process of a Redis-engine tenant subscribes to it (on the first shard; on a Cluster with
/// SSUBSCRIBE, in its own slot), and only while it runs. Summed over every data node.
pub(super) async fn control_subscribers(
    deployment: &mut Connected,
    prefix: &str,
) -> Result<u64, MoveError> {
    let (command, topic) = match deployment.writer {
        Writer::Cluster(_) => ("SHARDNUMSUB", format!("{prefix}{{control}}")),
        _ => ("NUMSUB", format!("{prefix}control")),
    };
    let mut total = 0;
    for (at, node) in &mut deployment.nodes {
        let reply: redis::Value = within(
            at,
            redis::cmd("PUBSUB")
                .arg(command)
                .arg(&topic)
                .query_async(node),
        )
        .await?;
        total += subscriber_count(&reply).ok_or_else(|| MoveError::Redis {
            at: at.clone(),
            message: format!("PUBSUB {command} answered {reply:?}"),
        })?;
    }
    Ok(total)
}

/// The count in a `PUBSUB NUMSUB topic` answer (`[topic, count]`, or a map in RESP3).
fn subscriber_count(reply: &redis::Value) -> Option<u64> {
    let count = match reply {
        redis::Value::Array(parts) => parts.get(1)?,
        redis::Value::Map(pairs) => &pairs.first()?.1,
        _ => return None,
    };
    match count {
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Which server processes (by `run_id`) and databases `deployment` writes to: two deployments
/// sharing one are the same keys under a project's prefix, and a move between them would
/// delete what it copied. A server that does not say (`INFO` or `CLIENT INFO` refused, as
/// some managed services do, or Redis before 6.2) is known by its address and database 0.
pub(super) async fn keyspaces(deployment: &mut Connected) -> Vec<(String, i64)> {
    let mut spaces = Vec::new();
    for (at, node) in &mut deployment.nodes {
        let info = |cmd: &'static str, arg: &'static str| {
            let mut node = node.clone();
            let at = at.clone();
            async move {
                within(
                    &at,
                    redis::cmd(cmd).arg(arg).query_async::<String>(&mut node),
                )
                .await
                .ok()
            }
        };
        let server = info("INFO", "server").await;
        let client = info("CLIENT", "INFO").await;
        let run_id = server
            .as_deref()
            .and_then(|s| field(s, "run_id:", '\n'))
            .map_or_else(|| format!("address {at}"), |id| format!("run_id {id}"));
        let db = client
            .as_deref()
            .and_then(|c| field(c, "db=", ' '))
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        spaces.push((run_id, db));
    }
    spaces
}

/// The value after `name` in `text`'s `sep`-separated fields.
fn field(text: &str, name: &str, sep: char) -> Option<String> {
    text.split(sep)
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(name))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_counts_are_read_from_both_protocols() {
        use redis::Value as V;
        let resp2 = V::Array(vec![V::BulkString(b"rotor:p:control".to_vec()), V::Int(2)]);
        assert_eq!(subscriber_count(&resp2), Some(2));
        let resp3 = V::Map(vec![(V::BulkString(b"t".to_vec()), V::Int(0))]);
        assert_eq!(subscriber_count(&resp3), Some(0));
        assert_eq!(subscriber_count(&V::Nil), None);
    }

    #[test]
    fn keyspace_fields_are_read_from_info_answers() {
        let server = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:6379\r\n";
        assert_eq!(field(server, "run_id:", '\n').as_deref(), Some("abc123"));
        let client = "id=7 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=8 name= db=5 sub=0\n";
        assert_eq!(field(client, "db=", ' ').as_deref(), Some("5"));
        assert_eq!(field(client, "nothing=", ' '), None);
    }

    #[test]
    fn prefixes_match_literally() {
        assert_eq!(pattern("rotor:prj_1:"), "rotor:prj_1:*");
        assert_eq!(pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
