//! `TestRedis`: a unique key prefix on the shared Redis for one test; its keys are deleted
//! afterwards.

use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

use crate::cleanup::run_in_drop;
use crate::paths;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DROP_TIMEOUT: Duration = Duration::from_secs(15);
const SCAN_BATCH: usize = 1000;

/// A key prefix `rotor-test:<uuid>:` on the Redis of `REDIS_URL`, with a connection to it.
///
/// Hand [`prefix`](Self::prefix) to the process under test as its key prefix; dropping this
/// deletes every key that starts with it (`SCAN MATCH` + `DEL`). The drop blocks for at most
/// ~15 s and reports failures on stderr instead of panicking.
pub struct TestRedis {
    url: String,
    prefix: String,
    client: redis::Client,
    connection: MultiplexedConnection,
}

impl TestRedis {
    /// Connects to `REDIS_URL` (default [`paths::DEFAULT_REDIS_URL`]) with a fresh prefix.
    pub async fn new() -> Result<Self> {
        Self::new_on(&paths::redis_url()).await
    }

    /// Connects to the Redis at `url` with a fresh prefix.
    pub async fn new_on(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).context("parsing the Redis URL")?;
        let mut connection = connect(&client).await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .context("pinging Redis")?;
        Ok(Self {
            url: url.to_owned(),
            prefix: format!("rotor-test:{}:", Uuid::new_v4().simple()),
            client,
            connection,
        })
    }

    /// The Redis URL, to hand to a spawned process.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix, `rotor-test:<32 hex digits>:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `suffix` under this prefix.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// A connection to the Redis (cheap to clone; clones share one socket).
    pub fn connection(&self) -> MultiplexedConnection {
        self.connection.clone()
    }

    /// The client, to open further connections (e.g. for pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Every key currently under this prefix, sorted.
    pub async fn keys(&self) -> Result<Vec<String>> {
        let mut connection = self.connection();
        let mut keys: Vec<String> = scan_prefix(&mut connection, &self.prefix)
            .await?
            .into_iter()
            .map(|key| String::from_utf8_lossy(&key).into_owned())
            .collect();
        keys.sort();
        Ok(keys)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let client = self.client.clone();
        let prefix = self.prefix.clone();
        let what = format!("deleting Redis keys under {prefix}");
        run_in_drop(&what, DROP_TIMEOUT, move || async move {
            let mut connection = connect(&client).await?;
            loop {
                let keys = scan_prefix(&mut connection, &prefix).await?;
                if keys.is_empty() {
                    return Ok(());
                }
                for batch in keys.chunks(SCAN_BATCH) {
                    redis::cmd("DEL")
                        .arg(batch)
                        .query_async::<()>(&mut connection)
                        .await
                        .context("DEL")?;
                }
            }
        });
    }
}

async fn connect(client: &redis::Client) -> Result<MultiplexedConnection> {
    let hint = "is Redis running? `scripts/ensure-services.sh` starts it";
    tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .with_context(|| format!("connecting to Redis timed out ({hint})"))?
        .with_context(|| format!("connecting to Redis ({hint})"))
}

/// Every key starting with `prefix`, via a full `SCAN MATCH` iteration. The prefixes this module
/// makes hold no glob metacharacters, so the pattern is the prefix plus `*`.
async fn scan_prefix(connection: &mut MultiplexedConnection, prefix: &str) -> Result<Vec<Vec<u8>>> {
    let pattern = format!("{prefix}*");
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .query_async(connection)
            .await
            .context("SCAN")?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
