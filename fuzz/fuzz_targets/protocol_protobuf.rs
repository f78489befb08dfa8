//! Protobuf client-protocol frames: varint length-prefixed commands. Beyond "no panic": what
//! decodes re-encodes and decodes to the same commands; the same bytes read as a server reply
//! encode for both protocols without panicking, and a JSON reply is one line of valid JSON
//! (the frame writer joins replies with `\n`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use rotor_data_plane::protocol::{decode_commands, encode_reply, ProtocolKind, Reply};
use serde_json::value::RawValue;

fuzz_target!(|frame: &[u8]| {
    if let Ok(commands) = decode_commands(ProtocolKind::Protobuf, frame) {
        assert!(!commands.is_empty() && commands.len() <= 1024);
        let mut proto = Vec::new();
        for command in &commands {
            command
                .encode_length_delimited(&mut proto)
                .expect("Vec grows");
        }
        let again = decode_commands(ProtocolKind::Protobuf, &proto).expect("re-encoded frame");
        assert_eq!(commands, again, "Protobuf round trip changed the commands");
        // Binary payloads cannot be JSON; anything else that encodes must decode as JSON.
        for command in &commands {
            if let Ok(line) = serde_json::to_vec(command) {
                assert!(!line.contains(&b'\n'), "an encoded command spans lines");
                decode_commands(ProtocolKind::Json, &line).expect("encoded JSON command decodes");
            }
        }
    }

    // The server side of the codec: replies (what a push built from client data looks like).
    let mut buf = frame;
    if let Ok(reply) = Reply::decode_length_delimited(&mut buf) {
        let proto = encode_reply(ProtocolKind::Protobuf, &reply).expect("Protobuf always encodes");
        let back = Reply::decode_length_delimited(&proto[..]).expect("encoded reply decodes");
        assert_eq!(reply, back, "reply round trip changed it");
        if let Ok(json) = encode_reply(ProtocolKind::Json, &reply) {
            assert!(!json.contains(&b'\n'), "a JSON reply spans lines");
            // Syntax only: payloads are relayed verbatim, and JSON has no range for numbers
            // (`3e999` is JSON; it is the reader's business, as with Centrifugo).
            serde_json::from_slice::<Box<RawValue>>(&json).expect("a JSON reply is JSON");
        }
    }
});
