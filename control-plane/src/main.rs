//! `rotor-control-plane serve`: runs the control plane — migrations, the public listener
//! (edge + REST API + dashboard), and the reconciler that supervises tenant processes.

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rotor_control_plane::reconciler::Reconciler;
use rotor_control_plane::settings::Settings;
use rotor_control_plane::state::AppState;
use rotor_control_plane::supervisor::LocalDriver;
use rotor_control_plane::{app, db, edge};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "rotor-control-plane", version, about = "Rotor's control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (edge, REST API, dashboard, tenant supervisor).
    Serve {
        /// Also create (or reuse) a demo account and project and print how to use them.
        #[arg(long)]
        demo: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // A closed stderr (e.g. a parent that went away) must never take a request down.
        .log_internal_errors(false)
        .init();
    match cli.command {
        Command::Serve { demo } => serve(demo).await,
    }
}

async fn serve(demo: bool) -> anyhow::Result<()> {
    let mut settings = Settings::from_env();
    // Bind first: with port 0 the public URL (shown in the dashboard and API) must carry the
    // port actually bound.
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("bind {}", settings.listen))?;
    rotor_tenant_config::listen::deepen(&listener)?;
    let addr = listener.local_addr()?;
    if std::env::var("ROTOR_PUBLIC_URL").map_or(true, |v| v.trim().is_empty()) {
        settings.public_url = format!("http://{addr}");
    }
    let settings = Arc::new(settings);
    let pool = db::connect_and_migrate(&settings.database_url)
        .await
        .context("database")?;
    let state = AppState::new(pool, settings.clone());
    let run_dir = std::env::var("ROTOR_RUN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("rotor-tenants"));
    let driver = Arc::new(
        LocalDriver::new(settings.data_plane_bin.clone(), run_dir)
            .context("run dir")?
            .allow_private_egress(settings.tenant_private_egress),
    );
    let routes = state.routes.clone();
    let stop = CancellationToken::new();

    if demo {
        let demo = rotor_control_plane::demo::ensure(&state)
            .await
            .context("demo project")?;
        println!("{}", demo.describe(&settings.public_url));
    }
    let mut reconciler = Reconciler::new(state.clone(), driver, routes.clone());
    reconciler.start_up().await;
    let reconcile_task = tokio::spawn(reconciler.run(stop.clone()));
    let usage_task = tokio::spawn(rotor_control_plane::usage::run(
        state.pool.clone(),
        routes.clone(),
        stop.clone(),
    ));

    println!("rotor-control-plane listening on {addr}");
    tracing::info!(%addr, public_url = %settings.public_url, "control plane started");
    let edge_task = tokio::spawn(edge::serve(
        listener,
        routes,
        app::public_app(state),
        stop.clone(),
    ));

    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    // Tenants keep serving: they are independent processes and a restarted control plane
    // adopts them.
    tracing::info!("control plane stopping; tenant processes keep running");
    stop.cancel();
    let _ = edge_task.await;
    let _ = reconcile_task.await;
    let _ = usage_task.await;
    Ok(())
}
