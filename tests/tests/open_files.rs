//! The open-file limit, as hosts really set it: a data plane started with the typical soft
//! limit raises it to the hard one and holds a thousand connections; one whose hard limit is
//! low refuses new connections cleanly (503 before the upgrade, counted) near it, and keeps
//! serving the connections it has.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rotor_e2e::{ProcessBuilder, TestProcess};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SECRET: &str = "open-files-secret";
const KEY: &str = "open-files-key";

/// A standalone data plane under `prlimit --nofile=SOFT:HARD`.
async fn start(nofile: &str) -> Result<(TestProcess, std::path::PathBuf)> {
    let config = std::env::temp_dir().join(format!(
        "rotor-open-files-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(
        &config,
        json!({
            "client": {"token": {"hmac_secret_key": SECRET}},
            "http_api": {"key": KEY},
            "channel": {"without_namespace": {"allow_subscribe_for_client": true}}
        })
        .to_string(),
    )?;
    let bin = rotor_e2e::paths::binary_path("rotor-data-plane")?;
    let process = ProcessBuilder::program("prlimit")
        .arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(bin)
        .arg("--config")
        .arg(&config)
        .args(["--address", "127.0.0.1", "--port", "0"])
        .label("rotor-data-plane")
        .listening_marker("rotor-data-plane listening on")
        .spawn()
        .await?;
    Ok((process, config))
}

fn jwt(user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 600)
        .unwrap_or(0);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// Opens one connection and subscribes it to `news`; `Ok(None)` when the server refused the
/// handshake with 503.
async fn subscriber(url: &str, n: usize) -> Result<Option<Ws>> {
    let (mut ws, _) = match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await?
    {
        Ok(ok) => ok,
        Err(WsError::Http(resp)) if resp.status() == 503 => {
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok());
            anyhow::ensure!(retry == Some("1"), "a refusal says when to retry: {resp:?}");
            return Ok(None);
        }
        Err(e) => bail!("connection {n}: {e}"),
    };
    let cmds = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {"token": jwt(&format!("u{n}"))}}),
        json!({"id": 2, "subscribe": {"channel": "news"}})
    );
    ws.send(Message::text(cmds)).await?;
    let mut replies = 0;
    while replies < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .context("closed")??;
        if let Message::Text(t) = msg {
            for line in t.split('\n') {
                let v: Value = serde_json::from_str(line)?;
                anyhow::ensure!(v.get("error").is_none(), "connection {n}: {v}");
                replies += usize::from(v["id"].is_u64());
            }
        }
    }
    Ok(Some(ws))
}

/// Opens `n` connections, `batch` at a time; returns the open ones and how many were refused.
async fn open_many(url: &str, n: usize, batch: usize) -> Result<(Vec<Ws>, usize)> {
    let (mut open, mut refused) = (Vec::new(), 0);
    for start in (0..n).step_by(batch) {
        let results = futures_util::future::join_all(
            (start..(start + batch).min(n)).map(|i| subscriber(url, i)),
        )
        .await;
        for r in results {
            match r? {
                Some(ws) => open.push(ws),
                None => refused += 1,
            }
        }
    }
    Ok((open, refused))
}

async fn publish(process: &TestProcess, n: u64) -> Result<()> {
    let resp = reqwest::Client::new()
        .post(process.http_url("/api/publish"))
        .header("X-API-Key", KEY)
        .body(json!({"channel": "news", "data": {"n": n}}).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "publish: {}", resp.status());
    Ok(())
}

async fn receives(ws: &mut Ws, n: u64) -> Result<()> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .context("closed")??;
        if let Message::Text(t) = msg {
            if t.split('\n').any(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| v["push"]["pub"]["data"]["n"] == n)
            }) {
                return Ok(());
            }
        }
    }
}

fn limits_of(pid: u32) -> Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/limits"))?
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no open-files line")?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" "))
}

#[tokio::test]
async fn a_data_plane_started_with_a_low_soft_limit_raises_it_and_holds_a_thousand_connections(
) -> Result<()> {
    let (process, config) = start("256:20000").await?;
    let _ = std::fs::remove_file(&config);
    let pid = process.pid().context("pid")?;
    assert_eq!(limits_of(pid)?, "Max open files 20000 20000 files");
    process
        .wait_for_output("open-file limit raised", Duration::from_secs(5))
        .await?;
    let log = process.output();
    assert!(
        log.contains("started=256") && log.contains("soft=20000"),
        "{log}"
    );

    let url = process.ws_url("/connection/websocket");
    let (mut open, refused) = open_many(&url, 1000, 100).await?;
    assert_eq!((open.len(), refused), (1000, 0));
    publish(&process, 1).await?;
    for ws in open.iter_mut().step_by(97) {
        receives(ws, 1).await?;
    }
    Ok(())
}

#[tokio::test]
async fn near_a_low_hard_limit_new_connections_get_503_and_the_open_ones_keep_working() -> Result<()>
{
    let (process, config) = start("256:256").await?;
    let _ = std::fs::remove_file(&config);
    let url = process.ws_url("/connection/websocket");
    // 256 files, 64 kept for everything else: 192 connections fit.
    let (mut open, refused) = open_many(&url, 300, 25).await?;
    eprintln!(
        "under 256 open files: {} connections held, {refused} refused",
        open.len()
    );
    assert!(refused >= 100, "refused {refused}, open {}", open.len());
    assert!(open.len() >= 150, "refused {refused}, open {}", open.len());
    assert_eq!(open.len() + refused, 300);

    let metrics = reqwest::Client::new()
        .get(process.http_url("/metrics"))
        .header("X-API-Key", KEY)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(&format!(
            "rotor_connections_refused_total{{reason=\"open_files\"}} {refused}"
        )),
        "{metrics}"
    );
    // The connections it holds keep working, and the server API answers.
    publish(&process, 7).await?;
    for ws in open.iter_mut().step_by(13) {
        receives(ws, 7).await?;
    }
    // Room again once some leave.
    for mut ws in open.drain(..20) {
        let _ = ws.close(None).await;
    }
    let started = std::time::Instant::now();
    loop {
        if subscriber(&url, 10_000).await?.is_some() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "no room after 20 left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
