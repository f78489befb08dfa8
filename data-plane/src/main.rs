//! `rotor-data-plane --config FILE [--port N] [--handoff-socket PATH] [--admin-address ADDR]`:
//! runs one tenant's real-time server standalone, from a Centrifugo-style config file (JSON,
//! TOML or YAML), or under the control plane, which hands WebSocket connections over on the
//! hand-off socket. SIGHUP reloads the file without dropping connections; SIGTERM disconnects
//! clients with "shutdown" (3001) and exits. It logs to standard error at the config's
//! `log.level` (`RUST_LOG` wins when set); `ROTOR_…` and `CENTRIFUGO_…` environment variables
//! override the file (see `rotor_tenant_config`).
//!
//! With a non-empty `ROTOR_ADMIN_TOKEN` the admin surface (see `rotor_data_plane::admin`) gets
//! its own listener at `--admin-address`, else `ROTOR_ADMIN_ADDRESS`, else `127.0.0.1:0`, and
//! the process prints `rotor-data-plane admin listening on ADDR` before
//! `rotor-data-plane listening on ADDR` (the public listener). With `grpc_api.enabled` the
//! gRPC server API (see `rotor_data_plane::grpc_api`) listens too (not for a hosted project,
//! whose gRPC connections the edge hands over), and the process prints
//! `rotor-data-plane grpc api at ADDR` before the public listener's line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use rotor_data_plane::config::RuntimeConfig;
use rotor_data_plane::node::Node;
use rotor_tenant_config::TenantConfig;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser, Debug)]
#[command(
    name = "rotor-data-plane",
    version,
    about = "Rotor's Centrifugo-compatible real-time server"
)]
struct Args {
    /// Config file (JSON, TOML or YAML, Centrifugo v6 option names).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Port to listen on (overrides http_server.port; 0 picks a free port).
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Address to bind (overrides http_server.address).
    #[arg(long)]
    address: Option<String>,
    /// Also accept connections handed over by the control plane's edge on this Unix socket
    /// (created with mode 0600; a stale socket there is replaced).
    #[arg(long)]
    handoff_socket: Option<PathBuf>,
    /// Address of the admin listener (`host:port`), used only with a non-empty
    /// `ROTOR_ADMIN_TOKEN` [default: 127.0.0.1:0].
    #[arg(long, env = "ROTOR_ADMIN_ADDRESS")]
    admin_address: Option<String>,
}

/// The config file (or, without one, the defaults) with the environment's `ROTOR_…` and
/// `CENTRIFUGO_…` variables overlaid.
fn load(path: Option<&PathBuf>) -> anyhow::Result<rotor_tenant_config::Loaded> {
    Ok(match path {
        Some(p) => TenantConfig::load_file(p).with_context(|| format!("config {}", p.display()))?,
        None => TenantConfig::load_env()?,
    })
}

/// Warns about `CENTRIFUGO_…` variables that name no option (names only: values may be
/// secrets).
fn warn_unknown_env(loaded: &rotor_tenant_config::Loaded) {
    for name in &loaded.unknown_env {
        tracing::warn!(variable = %name, "environment variable names no option Rotor knows; ignored");
    }
}

/// The runtime: as many workers as cores (or as the supervisor's `ROTOR_WORKERS`, the cores
/// its plan's CPU cap amounts to, when fewer), and a blocking pool that fits the tasks
/// (threads) a supervisor allows this process (`ROTOR_TASKS`, the pids limit of its plan), so a
/// burst of blocking work waits for a thread instead of failing to create one.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let available = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cores = std::env::var("ROTOR_WORKERS")
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
        .filter(|w| *w > 0)
        .map_or(available, |w| w.min(available));
    let tasks = std::env::var("ROTOR_TASKS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|t| *t > 0);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    match tasks {
        Some(tasks) => {
            // At most half the budget for workers; the rest, less the main thread and a
            // margin for threads libraries start, for blocking work.
            let workers = cores.min((tasks.saturating_sub(8) / 2).max(1));
            builder
                .worker_threads(workers)
                .max_blocking_threads(tasks.saturating_sub(workers + 8).max(2));
        }
        None => {
            builder.worker_threads(cores);
        }
    }
    // Housekeeping deadlines are put on a grid counted from here (see `clock`).
    rotor_data_plane::clock::init();
    builder.build()
}

fn main() -> anyhow::Result<()> {
    runtime()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    // The config first: its `log.level` sets up logging (RUST_LOG, when set, wins).
    let loaded = load(args.config.as_ref())?;
    let mut logging = rotor_data_plane::logging::Logging::init(loaded.config.log_level());
    warn_unknown_env(&loaded);
    tracing::debug!(
        file = ?args.config,
        engine = ?loaded.config.engine.kind,
        namespaces = loaded.config.channel.namespaces.len(),
        "config loaded"
    );

    // A typical host starts processes with 1,024 open files; one connection needs one. A
    // supervised tenant keeps the limit its plan gave it.
    if std::env::var("ROTOR_OPEN_FILES").is_ok_and(|v| v == "supervised") {
        tracing::info!(
            soft = rotor_tenant_config::fdlimit::soft_limit(),
            "open-file limit set by the supervisor (the plan's); not raised"
        );
    } else {
        match rotor_tenant_config::fdlimit::raise_to_hard() {
            Ok(l) => tracing::info!(
                started = l.started,
                soft = l.soft,
                hard = l.hard,
                "open-file limit raised to the hard limit"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }

    let mut tenant = loaded.config;
    if let Some(port) = args.port {
        tenant.http_server.port = port;
    }
    if let Some(address) = args.address.clone() {
        tenant.http_server.address = address;
    }
    let host = if tenant.http_server.address.is_empty() {
        "0.0.0.0".to_owned()
    } else {
        tenant.http_server.address.clone()
    };
    let listener = rotor_data_plane::listen::bind((host.as_str(), tenant.http_server.port))
        .await
        .with_context(|| format!("bind {host}:{}", tenant.http_server.port))?;
    let addr = listener.local_addr()?;
    let name = if tenant.node.name.is_empty() {
        format!("rotor-{}", addr.port())
    } else {
        tenant.node.name.clone()
    };
    let grpc_api = tenant.grpc_api.clone();
    let grpc_address =
        rotor_data_plane::grpc_api::bind_address(&grpc_api, &tenant.http_server.address);
    let runtime = RuntimeConfig::compile(tenant).map_err(|e| anyhow::anyhow!("{e}"))?;
    let what = if runtime.tenant.broker.nats().is_some() {
        "nats broker"
    } else {
        "engine"
    };
    let node = Node::from_config(runtime, name).await.context(what)?;

    // SIGHUP: reload the config file in place.
    if let Some(path) = args.config.clone() {
        let node = node.clone();
        let port = addr.port();
        tokio::spawn(async move {
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                match load(Some(&path)) {
                    Ok(loaded) => {
                        warn_unknown_env(&loaded);
                        let mut cfg = loaded.config;
                        cfg.http_server.port = port;
                        match node.config.apply(cfg) {
                            Ok(_) => tracing::info!("config reloaded"),
                            Err(e) => tracing::error!(error = %e, "config reload refused"),
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "config reload refused"),
                }
            }
        });
    }

    // A reloaded or pushed config's log level applies at once.
    {
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                let changed = node.config.changed();
                logging.follow(node.config.load().tenant.log_level());
                tokio::select! {
                    _ = node.shutdown.cancelled() => break,
                    _ = changed => {}
                }
            }
        });
    }

    // Without its hand-off socket the process still serves: the edge then proxies to it.
    let handoff = args.handoff_socket.as_ref().and_then(|path| {
        rotor_data_plane::handoff::HandoffListener::bind(path)
            .inspect_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot bind the hand-off socket; WebSockets will be proxied"))
            .ok()
    });

    // The admin surface, on its own listener and only with a token.
    let admin = match std::env::var("ROTOR_ADMIN_TOKEN") {
        Ok(token) if !token.is_empty() => {
            let address = args
                .admin_address
                .as_deref()
                .filter(|a| !a.is_empty())
                .unwrap_or(rotor_data_plane::admin::DEFAULT_ADDRESS);
            let admin = rotor_data_plane::admin::AdminListener::bind(address, token).await?;
            println!(
                "rotor-data-plane admin listening on {}",
                admin.local_addr()?
            );
            Some(admin)
        }
        _ => None,
    };

    // The gRPC server API, on its own listener, stopping with the node. A hosted project's
    // has none: the edge hands its gRPC connections over (see `grpc_api::Handed`).
    let hosted =
        rotor_data_plane::egress::Egress::current() == rotor_data_plane::egress::Egress::PublicOnly;
    let grpc = if grpc_api.enabled && !hosted {
        let server = rotor_data_plane::grpc_api::server(&grpc_api, node.clone())?;
        let listener = rotor_data_plane::grpc_api::bind(&grpc_address).await?;
        println!("rotor-data-plane grpc api at {}", listener.local_addr()?);
        Some(tokio::spawn(rotor_data_plane::grpc_api::serve(
            server,
            listener,
            node.shutdown.clone(),
        )))
    } else {
        None
    };

    // Asynchronous consumers of API commands, following the config.
    let consumers_stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(rotor_data_plane::consumers::run(
        node.clone(),
        consumers_stop.clone(),
    ));

    // A supervised tenant pushes its usage and says when it is idle.
    if let Some(reporter) = rotor_data_plane::report::Reporter::from_env() {
        tokio::spawn(reporter.run(node.clone()));
    }
    println!("rotor-data-plane listening on {addr}");
    tracing::info!(%addr, node = %node.name, "rotor-data-plane started");
    let shutdown = async {
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down");
    };
    rotor_data_plane::server::serve_with_handoff(
        listener,
        handoff,
        node,
        shutdown,
        Duration::from_secs(5),
        admin,
    )
    .await?;
    if let Some(task) = grpc {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC API failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC API task failed"),
            Ok(Ok(Ok(()))) | Err(_) => {}
        }
    }
    consumers_stop.cancel();
    Ok(())
}
