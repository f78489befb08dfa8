//! Operating a data plane like a Centrifugo: its `/metrics` carries Centrifugo's metric families
//! (names and labels a Centrifugo Grafana dashboard queries), `log.level` / `log_level` set how
//! much it logs (RUST_LOG wins), `prometheus.enabled: false` closes the public `/metrics`, and
//! a Centrifugo deployment's `CENTRIFUGO_…` environment configures it (`ROTOR_…` wins).

mod common;

use common::{api, Binary, Client, TestServer};
use serde_json::json;

async fn scrape(addr: impl std::fmt::Display) -> String {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .header("x-api-key", "api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

/// The value of the sample `series` (name with its labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// `text` read by a strict Prometheus text parser: a malformed line, a split family, a repeated
/// series or a misplaced `# TYPE` fails the test.
fn strict(text: &str) -> rotor_exposition::check::Parsed {
    rotor_exposition::check::exposition(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The next publication pushed to `c` (its own join comes first in `chat`).
async fn next_pub(c: &mut Client) -> serde_json::Value {
    loop {
        let push = c.push().await;
        if push.get("pub").is_some() {
            return push["pub"].clone();
        }
    }
}

#[tokio::test]
async fn centrifugo_metric_families_are_exposed_and_move_with_traffic() {
    let s = TestServer::start(json!({})).await;
    let before = scrape(s.addr).await;
    for family in [
        "centrifugo_node_num_clients",
        "centrifugo_node_num_users",
        "centrifugo_node_num_channels",
        "centrifugo_node_num_subscriptions",
        "centrifugo_node_build",
        "centrifugo_client_num_reply_errors",
        "centrifugo_client_command_duration_seconds",
        "centrifugo_transport_messages_sent",
        "centrifugo_transport_messages_received",
        "centrifugo_node_messages_sent_count",
        "centrifugo_node_messages_received_count",
        "centrifugo_api_command_duration_seconds",
    ] {
        assert!(
            before.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{before}"
        );
    }
    assert_eq!(sample(&before, "centrifugo_node_num_clients"), Some(0.0));
    assert_eq!(
        sample(
            &before,
            &format!(
                "centrifugo_node_build{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &before,
            "centrifugo_client_command_duration_seconds_count{method=\"subscribe\"}"
        ),
        Some(0.0)
    );

    // Traffic: two users, a subscription, a refused one, publications from the API and a
    // client.
    let (mut a, _) = Client::connected(&s.ws_url(), "a").await;
    let (_b, _) = Client::connected(&s.ws_url(), "b").await;
    let r = a.call(json!({"subscribe": {"channel": "chat:room"}})).await;
    assert!(r["subscribe"].is_object(), "{r}");
    let r = a.call(json!({"subscribe": {"channel": "locked:x"}})).await;
    assert_eq!(r["error"]["code"], 103);
    api(
        &s,
        "publish",
        json!({"channel": "chat:room", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(next_pub(&mut a).await["data"]["n"], 1);
    a.call(json!({"publish": {"channel": "chat:room", "data": {"n": 2}}}))
        .await;
    assert_eq!(next_pub(&mut a).await["data"]["n"], 2);

    let after = scrape(s.addr).await;
    strict(&before);
    let parsed = strict(&after);
    for (family, kind) in [
        ("rotor_connections", "gauge"),
        ("rotor_messages_published_total", "counter"),
        ("rotor_commands_total", "counter"),
        ("rotor_budget_used", "gauge"),
        ("rotor_budget_refusals_total", "counter"),
        ("rotor_namespace_published_total", "untyped"),
        ("rotor_channels", "gauge"),
        ("centrifugo_node_num_clients", "gauge"),
        ("centrifugo_node_build", "gauge"),
        ("centrifugo_transport_messages_sent", "counter"),
        ("centrifugo_transport_connect_count", "counter"),
        ("centrifugo_client_num_reply_errors", "counter"),
        ("centrifugo_client_command_duration_seconds", "summary"),
        ("centrifugo_api_command_duration_seconds", "summary"),
    ] {
        assert_eq!(
            parsed.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(
        parsed.value(
            "rotor_namespace_published_total",
            &[("namespace", "chat"), ("source", "api")]
        ),
        Some(1.0)
    );
    assert_eq!(
        parsed.value("rotor_commands_total", &[("method", "subscribe")]),
        Some(2.0)
    );
    let value = |series: &str| {
        sample(&after, series).unwrap_or_else(|| panic!("no sample {series}:\n{after}"))
    };
    assert_eq!(value("centrifugo_node_num_clients"), 2.0);
    assert_eq!(value("centrifugo_node_num_users"), 2.0);
    assert_eq!(value("centrifugo_node_num_channels"), 1.0);
    assert_eq!(value("centrifugo_node_num_subscriptions"), 1.0);
    assert_eq!(
        value("centrifugo_client_num_reply_errors{method=\"subscribe\",code=\"103\"}"),
        1.0
    );
    assert_eq!(
        value("centrifugo_client_command_duration_seconds_count{method=\"subscribe\"}"),
        2.0
    );
    assert_eq!(
        value("centrifugo_client_command_duration_seconds_count{method=\"connect\"}"),
        2.0
    );
    assert!(
        value("centrifugo_client_command_duration_seconds{method=\"subscribe\",quantile=\"0.5\"}")
            > 0.0
    );
    assert_eq!(
        value(
            "centrifugo_transport_messages_sent{transport=\"websocket\",frame_type=\"push_publication\"}"
        ),
        2.0
    );
    assert_eq!(
        value("centrifugo_transport_messages_sent{transport=\"websocket\",frame_type=\"connect\"}"),
        2.0
    );
    assert!(
        value(
            "centrifugo_transport_messages_sent_size{transport=\"websocket\",frame_type=\"push_publication\"}"
        ) > 0.0
    );
    assert_eq!(
        value(
            "centrifugo_transport_messages_received{transport=\"websocket\",frame_type=\"subscribe\"}"
        ),
        2.0
    );
    assert_eq!(
        value("centrifugo_transport_connect_count{transport=\"websocket\"}"),
        2.0
    );
    assert_eq!(
        value("centrifugo_node_messages_sent_count{type=\"publication\"}"),
        2.0
    );
    assert_eq!(
        value("centrifugo_node_messages_received_count{type=\"publication\"}"),
        2.0
    );
    assert_eq!(
        value(
            "centrifugo_api_command_duration_seconds_count{protocol=\"http\",method=\"publish\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn server_disconnects_are_counted_by_code() {
    let s = TestServer::start(json!({})).await;
    let (mut c, _) = Client::connected(&s.ws_url(), "gone").await;
    api(&s, "disconnect", json!({"user": "gone"})).await;
    assert_eq!(c.closed().await.code, 3503);
    // The session counts its close as it ends: scrape until it shows (bounded).
    let series = "centrifugo_client_num_server_disconnects{code=\"3503\"}";
    let counted = tokio::time::timeout(common::WAIT, async {
        loop {
            if sample(&scrape(s.addr).await, series) == Some(1.0) {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(counted.is_ok(), "{series} never reached 1");
}

#[tokio::test]
async fn prometheus_enabled_false_closes_the_public_metrics() {
    let s = TestServer::start(json!({"prometheus": {"enabled": false}})).await;
    let resp = reqwest::Client::new()
        .get(format!("http://{}/metrics", s.addr))
        .header("x-api-key", "api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // The operator's admin listener still has them.
    let admin = reqwest::Client::new()
        .get(format!("http://{}/metrics", s.admin_addr))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 200);
    let open = TestServer::start(json!({"prometheus": {"enabled": true}})).await;
    assert!(scrape(open.addr)
        .await
        .contains("centrifugo_node_num_clients"));
}

/// The minimal config of a standalone process.
fn standalone(extra: serde_json::Value) -> serde_json::Value {
    let mut config = json!({
        "client": {"token": {"hmac_secret_key": common::SECRET}},
        "http_api": {"key": "api-key"}
    });
    common::merge(&mut config, extra);
    config
}

/// An info event every start logs before it listens (so its absence is decided by the time
/// the process listens).
const STARTUP_INFO: &str = "open-file limit";

#[tokio::test]
async fn log_level_sets_what_the_process_logs_and_rust_log_wins() {
    // Default: info.
    let p = Binary::listening(&standalone(json!({})), &[]).await;
    assert!(p.stop().await.contains(STARTUP_INFO));
    // `log.level: warn` hides info events.
    let p = Binary::listening(&standalone(json!({"log": {"level": "warn"}})), &[]).await;
    let stderr = p.stop().await;
    assert!(!stderr.contains(STARTUP_INFO), "{stderr}");
    // The older `log_level` too.
    let p = Binary::listening(&standalone(json!({"log_level": "error"})), &[]).await;
    let stderr = p.stop().await;
    assert!(!stderr.contains(STARTUP_INFO), "{stderr}");
    // `none` logs nothing, even warnings (an unknown CENTRIFUGO_ variable would warn).
    let p = Binary::listening(
        &standalone(json!({"log": {"level": "none"}})),
        &[("CENTRIFUGO_NOT_AN_OPTION", "1")],
    )
    .await;
    let stderr = p.stop().await;
    assert!(stderr.is_empty(), "{stderr}");
    // `debug` opens Rotor's debug events (one is logged before the process listens).
    let p = Binary::listening(&standalone(json!({"log": {"level": "debug"}})), &[]).await;
    let stderr = p.stop().await;
    assert!(stderr.contains("config loaded"), "{stderr}");
    let p = Binary::listening(&standalone(json!({})), &[]).await;
    assert!(!p.stop().await.contains("config loaded"));
    // RUST_LOG wins over the config.
    let p = Binary::listening(
        &standalone(json!({"log": {"level": "error"}})),
        &[("RUST_LOG", "info")],
    )
    .await;
    assert!(p.stop().await.contains(STARTUP_INFO));
    // A level Centrifugo does not have is refused with its path.
    let stderr = Binary::refused(&standalone(json!({"log": {"level": "loud"}})), &[]).await;
    assert!(stderr.contains("log.level"), "{stderr}");
}

async fn api_status(addr: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/info"))
        .header("x-api-key", key)
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn centrifugo_environment_variables_configure_the_process_and_rotor_ones_win() {
    let config = json!({"client": {"token": {"hmac_secret_key": common::SECRET}}});
    // A Centrifugo deployment's environment: the API key and personal channels.
    let p = Binary::listening(
        &config,
        &[
            ("CENTRIFUGO_HTTP_API_KEY", "centrifugo-key"),
            (
                "CENTRIFUGO_CLIENT_SUBSCRIBE_TO_USER_PERSONAL_CHANNEL_ENABLED",
                "true",
            ),
            ("CENTRIFUGO_ADMIN_PASSWORD", "not-an-option"),
        ],
    )
    .await;
    assert_eq!(api_status(&p.addr, "centrifugo-key").await, 200);
    assert_eq!(api_status(&p.addr, "other").await, 401);
    let (_c, connect) = Client::connected(&p.ws_url(), "env-user").await;
    assert!(connect["subs"]["#env-user"].is_object(), "{connect}");
    let stderr = p.stop().await;
    // An unknown variable is named (never its value) in a warning.
    assert!(stderr.contains("CENTRIFUGO_ADMIN_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("not-an-option"), "{stderr}");

    // Both set: ROTOR_ wins.
    let p = Binary::listening(
        &config,
        &[
            ("CENTRIFUGO_HTTP_API_KEY", "centrifugo-key"),
            ("ROTOR_HTTP_API_KEY", "rotor-key"),
        ],
    )
    .await;
    assert_eq!(api_status(&p.addr, "rotor-key").await, 200);
    assert_eq!(api_status(&p.addr, "centrifugo-key").await, 401);
    p.stop().await;

    // Without a config file the environment alone configures the process.
    let p = Binary::listening(
        &serde_json::Value::Null,
        &[("CENTRIFUGO_HTTP_API_KEY", "only-env")],
    )
    .await;
    assert_eq!(api_status(&p.addr, "only-env").await, 200);
    p.stop().await;

    // A variable for an option Rotor refuses stops the process, naming both.
    let stderr = Binary::refused(
        &config,
        &[("CENTRIFUGO_ENGINE_REDIS_SENTINEL_CLIENT_NAME", "rotor")],
    )
    .await;
    assert!(
        stderr.contains("engine.redis.sentinel_client_name")
            && stderr.contains("CENTRIFUGO_ENGINE_REDIS_SENTINEL_CLIENT_NAME"),
        "{stderr}"
    );
}

/// The attack: a refused subscription token is logged and the connection stays, and a frame
/// may carry a thousand commands, so one end user could write megabytes a second into a
/// hosted tenant's log, a file in the directory every tenant and the control plane share.
/// With `ROTOR_LOG_BYTES_PER_SECOND` (the supervisor sets it) the log takes at most that many
/// bytes a second after a burst of eight seconds' worth, and says how many lines it dropped.
#[tokio::test]
async fn end_users_cannot_write_more_than_the_log_budget() {
    let budget = 1024usize;
    let p = Binary::listening(
        &standalone(json!({
            "channel": {"without_namespace": {"allow_subscribe_for_client": true}},
            "websocket": {"message_size_limit": 1_000_000}
        })),
        &[("ROTOR_LOG_BYTES_PER_SECOND", "1024")],
    )
    .await;
    let started = std::time::Instant::now();
    let (mut c, _) = Client::connected(&p.ws_url(), "flooder").await;
    for round in 0..10 {
        let frame: Vec<String> = (0..1000)
            .map(|i| {
                json!({"id": round * 1000 + i + 10,
                       "subscribe": {"channel": format!("x{i}"), "token": "not-a-token"}})
                .to_string()
            })
            .collect();
        c.send_raw(&frame.join("\n")).await;
    }
    // The last command's reply says every one was handled (and refused).
    let last = c.reply(10_009).await;
    assert!(last["error"]["code"].is_u64(), "{last}");
    // The first line that fits the budget again (after a refill of a few hundred bytes) says
    // how many went: one more refused token every 100 ms until it shows (bounded).
    let deadline = std::time::Instant::now() + common::WAIT;
    for id in 20_000u32.. {
        if p.stderr_text().contains("log lines") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped lines are never counted"
        );
        c.send_raw(
            &json!({"id": id, "subscribe": {"channel": "y", "token": "not-a-token"}}).to_string(),
        )
        .await;
        c.reply(id).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = p.stop().await;
    let allowed = budget as f64 * (8.0 + elapsed + 1.0);
    assert!(
        (stderr.len() as f64) <= allowed,
        "{} bytes logged in {elapsed:.1} s, {allowed} allowed",
        stderr.len()
    );
}
