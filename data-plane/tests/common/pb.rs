//! A raw Protobuf-protocol WebSocket client (`centrifuge-protobuf`) that keeps every byte the
//! server sent, so a test can check what reached the wire as well as what it decodes to.

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rotor_data_plane::protocol::{Command, Reply};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct PbClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    replies: VecDeque<Reply>,
    /// Every byte received so far.
    pub raw: Vec<u8>,
}

impl PbClient {
    pub async fn open(url: &str) -> Self {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "centrifuge-protobuf".parse().unwrap(),
        );
        let (ws, _) = tokio::time::timeout(super::WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect timeout")
            .expect("connect");
        Self {
            ws,
            replies: VecDeque::new(),
            raw: Vec::new(),
        }
    }

    /// Sends commands in one frame.
    pub async fn send(&mut self, cmds: &[Command]) {
        let mut frame = Vec::new();
        for cmd in cmds {
            cmd.encode_length_delimited(&mut frame).unwrap();
        }
        self.ws.send(Message::binary(frame)).await.unwrap();
    }

    /// Sends one command and waits for its reply (earlier replies and pushes are dropped).
    pub async fn call(&mut self, cmd: Command) -> Reply {
        let id = cmd.id;
        self.send(&[cmd]).await;
        loop {
            let r = self.next().await;
            if r.id == id {
                return r;
            }
        }
    }

    /// The next reply or push, reading (and splitting) WebSocket messages as needed.
    pub async fn next(&mut self) -> Reply {
        loop {
            if let Some(r) = self.replies.pop_front() {
                return r;
            }
            let msg = tokio::time::timeout(super::WAIT, self.ws.next())
                .await
                .expect("timed out")
                .expect("open")
                .expect("ok");
            let bytes = msg.into_data();
            self.raw.extend_from_slice(&bytes);
            let mut buf = &bytes[..];
            while !buf.is_empty() {
                self.replies
                    .push_back(Reply::decode_length_delimited(&mut buf).unwrap());
            }
        }
    }
}
