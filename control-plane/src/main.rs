//! `rotor-control-plane serve`: runs the control plane — migrations, the public listener
//! (edge + REST API + dashboard), and the reconciler that supervises tenant processes.
//! `rotor-control-plane operator …`: the operator's commands on plans, limits and project
//! status and Redis URLs (see [`rotor_control_plane::operator`]), against `DATABASE_URL`.
//! `rotor-control-plane provision-outbox` (hidden) is the worker the control plane runs for
//! one outbox provisioning (see [`rotor_control_plane::consumers::isolated`]).

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
    /// Internal: runs one outbox provisioning read from stdin (see
    /// `rotor_control_plane::consumers::isolated`); the control plane starts it.
    #[command(name = "provision-outbox", hide = true)]
    ProvisionOutbox,
    /// Operator commands: plans, limits, suspension (writes to DATABASE_URL, audited as
    /// operator:$USER).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Put a project (prj_… id or slug) or an account (acc_… id or email) on a plan.
    SetPlan { target: String, plan: String },
    /// Suspend a project (prj_… id or slug): its tenant stops, its endpoints refuse traffic.
    Suspend { project: String },
    /// Resume a suspended project.
    Resume { project: String },
    /// Change some of a plan's limits, e.g. `set-limits free '{"max_projects": 5}'`.
    SetLimits {
        plan: String,
        /// A JSON object merged into the plan's limits.
        limits: String,
    },
    /// List the plans with their limits and how many projects and accounts are on each.
    ListPlans,
    /// Point a Redis-engine project at its own Redis: the URL (`redis://:password@host:6379`)
    /// is read from the first line of stdin, never from the command line, and stored sealed
    /// (needs ROTOR_SECRET_KEY). With --clear, back to the installation's REDIS_URL.
    SetRedisUrl {
        project: String,
        #[arg(long)]
        clear: bool,
    },
    /// Add a Redis deployment new Redis-engine projects are placed on. Its `engine.redis`
    /// options (address / cluster_address / sentinel_* / tls, as the data plane takes them)
    /// are read as one JSON object from stdin, never from the command line, and stored sealed
    /// (needs ROTOR_SECRET_KEY). With --replace, change an existing deployment's options (its
    /// projects restart on them).
    AddRedisDeployment {
        name: String,
        #[arg(long)]
        replace: bool,
    },
    /// List the Redis deployments: form, nodes (no credentials), TLS, open or closed, projects.
    ListRedisDeployments,
    /// Stop placing new projects on a deployment (those on it stay).
    CloseRedisDeployment { name: String },
    /// Place new projects on a closed deployment again.
    OpenRedisDeployment { name: String },
    /// Remove a deployment no project uses.
    RemoveRedisDeployment { name: String },
    /// Move a Redis-engine project to another deployment. The project is held first: its
    /// tenant stops (requests get 503 with Retry-After) and the move waits until it has let go
    /// of the old deployment. --history drain then copies its keys (history, presence,
    /// recovery positions); --history drop leaves them behind. The project switches, its
    /// tenant starts on the new deployment, and the old keys are deleted. A failed move is
    /// called off (the project stays where it was, with its keys); an interrupted one's hold
    /// lapses within 30 s, and the command can be run again.
    MoveProject {
        project: String,
        deployment: String,
        #[arg(long, value_enum)]
        history: HistoryArg,
        /// Seconds to wait for the tenant to let go of the old deployment before calling the
        /// move off.
        #[arg(long, default_value_t = rotor_control_plane::redis_move::STOP_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
        stop_timeout: u64,
    },
}

/// What `move-project` does with the project's keys (no default: never silent).
#[derive(Clone, Copy, clap::ValueEnum)]
enum HistoryArg {
    Drain,
    Drop,
}

fn main() -> anyhow::Result<()> {
    let command = match Cli::parse().command {
        // Before any runtime or logging: the worker is one small thread under its own limits.
        Command::ProvisionOutbox => {
            return Ok(rotor_control_plane::consumers::isolated::child_main()?)
        }
        other => other,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // A closed stderr (e.g. a parent that went away) must never take a request down.
        .log_internal_errors(false)
        .init();
    match command {
        Command::Serve { demo } => serve(demo).await,
        Command::Operator { command } => operator(command).await,
        Command::ProvisionOutbox => {
            anyhow::bail!("provision-outbox runs before the runtime starts")
        }
    }
}

async fn operator(command: OperatorCommand) -> anyhow::Result<()> {
    use rotor_control_plane::operator::{self, Operator};
    use rotor_control_plane::{redis_deployments, redis_move};
    let settings = Settings::from_env();
    let pool = db::connect_existing(&settings.database_url)
        .await
        .context("database")?;
    let op = Operator::from_env();
    let change = match command {
        OperatorCommand::SetPlan { target, plan } => {
            operator::set_plan(&pool, &op, &target, &plan).await?
        }
        OperatorCommand::Suspend { project } => operator::suspend(&pool, &op, &project).await?,
        OperatorCommand::Resume { project } => operator::resume(&pool, &op, &project).await?,
        OperatorCommand::SetLimits { plan, limits } => {
            let limits: serde_json::Value =
                serde_json::from_str(&limits).context("limits must be a JSON object")?;
            operator::set_limits(&pool, &op, &plan, &limits).await?
        }
        OperatorCommand::SetRedisUrl { project, clear } => {
            let mut url = String::new();
            if !clear {
                std::io::stdin()
                    .read_line(&mut url)
                    .context("reading the Redis URL from stdin")?;
                anyhow::ensure!(
                    !url.trim().is_empty(),
                    "give the Redis URL on stdin, or --clear"
                );
            }
            let url = (!clear).then_some(url.as_str());
            operator::set_redis_url(&pool, &op, &project, url).await?
        }
        OperatorCommand::AddRedisDeployment { name, replace } => {
            use std::io::Read as _;
            let mut text = String::new();
            std::io::stdin()
                .take(1 << 20)
                .read_to_string(&mut text)
                .context("reading the deployment's options from stdin")?;
            // Not repeated in the error: the options hold passwords.
            let options: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "the options on stdin must be one JSON object (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })?;
            redis_deployments::add(&pool, &op, &name, &options, replace).await?
        }
        OperatorCommand::ListRedisDeployments => {
            for d in redis_deployments::list(&pool).await? {
                let nodes = match d.nodes {
                    Ok(n) => n.join(","),
                    Err(e) => format!("(options do not open: {e})"),
                };
                println!(
                    "{}	{}	{}	tls={}	{}	projects={}",
                    d.name,
                    d.form,
                    nodes,
                    d.tls,
                    if d.accepts_new { "open" } else { "closed" },
                    d.projects
                );
            }
            return Ok(());
        }
        OperatorCommand::CloseRedisDeployment { name } => {
            redis_deployments::set_accepting(&pool, &op, &name, false).await?
        }
        OperatorCommand::OpenRedisDeployment { name } => {
            redis_deployments::set_accepting(&pool, &op, &name, true).await?
        }
        OperatorCommand::RemoveRedisDeployment { name } => {
            redis_deployments::remove(&pool, &op, &name).await?
        }
        OperatorCommand::MoveProject {
            project,
            deployment,
            history,
            stop_timeout,
        } => {
            let history = match history {
                HistoryArg::Drain => redis_move::History::Drain,
                HistoryArg::Drop => redis_move::History::Drop,
            };
            let default = settings.redis_url.as_deref();
            let stop_timeout = std::time::Duration::from_secs(stop_timeout);
            redis_move::move_project(
                &pool,
                &op,
                &project,
                &deployment,
                history,
                default,
                stop_timeout,
            )
            .await?
        }
        OperatorCommand::ListPlans => {
            for plan in operator::list_plans(&pool).await? {
                println!(
                    "{}\tprojects={}\taccounts={}\t{}",
                    plan.name, plan.projects, plan.accounts, plan.limits
                );
            }
            return Ok(());
        }
    };
    println!(
        "{}: {} -> {} ({} project config(s) bumped; running tenants pick it up from the reconciler)",
        change.target, change.before, change.after, change.projects_bumped
    );
    Ok(())
}

async fn serve(demo: bool) -> anyhow::Result<()> {
    // A typical host starts processes with 1,024 open files; one connection needs one.
    match rotor_tenant_config::fdlimit::raise_to_hard() {
        Ok(l) => tracing::info!(
            started = l.started,
            soft = l.soft,
            hard = l.hard,
            "open-file limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let mut settings = Settings::from_env();
    let trusted_proxies = rotor_control_plane::settings::trusted_proxies_from_env()
        .context("ROTOR_EDGE_TRUSTED_PROXIES")?;
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
    settings.check().context("configuration")?;
    let settings = Arc::new(settings);
    let pool = db::connect_and_migrate(&settings.database_url)
        .await
        .context("database")?;
    let state = AppState::new(pool, settings.clone());
    let run_dir = std::env::var("ROTOR_RUN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| rotor_control_plane::supervisor::default_run_dir());
    let driver = Arc::new(
        LocalDriver::new(settings.data_plane_bin.clone(), run_dir)
            .context("run dir")?
            .allow_private_egress(settings.tenant_private_egress)
            .deny_addresses(
                &rotor_control_plane::consumers::service_addresses(
                    &settings.database_url,
                    settings.redis_url.as_deref(),
                )
                .await,
            )
            .park_after(rotor_control_plane::parking::park_after()),
    );
    tracing::info!(limits = %driver.sandbox().describe(), "tenant processes are confined by the kernel");
    let routes = state.routes.clone();
    let stop = CancellationToken::new();
    // Tenants push usage and idleness here (bound before any tenant starts).
    let reports =
        rotor_control_plane::parking::bind(&driver.report_socket()).context("report socket")?;
    // Tenant logs share the run directory with everything else there: kept small.
    tokio::spawn(rotor_control_plane::tenant_logs::keep_trimmed(
        driver.dir().to_path_buf(),
        stop.clone(),
    ));
    let reports_task = tokio::spawn(rotor_control_plane::parking::receive(
        reports,
        state.pool.clone(),
        routes.clone(),
        stop.clone(),
    ));

    if demo {
        let demo = rotor_control_plane::demo::ensure(&state)
            .await
            .context("demo project")?;
        println!("{}", demo.describe(&settings.public_url));
    }
    if let Err(e) = rotor_control_plane::parking::learn_smallest_plan_memory(&state.pool).await {
        tracing::warn!(error = %e, "plans unreadable: the tenant cap assumes 256 MiB per tenant");
    }
    let mut reconciler = Reconciler::new(state.clone(), driver.clone(), routes.clone());
    reconciler.start_up().await;
    let reconcile_task = tokio::spawn(reconciler.run(stop.clone()));
    // Previous token secrets are erased once their grace period ends.
    let sweep_task = tokio::spawn(rotor_control_plane::secret_store::run_sweeper(
        state.pool.clone(),
        std::time::Duration::from_secs(60),
        stop.clone(),
    ));
    // Owners are told when their plan's CPU cap holds their tenant back.
    let throttling_task = tokio::spawn(rotor_control_plane::throttling::run(
        state.clone(),
        driver.clone(),
        routes.clone(),
        stop.clone(),
    ));
    let usage_task = tokio::spawn(rotor_control_plane::usage::run(
        state.pool.clone(),
        routes.clone(),
        stop.clone(),
    ));

    let connections =
        edge::caps::Connections::new(settings.edge, rotor_tenant_config::fdlimit::soft_limit());
    let edge_caps = connections.snapshot();
    tracing::info!(
        max_connections = edge_caps.limits.max_connections,
        max_per_address = edge_caps.limits.max_per_address,
        open_files_reserve = edge_caps.file_reserve,
        "edge connection caps"
    );
    let wakes = Arc::new(edge::wakes::Wakes::new(edge::wakes::WakeLimits::from_env()));
    let max_running = rotor_control_plane::parking::max_running_tenants();
    tracing::info!(
        wake_burst = wakes.limits().burst,
        wakes_per_minute = wakes.limits().per_minute,
        max_running_tenants = max_running,
        parking = rotor_control_plane::parking::park_after().is_some(),
        "wakes: per-address budget and the box's tenant cap"
    );
    // The operator's metrics listener, announced before the public one (tests wait for that).
    let metrics_task = match &settings.metrics_listen {
        Some(at) => {
            let metrics = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("bind ROTOR_METRICS_LISTEN {at}"))?;
            println!("rotor-control-plane metrics on {}", metrics.local_addr()?);
            let sources = edge::metrics::Sources {
                connections: connections.clone(),
                wakes: wakes.clone(),
                routes: routes.clone(),
                max_running,
            };
            Some(tokio::spawn(edge::metrics::serve(
                metrics,
                sources,
                stop.clone(),
            )))
        }
        None => None,
    };

    println!("rotor-control-plane listening on {addr}");
    tracing::info!(%addr, public_url = %settings.public_url, "control plane started");
    let edge_task = tokio::spawn(edge::serve(
        listener,
        routes,
        app::public_app(state),
        settings.tenant_host.clone(),
        connections,
        wakes,
        trusted_proxies,
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
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    let _ = reconcile_task.await;
    let _ = reports_task.await;
    // Tenants outlive the control plane (the next one adopts them); their parent group goes
    // only when none is left.
    driver.sandbox().close();
    let _ = usage_task.await;
    let _ = throttling_task.await;
    let _ = sweep_task.await;
    Ok(())
}
