//! Plumbing shared by the feature scenarios that measure one data plane over real sockets
//! (`rotor-bench-delta`, `rotor-bench-tags`): a subscriber that connects and subscribes in one
//! frame, waiting until every subscriber is subscribed, publishing at a steady rate through the
//! server API, collecting the subscribers' results, and writing the scenario's result file.

use std::time::Duration;

use anyhow::{bail, Context as _};
use futures_util::SinkExt;
use rotor_data_plane::protocol::{Command, ConnectRequest, SubscribeRequest};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::Protocol;

/// A subscriber's socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url` (Protobuf when `protobuf`), then sends `connect` with `token`
/// (id 1) and `subscribe` (id 2) in one frame.
pub async fn open_and_subscribe(
    url: &str,
    protobuf: bool,
    token: String,
    subscribe: SubscribeRequest,
) -> anyhow::Result<(Socket, Protocol)> {
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    if protobuf {
        req.headers_mut()
            .insert("sec-websocket-protocol", "centrifuge-protobuf".parse()?);
    }
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .context("connect timeout")??;
    let commands = [
        Command {
            id: 1,
            connect: Some(ConnectRequest {
                token,
                ..Default::default()
            }),
            ..Default::default()
        },
        Command {
            id: 2,
            subscribe: Some(subscribe),
            ..Default::default()
        },
    ];
    let protocol = if protobuf {
        Protocol::Protobuf
    } else {
        Protocol::Json
    };
    ws.send(crate::client::centrifugo::frame(protocol, &commands))
        .await?;
    Ok((ws, protocol))
}

/// Waits (60 s at most) until `n` subscribers reported on `ready` that they are subscribed.
pub async fn all_subscribed(
    ready: &mut tokio::sync::mpsc::Receiver<()>,
    n: usize,
) -> anyhow::Result<()> {
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), ready.recv())
            .await
            .context("subscribers did not all subscribe in time")?
            .context("a subscriber failed before subscribing")?;
    }
    Ok(())
}

/// Publishes `body(n)` for n in 1..=messages through `{api_url}/publish`, `rate` a second.
pub async fn publish_paced(
    http: &reqwest::Client,
    api_url: &str,
    api_key: &str,
    rate: f64,
    messages: u64,
    body: impl Fn(u64) -> Value,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    for n in 1..=messages {
        tick.tick().await;
        let resp = http
            .post(format!("{api_url}/publish"))
            .header("x-api-key", api_key)
            .json(&body(n))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("publish {n}: HTTP {}", resp.status());
        }
    }
    Ok(())
}

/// Waits (130 s at most between them) for every subscriber task; the first failure fails.
pub async fn join_subscribers(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    while let Some(done) = tokio::time::timeout(Duration::from_secs(130), tasks.join_next())
        .await
        .context("subscribers did not finish in time")?
    {
        done??;
    }
    Ok(())
}

/// Writes a scenario's result as pretty JSON to `out`, making its directory.
pub fn write_result(out: &std::path::Path, result: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(result)?)?;
    Ok(())
}

/// Runs a scenario to its end on a two-worker runtime (what the scenario binaries' `main`
/// does with their parsed options).
pub fn block_on<T>(
    scenario: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(scenario)?;
    Ok(())
}
