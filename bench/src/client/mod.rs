//! One load-generator connection: dial the WebSocket, run the protocol's opening (Centrifugo
//! connect + subscribes, Socket.IO connect, one echoed frame, or nothing for a raw peer), then
//! read until the socket closes, answering application pings and handing every received frame's
//! stamps to a recorder.

pub mod centrifugo;
pub mod socketio;

use std::time::Duration;

use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The wire protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Centrifugo client protocol v2, JSON frames.
    Json,
    /// Centrifugo client protocol v2, Protobuf frames (`centrifuge-protobuf`).
    Protobuf,
    /// Engine.IO v4 / Socket.IO v5 text framing over a plain WebSocket.
    Socketio,
    /// A raw WebSocket peer: every text frame is a payload (bare broadcast server, Nchan).
    Raw,
    /// A raw peer that answers a text frame (bare `/echo`, Nchan pubsub on the connection's
    /// own channel): the opening sends one frame and waits for the answer, the round trip a
    /// Centrifugo client's connect + subscribe makes.
    Echo,
}

impl Protocol {
    /// Name used in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Protobuf => "protobuf",
            Protocol::Socketio => "socketio",
            Protocol::Raw => "raw",
            Protocol::Echo => "echo",
        }
    }
}

/// Why a connection failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("timed out")]
    Timeout,
    #[error("refused by the server: {0}")]
    Refused(String),
    #[error("closed by the server: {0}")]
    Closed(String),
    #[error("unexpected frame: {0}")]
    Protocol(String),
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

impl ConnError {
    /// A short label to count errors by.
    pub fn kind(&self) -> String {
        match self {
            ConnError::Ws(e) => {
                let text = e.to_string();
                let short: String = text.chars().take(48).collect();
                format!("ws: {short}")
            }
            ConnError::Timeout => "timeout".into(),
            ConnError::Refused(r) => format!("refused: {}", r.chars().take(48).collect::<String>()),
            ConnError::Closed(r) => format!("closed: {}", r.chars().take(48).collect::<String>()),
            ConnError::Protocol(_) => "protocol".into(),
            ConnError::Token(_) => "token".into(),
        }
    }
}

/// What one connection needs to open.
#[derive(Debug, Clone)]
pub struct Opening<'a> {
    pub protocol: Protocol,
    /// WebSocket URL; `{channel}` is replaced by the first channel (Nchan's sub location).
    pub url: &'a str,
    /// HS256 token for Centrifugo (None: connect without token).
    pub token: Option<String>,
    /// Channels to subscribe (Centrifugo) or to put into the URL (raw).
    pub channels: &'a [String],
}

/// Receives the stamps found in frames.
pub trait Recorder {
    /// `frame` arrived at `now_us`; record its publications.
    fn frame(&mut self, frame: &[u8], now_us: u64);
}

/// The frame an [`Protocol::Echo`] opening sends: about the size of a Centrifugo connect (with
/// an HS256 token) + subscribe frame.
const ECHO_OPENING: &str = concat!(
    r#"{"id":1,"connect":{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSIsImV4cCI6MTc5OTk5OTk5OX0."#,
    r#"c2lnbmF0dXJlLW9mLWEtdG9rZW4tYXMtbG9uZy1hcy1hbi1IUzI1Ni1vbmU","name":"js"}}"#,
    "\n",
    r#"{"id":2,"subscribe":{"channel":"b0"}}"#
);

/// Small client buffers: thousands of connections share one loadgen process.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20))
}

/// Dials `url` (asking for `subprotocol` when given).
///
/// A plain `ws://` socket is set to end with a reset instead of a FIN when the load generator
/// closes it (`SO_LINGER` 0): a generator exiting with 10 000 open connections would otherwise
/// leave 10 000 ports in TIME_WAIT for a minute, and the next scenario's connections would be
/// made among them (connect storms measured 20–40 % slower right after a fan-out). Every
/// measurement ends before the load generator closes its sockets.
pub async fn dial(url: &str, subprotocol: Option<&str>) -> Result<Ws, ConnError> {
    let mut request = url.into_client_request()?;
    if let Some(p) = subprotocol {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(p).map_err(|e| ConnError::Protocol(e.to_string()))?,
        );
    }
    let (ws, _) = match crate::resolve::dial_addr(url) {
        // A project at its own host under a name no resolver knows: dial the edge, send the
        // name in `Host` (the request carries it from the URL).
        Some(addr) => {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
            let _ = stream.set_nodelay(true);
            tokio_tungstenite::client_async_with_config(
                request,
                MaybeTlsStream::Plain(stream),
                Some(ws_config()),
            )
            .await?
        }
        None => {
            tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true).await?
        }
    };
    if let MaybeTlsStream::Plain(stream) = ws.get_ref() {
        let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    }
    Ok(ws)
}

/// Dials and runs the protocol's opening. Publications arriving meanwhile go to `rec`.
pub async fn open(
    opening: &Opening<'_>,
    rec: &mut impl Recorder,
    handshake_timeout: Duration,
) -> Result<Ws, ConnError> {
    let work = async {
        let url = match opening.channels.first() {
            Some(ch) => opening.url.replace("{channel}", ch),
            None => opening.url.to_owned(),
        };
        let sub = (opening.protocol == Protocol::Protobuf).then_some("centrifuge-protobuf");
        let mut ws = dial(&url, sub).await?;
        match opening.protocol {
            Protocol::Json | Protocol::Protobuf => {
                centrifugo::handshake(
                    &mut ws,
                    opening.protocol,
                    opening.token.as_deref(),
                    opening.channels,
                    rec,
                )
                .await?
            }
            Protocol::Socketio => socketio::handshake(&mut ws, rec).await?,
            Protocol::Raw => {}
            Protocol::Echo => {
                ws.send(Message::text(ECHO_OPENING)).await?;
                next_data(&mut ws).await?;
            }
        }
        Ok(ws)
    };
    tokio::time::timeout(handshake_timeout, work)
        .await
        .map_err(|_| ConnError::Timeout)?
}

/// The answer a received frame needs (an application pong), if any.
pub fn reply_to(protocol: Protocol, msg: &Message) -> Option<Message> {
    match protocol {
        Protocol::Json | Protocol::Protobuf => centrifugo::pong_for(protocol, msg),
        Protocol::Socketio => socketio::pong_for(msg),
        Protocol::Raw | Protocol::Echo => None,
    }
}

/// Reads until the socket ends; returns why it ended (`Ok` for a normal close).
pub async fn read_loop(
    ws: &mut Ws,
    protocol: Protocol,
    rec: &mut impl Recorder,
) -> Result<(), ConnError> {
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        let now = crate::payload::now_micros();
        match &msg {
            Message::Text(t) => rec.frame(t.as_bytes(), now),
            Message::Binary(b) => rec.frame(b, now),
            Message::Close(frame) => {
                return Err(ConnError::Closed(
                    frame
                        .as_ref()
                        .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default(),
                ))
            }
            _ => continue,
        }
        if let Some(answer) = reply_to(protocol, &msg) {
            ws.send(answer).await?;
        }
    }
    Ok(())
}

/// Reads one data frame (text or binary) during an opening, answering pings.
pub(crate) async fn next_data(ws: &mut Ws) -> Result<Message, ConnError> {
    loop {
        match ws.next().await {
            None => return Err(ConnError::Closed("end of stream".into())),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Close(f))) => {
                return Err(ConnError::Closed(
                    f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default(),
                ))
            }
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(m),
            Some(Ok(_)) => continue,
        }
    }
}

/// The channels of connection number `global` (0-based): `per_conn` consecutive channels of a
/// pool of `pool`, so every channel of the pool has the same number of subscribers when
/// `conns * per_conn` is a multiple of `pool`.
pub fn channels_for(global: usize, per_conn: usize, pool: usize, prefix: &str) -> Vec<String> {
    let pool = pool.max(1);
    let mut out: Vec<String> = Vec::with_capacity(per_conn);
    for j in 0..per_conn {
        let name = format!("{prefix}{}", (global * per_conn + j) % pool);
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Subscribers per channel index of the pool for connections `0..conns`.
pub fn subscribers_per_channel(conns: usize, per_conn: usize, pool: usize) -> Vec<u64> {
    let pool = pool.max(1);
    let mut out = vec![0; pool];
    for g in 0..conns {
        let mut seen = Vec::with_capacity(per_conn);
        for j in 0..per_conn {
            let c = (g * per_conn + j) % pool;
            if !seen.contains(&c) {
                seen.push(c);
                out[c] += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_spread_evenly_over_the_pool() {
        assert_eq!(channels_for(3, 2, 4, "b"), vec!["b2", "b3"]);
        let subs = subscribers_per_channel(10_000, 10, 1000);
        assert!(subs.iter().all(|&s| s == 100));
        assert_eq!(subscribers_per_channel(5, 1, 1), vec![5]);
        // More channels per connection than the pool has: each counted (and subscribed) once.
        assert_eq!(subscribers_per_channel(2, 3, 2), vec![2, 2]);
        assert_eq!(channels_for(0, 3, 2, "b"), vec!["b0", "b1"]);
    }
}
