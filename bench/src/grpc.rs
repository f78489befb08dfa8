//! `rotor-bench-grpc`: publishes per second through the gRPC server API against the HTTP
//! server API, in the same run, on one in-process data plane (memory engine) serving both on
//! loopback. Each round publishes `publishes` small JSON payloads to one channel with
//! `concurrency` calls in flight: HTTP/1.1 with a keep-alive pool (reqwest, one connection per
//! call in flight) and gRPC over one HTTP/2 connection (tonic, concurrent streams). The two
//! alternate for `rounds` rounds after a warm-up; the result keeps every round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use futures_util::StreamExt as _;
use rotor_data_plane::grpc_api::proto::centrifugo_api_client::CentrifugoApiClient;
use rotor_data_plane::grpc_api::proto::PublishRequest;
use rotor_data_plane::node::Node;
use serde::{Deserialize, Serialize};

const KEY: &str = "bench-api-key";
const CHANNEL: &str = "bench";

/// Options of the gRPC scenario.
#[derive(Debug, Clone, Args)]
pub struct GrpcArgs {
    /// Publishes per round and protocol.
    #[arg(long, default_value_t = 20_000)]
    pub publishes: usize,
    /// Calls in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured rounds per protocol (after one warm-up round each).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Where the JSON result goes.
    #[arg(long, default_value = "bench/results/grpc.json")]
    pub out: std::path::PathBuf,
}

/// One protocol's rounds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GrpcRun {
    /// `grpc` or `http`.
    pub via: String,
    /// Publishes per second of each measured round.
    pub per_second: Vec<f64>,
}

impl GrpcRun {
    /// The median round.
    pub fn median(&self) -> f64 {
        let mut v = self.per_second.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    }
}

/// The scenario's result file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GrpcResult {
    pub publishes: usize,
    pub concurrency: usize,
    pub runs: Vec<GrpcRun>,
}

async fn start_node() -> anyhow::Result<Arc<Node>> {
    let loaded = rotor_tenant_config::TenantConfig::from_value(serde_json::json!({
        "http_api": {"key": KEY},
        "grpc_api": {"enabled": true, "port": 0},
        "log": {"level": "error"}
    }))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = rotor_data_plane::config::RuntimeConfig::compile(loaded.config)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Node::from_config(runtime, "bench-grpc".into()).await?)
}

async fn http_round(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut calls = futures_util::stream::iter(0..n)
        .map(|i| {
            let req = client
                .post(url)
                .header("x-api-key", KEY)
                .body(format!(r#"{{"channel":"{CHANNEL}","data":{{"n":{i}}}}}"#));
            async move {
                let resp = req.send().await?;
                let ok =
                    resp.status().is_success() && !resp.bytes().await?.starts_with(b"{\"error");
                anyhow::Ok(ok)
            }
        })
        .buffer_unordered(concurrency);
    while let Some(ok) = calls.next().await {
        if !ok? {
            bail!("an HTTP publish failed");
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn grpc_round(
    client: &CentrifugoApiClient<tonic::transport::Channel>,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let auth: tonic::metadata::MetadataValue<_> = format!("apikey {KEY}").parse()?;
    let started = Instant::now();
    let mut calls = futures_util::stream::iter(0..n)
        .map(|i| {
            let mut client = client.clone();
            let mut req = tonic::Request::new(PublishRequest {
                channel: CHANNEL.into(),
                data: format!(r#"{{"n":{i}}}"#).into_bytes(),
                ..Default::default()
            });
            req.metadata_mut().insert("authorization", auth.clone());
            async move { anyhow::Ok(client.publish(req).await?.into_inner().error.is_none()) }
        })
        .buffer_unordered(concurrency);
    while let Some(ok) = calls.next().await {
        if !ok? {
            bail!("a gRPC publish failed");
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Runs the scenario and writes its result.
pub async fn run(args: GrpcArgs) -> anyhow::Result<GrpcResult> {
    let node = start_node().await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http_addr = http.local_addr()?;
    tokio::spawn(rotor_data_plane::server::serve(
        http,
        node.clone(),
        std::future::pending(),
        Duration::from_secs(1),
        None,
    ));
    let api = node.config.load().tenant.grpc_api.clone();
    let server = rotor_data_plane::grpc_api::server(&api, node.clone())?;
    let grpc = rotor_data_plane::grpc_api::bind("127.0.0.1:0").await?;
    let grpc_addr = grpc.local_addr()?;
    tokio::spawn(rotor_data_plane::grpc_api::serve(
        server,
        grpc,
        node.shutdown.clone(),
    ));

    let http_client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("http://{http_addr}/api/publish");
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))?
        .connect()
        .await
        .context("gRPC connect")?;
    let grpc_client = CentrifugoApiClient::new(channel);

    let warm = (args.publishes / 10).max(100);
    http_round(&http_client, &url, warm, args.concurrency).await?;
    grpc_round(&grpc_client, warm, args.concurrency).await?;
    let (mut h, mut g) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        h.push(http_round(&http_client, &url, args.publishes, args.concurrency).await?);
        g.push(grpc_round(&grpc_client, args.publishes, args.concurrency).await?);
    }
    node.shutdown.cancel();
    let result = GrpcResult {
        publishes: args.publishes,
        concurrency: args.concurrency,
        runs: vec![
            GrpcRun {
                via: "grpc".into(),
                per_second: g,
            },
            GrpcRun {
                via: "http".into(),
                per_second: h,
            },
        ],
    };
    for r in &result.runs {
        println!(
            "{}: {:.0} publishes/s (median of {:?})",
            r.via,
            r.median(),
            r.per_second
        );
    }
    crate::scenario::write_result(&args.out, &result)?;
    Ok(result)
}
