//! TLS to Redis (`engine.redis.tls`, `rediss://`) against a private redis-server each test
//! starts with a CA and certificates the test makes (rcgen): publications, history, recovery
//! and presence over TLS; a server that requires a client certificate; a server certificate
//! from an unknown CA or for another name refused at start unless `insecure_skip_verify`; and
//! the `*_pem_file` options, which a data plane the control plane runs refuses without reading
//! the file.

mod common;

use common::tls_ca::Ca;
use common::{Binary, Client, TestServer};
use rcgen::ExtendedKeyUsagePurpose;
use serde_json::{json, Value};

/// A private redis-server with TLS only (no plain port) on a free port, killed on drop. Its
/// certificate is for `localhost` only, signed by [`TlsRedis::ca`].
struct TlsRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
    ca: Ca,
}

impl TlsRedis {
    fn start(require_client_certificates: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("rotor-redis-tls-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("Rotor test CA");
        let (cert, key) = ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(dir.join("server.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("ca.pem"))
            .args([
                "--tls-auth-clients",
                if require_client_certificates {
                    "yes"
                } else {
                    "no"
                },
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let redis = Self {
            port,
            dir,
            child,
            ca,
        };
        // Wait (bounded) until it accepts connections.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server with TLS did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        redis
    }

    /// The address by the name its certificate carries.
    fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }

    /// A client certificate and key (PEM) from the server's CA.
    fn client_certificate(&self) -> (String, String) {
        self.ca
            .issue(&["rotor-data-plane"], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prefix() -> String {
    format!("rotor-tls-test:{}:", uuid::Uuid::new_v4().simple())
}

/// The engine section for `address` with `tls`.
fn engine(address: &str, tls: Value) -> Value {
    json!({"engine": {"type": "redis", "redis": {"address": address, "prefix": prefix(), "tls": tls}}})
}

/// A config the data-plane binary starts with.
fn binary_config(engine: Value) -> Value {
    let mut config = json!({"http_server": {"port": 0}, "client": {"token": {"hmac_secret_key": common::SECRET}}});
    common::merge(&mut config, engine);
    config
}

#[tokio::test]
async fn publications_history_recovery_and_presence_work_over_tls_with_the_tests_ca() {
    let redis = TlsRedis::start(false);
    let tls = json!({"server_ca_pem": redis.ca.pem()});
    let config = engine(&redis.url(), tls);
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config).await;
    let (mut sub, _) = Client::connected(&a.ws_url(), "s").await;
    let r = sub.call(json!({"subscribe": {"channel": "chat:t"}})).await;
    assert_eq!(r["subscribe"]["recoverable"], true, "{r}");
    let epoch = r["subscribe"]["epoch"].clone();
    let _own_join = sub.push().await;
    let (mut publisher, _) = Client::connected(&b.ws_url(), "p").await;
    publisher
        .call(json!({"subscribe": {"channel": "chat:t"}}))
        .await;
    assert!(sub.push().await["join"].is_object(), "join through Redis");
    for n in 1..=3 {
        let r = publisher
            .call(json!({"publish": {"channel": "chat:t", "data": {"n": n}}}))
            .await;
        assert_eq!(r["publish"], json!({}), "{r}");
    }
    for n in 1..=3u64 {
        let p = sub.push().await;
        assert_eq!(p["pub"]["offset"].as_u64(), Some(n), "{p}");
    }
    let h = publisher
        .call(json!({"history": {"channel": "chat:t", "limit": -1}}))
        .await;
    assert_eq!(h["history"]["publications"].as_array().unwrap().len(), 3);
    let st = sub
        .call(json!({"presence_stats": {"channel": "chat:t"}}))
        .await;
    assert_eq!(
        st["presence_stats"],
        json!({"num_clients": 2, "num_users": 2})
    );
    drop(sub);
    let (mut again, _) = Client::connected(&a.ws_url(), "s").await;
    let r = again
        .call(json!({"subscribe": {"channel": "chat:t", "recover": true, "offset": 1, "epoch": epoch}}))
        .await;
    assert_eq!(r["subscribe"]["recovered"], true, "{r}");
    assert_eq!(r["subscribe"]["publications"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_accepts_the_engines() {
    let redis = TlsRedis::start(true);
    // Without a certificate, the server closes the handshake: no start.
    let without = binary_config(engine(
        &redis.url(),
        json!({"server_ca_pem": redis.ca.pem()}),
    ));
    let stderr = Binary::refused(&without, &[]).await;
    assert!(stderr.contains("TLS"), "{stderr}");
    // With one from the server's CA, inline and from files (standalone).
    let (cert, key) = redis.client_certificate();
    let s = TestServer::start(engine(
        &redis.url(),
        json!({"server_ca_pem": redis.ca.pem(), "cert_pem": cert, "key_pem": key}),
    ))
    .await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u").await;
    c.call(json!({"subscribe": {"channel": "chat:m"}})).await;
    let r = c
        .call(json!({"publish": {"channel": "chat:m", "data": {"ok": true}}}))
        .await;
    assert_eq!(r["publish"], json!({}), "{r}");
    let files = redis.dir.join("client");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("c.pem"), &cert).unwrap();
    std::fs::write(files.join("c.key"), &key).unwrap();
    std::fs::write(files.join("ca.pem"), redis.ca.pem()).unwrap();
    let from_files = binary_config(engine(
        &redis.url(),
        json!({
            "cert_pem_file": files.join("c.pem"),
            "key_pem_file": files.join("c.key"),
            "server_ca_pem_file": files.join("ca.pem"),
        }),
    ));
    let b = Binary::listening(&from_files, &[]).await;
    b.stop().await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_stops_the_start_unless_verification_is_skipped() {
    let redis = TlsRedis::start(false);
    let stranger = Ca::new("Someone else's CA");
    let config = binary_config(engine(
        &redis.url(),
        json!({"server_ca_pem": stranger.pem()}),
    ));
    let stderr = Binary::refused(&config, &[]).await;
    assert!(stderr.contains("TLS connection failed"), "{stderr}");
    assert!(stderr.contains(&redis.url()), "names the server: {stderr}");
    // The webpki roots do not know the test CA either.
    let stderr = Binary::refused(&binary_config(engine(&redis.url(), json!({}))), &[]).await;
    assert!(stderr.contains("TLS connection failed"), "{stderr}");
    // Only when asked: encrypted, unverified, and said so at start.
    let insecure = binary_config(engine(&redis.url(), json!({"insecure_skip_verify": true})));
    let b = Binary::listening(&insecure, &[]).await;
    let stderr = b.stop().await;
    assert!(stderr.contains("insecure_skip_verify"), "{stderr}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_and_server_name_is_not_taken() {
    let redis = TlsRedis::start(false);
    // The certificate is for localhost; 127.0.0.1 is another name.
    let by_ip = format!("rediss://127.0.0.1:{}", redis.port);
    let config = binary_config(engine(&by_ip, json!({"server_ca_pem": redis.ca.pem()})));
    let stderr = Binary::refused(&config, &[]).await;
    assert!(stderr.contains("TLS connection failed"), "{stderr}");
    // `enabled` with a redis:// address is TLS too, and verified the same way.
    let plain_scheme = format!("redis://127.0.0.1:{}", redis.port);
    let config = binary_config(engine(
        &plain_scheme,
        json!({"enabled": true, "server_ca_pem": redis.ca.pem()}),
    ));
    let stderr = Binary::refused(&config, &[]).await;
    assert!(stderr.contains("TLS connection failed"), "{stderr}");
    // Rotor checks the address's host; a server_name to check instead is refused at load.
    let config = binary_config(engine(
        &by_ip,
        json!({"server_ca_pem": redis.ca.pem(), "server_name": "localhost"}),
    ));
    let stderr = Binary::refused(&config, &[]).await;
    assert!(stderr.contains("engine.redis.tls.server_name"), "{stderr}");
}

/// A hosted tenant's config (ROTOR_EGRESS=public) may not name files for the process to read:
/// the data plane refuses it before reading anything, and no message carries the file's
/// contents; standalone, a non-PEM file is refused naming the option, still without them.
#[tokio::test]
async fn a_hosted_data_plane_refuses_tls_files_and_never_echoes_their_contents() {
    let redis = TlsRedis::start(false);
    let secret = redis.dir.join("another-tenants-secret");
    std::fs::write(
        &secret,
        "root:$6$hunter2-hash-of-the-operator:19000:0:99999:7:::\n",
    )
    .unwrap();
    for tls in [
        json!({"server_ca_pem_file": secret}),
        json!({"server_ca_pem": redis.ca.pem(), "cert_pem_file": secret, "key_pem_file": secret}),
    ] {
        let option = tls.to_string();
        let config = binary_config(engine(&redis.url(), tls));
        let stderr = Binary::refused(&config, &[("ROTOR_EGRESS", "public")]).await;
        assert!(
            stderr.contains("engine.redis.tls.*_pem_file")
                && stderr.contains("a hosted project may not set this option"),
            "{option}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{option}: {stderr}");
        // Standalone the option is read, and the file is refused as no PEM, by option name.
        let stderr = Binary::refused(&config, &[]).await;
        assert!(stderr.contains("_pem_file"), "{option}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{option}: {stderr}");
    }
    // The same for a Redis Streams consumer's TLS section.
    let config = binary_config(json!({"consumers": [{
        "name": "stream", "enabled": true, "type": "redis_stream",
        "redis_stream": {"address": redis.url(), "streams": ["s"], "consumer_group": "g",
                         "tls": {"server_ca_pem_file": secret}}
    }]}));
    let stderr = Binary::refused(&config, &[("ROTOR_EGRESS", "public")]).await;
    assert!(
        stderr.contains("consumers[].redis_stream.tls.*_pem_file"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// A client of the test's own, through the same builder the engine uses.
async fn direct(
    url: &str,
    tls: rotor_tenant_config::RedisTls,
) -> redis::aio::MultiplexedConnection {
    rotor_data_plane::engine::redis::tls::client(url, &tls, "test")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn channels_shard_over_two_tls_servers_trusted_by_one_ca_bundle() {
    let (one, two) = (TlsRedis::start(false), TlsRedis::start(false));
    let bundle = format!("{}{}", one.ca.pem(), two.ca.pem());
    let mut config = engine(&one.url(), json!({"server_ca_pem": bundle}));
    config["engine"]["redis"]["address"] = json!([one.url(), two.url()]);
    let prefix = config["engine"]["redis"]["prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = TestServer::start(config).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "u").await;
    for i in 0..20 {
        let channel = format!("chat:{i}");
        c.call(json!({"subscribe": {"channel": channel}})).await;
        let r = c
            .call(json!({"publish": {"channel": channel, "data": {"i": i}}}))
            .await;
        assert_eq!(r["publish"], json!({}), "{r}");
        let h = c
            .call(json!({"history": {"channel": channel, "limit": -1}}))
            .await;
        assert_eq!(h["history"]["offset"], 1, "{h}");
    }
    // Both servers hold some of the channels.
    for server in [&one, &two] {
        let tls = rotor_tenant_config::RedisTls {
            server_ca_pem: server.ca.pem(),
            ..Default::default()
        };
        let mut conn = direct(&server.url(), tls).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!keys.is_empty(), "{} holds no channel", server.url());
    }
}

#[tokio::test]
async fn a_redis_stream_consumer_reads_over_tls_with_a_client_certificate() {
    let redis = TlsRedis::start(true);
    let (cert, key) = redis.client_certificate();
    let tls = json!({"server_ca_pem": redis.ca.pem(), "cert_pem": cert, "key_pem": key});
    let stream = format!("rotor_tls_stream_{}", uuid::Uuid::new_v4().simple());
    let s = TestServer::start(json!({
        "consumers": [{"enabled": true, "name": "tls_events", "type": "redis_stream", "redis_stream": {
            "address": redis.url(), "streams": [stream], "consumer_group": "rotor", "tls": tls}}],
        "channel": {"namespaces": [{"name": "feed", "allow_subscribe_for_client": true}]}
    }))
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(rotor_data_plane::consumers::run(
        s.node.clone(),
        stop.clone(),
    ));
    let (mut c, _) = Client::connected(&s.ws_url(), "u").await;
    let r = c.call(json!({"subscribe": {"channel": "feed:tls"}})).await;
    assert!(r.get("error").is_none(), "{r}");
    let tls: rotor_tenant_config::RedisTls = serde_json::from_value(tls).unwrap();
    let mut conn = direct(&redis.url(), tls).await;
    let command = json!({"channel": "feed:tls", "data": {"n": 1}}).to_string();
    // The consumer creates its group at the stream's end once connected: add until it reads.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("method")
            .arg("publish")
            .arg("payload")
            .arg(&command)
            .query_async(&mut conn)
            .await
            .unwrap();
        match tokio::time::timeout(std::time::Duration::from_millis(500), c.push()).await {
            Ok(push) => {
                assert_eq!(push["pub"]["data"]["n"], 1, "{push}");
                break;
            }
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the consumer read nothing over TLS"
            ),
        }
    }
    stop.cancel();
}

/// A hosted consumer dials the address it checked, not the name: TLS over that pinned
/// connection still verifies the server's certificate against the address's own host name
/// (`localhost` here, dialled at 127.0.0.1), with a client certificate; an address naming
/// another host is refused by the certificate even though the same server answers.
#[tokio::test]
async fn a_pinned_redis_connection_keeps_verifying_the_servers_name() {
    use rotor_data_plane::consumers::pinned::redis_over;
    let redis = TlsRedis::start(true);
    let (cert, key) = redis.client_certificate();
    let tls = json!({"server_ca_pem": redis.ca.pem(), "cert_pem": cert, "key_pem": key});
    let config = |address: String| -> rotor_tenant_config::RedisStreamConsumer {
        serde_json::from_value(json!({"address": address, "streams": ["s"],
            "consumer_group": "g", "tls": tls}))
        .unwrap()
    };
    let pinned: std::net::SocketAddr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let settings = || redis::AsyncConnectionConfig::new();
    let mut conn = redis_over(&config(redis.url()), settings(), pinned)
        .await
        .expect("TLS to the pinned address with the name's certificate");
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    let other = format!("rediss://redis.example.com:{}", redis.port);
    let err = redis_over(&config(other), settings(), pinned)
        .await
        .expect_err("a certificate for localhost does not serve redis.example.com");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
