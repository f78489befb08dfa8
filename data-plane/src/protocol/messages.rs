//! Client protocol v2 messages. Each struct derives both `prost::Message` (Protobuf, with
//! Centrifugo's field numbers) and serde (JSON, with the proto snake_case names), so one set of
//! types serves both wire formats. Zero values are omitted on output as Go's `omitempty` does,
//! except the fields SDKs index directly.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::raw;

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// Declares protocol structs with the derives and serde defaults every message needs.
macro_rules! message {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name { $($body)* }
    };
}

message! {
    /// A client → server frame element.
    pub struct Command {
        #[prost(uint32, tag = "1")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub id: u32,
        #[prost(message, optional, tag = "4")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub connect: Option<ConnectRequest>,
        #[prost(message, optional, tag = "5")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub subscribe: Option<SubscribeRequest>,
        #[prost(message, optional, tag = "6")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub unsubscribe: Option<UnsubscribeRequest>,
        #[prost(message, optional, tag = "7")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub publish: Option<PublishRequest>,
        #[prost(message, optional, tag = "8")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub presence: Option<PresenceRequest>,
        #[prost(message, optional, tag = "9")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub presence_stats: Option<PresenceStatsRequest>,
        #[prost(message, optional, tag = "10")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub history: Option<HistoryRequest>,
        #[prost(message, optional, tag = "11")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub ping: Option<PingRequest>,
        #[prost(message, optional, tag = "12")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub send: Option<SendRequest>,
        #[prost(message, optional, tag = "13")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub rpc: Option<RpcRequest>,
        #[prost(message, optional, tag = "14")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub refresh: Option<RefreshRequest>,
        #[prost(message, optional, tag = "15")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sub_refresh: Option<SubRefreshRequest>,
    }
}

message! {
    /// A server → client frame element: a command reply, a push, or (empty) a ping.
    pub struct Reply {
        #[prost(uint32, tag = "1")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub id: u32,
        #[prost(message, optional, tag = "2")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub error: Option<Error>,
        #[prost(message, optional, tag = "4")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub push: Option<Push>,
        #[prost(message, optional, tag = "5")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub connect: Option<ConnectResult>,
        #[prost(message, optional, tag = "6")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub subscribe: Option<SubscribeResult>,
        #[prost(message, optional, tag = "7")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub unsubscribe: Option<UnsubscribeResult>,
        #[prost(message, optional, tag = "8")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub publish: Option<PublishResult>,
        #[prost(message, optional, tag = "9")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub presence: Option<PresenceResult>,
        #[prost(message, optional, tag = "10")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub presence_stats: Option<PresenceStatsResult>,
        #[prost(message, optional, tag = "11")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub history: Option<HistoryResult>,
        #[prost(message, optional, tag = "12")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub ping: Option<PingResult>,
        #[prost(message, optional, tag = "13")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub rpc: Option<RpcResult>,
        #[prost(message, optional, tag = "14")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub refresh: Option<RefreshResult>,
        #[prost(message, optional, tag = "15")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sub_refresh: Option<SubRefreshResult>,
    }
}

message! {
    /// A command error.
    pub struct Error {
        #[prost(uint32, tag = "1")]
        pub code: u32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(bool, tag = "3")]
        #[serde(skip_serializing_if = "is_false")]
        pub temporary: bool,
    }
}

message! {
    /// An asynchronous message to the client.
    pub struct Push {
        #[prost(string, tag = "2")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub channel: String,
        #[prost(message, optional, tag = "4")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub r#pub: Option<Publication>,
        #[prost(message, optional, tag = "5")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub join: Option<Join>,
        #[prost(message, optional, tag = "6")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub leave: Option<Leave>,
        #[prost(message, optional, tag = "7")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub unsubscribe: Option<UnsubscribePush>,
        #[prost(message, optional, tag = "8")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub message: Option<Message>,
        #[prost(message, optional, tag = "9")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub subscribe: Option<SubscribePush>,
        #[prost(message, optional, tag = "10")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub connect: Option<ConnectPush>,
        #[prost(message, optional, tag = "11")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub disconnect: Option<DisconnectPush>,
        #[prost(message, optional, tag = "12")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub refresh: Option<RefreshPush>,
    }
}

message! {
    /// Who a connection is: user id, client id and optional info payloads.
    pub struct ClientInfo {
        #[prost(string, tag = "1")]
        pub user: String,
        #[prost(string, tag = "2")]
        pub client: String,
        #[prost(bytes = "bytes", tag = "3")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub conn_info: Bytes,
        #[prost(bytes = "bytes", tag = "4")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub chan_info: Bytes,
    }
}

message! {
    /// A message published into a channel.
    pub struct Publication {
        #[prost(bytes = "bytes", tag = "4")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
        #[prost(message, optional, tag = "5")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub info: Option<ClientInfo>,
        #[prost(uint64, tag = "6")]
        #[serde(skip_serializing_if = "is_zero_u64")]
        pub offset: u64,
        #[prost(map = "string, string", tag = "7")]
        #[serde(skip_serializing_if = "HashMap::is_empty")]
        pub tags: HashMap<String, String>,
        #[prost(bool, tag = "8")]
        #[serde(skip_serializing_if = "is_false")]
        pub delta: bool,
        #[prost(int64, tag = "9")]
        #[serde(skip_serializing_if = "is_zero_i64")]
        pub time: i64,
        #[prost(string, tag = "10")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub channel: String,
        /// Rotor's own: who this publication is not delivered to (see [`crate::exclusion`]).
        /// Kept through the engines, cleared before a publication reaches a client; never in
        /// JSON.
        #[prost(string, tag = "1000")]
        #[serde(skip)]
        pub exclude: String,
    }
}

message! {
    /// A position in a channel's history stream.
    pub struct StreamPosition {
        #[prost(uint64, tag = "1")]
        #[serde(skip_serializing_if = "is_zero_u64")]
        pub offset: u64,
        #[prost(string, tag = "2")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub epoch: String,
    }
}

message! {
    /// Someone subscribed to a channel.
    pub struct Join {
        #[prost(message, optional, tag = "1")]
        pub info: Option<ClientInfo>,
    }
}

message! {
    /// Someone left a channel.
    pub struct Leave {
        #[prost(message, optional, tag = "1")]
        pub info: Option<ClientInfo>,
    }
}

message! {
    /// The server ended one subscription.
    pub struct UnsubscribePush {
        #[prost(uint32, tag = "2")]
        pub code: u32,
        #[prost(string, tag = "3")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub reason: String,
    }
}

message! {
    /// An asynchronous message to one connection (`send`).
    pub struct Message {
        #[prost(bytes = "bytes", tag = "1")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
    }
}

message! {
    /// The server subscribed the connection to a channel.
    pub struct SubscribePush {
        #[prost(bool, tag = "1")]
        #[serde(skip_serializing_if = "is_false")]
        pub recoverable: bool,
        #[prost(string, tag = "4")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub epoch: String,
        #[prost(uint64, tag = "5")]
        #[serde(skip_serializing_if = "is_zero_u64")]
        pub offset: u64,
        #[prost(bool, tag = "6")]
        #[serde(skip_serializing_if = "is_false")]
        pub positioned: bool,
        #[prost(bytes = "bytes", tag = "7")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
    }
}

message! {
    /// First message of a unidirectional stream.
    pub struct ConnectPush {
        #[prost(string, tag = "1")]
        pub client: String,
        #[prost(string, tag = "2")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub version: String,
        #[prost(bytes = "bytes", tag = "3")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
        #[prost(map = "string, message", tag = "4")]
        #[serde(skip_serializing_if = "HashMap::is_empty")]
        pub subs: HashMap<String, SubscribeResult>,
        #[prost(bool, tag = "5")]
        #[serde(skip_serializing_if = "is_false")]
        pub expires: bool,
        #[prost(uint32, tag = "6")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub ttl: u32,
        #[prost(uint32, tag = "7")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub ping: u32,
        #[prost(bool, tag = "8")]
        #[serde(skip_serializing_if = "is_false")]
        pub pong: bool,
        #[prost(string, tag = "9")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub session: String,
        #[prost(string, tag = "10")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub node: String,
        #[prost(int64, tag = "11")]
        #[serde(skip_serializing_if = "is_zero_i64")]
        pub time: i64,
    }
}

message! {
    /// The server is closing the connection (emulation and unidirectional transports).
    pub struct DisconnectPush {
        #[prost(uint32, tag = "1")]
        pub code: u32,
        #[prost(string, tag = "2")]
        pub reason: String,
        #[prost(bool, tag = "3")]
        #[serde(skip_serializing_if = "is_false")]
        pub reconnect: bool,
    }
}

message! {
    /// The server refreshed the connection's expiry.
    pub struct RefreshPush {
        #[prost(bool, tag = "1")]
        #[serde(skip_serializing_if = "is_false")]
        pub expires: bool,
        #[prost(uint32, tag = "2")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub ttl: u32,
    }
}

message! {
    /// `connect` command.
    pub struct ConnectRequest {
        #[prost(string, tag = "1")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub token: String,
        #[prost(bytes = "bytes", tag = "2")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
        #[prost(map = "string, message", tag = "3")]
        #[serde(skip_serializing_if = "HashMap::is_empty")]
        pub subs: HashMap<String, SubscribeRequest>,
        #[prost(string, tag = "4")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub name: String,
        #[prost(string, tag = "5")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub version: String,
        #[prost(map = "string, string", tag = "6")]
        #[serde(skip_serializing_if = "HashMap::is_empty")]
        pub headers: HashMap<String, String>,
        #[prost(int64, tag = "7")]
        #[serde(skip_serializing_if = "is_zero_i64")]
        pub flag: i64,
    }
}

message! {
    /// `connect` reply.
    pub struct ConnectResult {
        #[prost(string, tag = "1")]
        pub client: String,
        #[prost(string, tag = "2")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub version: String,
        #[prost(bool, tag = "3")]
        #[serde(skip_serializing_if = "is_false")]
        pub expires: bool,
        #[prost(uint32, tag = "4")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub ttl: u32,
        #[prost(bytes = "bytes", tag = "5")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
        #[prost(map = "string, message", tag = "6")]
        #[serde(skip_serializing_if = "HashMap::is_empty")]
        pub subs: HashMap<String, SubscribeResult>,
        #[prost(uint32, tag = "7")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub ping: u32,
        #[prost(bool, tag = "8")]
        #[serde(skip_serializing_if = "is_false")]
        pub pong: bool,
        #[prost(string, tag = "9")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub session: String,
        #[prost(string, tag = "10")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub node: String,
        #[prost(int64, tag = "11")]
        #[serde(skip_serializing_if = "is_zero_i64")]
        pub time: i64,
    }
}

message! {
    /// `refresh` command.
    pub struct RefreshRequest {
        #[prost(string, tag = "1")]
        pub token: String,
    }
}

message! {
    /// `refresh` reply.
    pub struct RefreshResult {
        #[prost(string, tag = "1")]
        pub client: String,
        #[prost(string, tag = "2")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub version: String,
        #[prost(bool, tag = "3")]
        #[serde(skip_serializing_if = "is_false")]
        pub expires: bool,
        #[prost(uint32, tag = "4")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub ttl: u32,
    }
}

message! {
    /// `subscribe` command.
    pub struct SubscribeRequest {
        #[prost(string, tag = "1")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub channel: String,
        #[prost(string, tag = "2")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub token: String,
        #[prost(bool, tag = "3")]
        #[serde(skip_serializing_if = "is_false")]
        pub recover: bool,
        #[prost(string, tag = "6")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub epoch: String,
        #[prost(uint64, tag = "7")]
        #[serde(skip_serializing_if = "is_zero_u64")]
        pub offset: u64,
        #[prost(bytes = "bytes", tag = "8")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
        #[prost(bool, tag = "9")]
        #[serde(skip_serializing_if = "is_false")]
        pub positioned: bool,
        #[prost(bool, tag = "10")]
        #[serde(skip_serializing_if = "is_false")]
        pub recoverable: bool,
        #[prost(bool, tag = "11")]
        #[serde(skip_serializing_if = "is_false")]
        pub join_leave: bool,
        #[prost(string, tag = "12")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub delta: String,
        /// Publication tags filter (see [`crate::filter`]).
        #[prost(message, optional, tag = "13")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub tf: Option<FilterNode>,
        #[prost(int64, tag = "14")]
        #[serde(skip_serializing_if = "is_zero_i64")]
        pub flag: i64,
        #[prost(int32, tag = "15")]
        #[serde(skip_serializing_if = "is_zero_i32")]
        pub r#type: i32,
    }
}

message! {
    /// A node of a publication tags filter: a leaf (`op` empty) compares the tag `key` with
    /// `cmp` against `val` or `vals`; `and`, `or` and `not` combine `nodes`.
    pub struct FilterNode {
        #[prost(string, tag = "1")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub op: String,
        #[prost(string, tag = "2")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub key: String,
        #[prost(string, tag = "3")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub cmp: String,
        #[prost(string, tag = "4")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub val: String,
        #[prost(string, repeated, tag = "5")]
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub vals: Vec<String>,
        #[prost(message, repeated, tag = "6")]
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub nodes: Vec<FilterNode>,
    }
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

message! {
    /// `subscribe` reply (also a server-side subscription in a connect reply).
    pub struct SubscribeResult {
        #[prost(bool, tag = "1")]
        #[serde(skip_serializing_if = "is_false")]
        pub expires: bool,
        #[prost(uint32, tag = "2")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub ttl: u32,
        #[prost(bool, tag = "3")]
        #[serde(skip_serializing_if = "is_false")]
        pub recoverable: bool,
        #[prost(string, tag = "6")]
        #[serde(skip_serializing_if = "String::is_empty")]
        pub epoch: String,
        #[prost(message, repeated, tag = "7")]
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub publications: Vec<Publication>,
        #[prost(bool, tag = "8")]
        #[serde(skip_serializing_if = "is_false")]
        pub recovered: bool,
        #[prost(uint64, tag = "9")]
        #[serde(skip_serializing_if = "is_zero_u64")]
        pub offset: u64,
        #[prost(bool, tag = "10")]
        #[serde(skip_serializing_if = "is_false")]
        pub positioned: bool,
        #[prost(bytes = "bytes", tag = "11")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
        #[prost(bool, tag = "12")]
        #[serde(skip_serializing_if = "is_false")]
        pub was_recovering: bool,
        #[prost(bool, tag = "13")]
        #[serde(skip_serializing_if = "is_false")]
        pub delta: bool,
    }
}

message! {
    /// `sub_refresh` command.
    pub struct SubRefreshRequest {
        #[prost(string, tag = "1")]
        pub channel: String,
        #[prost(string, tag = "2")]
        pub token: String,
    }
}

message! {
    /// `sub_refresh` reply.
    pub struct SubRefreshResult {
        #[prost(bool, tag = "1")]
        #[serde(skip_serializing_if = "is_false")]
        pub expires: bool,
        #[prost(uint32, tag = "2")]
        #[serde(skip_serializing_if = "is_zero_u32")]
        pub ttl: u32,
    }
}

message! {
    /// `unsubscribe` command.
    pub struct UnsubscribeRequest {
        #[prost(string, tag = "1")]
        pub channel: String,
    }
}

message! {
    /// `unsubscribe` reply (empty).
    pub struct UnsubscribeResult {}
}

message! {
    /// `publish` command.
    pub struct PublishRequest {
        #[prost(string, tag = "1")]
        pub channel: String,
        #[prost(bytes = "bytes", tag = "2")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
    }
}

message! {
    /// `publish` reply (empty).
    pub struct PublishResult {}
}

message! {
    /// `presence` command.
    pub struct PresenceRequest {
        #[prost(string, tag = "1")]
        pub channel: String,
    }
}

message! {
    /// `presence` reply: client id → info.
    pub struct PresenceResult {
        #[prost(map = "string, message", tag = "1")]
        pub presence: HashMap<String, ClientInfo>,
    }
}

message! {
    /// `presence_stats` command.
    pub struct PresenceStatsRequest {
        #[prost(string, tag = "1")]
        pub channel: String,
    }
}

message! {
    /// `presence_stats` reply.
    pub struct PresenceStatsResult {
        #[prost(uint32, tag = "1")]
        pub num_clients: u32,
        #[prost(uint32, tag = "2")]
        pub num_users: u32,
    }
}

message! {
    /// `history` command.
    pub struct HistoryRequest {
        #[prost(string, tag = "1")]
        pub channel: String,
        #[prost(int32, tag = "7")]
        #[serde(skip_serializing_if = "is_zero_i32")]
        pub limit: i32,
        #[prost(message, optional, tag = "8")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub since: Option<StreamPosition>,
        #[prost(bool, tag = "9")]
        #[serde(skip_serializing_if = "is_false")]
        pub reverse: bool,
    }
}

message! {
    /// `history` reply; `offset` is always the stream top.
    pub struct HistoryResult {
        #[prost(message, repeated, tag = "1")]
        pub publications: Vec<Publication>,
        #[prost(string, tag = "2")]
        pub epoch: String,
        #[prost(uint64, tag = "3")]
        pub offset: u64,
    }
}

message! {
    /// `rpc` command.
    pub struct RpcRequest {
        #[prost(bytes = "bytes", tag = "1")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
        #[prost(string, tag = "2")]
        pub method: String,
    }
}

message! {
    /// `rpc` reply.
    pub struct RpcResult {
        #[prost(bytes = "bytes", tag = "1")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
    }
}

message! {
    /// `send` command (no reply).
    pub struct SendRequest {
        #[prost(bytes = "bytes", tag = "1")]
        #[serde(with = "raw", skip_serializing_if = "raw::is_empty")]
        pub data: Bytes,
    }
}

message! {
    /// Legacy `ping` command (unused in protocol v2).
    pub struct PingRequest {}
}

message! {
    /// Legacy `ping` reply.
    pub struct PingResult {}
}
