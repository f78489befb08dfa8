//! Wire codecs. One WebSocket message may carry several commands (JSON: `\n`-joined objects;
//! Protobuf: varint length-prefixed messages), and the server batches its replies the same
//! way. Encoded replies here are self-contained frame elements: JSON without the trailing
//! newline, Protobuf *with* its length prefix, so the writer only concatenates.

use bytes::{Buf, Bytes};
use prost::Message as _;

use super::{Command, Reply};

/// The format of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolKind {
    Json,
    Protobuf,
}

impl ProtocolKind {
    /// Name used in logs, metrics and proxy requests.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolKind::Json => "json",
            ProtocolKind::Protobuf => "protobuf",
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty frame")]
    Empty,
    #[error("malformed JSON command: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed Protobuf command: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("a frame may carry at most {0} commands")]
    TooManyCommands(usize),
}

/// Most commands one frame may carry (bounds the work one message can cause).
pub const MAX_COMMANDS_PER_FRAME: usize = 1024;

/// Splits a frame into commands.
pub fn decode_commands(kind: ProtocolKind, frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let mut out = Vec::new();
    match kind {
        ProtocolKind::Json => {
            for line in frame.split(|&b| b == b'\n') {
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                if out.len() == MAX_COMMANDS_PER_FRAME {
                    return Err(DecodeError::TooManyCommands(MAX_COMMANDS_PER_FRAME));
                }
                out.push(serde_json::from_slice(line)?);
            }
        }
        ProtocolKind::Protobuf => {
            let mut buf = frame;
            while buf.has_remaining() {
                if out.len() == MAX_COMMANDS_PER_FRAME {
                    return Err(DecodeError::TooManyCommands(MAX_COMMANDS_PER_FRAME));
                }
                out.push(Command::decode_length_delimited(&mut buf)?);
            }
        }
    }
    if out.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(out)
}

/// Encodes one reply or push as a frame element. Fails only when a JSON connection is handed
/// a payload that is not JSON.
pub fn encode_reply(kind: ProtocolKind, reply: &Reply) -> Result<Bytes, serde_json::Error> {
    match kind {
        ProtocolKind::Json => serde_json::to_vec(reply).map(Bytes::from),
        ProtocolKind::Protobuf => Ok(Bytes::from(reply.encode_length_delimited_to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::*;

    #[test]
    fn a_json_frame_with_connect_and_subscribe_decodes_in_order() {
        let frame = br#"{"connect":{"token":"t","name":"js","flag":1},"id":1}
{"subscribe":{"channel":"room:7","flag":1,"tf":{"x":1}},"id":2}
"#;
        let cmds = decode_commands(ProtocolKind::Json, frame).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].id, 1);
        assert_eq!(cmds[0].connect.as_ref().unwrap().token, "t");
        assert_eq!(cmds[1].subscribe.as_ref().unwrap().channel, "room:7");
    }

    #[test]
    fn json_payloads_stay_raw_json_both_ways() {
        let cmds = decode_commands(
            ProtocolKind::Json,
            br#"{"id":3,"publish":{"channel":"c","data":{"text":"hi","n":[1,2]}}}"#,
        )
        .unwrap();
        let data = &cmds[0].publish.as_ref().unwrap().data;
        assert_eq!(&data[..], br#"{"text":"hi","n":[1,2]}"#);
        let reply = Reply {
            push: Some(Push {
                channel: "c".into(),
                r#pub: Some(Publication {
                    data: Bytes::from_static(b"{\n\"a\": 1}"),
                    offset: 4,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = encode_reply(ProtocolKind::Json, &reply).unwrap();
        assert_eq!(
            &out[..],
            br#"{"push":{"channel":"c","pub":{"data":{ "a": 1},"offset":4}}}"#
        );
    }

    #[test]
    fn empty_results_are_still_present_and_pings_are_empty_objects() {
        let reply = Reply {
            id: 3,
            publish: Some(PublishResult {}),
            ..Default::default()
        };
        assert_eq!(
            &encode_reply(ProtocolKind::Json, &reply).unwrap()[..],
            br#"{"id":3,"publish":{}}"#
        );
        assert_eq!(
            &encode_reply(ProtocolKind::Json, &Reply::default()).unwrap()[..],
            b"{}"
        );
        assert_eq!(
            &encode_reply(ProtocolKind::Protobuf, &Reply::default()).unwrap()[..],
            b"\x00"
        );
    }

    #[test]
    fn presence_stats_and_history_always_carry_their_fields() {
        let reply = Reply {
            id: 1,
            presence_stats: Some(PresenceStatsResult::default()),
            ..Default::default()
        };
        assert_eq!(
            &encode_reply(ProtocolKind::Json, &reply).unwrap()[..],
            br#"{"id":1,"presence_stats":{"num_clients":0,"num_users":0}}"#
        );
        let reply = Reply {
            id: 2,
            history: Some(HistoryResult::default()),
            ..Default::default()
        };
        assert_eq!(
            &encode_reply(ProtocolKind::Json, &reply).unwrap()[..],
            br#"{"id":2,"history":{"publications":[],"epoch":"","offset":0}}"#
        );
    }

    #[test]
    fn protobuf_frames_are_varint_delimited_both_ways() {
        let a = Command {
            id: 1,
            connect: Some(ConnectRequest {
                name: "js".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let b = Command {
            id: 0,
            ..Default::default()
        };
        let mut frame = a.encode_length_delimited_to_vec();
        frame.extend(b.encode_length_delimited_to_vec());
        let cmds = decode_commands(ProtocolKind::Protobuf, &frame).unwrap();
        assert_eq!(cmds, vec![a, b]);
    }

    #[test]
    fn binary_payload_cannot_be_encoded_as_json() {
        let reply = Reply {
            push: Some(Push {
                r#pub: Some(Publication {
                    data: Bytes::from_static(&[0xff, 0x00]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(encode_reply(ProtocolKind::Json, &reply).is_err());
        assert!(encode_reply(ProtocolKind::Protobuf, &reply).is_ok());
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(decode_commands(ProtocolKind::Json, b"{not json").is_err());
        assert!(decode_commands(ProtocolKind::Json, b"\n\n").is_err());
        assert!(decode_commands(ProtocolKind::Protobuf, &[0xff, 0xff, 0xff]).is_err());
        assert!(decode_commands(ProtocolKind::Json, br#"{"id":"x"}"#).is_err());
    }
}
