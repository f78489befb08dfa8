//! Shared setup of the interop tests: a data plane spawned from a throwaway config (unique token
//! secret and API key per test), and the scenario scripts in `tests/clients` run against it.

use std::path::PathBuf;
use std::time::Duration;

use crate::{ClientScript, TestProcess};
use anyhow::{Context, Result};
use serde_json::{json, Value};

/// `#[tokio::test]` functions that each run one scenario: `name => scenario(args);` becomes
/// `async fn name() -> anyhow::Result<()>` that awaits `scenario(args)` and fails with its
/// error (what it returns on success is dropped). Doc comments above a line go to its test.
#[macro_export]
macro_rules! scenario_tests {
    ($($(#[$meta:meta])* $name:ident => $scenario:expr;)*) => {
        $(
            $(#[$meta])*
            #[::tokio::test]
            async fn $name() -> ::anyhow::Result<()> {
                $scenario.await?;
                Ok(())
            }
        )*
    };
}

/// Bound on one scenario script (each has its own, shorter, internal deadline).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The channel layout every scenario expects (see the headers of the scripts):
/// * `chat:*` — presence, join/leave pushed to everyone, history (100, 300 s), forced recovery,
///   subscribe for clients, publish/history/presence for subscribers;
/// * `locked:*` — no permissions at all;
/// * `state:*` — cache recovery (history 1), forced and started by the server
///   (`auto_cache_recover`), subscribe for clients;
/// * `latest:*` — cache recovery (history 10) when the client asks, subscribe for clients;
/// * `tags:*` — publication tags filters allowed, history (20, 300 s), recovery on request,
///   subscribe for clients;
/// * `delta:*` — Fossil delta allowed, history (20, 300 s), subscribe for clients;
/// * `room:*` — publisher exclusion (`exclude_publisher`), history (200, 300 s), forced
///   recovery and positioning, subscribe for clients, publish for subscribers;
/// * no namespace — subscribe for clients, publish for subscribers, no history or presence.
///
/// `client.expired_close_delay` is 1 s so the connection-refresh scenario is quick, and pings go
/// every 2 s with a 1 s pong timeout so the longer scenarios see the SDKs' pongs accepted.
pub fn base_config(secret: &str, api_key: &str) -> Value {
    json!({
        "http_stream": {"enabled": true},
        "sse": {"enabled": true},
        "client": {
            "token": {"hmac_secret_key": secret},
            "expired_close_delay": "1s",
            "ping_interval": "2s",
            "pong_timeout": "1s"
        },
        "http_api": {"key": api_key},
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": true,
                "allow_publish_for_subscriber": true
            },
            "namespaces": [
                {
                    "name": "chat",
                    "presence": true,
                    "join_leave": true,
                    "force_push_join_leave": true,
                    "history_size": 100,
                    "history_ttl": "300s",
                    "force_recovery": true,
                    "allow_subscribe_for_client": true,
                    "allow_publish_for_subscriber": true,
                    "allow_history_for_subscriber": true,
                    "allow_presence_for_subscriber": true
                },
                {"name": "locked"},
                {
                    "name": "state",
                    "history_size": 1,
                    "history_ttl": "300s",
                    "force_recovery": true,
                    "force_recovery_mode": "cache",
                    "auto_cache_recover": true,
                    "allow_subscribe_for_client": true
                },
                {
                    "name": "latest",
                    "history_size": 10,
                    "history_ttl": "300s",
                    "allow_recovery": true,
                    "force_recovery_mode": "cache",
                    "allow_subscribe_for_client": true
                },
                {
                    "name": "tags",
                    "allow_tags_filter": true,
                    "history_size": 20,
                    "history_ttl": "300s",
                    "allow_recovery": true,
                    "allow_subscribe_for_client": true
                },
                {
                    "name": "delta",
                    "allowed_delta_types": ["fossil"],
                    "history_size": 20,
                    "history_ttl": "300s",
                    "allow_subscribe_for_client": true
                },
                {
                    "name": "room",
                    "exclude_publisher": true,
                    "history_size": 200,
                    "history_ttl": "300s",
                    "force_recovery": true,
                    "force_positioning": true,
                    "allow_subscribe_for_client": true,
                    "allow_publish_for_subscriber": true
                }
            ]
        }
    })
}

/// Merges `over` into `base`, object by object (anything else is replaced).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// A config file removed on drop.
struct ConfigFile(PathBuf);

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running `rotor-data-plane` on 127.0.0.1 with its own secret and API key.
pub struct Server {
    pub process: TestProcess,
    pub secret: String,
    pub api_key: String,
    _config: ConfigFile,
}

impl Server {
    /// Spawns the data plane with [`base_config`].
    pub async fn start() -> Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self::start_with(
            &format!("interop-secret-{id}"),
            &format!("interop-api-key-{id}"),
            None,
        )
        .await
    }

    /// Spawns the data plane for the `client.concurrency` scenarios (`js_concurrency.mjs`,
    /// `py_concurrency.py`): four commands of a client at a time, RPCs proxied to
    /// [`rpc_backend_holding_slow_until_fast`].
    pub async fn start_concurrent() -> Result<Self> {
        let backend = rpc_backend_holding_slow_until_fast().await?;
        Self::start_with_config(json!({
            "client": {"concurrency": 4},
            "rpc": {
                "proxy": {"endpoint": format!("http://{backend}/rpc"), "timeout": "10s"},
                "without_namespace": {"proxy_enabled": true}
            }
        }))
        .await
    }

    /// Spawns the data plane with [`base_config`] and `extra` merged over it (object by
    /// object; lists are replaced, so `channel.namespaces` there must list every namespace the
    /// scenario needs).
    pub async fn start_with_config(extra: Value) -> Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self::start_with_extra(
            &format!("interop-secret-{id}"),
            &format!("interop-api-key-{id}"),
            None,
            extra,
        )
        .await
    }

    /// Two data planes of one tenant on the Redis engine (REDIS_URL, a fresh key prefix).
    pub async fn start_redis_pair() -> Result<(Self, Self, String)> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (secret, key) = (
            format!("interop-secret-{id}"),
            format!("interop-api-key-{id}"),
        );
        let prefix = format!("rotor-test:{id}:");
        let a = Self::start_with(&secret, &key, Some(&prefix)).await?;
        let b = Self::start_with(&secret, &key, Some(&prefix)).await?;
        Ok((a, b, prefix))
    }

    async fn start_with(secret: &str, api_key: &str, redis_prefix: Option<&str>) -> Result<Self> {
        Self::start_with_extra(secret, api_key, redis_prefix, json!({})).await
    }

    async fn start_with_extra(
        secret: &str,
        api_key: &str,
        redis_prefix: Option<&str>,
        extra: Value,
    ) -> Result<Self> {
        let (secret, api_key) = (secret.to_owned(), api_key.to_owned());
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!("rotor-interop-{id}.json"));
        let config = ConfigFile(path.clone());
        let mut cfg = base_config(&secret, &api_key);
        merge(&mut cfg, extra);
        if let Some(prefix) = redis_prefix {
            cfg["engine"] = json!({"type": "redis", "redis": {"address": crate::paths::redis_url(), "prefix": prefix}});
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg)?)
            .with_context(|| format!("writing {}", path.display()))?;
        let path_arg = path.to_string_lossy().into_owned();
        let process = TestProcess::spawn(
            "rotor-data-plane",
            &[
                "--config",
                &path_arg,
                "--address",
                "127.0.0.1",
                "--port",
                "0",
            ],
            &[("RUST_LOG", "info")],
        )
        .await?;
        Ok(Self {
            process,
            secret,
            api_key,
            _config: config,
        })
    }

    /// The environment the scenario scripts read (see `tests/clients/*/…common*`).
    pub fn env(&self, format: &str) -> Vec<(String, String)> {
        let port = self.process.addr().port();
        vec![
            (
                "ROTOR_WS_URL".into(),
                format!("ws://127.0.0.1:{port}/connection/websocket"),
            ),
            (
                "ROTOR_API_URL".into(),
                format!("http://127.0.0.1:{port}/api"),
            ),
            ("ROTOR_TOKEN_SECRET".into(), self.secret.clone()),
            ("ROTOR_API_KEY".into(), self.api_key.clone()),
            ("ROTOR_FORMAT".into(), format.into()),
        ]
    }

    /// Runs `script` against this server and returns the JSON object it printed. On failure
    /// the error carries the script's output and the server's log.
    pub async fn run(&self, script: ClientScript, format: &str) -> Result<Value> {
        self.run_with_api(script, format, None).await
    }

    /// The same, with server API calls sent to another process of the tenant.
    pub async fn run_with_api(
        &self,
        script: ClientScript,
        format: &str,
        api: Option<&Server>,
    ) -> Result<Value> {
        let mut env = self.env(format);
        if let Some(other) = api {
            let port = other.process.addr().port();
            env.push((
                "ROTOR_API_URL".into(),
                format!("http://127.0.0.1:{port}/api"),
            ));
        }
        let outcome = async {
            let output = script
                .envs(env)
                .timeout(SCRIPT_TIMEOUT)
                .run()
                .await?
                .ensure_success()?;
            output.stdout_json::<Value>()
        }
        .await;
        outcome.with_context(|| format!("server log:\n{}", self.process.output()))
    }
}

/// Where a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One process, memory engine.
    Memory,
    /// One process, Redis engine.
    Redis,
    /// Two processes of one tenant on Redis: SDK clients on the first, server API calls on
    /// the second.
    RedisPair,
}

/// Starts the deployment, runs `script` and returns its observations; Redis keys are removed
/// afterwards.
pub async fn run_on(deployment: Deployment, script: ClientScript, format: &str) -> Result<Value> {
    if deployment == Deployment::Memory {
        return Server::start().await?.run(script, format).await;
    }
    let (a, b, prefix) = Server::start_redis_pair().await?;
    let out = match deployment {
        Deployment::RedisPair => a.run_with_api(script, format, Some(&b)).await,
        _ => a.run(script, format).await,
    };
    if let Ok(redis) = redis::Client::open(crate::paths::redis_url()) {
        if let Ok(mut conn) = redis.get_multiplexed_async_connection().await {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
    }
    out
}

/// What every SDK's connection-refresh scenario observes (`refresh`): henry, whose SDK gets a
/// new token when asked, stays connected with nothing else happening; ivan, without a way to
/// refresh, is closed with 3005 when his token expires.
pub fn connection_refresh() -> Value {
    json!({
        "henry_get_token_calls": 1,
        "henry_state": "connected",
        "henry_events_after_connect": [],
        "ivan_get_token_calls": 1,
        "ivan_close": {"code": 3005, "reason": "connection expired"}
    })
}

/// Asserts that `out[key]` equals `expected`, printing the whole observation on mismatch.
#[track_caller]
pub fn expect(out: &Value, key: &str, expected: Value) {
    assert_eq!(
        out[key],
        expected,
        "observation `{key}` differs; all observations:\n{}",
        serde_json::to_string_pretty(out).unwrap_or_default()
    );
}

/// An RPC backend for the `client.concurrency` scenarios ([`Server::start_concurrent`]): `slow` is answered only once `fast` has reached the
/// backend (or with error 1500 after 5 s), `fast` at once; each echoes its method.
pub async fn rpc_backend_holding_slow_until_fast() -> Result<std::net::SocketAddr> {
    use axum::routing::post;
    use std::sync::Arc;
    let fast_came = Arc::new(tokio::sync::Notify::new());
    let app = axum::Router::new().route(
        "/rpc",
        post(move |axum::Json(body): axum::Json<Value>| {
            let fast_came = fast_came.clone();
            async move {
                let method = body["method"].as_str().unwrap_or_default().to_owned();
                if method == "slow" {
                    let waited = std::time::Duration::from_secs(5);
                    if tokio::time::timeout(waited, fast_came.notified())
                        .await
                        .is_err()
                    {
                        return axum::Json(json!({"error": {
                            "code": 1500, "message": "fast never came while slow was held"
                        }}));
                    }
                } else {
                    fast_came.notify_one();
                }
                axum::Json(json!({"result": {"data": {"echo": method}}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
