//! `client.concurrency`: the commands of one connection running side by side, as Centrifugo
//! runs them when the option is above 1.
//!
//! Commands are taken in arrival order from a backlog. `publish`, `rpc`, `history`,
//! `presence` and `presence_stats` are checked against the session and then run as [`Work`]
//! that owns what it needs; `subscribe` is checked and its channel reserved, and only its
//! authorisation (token or subscribe proxy) runs apart; the session then finishes it (engine
//! subscription, recovery, answer) in its own task. Each such command takes one of
//! `client.concurrency` slots; when all are taken the backlog waits, and the transport stops
//! reading until a slot frees (Centrifugo's semaphore). The other commands (`connect`,
//! `unsubscribe`, `refresh`, `sub_refresh`, `send`, pongs) run in the session's task when they
//! reach the head of the backlog; an `unsubscribe` of a channel still being subscribed waits
//! for that subscribe, as in Centrifugo. Replies go out as commands complete, so their order
//! follows completion, not arrival (clients match replies by id).
//!
//! While commands run, the transport keeps delivering publications and answering pings:
//! nothing here borrows the session across an await.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use sync_wrapper::SyncWrapper;

use super::subscribe::{SubscribeKind, SubscribeSpec};
use super::{CommandError, Session};
use crate::centrifugo_metrics::Frame;
use crate::config::RuntimeConfig;
use crate::protocol::{Command, Disconnect, Reply, SubscribeRequest};

/// A command's work after its checks: owns everything, answers with the reply.
pub(super) type Work = Pin<Box<dyn Future<Output = Result<Reply, CommandError>> + Send>>;

/// What finished work hands back to its session.
enum Outcome {
    /// The command's reply, or its failure (boxed: a reply is large).
    Reply(Box<Result<Reply, CommandError>>),
    /// A subscription's authorisation; the session carries on with it.
    Authorised {
        spec: Box<SubscribeSpec>,
        config: Arc<RuntimeConfig>,
        result: Result<(), CommandError>,
    },
}

/// One finished command.
struct Done {
    id: u32,
    frame: Frame,
    method: &'static str,
    started: std::time::Instant,
    outcome: Outcome,
}

type Running = Pin<Box<dyn Future<Output = Done> + Send>>;

/// The concurrent side of one session; only sessions of a tenant with `client.concurrency`
/// above 1 have it (boxed, so the others stay small).
pub(super) struct Concurrent {
    limit: usize,
    /// The running commands; only ever touched through `&mut` (the wrapper keeps the
    /// session `Sync`, which its borrowed futures need).
    running: SyncWrapper<FuturesUnordered<Running>>,
    /// How many are running.
    in_flight: usize,
    done: VecDeque<Done>,
    backlog: VecDeque<Command>,
    /// Channels whose subscribe is being authorised.
    subscribing: Vec<String>,
}

impl std::fmt::Debug for Concurrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Concurrent")
            .field("limit", &self.limit)
            .field("in_flight", &self.in_flight)
            .field("backlog", &self.backlog.len())
            .field("subscribing", &self.subscribing)
            .finish_non_exhaustive()
    }
}

impl Concurrent {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            running: SyncWrapper::new(FuturesUnordered::new()),
            in_flight: 0,
            done: VecDeque::new(),
            backlog: VecDeque::new(),
            subscribing: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        self.in_flight >= self.limit
    }

    fn push(&mut self, work: Running) {
        self.running.get_mut().push(work);
        self.in_flight += 1;
    }
}

/// Whether a command takes a slot (runs apart from the session).
fn takes_slot(cmd: &Command) -> bool {
    cmd.publish.is_some()
        || cmd.rpc.is_some()
        || cmd.history.is_some()
        || cmd.presence.is_some()
        || cmd.presence_stats.is_some()
        || cmd.subscribe.is_some()
}

impl Session {
    /// The concurrent side, made on first use when the tenant's `client.concurrency` is above
    /// 1; `None` runs every command in order.
    pub(super) fn concurrent(&mut self) -> Option<&mut Concurrent> {
        if self.concurrency().is_none() {
            let limit = self.node.config.load().tenant.client.concurrency as usize;
            if limit <= 1 {
                return None;
            }
            self.extras.get_or_insert_default().concurrent = Some(Box::new(Concurrent::new(limit)));
        }
        self.concurrent_mut()
    }

    /// The concurrent side, if this session has one.
    pub(super) fn concurrency(&self) -> Option<&Concurrent> {
        self.extras.as_ref()?.concurrent.as_deref()
    }

    fn concurrent_mut(&mut self) -> Option<&mut Concurrent> {
        self.extras.as_mut()?.concurrent.as_deref_mut()
    }

    /// Whether the transport should read the next frame: always, unless commands wait for a
    /// free slot.
    pub fn accepts_input(&self) -> bool {
        self.concurrency()
            .is_none_or(|c| c.backlog.is_empty() && !c.full())
    }

    /// Polls the running commands; ready when at least one finished (then call
    /// [`Session::run_completed`]). Never ready for a session without concurrency.
    pub fn poll_completed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(c) = self.concurrent_mut() else {
            return Poll::Pending;
        };
        while let Poll::Ready(Some(done)) = c.running.get_mut().poll_next_unpin(cx) {
            c.in_flight -= 1;
            c.done.push_back(done);
        }
        if c.done.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Answers the finished commands, then starts what the backlog can now start.
    pub async fn run_completed(&mut self) -> Result<(), Disconnect> {
        while let Some(done) = self.concurrent_mut().and_then(|c| c.done.pop_front()) {
            self.command_frame = done.frame;
            let result = match done.outcome {
                Outcome::Reply(reply) => (*reply).map(Some),
                Outcome::Authorised {
                    spec,
                    config,
                    result,
                } => {
                    if let Some(c) = self.concurrent_mut() {
                        c.subscribing.retain(|ch| *ch != spec.channel);
                    }
                    match result {
                        Ok(()) => self.subscribe_authorised(done.id, &config, *spec).await,
                        Err(e) => Err(e),
                    }
                    .map(|()| None)
                }
            };
            self.finish_command(done.method, done.id, done.started, result)?;
        }
        self.drain_backlog().await
    }

    /// Queues decoded commands behind those still waiting, and starts what can start.
    pub(super) async fn enqueue(&mut self, commands: Vec<Command>) -> Result<(), Disconnect> {
        if let Some(c) = self.concurrent_mut() {
            c.backlog.extend(commands);
        }
        self.drain_backlog().await
    }

    /// Starts backlog commands in order until one has to wait (no free slot, or an
    /// `unsubscribe` of a channel being subscribed).
    async fn drain_backlog(&mut self) -> Result<(), Disconnect> {
        loop {
            let Some(c) = self.concurrent_mut() else {
                return Ok(());
            };
            let Some(head) = c.backlog.front() else {
                return Ok(());
            };
            if takes_slot(head) && c.full() {
                return Ok(());
            }
            if let Some(u) = &head.unsubscribe {
                if c.subscribing.contains(&u.channel) {
                    return Ok(());
                }
            }
            let Some(cmd) = c.backlog.pop_front() else {
                return Ok(());
            };
            if self.state == super::State::Failed {
                return Ok(());
            }
            self.handle_command(cmd).await?;
        }
    }

    /// Whether `channel`'s subscribe is being authorised.
    pub(super) fn is_subscribing(&self, channel: &str) -> bool {
        self.concurrency()
            .is_some_and(|c| c.subscribing.iter().any(|ch| ch == channel))
    }

    /// How many subscribes are being authorised (they count against the channel limit).
    pub(super) fn subscribing_count(&self) -> usize {
        self.concurrency().map_or(0, |c| c.subscribing.len())
    }

    /// Runs a started command: apart, when the session is concurrent; otherwise here, and
    /// answers it.
    pub(super) async fn run_work(
        &mut self,
        method: &'static str,
        id: u32,
        started: std::time::Instant,
        work: Result<Work, CommandError>,
    ) -> Result<(), Disconnect> {
        let work = match work {
            Ok(w) => w,
            Err(e) => return self.finish_command(method, id, started, Err(e)),
        };
        let frame = self.command_frame;
        if let Some(c) = self.concurrent_mut() {
            c.push(Box::pin(async move {
                let outcome = Outcome::Reply(Box::new(work.await));
                Done {
                    id,
                    frame,
                    method,
                    started,
                    outcome,
                }
            }));
            return Ok(());
        }
        let result = work.await;
        self.finish_command(method, id, started, result.map(Some))
    }

    /// A client `subscribe` on a concurrent session: checked and its channel reserved now,
    /// authorised apart, finished by [`Session::run_completed`].
    pub(super) fn start_subscribe(
        &mut self,
        id: u32,
        req: SubscribeRequest,
        started: std::time::Instant,
    ) -> Result<(), CommandError> {
        let config = self.node.config.load();
        let mut spec = Box::new(SubscribeSpec::client(req));
        self.check_subscription(&config, &spec)?;
        let who = self.identity();
        let frame = self.command_frame;
        let Some(c) = self.concurrent_mut() else {
            return Err(Disconnect::INTERNAL.into());
        };
        c.subscribing.push(spec.channel.clone());
        c.push(Box::pin(async move {
            debug_assert_eq!(spec.kind, SubscribeKind::Client);
            let result = who.authorise_subscribe(&config, &mut spec).await;
            Done {
                id,
                frame,
                method: "subscribe",
                started,
                outcome: Outcome::Authorised {
                    spec,
                    config,
                    result,
                },
            }
        }));
        Ok(())
    }
}
