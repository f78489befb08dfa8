//! Redis clients for one address and its TLS section (`engine.redis.tls`,
//! `consumers[].redis_stream.tls`), shared by the engine's shards and the Redis Streams
//! consumer. TLS is rustls with the webpki roots, or the section's CA; the server's certificate
//! is verified against the address's host unless `insecure_skip_verify` asks otherwise (logged
//! as a warning). PEM is checked here, before redis-rs sees it, so that no error ever carries
//! what a value or a file holds; files are read bounded.

use std::io::Read as _;

use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use rotor_tenant_config::RedisTls;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The largest PEM file read.
const MAX_PEM_FILE: u64 = 1 << 20;

/// Why a Redis client could not be made. Messages name options and hosts, never contents.
#[derive(Debug, thiserror::Error)]
pub enum RedisTlsError {
    #[error("{section}: an address is not a valid redis:// or rediss:// URL")]
    Address { section: String },
    #[error("{section}: TLS needs a TCP address, not a Unix socket")]
    UnixSocket { section: String },
    #[error("{option}: cannot read {path}: {kind}")]
    Read {
        option: String,
        path: String,
        kind: std::io::ErrorKind,
    },
    #[error("{option}: holds no valid PEM {what}")]
    Pem { option: String, what: &'static str },
    #[error("{section}: TLS setup for {address} failed: {reason}")]
    Setup {
        section: String,
        address: String,
        reason: String,
    },
}

/// Where a TLS connection goes, for messages (`host:port`, no credentials).
pub fn shown_address(client: &redis::Client) -> String {
    match &client.get_connection_info().addr {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
    }
}

/// Whether `client` connects over TLS.
pub fn uses_tls(client: &redis::Client) -> bool {
    matches!(
        client.get_connection_info().addr,
        ConnectionAddr::TcpTls { .. }
    )
}

/// The PEM of option `name` of `section`: inline text, or the file `name_file` names.
fn pem(
    section: &str,
    name: &str,
    inline: &str,
    file: &str,
) -> Result<Option<Vec<u8>>, RedisTlsError> {
    if !inline.is_empty() {
        return Ok(Some(inline.as_bytes().to_vec()));
    }
    if file.is_empty() {
        return Ok(None);
    }
    let option = format!("{section}.{name}_file");
    let read_error = |e: std::io::Error| RedisTlsError::Read {
        option: option.clone(),
        path: file.to_owned(),
        kind: e.kind(),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .map_err(read_error)?
        .take(MAX_PEM_FILE)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(Some(bytes))
}

/// Checks that `bytes` hold at least one certificate and nothing malformed.
fn check_certificates(option: String, bytes: &[u8]) -> Result<(), RedisTlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(bytes).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(()),
        _ => Err(RedisTlsError::Pem {
            option,
            what: "certificate",
        }),
    }
}

/// The option a PEM came from, for messages.
fn source(section: &str, name: &str, inline: &str) -> String {
    if inline.is_empty() {
        format!("{section}.{name}_file")
    } else {
        format!("{section}.{name}")
    }
}

/// A client for `address` with the TLS options of `tls` (at config path `section`).
pub fn client(
    address: &str,
    tls: &RedisTls,
    section: &str,
) -> Result<redis::Client, RedisTlsError> {
    let mut info = address
        .into_connection_info()
        .map_err(|_| RedisTlsError::Address {
            section: section.to_owned(),
        })?;
    if !tls.applies_to(address) {
        return redis::Client::open(info).map_err(|_| RedisTlsError::Address {
            section: section.to_owned(),
        });
    }
    let (host, insecure) = match info.addr {
        ConnectionAddr::Tcp(host, port) => {
            info.addr = ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: tls.insecure_skip_verify,
                tls_params: None,
            };
            (format!("{host}:{port}"), tls.insecure_skip_verify)
        }
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            tls_params,
        } => {
            let insecure = insecure || tls.insecure_skip_verify;
            info.addr = ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure,
                tls_params,
            };
            (format!("{host}:{port}"), insecure)
        }
        ConnectionAddr::Unix(_) => {
            return Err(RedisTlsError::UnixSocket {
                section: section.to_owned(),
            })
        }
    };
    warn_if_insecure(section, &host, insecure);
    let setup = |e: redis::RedisError| RedisTlsError::Setup {
        section: section.to_owned(),
        address: host.clone(),
        reason: e.to_string(),
    };
    match certificates(tls, section)? {
        None => redis::Client::open(info).map_err(setup),
        Some(certs) => redis::Client::build_with_tls(info, certs).map_err(setup),
    }
}

/// Installs the process-wide rustls provider and warns when verification is off.
pub fn warn_if_insecure(section: &str, address: &str, insecure: bool) {
    // One process-wide provider (ring); a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if insecure {
        tracing::warn!(
            section,
            address,
            "TLS to Redis without verifying the server's certificate (insecure_skip_verify): the connection is encrypted but anyone on the path can impersonate the server"
        );
    }
}

/// The CA and client certificate of `tls` (checked PEM), `None` when it sets neither (the
/// webpki roots, no client certificate).
pub fn certificates(
    tls: &RedisTls,
    section: &str,
) -> Result<Option<TlsCertificates>, RedisTlsError> {
    let ca = pem(
        section,
        "server_ca_pem",
        &tls.server_ca_pem,
        &tls.server_ca_pem_file,
    )?;
    if let Some(ca) = &ca {
        check_certificates(source(section, "server_ca_pem", &tls.server_ca_pem), ca)?;
    }
    let cert = pem(section, "cert_pem", &tls.cert_pem, &tls.cert_pem_file)?;
    let key = pem(section, "key_pem", &tls.key_pem, &tls.key_pem_file)?;
    let client_tls = match (cert, key) {
        (Some(cert), Some(key)) => {
            check_certificates(source(section, "cert_pem", &tls.cert_pem), &cert)?;
            if PrivateKeyDer::from_pem_slice(&key).is_err() {
                return Err(RedisTlsError::Pem {
                    option: source(section, "key_pem", &tls.key_pem),
                    what: "private key",
                });
            }
            Some(ClientTlsConfig {
                client_cert: cert,
                client_key: key,
            })
        }
        _ => None,
    };
    if ca.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert: ca,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_address_stays_plain_and_enabled_turns_it_into_tls() {
        let off = client("redis://127.0.0.1:6379", &RedisTls::default(), "t").unwrap();
        assert!(!uses_tls(&off));
        let on = RedisTls {
            enabled: true,
            ..RedisTls::default()
        };
        let c = client("redis://:secret@127.0.0.1:6379/0", &on, "t").unwrap();
        assert!(uses_tls(&c));
        assert_eq!(shown_address(&c), "rediss://127.0.0.1:6379");
        let c = client("rediss://localhost:6380", &RedisTls::default(), "t").unwrap();
        assert!(uses_tls(&c));
    }

    #[test]
    fn errors_about_a_file_never_carry_what_it_holds() {
        let dir = std::env::temp_dir().join(format!("rotor-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "root:$6$supersecrethash:19000:0:99999:7:::\n").unwrap();
        let tls = RedisTls {
            enabled: true,
            server_ca_pem_file: secret.display().to_string(),
            ..RedisTls::default()
        };
        let err = client("redis://127.0.0.1:6379", &tls, "engine.redis.tls").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("server_ca_pem_file"), "{msg}");
        assert!(!msg.contains("supersecret"), "{msg}");
        let missing = RedisTls {
            enabled: true,
            cert_pem_file: dir.join("nope").display().to_string(),
            key_pem_file: secret.display().to_string(),
            ..RedisTls::default()
        };
        let err = client("redis://127.0.0.1:6379", &missing, "t").unwrap_err();
        assert!(matches!(err, RedisTlsError::Read { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
