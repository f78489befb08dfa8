//! The JSON bodies of Centrifugo's HTTP proxy protocol: what Rotor POSTs to the backend for each
//! event and what the backend answers (`{"result": …}`, `{"error": …}` or `{"disconnect": …}`).
//! Payloads (`data`, `info`, `meta`) travel as embedded JSON, or base64 in the `b64*` fields when
//! the proxy uses `binary_encoding`. The gRPC transport (`super::grpc`) maps the same requests
//! and results to Centrifugo's proxy messages, where payloads are native bytes.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ProxyError;
use crate::protocol::TransportName;
pub use crate::protocol::{BoolValue, Override};

/// Fields every request carries.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Base<'a> {
    pub client: &'a str,
    /// The client's transport (`websocket`, `http_stream`, `sse`, `uni_websocket`, …).
    pub transport: TransportName,
    /// `json` or `protobuf`.
    pub protocol: &'a str,
    /// `json`, or `binary` when payloads are base64.
    pub encoding: &'a str,
}

/// A payload as the proxy sends it: raw JSON in `data`, or base64 in `b64data`; gRPC sends
/// `native` as bytes instead of `data`.
#[derive(Debug, Default, Serialize)]
pub struct Payload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64data: Option<String>,
    /// The payload's bytes as they are (gRPC's `data`), when not base64-encoded.
    #[serde(skip)]
    pub native: &'a [u8],
}

impl<'a> Payload<'a> {
    /// Encodes `bytes` for a gRPC proxy: native bytes, or base64 with `binary` (as Centrifugo's
    /// gRPC proxies do with `binary_encoding`). Any bytes go; nothing needs to be JSON.
    pub fn native(bytes: &'a [u8], binary: bool) -> Self {
        if binary && !bytes.is_empty() {
            return Self {
                data: None,
                b64data: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                native: &[],
            };
        }
        Self {
            data: None,
            b64data: None,
            native: bytes,
        }
    }

    /// Encodes `bytes` (nothing when empty). Without `binary`, the bytes must be JSON.
    pub fn new(bytes: &'a [u8], binary: bool) -> Result<Self, ProxyError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        if binary {
            return Ok(Self {
                data: None,
                b64data: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                native: &[],
            });
        }
        let data = serde_json::from_slice::<&RawValue>(bytes).map_err(|_| {
            ProxyError::Encode("payload is not JSON; enable binary_encoding for binary data".into())
        })?;
        Ok(Self {
            data: Some(data),
            b64data: None,
            native: bytes,
        })
    }
}

/// Connection `meta` for requests of proxies with `include_connection_meta`.
pub fn meta(meta: Option<&Bytes>, include: bool) -> Option<&RawValue> {
    meta.filter(|_| include)
        .and_then(|m| serde_json::from_slice::<&RawValue>(m).ok())
}

/// `connect` request: a client connecting without a token.
#[derive(Debug, Serialize)]
pub struct ConnectRequest<'a> {
    #[serde(flatten)]
    pub base: Base<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub version: &'a str,
    #[serde(flatten)]
    pub payload: Payload<'a>,
    /// Channels the client listed in its connect command's `subs`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<&'a str>,
}

/// The requests made on behalf of a connected user: refresh, subscribe, publish, sub_refresh
/// and rpc. Fields a kind does not use stay empty and are left out.
#[derive(Debug, Serialize)]
pub struct UserRequest<'a> {
    #[serde(flatten)]
    pub base: Base<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub channel: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub token: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub method: &'a str,
    #[serde(flatten)]
    pub payload: Payload<'a>,
}

/// The three shapes of an answer; `disconnect` wins over `error`, which wins over `result`.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct Answer<R> {
    #[serde(default)]
    pub result: Option<R>,
    #[serde(default)]
    pub error: Option<ErrorAnswer>,
    #[serde(default)]
    pub disconnect: Option<DisconnectAnswer>,
}

/// `{"error": {code, message, temporary}}`: an error reply for the client.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorAnswer {
    pub code: u32,
    pub message: String,
    pub temporary: bool,
}

/// `{"disconnect": {code, reason}}`: close the connection.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DisconnectAnswer {
    pub code: u32,
    pub reason: String,
}

/// A payload's bytes as a backend answered them: a JSON value kept as its text (HTTP), or the
/// bytes of a gRPC answer's field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBytes(pub Bytes);

impl RawBytes {
    /// The bytes; `None` for empty ones (a gRPC field left unset).
    pub fn of(bytes: Bytes) -> Option<Self> {
        (!bytes.is_empty()).then_some(Self(bytes))
    }
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(Self(Bytes::from(String::from(Box::<str>::from(raw)))))
    }
}

/// A payload as a backend answered it.
type Raw = Option<RawBytes>;

/// Decodes a payload answered as `json` or `b64` (base64 wins). `None` when neither is set.
pub fn decode_payload(json: Raw, b64: &str) -> Result<Option<Bytes>, ProxyError> {
    if !b64.is_empty() {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|b| Some(Bytes::from(b)))
            .map_err(|_| ProxyError::Malformed("invalid base64 payload".into()));
    }
    Ok(json.map(|raw| raw.0))
}

/// A server-side subscription the connect proxy grants (`subs` entry).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubscribeOptions {
    pub expire_at: i64,
    pub info: Raw,
    pub b64info: String,
    pub data: Raw,
    pub b64data: String,
    #[serde(rename = "override")]
    pub overrides: Option<Override>,
    /// Deliver the latest publication on this subscription (channels in cache recovery mode
    /// with recovery on), as the namespace option `auto_cache_recover` does for all.
    pub cache_recover: bool,
}

/// Result of the connect proxy: who the client is and what it starts with.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConnectResult {
    pub user: String,
    /// Unix seconds; 0 = never expires.
    pub expire_at: i64,
    pub info: Raw,
    pub b64info: String,
    pub data: Raw,
    pub b64data: String,
    /// Server-side subscriptions with the namespace's options.
    pub channels: Vec<String>,
    /// Server-side subscriptions with their own options (win over `channels`).
    pub subs: HashMap<String, SubscribeOptions>,
    /// Kept with the connection and sent to other proxies.
    pub meta: Raw,
    /// Rotor's own: the session the connection belongs to across reconnects (publisher
    /// exclusion).
    pub session_tag: String,
}

/// Result of the refresh proxy.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RefreshResult {
    pub expired: bool,
    pub expire_at: i64,
    pub info: Raw,
    pub b64info: String,
    pub meta: Raw,
}

/// Result of the subscribe proxy: the subscription is allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubscribeResult {
    pub expire_at: i64,
    pub info: Raw,
    pub b64info: String,
    pub data: Raw,
    pub b64data: String,
    #[serde(rename = "override")]
    pub overrides: Option<Override>,
}

/// Result of the publish proxy: the publication is allowed, maybe changed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PublishResult {
    /// Replaces the payload.
    pub data: Raw,
    pub b64data: String,
    pub skip_history: bool,
    pub tags: HashMap<String, String>,
    pub idempotency_key: String,
    /// Ask for delta compression of this publication (subscribers that negotiated Fossil
    /// delta get a delta against the previous publication, with history).
    pub delta: bool,
    /// Versioned publish (see the server API's `version`).
    pub version: u64,
    pub version_epoch: String,
}

/// Result of the rpc proxy.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RpcResult {
    pub data: Raw,
    pub b64data: String,
}

/// Result of the sub_refresh proxy.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubRefreshResult {
    pub expired: bool,
    pub expire_at: i64,
    pub info: Raw,
    pub b64info: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_leave_out_empty_fields_and_embed_json_payloads() {
        let base = Base {
            client: "c1",
            transport: TransportName::WebSocket,
            protocol: "json",
            encoding: "json",
        };
        let req = ConnectRequest {
            base,
            name: "js",
            version: "",
            payload: Payload::new(br#"{"a":1}"#, false).unwrap(),
            channels: vec!["news"],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"client":"c1","transport":"websocket","protocol":"json","encoding":"json","name":"js","data":{"a":1},"channels":["news"]}"#
        );
        let req = UserRequest {
            base: Base {
                encoding: "binary",
                ..base
            },
            user: "42",
            meta: None,
            channel: "chat:1",
            token: "",
            method: "",
            payload: Payload::new(&[0, 1, 2], true).unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"client":"c1","transport":"websocket","protocol":"json","encoding":"binary","user":"42","channel":"chat:1","b64data":"AAEC"}"#
        );
        assert!(Payload::new(&[0, 159], false).is_err());
    }

    #[test]
    fn answers_decode_all_three_shapes() {
        let a: Answer<ConnectResult> = serde_json::from_str(
            r#"{"result":{"user":"7","expire_at":100,"info":{"n":1},"channels":["a"],"subs":{"b":{"override":{"presence":{"value":true}}}}}}"#,
        )
        .unwrap();
        let r = a.result.unwrap();
        assert_eq!(r.user, "7");
        assert_eq!(
            decode_payload(r.info, &r.b64info).unwrap().unwrap(),
            &br#"{"n":1}"#[..]
        );
        assert!(
            r.subs["b"]
                .overrides
                .as_ref()
                .unwrap()
                .presence
                .unwrap()
                .value
        );
        let a: Answer<RpcResult> =
            serde_json::from_str(r#"{"error":{"code":1000,"message":"no"}}"#).unwrap();
        assert_eq!(a.error.unwrap().code, 1000);
        let a: Answer<RpcResult> =
            serde_json::from_str(r#"{"disconnect":{"code":4001,"reason":"bye"}}"#).unwrap();
        assert_eq!(a.disconnect.unwrap().reason, "bye");
        assert_eq!(
            decode_payload(None, "AAEC").unwrap().unwrap(),
            &[0u8, 1, 2][..]
        );
    }
}
