//! How a hosted tenant's consumers reach their servers. Standalone, a consumer connects
//! wherever its config says. A hosted tenant (`ROTOR_EGRESS=public`) may reach only the
//! customer's own servers on public addresses: each connection resolves the host once, checks
//! every address and port ([`rotor_tenant_config::consumer_egress`]) and dials only the
//! checked address, so neither a literal private address, a name resolving to one, nor a name
//! that changes its answer between check and connect (DNS rebinding) ever reaches Rotor's own
//! PostgreSQL, Redis or NATS, another tenant's or anything on the box's network.
//!
//! Per client library:
//! - PostgreSQL (sqlx): the DSN's host is replaced by the checked address. This build's client
//!   has no TLS, so `sslmode` `require`/`verify-ca`/`verify-full` are refused for hosted
//!   projects (a plaintext connection is never made in their place); Unix sockets and the
//!   file options (`sslrootcert`, `sslcert`, `sslkey`) are refused; a DSN without a password
//!   sends an empty one rather than look in a password file of the box.
//! - Redis: the TCP connection to the checked address is made here, and TLS runs over it with
//!   the address's original host as the server name (verified against the webpki roots or
//!   `tls.server_ca_pem`), so verification keeps working. `insecure_skip_verify` is refused.
//! - NATS (async-nats): the URL's host is replaced by the checked address and servers a server
//!   advertises are ignored (a server could otherwise send the client to a private address).
//!   async-nats verifies TLS against the host it dials, so `tls://` with a host name cannot be
//!   pinned and is refused (a `tls://` IP address with a certificate for it works); so is
//!   `credentials_file` (a file of the box).
//!
//! A tenant the control plane runs with private egress allowed (`ROTOR_TENANT_PRIVATE_EGRESS`
//! on the control plane: `ROTOR_EGRESS=any` with `ROTOR_TENANT_ID` set) keeps every rule above
//! but the address and port rule: its consumers may reach private addresses on any port, yet
//! never the service's own databases (`ROTOR_EGRESS_DENY`), a Unix socket or a file of the box.
//!
//! The check runs whenever a consumer connects anew: a Redis worker or the NATS consumer that
//! lost its server resolves again; a PostgreSQL consumer's pool keeps the address it checked
//! at start (its own reconnects dial that address), so a customer server that moves is
//! followed at the next config change or restart of the project.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo};
use rotor_tenant_config::consumer_egress::{self, PinError};
use rotor_tenant_config::{NatsJetStreamConsumer, RedisStreamConsumer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::egress::Egress;

/// Why a consumer did not connect.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The egress rule refused the server's address.
    #[error("{0}")]
    Refused(#[from] PinError),
    /// An option a hosted project's consumer may not use.
    #[error("{0}")]
    NotHosted(&'static str),
    #[error("the address is not valid: {0}")]
    BadAddress(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

impl DialError {
    /// Whether the hosted rule refused the connection (logged as such).
    pub fn is_refusal(&self) -> bool {
        matches!(self, DialError::Refused(e) if e.is_refusal())
            || matches!(self, DialError::NotHosted(_))
    }
}

/// Whether this process runs a hosted tenant (consumers follow the rule above).
pub fn hosted() -> bool {
    Egress::current() == Egress::PublicOnly
}

/// Whether consumers are checked at all: a hosted tenant, or any tenant a control plane
/// supervises (it sets `ROTOR_TENANT_ID`), private egress or not. Standalone, they are not.
pub fn checked() -> bool {
    static SUPERVISED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    hosted()
        || *SUPERVISED
            .get_or_init(|| std::env::var_os("ROTOR_TENANT_ID").is_some_and(|id| !id.is_empty()))
}

/// Logs a failed connection: a refusal at error level (the customer must change the config),
/// anything else as the retryable warning it is.
pub fn log_failure(consumer: &str, kind: &str, e: &DialError) {
    if e.is_refusal() {
        tracing::error!(consumer, kind, error = %e, "consumer connection refused by the hosted egress rule; nothing is consumed");
    } else {
        tracing::warn!(consumer, kind, error = %e, "consumer cannot reach its server; retrying");
    }
}

/// The address to dial for `host`: public only on the consumer ports for a hosted tenant,
/// any with private egress; never one of the service's own.
async fn pin(host: &str, port: u16) -> Result<SocketAddr, DialError> {
    let denied = consumer_egress::denied();
    if !hosted() {
        return Ok(consumer_egress::pin_private(host, port, denied).await?);
    }
    Ok(consumer_egress::pin(host, port, consumer_egress::consumer_ports(), denied).await?)
}

/// The sqlx options for a PostgreSQL consumer's DSN: as given standalone; pinned to the
/// checked address for a hosted tenant.
pub async fn postgres_options(dsn: &str) -> Result<PgConnectOptions, DialError> {
    let parsed =
        PgConnectOptions::from_str(dsn).map_err(|e| DialError::BadAddress(e.to_string()))?;
    if !checked() {
        return Ok(parsed);
    }
    if let Some(why) = consumer_egress::hosted_dsn_refusal(dsn) {
        return Err(DialError::NotHosted(why));
    }
    let url = url::Url::parse(dsn).map_err(|e| DialError::BadAddress(e.to_string()))?;
    if parsed.get_socket().is_some() {
        return Err(DialError::NotHosted(consumer_egress::SOCKET_REFUSED));
    }
    if matches!(
        parsed.get_ssl_mode(),
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    ) {
        return Err(DialError::NotHosted(consumer_egress::SSLMODE_REFUSED));
    }
    let addr = pin(parsed.get_host(), parsed.get_port()).await?;
    let mut options = parsed.host(&addr.ip().to_string()).port(addr.port());
    if url.password().is_none() && !url.query_pairs().any(|(k, _)| k == "password") {
        options = options.password("");
    }
    Ok(options)
}

/// A Redis connection for a stream consumer (`address` is its one server).
pub async fn redis_connection(
    config: &RedisStreamConsumer,
    settings: AsyncConnectionConfig,
) -> Result<MultiplexedConnection, DialError> {
    let address = config.address.0[0].as_str();
    if !checked() {
        let client =
            crate::engine::redis::tls::client(address, &config.tls, "consumers[].redis_stream.tls")
                .map_err(|e| DialError::BadAddress(e.to_string()))?;
        return Ok(client
            .get_multiplexed_async_connection_with_config(&settings)
            .await?);
    }
    let info = address
        .into_connection_info()
        .map_err(|_| DialError::BadAddress("not a redis:// or rediss:// URL".into()))?;
    let (host, port) = match &info.addr {
        ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => {
            if *insecure {
                return Err(DialError::NotHosted(
                    consumer_egress::REDIS_INSECURE_REFUSED,
                ));
            }
            (host.clone(), *port)
        }
        ConnectionAddr::Unix(_) => {
            return Err(DialError::NotHosted(consumer_egress::SOCKET_REFUSED))
        }
    };
    if config.tls.insecure_skip_verify {
        return Err(DialError::NotHosted(
            consumer_egress::REDIS_INSECURE_REFUSED,
        ));
    }
    if config.tls.sets_a_file() {
        return Err(DialError::NotHosted(
            "TLS options naming files are not available to hosted projects: give PEM text",
        ));
    }
    let addr = pin(&host, port).await?;
    redis_over(config, settings, addr).await
}

/// A Redis connection for a stream consumer made over a TCP connection to `addr` (the checked
/// address), TLS when the address or section asks for it, verified against the address's own
/// host name; the hosted half of [`redis_connection`], after the check.
pub async fn redis_over(
    config: &RedisStreamConsumer,
    settings: AsyncConnectionConfig,
    addr: SocketAddr,
) -> Result<MultiplexedConnection, DialError> {
    let address = config.address.0[0].as_str();
    let info = address
        .into_connection_info()
        .map_err(|_| DialError::BadAddress("not a redis:// or rediss:// URL".into()))?;
    let (host, tls) = match &info.addr {
        ConnectionAddr::Tcp(host, _) => (host.clone(), config.tls.enabled),
        ConnectionAddr::TcpTls { host, .. } => (host.clone(), true),
        ConnectionAddr::Unix(_) => {
            return Err(DialError::NotHosted(consumer_egress::SOCKET_REFUSED))
        }
    };
    let timeout = config.connect_timeout.0;
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    if !tls {
        return start_redis(&info.redis, tcp, settings).await;
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(redis_tls_config(config)?));
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| DialError::Tls(e.to_string()))?;
    let stream = tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    start_redis(&info.redis, stream, settings).await
}

async fn start_redis<C>(
    info: &redis::RedisConnectionInfo,
    stream: C,
    settings: AsyncConnectionConfig,
) -> Result<MultiplexedConnection, DialError>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (conn, driver) = MultiplexedConnection::new_with_config(info, stream, settings).await?;
    tokio::spawn(driver);
    Ok(conn)
}

/// rustls settings for a hosted Redis consumer: the webpki roots or `server_ca_pem`, and the
/// client certificate when given (PEM text only).
fn redis_tls_config(config: &RedisStreamConsumer) -> Result<rustls::ClientConfig, DialError> {
    let tls = &config.tls;
    let bad = |what: &str| {
        DialError::Tls(format!(
            "consumers[].redis_stream.tls.{what} holds no valid PEM"
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    if tls.server_ca_pem.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for cert in CertificateDer::pem_slice_iter(tls.server_ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(|_| bad("server_ca_pem"))?)
                .map_err(|_| bad("server_ca_pem"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DialError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    if tls.cert_pem.is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("cert_pem"))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|_| bad("key_pem"))?;
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| DialError::Tls(e.to_string()))
}

/// The URL a NATS consumer connects to: as given standalone; for a hosted tenant, with the
/// host replaced by the checked address (refused when that would lose TLS name verification).
pub async fn nats_url(config: &NatsJetStreamConsumer) -> Result<String, DialError> {
    if !checked() {
        return Ok(config.url.clone());
    }
    if !config.credentials_file.is_empty() {
        return Err(DialError::NotHosted(
            "credentials_file names a file of the box: not available to hosted projects",
        ));
    }
    if let Some(why) = consumer_egress::hosted_nats_url_refusal(&config.url) {
        return Err(DialError::NotHosted(why));
    }
    let mut url = url::Url::parse(&config.url).map_err(|e| DialError::BadAddress(e.to_string()))?;
    let host = url
        .host_str()
        .ok_or_else(|| DialError::BadAddress("no host".into()))?
        .to_owned();
    let addr = pin(&host, url.port().unwrap_or(4222)).await?;
    pinned_url(&mut url, addr)
}

/// `url` with its host and port replaced by `addr` (user, password and scheme kept).
fn pinned_url(url: &mut url::Url, addr: SocketAddr) -> Result<String, DialError> {
    url.set_ip_host(addr.ip())
        .map_err(|_| DialError::BadAddress("the host cannot be replaced".into()))?;
    url.set_port(Some(addr.port()))
        .map_err(|_| DialError::BadAddress("the port cannot be set".into()))?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_url_is_pinned_to_the_checked_address_with_its_credentials() {
        let pin = |url: &str, addr: &str| {
            pinned_url(&mut url::Url::parse(url).unwrap(), addr.parse().unwrap()).unwrap()
        };
        assert_eq!(
            pin("nats://u:p@nats.example.com:4222", "203.0.113.5:4222"),
            "nats://u:p@203.0.113.5:4222"
        );
        assert_eq!(
            pin("nats://nats.example.com", "[2001:db8::5]:4222"),
            "nats://[2001:db8::5]:4222"
        );
        assert_eq!(
            pin("tls://198.51.100.7:4443", "198.51.100.7:4443"),
            "tls://198.51.100.7:4443"
        );
    }
}
