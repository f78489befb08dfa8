//! The names of the transports a client connects over, as Centrifugo spells them: they reach
//! users and backends in proxy requests (`transport`) and label metrics by transport.

use serde::{Serialize, Serializer};

/// Which transport carries a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TransportName {
    /// Bidirectional WebSocket (`/connection/websocket`), JSON or Protobuf.
    WebSocket,
    /// Bidirectional emulation over an HTTP streaming response (`/connection/http_stream`).
    HttpStream,
    /// Bidirectional emulation over EventSource (`/connection/sse`).
    Sse,
    /// Push-only WebSocket (`/connection/uni_websocket`).
    UniWebSocket,
    /// Push-only EventSource (`/connection/uni_sse`).
    UniSse,
    /// Push-only HTTP streaming response (`/connection/uni_http_stream`).
    UniHttpStream,
}

impl TransportName {
    /// How many transports there are.
    pub const COUNT: usize = 6;

    /// Every transport, in index order (see [`TransportName::index`]).
    pub const ALL: [TransportName; Self::COUNT] = [
        TransportName::WebSocket,
        TransportName::HttpStream,
        TransportName::Sse,
        TransportName::UniWebSocket,
        TransportName::UniSse,
        TransportName::UniHttpStream,
    ];

    /// The name Centrifugo gives the transport.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportName::WebSocket => "websocket",
            TransportName::HttpStream => "http_stream",
            TransportName::Sse => "sse",
            TransportName::UniWebSocket => "uni_websocket",
            TransportName::UniSse => "uni_sse",
            TransportName::UniHttpStream => "uni_http_stream",
        }
    }

    /// The transport's position in [`TransportName::ALL`] (for arrays of counters).
    pub const fn index(self) -> u8 {
        self as u8
    }

    /// Push-only: the client sends one connect request and then only listens.
    pub const fn is_unidirectional(self) -> bool {
        matches!(
            self,
            TransportName::UniWebSocket | TransportName::UniSse | TransportName::UniHttpStream
        )
    }

    /// Bidirectional emulation: commands after the first arrive through `/emulation`.
    pub const fn is_emulation(self) -> bool {
        matches!(self, TransportName::HttpStream | TransportName::Sse)
    }
}

impl std::fmt::Display for TransportName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TransportName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_serialise_as_centrifugo_spells_them_in_index_order() {
        let names: Vec<String> = TransportName::ALL
            .iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "\"websocket\"",
                "\"http_stream\"",
                "\"sse\"",
                "\"uni_websocket\"",
                "\"uni_sse\"",
                "\"uni_http_stream\""
            ]
        );
        for (i, t) in TransportName::ALL.iter().enumerate() {
            assert_eq!(usize::from(t.index()), i);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert!(TransportName::UniSse.is_unidirectional());
        assert!(!TransportName::Sse.is_unidirectional());
        assert!(TransportName::Sse.is_emulation());
        assert!(!TransportName::WebSocket.is_emulation());
    }
}
