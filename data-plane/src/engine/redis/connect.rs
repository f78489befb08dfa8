//! Making the engine's shards from `engine.redis`: a standalone server per address (a
//! `ConnectionManager` and a PUB/SUB task), the primary a group of Sentinels names for a
//! `redis+sentinel://` address or for `sentinel_address` (a [`SentinelConn`] and a PUB/SUB
//! task that asks the Sentinels again after each loss), or a Redis Cluster: one cluster
//! connection and one sharded PUB/SUB task, shared by [`CLUSTER_BUCKETS`] bucket shards so that
//! user status and webhook keys spread over the cluster's slots. Every form is proven with a
//! PING before the engine starts, and the node control topic is subscribed on the first shard.

use std::sync::Arc;
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsMode};
use rotor_tenant_config::redis_deployment::{is_sentinel_url, node_url, parse_sentinel_url};
use rotor_tenant_config::RedisTls;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, SentinelConn};
use super::keys::{Keys, CLUSTER_BUCKETS};
use super::subscriber::{self, Source, SubCmd};
use super::{cluster_sub, tls, unavailable, within, Shard, OP_TIMEOUT};
use crate::engine::{BrokerEvents, EngineError};

const TLS_SECTION: &str = "engine.redis.tls";

/// The shards of `config`'s deployment and the key names for it.
pub(super) async fn shards(
    config: &rotor_tenant_config::RedisEngine,
    events: Arc<dyn BrokerEvents>,
    stop: CancellationToken,
) -> Result<(Vec<Shard>, Keys), EngineError> {
    if !config.cluster_address.0.is_empty() {
        let keys = Keys::clustered(&config.prefix);
        let shards = cluster(config, &keys, events, stop).await?;
        return Ok((shards, keys));
    }
    let keys = Keys::new(&config.prefix);
    let mut shards = Vec::new();
    if !config.sentinel_address.0.is_empty() {
        let spec = Sentinels {
            sentinels: config
                .sentinel_address
                .0
                .iter()
                .map(|a| node_url(a))
                .collect(),
            master_name: config.sentinel_master_name.clone(),
            primary: redis::RedisConnectionInfo::default(),
            tls: config.tls.enabled,
        };
        let (conn, source) = sentinel(&spec, config).await?;
        shards.push(shard(conn, source, &keys, &events, &stop, true).await?);
        return Ok((shards, keys));
    }
    if config.address.0.is_empty() {
        return Err(unavailable("no redis address configured"));
    }
    for (i, address) in config.address.0.iter().enumerate() {
        let (conn, source) = if is_sentinel_url(address) {
            let url = parse_sentinel_url(address).map_err(unavailable)?;
            let spec = Sentinels::of_url(url)?;
            sentinel(&spec, config).await?
        } else {
            direct(address, &config.tls).await?
        };
        shards.push(shard(conn, source, &keys, &events, &stop, i == 0).await?);
    }
    Ok((shards, keys))
}

/// A shard: its PUB/SUB task started, subscribed to the control topic when `first`.
async fn shard(
    conn: Conn,
    source: Source,
    keys: &Keys,
    events: &Arc<dyn BrokerEvents>,
    stop: &CancellationToken,
    first: bool,
) -> Result<Shard, EngineError> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(subscriber::run(
        source,
        keys.clone(),
        events.clone(),
        rx,
        stop.clone(),
    ));
    if first {
        subscribe_control(&tx, keys).await?;
    }
    Ok(Shard { conn, sub: tx })
}

/// Every node listens to the tenant's control topic on the first shard.
async fn subscribe_control(
    tx: &mpsc::UnboundedSender<SubCmd>,
    keys: &Keys,
) -> Result<(), EngineError> {
    let (ack_tx, ack_rx) = oneshot::channel();
    tx.send(SubCmd::Subscribe(keys.control_topic(), ack_tx))
        .map_err(unavailable)?;
    match tokio::time::timeout(OP_TIMEOUT, ack_rx).await {
        Ok(Ok(Ok(()))) => Ok(()),
        _ => Err(unavailable("cannot subscribe to the control topic")),
    }
}

/// An unavailable server's error naming the server (`shown`), and TLS when `over_tls`.
fn naming(e: EngineError, shown: &str, over_tls: bool) -> EngineError {
    match e {
        EngineError::Unavailable(reason) if over_tls => {
            unavailable(format!("redis {shown}: TLS connection failed: {reason}"))
        }
        EngineError::Unavailable(reason) => unavailable(format!("redis {shown}: {reason}")),
        other => other,
    }
}

/// Proves `conn` with a PING, naming `shown` (and TLS when `over_tls`) on failure.
async fn ping(conn: &mut Conn, shown: &str, over_tls: bool) -> Result<(), EngineError> {
    // With TLS, a server that wants a client certificate may only close the connection
    // after the handshake: the PING shows it.
    let _: String = within(redis::cmd("PING").query_async(conn))
        .await
        .map_err(|e| naming(e, shown, over_tls))?;
    Ok(())
}

/// A standalone server.
async fn direct(address: &str, tls_config: &RedisTls) -> Result<(Conn, Source), EngineError> {
    let client = tls::client(address, tls_config, TLS_SECTION).map_err(unavailable)?;
    let over_tls = tls::uses_tls(&client);
    let shown = tls::shown_address(&client);
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(2)
        // Without a cap the retry delays are 1 s then 60 s (redis-rs's factor 100 on
        // backon's 1 s minimum): after an outage of more than a second, every command
        // waited out that minute and timed out although Redis was back.
        .set_max_delay(500);
    let manager = within(redis::aio::ConnectionManager::new_with_config(
        client.clone(),
        config,
    ))
    .await
    .map_err(|e| naming(e, &shown, over_tls))?;
    let mut conn = Conn::Single(manager);
    ping(&mut conn, &shown, over_tls).await?;
    Ok((conn, Source::Fixed(client)))
}

/// A Sentinel-managed primary, as configured.
struct Sentinels {
    /// The Sentinels' URLs.
    sentinels: Vec<String>,
    master_name: String,
    /// The primary's credentials and database.
    primary: redis::RedisConnectionInfo,
    /// TLS to the Sentinels and the primary (besides `engine.redis.tls.enabled`).
    tls: bool,
}

impl Sentinels {
    fn of_url(
        url: rotor_tenant_config::redis_deployment::SentinelUrl,
    ) -> Result<Self, EngineError> {
        // The credentials and database, percent-decoded as in any redis:// URL.
        let userinfo = if url.userinfo.is_empty() {
            String::new()
        } else {
            format!("{}@", url.userinfo)
        };
        let primary = format!("redis://{userinfo}{}/{}", url.sentinels[0], url.db)
            .into_connection_info()
            .map_err(|_| {
                unavailable(
                    "engine.redis.address: invalid credentials in a redis+sentinel:// address",
                )
            })?
            .redis;
        let scheme = if url.tls { "rediss" } else { "redis" };
        Ok(Self {
            sentinels: url
                .sentinels
                .iter()
                .map(|s| format!("{scheme}://{s}"))
                .collect(),
            master_name: url.master_name,
            primary,
            tls: url.tls,
        })
    }
}

/// The Sentinels' client for `spec`, with TLS and credentials as configured.
async fn sentinel(
    spec: &Sentinels,
    config: &rotor_tenant_config::RedisEngine,
) -> Result<(Conn, Source), EngineError> {
    let tls_on = spec.tls || config.tls.enabled;
    let insecure = config.tls.insecure_skip_verify;
    let mut addrs = Vec::with_capacity(spec.sentinels.len());
    for s in &spec.sentinels {
        let info = s.as_str().into_connection_info().map_err(|_| {
            unavailable("engine.redis: a Sentinel address is not host:port or a redis:// URL")
        })?;
        let tls_here = tls_on || matches!(info.addr, ConnectionAddr::TcpTls { .. });
        addrs.push(match info.addr {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }
                if tls_here =>
            {
                ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure,
                    tls_params: None,
                }
            }
            other => other,
        });
    }
    let any_tls = addrs
        .iter()
        .any(|a| matches!(a, ConnectionAddr::TcpTls { .. }));
    let shown = format!(
        "{}+sentinel://{}/{}",
        if any_tls { "rediss" } else { "redis" },
        addrs
            .iter()
            .map(|a| match a {
                ConnectionAddr::Tcp(h, p)
                | ConnectionAddr::TcpTls {
                    host: h, port: p, ..
                } => {
                    format!("{h}:{p}")
                }
                ConnectionAddr::Unix(p) => p.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        spec.master_name
    );
    let mut builder =
        SentinelClientBuilder::new(addrs, spec.master_name.clone(), SentinelServerType::Master)
            .map_err(unavailable)?
            .set_client_to_redis_db(spec.primary.db);
    if let Some(user) = &spec.primary.username {
        builder = builder.set_client_to_redis_username(user.clone());
    }
    if let Some(password) = &spec.primary.password {
        builder = builder.set_client_to_redis_password(password.clone());
    }
    if !config.sentinel_user.is_empty() {
        builder = builder.set_client_to_sentinel_username(config.sentinel_user.clone());
    }
    if !config.sentinel_password.is_empty() {
        builder = builder.set_client_to_sentinel_password(config.sentinel_password.clone());
    }
    if any_tls {
        tls::warn_if_insecure(TLS_SECTION, &shown, insecure);
        let mode = if insecure {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        };
        builder = builder.set_client_to_redis_tls_mode(mode);
        if let Some(certs) = tls::certificates(&config.tls, TLS_SECTION).map_err(unavailable)? {
            builder = builder
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
    }
    let client = builder
        .build()
        .map_err(|e| unavailable(format!("redis {shown}: {e}")))?;
    let client = Arc::new(tokio::sync::Mutex::new(client));
    let mut conn = Conn::Sentinel(SentinelConn::new(client.clone()));
    ping(&mut conn, &shown, any_tls).await?;
    Ok((conn, Source::Sentinel(client)))
}

/// A Redis Cluster: one connection, one sharded PUB/SUB task, [`CLUSTER_BUCKETS`] shards.
async fn cluster(
    config: &rotor_tenant_config::RedisEngine,
    keys: &Keys,
    events: Arc<dyn BrokerEvents>,
    stop: CancellationToken,
) -> Result<Vec<Shard>, EngineError> {
    let tls_config = &config.tls;
    let tls_on = config
        .cluster_address
        .0
        .iter()
        .any(|a| tls_config.applies_to(a) || node_url(a).starts_with("rediss://"));
    let insecure = tls_config.insecure_skip_verify;
    let mut seeds = Vec::with_capacity(config.cluster_address.0.len());
    for a in &config.cluster_address.0 {
        let mut info = node_url(a).into_connection_info().map_err(|_| {
            unavailable("engine.redis.cluster_address: an entry is not host:port or a redis:// URL")
        })?;
        if let ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } =
            info.addr.clone()
        {
            if tls_on {
                info.addr = ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure,
                    tls_params: None,
                };
            }
        }
        seeds.push(info);
    }
    let shown = format!(
        "{}cluster {}",
        if tls_on { "TLS " } else { "" },
        config
            .cluster_address
            .0
            .iter()
            .map(|a| a.rsplit('@').next().unwrap_or(a).trim().to_owned())
            .collect::<Vec<_>>()
            .join(",")
    );
    let certs = if tls_on {
        tls::warn_if_insecure(TLS_SECTION, &shown, insecure);
        tls::certificates(tls_config, TLS_SECTION).map_err(unavailable)?
    } else {
        None
    };
    let builder = |seeds: Vec<redis::ConnectionInfo>| {
        let mut b = ClusterClientBuilder::new(seeds)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(500);
        if tls_on {
            b = b.tls(if insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
            if let Some(certs) = certs.clone() {
                b = b.certs(certs);
            }
        }
        b
    };
    let named = |e: redis::RedisError| unavailable(format!("redis {shown}: {e}"));
    let client = builder(seeds.clone()).build().map_err(named)?;
    let conn = within(client.get_async_connection())
        .await
        .map_err(|e| match e {
            EngineError::Unavailable(reason) => unavailable(format!("redis {shown}: {reason}")),
            other => other,
        })?;
    let mut conn = Conn::Cluster(conn);
    ping(&mut conn, &shown, tls_on).await?;
    let (push_tx, push_rx) = mpsc::unbounded_channel();
    let sub_client = builder(seeds)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(push_tx)
        .build()
        .map_err(named)?;
    let sub_conn = within(sub_client.get_async_connection())
        .await
        .map_err(|e| unavailable(format!("redis {shown}: pub/sub: {e}")))?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(cluster_sub::run(
        sub_conn,
        push_rx,
        keys.clone(),
        events,
        rx,
        stop,
    ));
    subscribe_control(&tx, keys).await?;
    Ok((0..CLUSTER_BUCKETS)
        .map(|_| Shard {
            conn: conn.clone(),
            sub: tx.clone(),
        })
        .collect())
}
