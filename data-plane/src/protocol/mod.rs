//! Client protocol v2: the messages, their JSON and Protobuf encodings, batching, and the
//! error and disconnect codes.

mod api_methods;
mod codec;
mod codes;
mod messages;
mod overrides;
pub(crate) mod raw;
mod transport;

pub use api_methods::API_METHODS;
pub use codec::{decode_commands, encode_reply, DecodeError, ProtocolKind};
pub use codes::{unsubscribe, ClientError, Disconnect};
pub use messages::*;
pub use overrides::{BoolValue, Override};
pub use transport::TransportName;
