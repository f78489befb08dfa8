//! Server API bodies: `POST /api/{method}` for every method (and the legacy line protocol
//! `POST /api`), through the real router of a fresh in-memory data plane with a JSON and a
//! Protobuf subscriber on a few channels, so each method's params decoding, the handler behind
//! it and the fan-out of what it publishes run. The first byte picks the method. Beyond "no
//! panic": the answer is 200 or 400; a body that is not a UTF-8 JSON object is a 400; every
//! 200 is one JSON object (a `result` or an `error`, `replies` for `batch`, one line per
//! command for the legacy protocol); every frame a subscriber receives is well formed (JSON:
//! one line of JSON; Protobuf: exactly one length-delimited reply).
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use rotor_data_plane::api::METHODS;
use rotor_data_plane::client::{ClientHandle, OutItem};
use rotor_data_plane::config::RuntimeConfig;
use rotor_data_plane::hub::SubFlags;
use rotor_data_plane::node::Node;
use rotor_data_plane::protocol::{ProtocolKind, Reply};
use rotor_tenant_config::TenantConfig;
use serde_json::json;
use serde_json::value::RawValue;
use tower::ServiceExt as _;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fn config() -> TenantConfig {
    static CONFIG: OnceLock<TenantConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let value = json!({
                "http_api": {"insecure": true},
                "channel": {
                    "without_namespace": {"presence": true, "history_size": 3, "history_ttl": "5s"},
                    "namespaces": [
                        {"name": "chat", "presence": true, "join_leave": true,
                         "history_size": 3, "history_ttl": "5s", "force_recovery": true},
                        {"name": "js",
                         "publication_data_format": "json"},
                        {"name": "locked"}
                    ]
                }
            });
            TenantConfig::from_value(value)
                .expect("valid fuzz config")
                .config
        })
        .clone()
}

/// Channels with live subscribers (what `channels` patterns are matched against and where
/// publications fan out), one long name among them as SDKs sometimes use.
const SUBSCRIBED: &[&str] = &[
    "news",
    "chat:1",
    "chat:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "js:1",
];

fn check_frames(client: &ClientHandle) {
    let (items, _) = client.outbox.drain();
    for item in items {
        let OutItem::Frame(frame) = item else {
            continue;
        };
        match client.protocol {
            ProtocolKind::Json => {
                assert!(!frame.contains(&b'\n'), "a JSON push spans lines");
                assert!(is_json_object(&frame), "a JSON push is not an object");
            }
            ProtocolKind::Protobuf => {
                let mut buf = &frame[..];
                Reply::decode_length_delimited(&mut buf).expect("a Protobuf push decodes");
                assert!(buf.is_empty(), "a Protobuf push has trailing bytes");
            }
        }
    }
}

/// One JSON object, checked for syntax (numbers out of `f64` range are still JSON).
fn json_object(bytes: &[u8]) -> Option<BTreeMap<String, Box<RawValue>>> {
    serde_json::from_slice(bytes).ok()
}

fn is_json_object(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && json_object(bytes).is_some()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let legacy = usize::from(selector) % (METHODS.len() + 1) == METHODS.len();
    let method = METHODS.get(usize::from(selector) % (METHODS.len() + 1));
    let uri = match method {
        Some(m) if !legacy => format!("/api/{m}"),
        _ => "/api".to_owned(),
    };
    runtime().block_on(async {
        // A fresh node per input: no state carries over, so every crash reproduces alone.
        let node = Node::new_memory(
            RuntimeConfig::compile(config()).expect("compiles"),
            "fuzz".into(),
        );
        let clients: Vec<Arc<ClientHandle>> = [ProtocolKind::Json, ProtocolKind::Protobuf]
            .into_iter()
            .enumerate()
            .map(|(i, kind)| {
                Arc::new(ClientHandle::new(
                    format!("client-{i}").into(),
                    kind,
                    1 << 20,
                ))
            })
            .collect();
        for client in &clients {
            for channel in SUBSCRIBED {
                node.hub
                    .add_pending(channel, client, SubFlags::default(), None)
                    .expect("no channel budget is set");
                assert!(node.hub.activate(channel, &client.id, None, None));
            }
        }
        let app = rotor_data_plane::api::router().with_state(Arc::clone(&node));
        let request = Request::post(&uri)
            .body(Body::from(body.to_vec()))
            .expect("request");
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(5), app.oneshot(request))
                .await
                .expect("an API call answers within 5 s")
                .expect("infallible");
        let status = response.status();
        let text = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        node.shutdown.cancel();
        for client in &clients {
            check_frames(client);
        }

        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{uri}: status {status}"
        );
        if legacy {
            if status == StatusCode::OK {
                for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    assert!(is_json_object(line), "{uri}: reply line is not an object");
                }
            }
            return;
        }
        if !is_json_object(body) {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{uri}: non-object body accepted"
            );
        }
        if status == StatusCode::OK {
            let reply = json_object(&text).expect("a 200 answer is a JSON object");
            let ok = if method == Some(&"batch") {
                reply.len() == 1
                    && reply
                        .get("replies")
                        .is_some_and(|r| r.get().starts_with('['))
            } else {
                reply.len() == 1 && (reply.contains_key("result") || reply.contains_key("error"))
            };
            assert!(ok, "{uri}: unexpected answer {reply:?}");
        }
    });
});
