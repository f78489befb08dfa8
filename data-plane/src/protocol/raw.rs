//! Serde helpers for payload fields: in the JSON protocol every `bytes` field (`data`, `info`,
//! `conn_info`, …) is an embedded raw JSON value, never base64.

use bytes::Bytes;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Writes `bytes` as raw JSON. Line feeds and carriage returns are insignificant whitespace in
/// valid JSON (inside strings they must be escaped), but a line feed delimits the protocol's
/// frames and EventSource (SSE) ends a line at either, so both are replaced by spaces. Non-JSON
/// bytes (a binary payload) cannot travel over a JSON connection and fail the encode.
pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| S::Error::custom("binary payload cannot be sent over a JSON connection"))?;
    if text.contains(['\n', '\r']) {
        let cleaned = text.replace(['\n', '\r'], " ");
        let raw: &RawValue = serde_json::from_str(&cleaned).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    } else {
        let raw: &RawValue = serde_json::from_str(text).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// Reads any JSON value and keeps its text as the payload bytes.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    let text: Box<str> = raw.into();
    if text.is_empty() {
        return Err(D::Error::custom("empty payload"));
    }
    Ok(Bytes::from(String::from(text)))
}

/// True when the payload is empty (field omitted).
pub fn is_empty(bytes: &Bytes) -> bool {
    bytes.is_empty()
}
