//! A webhook receiver for the end-to-end tests: an HTTP server on loopback that checks each
//! request's `X-Rotor-Signature` with the project's secret, answers 200, and hands the events
//! to the test in arrival order. "Nothing else was sent" is shown with a sentinel: an event
//! caused after the ones awaited, which arrives after anything they would have been batched
//! with ([`HookReceiver::events_until`]).

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

/// One request the receiver accepted.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    pub events: Vec<Value>,
}

#[derive(Clone)]
struct Shared {
    secret: String,
    tx: mpsc::UnboundedSender<std::result::Result<Hit, String>>,
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`: what `X-Rotor-Signature` must say.
fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn hook(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let given = header("x-rotor-signature");
    if given != signature(s.secret.as_bytes(), &body) {
        let _ =
            s.tx.send(Err(format!("a request with a bad signature: {given}")));
        return StatusCode::UNAUTHORIZED;
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = s.tx.send(Ok(Hit {
        id: header("x-rotor-webhook-id"),
        events: parsed["events"].as_array().cloned().unwrap_or_default(),
    }));
    StatusCode::OK
}

/// The receiver.
pub struct HookReceiver {
    /// `http://127.0.0.1:PORT/hooks`.
    pub url: String,
    hits: mpsc::UnboundedReceiver<std::result::Result<Hit, String>>,
    pending: VecDeque<Value>,
}

impl HookReceiver {
    /// Listens on loopback, accepting requests signed with `secret`.
    pub async fn start(secret: &str) -> Result<Self> {
        let (tx, hits) = mpsc::unbounded_channel();
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(hook))
            .with_state(Shared {
                secret: secret.to_owned(),
                tx,
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            hits,
            pending: VecDeque::new(),
        })
    }

    /// The next accepted request, within `wait`.
    pub async fn hit(&mut self, wait: Duration) -> Result<Hit> {
        match tokio::time::timeout(wait, self.hits.recv()).await {
            Ok(Some(Ok(hit))) => Ok(hit),
            Ok(Some(Err(e))) => bail!(e),
            Ok(None) => bail!("the receiver stopped"),
            Err(_) => bail!("no webhook request within {wait:?}"),
        }
    }

    /// Every event up to and including the first that `last` matches, in arrival order; each
    /// request must come within `wait` of the one before.
    pub async fn events_until(
        &mut self,
        wait: Duration,
        last: impl Fn(&Value) -> bool,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            while let Some(e) = self.pending.pop_front() {
                let done = last(&e);
                out.push(e);
                if done {
                    return Ok(out);
                }
            }
            let hit = self
                .hit(wait)
                .await
                .with_context(|| format!("events so far: {}", names(&out).join(", ")))?;
            self.pending.extend(hit.events);
        }
    }
}

/// `name channel user` of each event (`client_disconnected` with its code instead of a
/// channel), for readable assertions.
pub fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let place = match e["code"].as_u64() {
                Some(code) => code.to_string(),
                None => e["channel"].as_str().unwrap_or_default().to_owned(),
            };
            format!(
                "{} {} {}",
                e["name"].as_str().unwrap_or_default(),
                place,
                e["user"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_match_the_rfc_4231_vector() {
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
