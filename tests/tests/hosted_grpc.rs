//! A hosted project's gRPC server API through the edge, with Python grpcio (a toolchain other
//! than the server's) as the backend: the owner switches it on with `PATCH /v1/projects/{id}`;
//! calls reach the project named by its own host (or, without tenant hosts, by the
//! `rotor-project` metadata entry) and publish into its history; another project's key, a
//! project that has not switched it on, and names of no project are refused with the gRPC
//! status that says why; listener options are refused in the settings; and HTTP/2 that is not
//! gRPC, or not HTTP/2 at all past the preface, is turned away at the edge; a parked project
//! is woken by a gRPC call; and a connection routed to one project stays that project's even
//! when later requests on it name another (a raw HTTP/2 client makes that attack).

use std::time::Duration;

use anyhow::{Context, Result};
use rotor_e2e::control_plane::ControlPlane;
use rotor_e2e::ClientScript;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Runs `calls` (see tests/clients/python/grpc_edge.py) against the edge of `cp`.
async fn grpc(cp: &ControlPlane, calls: Value) -> Result<Value> {
    let out = ClientScript::python("grpc_edge.py")
        .envs([
            (
                "ROTOR_GRPC_TARGET",
                cp.base.trim_start_matches("http://").to_owned(),
            ),
            ("ROTOR_GRPC_CALLS", calls.to_string()),
        ])
        .run()
        .await?
        .ensure_success()?;
    out.stdout_json()
}

async fn enable(cp: &ControlPlane, token: &str, id: &str) -> Result<()> {
    let (s, b) = cp
        .patch_project(
            token,
            id,
            json!({"settings": {"grpc_api": {"enabled": true}}}),
        )
        .await?;
    anyhow::ensure!(s == 200, "enable gRPC: {s} {b}");
    cp.wait_applied(token, id).await?;
    Ok(())
}

fn status(out: &Value, call: &str) -> String {
    out[call]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_projects_grpc_api_is_served_at_its_own_host_through_the_edge() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_HOST", "{slug}.tenants.test")]).await?;
    let owner = cp.account("owner@example.com").await?;
    let history = json!({"history_size": 10, "history_ttl": "60s"});
    let a = cp
        .project(&owner, "grpc-a", &[("chat", history.clone())])
        .await?;
    let stranger = cp.account("stranger@example.com").await?;
    let b = cp
        .project(&stranger, "grpc-b", &[("chat", history)])
        .await?;
    let port = cp.base.rsplit(':').next().context("port")?.to_owned();
    let host = |slug: &str| format!("{slug}.tenants.test:{port}");

    // Off until the owner switches it on.
    let off = grpc(
        &cp,
        json!([{"name": "off", "authority": host(&a.slug), "key": a.key, "channel": "chat:g"}]),
    )
    .await?;
    assert_eq!(status(&off, "off"), "UNIMPLEMENTED", "{off}");

    // The listener, key and TLS are the edge's: refused in the settings, naming the option.
    for (option, value) in [
        ("port", json!(10001)),
        ("key", json!("mine")),
        ("tls", json!({"enabled": true})),
    ] {
        let (s, body) = cp
            .patch_project(
                &owner,
                &a.id,
                json!({"settings": {"grpc_api": {"enabled": true, option: value}}}),
            )
            .await?;
        assert_eq!(s, 400, "{body}");
        assert_eq!(
            body["error"]["field"],
            format!("settings.grpc_api.{option}"),
            "{body}"
        );
    }
    // Nobody but the owner switches it on.
    let (s, _) = cp
        .patch_project(
            &stranger,
            &a.id,
            json!({"settings": {"grpc_api": {"enabled": true}}}),
        )
        .await?;
    assert_eq!(s, 404);
    enable(&cp, &owner, &a.id).await?;

    let out = grpc(
        &cp,
        json!([
            {"name": "own", "authority": host(&a.slug), "key": a.key, "channel": "chat:g", "repeat": 3},
            {"name": "other_key", "authority": host(&a.slug), "key": b.key, "channel": "chat:g"},
            {"name": "b_off", "authority": host(&b.slug), "key": b.key, "channel": "chat:g"},
            {"name": "a_key_at_b", "authority": host(&b.slug), "key": a.key, "channel": "chat:g"},
            {"name": "unknown", "authority": host("nobody-here"), "key": a.key, "channel": "chat:g"},
            {"name": "dashboard", "authority": format!("127.0.0.1:{port}"), "key": a.key, "channel": "chat:g"},
            {"name": "unknown_namespace", "authority": host(&a.slug), "key": a.key, "channel": "nope:g"},
        ]),
    )
    .await?;
    assert_eq!(status(&out, "own"), "OK", "{out}");
    assert_eq!(
        out["own"]["offsets"],
        json!([1, 2, 3]),
        "published into A's history: {out}"
    );
    assert_eq!(status(&out, "other_key"), "UNAUTHENTICATED", "{out}");
    assert_eq!(status(&out, "b_off"), "UNIMPLEMENTED", "{out}");
    assert_eq!(status(&out, "a_key_at_b"), "UNIMPLEMENTED", "{out}");
    assert_eq!(status(&out, "unknown"), "NOT_FOUND", "{out}");
    assert_eq!(out["unknown"]["message"], "unknown project", "{out}");
    assert_eq!(status(&out, "dashboard"), "NOT_FOUND", "{out}");
    assert_eq!(out["unknown_namespace"]["errors"], json!([102]), "{out}");

    // B switched on: A's key still opens nothing there, and nothing of A's leaked to B.
    enable(&cp, &stranger, &b.id).await?;
    let out = grpc(
        &cp,
        json!([
            {"name": "a_key_at_b", "authority": host(&b.slug), "key": a.key, "channel": "chat:g"},
            {"name": "b", "authority": host(&b.slug), "key": b.key, "channel": "chat:g"},
        ]),
    )
    .await?;
    assert_eq!(status(&out, "a_key_at_b"), "UNAUTHENTICATED", "{out}");
    assert_eq!(
        out["b"]["offsets"],
        json!([1]),
        "B's history is its own: {out}"
    );
    Ok(())
}

#[tokio::test]
async fn without_tenant_hosts_the_project_is_named_in_metadata() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let owner = cp.account("owner@example.com").await?;
    let history = json!({"history_size": 10, "history_ttl": "60s"});
    let p = cp
        .project(&owner, "grpc-meta", &[("chat", history)])
        .await?;
    enable(&cp, &owner, &p.id).await?;
    let out = grpc(
        &cp,
        json!([
            {"name": "named", "project": p.slug, "key": p.key, "channel": "chat:m", "repeat": 2},
            {"name": "unnamed", "key": p.key, "channel": "chat:m"},
            {"name": "unknown", "project": "nobody-here", "key": p.key, "channel": "chat:m"},
            {"name": "malformed", "project": "../etc", "key": p.key, "channel": "chat:m"},
        ]),
    )
    .await?;
    assert_eq!(out["named"]["offsets"], json!([1, 2]), "{out}");
    assert_eq!(status(&out, "unnamed"), "INVALID_ARGUMENT", "{out}");
    assert_eq!(status(&out, "unknown"), "NOT_FOUND", "{out}");
    assert_eq!(status(&out, "malformed"), "INVALID_ARGUMENT", "{out}");
    Ok(())
}

/// Sends `raw` to the edge and returns the error code of the GOAWAY it answers with.
async fn goaway_code(cp: &ControlPlane, raw: &[u8]) -> Result<u32> {
    let mut s = TcpStream::connect(cp.base.trim_start_matches("http://")).await?;
    s.write_all(raw).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .context("the edge kept the connection open")??;
    let mut at = 0;
    while at + 9 <= out.len() {
        let len = (usize::from(out[at]) << 16)
            | (usize::from(out[at + 1]) << 8)
            | usize::from(out[at + 2]);
        if out[at + 3] == 0x7 {
            let code = out.get(at + 13..at + 17).context("short GOAWAY")?;
            return Ok(u32::from_be_bytes(code.try_into()?));
        }
        at += 9 + len;
    }
    anyhow::bail!("no GOAWAY in {out:?}")
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn http2_that_is_not_grpc_is_turned_away_at_the_edge() -> Result<()> {
    let cp = ControlPlane::start().await?;
    // `GET /` over HTTP/2 (HPACK: :method GET, :scheme http, :path /, :authority literal).
    let authority = cp.base.trim_start_matches("http://").as_bytes().to_vec();
    let mut block = vec![0x82, 0x86, 0x84, 0x01, authority.len() as u8];
    block.extend_from_slice(&authority);
    let mut plain = PREFACE.to_vec();
    plain.extend(frame(0x4, 0, 0, &[]));
    plain.extend(frame(0x1, 0x5, 1, &block));
    assert_eq!(goaway_code(&cp, &plain).await?, 0xd, "HTTP_1_1_REQUIRED");
    // A DATA frame before any request is not HTTP/2 a client may send.
    let mut garbage = PREFACE.to_vec();
    garbage.extend(frame(0x0, 0, 1, b"hello"));
    assert_eq!(goaway_code(&cp, &garbage).await?, 0x1, "PROTOCOL_ERROR");
    // HTTP/1.1 on the same listener is untouched.
    let (s, _) = cp.call("GET", "/health", None, None).await?;
    assert_eq!(s, 200, "the control plane still answers HTTP/1.1");
    Ok(())
}

/// A parked project (its process stopped while idle) is woken by a gRPC connection like any
/// other first request: the call waits for it and succeeds.
#[tokio::test]
async fn a_grpc_call_wakes_a_parked_project() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_PARK_AFTER_MS", "300")]).await?;
    let owner = cp.account("owner@example.com").await?;
    // No history: a memory-engine project holding history is never parked.
    let p = cp
        .project(
            &owner,
            "grpc-sleepy",
            &[("chat", json!({"allow_subscribe_for_client": true}))],
        )
        .await?;
    enable(&cp, &owner, &p.id).await?;
    cp.wait_parked(&p, Duration::from_secs(15)).await?;
    let out = grpc(
        &cp,
        json!([{"name": "wake", "project": p.slug, "key": p.key, "channel": "chat:w", "repeat": 2}]),
    )
    .await?;
    assert_eq!(status(&out, "wake"), "OK", "{out}");
    assert_eq!(
        out["wake"]["offsets"],
        json!([0, 0]),
        "published without history: {out}"
    );
    assert!(!cp.is_parked(&p), "woken");
    Ok(())
}

/// A raw HTTP/2 connection to the edge, for requests a gRPC library would not send.
struct RawH2(hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>);

impl RawH2 {
    async fn connect(cp: &ControlPlane) -> Result<Self> {
        let tcp = TcpStream::connect(cp.base.trim_start_matches("http://")).await?;
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await?;
        tokio::spawn(conn);
        Ok(Self(send))
    }

    /// A unary `Publish` of `{"n": n}` to `channel` naming `authority`, with `key`: the
    /// `grpc-status` and, when it is OK, the publication's offset (an `error` reply is `None`).
    async fn publish(
        &mut self,
        authority: &str,
        key: &str,
        channel: &str,
        n: u64,
    ) -> Result<(String, Option<u64>)> {
        use http_body_util::BodyExt;
        let data = format!("{{\"n\":{n}}}");
        // PublishRequest: channel (1, string), data (2, bytes).
        let mut message = vec![0x0a, channel.len() as u8];
        message.extend_from_slice(channel.as_bytes());
        message.extend_from_slice(&[0x12, data.len() as u8]);
        message.extend_from_slice(data.as_bytes());
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        let request = hyper::Request::post(format!(
            "http://{authority}/centrifugal.centrifugo.api.CentrifugoApi/Publish"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("apikey {key}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(framed)))?;
        self.0.ready().await?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.0.send_request(request))
            .await
            .context("no answer")??;
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let body = collected.to_bytes();
        let status = trailers
            .get("grpc-status")
            .or_else(|| headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        // PublishResponse: result (2) = PublishResult { offset (1, varint), epoch (2) }.
        let offset = match body.get(5..) {
            Some([0x12, _, 0x08, rest @ ..]) => Some(varint(rest)),
            Some([0x12, 0, ..]) => Some(0),
            _ => None,
        };
        Ok((status, offset))
    }
}

fn varint(bytes: &[u8]) -> u64 {
    let mut value = 0u64;
    for (i, b) in bytes.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    value
}

/// The attack a gRPC library does not make: after a first request routed to project A, later
/// requests on the same connection name project B's host. The connection is A's for its whole
/// life: B's key opens nothing there, A's key publishes into A, and B's data is untouched.
#[tokio::test]
async fn a_connection_routed_to_one_project_never_reaches_another() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_HOST", "{slug}.tenants.test")]).await?;
    let history = json!({"history_size": 10, "history_ttl": "60s"});
    let owner = cp.account("owner@example.com").await?;
    let a = cp
        .project(&owner, "pinned-a", &[("chat", history.clone())])
        .await?;
    let victim = cp.account("victim@example.com").await?;
    let b = cp
        .project(&victim, "pinned-b", &[("chat", history)])
        .await?;
    enable(&cp, &owner, &a.id).await?;
    enable(&cp, &victim, &b.id).await?;
    let port = cp.base.rsplit(':').next().context("port")?.to_owned();
    let host = |slug: &str| format!("{slug}.tenants.test:{port}");

    let mut h2 = RawH2::connect(&cp).await?;
    assert_eq!(
        h2.publish(&host(&a.slug), &a.key, "chat:x", 1).await?,
        ("0".into(), Some(1))
    );
    // B's key, B's host, on A's connection: A does not know the key.
    let (status, _) = h2.publish(&host(&b.slug), &b.key, "chat:x", 2).await?;
    assert_eq!(status, "16", "UNAUTHENTICATED");
    // A's key naming B's host still publishes into A.
    assert_eq!(
        h2.publish(&host(&b.slug), &a.key, "chat:x", 3).await?,
        ("0".into(), Some(2))
    );
    // B's own history never saw any of it.
    let mut fresh = RawH2::connect(&cp).await?;
    assert_eq!(
        fresh.publish(&host(&b.slug), &b.key, "chat:x", 4).await?,
        ("0".into(), Some(1))
    );
    Ok(())
}
