//! The node: everything one data-plane process shares — live config, hub, engine, metrics, the
//! registry of connected clients — plus the operations the client protocol and the server API
//! have in common (publishing with a channel's history settings).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::budgets::Budgets;
use crate::config::{ChannelRules, ConfigHandle, RuntimeConfig};
use crate::engine::memory::{MemoryBroker, MemoryPresence};
use crate::engine::{Broker, EngineError, Presence, PublishOptions};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::protocol::{Publication, StreamPosition};
use crate::registry::Registry;

/// One data-plane process.
pub struct Node {
    pub id: String,
    pub name: String,
    pub started: Instant,
    pub config: ConfigHandle,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn Presence>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub shutdown: CancellationToken,
    /// The plan's publication rate limit.
    pub publish_limiter: crate::limits::RateLimiter,
    /// `client.connection_rate_limit`: new client sockets per second.
    pub connect_limiter: crate::limits::RateLimiter,
    /// History bytes, channels, presence entries and sockets held against their limits.
    pub budgets: Arc<Budgets>,
    /// Other nodes of this tenant and surveys in flight.
    pub cluster: Arc<crate::cluster::ClusterState>,
    /// Live emulation sessions (HTTP-stream, SSE): random session id (never the client id) →
    /// where `/emulation` posts go.
    pub emulation: parking_lot::Mutex<HashMap<Arc<str>, tokio::sync::mpsc::Sender<bytes::Bytes>>>,
    /// HTTP client for the proxies to the tenant's backend (one pool, survives config reloads).
    pub proxy: crate::proxy::ProxyClient,
    /// Users' online status for the server API's `user_status`.
    pub user_status: crate::user_status::UserStatus,
    /// Channel and connection events to the backend (`webhooks.*`).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    /// The Redis engine of `engine.redis.*`, delivering to `parts`' hub.
    async fn connect_redis(
        config: &RuntimeConfig,
        parts: &Parts,
    ) -> Result<crate::engine::redis::RedisEngine, EngineError> {
        let engine = crate::engine::redis::RedisEngine::connect(
            &config.tenant.engine.redis,
            parts.events.clone(),
            parts.shutdown.clone(),
        )
        .await?
        .with_history_budgets(parts.budgets.clone());
        Ok(engine)
    }

    fn assemble(
        config: RuntimeConfig,
        name: String,
        parts: Parts,
        broker: Arc<dyn Broker>,
        presence: Arc<dyn Presence>,
        user_status: crate::user_status::UserStatus,
    ) -> Arc<Self> {
        let Parts {
            metrics,
            budgets,
            hub,
            registry,
            cluster,
            shutdown,
            ..
        } = parts;
        Arc::new(Self {
            id: cluster.node_id.clone(),
            cluster,
            name,
            started: Instant::now(),
            config: ConfigHandle::new(config, budgets.clone()),
            budgets,
            hub,
            broker,
            presence,
            metrics,
            registry,
            shutdown,
            publish_limiter: Default::default(),
            connect_limiter: Default::default(),
            emulation: Default::default(),
            proxy: crate::proxy::ProxyClient::new(),
            user_status,
            webhooks: Default::default(),
        })
    }

    /// A node with the memory engine.
    pub fn new_memory(config: RuntimeConfig, name: String) -> Arc<Self> {
        let (parts, outgoing) = Parts::new(&name);
        let broker = Arc::new(MemoryBroker::new(
            parts.events.clone(),
            parts.budgets.clone(),
        ));
        let shutdown = parts.shutdown.clone();
        let presence = Arc::new(MemoryPresence::default());
        let node = Self::assemble(
            config,
            name,
            parts,
            broker.clone(),
            presence,
            crate::user_status::UserStatus::memory(),
        );
        crate::webhooks::Webhooks::start(
            &node.webhooks,
            &node,
            crate::webhooks::ledger::Ledger::Memory,
        );
        // One process holds every connection of a memory-engine tenant: there is no other node
        // to tell it is alive (surveys such as `info` still answer, from this node).
        Self::run_cluster(&node, outgoing, false);
        // Expired streams are dropped about once a minute so memory follows retention (on the
        // process's wake grid, see `clock`).
        tokio::spawn(async move {
            loop {
                let next = crate::clock::after(std::time::Duration::from_secs(60));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(next) => broker.sweep(),
                }
            }
        });
        node
    }

    /// A node with the Redis engine (`engine.redis.*` of the config), sharing channels, history
    /// and presence with every other process on the same Redis and prefix.
    pub async fn new_redis(config: RuntimeConfig, name: String) -> Result<Arc<Self>, EngineError> {
        let (parts, outgoing) = Parts::new(&name);
        let engine = Arc::new(Self::connect_redis(&config, &parts).await?);
        let user_status = crate::user_status::UserStatus::redis(
            engine.clone(),
            parts.registry.clone(),
            config.tenant.engine.redis.presence_ttl.get(),
        );
        // Never-published streams of local subscribers keep their epoch (every 20 s), and
        // history that expired in Redis gives its budgets back (every third round), on the
        // process's wake grid (see `clock`).
        let (upkeep, stop) = (engine.clone(), parts.shutdown.clone());
        tokio::spawn(async move {
            for round in 1u64.. {
                let next = crate::clock::after(crate::engine::redis::REFRESH_EVERY);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(next) => {}
                }
                upkeep.refresh_unpublished().await;
                if round % 3 == 0 {
                    upkeep.sweep_history_budgets();
                }
            }
        });
        let node = Self::assemble(
            config,
            name,
            parts,
            engine.clone(),
            engine.clone(),
            user_status,
        );
        Self::run_cluster(&node, outgoing, true);
        node.user_status.start(&node);
        crate::webhooks::Webhooks::start(
            &node.webhooks,
            &node,
            Self::webhook_ledger(&node, Some(engine)),
        );
        Ok(node)
    }

    /// A node with the NATS broker (`broker.nats.*`): publications, join/leave and control
    /// messages go through NATS to every process of the tenant; presence stays with the
    /// engine (this process's memory, or Redis with `engine.type: redis`).
    pub async fn new_nats(config: RuntimeConfig, name: String) -> Result<Arc<Self>, EngineError> {
        let Some(nats) = config.tenant.broker.nats().cloned() else {
            return Err(EngineError::Unavailable(
                "broker.type is not nats".to_owned(),
            ));
        };
        let (parts, outgoing) = Parts::new(&name);
        let broker = Arc::new(
            crate::engine::nats::NatsBroker::connect(
                &nats,
                parts.events.clone(),
                parts.shutdown.clone(),
            )
            .await?,
        );
        let mut redis_engine = None;
        let (presence, user_status): (Arc<dyn Presence>, _) = match config.tenant.engine.kind {
            rotor_tenant_config::EngineType::Memory => (
                Arc::new(MemoryPresence::default()),
                crate::user_status::UserStatus::memory(),
            ),
            rotor_tenant_config::EngineType::Redis => {
                let engine = Arc::new(Self::connect_redis(&config, &parts).await?);
                let user_status = crate::user_status::UserStatus::redis(
                    engine.clone(),
                    parts.registry.clone(),
                    config.tenant.engine.redis.presence_ttl.get(),
                );
                redis_engine = Some(engine.clone());
                (engine, user_status)
            }
        };
        let node = Self::assemble(config, name, parts, broker, presence, user_status);
        Self::run_cluster(&node, outgoing, true);
        node.user_status.start(&node);
        crate::webhooks::Webhooks::start(
            &node.webhooks,
            &node,
            Self::webhook_ledger(&node, redis_engine),
        );
        Ok(node)
    }

    /// The node the config asks for: the NATS broker when `broker` enables it, else the
    /// engine's own broker and presence.
    pub async fn from_config(
        config: RuntimeConfig,
        name: String,
    ) -> Result<Arc<Self>, EngineError> {
        if config.tenant.broker.nats().is_some() {
            return Self::new_nats(config, name).await;
        }
        match config.tenant.engine.kind {
            rotor_tenant_config::EngineType::Memory => Ok(Self::new_memory(config, name)),
            rotor_tenant_config::EngineType::Redis => Self::new_redis(config, name).await,
        }
    }

    /// Where webhooks decide project-wide changes: Redis when the engine keeps presence
    /// there, else this process.
    fn webhook_ledger(
        node: &Arc<Self>,
        engine: Option<Arc<crate::engine::redis::RedisEngine>>,
    ) -> crate::webhooks::ledger::Ledger {
        match engine {
            Some(engine) => crate::webhooks::ledger::Ledger::Redis {
                engine,
                holder: node.id.clone(),
                presence_ttl: node.config.load().tenant.engine.redis.presence_ttl.get(),
            },
            None => crate::webhooks::ledger::Ledger::Memory,
        }
    }

    /// This node's `info` entry.
    pub fn info(&self) -> serde_json::Value {
        crate::cluster::NodeEvents {
            hub: self.hub.clone(),
            registry: self.registry.clone(),
            cluster: self.cluster.clone(),
        }
        .info()
    }

    /// Heartbeats to the other nodes (where there can be any: `heartbeat`), and the messages
    /// cluster handling must broadcast. Without heartbeats an idle node wakes for nothing.
    fn run_cluster(
        node: &Arc<Self>,
        mut outgoing: tokio::sync::mpsc::UnboundedReceiver<crate::cluster::ClusterControl>,
        heartbeat: bool,
    ) {
        let weak = Arc::downgrade(node);
        let stop = node.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::cluster::HEARTBEAT_INTERVAL);
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick(), if heartbeat => {
                        let Some(node) = weak.upgrade() else { break };
                        crate::cluster::ClusterControl::Heartbeat { node: node.id.clone(), info: node.info() }
                    }
                    m = outgoing.recv() => match m {
                        Some(m) => m,
                        None => break,
                    },
                };
                let Some(node) = weak.upgrade() else { break };
                if let Err(e) = node.broadcast_control(&message).await {
                    tracing::debug!(error = %e, "cluster message not sent");
                }
            }
        });
    }

    /// Sends `control` to every node of the tenant, this one included, through the engine
    /// (counted as a control message sent to the broker).
    pub async fn broadcast_control(
        &self,
        control: &crate::cluster::ClusterControl,
    ) -> Result<(), EngineError> {
        let payload = serde_json::to_vec(control)
            .map_err(|e| EngineError::Unavailable(format!("control message not encoded: {e}")))?;
        self.metrics
            .centrifugo
            .broker_sent(crate::centrifugo_metrics::BrokerMessage::Control);
        self.broker
            .broadcast_control(bytes::Bytes::from(payload))
            .await
    }

    /// Publishes with the channel's history settings (rules already resolved).
    pub async fn publish(
        &self,
        config: &RuntimeConfig,
        rules: &ChannelRules,
        channel: &str,
        publication: Publication,
        extras: PublishExtras,
    ) -> Result<StreamPosition, PublishError> {
        let limits = &config.tenant.rotor;
        if limits.max_publication_size > 0
            && publication.data.len() > limits.max_publication_size as usize
        {
            return Err(PublishError::TooLarge);
        }
        // A client's publication carries its publisher; the server API's never does.
        let from_client = publication.info.is_some();
        let reserve = if from_client {
            crate::limits::API_RESERVE
        } else {
            0.0
        };
        if !self
            .publish_limiter
            .try_acquire_leaving(limits.publish_rate_limit, reserve)
        {
            return Err(PublishError::RateLimited);
        }
        let opts = publish_options(config, rules, extras);
        self.metrics
            .centrifugo
            .broker_sent(crate::centrifugo_metrics::BrokerMessage::Publication);
        let pos = self.broker.publish(channel, publication, &opts).await?;
        self.metrics.messages_published.inc();
        self.metrics
            .namespaces
            .published(crate::metrics::namespace_of(channel), from_client);
        Ok(pos)
    }
}

/// What the node's webhooks and user status read of it.
impl crate::node_view::NodeView for Node {
    fn id(&self) -> &str {
        &self.id
    }

    fn config(&self) -> Arc<RuntimeConfig> {
        self.config.load()
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Over the plan's publications per second (error 111).
    #[error("too many requests")]
    RateLimited,
    /// Payload over the plan's maximum size (error 107).
    #[error("publication is too large")]
    TooLarge,
}

/// The client-facing error.
impl From<PublishError> for crate::protocol::ClientError {
    fn from(e: PublishError) -> Self {
        use crate::protocol::ClientError;
        match e {
            PublishError::Engine(e) => e.into(),
            PublishError::RateLimited => ClientError::TOO_MANY_REQUESTS,
            PublishError::TooLarge => {
                ClientError::BAD_REQUEST.with_message("publication is too large")
            }
        }
    }
}

/// What a publisher (the server API, the publish proxy) may add to a publication.
#[derive(Debug, Clone, Default)]
pub struct PublishExtras {
    /// Repeated publishes with this key (within 5 minutes) return the first result.
    pub idempotency_key: Option<String>,
    /// Keep this publication out of history.
    pub skip_history: bool,
    /// See [`PublishOptions::version`] (applies with history only, as in Centrifugo).
    pub version: u64,
    /// See [`PublishOptions::version_epoch`].
    pub version_epoch: String,
    /// Ask for delta compression of this publication (see [`PublishOptions::delta`]).
    pub delta: bool,
}

/// History settings of a channel for one publish.
pub fn publish_options(
    config: &RuntimeConfig,
    rules: &ChannelRules,
    extras: PublishExtras,
) -> PublishOptions {
    let o = &rules.options;
    let PublishExtras {
        idempotency_key,
        skip_history,
        version,
        version_epoch,
        delta,
    } = extras;
    if skip_history || !o.history_enabled() {
        return PublishOptions {
            idempotency_key,
            ..Default::default()
        };
    }
    PublishOptions {
        history_size: o.history_size,
        history_ttl: o.history_ttl.get(),
        history_meta_ttl: meta_ttl(config, rules),
        idempotency_key,
        version,
        version_epoch,
        delta: delta || o.delta_publish,
    }
}

/// Stream meta retention for a channel.
pub fn meta_ttl(config: &RuntimeConfig, rules: &ChannelRules) -> std::time::Duration {
    let own = rules.options.history_meta_ttl.get();
    if own.is_zero() {
        config.tenant.channel.history_meta_ttl.get()
    } else {
        own
    }
}

/// What every node is built from, whatever its engine: metrics, budgets, hub, registry, its
/// cluster state and the events its broker delivers to.
struct Parts {
    metrics: Arc<Metrics>,
    budgets: Arc<Budgets>,
    hub: Arc<Hub>,
    registry: Arc<Registry>,
    cluster: Arc<crate::cluster::ClusterState>,
    events: Arc<crate::cluster::NodeEvents>,
    shutdown: CancellationToken,
}

impl Parts {
    /// New parts for node `name`, and the receiver of its outgoing cluster messages.
    fn new(
        name: &str,
    ) -> (
        Self,
        tokio::sync::mpsc::UnboundedReceiver<crate::cluster::ClusterControl>,
    ) {
        let metrics = Arc::new(Metrics::default());
        let budgets = Arc::new(Budgets::new(metrics.clone()));
        let hub = Arc::new(Hub::new(metrics.clone(), budgets.clone()));
        let registry = Arc::new(Registry::default());
        let (cluster, outgoing) =
            crate::cluster::ClusterState::new(uuid::Uuid::new_v4().to_string(), name.to_owned());
        let events = Arc::new(crate::cluster::NodeEvents {
            hub: hub.clone(),
            registry: registry.clone(),
            cluster: cluster.clone(),
        });
        let parts = Self {
            metrics,
            budgets,
            hub,
            registry,
            cluster,
            events,
            shutdown: CancellationToken::new(),
        };
        (parts, outgoing)
    }
}
