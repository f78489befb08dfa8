//! Centrifugo client protocol v2 for the load generator: the connect + subscribe opening in one
//! frame (as centrifuge-js pipelines it), publish commands, and pong answers to the server's
//! empty-reply pings — in JSON (`\n`-joined text) and Protobuf (varint-delimited binary) using
//! the data plane's own prost message types.

use bytes::Bytes;
use futures_util::SinkExt;
use prost::Message as _;
use rotor_data_plane::protocol::{
    Command, ConnectRequest, PublishRequest, Reply, SubscribeRequest,
};
use tokio_tungstenite::tungstenite::Message;

use super::{next_data, ConnError, Protocol, Recorder, Ws};

fn connect_command(token: Option<&str>) -> Command {
    Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: token.unwrap_or_default().to_owned(),
            name: "rotor-loadgen".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn subscribe_command(id: u32, channel: &str) -> Command {
    Command {
        id,
        subscribe: Some(SubscribeRequest {
            channel: channel.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Encodes commands as one frame of `protocol`.
pub fn frame(protocol: Protocol, commands: &[Command]) -> Message {
    match protocol {
        Protocol::Protobuf => {
            let mut buf = Vec::new();
            for c in commands {
                buf.extend(c.encode_length_delimited_to_vec());
            }
            Message::Binary(Bytes::from(buf))
        }
        _ => {
            let lines: Vec<String> = commands
                .iter()
                .map(|c| serde_json::to_string(c).unwrap_or_default())
                .collect();
            Message::text(lines.join("\n"))
        }
    }
}

/// A publish command with a JSON payload.
pub fn publish(protocol: Protocol, id: u32, channel: &str, payload: &str) -> Message {
    let cmd = Command {
        id,
        publish: Some(PublishRequest {
            channel: channel.to_owned(),
            data: Bytes::copy_from_slice(payload.as_bytes()),
        }),
        ..Default::default()
    };
    frame(protocol, &[cmd])
}

/// One element of a server frame, as far as the load generator cares.
enum Element {
    Ping,
    Reply { id: u32, error: Option<String> },
    Push,
}

fn classify_json(line: &str) -> Result<Element, ConnError> {
    let line = line.trim();
    if line == "{}" {
        return Ok(Element::Ping);
    }
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| ConnError::Protocol(e.to_string()))?;
    let id = v.get("id").and_then(|i| i.as_u64()).unwrap_or(0) as u32;
    if id == 0 {
        return Ok(Element::Push);
    }
    let error = v.get("error").map(|e| e.to_string());
    Ok(Element::Reply { id, error })
}

fn classify_protobuf(frame: &[u8]) -> Result<Vec<Element>, ConnError> {
    let mut buf = frame;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let reply = Reply::decode_length_delimited(&mut buf)
            .map_err(|e| ConnError::Protocol(e.to_string()))?;
        out.push(if reply.id != 0 {
            Element::Reply {
                id: reply.id,
                error: reply.error.map(|e| format!("{} {}", e.code, e.message)),
            }
        } else if reply.push.is_some() {
            Element::Push
        } else {
            Element::Ping
        });
    }
    Ok(out)
}

/// Sends connect plus one subscribe per channel in one frame and waits for every reply.
pub async fn handshake(
    ws: &mut Ws,
    protocol: Protocol,
    token: Option<&str>,
    channels: &[String],
    rec: &mut impl Recorder,
) -> Result<(), ConnError> {
    let mut commands = vec![connect_command(token)];
    for (i, ch) in channels.iter().enumerate() {
        commands.push(subscribe_command(i as u32 + 2, ch));
    }
    ws.send(frame(protocol, &commands)).await?;
    let mut pending = commands.len();
    while pending > 0 {
        let msg = next_data(ws).await?;
        let now = crate::payload::now_micros();
        let elements = match &msg {
            Message::Text(t) => {
                let mut v = Vec::new();
                for line in t.as_str().split('\n').filter(|l| !l.trim().is_empty()) {
                    v.push(classify_json(line)?);
                }
                v
            }
            Message::Binary(b) => classify_protobuf(b)?,
            _ => Vec::new(),
        };
        let mut pushes = false;
        for el in elements {
            match el {
                Element::Ping => ws.send(pong(protocol)).await?,
                Element::Reply { error: Some(e), .. } => return Err(ConnError::Refused(e)),
                Element::Reply { id, error: None } => {
                    if id as usize <= commands.len() {
                        pending -= 1;
                    }
                }
                Element::Push => pushes = true,
            }
        }
        if pushes {
            match &msg {
                Message::Text(t) => rec.frame(t.as_bytes(), now),
                Message::Binary(b) => rec.frame(b, now),
                _ => {}
            }
        }
    }
    Ok(())
}

fn pong(protocol: Protocol) -> Message {
    match protocol {
        Protocol::Protobuf => Message::Binary(Bytes::from_static(&[0])),
        _ => Message::text("{}"),
    }
}

/// True when a varint-delimited frame holds an empty element (a ping).
fn protobuf_has_empty_element(mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        let Ok(len) = prost::encoding::decode_varint(&mut buf) else {
            return false;
        };
        if len == 0 {
            return true;
        }
        let Some(rest) = buf.get(len as usize..) else {
            return false;
        };
        buf = rest;
    }
    false
}

/// The pong for a frame that carries a ping.
pub fn pong_for(protocol: Protocol, msg: &Message) -> Option<Message> {
    let ping = match msg {
        Message::Text(t) => t.as_str().split('\n').any(|l| l.trim() == "{}"),
        Message::Binary(b) => protobuf_has_empty_element(b),
        _ => false,
    };
    ping.then(|| pong(protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_frame_is_connect_then_subscribes() {
        let cmds = [connect_command(Some("tok")), subscribe_command(2, "b0")];
        let Message::Text(t) = frame(Protocol::Json, &cmds) else {
            panic!("json is text")
        };
        assert_eq!(
            t.as_str(),
            "{\"id\":1,\"connect\":{\"token\":\"tok\",\"name\":\"rotor-loadgen\"}}\n\
             {\"id\":2,\"subscribe\":{\"channel\":\"b0\"}}"
        );
        let Message::Binary(b) = frame(Protocol::Protobuf, &cmds) else {
            panic!("protobuf is binary")
        };
        let decoded = rotor_data_plane::protocol::decode_commands(
            rotor_data_plane::protocol::ProtocolKind::Protobuf,
            &b,
        )
        .unwrap();
        assert_eq!(decoded[1].subscribe.as_ref().unwrap().channel, "b0");
    }

    #[test]
    fn pings_are_found_in_batched_frames() {
        let m = Message::text("{\"push\":{}}\n{}");
        assert!(pong_for(Protocol::Json, &m).is_some());
        assert!(pong_for(Protocol::Json, &Message::text("{\"push\":{}}")).is_none());
        let push = Reply {
            push: Some(Default::default()),
            ..Default::default()
        }
        .encode_length_delimited_to_vec();
        let mut both = push.clone();
        both.push(0);
        assert!(pong_for(Protocol::Protobuf, &Message::Binary(both.into())).is_some());
        assert!(pong_for(Protocol::Protobuf, &Message::Binary(push.into())).is_none());
    }

    #[test]
    fn a_protobuf_publish_carries_the_payload_verbatim() {
        let p = crate::payload::make_at(42, 3, 64);
        let Message::Binary(b) = publish(Protocol::Protobuf, 9, "b0", &p) else {
            panic!("binary")
        };
        assert_eq!(crate::payload::find(&b), Some((42, 3)));
    }
}
