//! From Postgres rows to a tenant's [`TenantConfig`]: the one place that knows how a project,
//! its token secrets, API keys (id, hash and scope: `http_api.keys`) and namespaces become
//! the config its data plane runs.
//! Secrets are stored sealed ([`crate::sealed`]) and opened only here and for their owner.
//! [`compile`] reads the rows and opens the secrets; [`assemble`] builds the typed config of the
//! contract crate from them and loads it with the data plane's own loader, which must take it
//! without a warning.

use rotor_tenant_config::{
    AddressList, EngineSection, EngineType, RedisEngine, TenantConfig, TokenSection,
};
use serde_json::Value;
use sqlx::PgPool;

use crate::ids::ProjectId;
use crate::sealed::{Context, Keyring, Purpose, SealError};

mod assemble;

/// A project as the supervisor and reconciler see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: ProjectId,
    pub slug: String,
    pub status: String,
    pub engine: String,
    /// The project's own Redis, sealed ([`Purpose::RedisUrl`]); opened only by [`compile`].
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    /// The operator's Redis deployment the project is placed on
    /// ([`crate::redis_deployments`]).
    pub redis_deployment: Option<String>,
    pub settings: Value,
    pub config_version: i64,
    pub applied_version: i64,
}

impl TenantRow {
    /// Whether the tenant should be serving.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// What the reconciler needs of every project on each pass (every two seconds, for every
/// project on the box): no settings, no secrets.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantState {
    pub id: ProjectId,
    pub slug: String,
    pub status: String,
    pub config_version: i64,
    pub applied_version: i64,
    /// Held for a move to another Redis deployment ([`crate::redis_move`]): not to run.
    pub moving: bool,
    /// The hold's stop was confirmed (by this or another control plane).
    pub move_stopped: bool,
}

impl TenantState {
    /// Whether the tenant should be serving.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// What a plan allows (0 = unlimited, where that makes sense).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct PlanLimits {
    pub max_connections: u32,
    pub max_channels_per_connection: u32,
    pub publish_rate: u32,
    pub max_message_size: u32,
    pub max_history_size: u32,
    pub max_history_ttl_seconds: u64,
    pub max_namespaces: u32,
    pub max_api_keys: u32,
    /// Projects per account (read from the account's plan).
    pub max_projects: u32,
    /// Management tokens per account (read from the account's plan).
    pub max_management_tokens: u32,
    /// History payload bytes the project keeps (in its memory, or what it writes into Redis),
    /// in all and per channel.
    pub max_history_bytes: u64,
    pub max_channel_history_bytes: u64,
    /// Channels that exist at once (with a subscriber or history).
    pub max_channels: u32,
    /// Presence entries the project holds.
    pub max_presence_entries: u32,
    /// Kernel limits of each tenant process (see [`crate::sandbox`]): open files
    /// (`RLIMIT_NOFILE`), tasks (threads; pids cgroup), memory in MiB (memory cgroup) and CPU
    /// weight (100 = an ordinary share; cgroup `cpu.weight`, or `cpu.shares` scaled on v1).
    pub tenant_open_files: u64,
    pub tenant_tasks: u64,
    pub tenant_memory_mb: u64,
    pub tenant_cpu_weight: u64,
    /// The most CPU a tenant process may use, in percent of one core (`cpu.max`, or the CFS
    /// quota on cgroup v1).
    pub tenant_cpu_max_percent: u64,
    /// The scheduler time slice of a tenant's threads in microseconds (0 = the kernel's
    /// default; 100–100000): a shorter slice is served first when tenants share a core.
    pub tenant_cpu_slice_us: u64,
    /// What the edge lets through to a project per second before answering 429 itself:
    /// requests (API calls, SSE and HTTP streams), and WebSocket handshakes. The burst is two
    /// seconds' worth.
    pub edge_requests_per_second: u32,
    pub edge_connects_per_second: u32,
}

impl PlanLimits {
    /// Reads a plan's `limits` JSON (missing fields are 0).
    pub fn from_json(v: &Value) -> Self {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    /// Parses limits strictly, for the operator: every field must be known and a non-negative
    /// integer; the error names the field.
    pub fn parse_strict(v: &Value) -> Result<Self, String> {
        let known = serde_json::to_value(Self::default()).unwrap_or_default();
        let obj = v.as_object().ok_or("limits must be a JSON object")?;
        for (key, value) in obj {
            if known.get(key).is_none() {
                let names: Vec<&String> = known
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                    .collect();
                return Err(format!("unknown limit {key:?} (known: {names:?})"));
            }
            if !value.is_u64() {
                return Err(format!("{key}: must be a non-negative integer"));
            }
        }
        let limits: Self = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        let slice = limits.tenant_cpu_slice_us;
        if slice != 0 && !(rotor_timeslice::MIN_US..=rotor_timeslice::MAX_US).contains(&slice) {
            return Err(format!(
                "tenant_cpu_slice_us: must be 0 (the kernel's default) or {}–{} microseconds",
                rotor_timeslice::MIN_US,
                rotor_timeslice::MAX_US
            ));
        }
        Ok(limits)
    }

    /// The limits of a project's plan (all 0, unlimited, for a plan that is gone).
    pub async fn of_project<'e>(
        db: impl sqlx::PgExecutor<'e>,
        project: &ProjectId,
    ) -> Result<Self, sqlx::Error> {
        let limits: Option<Value> = sqlx::query_scalar(
            "SELECT limits FROM plans WHERE name = (SELECT plan FROM projects WHERE id = $1)",
        )
        .bind(project)
        .fetch_optional(db)
        .await?;
        Ok(limits.map(|l| Self::from_json(&l)).unwrap_or_default())
    }

    /// What the kernel holds each tenant process of this plan to.
    pub fn kernel(&self) -> crate::sandbox::TenantLimits {
        crate::sandbox::TenantLimits {
            open_files: self.tenant_open_files,
            tasks: self.tenant_tasks,
            memory_bytes: self.tenant_memory_mb.saturating_mul(1024 * 1024),
            cpu_weight: self.tenant_cpu_weight,
            cpu_max_percent: self.tenant_cpu_max_percent,
            cpu_slice_us: self.tenant_cpu_slice_us,
            edge: crate::edge::budgets::EdgeBudget {
                requests_per_second: self.edge_requests_per_second,
                connects_per_second: self.edge_connects_per_second,
            },
        }
    }

    /// The first history option of channel `options` over the plan's maxima: its name and
    /// what the plan allows. Namespaces and the options of channels without a namespace are
    /// held to the same limits.
    pub fn history_excess(&self, options: &Value) -> Option<(&'static str, String)> {
        let size = options.get("history_size").and_then(Value::as_u64);
        if self.max_history_size > 0 && size.unwrap_or(0) > u64::from(self.max_history_size) {
            return Some((
                "history_size",
                format!("your plan allows at most {}", self.max_history_size),
            ));
        }
        let ttl = options
            .get("history_ttl")
            .and_then(Value::as_str)
            .and_then(|t| rotor_tenant_config::parse_go_duration(t).ok())
            .unwrap_or_default();
        if self.max_history_ttl_seconds > 0 && ttl.as_secs() > self.max_history_ttl_seconds {
            return Some((
                "history_ttl",
                format!("your plan allows at most {}s", self.max_history_ttl_seconds),
            ));
        }
        None
    }
}

/// Errors while building a tenant config.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("project {0} has no token secret")]
    MissingSecret(ProjectId),
    #[error("stored config of project {project} is invalid: {message}")]
    Invalid { project: ProjectId, message: String },
    /// The data plane's loader accepted the config with warnings: refused like an invalid
    /// one, so nothing reaches a tenant that its loader would only warn about.
    #[error("config of project {project} loads with warnings: {warnings}")]
    Warnings {
        project: ProjectId,
        warnings: String,
    },
    /// A sealed secret of the project does not open (wrong key, or a value copied from
    /// another row).
    #[error("{field} of project {project} cannot be opened: {source}")]
    Sealed {
        project: ProjectId,
        field: &'static str,
        source: SealError,
    },
}

/// Every project, any status.
pub async fn list(pool: &PgPool) -> Result<Vec<TenantState>, sqlx::Error> {
    sqlx::query_as::<_, TenantState>(
        "SELECT p.id, p.slug, p.status, p.config_version, p.applied_version, \
                m.project_id IS NOT NULL AS moving, \
                COALESCE(m.stopped_at IS NOT NULL, false) AS move_stopped \
         FROM projects p \
         LEFT JOIN redis_moves m ON m.project_id = p.id AND m.expires_at > now()",
    )
    .fetch_all(pool)
    .await
}

/// Marks a project's config as changed (in the caller's transaction): the reconciler pushes
/// the new version to its tenant.
pub async fn bump_config_version(
    conn: &mut sqlx::PgConnection,
    project: &ProjectId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projects SET config_version = config_version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(project)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records many confirmed versions in one statement (never lowering one).
pub async fn mark_applied_many(
    pool: &PgPool,
    applied: &[(ProjectId, i64)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = applied.iter().map(|(id, _)| id.0.as_str()).collect();
    let versions: Vec<i64> = applied.iter().map(|(_, v)| *v).collect();
    sqlx::query(
        "UPDATE projects p SET applied_version = a.version \
         FROM unnest($1::text[], $2::bigint[]) AS a(id, version) \
         WHERE p.id = a.id AND p.applied_version < a.version",
    )
    .bind(ids)
    .bind(versions)
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct SecretRow {
    hmac_secret: String,
    previous_hmac_secret: Option<String>,
    previous_valid_until: Option<chrono::DateTime<chrono::Utc>>,
    rsa_public_key: Option<String>,
    ecdsa_public_key: Option<String>,
}

/// Builds and validates the full config of one tenant, read in one transaction so the version
/// matches what is in it.
pub async fn compile(
    pool: &PgPool,
    project: &ProjectId,
    default_redis_url: Option<&str>,
    dashboard_origin: Option<&str>,
) -> Result<Compiled, CompileError> {
    let sealed = |field: &'static str| {
        move |source: SealError| CompileError::Sealed {
            project: project.clone(),
            field,
            source,
        }
    };
    let keyring = Keyring::global().map_err(sealed("sealed secrets"))?;
    // A previous secret past its grace is erased, not only left out.
    crate::secret_store::sweep_project(pool, project).await?;
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query_as::<_, TenantRow>(
        "SELECT id, slug, status, engine, redis_url, redis_prefix, redis_deployment, settings, \
         config_version, applied_version FROM projects WHERE id = $1",
    )
    .bind(project)
    .fetch_one(&mut *tx)
    .await?;
    let secret = sqlx::query_as::<_, SecretRow>(
        "SELECT hmac_secret, previous_hmac_secret, previous_valid_until, rsa_public_key, ecdsa_public_key \
         FROM token_secrets WHERE project_id = $1",
    )
    .bind(project)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| CompileError::MissingSecret(project.clone()))?;
    let keys: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT id, key_hash, scope FROM api_keys WHERE project_id = $1 ORDER BY created_at",
    )
    .bind(project)
    .fetch_all(&mut *tx)
    .await?;
    let limits = PlanLimits::of_project(&mut *tx, project).await?;
    let deployment: Option<String> = match &row.redis_deployment {
        Some(name) => {
            sqlx::query_scalar("SELECT options FROM redis_deployments WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
        }
        None => None,
    };
    let namespaces: Vec<(String, Value)> =
        sqlx::query_as("SELECT name, options FROM namespaces WHERE project_id = $1 ORDER BY name")
            .bind(project)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;

    let token_ctx = Context::new(Purpose::TokenSecret, project);
    let mut token = TokenSection {
        hmac_secret_key: keyring
            .open(token_ctx, &secret.hmac_secret)
            .map_err(sealed("token_secrets.hmac_secret"))?,
        ..TokenSection::default()
    };
    if let (Some(prev), Some(until)) = (secret.previous_hmac_secret, secret.previous_valid_until) {
        if until > chrono::Utc::now() {
            token.hmac_previous_secret_key = keyring
                .open(token_ctx, &prev)
                .map_err(sealed("token_secrets.previous_hmac_secret"))?;
            token.hmac_previous_secret_key_valid_until = until.timestamp();
        }
    }
    if let Some(k) = secret.rsa_public_key.filter(|k| !k.is_empty()) {
        token.rsa_public_key = k;
    }
    if let Some(k) = secret.ecdsa_public_key.filter(|k| !k.is_empty()) {
        token.ecdsa_public_key = k;
    }
    let settings = crate::project_settings::open_secrets(keyring, project, &row.settings)
        .map_err(sealed("projects.settings (proxy static_headers)"))?;
    let invalid = |message: String| CompileError::Invalid {
        project: project.clone(),
        message,
    };
    let kind = EngineType::parse(&row.engine)
        .ok_or_else(|| invalid(format!("unknown engine {:?}", row.engine)))?;
    let mut engine = EngineSection {
        kind,
        ..EngineSection::default()
    };
    if kind == EngineType::Redis {
        let own = row
            .redis_url
            .as_deref()
            .map(|sealed_url| keyring.open(Context::new(Purpose::RedisUrl, project), sealed_url))
            .transpose()
            .map_err(sealed("projects.redis_url"))?;
        let at = |address: String| RedisEngine {
            address: AddressList(vec![address]),
            ..RedisEngine::default()
        };
        // The project's own URL first, then its deployment, then the installation's Redis.
        engine.redis = match (own, &row.redis_deployment, deployment) {
            (Some(url), _, _) => at(url),
            (None, Some(name), Some(options)) => {
                let options = crate::redis_deployments::open(keyring, name, &options)
                    .map_err(sealed("redis_deployments.options"))?;
                rotor_tenant_config::redis_deployment::engine_from_options(&options)
                    .map_err(|e| invalid(e.to_string()))?
            }
            _ => at(default_redis_url
                .unwrap_or("redis://127.0.0.1:6379")
                .to_owned()),
        };
        engine.redis.prefix = row
            .redis_prefix
            .clone()
            .unwrap_or_else(|| format!("rotor:{}:", row.id));
    }
    let config = assemble::assemble(assemble::Parts {
        row: &row,
        token,
        api_keys: &keys,
        limits: &limits,
        settings: &settings,
        namespaces: &namespaces,
        engine,
        dashboard_origin,
    })?;
    Ok(Compiled {
        config: assemble::load(project, &config)?,
        version: row.config_version,
        limits: limits.kernel(),
    })
}

/// A tenant's compiled config, its version, and the kernel limits its process runs under.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub config: TenantConfig,
    pub version: i64,
    pub limits: crate::sandbox::TenantLimits,
}

/// `scheme://host[:port]` of a URL: what a browser sends as `Origin` for pages under it.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    ))
}
