//! Connections to a Redis deployment for a move, in every form the data plane takes: one
//! server or a sharded list of them (each possibly a Sentinel-named primary), a Redis Cluster
//! (keys written through the cluster client, every primary reached directly to SCAN) or a
//! Sentinel group, with the deployment's credentials and TLS. Errors name the node, never a
//! credential.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates, TlsMode};
use rotor_tenant_config::redis_deployment::{is_sentinel_url, node_url, parse_sentinel_url};
use rotor_tenant_config::RedisEngine;
use serde_json::{json, Map, Value};

use super::MoveError;

/// How long one Redis command may take.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn redis_error(at: &str) -> impl Fn(redis::RedisError) -> MoveError + '_ {
    move |e| MoveError::Redis {
        at: at.to_owned(),
        message: e.to_string(),
    }
}

pub(super) async fn within<T>(
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
pub(super) struct Connected {
    pub(super) shown: String,
    pub(super) writer: Writer,
    pub(super) nodes: Vec<(String, MultiplexedConnection)>,
}

#[derive(Clone)]
pub(super) enum Writer {
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
pub(super) async fn connect(options: &Map<String, Value>) -> Result<Connected, MoveError> {
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
