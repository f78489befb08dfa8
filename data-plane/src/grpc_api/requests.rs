//! gRPC request messages → the JSON requests of the one server API executor
//! ([`crate::api::call_scoped`]), field by field under Centrifugo's JSON names. Payloads keep
//! their bytes: JSON text is passed through verbatim (key order and numbers untouched), any
//! other bytes go as base64 (`b64data`/`b64info`), as a binary publication over HTTP would.

use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;

use super::proto;

/// A JSON object built field by field, payloads kept as raw JSON text.
#[derive(Default)]
pub(super) struct Params(Vec<(&'static str, Box<RawValue>)>);

impl Params {
    /// Sets `key` to `value` unless it is its type's default (Centrifugo's JSON leaves those
    /// out too, and the executor reads a missing field as the default).
    fn set<T: Serialize + Default + PartialEq>(&mut self, key: &'static str, value: &T) {
        if *value != T::default() {
            self.set_always(key, value);
        }
    }

    fn set_always<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        if let Ok(raw) = serde_json::value::to_raw_value(value) {
            self.0.push((key, raw));
        }
    }

    /// A payload: JSON text under `json_key`, other bytes as base64 under `b64_key`; an
    /// explicit base64 string wins, as in the HTTP API.
    fn payload(&mut self, json_key: &'static str, b64_key: &'static str, bytes: &[u8], b64: &str) {
        if !b64.is_empty() {
            self.set_always(b64_key, b64);
            return;
        }
        if bytes.is_empty() {
            return;
        }
        let raw = std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| RawValue::from_string(text.trim().to_owned()).ok());
        match raw {
            Some(raw) => self.0.push((json_key, raw)),
            None => self.set_always(
                b64_key,
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            ),
        }
    }

    /// The object as JSON text.
    pub(super) fn finish(self) -> String {
        let mut out = String::from("{");
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::from(*key).to_string());
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        out
    }
}

fn position(p: &Option<proto::StreamPosition>) -> Option<serde_json::Value> {
    p.as_ref()
        .map(|p| serde_json::json!({"offset": p.offset, "epoch": p.epoch}))
}

/// Rotor's `exclude` as the HTTP API takes it: the names given (proto3 strings are empty when
/// not given), so none or several are refused by the executor as over HTTP (107).
fn exclude(e: &proto::Exclude) -> serde_json::Map<String, serde_json::Value> {
    [
        ("client", &e.client),
        ("user", &e.user),
        ("session_tag", &e.session_tag),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v.as_str())))
    .collect()
}

/// The fields `publish` and `broadcast` share, after their channel(s).
macro_rules! publication_fields {
    ($p:ident, $r:ident) => {{
        $p.payload("data", "b64data", &$r.data, &$r.b64data);
        $p.set("skip_history", &$r.skip_history);
        $p.set("tags", &$r.tags);
        $p.set("idempotency_key", &$r.idempotency_key);
        $p.set("delta", &$r.delta);
        $p.set("version", &$r.version);
        $p.set("version_epoch", &$r.version_epoch);
        if let Some(e) = &$r.exclude {
            $p.set_always("exclude", &exclude(e));
        }
        $p.finish()
    }};
}

pub(super) fn publish(r: &proto::PublishRequest) -> String {
    let mut p = Params::default();
    p.set_always("channel", &r.channel);
    publication_fields!(p, r)
}

pub(super) fn broadcast(r: &proto::BroadcastRequest) -> String {
    let mut p = Params::default();
    p.set_always("channels", &r.channels);
    publication_fields!(p, r)
}

pub(super) fn subscribe(r: &proto::SubscribeRequest) -> String {
    let mut p = Params::default();
    p.set_always("channel", &r.channel);
    p.set("user", &r.user);
    p.set("expire_at", &r.expire_at);
    p.payload("info", "b64info", &r.info, &r.b64info);
    p.set("client", &r.client);
    p.payload("data", "b64data", &r.data, &r.b64data);
    if let Some(since) = position(&r.recover_since) {
        p.set_always("recover_since", &since);
    }
    if let Some(o) = &r.r#override {
        let mut fields = serde_json::Map::new();
        for (name, v) in [
            ("presence", &o.presence),
            ("join_leave", &o.join_leave),
            ("force_recovery", &o.force_recovery),
            ("force_positioning", &o.force_positioning),
            ("force_push_join_leave", &o.force_push_join_leave),
        ] {
            if let Some(v) = v {
                fields.insert(name.into(), serde_json::json!({"value": v.value}));
            }
        }
        p.set_always("override", &fields);
    }
    p.set("session", &r.session);
    p.finish()
}

pub(super) fn unsubscribe(r: &proto::UnsubscribeRequest) -> String {
    let mut p = Params::default();
    p.set_always("channel", &r.channel);
    p.set("user", &r.user);
    p.set("client", &r.client);
    p.set("session", &r.session);
    p.finish()
}

pub(super) fn disconnect(r: &proto::DisconnectRequest) -> String {
    let mut p = Params::default();
    p.set_always("user", &r.user);
    if let Some(d) = &r.disconnect {
        // A code past u16 is no disconnect code: the executor refuses it as a bad request.
        p.set_always(
            "disconnect",
            &serde_json::json!({"code": d.code, "reason": d.reason}),
        );
    }
    p.set("client", &r.client);
    p.set("whitelist", &r.whitelist);
    p.set("session", &r.session);
    p.finish()
}

pub(super) fn channel(channel: &str) -> String {
    let mut p = Params::default();
    p.set_always("channel", channel);
    p.finish()
}

pub(super) fn history(r: &proto::HistoryRequest) -> String {
    let mut p = Params::default();
    p.set_always("channel", &r.channel);
    p.set("limit", &r.limit);
    if let Some(since) = position(&r.since) {
        p.set_always("since", &since);
    }
    p.set("reverse", &r.reverse);
    p.finish()
}

pub(super) fn rpc(r: &proto::RpcRequest) -> String {
    let mut p = Params::default();
    p.set_always("method", &r.method);
    p.payload("params", "b64params", &r.params, "");
    p.finish()
}

pub(super) fn refresh(r: &proto::RefreshRequest) -> String {
    let mut p = Params::default();
    p.set_always("user", &r.user);
    p.set("client", &r.client);
    p.set("expired", &r.expired);
    p.set("expire_at", &r.expire_at);
    p.payload("info", "b64info", &r.info, "");
    p.set("session", &r.session);
    p.finish()
}

pub(super) fn channels(r: &proto::ChannelsRequest) -> String {
    let mut p = Params::default();
    p.set("pattern", &r.pattern);
    p.finish()
}

/// One command of a batch: its method and JSON request, or `None` when it sets no method
/// (answered 104, method not found, like an unknown method in a JSON batch).
pub(super) fn command(c: &proto::Command) -> Option<(&'static str, String)> {
    Some(if let Some(r) = &c.publish {
        ("publish", publish(r))
    } else if let Some(r) = &c.broadcast {
        ("broadcast", broadcast(r))
    } else if let Some(r) = &c.subscribe {
        ("subscribe", subscribe(r))
    } else if let Some(r) = &c.unsubscribe {
        ("unsubscribe", unsubscribe(r))
    } else if let Some(r) = &c.disconnect {
        ("disconnect", disconnect(r))
    } else if let Some(r) = &c.presence {
        ("presence", channel(&r.channel))
    } else if let Some(r) = &c.presence_stats {
        ("presence_stats", channel(&r.channel))
    } else if let Some(r) = &c.history {
        ("history", history(r))
    } else if let Some(r) = &c.history_remove {
        ("history_remove", channel(&r.channel))
    } else if c.info.is_some() {
        ("info", "{}".to_owned())
    } else if let Some(r) = &c.rpc {
        ("rpc", rpc(r))
    } else if let Some(r) = &c.refresh {
        ("refresh", refresh(r))
    } else if let Some(r) = &c.channels {
        ("channels", channels(r))
    } else {
        return None;
    })
}

/// A batch's JSON request: each command as `{"<method>": {…}}`, an empty one as `{}`.
pub(super) fn batch(r: &proto::BatchRequest) -> String {
    let mut out = String::from("{\"commands\":[");
    for (i, c) in r.commands.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match command(c) {
            Some((method, params)) => {
                out.push_str(&format!("{{\"{method}\":{params}}}"));
            }
            None => out.push_str("{}"),
        }
    }
    out.push_str(&format!("],\"parallel\":{}}}", r.parallel));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_pass_through_verbatim_and_binary_goes_as_base64() {
        let req = proto::PublishRequest {
            channel: "chat:1".into(),
            data: br#"{"b":1,"a":2.50}"#.to_vec(),
            ..Default::default()
        };
        assert_eq!(
            publish(&req),
            r#"{"channel":"chat:1","data":{"b":1,"a":2.50}}"#
        );
        let req = proto::PublishRequest {
            channel: "c".into(),
            data: vec![0xff, 0x00],
            tags: [("k".to_owned(), "v".to_owned())].into(),
            ..Default::default()
        };
        assert_eq!(
            publish(&req),
            r#"{"channel":"c","b64data":"/wA=","tags":{"k":"v"}}"#
        );
    }

    #[test]
    fn a_batch_names_each_command_by_its_method() {
        let req = proto::BatchRequest {
            commands: vec![
                proto::Command {
                    presence: Some(proto::PresenceRequest {
                        channel: "chat:1".into(),
                    }),
                    ..Default::default()
                },
                proto::Command::default(),
            ],
            parallel: true,
        };
        let text = batch(&req);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"commands": [{"presence": {"channel": "chat:1"}}, {}], "parallel": true})
        );
    }
}
