//! The webhook tests' backend: an HTTP receiver that records every request (its id, signature
//! and events) and answers with scripted statuses, and the helpers the tests share to drive
//! connections and read a tenant's admin view.
#![allow(dead_code)] // each test binary uses a part of it

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::common::{Client, TestServer, ADMIN_TOKEN, WAIT};

pub const HOOK_SECRET: &str = "hook-secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    pub signature: String,
    pub body: Bytes,
    pub json: Value,
    /// What the receiver answered.
    pub status: u16,
}

/// A backend receiving webhooks: answers with the queued statuses, then `otherwise`.
pub struct Receiver {
    pub url: String,
    pub hits: mpsc::UnboundedReceiver<Hit>,
    /// Events received so far and not yet taken by a test.
    pub pending: VecDeque<Value>,
}

#[derive(Clone)]
pub struct Script {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    otherwise: u16,
    tx: mpsc::UnboundedSender<Hit>,
}

pub async fn hook(State(s): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = s.statuses.lock().pop_front().unwrap_or(s.otherwise);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let _ = s.tx.send(Hit {
        id: header("x-rotor-webhook-id"),
        signature: header("x-rotor-signature"),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start(statuses: &[u16], otherwise: u16) -> Self {
        let (tx, hits) = mpsc::unbounded_channel();
        let script = Script {
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
            otherwise,
            tx,
        };
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(hook))
            .with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            hits,
            pending: VecDeque::new(),
        }
    }

    pub async fn ok() -> Self {
        Self::start(&[], 200).await
    }

    /// The next request.
    pub async fn hit(&mut self) -> Hit {
        tokio::time::timeout(WAIT, self.hits.recv())
            .await
            .expect("no webhook request in time")
            .expect("receiver gone")
    }

    /// Every event up to and including the first that `last` matches, in arrival order
    /// (events of accepted requests only).
    pub async fn events_until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            while let Some(e) = self.pending.pop_front() {
                let done = last(&e);
                out.push(e);
                if done {
                    return out;
                }
            }
            let hit = self.hit().await;
            if hit.status == 200 {
                let events = hit.json["events"].as_array().cloned().unwrap_or_default();
                self.pending.extend(events);
            }
        }
    }
}

pub fn is(name: &'static str, channel: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["name"] == name && (channel.is_empty() || e["channel"] == channel)
}

pub fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["name"].as_str().unwrap_or_default(),
                e["channel"].as_str().unwrap_or_default(),
                e["user"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Webhooks to `url` with `grace` and the given extra options.
pub fn hooks(url: &str, grace: &str, extra: Value) -> Value {
    let mut w = json!({"enabled": true, "url": url, "secret": HOOK_SECRET, "grace": grace,
        "retry_backoff": "20ms", "max_retry_backoff": "100ms"});
    crate::common::merge(&mut w, extra);
    json!({ "webhooks": w })
}

pub async fn subscribe(c: &mut Client, channel: &str) {
    let r = c.call(json!({"subscribe": {"channel": channel}})).await;
    assert!(r.get("subscribe").is_some(), "subscribe {channel}: {r}");
}

pub async fn unsubscribe(c: &mut Client, channel: &str) {
    let r = c.call(json!({"unsubscribe": {"channel": channel}})).await;
    assert!(r.get("unsubscribe").is_some(), "unsubscribe {channel}: {r}");
}

pub async fn admin_webhooks(admin: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{admin}/admin/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the admin view until `done` holds (bounded).
pub async fn admin_until(admin: &str, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let v = admin_webhooks(admin).await;
            if done(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the admin view never showed it")
}

/// Waits until `s` has seen its connections end, down to `left`.
pub async fn gone(s: &TestServer, left: i64) {
    tokio::time::timeout(WAIT, async {
        while s.node.metrics.connections.get() > left {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server did not see the connections end");
}
