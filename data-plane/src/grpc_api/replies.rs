//! The executor's JSON results → gRPC reply messages, and its errors → the `Error` message that
//! every reply carries (Centrifugo's gRPC API answers errors in the body, with status OK).

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value;

use super::proto;
use crate::protocol::ClientError;

/// The `error` of a reply.
pub(super) fn error(e: &ClientError) -> proto::Error {
    proto::Error {
        code: e.code,
        message: e.message.to_string(),
    }
}

/// The `error` of a JSON `{"code", "message"}` object (inside `broadcast` and `batch`).
fn error_of(v: &Value) -> proto::Error {
    proto::Error {
        code: u32_of(&v["code"]),
        message: str_of(&v["message"]),
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_default()
}

fn u32_of(v: &Value) -> u32 {
    u32::try_from(u64_of(v)).unwrap_or(u32::MAX)
}

/// A payload of a result as bytes: JSON as its text, nothing for null or absent.
fn json_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        v => v.to_string().into_bytes(),
    }
}

fn tags_of(v: &Value) -> HashMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), str_of(v))).collect())
        .unwrap_or_default()
}

pub(super) fn publish(v: &Value) -> proto::PublishResult {
    proto::PublishResult {
        offset: u64_of(&v["offset"]),
        epoch: str_of(&v["epoch"]),
    }
}

pub(super) fn broadcast(v: &Value) -> proto::BroadcastResult {
    let responses = v["responses"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| match r.get("error") {
            Some(e) => proto::PublishResponse {
                error: Some(error_of(e)),
                result: None,
            },
            None => proto::PublishResponse {
                error: None,
                result: Some(publish(&r["result"])),
            },
        })
        .collect();
    proto::BroadcastResult { responses }
}

fn client_info(v: &Value) -> proto::ClientInfo {
    proto::ClientInfo {
        user: str_of(&v["user"]),
        client: str_of(&v["client"]),
        conn_info: json_bytes(&v["conn_info"]),
        chan_info: json_bytes(&v["chan_info"]),
    }
}

pub(super) fn presence(v: &Value) -> proto::PresenceResult {
    let presence = v["presence"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), client_info(v))).collect())
        .unwrap_or_default();
    proto::PresenceResult { presence }
}

pub(super) fn presence_stats(v: &Value) -> proto::PresenceStatsResult {
    proto::PresenceStatsResult {
        num_clients: u32_of(&v["num_clients"]),
        num_users: u32_of(&v["num_users"]),
    }
}

fn publication(v: &Value) -> proto::Publication {
    let data = match v.get("b64data").and_then(Value::as_str) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default(),
        None => json_bytes(&v["data"]),
    };
    proto::Publication {
        data,
        info: v.get("info").map(client_info),
        offset: u64_of(&v["offset"]),
        tags: tags_of(&v["tags"]),
    }
}

pub(super) fn history(v: &Value) -> proto::HistoryResult {
    proto::HistoryResult {
        publications: v["publications"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(publication)
            .collect(),
        epoch: str_of(&v["epoch"]),
        offset: u64_of(&v["offset"]),
    }
}

pub(super) fn info(v: &Value) -> proto::InfoResult {
    let nodes = v["nodes"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|n| proto::NodeResult {
            uid: str_of(&n["uid"]),
            name: str_of(&n["name"]),
            version: str_of(&n["version"]),
            num_clients: u32_of(&n["num_clients"]),
            num_users: u32_of(&n["num_users"]),
            num_channels: u32_of(&n["num_channels"]),
            uptime: u32_of(&n["uptime"]),
            metrics: None,
            process: None,
            num_subs: u32_of(&n["num_subs"]),
        })
        .collect();
    proto::InfoResult { nodes }
}

pub(super) fn rpc(v: &Value) -> proto::RpcResult {
    proto::RpcResult {
        data: json_bytes(&v["data"]),
    }
}

pub(super) fn channels(v: &Value) -> proto::ChannelsResult {
    let channels = v["channels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, c)| {
                    (
                        k.clone(),
                        proto::ChannelInfo {
                            num_clients: u32_of(&c["num_clients"]),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    proto::ChannelsResult { channels }
}

/// One reply of a batch (`{"<method>": result}` or `{"error": …}`).
fn reply(v: &Value) -> proto::Reply {
    let mut r = proto::Reply::default();
    if let Some(e) = v.get("error") {
        r.error = Some(error_of(e));
        return r;
    }
    let Some((method, result)) = v.as_object().and_then(|m| m.iter().next()) else {
        return r;
    };
    match method.as_str() {
        "publish" => r.publish = Some(publish(result)),
        "broadcast" => r.broadcast = Some(broadcast(result)),
        "subscribe" => r.subscribe = Some(proto::SubscribeResult {}),
        "unsubscribe" => r.unsubscribe = Some(proto::UnsubscribeResult {}),
        "disconnect" => r.disconnect = Some(proto::DisconnectResult {}),
        "presence" => r.presence = Some(presence(result)),
        "presence_stats" => r.presence_stats = Some(presence_stats(result)),
        "history" => r.history = Some(history(result)),
        "history_remove" => r.history_remove = Some(proto::HistoryRemoveResult {}),
        "info" => r.info = Some(info(result)),
        "rpc" => r.rpc = Some(rpc(result)),
        "refresh" => r.refresh = Some(proto::RefreshResult {}),
        "channels" => r.channels = Some(channels(result)),
        _ => r.error = Some(error(&ClientError::METHOD_NOT_FOUND)),
    }
    r
}

pub(super) fn batch(v: &Value) -> proto::BatchResponse {
    proto::BatchResponse {
        replies: v["replies"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(reply)
            .collect(),
    }
}
