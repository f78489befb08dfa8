// The soak's traffic (included by bench/src/bin/soak.rs with `include!`, sharing its imports):
// tokens, raw-protocol connections, and the steady, churning, publishing and reading workers.

fn token(user: &str, secs: u64) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + secs
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

/// A connected client: sends commands, counts publications, answers pings.
struct Conn {
    ws: Ws,
    next_id: u64,
    /// Channels the server unsubscribed this connection from.
    lost: Vec<String>,
}

impl Conn {
    async fn open(addr: &str, jwt: &str) -> Result<Self> {
        let url = format!("ws://{addr}/connection/websocket");
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .context("connect timed out")??;
        let mut conn = Self {
            ws,
            next_id: 1,
            lost: Vec::new(),
        };
        conn.call(json!({"connect": {"token": jwt}}), None).await?;
        Ok(conn)
    }

    /// Sends one command and waits (10 s) for its reply; an error reply is an error.
    async fn call(&mut self, mut command: Value, received: Option<&AtomicU64>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.ws.send(Message::text(command.to_string())).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("no reply within 10 s")?;
            let text = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("{e}"),
                None => bail!("connection ended"),
            };
            let mut reply = None;
            for line in text.split('\n') {
                if self.handle_line(line, received).await? {
                    continue;
                }
                let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                if v["id"].as_u64() == Some(id) {
                    reply = Some(v);
                }
            }
            if let Some(v) = reply {
                if let Some(e) = v.get("error") {
                    bail!("error reply: {e}");
                }
                return Ok(v);
            }
        }
    }

    /// Handles a ping or a push; true if the line was one. The channel of an unsubscribe push
    /// is added to `self.lost`.
    async fn handle_line(&mut self, line: &str, received: Option<&AtomicU64>) -> Result<bool> {
        if line == "{}" {
            self.ws.send(Message::text("{}")).await?;
            return Ok(true);
        }
        if line.starts_with("{\"push\"") {
            if line.contains("\"pub\"") {
                if let Some(r) = received {
                    Stats::inc(r);
                }
            } else if line.contains("\"unsubscribe\"") {
                let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                if let Some(channel) = v["push"]["channel"].as_str() {
                    self.lost.push(channel.to_owned());
                }
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads until `until`; Err if the connection ends.
    async fn read_until(
        &mut self,
        until: tokio::time::Instant,
        received: &AtomicU64,
    ) -> Result<()> {
        loop {
            let msg = match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return Ok(()),
                Ok(m) => m,
            };
            match msg {
                Some(Ok(Message::Text(t))) => {
                    for line in t.split('\n') {
                        self.handle_line(line, Some(received)).await?;
                    }
                }
                Some(Ok(Message::Close(f))) => bail!("closed by the server: {f:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("{e}"),
                None => bail!("connection ended"),
            }
        }
    }
}

/// A subscriber for the whole run; reconnects (counting a drop) if its connection ends.
async fn steady(addr: String, i: usize, args: Args, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let channel = format!("chat:c{}", i % args.channels);
    let jwt = token(&format!("steady-{i}"), args.secs);
    while !stop.load(Ordering::Acquire) {
        let session = async {
            let mut conn = Conn::open(&addr, &jwt).await?;
            conn.call(json!({"subscribe": {"channel": channel}}), None)
                .await?;
            while !stop.load(Ordering::Acquire) {
                let until = tokio::time::Instant::now() + Duration::from_millis(500);
                conn.read_until(until, &stats.received).await?;
                for lost in std::mem::take(&mut conn.lost) {
                    Stats::inc(&stats.resubscribes);
                    conn.call(
                        json!({"subscribe": {"channel": lost}}),
                        Some(&stats.received),
                    )
                    .await?;
                }
            }
            let _ = conn.ws.close(None).await;
            Ok::<_, anyhow::Error>(())
        };
        if session.await.is_err() && !stop.load(Ordering::Acquire) {
            Stats::inc(&stats.steady_drops);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Connect, subscribe, maybe history / presence / publish, stay 0.2–2 s, leave (cleanly or by
/// dropping the socket), again.
async fn churner(addr: String, i: usize, args: Args, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut rng = fastrand::Rng::with_seed(i as u64);
    let mut round = 0u64;
    while !stop.load(Ordering::Acquire) {
        round += 1;
        let channel = format!("chat:c{}", rng.usize(..args.channels));
        let jwt = token(&format!("churn-{i}-{}", round % 10), args.secs);
        let session = async {
            let mut conn = Conn::open(&addr, &jwt).await?;
            conn.call(
                json!({"subscribe": {"channel": channel}}),
                Some(&stats.received),
            )
            .await?;
            if rng.bool() {
                conn.call(
                    json!({"history": {"channel": channel, "limit": 10}}),
                    Some(&stats.received),
                )
                .await?;
            }
            if rng.bool() {
                conn.call(
                    json!({"presence": {"channel": channel}}),
                    Some(&stats.received),
                )
                .await?;
            }
            if rng.u8(..10) < 3 {
                conn.call(
                    json!({"publish": {"channel": channel, "data": {"from": "churn", "round": round}}}),
                    Some(&stats.received),
                )
                .await?;
            }
            let stay = Duration::from_millis(rng.u64(200..2000));
            conn.read_until(tokio::time::Instant::now() + stay, &stats.received)
                .await?;
            for _ in conn.lost.drain(..) {
                Stats::inc(&stats.resubscribes);
            }
            if rng.u8(..10) < 7 {
                let _ = conn.ws.close(None).await;
            }
            // Otherwise the socket is just dropped.
            Ok::<_, anyhow::Error>(())
        };
        match session.await {
            Ok(()) => Stats::inc(&stats.sessions),
            Err(e) => {
                if !stop.load(Ordering::Acquire) {
                    Stats::inc(&stats.session_errors);
                    if Stats::get(&stats.session_errors) <= 5 {
                        eprintln!("soak: churn session failed: {e:#}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// API publishes at `publish_rate`/s, round-robin over the channels.
async fn publisher(
    http: reqwest::Client,
    addr: String,
    args: Args,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let url = format!("http://{addr}/api/publish");
    let mut tick =
        tokio::time::interval(Duration::from_micros(1_000_000 / args.publish_rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        n += 1;
        let channel = format!("chat:c{}", n as usize % args.channels);
        let body = json!({"channel": channel, "data": {"n": n, "text": "soak message of a typical size, about a hundred bytes long"}});
        let ok = api(&http, &url, &body).await;
        Stats::inc(if ok {
            &stats.publishes
        } else {
            &stats.publish_errors
        });
    }
}

/// API history and presence reads at `read_rate`/s.
async fn reader(
    http: reqwest::Client,
    addr: String,
    args: Args,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.read_rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0usize;
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        n += 1;
        let channel = format!("chat:c{}", n % args.channels);
        let (method, body) = match n % 3 {
            0 => ("history", json!({"channel": channel, "limit": 20})),
            1 => ("presence", json!({"channel": channel})),
            _ => ("presence_stats", json!({"channel": channel})),
        };
        let ok = api(&http, &format!("http://{addr}/api/{method}"), &body).await;
        Stats::inc(if ok { &stats.reads } else { &stats.read_errors });
    }
}

/// One server API call; true if it answered a result.
async fn api(http: &reqwest::Client, url: &str, body: &Value) -> bool {
    let resp = http
        .post(url)
        .header("X-API-Key", API_KEY)
        .body(body.to_string())
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => r
            .json::<Value>()
            .await
            .is_ok_and(|v| v.get("result").is_some()),
        _ => false,
    }
}
