//! Each project's edge budget over a real control plane (#20): a project flooded past its
//! plan's requests and WebSocket handshakes per second is answered 429 by the edge itself
//! (`over_request_budget` / `over_connect_budget`, with `Retry-After`), so the excess never
//! reaches its process, while another project, from the same client address at the same time,
//! is not touched; once the flood stops the project is served again. The refusals are the
//! operator's metric `rotor_edge_budget_refused_total{kind}`.
//!
//! And the attack the budget itself invites: a stranger spending a project's budget to shut
//! out its users and its backend. Calls with the project's own API key have their own budget,
//! and while a project is contended each client address gets only its share
//! (`over_address_share`, metric `rotor_edge_address_share_refused_total{kind}`).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rotor_e2e::control_plane::{
    metric_sample, open_chat, raw_connect, read_answer, token, ControlPlane, Project,
};
use serde_json::{json, Value};

/// One publish through the edge: status, `Retry-After`, and the body.
async fn publish(
    cp: &ControlPlane,
    project: &Project,
    n: u32,
) -> Result<(u16, Option<u64>, Value)> {
    let resp = cp
        .http
        .post(format!("{}/publish", cp.api_url(&project.slug)))
        .header("X-API-Key", &project.key)
        .body(json!({"channel": "chat:a", "data": {"n": n}}).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
    Ok((status, retry, body))
}

/// A WebSocket handshake through the edge: `Ok(status)` of a refused handshake, or 101.
async fn handshake(cp: &ControlPlane, project: &Project) -> Result<u16> {
    use tokio_tungstenite::tungstenite::Error;
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(cp.ws_url(&project.slug)),
    )
    .await
    .context("handshake timed out")?;
    match attempt {
        Ok(_) => Ok(101),
        Err(Error::Http(resp)) => Ok(resp.status().as_u16()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn a_project_over_its_edge_budget_is_answered_429_at_the_edge_and_its_neighbour_is_not(
) -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_METRICS_LISTEN", "127.0.0.1:0")]).await?;
    let metrics = cp.metrics_url()?;
    // Free projects get 5 requests and 2 handshakes a second (bursts of 10 and 4).
    cp.operator(&[
        "set-limits",
        "free",
        r#"{"edge_requests_per_second": 5, "edge_connects_per_second": 2}"#,
    ])
    .await?;
    let noisy_owner = cp.account("noisy@example.com").await?;
    let noisy = cp
        .project(&noisy_owner, "noisy", &[("chat", open_chat())])
        .await?;
    let calm_owner = cp.account("calm@example.com").await?;
    let calm = cp
        .project(&calm_owner, "calm", &[("chat", open_chat())])
        .await?;

    // 60 publishes at once: a burst's worth pass, the rest are the edge's 429s.
    let began = Instant::now();
    let answers = futures_util::future::join_all((0..60).map(|n| publish(&cp, &noisy, n))).await;
    let took = began.elapsed();
    let (mut passed, mut refused) = (0u32, 0u32);
    for answer in answers {
        let (status, retry, body) = answer?;
        match status {
            200 => {
                ensure!(body.get("error").is_none(), "{body}");
                passed += 1;
            }
            429 => {
                ensure!(
                    body["error"]["code"] == "over_request_budget",
                    "a refusal not by the edge: {body}"
                );
                ensure!(retry.is_some_and(|s| s >= 1), "no Retry-After");
                refused += 1;
            }
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    // The burst (10) and what the rate earned while the 60 were sent.
    let earned = 10 + (took.as_secs_f64() * 5.0).ceil() as u32;
    ensure!(
        (1..=earned).contains(&passed),
        "{passed} passed in {took:?} (budget {earned})"
    );
    assert_eq!(passed + refused, 60);
    assert_eq!(
        metric_sample(&metrics, "rotor_edge_budget_refused_total{kind=\"api\"}").await?,
        u64::from(refused)
    );

    // The neighbour, on the same plan and from the same address: every request and handshake
    // within its own budget is served.
    for n in 0..8 {
        let (status, _, body) = publish(&cp, &calm, n).await?;
        ensure!(
            status == 200 && body.get("error").is_none(),
            "calm: {status} {body}"
        );
    }
    let jwt = token(&calm.secret, "u1");
    for _ in 0..3 {
        let reply = raw_connect(&cp.ws_url(&calm.slug), &jwt).await?;
        ensure!(
            reply.as_ref().is_ok_and(|r| r.get("connect").is_some()),
            "calm connect: {reply:?}"
        );
    }

    // Handshakes: 12 at once to the noisy project, a burst of 4 (and what 2/s earns) upgrade.
    let began = Instant::now();
    let statuses = futures_util::future::join_all((0..12).map(|_| handshake(&cp, &noisy))).await;
    let took = began.elapsed();
    let upgraded = statuses.iter().filter(|s| matches!(s, Ok(101))).count() as u32;
    let refused_ws = statuses.iter().filter(|s| matches!(s, Ok(429))).count() as u32;
    ensure!(
        upgraded + refused_ws == 12,
        "handshakes ended otherwise: {statuses:?}"
    );
    let earned = 4 + (took.as_secs_f64() * 2.0).ceil() as u32;
    ensure!(
        (1..=earned).contains(&upgraded),
        "{upgraded} upgraded in {took:?} (budget {earned})"
    );
    assert_eq!(
        metric_sample(
            &metrics,
            "rotor_edge_budget_refused_total{kind=\"connects\"}"
        )
        .await?,
        u64::from(refused_ws)
    );

    // Once the flood stops, the budget refills and the noisy project is served again.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, _, body) = publish(&cp, &noisy, 1_000).await?;
    ensure!(
        status == 200 && body.get("error").is_none(),
        "{status} {body}"
    );
    let reply = raw_connect(&cp.ws_url(&noisy.slug), &token(&noisy.secret, "u2")).await?;
    ensure!(
        reply.as_ref().is_ok_and(|r| r.get("connect").is_some()),
        "noisy connect after the flood: {reply:?}"
    );
    Ok(())
}

/// A client of `cp` whose connections come from `from` (any 127/8 address is this host's).
fn client_from(from: &str) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>()?)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// A WebSocket handshake from `from`: its status (101 when upgraded) and the refusal's code.
async fn handshake_from(cp: &ControlPlane, project: &Project, from: &str) -> Result<(u16, String)> {
    use tokio_tungstenite::tungstenite::Error;
    let url = cp.ws_url(&project.slug);
    let target: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .context("ws url host")?
        .parse()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse()?, 0))?;
    let attempt = tokio::time::timeout(Duration::from_secs(10), async {
        let stream = socket.connect(target).await?;
        anyhow::Ok(tokio_tungstenite::client_async(url.as_str(), stream).await)
    })
    .await
    .context("handshake timed out")??;
    match attempt {
        Ok(_) => Ok((101, String::new())),
        Err(Error::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Ok((resp.status().as_u16(), code))
        }
        Err(e) => Err(e.into()),
    }
}

/// A publish from `client` with `key`: status and the refusal's code, if any.
async fn publish_with(
    client: &reqwest::Client,
    cp: &ControlPlane,
    project: &Project,
    key: &str,
) -> Result<(u16, String)> {
    let resp = client
        .post(format!("{}/publish", cp.api_url(&project.slug)))
        .header("X-API-Key", key)
        .body(json!({"channel": "chat:a", "data": {}}).to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body: Value = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
    let code = match &body["error"]["code"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    Ok((status, code))
}

#[tokio::test]
async fn a_stranger_flooding_a_project_cannot_shut_out_its_users_or_its_backend() -> Result<()> {
    let cp = ControlPlane::start_with_env(&[("ROTOR_METRICS_LISTEN", "127.0.0.1:0")]).await?;
    let metrics = cp.metrics_url()?;
    // 10 requests and 8 handshakes a second: bursts of 20 and 16.
    cp.operator(&[
        "set-limits",
        "free",
        r#"{"edge_requests_per_second": 10, "edge_connects_per_second": 8}"#,
    ])
    .await?;
    let owner = cp.account("victim@example.com").await?;
    let victim = cp
        .project(&owner, "victim", &[("chat", open_chat())])
        .await?;

    // The stranger, from 127.0.0.66: 100 server API calls with a made-up key, then 60
    // handshakes, all at once.
    let stranger = client_from("127.0.0.66")?;
    let answers = futures_util::future::join_all(
        (0..100).map(|_| publish_with(&stranger, &cp, &victim, "guessed-key")),
    )
    .await;
    let mut codes = std::collections::BTreeMap::<String, u32>::new();
    for answer in answers {
        let (status, code) = answer?;
        *codes.entry(format!("{status} {code}")).or_default() += 1;
    }
    // Half the burst is anyone's (10), then the address's share: a quarter of the rate with a
    // burst of two seconds of it (5), and what that earns while the flood lasts.
    let refused: u32 = codes
        .iter()
        .filter(|(k, _)| k.starts_with("429"))
        .map(|(_, n)| *n)
        .sum();
    let through = 100 - refused;
    ensure!(
        (15..=18).contains(&through),
        "the stranger's calls that reached the project: {codes:?}"
    );
    ensure!(
        codes.get("429 over_address_share").copied().unwrap_or(0) >= 80,
        "the stranger is held to its share: {codes:?}"
    );
    let statuses =
        futures_util::future::join_all((0..60).map(|_| handshake_from(&cp, &victim, "127.0.0.66")))
            .await;
    let upgraded = statuses
        .iter()
        .filter(|s| matches!(s, Ok((101, _))))
        .count();
    let shared_out = statuses
        .iter()
        .filter(|s| matches!(s, Ok((429, code)) if code == "over_address_share"))
        .count();
    ensure!(
        (12..=15).contains(&upgraded) && upgraded + shared_out == 60,
        "the stranger's handshakes: {statuses:?}"
    );

    // Meanwhile the project's backend (its own key, from its own address) publishes its
    // whole burst...
    let backend = client_from("127.0.0.10")?;
    for _ in 0..15 {
        let (status, code) = publish_with(&backend, &cp, &victim, &victim.key).await?;
        ensure!(status == 200 && code.is_empty(), "backend: {status} {code}");
    }
    // ...and its users, from their own addresses, still connect.
    for user in 0..3 {
        let (status, code) =
            handshake_from(&cp, &victim, &format!("127.0.0.{}", 20 + user)).await?;
        ensure!(status == 101, "user {user}: {status} {code}");
    }
    let refused = metric_sample(
        &metrics,
        "rotor_edge_address_share_refused_total{kind=\"requests\"}",
    )
    .await?;
    ensure!(refused >= 80, "metric says {refused}");
    ensure!(
        metric_sample(
            &metrics,
            "rotor_edge_address_share_refused_total{kind=\"connects\"}"
        )
        .await?
            == shared_out as u64
    );
    Ok(())
}

/// A publish request for `project` as raw bytes, optionally asking to close.
fn raw_publish(project: &Project, close: bool) -> String {
    let body = json!({"channel": "chat:a", "data": {"raw": true}}).to_string();
    format!(
        "POST /t/{}/api/publish HTTP/1.1\r\nHost: rotor\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
        project.slug,
        project.key,
        body.len(),
        if close { "Connection: close\r\n" } else { "" },
    )
}

/// The edge's 429 costs a client that retries a head to read, not a connection: it is sent on
/// a connection kept open (unless the client asked to close), and every later request on that
/// connection is routed, budgeted and rewritten again — a pass goes to its own project's
/// process, never to the project the connection was first answered for.
#[tokio::test]
async fn a_budget_429_keeps_the_connection_and_the_next_request_on_it_is_routed_afresh(
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let cp = ControlPlane::start().await?;
    cp.operator(&[
        "set-limits",
        "free",
        r#"{"edge_requests_per_second": 1, "edge_connects_per_second": 1}"#,
    ])
    .await?;
    let noisy_owner = cp.account("kept-noisy@example.com").await?;
    let noisy = cp
        .project(&noisy_owner, "keptnoisy", &[("chat", open_chat())])
        .await?;
    let calm_owner = cp.account("kept-calm@example.com").await?;
    let calm = cp
        .project(&calm_owner, "keptcalm", &[("chat", open_chat())])
        .await?;
    // Spend the noisy project's budget (a burst of 2) until the edge refuses.
    let mut spent = false;
    for n in 0..20 {
        if publish(&cp, &noisy, n).await?.0 == 429 {
            spent = true;
            break;
        }
    }
    ensure!(spent, "the budget was never spent");

    let edge: SocketAddr = cp
        .api_url("x")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .context("edge address")?
        .parse()?;
    let mut conn = tokio::net::TcpStream::connect(edge).await?;
    // Two refusals on one connection: it stays open after each.
    for _ in 0..2 {
        conn.write_all(raw_publish(&noisy, false).as_bytes())
            .await?;
        let (status, close, body) = read_answer(&mut conn).await?;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "over_request_budget");
        assert!(
            !close,
            "a refusal on a kept-alive request keeps the connection"
        );
    }
    // The next request on it is for the neighbour: routed to the neighbour's process, which
    // publishes it and closes (a tenant serves one request per connection).
    conn.write_all(raw_publish(&calm, false).as_bytes()).await?;
    let (status, close, body) = read_answer(&mut conn).await?;
    ensure!(
        status == 200 && body.get("error").is_none(),
        "calm: {status} {body}"
    );
    assert!(close, "the tenant's answer ends the connection");

    // A client that asks to close is answered and closed.
    let mut conn = tokio::net::TcpStream::connect(edge).await?;
    conn.write_all(raw_publish(&noisy, true).as_bytes()).await?;
    let (status, close, _) = read_answer(&mut conn).await?;
    assert_eq!(status, 429);
    assert!(close, "Connection: close was asked for");
    Ok(())
}
