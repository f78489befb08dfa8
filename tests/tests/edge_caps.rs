//! The edge's caps over a real control plane: one client address over
//! `ROTOR_EDGE_MAX_CONNECTIONS_PER_ADDRESS` gets 429 while other addresses still reach their
//! tenant; over `ROTOR_EDGE_MAX_CONNECTIONS` everyone gets 503, and WebSockets handed to a
//! tenant no longer count, nor do plain requests the edge read whole (SSE streams included),
//! while a request whose body is still arriving stays the edge's; near its open-file limit the edge answers 503 at once (nothing left
//! hanging), keeps the connections it holds, and does not spin. Refusals are counted in the
//! operator's metrics (`ROTOR_METRICS_LISTEN`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rotor_e2e::control_plane::ws::{await_reply, Ws};
use rotor_e2e::control_plane::{
    metric_sample, metrics_url_in, open_chat, percent_encode, token, ControlPlane, Project,
};
use rotor_e2e::{ProcessBuilder, TestDatabase};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The address most clients connect from, and another one on the same loopback interface.
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A control plane whose public address and operator metrics the tests use directly.
struct Edge {
    cp: ControlPlane,
    addr: SocketAddr,
    metrics_url: String,
}

/// Starts a control plane with `env` (optionally under `prlimit --nofile=…`). Idle connections
/// may wait a minute for their request head, so held connections stay held.
async fn start(env: &[(&str, &str)], nofile: Option<&str>) -> Result<Edge> {
    let db = TestDatabase::create().await?;
    let run_dir =
        std::env::temp_dir().join(format!("rotor-caps-test-{}", uuid::Uuid::new_v4().simple()));
    let bin = rotor_e2e::paths::binary_path("rotor-control-plane")?;
    let builder = match nofile {
        Some(n) => ProcessBuilder::program("prlimit")
            .arg(format!("--nofile={n}"))
            .arg("--")
            .arg(bin),
        None => ProcessBuilder::program(bin),
    };
    let process = builder
        .label("rotor-control-plane")
        .arg("serve")
        .env("DATABASE_URL", db.url())
        .env("ROTOR_LISTEN", "127.0.0.1:0")
        .env("ROTOR_RUN_DIR", &run_dir)
        .env("ROTOR_EDGE_HEAD_TIMEOUT_MS", "60000")
        .env("ROTOR_METRICS_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .listening_marker("rotor-control-plane listening on")
        .spawn()
        .await?;
    let metrics_url = metrics_url_in(&process.output())?;
    let addr = process.addr();
    let cp = ControlPlane {
        db,
        run_dir,
        process: Some(process),
        base: format!("http://{addr}"),
        // One connection per request: nothing pooled stays counted against the caps.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?,
        env: Vec::new(),
    };
    Ok(Edge {
        cp,
        addr,
        metrics_url,
    })
}

impl Edge {
    /// An account and a project with an open `chat` namespace, its tenant running.
    async fn project(&self) -> Result<Project> {
        let mgmt = self.cp.account("owner@example.com").await?;
        self.cp
            .project(&mgmt, "caps", &[("chat", open_chat())])
            .await
    }

    /// The value of one sample (`name` with its labels) of the operator's metrics.
    async fn metric(&self, sample: &str) -> Result<u64> {
        metric_sample(&self.metrics_url, sample).await
    }

    /// Polls the metrics (there is no event to await) until the edge holds at most `n`
    /// connections: a closed connection is let go once the edge reads its end.
    async fn wait_open(&self, n: u64) -> Result<()> {
        let started = Instant::now();
        loop {
            let open = self.metric("rotor_edge_connections").await?;
            if open <= n {
                return Ok(());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the edge still holds {open} connections, expected at most {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A TCP connection to the edge from `ip` (any loopback address reaches it).
    async fn connect_from(&self, ip: IpAddr) -> Result<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(ip, 0))?;
        Ok(tokio::time::timeout(Duration::from_secs(5), socket.connect(self.addr)).await??)
    }

    /// A connection from `ip` that asks for `/health` and stays open (keep-alive): the stream
    /// when admitted, else the edge's whole answer (after which it must close the connection).
    async fn hold(&self, ip: IpAddr) -> Result<Result<TcpStream, String>> {
        let mut stream = self.connect_from(ip).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: edge\r\n\r\n")
            .await?;
        let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
            .await
            .context("no answer within 10 s")??;
        if answer.starts_with("HTTP/1.1 200 ") {
            return Ok(Ok(stream));
        }
        ensure_closed(&mut stream).await?;
        Ok(Err(answer))
    }

    /// What the edge answers a connection from `ip` that sends nothing: a refusal arrives at
    /// once, without the edge reading anything.
    async fn refusal(&self, ip: IpAddr) -> Result<String> {
        let mut stream = self.connect_from(ip).await?;
        let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream))
            .await
            .context("no refusal within 5 s")??;
        ensure_closed(&mut stream).await?;
        Ok(answer)
    }

    /// A WebSocket from `ip` through the edge to the tenant, connected as `user` and
    /// subscribed to `chat:live`.
    async fn subscribe_from(&self, ip: IpAddr, project: &Project, user: &str) -> Result<Ws> {
        let stream = self.connect_from(ip).await?;
        let url = self.cp.ws_url(&project.slug);
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async(&url, stream),
        )
        .await??;
        let jwt = token(&project.secret, user);
        ws.send(Message::text(
            json!({"id": 1, "connect": {"token": jwt}}).to_string(),
        ))
        .await?;
        let reply = await_reply(&mut ws, 1).await?;
        ensure!(reply.get("connect").is_some(), "connect refused: {reply}");
        ws.send(Message::text(
            json!({"id": 2, "subscribe": {"channel": "chat:live"}}).to_string(),
        ))
        .await?;
        let reply = await_reply(&mut ws, 2).await?;
        ensure!(
            reply.get("subscribe").is_some(),
            "subscribe refused: {reply}"
        );
        Ok(ws)
    }

    /// Publishes `data` to `chat:live` through the edge from `ip`; the HTTP status.
    async fn publish_from(&self, ip: IpAddr, project: &Project, data: Value) -> Result<u16> {
        let client = reqwest::Client::builder()
            .local_address(ip)
            .pool_max_idle_per_host(0)
            .build()?;
        let resp = client
            .post(format!("{}/publish", self.cp.api_url(&project.slug)))
            .header("X-API-Key", &project.key)
            .body(json!({"channel": "chat:live", "data": data}).to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        Ok(resp.status().as_u16())
    }

    /// Holds `n` connections from `ip`, each admitted.
    async fn hold_many(&self, ip: IpAddr, n: usize, held: &mut Vec<TcpStream>) -> Result<()> {
        for i in 0..n {
            let stream = self
                .hold(ip)
                .await?
                .map_err(|answer| anyhow!("connection {i} from {ip} refused: {answer}"))?;
            held.push(stream);
        }
        Ok(())
    }
}

/// Reads one HTTP response (head and `Content-Length` body) as text.
async fn read_response(stream: &mut TcpStream) -> Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The edge ends a refused connection after its answer (a reset, should the client have sent
/// more after the edge stopped reading, ends it too).
async fn ensure_closed(stream: &mut TcpStream) -> Result<()> {
    let mut rest = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await {
        Ok(Ok(_)) => ensure!(rest.is_empty(), "more after the answer: {rest:?}"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => bail!("{e}"),
        Err(_) => bail!("a refused connection was left open"),
    }
    Ok(())
}

/// A refusal: the status, `Retry-After: 1`, `Connection: close` and a JSON error body.
fn assert_refused(answer: &str, status: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
        "{answer}"
    );
    assert!(answer.contains("\r\nRetry-After: 1\r\n"), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert!(v["error"]["code"].is_string(), "{answer}");
}

/// The data of the next publication on `ws`.
async fn publication(ws: &mut Ws) -> Result<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no publication within 10 s")?
            .context("connection ended")??;
        if let Message::Text(t) = msg {
            for line in t.split('\n') {
                let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                if v["push"]["pub"].is_object() {
                    return Ok(v["push"]["pub"]["data"].clone());
                }
            }
        }
    }
}

/// One `/health` request on a held keep-alive connection.
async fn still_served(stream: &mut TcpStream) -> Result<()> {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(stream))
        .await
        .context("no answer within 10 s")??;
    ensure!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    Ok(())
}

#[tokio::test]
async fn one_address_over_its_cap_gets_429_while_other_addresses_reach_their_tenant() -> Result<()>
{
    let edge = start(&[("ROTOR_EDGE_MAX_CONNECTIONS_PER_ADDRESS", "20")], None).await?;
    let project = edge.project().await?;
    edge.wait_open(0).await?;

    let mut held = Vec::new();
    edge.hold_many(LOCAL, 20, &mut held).await?;
    assert_eq!(edge.metric("rotor_edge_connections").await?, 20);
    // The 21st from the same address: refused at once, whether it sends a request or not.
    assert_refused(&edge.refusal(LOCAL).await?, "429 Too Many Requests");
    let answer = edge
        .hold(LOCAL)
        .await?
        .err()
        .context("a 21st was admitted")?;
    assert_refused(&answer, "429 Too Many Requests");

    // Another address still reaches the tenant: a WebSocket and a publication through the edge.
    let mut ws = edge.subscribe_from(OTHER, &project, "u1").await?;
    assert_eq!(
        edge.publish_from(OTHER, &project, json!({"n": 1})).await?,
        200
    );
    assert_eq!(publication(&mut ws).await?, json!({"n": 1}));
    assert_eq!(
        edge.metric(r#"rotor_edge_connections_refused_total{reason="per_address"}"#)
            .await?,
        2
    );

    // Room again for the address once some of its connections close.
    held.truncate(15);
    edge.wait_open(15).await?;
    edge.hold_many(LOCAL, 5, &mut held).await?;
    assert_refused(&edge.refusal(LOCAL).await?, "429 Too Many Requests");
    for stream in &mut held {
        still_served(stream).await?;
    }
    Ok(())
}

#[tokio::test]
async fn over_the_overall_cap_every_address_gets_503_and_handed_off_websockets_do_not_count(
) -> Result<()> {
    let edge = start(&[("ROTOR_EDGE_MAX_CONNECTIONS", "20")], None).await?;
    let project = edge.project().await?;
    edge.wait_open(0).await?;

    let mut held = Vec::new();
    edge.hold_many(LOCAL, 20, &mut held).await?;
    assert_refused(&edge.refusal(LOCAL).await?, "503 Service Unavailable");
    assert_refused(&edge.refusal(OTHER).await?, "503 Service Unavailable");
    assert_eq!(
        edge.metric(r#"rotor_edge_connections_refused_total{reason="max_connections"}"#)
            .await?,
        2
    );

    // WebSockets handed to the tenant leave the edge's count: ten of them next to 15 held.
    held.truncate(15);
    edge.wait_open(15).await?;
    let mut subs = Vec::new();
    for i in 0..10 {
        subs.push(
            edge.subscribe_from(OTHER, &project, &format!("u{i}"))
                .await?,
        );
    }
    edge.wait_open(15).await?;
    assert_eq!(
        edge.publish_from(OTHER, &project, json!({"n": 1})).await?,
        200
    );
    for ws in &mut subs {
        assert_eq!(publication(ws).await?, json!({"n": 1}));
    }
    edge.wait_open(15).await?;
    edge.hold_many(LOCAL, 5, &mut held).await?;
    assert_refused(&edge.refusal(OTHER).await?, "503 Service Unavailable");
    Ok(())
}

/// An SSE stream (`uni_sse`, the connect request in the query, subscribed to `chat:live` by
/// its token) through the edge from `ip`, read until the tenant's connect push.
async fn sse_from(edge: &Edge, ip: IpAddr, project: &Project, user: &str) -> Result<TcpStream> {
    let mut stream = edge.connect_from(ip).await?;
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": 4_000_000_000u64, "channels": ["chat:live"]}),
        &jsonwebtoken::EncodingKey::from_secret(project.secret.as_bytes()),
    )?;
    let connect = json!({"token": jwt}).to_string();
    let head = format!(
        "GET /t/{}/connection/uni_sse?cf_connect={} HTTP/1.1\r\nHost: edge\r\n\r\n",
        project.slug,
        percent_encode(&connect)
    );
    stream.write_all(head.as_bytes()).await?;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"connect\"") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .context("no connect push within 10 s")??;
        ensure!(n > 0, "stream ended: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    ensure!(
        seen.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    Ok(stream)
}

#[tokio::test]
async fn plain_requests_read_whole_are_handed_off_and_a_body_still_arriving_stays_counted(
) -> Result<()> {
    let edge = start(&[("ROTOR_EDGE_MAX_CONNECTIONS", "20")], None).await?;
    let project = edge.project().await?;
    edge.wait_open(0).await?;
    let mut held = Vec::new();
    edge.hold_many(LOCAL, 15, &mut held).await?;

    // Ten SSE streams, each a plain GET the edge holds whole: handed to the tenant, they leave
    // the edge's count, and receive what is published.
    let mut streams = Vec::new();
    for i in 0..10 {
        streams.push(sse_from(&edge, OTHER, &project, &format!("s{i}")).await?);
    }
    edge.wait_open(15).await?;

    // A publish whose body arrives after its head: the edge holds (and counts) it while it
    // reads the body ahead, then hands it over whole.
    let body = json!({"channel": "chat:live", "data": {"n": 7}}).to_string();
    let mut publish = edge.connect_from(OTHER).await?;
    publish
        .write_all(
            format!(
                "POST /t/{}/api/publish HTTP/1.1\r\nHost: edge\r\nX-API-Key: {}\r\n\
                 Content-Length: {}\r\n\r\n",
                project.slug,
                project.key,
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    edge.wait_open(16).await?;
    publish.write_all(body.as_bytes()).await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut publish))
        .await
        .context("no publish answer")??;
    ensure!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    edge.wait_open(15).await?;

    // A chunked body can only be read by the tenant: the request is spliced and counted until
    // it ends.
    let mut chunked = edge.connect_from(OTHER).await?;
    chunked
        .write_all(
            format!(
                "POST /t/{}/api/publish HTTP/1.1\r\nHost: edge\r\nX-API-Key: {}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n",
                project.slug, project.key
            )
            .as_bytes(),
        )
        .await?;
    edge.wait_open(16).await?;
    chunked
        .write_all(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes())
        .await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut chunked))
        .await
        .context("no chunked publish answer")??;
    ensure!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    ensure_closed(&mut chunked).await?;
    drop(chunked);
    edge.wait_open(15).await?;

    // Both publications reached every stream, and the edge's cap still holds for what it keeps.
    for stream in &mut streams {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while String::from_utf8_lossy(&seen).matches("\"n\":7").count() < 2 {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                .await
                .context("publications not streamed within 10 s")??;
            ensure!(n > 0, "stream ended: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
        }
    }
    edge.hold_many(LOCAL, 5, &mut held).await?;
    assert_refused(&edge.refusal(OTHER).await?, "503 Service Unavailable");
    Ok(())
}

/// CPU time (user + system, in clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .context("stat")?
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of stat(5); the first after the command name is field 3.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn clock_ticks_per_second() -> Result<u64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

#[tokio::test]
async fn near_its_open_file_limit_the_edge_answers_503_keeps_its_connections_and_does_not_spin(
) -> Result<()> {
    // A connection cap far above what 256 files hold: the open-file reserve must refuse.
    let edge = start(&[("ROTOR_EDGE_MAX_CONNECTIONS", "10000")], Some("256:256")).await?;
    let pid = edge
        .cp
        .process
        .as_ref()
        .and_then(|p| p.pid())
        .context("pid")?;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("limits")?;
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>().join(" "),
        "Max open files 256 256 files"
    );
    let project = edge.project().await?;
    let mut early = edge.subscribe_from(OTHER, &project, "early").await?;
    edge.wait_open(0).await?;

    // 400 connections, 50 at a time: each is held or refused at once, none left hanging.
    let (mut held, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        let batch = futures_util::future::join_all((0..50).map(|_| edge.hold(LOCAL))).await;
        for result in batch {
            match result? {
                Ok(stream) => held.push(stream),
                Err(answer) => refused.push(answer),
            }
        }
    }
    eprintln!(
        "under 256 open files: {} connections held, {} refused",
        held.len(),
        refused.len()
    );
    assert!(held.len() >= 100, "only {} held", held.len());
    assert!(refused.len() >= 150, "only {} refused", refused.len());
    for answer in &refused {
        assert_refused(answer, "503 Service Unavailable");
    }
    // 256 files, 64 kept in reserve: fewer than 192 connections fit.
    assert!(held.len() < 192, "{} held", held.len());
    assert_eq!(
        edge.metric(r#"rotor_edge_connections_refused_total{reason="open_files"}"#)
            .await?,
        refused.len() as u64
    );

    // At the limit, with a client refused every 20 ms, the process is nearly idle.
    let trickle = async {
        let mut refusals = 0;
        for _ in 0..60 {
            if edge.refusal(LOCAL).await.is_ok() {
                refusals += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        refusals
    };
    let window = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = cpu_ticks(pid)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        anyhow::Ok(cpu_ticks(pid)? - before)
    };
    let (refusals, used) = tokio::join!(trickle, window);
    let (used, per_second) = (used?, clock_ticks_per_second()?);
    eprintln!("at the limit: {used} of {per_second} ticks in 1 s; {refusals} of 60 refused");
    assert!(
        used * 4 < per_second,
        "{used} ticks of CPU in one second at the limit"
    );
    assert!(
        refusals >= 50,
        "only {refusals} of 60 trickled clients refused"
    );

    // The connections it holds keep working.
    for stream in held.iter_mut().step_by(10) {
        still_served(stream).await?;
    }
    // Room again once some leave; the tenant, its WebSockets and its API keep working.
    held.truncate(held.len() - 20);
    edge.wait_open(held.len() as u64).await?;
    let mut late = edge.subscribe_from(OTHER, &project, "late").await?;
    assert_eq!(
        edge.publish_from(OTHER, &project, json!({"n": 7})).await?,
        200
    );
    assert_eq!(publication(&mut early).await?, json!({"n": 7}));
    assert_eq!(publication(&mut late).await?, json!({"n": 7}));
    Ok(())
}

/// A connection from `ip` that starts with `header` (a PROXY protocol header, or anything)
/// then asks for `/health` and stays open: the stream when served, else the edge's whole
/// answer, or `""` when the edge closed the connection without one.
async fn hold_with(edge: &Edge, ip: IpAddr, header: &[u8]) -> Result<Result<TcpStream, String>> {
    let mut stream = edge.connect_from(ip).await?;
    let mut request = header.to_vec();
    request.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: edge\r\n\r\n");
    stream.write_all(&request).await?;
    let answer = match tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
        .await
        .context("no answer within 10 s")?
    {
        Ok(answer) => answer,
        Err(e) if e.to_string().starts_with("connection closed after \"\"") => String::new(),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset) =>
        {
            String::new()
        }
        Err(e) => return Err(e),
    };
    if answer.starts_with("HTTP/1.1 200 ") {
        return Ok(Ok(stream));
    }
    if !answer.is_empty() {
        ensure_closed(&mut stream).await?;
    }
    Ok(Err(answer))
}

/// A PROXY protocol version 1 header naming the IPv4 client `ip`.
fn proxy_v1(ip: &str) -> Vec<u8> {
    format!("PROXY TCP4 {ip} 127.0.0.1 40000 80\r\n").into_bytes()
}

/// A PROXY protocol version 2 header naming the IPv4 client `ip`.
fn proxy_v2(ip: Ipv4Addr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&ip.octets());
    h.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0, 80]);
    h
}

#[tokio::test]
async fn behind_a_trusted_balancer_each_client_has_its_own_cap_and_no_stranger_can_claim_an_address(
) -> Result<()> {
    // 127.0.0.1 is the operator's balancer (a TLS terminator, say); 127.0.0.2 is a stranger.
    let edge = start(
        &[
            ("ROTOR_EDGE_MAX_CONNECTIONS_PER_ADDRESS", "2"),
            ("ROTOR_EDGE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
        None,
    )
    .await?;
    edge.wait_open(0).await?;

    // One client behind the balancer fills its own cap, and only its own.
    let mut held = Vec::new();
    for _ in 0..2 {
        let served = hold_with(&edge, LOCAL, &proxy_v1("203.0.113.7")).await?;
        held.push(served.map_err(|a| anyhow!("refused: {a:?}"))?);
    }
    let third = hold_with(&edge, LOCAL, &proxy_v1("203.0.113.7")).await?;
    assert_refused(
        &third.err().context("a third was admitted")?,
        "429 Too Many Requests",
    );
    for ip in [
        Ipv4Addr::new(198, 51, 100, 9),
        Ipv4Addr::new(198, 51, 100, 10),
    ] {
        let served = hold_with(&edge, LOCAL, &proxy_v2(ip)).await?;
        held.push(served.map_err(|a| anyhow!("{ip} refused: {a:?}"))?);
    }
    assert_eq!(edge.metric("rotor_edge_connections").await?, 4);

    // The balancer's connection must say whom it carries: without a header it is closed
    // unanswered, not served as the balancer itself.
    let bare = hold_with(&edge, LOCAL, b"").await?;
    assert_eq!(bare.err().context("served without a PROXY header")?, "");

    // A stranger's PROXY header is not believed: it is a malformed request, and the
    // stranger's connections count against its own address.
    let claimed = hold_with(&edge, OTHER, &proxy_v1("198.51.100.20")).await?;
    let answer = claimed.err().context("a stranger's header was believed")?;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    edge.wait_open(4).await?;
    for _ in 0..2 {
        held.push(
            edge.hold(OTHER)
                .await?
                .map_err(|a| anyhow!("refused: {a}"))?,
        );
    }
    let answer = edge
        .hold(OTHER)
        .await?
        .err()
        .context("a third was admitted")?;
    assert_refused(&answer, "429 Too Many Requests");
    assert_eq!(
        edge.metric(r#"rotor_edge_connections_refused_total{reason="per_address"}"#)
            .await?,
        2
    );
    for stream in &mut held {
        still_served(stream).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_spliced_request_is_served_while_it_keeps_sending_and_closed_once_it_goes_quiet(
) -> Result<()> {
    let edge = start(&[("ROTOR_EDGE_SPLICE_IDLE_MS", "600")], None).await?;
    let project = edge.project().await?;
    // A chunked body is never handed over whole: the edge splices it to the tenant.
    let head = format!(
        "POST /t/{}/api/publish HTTP/1.1\r\nHost: edge\r\nX-API-Key: {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        project.slug, project.key
    );
    let body = json!({"channel": "chat:live", "data": {"n": 1}}).to_string();
    let mut ws = edge.subscribe_from(OTHER, &project, "u1").await?;

    // Steady: a chunk every 200 ms, two seconds in all (over three idle times), then the end.
    let mut steady = edge.connect_from(LOCAL).await?;
    steady.write_all(head.as_bytes()).await?;
    for chunk in body.as_bytes().chunks(body.len() / 10 + 1) {
        steady
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        steady.write_all(chunk).await?;
        steady.write_all(b"\r\n").await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    steady.write_all(b"0\r\n\r\n").await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut steady))
        .await
        .context("no answer within 10 s")??;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(publication(&mut ws).await?, json!({"n": 1}));

    // Quiet: half a body, then nothing. Both sides are let go after the idle time.
    let mut quiet = edge.connect_from(LOCAL).await?;
    quiet.write_all(head.as_bytes()).await?;
    quiet.write_all(b"5\r\n{\"cha").await?;
    let mut rest = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut rest)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => bail!("{e}"),
        Err(_) => bail!("a quiet spliced connection was still open after 10 s"),
    }
    drop(steady);
    edge.wait_open(0).await?;
    Ok(())
}
