//! JSON client-protocol frames: newline-delimited commands. Beyond "no panic": a frame that
//! decodes re-encodes (JSON and Protobuf) to commands that decode back to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use rotor_data_plane::protocol::{decode_commands, ProtocolKind};

/// `decode_commands`' bound on commands per frame.
const MAX_COMMANDS_PER_FRAME: usize = 1024;

fuzz_target!(|frame: &[u8]| {
    let Ok(commands) = decode_commands(ProtocolKind::Json, frame) else {
        return;
    };
    assert!(!commands.is_empty() && commands.len() <= MAX_COMMANDS_PER_FRAME);

    // JSON round trip: one line per command, each line free of the frame delimiter.
    let mut json = Vec::new();
    for command in &commands {
        let line = serde_json::to_vec(command).expect("a decoded JSON command re-encodes");
        assert!(!line.contains(&b'\n'), "an encoded command spans lines");
        json.extend_from_slice(&line);
        json.push(b'\n');
    }
    let again = decode_commands(ProtocolKind::Json, &json).expect("re-encoded frame decodes");
    assert_eq!(commands, again, "JSON round trip changed the commands");

    // The same commands over the Protobuf framing decode to the same values.
    let mut proto = Vec::new();
    for command in &commands {
        command
            .encode_length_delimited(&mut proto)
            .expect("Vec grows");
    }
    let again = decode_commands(ProtocolKind::Protobuf, &proto).expect("Protobuf frame decodes");
    assert_eq!(commands, again, "JSON → Protobuf changed the commands");
});
