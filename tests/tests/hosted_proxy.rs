//! Proxies to the customer's backend on a hosted project: set through project settings, checked
//! with the project's namespaces (a namespace cannot use a proxy that is not configured), and
//! used by the tenant for connections without a token and for subscriptions, through the edge.
//! By default hosted tenants may call only public addresses, so a project cannot point its
//! proxies at the machine it runs on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::post;
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use rotor_e2e::control_plane::ControlPlane;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Seen {
    connects: AtomicUsize,
    subscribes: AtomicUsize,
}

/// The customer's backend: names the user at connect, refuses `rooms:denied` at subscribe.
async fn backend(seen: Arc<Seen>) -> Result<String> {
    let on_connect = {
        let seen = seen.clone();
        move |Json(_req): Json<Value>| async move {
            seen.connects.fetch_add(1, Ordering::SeqCst);
            Json(json!({"result": {"user": "from-backend"}}))
        }
    };
    let on_subscribe = move |Json(req): Json<Value>| async move {
        seen.subscribes.fetch_add(1, Ordering::SeqCst);
        assert_eq!(req["user"], "from-backend", "{req}");
        if req["channel"] == "rooms:denied" {
            Json(json!({"error": {"code": 403, "message": "not in this room"}}))
        } else {
            Json(json!({"result": {}}))
        }
    };
    let app = axum::Router::new()
        .route("/connect", post(on_connect))
        .route("/subscribe", post(on_subscribe));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

async fn call(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    cmd: Value,
) -> Result<Value> {
    let id = cmd["id"].clone();
    ws.send(Message::text(cmd.to_string())).await?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await?
            .context("closed")??;
        if let Message::Text(t) = msg {
            for line in t.as_str().lines() {
                let v: Value = serde_json::from_str(line)?;
                if v["id"] == id {
                    return Ok(v);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_hosted_project_sends_connects_and_subscribes_to_the_customers_backend() -> Result<()> {
    // The backend runs on loopback, which hosted tenants may not call unless allowed.
    let cp = ControlPlane::start_with_env(&[("ROTOR_TENANT_PRIVATE_EGRESS", "1")]).await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp.project(&mgmt, "proxied", &[]).await?;
    let seen = Arc::new(Seen::default());
    let base = backend(seen.clone()).await?;
    let ns_path = format!("/v1/projects/{}/namespaces/rooms", project.id);
    let rooms = json!({"subscribe_proxy_enabled": true});

    // No subscribe proxy yet: the namespace is refused.
    let (s, b) = cp
        .call("PUT", &ns_path, Some(&mgmt), Some(rooms.clone()))
        .await?;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["error"]["field"], "settings.channel_proxy.subscribe.endpoint",
        "{b}"
    );
    // A bad proxy is refused with the setting's path.
    let project_path = format!("/v1/projects/{}", project.id);
    let bad = json!({"settings": {"client_proxy": {"connect": {"enabled": true, "endpoint": "ftp://backend"}}}});
    let (s, b) = cp
        .call("PATCH", &project_path, Some(&mgmt), Some(bad))
        .await?;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .starts_with("settings.client_proxy.connect"),
        "{b}"
    );

    let settings = json!({"settings": {
        "client_proxy": {"connect": {"enabled": true, "endpoint": format!("{base}/connect"), "timeout": "2s"}},
        "channel_proxy": {"subscribe": {"endpoint": format!("{base}/subscribe")}},
    }});
    let (s, b) = cp
        .call("PATCH", &project_path, Some(&mgmt), Some(settings))
        .await?;
    assert_eq!(s, 200, "{b}");
    let (s, b) = cp.call("PUT", &ns_path, Some(&mgmt), Some(rooms)).await?;
    assert_eq!(s, 201, "{b}");
    // While a namespace uses it, the subscribe proxy cannot be removed.
    let without = json!({"settings": {
        "client_proxy": {"connect": {"enabled": true, "endpoint": format!("{base}/connect")}},
    }});
    let (s, b) = cp
        .call("PATCH", &project_path, Some(&mgmt), Some(without))
        .await?;
    assert_eq!(s, 400, "{b}");
    cp.wait_applied(&mgmt, &project.id).await?;

    // A connection without a token: the backend names the user.
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(cp.ws_url(&project.slug)),
    )
    .await??;
    let r = call(&mut ws, json!({"id": 1, "connect": {}})).await?;
    assert!(r["connect"]["client"].is_string(), "{r}");
    let r = call(
        &mut ws,
        json!({"id": 2, "subscribe": {"channel": "rooms:lobby"}}),
    )
    .await?;
    assert!(r["subscribe"].is_object(), "{r}");
    let r = call(
        &mut ws,
        json!({"id": 3, "subscribe": {"channel": "rooms:denied"}}),
    )
    .await?;
    assert_eq!(r["error"]["code"], 403, "{r}");
    assert_eq!(seen.connects.load(Ordering::SeqCst), 1);
    assert_eq!(seen.subscribes.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test]
async fn hosted_tenants_cannot_point_proxies_at_private_addresses() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mgmt = cp.account("owner@example.com").await?;
    let project = cp.project(&mgmt, "probe", &[]).await?;
    let seen = Arc::new(Seen::default());
    let base = backend(seen.clone()).await?;
    let settings = json!({"settings": {
        "client_proxy": {"connect": {"enabled": true, "endpoint": format!("{base}/connect")}},
    }});
    let project_path = format!("/v1/projects/{}", project.id);
    let (s, b) = cp
        .call("PATCH", &project_path, Some(&mgmt), Some(settings))
        .await?;
    assert_eq!(s, 200, "{b}");
    cp.wait_applied(&mgmt, &project.id).await?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(cp.ws_url(&project.slug)),
    )
    .await??;
    let r = call(&mut ws, json!({"id": 1, "connect": {}})).await?;
    assert_eq!(r["error"]["code"], 100, "the proxy call is refused: {r}");
    assert_eq!(
        seen.connects.load(Ordering::SeqCst),
        0,
        "nothing reached the backend"
    );
    Ok(())
}
