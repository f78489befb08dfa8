//! The control plane's public edge over real processes: request heads too large or too slow
//! are refused without stalling other clients, WebSocket upgrades are handed to the tenant
//! process (they outlive the control plane), and a tenant without its hand-off socket is still
//! reached by proxy.

use std::time::Duration;

use anyhow::{Context, Result};
use rotor_e2e::control_plane::ws::Subscriber;
use rotor_e2e::control_plane::{open_chat, ControlPlane, Project};
use serde_json::{json, Value};

#[tokio::test]
async fn the_edge_refuses_huge_and_slow_request_heads_without_stalling_others() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cp = ControlPlane::start().await?;
    let addr = cp.base.trim_start_matches("http://").to_owned();
    // A 20 KiB head: 431.
    let mut big = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "GET /t/x/api HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut answer)).await??;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // A head that never finishes (slowloris): 408 after the head timeout (1 s in tests), while
    // a normal request is served meanwhile.
    let mut slow = tokio::net::TcpStream::connect(&addr).await?;
    slow.write_all(b"GET /t/x/api HTTP/1.1\r\nHost: a\r\n")
        .await?;
    let (s, _) = cp.call("GET", "/health", None, None).await?;
    assert_eq!(s, 200, "others are served while a head dribbles in");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await??;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

/// Publishes straight to the tenant process, bypassing the control plane.
async fn publish_direct(cp: &ControlPlane, project: &Project, data: Value) -> Result<()> {
    let addr = cp.tenant_record(&project.id)?["addr"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let resp = cp
        .http
        .post(format!("http://{addr}/api/publish"))
        .header("X-API-Key", &project.key)
        .body(json!({"channel": "chat:live", "data": data}).to_string())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("publish to {addr}"))?;
    anyhow::ensure!(resp.status().is_success(), "publish: {}", resp.status());
    Ok(())
}

#[tokio::test]
async fn websockets_through_the_edge_are_handed_to_the_tenant_and_outlive_the_control_plane(
) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut cp = ControlPlane::start_eager().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(&mgmt, "handed", &[("chat", open_chat())])
        .await?;
    let socket = cp.run_dir.join(format!("{}.sock", project.id));
    assert_eq!(
        cp.tenant_record(&project.id)?["handoff"],
        json!(socket.to_str()),
        "the tenant was started with a hand-off socket"
    );
    let meta = std::fs::metadata(&socket)?;
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let url = cp.ws_url(&project.slug);
    let mut first = Subscriber::open(&url, &project.secret, "u1", "chat:live").await?;
    let (s, body) = cp.publish(&project, "chat:live", json!({"n": 1})).await?;
    assert_eq!(s, 200, "{body}");
    assert_eq!(first.publication().await?, json!({"n": 1}));

    // The control plane holds no copy of the connection: killing it leaves the client connected
    // to its tenant (a proxied connection would be cut).
    if let Some(mut p) = cp.process.take() {
        p.kill().await;
    }
    publish_direct(&cp, &project, json!({"n": 2})).await?;
    assert_eq!(first.publication().await?, json!({"n": 2}));

    // A new control plane adopts the tenant with its hand-off socket.
    cp.spawn().await?;
    let url = cp.ws_url(&project.slug); // a new port
    let mut second = Subscriber::open(&url, &project.secret, "u2", "chat:live").await?;
    if let Some(mut p) = cp.process.take() {
        p.kill().await;
    }
    publish_direct(&cp, &project, json!({"n": 3})).await?;
    assert_eq!(first.publication().await?, json!({"n": 3}));
    assert_eq!(second.publication().await?, json!({"n": 3}));
    Ok(())
}

#[tokio::test]
async fn without_its_hand_off_socket_a_tenant_still_gets_websockets_by_proxy() -> Result<()> {
    let mut cp = ControlPlane::start_eager().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp
        .project(&mgmt, "proxied", &[("chat", open_chat())])
        .await?;
    std::fs::remove_file(cp.run_dir.join(format!("{}.sock", project.id)))?;

    let mut sub = Subscriber::open(
        &cp.ws_url(&project.slug),
        &project.secret,
        "u1",
        "chat:live",
    )
    .await?;
    let (s, body) = cp.publish(&project, "chat:live", json!({"n": 1})).await?;
    assert_eq!(s, 200, "{body}");
    assert_eq!(sub.publication().await?, json!({"n": 1}));
    // Proxied through the control plane: killing it ends the connection.
    if let Some(mut p) = cp.process.take() {
        p.kill().await;
    }
    publish_direct(&cp, &project, json!({"n": 2})).await?;
    let after = sub.next().await;
    assert!(
        after.is_err(),
        "the proxied connection outlived the proxy: {after:?}"
    );
    Ok(())
}
