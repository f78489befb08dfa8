//! Interop with the real centrifuge-js 5.x SDK (Node, `websocket: require('ws')`), over JSON and
//! over Protobuf: each test spawns `rotor-data-plane` with its own secret and API key, runs one
//! scenario script from `tests/clients/node`, and checks what the SDK observed.

use anyhow::Result;
use rotor_e2e::interop;
use rotor_e2e::interop::{expect, run_on, Deployment, Server};
use rotor_e2e::scenario_tests;
use rotor_e2e::ClientScript;
use serde_json::{json, Value};

/// Connect, subscribe, publish from the client and the server API, history, presence,
/// join/leave and recovery after a gap — the same expectations in both formats.
async fn core_flow(format: &str) -> Result<Value> {
    let server = Server::start().await?;
    let out = server
        .run(ClientScript::node("js_core.mjs"), format)
        .await?;
    check_core_flow(&out, format);
    Ok(out)
}

/// The core flow on the Redis engine, with the SDK clients on one process and every server
/// API call (publishes included) sent to another process of the same tenant.
#[tokio::test]
async fn centrifuge_js_core_flow_over_redis_with_clients_and_api_on_different_processes(
) -> Result<()> {
    let out = run_on(
        Deployment::RedisPair,
        ClientScript::node("js_core.mjs"),
        "json",
    )
    .await?;
    check_core_flow(&out, "json");
    Ok(())
}

fn check_core_flow(out: &Value, format: &str) {
    let out = out.clone();

    expect(&out, "format", json!(format));
    expect(
        &out,
        "a",
        json!({"client_id_len": 36, "transport": "websocket"}),
    );
    expect(
        &out,
        "first_subscribe",
        json!({
            "recoverable": true, "positioned": true, "wasRecovering": false, "recovered": false,
            "offset": 0, "epoch_nonempty": true
        }),
    );
    expect(&out, "b", json!({"distinct_client_id": true}));
    expect(
        &out,
        "join",
        json!({"user": "bob", "channel": "chat:interop"}),
    );

    // Client publish, then API publish: both subscribers get both, in order, with offsets; only
    // the client's carries publisher info, only the API's carries tags.
    expect(&out, "client_publish", json!({}));
    expect(
        &out,
        "api_publish",
        json!({"offset": 2, "epoch_matches": true}),
    );
    let both = json!([
        {"data": {"text": "from client", "n": 1}, "offset": 1,
         "info": {"user": "alice", "from_a": true}, "tags": null},
        {"data": {"text": "from api", "n": 2}, "offset": 2, "info": null,
         "tags": {"source": "api"}}
    ]);
    expect(&out, "a_pubs", both.clone());
    expect(&out, "b_pubs", both.clone());

    expect(
        &out,
        "history",
        json!({"offset": 2, "epoch_matches": true, "publications": both}),
    );
    expect(&out, "history_top", json!({"offset": 2, "count": 0}));
    expect(&out, "history_since_1", json!([2]));
    expect(&out, "history_reverse_1", json!([2]));

    expect(
        &out,
        "presence",
        json!([
            {"user": "alice", "key_is_client": true, "who": "a"},
            {"user": "bob", "key_is_client": true, "who": "b"}
        ]),
    );
    expect(
        &out,
        "presence_stats",
        json!({"numClients": 2, "numUsers": 2}),
    );
    expect(
        &out,
        "leave",
        json!({"user": "bob", "channel": "chat:interop"}),
    );
    expect(
        &out,
        "presence_stats_after_leave",
        json!({"numClients": 1, "numUsers": 1}),
    );

    // Recovery: exactly the two publications missed while offline, then the live one.
    expect(&out, "b_saw_a_leave", json!("alice"));
    expect(&out, "offline_publishes", json!([3, 4]));
    expect(
        &out,
        "resubscribe",
        json!({
            "ev": "subscribed", "wasRecovering": true, "recovered": true,
            "hasRecoveredPublications": true, "epoch_matches": true
        }),
    );
    expect(
        &out,
        "recovered_pubs",
        json!([
            {"data": {"text": "while offline", "n": 3}, "offset": 3, "info": null, "tags": null},
            {"data": {"text": "while offline", "n": 4}, "offset": 4, "info": null, "tags": null},
            {"data": {"text": "after recovery", "n": 5}, "offset": 5, "info": null, "tags": null}
        ]),
    );
    expect(&out, "reconnect_events", json!(["connecting"]));
    expect(&out, "b_offsets", json!([1, 2, 3, 4, 5]));
    expect(&out, "b_offsets_total", json!(5));
    expect(
        &out,
        "presence_after_leave",
        json!([{"user": "alice", "current_client": true}]),
    );
    expect(&out, "a_unexpected", json!([]));
    expect(&out, "b_unexpected", json!([]));
}

#[tokio::test]
async fn centrifuge_js_json_core_flow() -> Result<()> {
    core_flow("json").await?;
    Ok(())
}

#[tokio::test]
async fn centrifuge_js_protobuf_core_flow() -> Result<()> {
    let out = core_flow("protobuf").await?;
    // Binary payloads travel byte for byte: a client publish of non-JSON bytes, and an API
    // publish with `b64data`. The channel has no history, so no offsets.
    expect(&out, "binary_api_publish", json!({"result": {}}));
    expect(
        &out,
        "binary_pubs",
        json!([
            {"raw": [0, 1, 2, 127, 128, 200, 254, 255], "offset": null, "from_a": true},
            {"raw": [255, 0, 10, 13, 34], "offset": null, "from_a": false}
        ]),
    );
    Ok(())
}

/// Unknown namespace 102, permission denied 103, unavailable 108, expired token 109 with
/// getToken, connection refresh, invalid token 3500, no token 3501.
async fn errors(format: &str, deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::node("js_errors.mjs"), format).await?;

    expect(&out, "format", json!(format));
    let refused = |code: u32, reason: &str| {
        json!({"ev": "unsubscribed", "code": code, "reason": reason, "state": "unsubscribed",
               "sub_errors": 0})
    };
    expect(&out, "unknown_namespace", refused(102, "unknown channel"));
    expect(&out, "permission_denied", refused(103, "permission denied"));
    expect(
        &out,
        "private_without_token",
        refused(103, "permission denied"),
    );
    expect(
        &out,
        "publish_unknown_namespace",
        json!({"code": 102, "message": "unknown channel"}),
    );
    expect(
        &out,
        "publish_denied",
        json!({"code": 103, "message": "permission denied"}),
    );
    let unavailable = json!({"code": 108, "message": "not available"});
    expect(&out, "history_unavailable", unavailable.clone());
    expect(&out, "presence_unavailable", unavailable.clone());
    expect(&out, "rpc_unavailable", unavailable);
    expect(&out, "carol_state", json!("connected"));

    expect(
        &out,
        "expired_token",
        json!({
            "get_token_calls": 1,
            "connect_errors": [{"type": "connect", "code": 109, "message": "token expired"}],
            "connecting_codes": [0],
            "state": "connected"
        }),
    );
    expect(&out, "refresh", interop::connection_refresh());
    expect(
        &out,
        "invalid_token",
        json!({"code": 3500, "reason": "invalid token", "state": "disconnected",
               "connected_events": 0}),
    );
    expect(
        &out,
        "carol_after_pings",
        json!({"state": "connected", "events": []}),
    );
    expect(
        &out,
        "no_token",
        json!({"code": 3501, "reason": "bad request", "state": "disconnected"}),
    );
    Ok(())
}

scenario_tests! {
    centrifuge_js_json_error_codes => errors("json", Deployment::Memory);
    centrifuge_js_protobuf_error_codes => errors("protobuf", Deployment::Memory);
}

/// Subscription tokens, server-side subscriptions (token `channels`, API subscribe/unsubscribe)
/// with recovery through the connect command, client unsubscribe, history 112, wrong-channel
/// subscription token 3500 and, over JSON, binary data left out for the JSON connection (which
/// Centrifugo would close with 3506) while the next publication arrives.
async fn subscriptions(format: &str, deployment: Deployment) -> Result<Value> {
    let out = run_on(deployment, ClientScript::node("js_subs.mjs"), format).await?;

    expect(&out, "format", json!(format));
    expect(&out, "sub_token", json!({"asked": ["$room"]}));
    expect(
        &out,
        "sub_token_expired",
        json!({"asked": ["$expiring"], "errors": [{"type": "subscribe", "code": 109}]}),
    );
    expect(
        &out,
        "sub_token_forged",
        json!({"ev": "unsubscribed", "code": 103, "state": "connected"}),
    );
    expect(
        &out,
        "history_stale_epoch",
        json!({"code": 112, "message": "unrecoverable position"}),
    );
    expect(
        &out,
        "server_side",
        json!({"recoverable": true, "positioned": true, "wasRecovering": false, "offset": 0}),
    );
    expect(
        &out,
        "server_side_pubs",
        json!([{"channel": "chat:server", "data": {"n": 1}, "offset": 1, "info": null}]),
    );
    expect(
        &out,
        "server_side_recovery",
        json!({
            "wasRecovering": true, "recovered": true,
            "pubs": [
                {"channel": "chat:server", "data": {"n": 2}, "offset": 2, "info": null},
                {"channel": "chat:server", "data": {"n": 3}, "offset": 3, "info": null}
            ]
        }),
    );
    expect(&out, "api_subscribe", json!({"result": {}}));
    expect(
        &out,
        "api_subscribed",
        json!({"recoverable": true, "positioned": true}),
    );
    expect(
        &out,
        "api_subscribed_pub",
        json!({"channel": "chat:pushed", "data": {"n": 1}, "offset": 1, "info": null}),
    );
    expect(&out, "api_unsubscribe", json!({"result": {}}));
    expect(&out, "server_side_unexpected", json!([]));
    expect(
        &out,
        "client_unsubscribe",
        json!({
            "leave_user": "bob",
            "before": {"numClients": 2, "numUsers": 2},
            "after": {"numClients": 1, "numUsers": 1},
            "bob_sub_state": "unsubscribed",
            "bob_unsubscribed": [0]
        }),
    );
    // History removed during the gap: the SDK learns it was not recovered, and gets the top.
    expect(&out, "history_remove", json!({"result": {}}));
    expect(
        &out,
        "unrecovered",
        json!({"wasRecovering": true, "recovered": false, "hasRecoveredPublications": false,
               "offset": 2}),
    );
    expect(&out, "idempotent_publishes", json!([3, 3]));
    expect(&out, "after_gap", json!([[3, 3], [4, 4]]));
    expect(&out, "api_refresh", json!({"result": {}}));
    expect(
        &out,
        "api_refresh_close",
        json!({"ev": "connecting", "code": 3005, "reason": "connection expired"}),
    );
    expect(
        &out,
        "sub_token_wrong_channel",
        json!({"code": 3500, "reason": "invalid token", "state": "disconnected"}),
    );
    expect(&out, "alice_unexpected", json!([]));
    Ok(out)
}

#[tokio::test]
async fn centrifuge_js_json_subscriptions() -> Result<()> {
    let out = subscriptions("json", Deployment::Memory).await?;
    expect(
        &out,
        "binary_to_json",
        json!({"first_delivered": {"after": "binary"}, "disconnects": 0, "state": "connected"}),
    );
    Ok(())
}

#[tokio::test]
async fn centrifuge_js_protobuf_subscriptions() -> Result<()> {
    subscriptions("protobuf", Deployment::Memory).await?;
    Ok(())
}

/// A JSON and a Protobuf client on one channel see every publication in their own encoding;
/// `send` closes with 3508.
#[tokio::test]
async fn centrifuge_js_json_and_protobuf_clients_share_a_channel() -> Result<()> {
    let server = Server::start().await?;
    let out = server
        .run(ClientScript::node("js_mixed.mjs"), "json")
        .await?;

    expect(&out, "api_status", json!(200));
    expect(&out, "api_offset", json!(3));
    let values = json!([
        {"from": "json", "s": "é\u{2028}"},
        {"from": "pb", "x": [1, 2]},
        {"from": "api", "nl": "a\nb"}
    ]);
    expect(
        &out,
        "json_client",
        json!([
            {"data": values[0], "offset": 1, "user": "jay"},
            {"data": values[1], "offset": 2, "user": "pat"},
            {"data": values[2], "offset": 3, "user": null}
        ]),
    );
    // The Protobuf client gets the payload bytes as published, newlines included.
    let texts = [
        "{\"from\":\"json\",\"s\":\"é\u{2028}\"}",
        "{\"from\":\"pb\",\"x\":[1,2]}",
        "{\n  \"from\": \"api\",\n  \"nl\": \"a\\nb\"\n}",
    ];
    expect(
        &out,
        "protobuf_client",
        json!([
            {"text": texts[0], "offset": 1, "user": "jay"},
            {"text": texts[1], "offset": 2, "user": "pat"},
            {"text": texts[2], "offset": 3, "user": null}
        ]),
    );
    expect(&out, "api_bytes_unchanged_for_protobuf", json!(true));
    expect(&out, "json_history", values);
    expect(
        &out,
        "protobuf_history",
        json!([[texts[0], 1], [texts[1], 2], [texts[2], 3]]),
    );
    expect(
        &out,
        "send",
        json!({"code": 3508, "reason": "not available", "state": "disconnected"}),
    );
    expect(&out, "protobuf_client_state", json!("connected"));
    Ok(())
}

scenario_tests! {
    centrifuge_js_error_codes_over_redis_across_two_processes =>
        errors("json", Deployment::RedisPair);
    centrifuge_js_subscriptions_over_redis_across_two_processes =>
        subscriptions("json", Deployment::RedisPair);
}

async fn centrifuge_js_over_emulation(transport: &str) -> Result<()> {
    let server = Server::start().await?;
    let port = server.process.addr().port();
    let out = rotor_e2e::ClientScript::node("emulation.mjs")
        .envs([
            ("ROTOR_BASE", format!("http://127.0.0.1:{port}")),
            ("ROTOR_TOKEN_SECRET", server.secret.clone()),
            ("ROTOR_TRANSPORT", transport.to_owned()),
        ])
        .timeout(std::time::Duration::from_secs(30))
        .run()
        .await?
        .ensure_success()?
        .stdout_json::<Value>()?;
    expect(&out, "transport", json!(transport));
    expect(&out, "recoverable", json!(true));
    expect(
        &out,
        "publication",
        json!({"data": {"via": "emulation"}, "offset": 1}),
    );
    expect(&out, "presence", json!({"clients": 1, "users": 1}));
    Ok(())
}

scenario_tests! {
    centrifuge_js_over_http_streaming_emulation => centrifuge_js_over_emulation("http_stream");
    centrifuge_js_over_sse_emulation => centrifuge_js_over_emulation("sse");
}

/// Cache recovery mode: the latest publication as initial state (server-started with
/// `auto_cache_recover`, or asked for with `recoverable` and an empty `since`), then live
/// publications; a
/// subscriber that does not recover gets only live ones.
async fn cache_recovery(format: &str) -> Result<()> {
    let out = run_on(
        Deployment::Memory,
        ClientScript::node("js_cache.mjs"),
        format,
    )
    .await?;
    let recovered = json!({
        "wasRecovering": true, "recovered": true, "hasRecoveredPublications": true,
        "epoch_nonempty": true
    });
    expect(&out, "auto", recovered.clone());
    expect(
        &out,
        "auto_pubs",
        json!([{"n": 3, "offset": 3}, {"n": 4, "offset": 4}]),
    );
    expect(&out, "asked", recovered);
    expect(
        &out,
        "asked_pubs",
        json!([{"n": 2, "offset": 2}, {"n": 3, "offset": 3}]),
    );
    expect(
        &out,
        "plain",
        json!({"wasRecovering": false, "recovered": false, "hasRecoveredPublications": false,
               "epoch_nonempty": false}),
    );
    expect(&out, "plain_pubs", json!([{"n": 4, "offset": 4}]));
    expect(&out, "plain_all_pubs", json!(1));
    Ok(())
}

scenario_tests! {
    centrifuge_js_json_cache_recovery => cache_recovery("json");
    centrifuge_js_protobuf_cache_recovery => cache_recovery("protobuf");
}

/// Publisher exclusion with centrifuge-js publishers kicked (reconnect code) while their
/// client and backend publications are in flight: no publisher gets its own back, live or in
/// recovery; everyone gets everything else exactly once.
async fn publisher_exclusion(format: &str, deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::node("js_exclusion.mjs"), format).await?;
    expect(
        &out,
        "recoveries",
        json!({"count": 12, "all_recovering": true, "all_recovered": true}),
    );
    let own = out["accepted_own_publishes"].as_u64().unwrap_or(0);
    assert!(own > 0, "some client publishes went through: {out}");
    for o in out["observers"].as_array().expect("observers") {
        assert_eq!(o["duplicates"], 0, "{o}");
        assert_eq!(o["missing"], json!([]), "{o}");
        assert_eq!(o["unexpected"], json!([]), "{o}");
        // Observers are never kicked: nothing made them resubscribe (no gap was seen).
        assert_eq!(o["resubscribed"], false, "{o}");
    }
    for p in out["publishers"].as_array().expect("publishers") {
        assert_eq!(p["own_received"], json!([]), "{p}");
        assert_eq!(p["duplicates"], 0, "{p}");
        assert_eq!(p["missing_others"], json!([]), "{p}");
    }
    Ok(())
}

scenario_tests! {
    centrifuge_js_json_publisher_exclusion_across_reconnects =>
        publisher_exclusion("json", Deployment::Memory);
    centrifuge_js_protobuf_publisher_exclusion_across_reconnects_over_redis =>
        publisher_exclusion("protobuf", Deployment::RedisPair);
}

/// Publication tags filters: only matching publications reach a filtered subscriber, live and
/// in recovery; an unfiltered one gets them all; a namespace without `allow_tags_filter`
/// refuses a filter with 107.
async fn tags_filter(format: &str, deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::node("js_tags.mjs"), format).await?;
    expect(&out, "refused", json!({"code": 107}));
    expect(
        &out,
        "unfiltered_pubs",
        json!([{"n": 1, "offset": 1}, {"n": 2, "offset": 2}, {"n": 3, "offset": 3},
               {"n": 4, "offset": 4}]),
    );
    expect(
        &out,
        "filtered_pubs",
        json!([{"n": 1, "offset": 1}, {"n": 4, "offset": 4}]),
    );
    expect(&out, "filtered_count", json!(2));
    expect(&out, "filtered_still_subscribed", json!("subscribed"));
    expect(
        &out,
        "recovery",
        json!({"wasRecovering": true, "recovered": true}),
    );
    expect(
        &out,
        "recovered_pubs",
        json!([{"n": 2, "offset": 2}, {"n": 5, "offset": 5}, {"n": 7, "offset": 7}]),
    );
    expect(&out, "recovered_count", json!(3));
    Ok(())
}

scenario_tests! {
    centrifuge_js_json_tags_filter => tags_filter("json", Deployment::Memory);
    centrifuge_js_protobuf_tags_filter_over_redis => tags_filter("protobuf", Deployment::RedisPair);
}

/// Fossil delta compression: the SDK with `delta: 'fossil'` and a plain SDK subscriber see the
/// same documents; the SDK counts one full payload then deltas; a raw client rebuilds every
/// document with the independent `fossil-delta` decoder.
async fn delta(format: &str, deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::node("js_delta.mjs"), format).await?;
    expect(&out, "raw_subscribe", json!({"delta": true}));
    let all = json!({"versions": [1, 2, 3, 4], "same": true});
    expect(&out, "delta_subscriber", all.clone());
    expect(&out, "plain_subscriber", all);
    expect(&out, "sdk_stats", json!({"full": 1, "delta": 3}));
    assert_eq!(
        out["raw"]["delta_flags"],
        json!([false, true, true, true]),
        "{out}"
    );
    assert_eq!(out["raw"]["same"], true, "{out}");
    let (wire, whole) = (
        out["raw"]["last_sizes"]["wire"]
            .as_u64()
            .unwrap_or(u64::MAX),
        out["raw"]["last_sizes"]["whole"].as_u64().unwrap_or(0),
    );
    assert!(
        wire * 4 < whole,
        "a delta of {wire} for a document of {whole}"
    );
    Ok(())
}

scenario_tests! {
    centrifuge_js_json_delta => delta("json", Deployment::Memory);
    centrifuge_js_protobuf_delta_over_redis => delta("protobuf", Deployment::RedisPair);
}

/// Personal channels (`client.subscribe_to_user_personal_channel`, with `single_connection`):
/// the SDK reports the server-side subscription to `personal:#alice` and gets what the backend
/// publishes there; a second connection of alice closes the first with 3504 (terminal for the
/// SDK) and gets the next publication.
async fn personal_channel(format: &str) -> Result<()> {
    let mut namespaces = interop::base_config("", "")["channel"]["namespaces"].clone();
    namespaces.as_array_mut().unwrap().push(json!({
        "name": "personal", "presence": true, "history_size": 10, "history_ttl": "300s",
        "force_recovery": true
    }));
    let server = Server::start_with_config(json!({
        "client": {"subscribe_to_user_personal_channel": {
            "enabled": true, "personal_channel_namespace": "personal", "single_connection": true
        }},
        "channel": {"namespaces": namespaces}
    }))
    .await?;
    let out = server
        .run(ClientScript::node("js_personal.mjs"), format)
        .await?;
    expect(
        &out,
        "subscribed",
        json!({"channel": "personal:#alice", "recoverable": true, "positioned": true,
               "epoch_nonempty": true}),
    );
    expect(
        &out,
        "publish",
        json!({"offset": 1, "epoch": out["publish"]["epoch"]}),
    );
    expect(
        &out,
        "first_pub",
        json!({"data": {"text": "just for you"}, "offset": 1}),
    );
    expect(
        &out,
        "first_disconnected",
        json!({"code": 3504, "reason": "connection limit"}),
    );
    expect(
        &out,
        "second_pub",
        json!({"data": {"text": "to the new connection"}, "offset": 2}),
    );
    expect(&out, "first_pubs_total", json!(1));
    Ok(())
}

scenario_tests! {
    centrifuge_js_json_personal_channel => personal_channel("json");
    centrifuge_js_protobuf_personal_channel => personal_channel("protobuf");
}

/// Client options with centrifuge-js: `client.user_id_http_header` authenticates a WebSocket
/// whose upgrade request carries the header (no token), and a client without it is refused
/// with 3501; `override` in a subscription token and in the connection token's `subs` turns on
/// recovery in a namespace that only allows it.
async fn client_options(format: &str) -> Result<()> {
    let server = Server::start_with_config(json!({
        "client": {"user_id_http_header": "X-User-Id"}
    }))
    .await?;
    let out = server
        .run(ClientScript::node("js_options.mjs"), format)
        .await?;
    expect(&out, "header_user", json!(["carol"]));
    expect(&out, "without_header", json!({"code": 3501}));
    expect(
        &out,
        "sub_token_override",
        json!({"recoverable": true, "positioned": true}),
    );
    expect(
        &out,
        "no_override",
        json!({"recoverable": false, "positioned": false}),
    );
    expect(
        &out,
        "subs_override",
        json!({"recoverable": true, "positioned": true}),
    );
    Ok(())
}

scenario_tests! {
    centrifuge_js_json_client_options => client_options("json");
    centrifuge_js_protobuf_client_options => client_options("protobuf");
}

async fn concurrency(format: &str, transport: Option<&str>) -> Result<()> {
    let server = Server::start_concurrent().await?;
    let mut script = ClientScript::node("js_concurrency.mjs");
    if let Some(t) = transport {
        script = script.envs([("ROTOR_TRANSPORT", t)]);
    }
    let out = server.run(script, format).await?;
    // `slow` succeeds only if `fast` reached the backend while `slow` was held there. (Which
    // reply comes first is not asserted here: the backend answers both at almost the same
    // moment; the order rule is asserted in data-plane/tests/concurrency.rs.)
    expect(&out, "slow", json!({"echo": "slow"}));
    expect(&out, "fast", json!({"echo": "fast"}));
    Ok(())
}

scenario_tests! {
    centrifuge_js_json_commands_run_concurrently => concurrency("json", None);
    centrifuge_js_protobuf_commands_run_concurrently => concurrency("protobuf", None);
    centrifuge_js_commands_run_concurrently_over_http_streaming_emulation =>
        concurrency("json", Some("http_stream"));
    centrifuge_js_commands_run_concurrently_over_sse_emulation => concurrency("json", Some("sse"));
}
