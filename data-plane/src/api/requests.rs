//! Request bodies of the server API methods (Centrifugo's field names). Payloads stay raw JSON
//! (`data`, `info`) or base64 (`b64data`, `b64info`, which win when both are given).

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::protocol::{ClientError, StreamPosition};

/// Raw JSON or base64 payload → bytes (empty when absent).
pub(crate) fn payload(json: &Option<Box<RawValue>>, b64: &str) -> Result<Bytes, ClientError> {
    if !b64.is_empty() {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|_| ClientError::BAD_REQUEST.with_message("malformed base64"));
    }
    Ok(json
        .as_ref()
        .filter(|v| v.get() != "null")
        .map(|v| Bytes::from(v.get().to_owned()))
        .unwrap_or_default())
}

/// What `publish` and `broadcast` share.
#[derive(Debug)]
pub(crate) struct PublishFields<'a> {
    pub data: &'a Option<Box<RawValue>>,
    pub b64data: &'a str,
    pub skip_history: bool,
    pub tags: &'a HashMap<String, String>,
    pub idempotency_key: &'a str,
    pub version: u64,
    pub version_epoch: &'a str,
    /// Ask for delta compression (subscribers that negotiated it get a Fossil delta).
    pub delta: bool,
    /// Rotor's own: who the publication is not delivered to.
    pub exclude: Option<&'a Exclude>,
}

/// Rotor's `exclude` of `publish` and `broadcast`: exactly one of a connection (`client`), a
/// user (`user`) or a session across its reconnects (`session_tag`); see
/// [`crate::exclusion`].
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Exclude {
    pub client: String,
    pub user: String,
    pub session_tag: String,
}

impl Exclude {
    /// The checked exclusion.
    pub fn exclusion(&self) -> Result<crate::exclusion::Exclusion<'_>, ClientError> {
        crate::exclusion::Exclusion::from_request(&self.client, &self.user, &self.session_tag)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Publish {
    pub channel: String,
    pub data: Option<Box<RawValue>>,
    pub b64data: String,
    pub skip_history: bool,
    pub tags: HashMap<String, String>,
    pub idempotency_key: String,
    /// Versioned publish: older versions are dropped (with history).
    pub version: u64,
    pub version_epoch: String,
    /// Ask for delta compression of this publication.
    pub delta: bool,
    /// Who the publication is not delivered to.
    pub exclude: Option<Exclude>,
}

impl Publish {
    pub fn fields(&self) -> PublishFields<'_> {
        PublishFields {
            data: &self.data,
            b64data: &self.b64data,
            skip_history: self.skip_history,
            tags: &self.tags,
            idempotency_key: &self.idempotency_key,
            version: self.version,
            version_epoch: &self.version_epoch,
            delta: self.delta,
            exclude: self.exclude.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Broadcast {
    pub channels: Vec<String>,
    pub data: Option<Box<RawValue>>,
    pub b64data: String,
    pub skip_history: bool,
    pub tags: HashMap<String, String>,
    pub idempotency_key: String,
    /// Versioned publish: older versions are dropped (with history).
    pub version: u64,
    pub version_epoch: String,
    /// Ask for delta compression of this publication.
    pub delta: bool,
    /// Who the publication is not delivered to.
    pub exclude: Option<Exclude>,
}

impl Broadcast {
    pub fn fields(&self) -> PublishFields<'_> {
        PublishFields {
            data: &self.data,
            b64data: &self.b64data,
            skip_history: self.skip_history,
            tags: &self.tags,
            idempotency_key: &self.idempotency_key,
            version: self.version,
            version_epoch: &self.version_epoch,
            delta: self.delta,
            exclude: self.exclude.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Subscribe {
    pub user: String,
    pub channel: String,
    pub expire_at: i64,
    pub info: Option<Box<RawValue>>,
    pub b64info: String,
    pub client: String,
    pub session: String,
    pub data: Option<Box<RawValue>>,
    pub b64data: String,
    pub recover_since: Option<StreamPosition>,
    /// Changes to the namespace's options for this subscription.
    #[serde(rename = "override")]
    pub overrides: Option<crate::protocol::Override>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Unsubscribe {
    pub user: String,
    pub channel: String,
    pub client: String,
    pub session: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct DisconnectSpec {
    pub code: u16,
    pub reason: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Disconnect {
    pub user: String,
    pub client: String,
    pub session: String,
    pub whitelist: Vec<String>,
    pub disconnect: Option<DisconnectSpec>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Refresh {
    pub user: String,
    pub client: String,
    pub session: String,
    pub expired: bool,
    pub expire_at: i64,
    pub info: Option<Box<RawValue>>,
    pub b64info: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Channel {
    pub channel: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct History {
    pub channel: String,
    pub limit: i32,
    pub since: Option<StreamPosition>,
    pub reverse: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct UserStatus {
    pub users: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Channels {
    pub pattern: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Rpc {
    pub method: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Batch {
    pub commands: Vec<HashMap<String, Box<RawValue>>>,
    pub parallel: bool,
}
