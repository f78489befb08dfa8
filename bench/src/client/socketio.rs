//! Engine.IO v4 / Socket.IO v5 over a plain WebSocket (`/socket.io/?EIO=4&transport=websocket`),
//! text framing only: the server opens with `0{…}`, the client connects to the main namespace
//! with `40` and gets `40{…}` back; events are `42["name",…]`; the server pings with `2` and
//! the client answers `3`.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::{next_data, ConnError, Recorder, Ws};

/// Waits for the open packet, connects to `/` and waits for the acknowledgement.
pub async fn handshake(ws: &mut Ws, rec: &mut impl Recorder) -> Result<(), ConnError> {
    let open = next_data(ws).await?;
    match open.to_text() {
        Ok(t) if t.starts_with('0') => {}
        Ok(t) => return Err(ConnError::Protocol(format!("expected open, got {t:.32}"))),
        Err(e) => return Err(e.into()),
    }
    ws.send(Message::text("40")).await?;
    loop {
        let msg = next_data(ws).await?;
        let text = msg.to_text()?;
        if text.starts_with("40") {
            return Ok(());
        }
        if text.starts_with("44") {
            return Err(ConnError::Refused(text.chars().take(64).collect()));
        }
        if text == "2" {
            ws.send(Message::text("3")).await?;
        } else if text.starts_with("42") {
            rec.frame(text.as_bytes(), crate::payload::now_micros());
        }
    }
}

/// An event packet `42["publish",<payload as a JSON string>]`.
pub fn publish(payload: &str) -> Message {
    let body = serde_json::to_string(&serde_json::json!(["publish", payload])).unwrap_or_default();
    Message::text(format!("42{body}"))
}

/// `3` for the server's ping `2`.
pub fn pong_for(msg: &Message) -> Option<Message> {
    match msg {
        Message::Text(t) if t.as_str() == "2" => Some(Message::text("3")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_get_pongs_and_events_do_not() {
        assert_eq!(pong_for(&Message::text("2")), Some(Message::text("3")));
        assert_eq!(pong_for(&Message::text("42[\"msg\",\"2\"]")), None);
    }

    #[test]
    fn a_publish_event_keeps_the_stamp_findable() {
        let p = crate::payload::make_at(7, 1, 40);
        let Message::Text(t) = publish(&p) else {
            panic!("text")
        };
        assert!(t.as_str().starts_with("42[\"publish\","));
        assert_eq!(crate::payload::find(t.as_bytes()), Some((7, 1)));
    }
}
