//! The `CentrifugoApi` service: each method authenticates the call, turns its request into the
//! JSON request of the one server API executor ([`crate::api::call_scoped`], shared with the
//! HTTP API: same checks, scopes, errors and metrics) and its result or error back into the
//! method's reply. Errors are in the reply's `error` with status OK, as Centrifugo answers;
//! only what refuses the call itself is a status: a missing or wrong key (UNAUTHENTICATED),
//! the API switched off (UNIMPLEMENTED), a hosted project over its plan's rate
//! (RESOURCE_EXHAUSTED).

use std::sync::Arc;

use serde_json::Value;
use tonic::{Request, Response, Status};

use super::proto::centrifugo_api_server::CentrifugoApi;
use super::proto::*;
use super::{auth, replies, requests};
use crate::node::Node;
use crate::protocol::ClientError;
use rotor_tenant_config::ApiKeyScope;

/// The service over one node.
#[derive(Clone)]
pub struct Service {
    node: Arc<Node>,
}

impl Service {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// Admits the call (see [`auth::admit`]) and runs `method` with `params` (JSON).
    async fn call<T>(
        &self,
        request: &Request<T>,
        method: &str,
        params: String,
    ) -> Result<Result<Value, ClientError>, Status> {
        let scope = self.admit(request, method)?;
        Ok(crate::api::call_scoped(&self.node, scope, method, &params).await)
    }

    fn admit<T>(&self, request: &Request<T>, method: &str) -> Result<ApiKeyScope, Status> {
        let config = self.node.config.load();
        auth::admit(&config, request).inspect_err(|status| {
            tracing::info!(%method, code = ?status.code(), "gRPC API call refused");
        })
    }
}

/// The service's impl: `methods` are those whose reply is `{error, result}` (`$to_json` builds
/// the JSON request from the request message, `$result` the result message from the JSON
/// result); `pro` are Centrifugo PRO's, authenticated and then answered with error 104 (method
/// not found). One macro writes the whole impl so that `async_trait` sees every method.
macro_rules! api {
    (
        methods { $( $fn:ident, $name:literal, $req:ty, $resp:ident, $to_json:expr, $result:expr; )* }
        pro { $( $pro:ident ),* $(,)? }
    ) => {
        #[tonic::async_trait]
        impl CentrifugoApi for Service {
            async fn batch(
                &self,
                request: Request<BatchRequest>,
            ) -> Result<Response<BatchResponse>, Status> {
                let params = requests::batch(request.get_ref());
                let reply = match self.call(&request, "batch", params).await? {
                    Ok(v) => replies::batch(&v),
                    // A batch that could not run at all: every command gets its error.
                    Err(e) => BatchResponse {
                        replies: request
                            .get_ref()
                            .commands
                            .iter()
                            .map(|_| Reply {
                                error: Some(replies::error(&e)),
                                ..Default::default()
                            })
                            .collect(),
                    },
                };
                Ok(Response::new(reply))
            }

            $(
                async fn $fn(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let params = ($to_json)(request.get_ref());
                    let reply = match self.call(&request, $name, params).await? {
                        Ok(v) => $resp {
                            error: None,
                            result: Some(($result)(&v)),
                        },
                        Err(e) => $resp {
                            error: Some(replies::error(&e)),
                            result: None,
                        },
                    };
                    Ok(Response::new(reply))
                }
            )*

            $(
                async fn $pro(
                    &self,
                    request: Request<ProRequest>,
                ) -> Result<Response<ProResponse>, Status> {
                    self.admit(&request, stringify!($pro))?;
                    Ok(Response::new(ProResponse {
                        error: Some(replies::error(&ClientError::METHOD_NOT_FOUND)),
                    }))
                }
            )*
        }
    };
}

api! {
    methods {
        publish, "publish", PublishRequest, PublishResponse, requests::publish, replies::publish;
        broadcast, "broadcast", BroadcastRequest, BroadcastResponse, requests::broadcast, replies::broadcast;
        subscribe, "subscribe", SubscribeRequest, SubscribeResponse, requests::subscribe, |_: &Value| SubscribeResult {};
        unsubscribe, "unsubscribe", UnsubscribeRequest, UnsubscribeResponse, requests::unsubscribe, |_: &Value| UnsubscribeResult {};
        disconnect, "disconnect", DisconnectRequest, DisconnectResponse, requests::disconnect, |_: &Value| DisconnectResult {};
        presence, "presence", PresenceRequest, PresenceResponse, |r: &PresenceRequest| requests::channel(&r.channel), replies::presence;
        presence_stats, "presence_stats", PresenceStatsRequest, PresenceStatsResponse, |r: &PresenceStatsRequest| requests::channel(&r.channel), replies::presence_stats;
        history, "history", HistoryRequest, HistoryResponse, requests::history, replies::history;
        history_remove, "history_remove", HistoryRemoveRequest, HistoryRemoveResponse, |r: &HistoryRemoveRequest| requests::channel(&r.channel), |_: &Value| HistoryRemoveResult {};
        info, "info", InfoRequest, InfoResponse, |_: &InfoRequest| "{}".to_owned(), replies::info;
        rpc, "rpc", RpcRequest, RpcResponse, requests::rpc, replies::rpc;
        refresh, "refresh", RefreshRequest, RefreshResponse, requests::refresh, |_: &Value| RefreshResult {};
        channels, "channels", ChannelsRequest, ChannelsResponse, requests::channels, replies::channels;
    }
    pro {
        connections, update_user_status, get_user_status, delete_user_status, block_user,
        unblock_user, revoke_token, invalidate_user_tokens, device_register, device_update,
        device_remove, device_list, device_topic_list, device_topic_update, user_topic_list,
        user_topic_update, send_push_notification, update_push_status, cancel_push,
    }
}
