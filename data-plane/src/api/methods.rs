//! The server API methods, one function each, sharing the node's publish path with the client
//! protocol. API calls are trusted: no channel permissions apply, but namespaces, payload
//! formats and history/presence availability do.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::requests::{self, payload};
use super::{error_json, ApiError};
use crate::cluster::ClusterControl;
use crate::engine::HistoryFilter;
use crate::node::{meta_ttl, Node, PublishExtras};
use crate::protocol::{ClientError, Publication};
use rotor_tenant_config::ApiKeyScope;

pub use crate::protocol::API_METHODS as METHODS;

fn parse<T: DeserializeOwned>(params: &str) -> Result<T, ApiError> {
    serde_json::from_str(params).map_err(|e| ApiError::BadRequest(format!("invalid request: {e}")))
}

fn require_channel(channel: &str) -> Result<(), ClientError> {
    if channel.is_empty() {
        Err(ClientError::BAD_REQUEST.with_message("channel is required"))
    } else {
        Ok(())
    }
}

/// Runs one method for a key of `scope` (which the caller checked allows `method`; the
/// commands of a `batch` are checked here, one by one).
pub(super) async fn execute(
    node: &Node,
    scope: ApiKeyScope,
    method: &str,
    params: &str,
) -> Result<Value, ApiError> {
    match method {
        "publish" => publish(node, parse(params)?).await,
        "broadcast" => broadcast(node, parse(params)?).await,
        "subscribe" => subscribe(node, parse(params)?).await,
        "unsubscribe" => unsubscribe(node, parse(params)?).await,
        "disconnect" => disconnect(node, parse(params)?).await,
        "refresh" => refresh(node, parse(params)?).await,
        "presence" => presence(node, parse(params)?).await,
        "presence_stats" => presence_stats(node, parse(params)?).await,
        "history" => history(node, parse(params)?).await,
        "history_remove" => history_remove(node, parse(params)?).await,
        "channels" => channels(node, parse(params)?).await,
        "info" => info(node).await,
        "rpc" => rpc(parse(params)?),
        "user_status" => user_status(node, parse(params)?).await,
        "batch" => Box::pin(batch(node, scope, parse(params)?)).await,
        _ => Err(ClientError::METHOD_NOT_FOUND.into()),
    }
}

async fn publish_one(
    node: &Node,
    channel: &str,
    fields: &requests::PublishFields<'_>,
) -> Result<Value, ClientError> {
    require_channel(channel)?;
    let data = payload(fields.data, fields.b64data)?;
    if data.is_empty() {
        return Err(ClientError::BAD_REQUEST.with_message("data is required"));
    }
    let exclude = match fields.exclude {
        Some(e) => e.exclusion()?.to_field(),
        None => String::new(),
    };
    let config = node.config.load();
    let rules = config.channel_rules(channel)?;
    rules.check_data(&data)?;
    let publication = Publication {
        data,
        tags: fields.tags.clone(),
        exclude,
        ..Default::default()
    };
    let extras = PublishExtras {
        idempotency_key: (!fields.idempotency_key.is_empty())
            .then(|| fields.idempotency_key.to_owned()),
        skip_history: fields.skip_history,
        version: fields.version,
        version_epoch: fields.version_epoch.to_owned(),
        delta: fields.delta,
    };
    let pos = node
        .publish(&config, &rules, channel, publication, extras)
        .await
        .map_err(ClientError::from)?;
    let mut out = Map::new();
    if pos.offset > 0 {
        out.insert("offset".into(), json!(pos.offset));
    }
    if !pos.epoch.is_empty() {
        out.insert("epoch".into(), json!(pos.epoch));
    }
    Ok(Value::Object(out))
}

async fn publish(node: &Node, req: requests::Publish) -> Result<Value, ApiError> {
    Ok(publish_one(node, &req.channel, &req.fields()).await?)
}

async fn broadcast(node: &Node, req: requests::Broadcast) -> Result<Value, ApiError> {
    if req.channels.is_empty() {
        return Err(ClientError::BAD_REQUEST
            .with_message("channels are required")
            .into());
    }
    let fields = req.fields();
    let data = payload(fields.data, fields.b64data)?;
    if data.is_empty() {
        return Err(ClientError::BAD_REQUEST
            .with_message("data is required")
            .into());
    }
    if let Some(e) = fields.exclude {
        e.exclusion()?;
    }
    let mut responses = Vec::with_capacity(req.channels.len());
    for channel in &req.channels {
        responses.push(match publish_one(node, channel, &fields).await {
            Ok(r) => json!({"result": r}),
            Err(e) => json!({"error": error_json(&e)}),
        });
    }
    Ok(json!({"responses": responses}))
}

/// Sends a targeted operation to every node of the tenant (this one included).
async fn to_every_node(node: &Node, control: ClusterControl) -> Result<Value, ApiError> {
    node.broadcast_control(&control).await?;
    Ok(json!({}))
}

async fn subscribe(node: &Node, req: requests::Subscribe) -> Result<Value, ApiError> {
    require_channel(&req.channel)?;
    node.config.load().channel_rules(&req.channel)?;
    let control = ClusterControl::Subscribe {
        user: req.user.clone(),
        client: req.client.clone(),
        session: req.session.clone(),
        channel: req.channel.clone(),
        info: payload(&req.info, &req.b64info)?.to_vec(),
        data: payload(&req.data, &req.b64data)?.to_vec(),
        expire_at: req.expire_at,
        recover_since: req.recover_since.clone(),
        overrides: req.overrides.clone(),
    };
    to_every_node(node, control).await
}

async fn unsubscribe(node: &Node, req: requests::Unsubscribe) -> Result<Value, ApiError> {
    to_every_node(
        node,
        ClusterControl::Unsubscribe {
            user: req.user,
            client: req.client,
            session: req.session,
            channel: req.channel,
        },
    )
    .await
}

async fn disconnect(node: &Node, req: requests::Disconnect) -> Result<Value, ApiError> {
    let (code, reason) = match &req.disconnect {
        Some(d) if d.code > 0 => {
            if d.reason.len() > 123 {
                return Err(ClientError::BAD_REQUEST
                    .with_message("disconnect reason is too long")
                    .into());
            }
            (d.code, d.reason.clone())
        }
        _ => (0, String::new()),
    };
    to_every_node(
        node,
        ClusterControl::Disconnect {
            user: req.user,
            client: req.client,
            session: req.session,
            whitelist: req.whitelist,
            code,
            reason,
        },
    )
    .await
}

async fn refresh(node: &Node, req: requests::Refresh) -> Result<Value, ApiError> {
    let info = payload(&req.info, &req.b64info)?.to_vec();
    to_every_node(
        node,
        ClusterControl::Refresh {
            user: req.user,
            client: req.client,
            session: req.session,
            expired: req.expired,
            expire_at: req.expire_at,
            info,
        },
    )
    .await
}

async fn presence(node: &Node, req: requests::Channel) -> Result<Value, ApiError> {
    require_channel(&req.channel)?;
    let rules = node.config.load().channel_rules(&req.channel)?;
    if !rules.options.presence {
        return Err(ClientError::NOT_AVAILABLE.into());
    }
    let presence = node.presence.presence(&req.channel).await?;
    let presence: HashMap<String, Value> = presence
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_value(&v).unwrap_or(Value::Null)))
        .collect();
    Ok(json!({"presence": presence}))
}

async fn presence_stats(node: &Node, req: requests::Channel) -> Result<Value, ApiError> {
    require_channel(&req.channel)?;
    let rules = node.config.load().channel_rules(&req.channel)?;
    if !rules.options.presence {
        return Err(ClientError::NOT_AVAILABLE.into());
    }
    let (num_clients, num_users) = node.presence.presence_stats(&req.channel).await?;
    Ok(json!({"num_clients": num_clients, "num_users": num_users}))
}

/// A stored publication as API JSON: raw JSON `data`, or `b64data` for binary payloads.
fn publication_json(p: &Publication) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_else(|_| {
        use base64::Engine as _;
        let mut stripped = p.clone();
        stripped.data = Default::default();
        let mut v = serde_json::to_value(&stripped).unwrap_or_else(|_| json!({}));
        v["b64data"] = json!(base64::engine::general_purpose::STANDARD.encode(&p.data));
        v
    });
    if let Some(obj) = v.as_object_mut() {
        obj.remove("channel");
    }
    v
}

async fn history(node: &Node, req: requests::History) -> Result<Value, ApiError> {
    require_channel(&req.channel)?;
    let config = node.config.load();
    let rules = config.channel_rules(&req.channel)?;
    if !rules.options.history_enabled() {
        return Err(ClientError::NOT_AVAILABLE.into());
    }
    if req.reverse && req.since.as_ref().is_some_and(|s| s.offset == 0) {
        return Err(ClientError::BAD_REQUEST
            .with_message("reverse history needs since.offset")
            .into());
    }
    let filter = HistoryFilter {
        since: req.since.clone(),
        limit: req.limit,
        reverse: req.reverse,
        meta_ttl: meta_ttl(&config, &rules),
    };
    let page = node.broker.history(&req.channel, filter).await?;
    let publications: Vec<Value> = page.publications.iter().map(publication_json).collect();
    Ok(json!({"publications": publications, "epoch": page.top.epoch, "offset": page.top.offset}))
}

async fn history_remove(node: &Node, req: requests::Channel) -> Result<Value, ApiError> {
    require_channel(&req.channel)?;
    let rules = node.config.load().channel_rules(&req.channel)?;
    if !rules.options.history_enabled() {
        return Err(ClientError::NOT_AVAILABLE.into());
    }
    node.broker.remove_history(&req.channel).await?;
    Ok(json!({}))
}

/// `*` any run, `?` one character. Iterative, backtracking only to the last `*`: time is
/// O(text² + pattern) and the stack constant whatever the pattern (a recursive matcher was
/// exponential in the number of `*` and recursed once per pattern byte, so one `channels` call
/// with a crafted pattern could hold a runtime thread for hours or overflow its stack).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*` seen: its pattern index + 1, and the text index that
    // `*` currently extends to.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, t));
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, matched)) => {
                    p = after_star;
                    t = matched + 1;
                    resume = Some((after_star, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Asks every live node (this one included) and collects their answers: a survey over the
/// engine, one second at most; nodes that do not answer in time are left out.
async fn survey(node: &Node, what: &str) -> Result<Vec<Value>, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let mut replies = node.cluster.open_survey(&id);
    let expected = node.cluster.live_nodes().len().max(1);
    let sent = to_every_node(
        node,
        ClusterControl::Survey {
            id: id.clone(),
            from: node.id.clone(),
            what: what.to_owned(),
        },
    )
    .await;
    let mut out = Vec::with_capacity(expected);
    if sent.is_ok() {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        while out.len() < expected {
            match tokio::time::timeout_at(deadline, replies.recv()).await {
                Ok(Some(v)) => out.push(v),
                _ => break,
            }
        }
    }
    node.cluster.close_survey(&id);
    sent?;
    Ok(out)
}

/// Channels with subscribers on every node of the tenant.
async fn channels(node: &Node, req: requests::Channels) -> Result<Value, ApiError> {
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for reply in survey(node, "channels").await? {
        if let Value::Object(map) = reply {
            for (name, n) in map {
                *counts.entry(name).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    let pattern = req.pattern.as_bytes();
    let channels: Map<String, Value> = counts
        .into_iter()
        .filter(|(name, _)| pattern.is_empty() || glob(pattern, name.as_bytes()))
        .map(|(name, n)| (name, json!({"num_clients": n})))
        .collect();
    Ok(json!({"channels": channels}))
}

/// Every live node's `info`, this node first.
async fn info(node: &Node) -> Result<Value, ApiError> {
    let mut nodes: Vec<Value> = survey(node, "info")
        .await?
        .into_iter()
        .filter(|n| n["uid"] != json!(node.id))
        .collect();
    nodes.insert(0, node.info());
    Ok(json!({"nodes": nodes}))
}

fn rpc(req: requests::Rpc) -> Result<Value, ApiError> {
    if req.method.is_empty() {
        return Err(ClientError::BAD_REQUEST
            .with_message("method is required")
            .into());
    }
    // No RPC handler is configured on this node.
    Err(ClientError::NOT_AVAILABLE.into())
}

/// `user_status`: whether each user is online now, with how many connections, and when it was
/// last seen, in the order asked (see [`crate::user_status`]).
async fn user_status(node: &Node, req: requests::UserStatus) -> Result<Value, ApiError> {
    use crate::user_status::MAX_USERS_PER_CALL;
    if !node.config.load().tenant.user_status.enabled {
        return Err(ClientError::NOT_AVAILABLE
            .with_message("user status is off: set user_status.enabled (hosted: the project setting user_status.enabled)")
            .into());
    }
    if req.users.is_empty() || req.users.len() > MAX_USERS_PER_CALL {
        return Err(ClientError::BAD_REQUEST
            .with_message(format!(
                "users must list 1 to {MAX_USERS_PER_CALL} user ids, got {}",
                req.users.len()
            ))
            .into());
    }
    if let Some(i) = req.users.iter().position(String::is_empty) {
        return Err(ClientError::BAD_REQUEST
            .with_message(format!(
                "users[{i}] is empty: the anonymous user has no status"
            ))
            .into());
    }
    let statuses = node.user_status.query(node, &req.users).await?;
    Ok(json!({ "statuses": statuses }))
}

/// How many commands of a `parallel` batch run at once (Centrifugo allows 1024; Rotor keeps a
/// tenant's one request from holding more engine calls than this in flight).
const BATCH_PARALLELISM: usize = 64;

/// One command of a batch: `{"<method>": {…}}` → `{"<method>": result}` or `{"error": …}`.
async fn batch_command(
    node: &Node,
    scope: ApiKeyScope,
    command: HashMap<String, Box<serde_json::value::RawValue>>,
) -> Value {
    let mut entries = command.into_iter();
    match (entries.next(), entries.next()) {
        (Some((method, _)), None)
            if METHODS.contains(&method.as_str()) && !scope.allows(&method) =>
        {
            json!({"error": error_json(&ClientError::PERMISSION_DENIED)})
        }
        (Some((method, params)), None)
            if method != "batch" && METHODS.contains(&method.as_str()) =>
        {
            node.metrics.api_calls.inc(method.as_str());
            match execute(node, scope, &method, params.get()).await {
                Ok(v) => json!({ method: v }),
                Err(ApiError::Client(e)) => json!({"error": error_json(&e)}),
                Err(ApiError::BadRequest(m)) => {
                    json!({"error": error_json(&ClientError::BAD_REQUEST.with_message(m))})
                }
            }
        }
        _ => json!({"error": error_json(&ClientError::METHOD_NOT_FOUND)}),
    }
}

/// `batch`: the commands one after another, or with `parallel` up to [`BATCH_PARALLELISM`]
/// at once; either way the replies are in the order of the commands.
async fn batch(node: &Node, scope: ApiKeyScope, req: requests::Batch) -> Result<Value, ApiError> {
    use futures_util::StreamExt as _;
    let replies: Vec<Value> = if req.parallel {
        futures_util::stream::iter(req.commands)
            .map(|command| batch_command(node, scope, command))
            .buffered(BATCH_PARALLELISM)
            .collect()
            .await
    } else {
        let mut replies = Vec::with_capacity(req.commands.len());
        for command in req.commands {
            replies.push(batch_command(node, scope, command).await);
        }
        replies
    };
    Ok(json!({"replies": replies}))
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn channel_patterns_match_like_globs() {
        assert!(glob(b"chat:*", b"chat:room"));
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"ch?t", b"chat"));
        assert!(!glob(b"chat:*", b"news"));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(glob(b"", b""));
        assert!(!glob(b"", b"a"));
        assert!(glob(b"**", b""));
        assert!(!glob(b"?", b""));
        assert!(glob(b"*a", b"aaa"));
        assert!(!glob(b"*a", b"aab"));
        assert!(glob(b"a*?c", b"abxc"));
        assert!(!glob(b"a*?c", b"ac"));
        assert!(glob(b"*ab*ab", b"xabyabab"));
        assert!(!glob(b"chat:?", b"chat:"));
    }

    /// The straightforward recursive definition, for small inputs only.
    fn reference(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                reference(&pattern[1..], text)
                    || (!text.is_empty() && reference(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => reference(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => reference(&pattern[1..], &text[1..]),
            _ => false,
        }
    }

    fn words(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max_len {
            last = last
                .iter()
                .flat_map(|w| alphabet.iter().map(move |&c| [w.as_slice(), &[c]].concat()))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn matches_the_recursive_definition_on_every_small_input() {
        let texts = words(b"ab", 5);
        for pattern in words(b"ab*?", 5) {
            for text in &texts {
                assert_eq!(
                    glob(&pattern, text),
                    reference(&pattern, text),
                    "{:?} vs {:?}",
                    String::from_utf8_lossy(&pattern),
                    String::from_utf8_lossy(text)
                );
            }
        }
    }

    /// A `channels` pattern the `api_body` fuzz target timed out on: the recursive matcher took
    /// exponential time in the number of `*` (and recursed once per pattern byte).
    #[test]
    fn pathological_patterns_finish_at_once() {
        let text = [b'a'; 255];
        let started = std::time::Instant::now();
        assert!(!glob(b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", &text));
        assert!(glob(&[b'*'; 1 << 20], &text));
        let mut long = vec![b'*'; 1 << 20];
        long.push(b'b');
        assert!(!glob(&long, &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
