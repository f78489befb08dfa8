//! The PostgreSQL outbox consumer. The application inserts `(method, payload, partition)` rows
//! into its outbox table in the same transaction as its own change; each partition
//! `0..num_partitions` has one worker here that, in one transaction, takes the partition's
//! advisory lock (so two Rotor processes never run one partition's commands out of order),
//! selects the oldest `partition_select_limit` rows `FOR UPDATE SKIP LOCKED`, runs them in id
//! order, deletes those done and commits. A command that fails internally stops the batch: it
//! and the rows after it stay for the next pass. A full batch is followed at once by the next;
//! otherwise the worker waits `partition_poll_interval`, or less when the table's trigger
//! sends a NOTIFY on `partition_notification_channel` with the partition's number.

use std::sync::Arc;

use rotor_tenant_config::PostgresConsumer;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::Row;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{dispatch, pinned, Backoff, Outcome};
use crate::node::Node;

/// Starts the partition workers (and the listener, when there is a notification channel).
pub(super) fn start(
    node: Arc<Node>,
    name: String,
    config: PostgresConsumer,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let pool = match connect(&name, &config, &stop).await {
            Some(pool) => pool,
            None => return,
        };
        let wakes: Arc<Vec<Notify>> =
            Arc::new((0..config.num_partitions).map(|_| Notify::new()).collect());
        if !config.partition_notification_channel.is_empty() {
            tokio::spawn(listen(
                pool.clone(),
                name.clone(),
                config.partition_notification_channel.clone(),
                wakes.clone(),
                stop.clone(),
            ));
        }
        for partition in 0..config.num_partitions {
            tokio::spawn(consume(
                Worker {
                    node: node.clone(),
                    pool: pool.clone(),
                    name: name.clone(),
                    partition,
                    config: config.clone(),
                    lock_key: lock_key(&name, partition),
                },
                wakes.clone(),
                stop.clone(),
            ));
        }
        stop.cancelled().await;
        pool.close().await;
    });
}

/// Connects (retrying with backoff until `stop`): `None` once stopped. A hosted tenant's pool
/// is pinned to the address checked when it was made ([`pinned::postgres_options`]).
async fn connect(
    name: &str,
    config: &PostgresConsumer,
    stop: &CancellationToken,
) -> Option<PgPool> {
    let mut backoff = Backoff::default();
    loop {
        let attempt = match pinned::postgres_options(&config.dsn).await {
            Ok(options) => PgPoolOptions::new()
                .max_connections(config.num_partitions + 1)
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect_with(options)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => {
                pinned::log_failure(name, "postgresql", &e);
                Err(String::new())
            }
        };
        match attempt {
            Ok(pool) => return Some(pool),
            Err(e) => {
                if !e.is_empty() {
                    tracing::warn!(consumer = name, error = %e, "outbox consumer cannot reach PostgreSQL; retrying");
                }
                if !backoff.wait(stop).await {
                    return None;
                }
            }
        }
    }
}

/// The advisory lock of one partition of one consumer (a stable 64-bit FNV-1a of its name).
fn lock_key(name: &str, partition: u32) -> i64 {
    let text = format!("rotor_outbox_{name}_{partition}");
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash as i64
}

struct Worker {
    node: Arc<Node>,
    pool: PgPool,
    name: String,
    partition: u32,
    config: PostgresConsumer,
    lock_key: i64,
}

/// What one pass over a partition came to.
struct Pass {
    /// Rows done (deleted).
    done: usize,
    /// Rows selected.
    selected: usize,
    /// A command failed internally: wait before the next pass.
    retry: bool,
}

async fn consume(worker: Worker, wakes: Arc<Vec<Notify>>, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    let poll = worker.config.partition_poll_interval.0;
    let limit = worker.config.partition_select_limit as usize;
    let wake = &wakes[worker.partition as usize];
    loop {
        if stop.is_cancelled() {
            return;
        }
        match pass(&worker).await {
            Ok(Pass { retry: true, .. }) => {
                if !backoff.wait(&stop).await {
                    return;
                }
            }
            Ok(Pass { done, selected, .. }) => {
                backoff.reset();
                if done > 0 {
                    tracing::debug!(consumer = %worker.name, partition = worker.partition, done, "outbox rows consumed");
                }
                if selected < limit {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(poll) => {}
                        _ = wake.notified() => {}
                    }
                }
            }
            Err(e) => {
                tracing::warn!(consumer = %worker.name, partition = worker.partition, error = %e, "outbox pass failed; retrying");
                if !backoff.wait(&stop).await {
                    return;
                }
            }
        }
    }
}

async fn pass(w: &Worker) -> Result<Pass, sqlx::Error> {
    let mut tx = w.pool.begin().await?;
    if w.config.use_try_lock {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(w.lock_key)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(Pass {
                done: 0,
                selected: 0,
                retry: false,
            });
        }
    } else {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(w.lock_key)
            .execute(&mut *tx)
            .await?;
    }
    // The table name was checked at load to be a plain (optionally qualified) identifier.
    let select = format!(
        "SELECT id, method, payload::text AS payload FROM {} WHERE partition = $1 \
         ORDER BY id ASC LIMIT $2 FOR UPDATE SKIP LOCKED",
        w.config.outbox_table_name
    );
    let rows = sqlx::query(&select)
        .bind(w.partition as i32)
        .bind(i64::from(w.config.partition_select_limit))
        .fetch_all(&mut *tx)
        .await?;
    let selected = rows.len();
    let mut done: Vec<i64> = Vec::with_capacity(selected);
    let mut retry = false;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let method: String = row.try_get("method")?;
        let payload: String = row.try_get("payload")?;
        match dispatch(&w.node, &w.name, &method, payload.as_bytes()).await {
            Outcome::Done => done.push(id),
            Outcome::Retry => {
                retry = true;
                break;
            }
        }
    }
    if !done.is_empty() {
        let delete = format!(
            "DELETE FROM {} WHERE id = ANY($1)",
            w.config.outbox_table_name
        );
        sqlx::query(&delete).bind(&done).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Pass {
        done: done.len(),
        selected,
        retry,
    })
}

/// Wakes a partition's worker when the table's trigger says it has new rows.
async fn listen(
    pool: PgPool,
    name: String,
    channel: String,
    wakes: Arc<Vec<Notify>>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(consumer = %name, error = %e, "outbox listener cannot connect; polling meanwhile");
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(consumer = %name, error = %e, "outbox LISTEN failed; polling meanwhile");
            if !backoff.wait(&stop).await {
                return;
            }
            continue;
        }
        backoff.reset();
        // A row inserted before LISTEN took effect (at start, or while the listener was
        // reconnecting) sent its NOTIFY to nobody: one pass of every partition now takes it
        // instead of the next poll.
        wakes.iter().for_each(Notify::notify_one);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.recv() => n,
            };
            match next {
                Ok(n) => {
                    let partition = n.payload().trim().parse::<usize>().ok();
                    match partition.and_then(|p| wakes.get(p)) {
                        Some(wake) => wake.notify_one(),
                        // Not a partition number: wake them all.
                        None => wakes.iter().for_each(Notify::notify_one),
                    }
                }
                Err(e) => {
                    tracing::warn!(consumer = %name, error = %e, "outbox listener lost; reconnecting");
                    break;
                }
            }
        }
    }
}
