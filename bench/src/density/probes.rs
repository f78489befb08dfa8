//! The density scenario's clients: idle WebSocket clients that keep live projects awake
//! (answering the server's pings), wake-up probes (one request to a parked project through the
//! edge, timed to its answer) and create → first message probes (REST create, API key and
//! secret, a subscriber through the edge, a publish through the edge, timed to the delivery).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{watch, Semaphore};

use crate::client::{self, ConnError, Opening, Protocol, Recorder};
use crate::cp::{self, ControlPlane, Project};

/// What the idle clients did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveClients {
    pub projects: u64,
    pub attempted: u64,
    pub connected: u64,
    /// Clients that never connected (after retries).
    pub failed: u64,
    /// Failed openings that were retried (a tenant starting or waking answers 503 meanwhile).
    pub retries: u64,
    /// Connected clients whose connection ended before the run did.
    pub dropped: u64,
    pub open_at_end: u64,
    pub errors: BTreeMap<String, u64>,
}

struct Discard;
impl Recorder for Discard {
    fn frame(&mut self, _: &[u8], _: u64) {}
}

fn error_kind(e: &ConnError) -> String {
    match e {
        ConnError::Ws(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            format!("http {}", r.status().as_u16())
        }
        other => other.kind(),
    }
}

/// Idle clients of the live projects, held until [`Live::stop`].
pub struct Live {
    stats: Arc<Mutex<LiveClients>>,
    open: Arc<Mutex<u64>>,
    stop: watch::Sender<bool>,
    openings: Arc<Semaphore>,
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    /// No clients yet.
    pub fn new() -> Self {
        Self {
            stats: Arc::default(),
            open: Arc::default(),
            stop: watch::channel(false).0,
            openings: Arc::new(Semaphore::new(64)),
        }
    }

    /// Opens `clients` idle connections to a project (retrying while its tenant starts).
    pub fn add(&self, cp: &ControlPlane, project: &Project, secret: &str, clients: usize) {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .projects += 1;
        for c in 0..clients {
            let url = cp.ws_url(&project.slug);
            let token = cp::token(secret, &format!("idle{c}"), &[]).ok();
            let (stats, open) = (self.stats.clone(), self.open.clone());
            let (mut stop, sem) = (self.stop.subscribe(), self.openings.clone());
            tokio::spawn(async move {
                stats.lock().unwrap_or_else(|e| e.into_inner()).attempted += 1;
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut ws = loop {
                    let Ok(permit) = sem.acquire().await else {
                        return;
                    };
                    let opening = Opening {
                        protocol: Protocol::Json,
                        url: &url,
                        token: token.clone(),
                        channels: &[],
                    };
                    let opened =
                        client::open(&opening, &mut Discard, Duration::from_secs(15)).await;
                    drop(permit);
                    match opened {
                        Ok(ws) => break ws,
                        Err(e) => {
                            let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
                            *st.errors.entry(error_kind(&e)).or_default() += 1;
                            if Instant::now() > deadline || *stop.borrow() {
                                st.failed += 1;
                                return;
                            }
                            st.retries += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                stats.lock().unwrap_or_else(|e| e.into_inner()).connected += 1;
                *open.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                let mut discard = Discard;
                let ended = tokio::select! {
                    r = client::read_loop(&mut ws, Protocol::Json, &mut discard) => Some(r),
                    _ = stop.wait_for(|s| *s) => None,
                };
                *open.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                if let Some(r) = ended {
                    let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
                    st.dropped += 1;
                    let kind = r.err().map_or_else(|| "end of stream".into(), |e| e.kind());
                    *st.errors.entry(format!("dropped: {kind}")).or_default() += 1;
                }
            });
        }
    }

    /// Clients connected now.
    pub fn open(&self) -> u64 {
        *self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Clients that finished trying (connected or gave up).
    pub fn settled(&self) -> (u64, u64) {
        let st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        (st.connected + st.failed, st.attempted)
    }

    /// The counts so far, with the clients open now.
    pub fn stats(&self) -> LiveClients {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.open_at_end = self.open();
        s
    }

    /// Closes every client.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// One request to a parked project through the edge (the server API's `info` without a key:
/// the woken tenant answers 401); the time to its answer and its status.
pub async fn wake(cp: &ControlPlane, project: &Project) -> anyhow::Result<(Duration, u16)> {
    let started = Instant::now();
    let resp = cp
        .http
        .post(cp.api_url(&project.slug, "info"))
        .body("{}")
        .timeout(Duration::from_secs(20))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    Ok((started.elapsed(), status))
}

/// The phases of one create → first message probe.
#[derive(Debug, Clone, Copy)]
pub struct FirstMessage {
    /// REST: project, API key, secret.
    pub rest: Duration,
    /// From the start to the delivery of the first publication.
    pub total: Duration,
}

/// Creates a project and times it to its first delivered message: subscriber and publisher
/// both through the edge, each retried (every 5 ms) while the new tenant starts or runs a
/// config without the new API key yet.
pub async fn first_message(cp: &ControlPlane, name: &str) -> anyhow::Result<FirstMessage> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let project = cp.create_project(name).await?;
    let key = cp.api_key(&project.id).await?;
    let secret = cp.secret(&project.id).await?;
    let rest = started.elapsed();
    let token = cp::token(&secret, "probe", &["news"])?;
    let url = cp.ws_url(&project.slug);
    let mut ws = loop {
        let opening = Opening {
            protocol: Protocol::Json,
            url: &url,
            token: Some(token.clone()),
            channels: &[],
        };
        match client::open(&opening, &mut Discard, Duration::from_secs(10)).await {
            Ok(ws) => break ws,
            Err(e) if Instant::now() > deadline => bail!("subscriber: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    let body = json!({"channel": "news", "data": {"probe": name}}).to_string();
    loop {
        let resp = cp
            .http
            .post(cp.api_url(&project.slug, "publish"))
            .header("X-API-Key", &key)
            .body(body.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(r) = resp {
            let ok = r.status().is_success();
            let text = r.bytes().await.unwrap_or_default();
            if ok && !text.windows(8).any(|w| w == b"\"error\":") {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("publish through the edge never succeeded");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    struct Seen(bool);
    impl Recorder for Seen {
        fn frame(&mut self, frame: &[u8], _: u64) {
            self.0 |= frame.windows(7).any(|w| w == b"\"probe\"");
        }
    }
    let mut seen = Seen(false);
    let read = async {
        use futures_util::StreamExt as _;
        while !seen.0 {
            let msg = ws.next().await.context("subscriber closed")??;
            let data: &[u8] = match &msg {
                tokio_tungstenite::tungstenite::Message::Text(t) => t.as_bytes(),
                _ => continue,
            };
            seen.frame(data, 0);
            if let Some(pong) = client::reply_to(Protocol::Json, &msg) {
                futures_util::SinkExt::send(&mut ws, pong).await?;
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout_at(deadline.into(), read)
        .await
        .context("no delivery in time")??;
    Ok(FirstMessage {
        rest,
        total: started.elapsed(),
    })
}
