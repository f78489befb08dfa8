//! A worker process: opens its share of the connections at the given rate on one thread (a
//! current-thread runtime, so thousands of connection tasks share plain `Rc<RefCell<…>>`
//! counters), records the latency of every stamped publication per step, and answers the
//! coordinator's `snapshot`/`stop` commands with JSON lines. It exits on `stop`, when stdin
//! closes (the coordinator is gone) or after `max_secs`, whichever comes first.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::rc::Rc;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;
use tokio::task::LocalSet;
use tokio::time::Instant;

use crate::client::{self, channels_for, Opening, Recorder};
use crate::histogram::Histogram;
use crate::payload;
use crate::wire::{Command, Event, WorkerSpec};

#[derive(Default)]
struct StepStats {
    received: u64,
    latency: Histogram,
}

#[derive(Default)]
struct Stats {
    connected: u64,
    failed: u64,
    first_attempt_us: u64,
    last_ready_us: u64,
    connect: Histogram,
    connect_errors: BTreeMap<String, u64>,
    steps: HashMap<u32, StepStats>,
    dropped: u64,
    open: u64,
    drop_reasons: BTreeMap<String, u64>,
}

#[derive(Clone)]
struct Rec(Rc<RefCell<Stats>>);

impl Recorder for Rec {
    fn frame(&mut self, frame: &[u8], now_us: u64) {
        let mut st = self.0.borrow_mut();
        payload::find_all(frame, |ts, step| {
            let s = st.steps.entry(step).or_default();
            s.received += 1;
            s.latency.record(now_us.saturating_sub(ts));
        });
    }
}

/// Writes one event line to stdout.
pub fn emit(event: &Event) {
    let line = serde_json::to_string(event).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn token(key: &EncodingKey, user: &str) -> Result<String, jsonwebtoken::errors::Error> {
    let exp = payload::now_micros() / 1_000_000 + 86_400;
    jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({"sub": user, "exp": exp}),
        key,
    )
}

/// Each connection's token, made before the first opening so that signing them is not part of
/// the measured connection rate (a real client has its token from its backend beforehand).
fn tokens(spec: &WorkerSpec) -> Vec<Option<Result<String, String>>> {
    let key = spec
        .secret
        .as_ref()
        .map(|s| EncodingKey::from_secret(s.as_bytes()));
    (0..spec.conns)
        .map(|i| {
            let key = key.as_ref()?;
            Some(token(key, &format!("u{}", spec.first_conn + i)).map_err(|e| e.to_string()))
        })
        .collect()
}

async fn connection(
    spec: Rc<WorkerSpec>,
    token: Option<Result<String, String>>,
    global: usize,
    stats: Rc<RefCell<Stats>>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let started = payload::now_micros();
    let channels = channels_for(
        global,
        spec.channels_per_conn,
        spec.channel_pool,
        &spec.channel_prefix,
    );
    let mut rec = Rec(stats.clone());
    let token = match token {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            let mut st = stats.borrow_mut();
            st.failed += 1;
            *st.connect_errors.entry(format!("token: {e}")).or_default() += 1;
            return;
        }
        None => None,
    };
    let opening = Opening {
        protocol: spec.protocol,
        url: &spec.ws_url,
        token,
        channels: &channels,
    };
    let opened = client::open(
        &opening,
        &mut rec,
        Duration::from_millis(spec.handshake_timeout_ms),
    )
    .await;
    drop(permit);
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(e) => {
            let mut st = stats.borrow_mut();
            st.failed += 1;
            *st.connect_errors.entry(e.kind()).or_default() += 1;
            return;
        }
    };
    {
        let now = payload::now_micros();
        let mut st = stats.borrow_mut();
        st.connected += 1;
        st.open += 1;
        st.last_ready_us = st.last_ready_us.max(now);
        st.connect.record(now.saturating_sub(started));
    }
    let end = client::read_loop(&mut ws, spec.protocol, &mut rec).await;
    let mut st = stats.borrow_mut();
    st.open -= 1;
    st.dropped += 1;
    let reason = match end {
        Ok(()) => "end of stream".to_owned(),
        Err(e) => e.kind(),
    };
    *st.drop_reasons.entry(reason).or_default() += 1;
}

fn snapshot(stats: &Rc<RefCell<Stats>>, step: u32) -> Event {
    let mut st = stats.borrow_mut();
    let this = st.steps.remove(&step).unwrap_or_default();
    st.steps.retain(|&s, _| s > step);
    let dropped = std::mem::take(&mut st.dropped);
    Event::Snapshot {
        step,
        received: this.received,
        latency: this.latency.to_sparse(),
        dropped,
        open: st.open,
        errors: std::mem::take(&mut st.drop_reasons),
    }
}

/// Runs a worker until stopped. Never returns an error for a failed connection: those are
/// counted and reported.
pub fn run(spec: WorkerSpec) -> anyhow::Result<()> {
    crate::procstat::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = LocalSet::new();
    local.block_on(&rt, async move {
        let spec = Rc::new(spec);
        let stats = Rc::new(RefCell::new(Stats::default()));
        let tokens = tokens(&spec);

        // Openings, paced.
        {
            let (spec, stats) = (spec.clone(), stats.clone());
            tokio::task::spawn_local(async move {
                let sem = std::sync::Arc::new(Semaphore::new(spec.concurrency.max(1)));
                let start = Instant::now();
                stats.borrow_mut().first_attempt_us = payload::now_micros();
                for (i, token) in tokens.into_iter().enumerate() {
                    if spec.connect_rate > 0.0 {
                        let due = start + Duration::from_secs_f64(i as f64 / spec.connect_rate);
                        tokio::time::sleep_until(due).await;
                    }
                    let Ok(permit) = sem.clone().acquire_owned().await else {
                        return;
                    };
                    tokio::task::spawn_local(connection(
                        spec.clone(),
                        token,
                        spec.first_conn + i,
                        stats.clone(),
                        permit,
                    ));
                }
            });
        }

        // Progress until every opening has finished, then Ready.
        {
            let (spec, stats) = (spec.clone(), stats.clone());
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let st = stats.borrow();
                    if (st.connected + st.failed) as usize >= spec.conns {
                        emit(&Event::Ready {
                            connected: st.connected,
                            failed: st.failed,
                            first_attempt_us: st.first_attempt_us,
                            last_ready_us: st.last_ready_us,
                            connect: st.connect.to_sparse(),
                            errors: st.connect_errors.clone(),
                        });
                        return;
                    }
                    emit(&Event::Progress {
                        connected: st.connected,
                        failed: st.failed,
                    });
                }
            });
        }

        // Commands until stop / EOF, bounded by max_secs.
        let commands = async {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match Command::parse(&line) {
                    Some(Command::Snapshot(step)) => emit(&snapshot(&stats, step)),
                    Some(Command::Stop) => return,
                    None => {}
                }
            }
        };
        tokio::select! {
            _ = commands => {}
            _ = tokio::time::sleep(Duration::from_secs(spec.max_secs)) => {}
        }
        emit(&Event::Done);
    });
    // Sockets close with the process; no need to wait for thousands of closing handshakes.
    std::process::exit(0)
}
