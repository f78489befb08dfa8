//! The console and the usage page in Debian's Chromium (tests/clients/node/dashboard_console.mjs,
//! screenshots at 1280 and 390 px under target/screenshots/dashboard/console): pretty-printed
//! publications, the channel filter, a dropped connection logged, reconnected and its
//! subscriptions restored, the history view, refusals explained with a link to the fix; live
//! connections equal on every range, namespaces adding up to all channels, "not per namespace"
//! for API calls and errors, whole-number axes, hover values and the plan's limits on the charts.

use std::time::Duration;

use anyhow::{Context, Result};
use rotor_e2e::control_plane::ControlPlane;
use rotor_e2e::ClientScript;
use serde_json::{json, Value};

fn shots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/dashboard/console")
}

fn text<'a>(o: &'a Value, key: &str) -> &'a str {
    o[key].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_console_explains_refusals_survives_a_dropped_connection_and_usage_adds_up(
) -> Result<()> {
    let cp = ControlPlane::start().await?;
    let dir = shots();
    let o = ClientScript::node("dashboard_console.mjs")
        .envs([
            ("ROTOR_BASE_URL", cp.base.as_str()),
            ("ROTOR_SCREENSHOTS", dir.to_str().context("path")?),
        ])
        .timeout(Duration::from_secs(180))
        .run()
        .await?
        .ensure_success()?
        .stdout_json()?;

    // Publications pretty-printed.
    let pretty = text(&o, "pretty_json");
    assert!(
        pretty.contains("{\n  \"text\": \"to a\",\n  \"nested\": {\n    \"n\": 1\n  }\n}"),
        "{pretty:?}"
    );

    // The filter shows one channel (and the connection's own events), hides the rest.
    let visible: Vec<&str> = o["filter_visible_channels"]
        .as_array()
        .context("visible channels")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(visible.contains(&"updates:b"), "{o}");
    assert!(
        visible.iter().all(|c| c.is_empty() || *c == "updates:b"),
        "{visible:?}"
    );
    assert!(o["filter_hidden_pubs"].as_u64() >= Some(1), "{o}");
    assert!(text(&o, "filter_count_text").contains(" shown"), "{o}");
    assert_eq!(o["after_clear_hidden"], 0, "clearing the filter shows all");

    // A dropped connection: logged, reconnected, every subscription back, messages flow again.
    assert!(o["disconnect_reply"]["result"].is_object(), "{o}");
    let dropped = text(&o, "disconnect_text");
    assert!(
        dropped.contains("3011") && dropped.contains("dropped by the test"),
        "{dropped}"
    );
    assert!(dropped.contains("reconnecting"), "{dropped}");
    assert!(
        text(&o, "reconnect_text").contains("restoring 3 subscription"),
        "{o}"
    );
    let restored = json!(["chat:room", "updates:a", "updates:b"]);
    assert_eq!(o["restored"], restored);
    assert_eq!(o["chips_after_reconnect"], restored);
    assert_eq!(o["received_after_reconnect"], true);
    assert_eq!(o["state_after_reconnect"], "connected");

    // History: newest first, what was published.
    assert_eq!(
        o["history_items"],
        json!([{"text": "after the reconnect"}, {"text": "to a", "nested": {"n": 1}}]),
        "{o}"
    );
    let offsets: Vec<u64> = o["history_offsets"]
        .as_array()
        .context("offsets")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] > w[1]), "{offsets:?}");
    let no_history = text(&o, "history_off_hint");
    assert!(
        no_history.contains("“quiet” keeps no history")
            && no_history.contains("Publications kept per channel")
            && no_history.contains("Keep history for"),
        "{no_history}"
    );
    assert!(text(&o, "history_off_link").ends_with("/namespaces/quiet"));

    // Refusals explained, with the way to fix them.
    let unknown = text(&o, "unknown_hint");
    assert!(
        unknown.contains("no namespace “nope”") && unknown.contains("Create the namespace “nope”"),
        "{unknown}"
    );
    assert_eq!(o["unknown_hint_code"], "102");
    assert!(text(&o, "unknown_hint_link").ends_with("/namespaces#ns-new"));
    let denied = text(&o, "denied_hint");
    assert!(
        denied.contains("Namespace “quiet” does not let connected users subscribe")
            && denied.contains("turn on “Connected users may subscribe without a token”"),
        "{denied}"
    );
    assert!(text(&o, "denied_hint_link").ends_with("/namespaces/quiet"));
    assert_eq!(o["tokenless_subscribed"], true);

    // Usage: the live count, the same on every range.
    for range in ["1h", "24h", "30d"] {
        assert_eq!(
            o["connections_by_range"][range],
            json!({"data": "2", "shown": "2"}),
            "{range}: {o}"
        );
    }
    assert_eq!(text(&o, "connections_limit_note"), "of 200 allowed");

    // The plan's limits drawn, labelled; whole-number axes; values on hover.
    assert_eq!(text(&o, "limit_connections"), "plan limit 200");
    assert_eq!(
        text(&o, "limit_messages"),
        "plan limit 100/s = 6,000 a minute"
    );
    assert_eq!(o["limit_messages_value"], "6000");
    assert!(text(&o, "limit_note").starts_with("Dashed line: plan limit"));
    for (chart, ticks) in o["ticks"].as_object().context("ticks")? {
        let ticks: Vec<f64> = ticks
            .as_array()
            .context("tick list")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert!(ticks.len() >= 2, "{chart}: {ticks:?}");
        assert!(ticks.iter().all(|t| t.fract() == 0.0), "{chart}: {ticks:?}");
    }
    let tip = text(&o, "tooltip");
    assert!(
        tip.contains("published: ") && tip.contains("delivered: "),
        "{tip}"
    );

    // Namespaces add up to all channels, channels without one included.
    assert!(
        o["namespace_options"]
            .as_array()
            .context("options")?
            .contains(&json!({"value": "(none)", "label": "(no namespace)"})),
        "{o}"
    );
    let sums = &o["sums"];
    assert_eq!(sums["all_published"], sums["ns_published"], "{sums}");
    assert_eq!(sums["all_delivered"], sums["ns_delivered"], "{sums}");

    // What a namespace cannot count says so.
    assert_eq!(text(&o, "ns_api_calls"), "not per namespace");
    assert_eq!(text(&o, "ns_errors"), "not per namespace");
    assert!(text(&o, "ns_api_note").contains("not per namespace"));
    assert_eq!(o["ns_connections"], "1", "the console subscribed there");
    assert_ne!(text(&o, "all_api_calls"), "not per namespace");

    for (page, overflow) in o["mobile_overflow"].as_object().context("mobile")? {
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{page} scrolls sideways at 390 px by {overflow} px"
        );
    }
    assert_eq!(o["console_errors"], json!([]), "no script errors");
    let count = std::fs::read_dir(&dir)?.count();
    assert!(count >= 9, "screenshots ({count})");
    Ok(())
}
