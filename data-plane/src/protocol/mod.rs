//! Client protocol v2: the messages, their JSON and Protobuf encodings, batching, and the
//! error and disconnect codes.

mod codec;
mod codes;
mod messages;
pub mod raw;
mod transport;

pub use codec::{decode_commands, encode_reply, DecodeError, ProtocolKind};
pub use codes::{unsubscribe, ClientError, Disconnect};
pub use messages::*;
pub use transport::TransportName;
