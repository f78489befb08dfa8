//! Interop with the real Python SDKs: centrifuge-python (asyncio real-time client, JSON and
//! Protobuf) and `cent` 5.x (server HTTP API). Each test spawns `rotor-data-plane` with its own
//! secret and API key, runs one scenario from `tests/clients/python`, and checks what the SDKs
//! observed.

use anyhow::Result;
use rotor_e2e::interop;
use rotor_e2e::interop::{expect, run_on, Deployment};
use rotor_e2e::scenario_tests;
use rotor_e2e::{free_port, ClientScript};
use serde_json::json;

/// centrifuge-python: connect, subscribe, receive from cent and from the client, join/leave,
/// presence, history, recovery after a gap, 102/103/109/3500, connection refresh (3005 without
/// it) and pings answered with pongs.
async fn sdk_flow(format: &str, deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::python("py_sdk.py"), format).await?;

    expect(&out, "format", json!(format));
    expect(&out, "a", json!({"client_id_len": 36}));
    expect(
        &out,
        "first_subscribe",
        json!({
            "recoverable": true, "positioned": true, "was_recovering": false,
            "recovered": false, "offset": 0, "epoch_nonempty": true
        }),
    );
    expect(
        &out,
        "cent_publish",
        json!({"offset": 1, "epoch_matches": true}),
    );
    expect(
        &out,
        "a_pubs",
        json!([
            {"data": {"text": "via cent", "n": 1}, "offset": 1, "info": null,
             "tags": {"source": "cent"}},
            {"data": {"text": "via python", "n": 2}, "offset": 2,
             "info": {"user": "py-alice", "from_a": true}, "tags": null}
        ]),
    );
    expect(&out, "join", json!({"user": "py-bob"}));
    expect(
        &out,
        "presence_stats",
        json!({"num_clients": 2, "num_users": 2}),
    );
    expect(
        &out,
        "presence",
        json!([
            {"user": "py-alice", "key_is_client": true, "who": "a"},
            {"user": "py-bob", "key_is_client": true, "who": "b"}
        ]),
    );
    expect(
        &out,
        "history",
        json!({
            "offset": 2, "epoch_matches": true,
            "publications": [
                {"data": {"text": "via cent", "n": 1}, "offset": 1, "user": null},
                {"data": {"text": "via python", "n": 2}, "offset": 2, "user": "py-alice"}
            ]
        }),
    );
    expect(&out, "leave", json!({"user": "py-bob"}));
    expect(
        &out,
        "presence_stats_after_leave",
        json!({"num_clients": 1, "num_users": 1}),
    );
    expect(&out, "b_saw_a_leave", json!("py-alice"));
    expect(&out, "offline_offsets", json!([3, 4]));
    expect(&out, "b_offsets", json!([3, 4, 5]));
    expect(&out, "b_offsets_total", json!(3));
    expect(
        &out,
        "resubscribe",
        json!({"ev": "subscribed", "was_recovering": true, "recovered": true,
               "epoch_matches": true}),
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
    expect(
        &out,
        "unknown_namespace",
        json!({"ev": "unsubscribed", "code": 102, "reason": "unknown channel"}),
    );
    expect(
        &out,
        "permission_denied",
        json!({"ev": "unsubscribed", "code": 103, "reason": "permission denied"}),
    );
    expect(
        &out,
        "publish_denied",
        json!({"code": 103, "message": "permission denied"}),
    );
    expect(
        &out,
        "expired_token",
        // 13 is the SDK's own "connect error" code; the server's reply was 109.
        json!({"get_token_calls": 1, "errors": [{"code": 13, "reply_code": 109}], "state": "connected"}),
    );
    expect(
        &out,
        "invalid_token",
        json!({"code": 3500, "reason": "invalid token", "state": "disconnected"}),
    );
    expect(&out, "refresh", interop::connection_refresh());
    expect(
        &out,
        "after_pings",
        json!({"state": "connected", "events": []}),
    );
    expect(&out, "a_unexpected", json!([]));
    Ok(())
}

scenario_tests! {
    centrifuge_python_json_flow_with_cent => sdk_flow("json", Deployment::Memory);
    centrifuge_python_protobuf_flow_with_cent => sdk_flow("protobuf", Deployment::Memory);

    /// cent 5.x against the server API, with a centrifuge-python subscriber watching the effects.
    cent_server_api_methods_and_errors => cent_api(Deployment::Memory);
    cent_server_api_methods_and_errors_on_the_redis_engine => cent_api(Deployment::Redis);
    cent_server_api_methods_and_errors_over_redis_across_two_processes =>
        cent_api(Deployment::RedisPair);
}

async fn cent_api(deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::python("cent_api.py"), "json").await?;

    expect(&out, "publish", json!({"offset": 1, "epoch_matches": true}));
    expect(
        &out,
        "publish_received",
        json!({"data": {"n": 1}, "offset": 1, "tags": {"via": "publish"}, "info": null}),
    );
    expect(
        &out,
        "broadcast",
        json!([
            {"offset": 2, "error": null},
            {"offset": 1, "error": null},
            {"offset": null, "error": 102}
        ]),
    );
    expect(&out, "broadcast_epoch_matches", json!(true));
    expect(
        &out,
        "broadcast_received",
        json!({"data": {"n": 2}, "offset": 2}),
    );
    expect(
        &out,
        "history",
        json!({
            "publications": [
                {"data": {"n": 1}, "offset": 1, "tags": {"via": "publish"}},
                {"data": {"n": 2}, "offset": 2, "tags": null}
            ],
            "offset": 2,
            "epoch_matches": true
        }),
    );
    expect(&out, "history_reverse_1", json!([2]));
    expect(&out, "history_since_1", json!([2]));
    expect(&out, "history_no_limit", json!({"count": 0, "offset": 2}));
    expect(
        &out,
        "presence",
        json!([{
            "key_is_subscriber": true, "client_is_subscriber": true, "user": "py-sub",
            "conn_info": {"name": "Sub"}
        }]),
    );
    expect(
        &out,
        "presence_stats",
        json!({"num_clients": 1, "num_users": 1}),
    );
    expect(
        &out,
        "presence_stats_empty",
        json!({"num_clients": 0, "num_users": 0}),
    );
    expect(&out, "channels", json!({"chat:cent": 1, "open-cent": 1}));
    expect(&out, "channels_chat", json!({"chat:cent": 1}));
    let nodes = out["info"].as_array().cloned().unwrap_or_default();
    // Both Redis deployments run two processes of the tenant (see `run_on`).
    let expected_nodes = if deployment == Deployment::Memory {
        1
    } else {
        2
    };
    assert_eq!(
        nodes.len(),
        expected_nodes,
        "one info entry per node: {}",
        out["info"]
    );
    let total = |k: &str| {
        nodes
            .iter()
            .map(|n| n[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(
        (
            total("num_clients"),
            total("num_users"),
            total("num_subs"),
            total("num_channels")
        ),
        (1, 1, 2, 2),
        "{}",
        out["info"]
    );
    assert!(
        nodes
            .iter()
            .all(|n| n["uid_len"].as_u64() > Some(0) && n["name_len"].as_u64() > Some(0)),
        "info nodes need a uid and a name: {}",
        out["info"]
    );
    expect(
        &out,
        "history_after_remove",
        json!({"count": 0, "offset": 2, "epoch_matches": true}),
    );
    expect(
        &out,
        "batch",
        json!({
            "publish_offset": 3,
            "presence_stats": {"num_clients": 1, "num_users": 1},
            "history": [{"data": {"n": 3}, "offset": 3, "tags": null}]
        }),
    );
    expect(
        &out,
        "batch_received",
        json!({"data": {"n": 3}, "offset": 3}),
    );
    expect(
        &out,
        "publish_unknown_namespace",
        json!({"code": 102, "message": "unknown channel"}),
    );
    // Centrifugo answers "bad request"; Rotor words the message its own way, which `cent`
    // ignores, so only the code is pinned.
    assert_eq!(
        out["publish_empty_channel"]["code"],
        json!(107),
        "{}",
        out["publish_empty_channel"]
    );
    expect(
        &out,
        "history_unavailable",
        json!({"code": 108, "message": "not available"}),
    );
    expect(&out, "wrong_key", json!("unauthorized"));
    expect(
        &out,
        "unsubscribe",
        json!({"code": 2000, "reason": "server unsubscribe"}),
    );
    expect(
        &out,
        "disconnect",
        json!({"code": 4501, "reason": "bye", "state": "disconnected"}),
    );
    Ok(())
}

#[tokio::test]
async fn centrifuge_python_with_cent_over_redis_across_two_processes() -> Result<()> {
    sdk_flow("json", Deployment::RedisPair).await
}

/// centrifuge-python and cache recovery mode: after three `cent` publishes, a plain subscribe
/// to an `auto_cache_recover` channel gets only the latest as its initial state, then the next.
async fn cache_recovery(format: &str, deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::python("py_cache.py"), format).await?;
    expect(&out, "format", json!(format));
    expect(
        &out,
        "subscribed",
        json!({"was_recovering": true, "recovered": true, "epoch_nonempty": true}),
    );
    expect(
        &out,
        "pubs",
        json!([{"n": 3, "offset": 3}, {"n": 4, "offset": 4}]),
    );
    Ok(())
}

scenario_tests! {
    centrifuge_python_json_cache_recovery => cache_recovery("json", Deployment::Memory);
    centrifuge_python_protobuf_cache_recovery_over_redis =>
        cache_recovery("protobuf", Deployment::RedisPair);
}

/// Publication tags filters with centrifuge-python: only matching publications, live and in
/// recovery (from a `get_state` position); refused with 107 where the namespace does not allow it.
async fn tags_filter(format: &str, deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::python("py_tags.py"), format).await?;
    expect(&out, "format", json!(format));
    expect(&out, "refused", json!({"code": 107}));
    expect(
        &out,
        "pubs",
        json!([{"n": 1, "offset": 1}, {"n": 4, "offset": 4}]),
    );
    expect(
        &out,
        "recovery",
        json!({"was_recovering": true, "recovered": true}),
    );
    expect(
        &out,
        "recovered_pubs",
        json!([{"n": 2, "offset": 2}, {"n": 4, "offset": 4}]),
    );
    expect(&out, "pub_count", json!(2));
    Ok(())
}

scenario_tests! {
    centrifuge_python_json_tags_filter => tags_filter("json", Deployment::Memory);
    centrifuge_python_protobuf_tags_filter_over_redis =>
        tags_filter("protobuf", Deployment::RedisPair);
}

/// Versioned publishes through cent (extra `version`/`version_epoch` fields): older versions
/// are dropped and answered with the current top; a new epoch starts afresh.
async fn cent_versions(deployment: Deployment) -> Result<()> {
    let out = run_on(deployment, ClientScript::python("cent_versions.py"), "json").await?;
    expect(&out, "offsets", json!([1, 1, 1, 2, 3]));
    expect(&out, "received", json!([1, 4, 5]));
    expect(&out, "history", json!([1, 4, 5]));
    Ok(())
}

scenario_tests! {
    cent_versioned_publishes => cent_versions(Deployment::Memory);
    cent_versioned_publishes_over_redis_across_two_processes =>
        cent_versions(Deployment::RedisPair);
}

/// cent 5.x with `session` targeting (subscribe, unsubscribe, disconnect reach one of a user's
/// two unidirectional HTTP streams), `override` in subscribe, and a `parallel` batch whose
/// replies stay in order while a centrifuge-python subscriber gets each publication once.
#[tokio::test]
async fn cent_targets_sessions_overrides_options_and_runs_parallel_batches() -> Result<()> {
    let server =
        interop::Server::start_with_config(json!({"uni_http_stream": {"enabled": true}})).await?;
    let out = server
        .run(ClientScript::python("cent_options.py"), "json")
        .await?;
    expect(
        &out,
        "sessions",
        json!({"distinct": true, "not_client_ids": true}),
    );
    expect(
        &out,
        "subscribe_push",
        json!({"channel": "tags:uni", "recoverable": true, "positioned": true}),
    );
    expect(&out, "first_next", json!("both"));
    expect(&out, "second_next", json!("both"));
    expect(
        &out,
        "unsubscribe_push",
        json!({"channel": "both", "has_unsubscribe": true}),
    );
    expect(&out, "second_pub", json!({"n": 1}));
    expect(&out, "first_disconnect", json!(3503));
    expect(&out, "first_ended", json!(true));
    expect(&out, "second_pub_after", json!({"n": 2}));
    let offsets: Vec<u64> = (1..=20).collect();
    expect(
        &out,
        "batch",
        json!({"replies": 21, "offsets": offsets, "presence_clients": 1}),
    );
    expect(&out, "batch_received_offsets", json!(offsets));
    let ns: Vec<u64> = (0..20).collect();
    expect(&out, "batch_received_n", json!(ns));
    Ok(())
}

/// centrifuge-python with `client.concurrency`: two RPCs of one client in flight together.
async fn concurrency(format: &str) -> Result<()> {
    let server = interop::Server::start_concurrent().await?;
    let out = server
        .run(ClientScript::python("py_concurrency.py"), format)
        .await?;
    expect(&out, "format", json!(format));
    expect(&out, "slow", json!({"echo": "slow"}));
    expect(&out, "fast", json!({"echo": "fast"}));
    Ok(())
}

scenario_tests! {
    centrifuge_python_json_commands_run_concurrently => concurrency("json");
    centrifuge_python_protobuf_commands_run_concurrently => concurrency("protobuf");
}

/// Python grpcio with stubs generated by grpcio-tools from `data-plane/proto/api.proto` against
/// the gRPC server API (`grpc_api.enabled`), a centrifuge-python subscriber watching: every
/// method, errors in the reply body, a PRO method, and UNAUTHENTICATED without the key.
#[tokio::test]
async fn grpcio_calls_every_grpc_api_method() -> Result<()> {
    let mut server =
        interop::Server::start_with_config(json!({"grpc_api": {"enabled": true, "port": 0}}))
            .await?;
    let marker = "rotor-data-plane grpc api at ";
    let output = server.process.output();
    let grpc_addr = output
        .lines()
        .find_map(|line| {
            line.split_once(marker)
                .map(|(_, addr)| addr.trim().to_owned())
        })
        .ok_or_else(|| anyhow::anyhow!("no gRPC API address in the output:\n{output}"))?;
    let out = server
        .run(
            ClientScript::python("grpc_api.py").envs([("ROTOR_GRPC_ADDR", grpc_addr)]),
            "json",
        )
        .await?;

    expect(
        &out,
        "publish",
        json!({"error": null, "offset": 1, "epoch": true}),
    );
    expect(
        &out,
        "received",
        json!({"data": {"via": "grpc", "n": 1}, "tags": {"k": "v"}}),
    );
    expect(
        &out,
        "broadcast",
        json!([
            {"error": null, "offset": 2},
            {"error": {"code": 102, "message": "unknown channel"}, "offset": 0}
        ]),
    );
    expect(
        &out,
        "history",
        json!({"offset": 2, "publications": [
            {"data": {"via": "grpc", "n": 1}, "offset": 1},
            {"data": {"n": 2}, "offset": 2}
        ]}),
    );
    expect(&out, "presence", json!(["py-grpc"]));
    expect(&out, "presence_stats", json!([1, 1]));
    expect(&out, "channels", json!({"chat:grpc": 1}));
    expect(&out, "info", json!([{"num_clients": 1, "has_uid": true}]));
    expect(
        &out,
        "batch",
        json!([
            {"error": null, "publish_offset": 3, "num_clients": null},
            {"error": null, "publish_offset": null, "num_clients": 1},
            {"error": {"code": 107, "message": "channel is required"}, "publish_offset": null, "num_clients": null}
        ]),
    );
    expect(&out, "history_remove", json!(null));
    expect(&out, "history_after_remove", json!(0));
    expect(&out, "rpc", json!(108));
    expect(
        &out,
        "publish_unknown_namespace",
        json!({"code": 102, "message": "unknown channel"}),
    );
    expect(&out, "pro_method", json!(104));
    expect(&out, "subscribe", json!(null));
    expect(&out, "unsubscribe", json!(null));
    expect(&out, "unsubscribed_code", json!(2000));
    expect(&out, "refresh", json!(null));
    expect(
        &out,
        "unauthenticated",
        json!(["UNAUTHENTICATED", "UNAUTHENTICATED"]),
    );
    expect(&out, "disconnect", json!(null));
    expect(&out, "disconnected", json!([4500, "bye"]));

    // SIGTERM stops the gRPC listener with the rest, promptly and cleanly.
    let status = server
        .process
        .terminate_within(std::time::Duration::from_secs(10))
        .await?;
    assert!(
        status.success(),
        "exit status {status}: {}",
        server.process.output()
    );
    Ok(())
}

/// gRPC proxies against a backend from another toolchain: a Python grpcio server (stubs made
/// by grpcio-tools from `data-plane/proto/proxy.proto`) answers the connect proxy and the `gp`
/// namespace's subscribe proxy for a real centrifuge-python client.
#[tokio::test]
async fn a_python_grpcio_backend_answers_grpc_connect_and_subscribe_proxies() -> Result<()> {
    // A free port for the script's backend: the data plane dials it only when a client comes,
    // after the script listens.
    let port = free_port()?;
    let endpoint = format!("grpc://127.0.0.1:{port}");
    let server = interop::Server::start_with_config(json!({
        "client": {"proxy": {"connect": {"enabled": true, "endpoint": endpoint}}},
        "channel": {
            "proxy": {"subscribe": {"endpoint": endpoint}},
            "namespaces": [{"name": "gp", "subscribe_proxy_enabled": true}]
        }
    }))
    .await?;
    let out = server
        .run(
            ClientScript::python("py_grpc_proxy.py").envs([("ROTOR_PROXY_PORT", port.to_string())]),
            "json",
        )
        .await?;
    expect(&out, "connect_data", json!({"hello": "from python"}));
    expect(
        &out,
        "subscribed",
        json!({"ev": "subscribed", "data": {"motd": "py room"}}),
    );
    expect(&out, "closed", json!({"ev": "unsubscribed", "code": 4103}));
    expect(
        &out,
        "denied",
        json!({"ev": "disconnected", "code": 4403, "reason": "not you"}),
    );
    expect(
        &out,
        "calls",
        json!([
            {"call": "connect", "transport": "websocket", "protocol": "json", "encoding": "json",
             "name": "rotor-interop", "data": {"let_me_in": true}, "client_set": true},
            {"call": "subscribe", "user": "py-proxied", "channel": "gp:open", "data": {"want": "in"}},
            {"call": "subscribe", "user": "py-proxied", "channel": "gp:closed", "data": null},
            {"call": "connect", "transport": "websocket", "protocol": "json", "encoding": "json",
             "name": "rotor-interop", "data": {"let_me_in": false}, "client_set": true}
        ]),
    );
    Ok(())
}

/// Subscribe stream proxies against a backend from another toolchain: a Python grpcio server
/// streams to a real centrifuge-python subscriber (JSON and Protobuf): publications in order
/// without positions, the subscribe answer's data, cancellation on unsubscribe, the end of the
/// stream as a server unsubscribe (2000), and a bidirectional stream echoing the client's
/// publishes.
#[tokio::test]
async fn a_python_grpcio_backend_streams_to_a_centrifuge_python_subscriber() -> Result<()> {
    for format in ["json", "protobuf"] {
        let port = free_port()?;
        let endpoint = format!("grpc://127.0.0.1:{port}");
        let server = interop::Server::start_with_config(json!({"channel": {
            "proxy": {"subscribe_stream": {"endpoint": endpoint}},
            "namespaces": [
                {"name": "ps", "subscribe_stream_proxy_enabled": true},
                {"name": "psb", "subscribe_stream_proxy_enabled": true,
                 "subscribe_stream_proxy_bidirectional": true}
            ]
        }}))
        .await?;
        let out = server
            .run(
                ClientScript::python("py_grpc_stream.py")
                    .envs([("ROTOR_PROXY_PORT", port.to_string())]),
                format,
            )
            .await?;
        expect(
            &out,
            "tail_subscribed",
            json!({"ev": "subscribed", "channel": "ps:tail", "data": {"tail": "on"}}),
        );
        expect(
            &out,
            "tail_pubs",
            json!([{"line": 0}, {"line": 1}, {"line": 2}]),
        );
        expect(&out, "tail_offsets", json!([0, 0, 0]));
        expect(&out, "tail_cancelled", json!(true));
        expect(
            &out,
            "ending_pubs",
            json!([{"line": 0}, {"line": 1}, {"line": 2}]),
        );
        expect(
            &out,
            "ending_unsubscribed",
            json!({"code": 2000, "reason": "server unsubscribe"}),
        );
        expect(
            &out,
            "echoes",
            json!([{"echo": {"n": 0}}, {"echo": {"n": 1}}]),
        );
        expect(
            &out,
            "backend",
            json!([
                {"ev": "opened", "channel": "ps:tail", "user": "py-streamer", "data": {"query": "errors"}},
                {"ev": "cancelled", "channel": "ps:tail"},
                {"ev": "opened", "channel": "ps:ending", "user": "py-streamer", "data": null},
                {"ev": "ended", "channel": "ps:ending"},
                {"ev": "opened", "channel": "psb:echo", "bidi": true},
                {"ev": "up", "data": {"n": 0}},
                {"ev": "up", "data": {"n": 1}}
            ]),
        );
    }
    Ok(())
}
