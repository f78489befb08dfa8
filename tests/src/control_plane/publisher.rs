//! A publisher through the server HTTP API for tests that publish under faults: numbered
//! publications with idempotency keys, retried until accepted, each failed attempt recorded
//! with how it failed and how long that took.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

/// How one publish attempt failed (its fields are read through `Debug` in failure messages).
#[derive(Debug, Clone)]
pub enum Failure {
    /// The server API answered with an error reply.
    Api { code: i64, message: String },
    /// Not a server API answer (the edge's 502/503 while the tenant is down, …).
    Http { status: u16, body: String },
    /// No answer at all (connection refused or reset, timeout).
    Transport(String),
}

/// One failed attempt and how long it took to fail.
#[derive(Debug, Clone)]
pub struct Failed {
    pub n: u64,
    pub took: Duration,
    pub why: Failure,
}

/// Publishes through the server HTTP API with an idempotency key per publication, so that a
/// retry of a publication whose answer was lost is not a second publication.
pub struct Publisher {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Publisher {
    pub fn new(api_url: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("{api_url}/publish"),
            key: key.to_owned(),
        }
    }

    /// One attempt; the reply's `result` on success.
    pub async fn attempt(&self, body: &Value) -> std::result::Result<Value, Failure> {
        let resp = self
            .http
            .post(&self.url)
            .header("X-API-Key", &self.key)
            .body(body.to_string())
            .timeout(Duration::from_secs(8))
            .send()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 200 {
            return Err(Failure::Http { status, body: text });
        }
        if let Some(e) = reply.get("error") {
            return Err(Failure::Api {
                code: e["code"].as_i64().unwrap_or(-1),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        reply
            .get("result")
            .cloned()
            .ok_or(Failure::Http { status, body: text })
    }

    /// Publishes `{n}` on `channel`, retrying every 20 ms until it is accepted or `deadline`
    /// passes; failed attempts are added to `failed`. Returns the offset.
    pub async fn publish_n(
        &self,
        channel: &str,
        n: u64,
        failed: &mut Vec<Failed>,
        deadline: Instant,
    ) -> Result<u64> {
        let body =
            json!({"channel": channel, "data": {"n": n}, "idempotency_key": format!("pub-{n}")});
        loop {
            let started = Instant::now();
            match self.attempt(&body).await {
                Ok(result) => return Ok(result["offset"].as_u64().unwrap_or(0)),
                Err(why) => failed.push(Failed {
                    n,
                    took: started.elapsed(),
                    why,
                }),
            }
            if Instant::now() > deadline {
                bail!(
                    "publication {n} was not accepted before the deadline; last failures: {:?}",
                    &failed[failed.len().saturating_sub(5)..]
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes the `{done: true}` marker that ends the followers' script.
    pub async fn done(&self, channel: &str, deadline: Instant) -> Result<()> {
        let body = json!({"channel": channel, "data": {"done": true}, "idempotency_key": "done"});
        loop {
            match self.attempt(&body).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => bail!("the done marker failed: {e:?}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}
