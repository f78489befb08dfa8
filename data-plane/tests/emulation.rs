//! Bidirectional emulation: HTTP-streaming and SSE sessions with commands posted to
//! `/emulation`, checked with a raw HTTP client (the real SDK runs in tests/tests/interop).

mod common;

use common::{token, Client, TestServer, WAIT};
use serde_json::{json, Value};

fn enabled() -> Value {
    json!({"http_stream": {"enabled": true}, "sse": {"enabled": true}})
}

/// Appends the stream's next chunk to `buf`.
async fn read_chunk(resp: &mut reqwest::Response, buf: &mut String) {
    let chunk = tokio::time::timeout(WAIT, resp.chunk())
        .await
        .expect("stalled")
        .unwrap()
        .expect("stream open");
    buf.push_str(&String::from_utf8_lossy(&chunk));
}

async fn read_message(resp: &mut reqwest::Response, buf: &mut String, sep: &str) -> Value {
    loop {
        if let Some(i) = buf.find(sep) {
            let msg: String = buf.drain(..i + sep.len()).collect();
            let msg = msg.trim().trim_start_matches("data: ").to_owned();
            if msg.is_empty() || msg == "{}" {
                continue;
            }
            return serde_json::from_str(&msg).unwrap();
        }
        read_chunk(resp, buf).await;
    }
}

#[tokio::test]
async fn an_http_stream_session_takes_later_commands_through_emulation() {
    let s = TestServer::start(enabled()).await;
    let http = reqwest::Client::new();
    let connect = json!({"id": 1, "connect": {"token": token(json!({"sub": "u"}))}}).to_string();
    let mut resp = http
        .post(format!("http://{}/connection/http_stream", s.addr))
        .body(connect)
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let reply = read_message(&mut resp, &mut buf, "\n").await;
    let session = reply["connect"]["session"].as_str().unwrap().to_owned();
    assert_eq!(reply["connect"]["node"], json!(s.node.id));
    let data = format!(
        "{}\n{}",
        json!({"id": 2, "subscribe": {"channel": "news"}}),
        json!({"id": 3, "publish": {"channel": "news", "data": {"x": 1}}})
    );
    let r = http
        .post(format!("http://{}/emulation", s.addr))
        .body(json!({"session": session, "node": s.node.id, "data": data}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        read_message(&mut resp, &mut buf, "\n").await,
        json!({"id": 2, "subscribe": {}})
    );
    let mut got = [
        read_message(&mut resp, &mut buf, "\n").await,
        read_message(&mut resp, &mut buf, "\n").await,
    ];
    got.sort_by_key(|v| v.get("id").is_none());
    assert_eq!(got[0], json!({"id": 3, "publish": {}}));
    assert_eq!(got[1]["push"]["pub"]["data"], json!({"x": 1}));
    let unknown = http
        .post(format!("http://{}/emulation", s.addr))
        .body(json!({"session": "nope", "node": s.node.id, "data": "{}"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let garbage = http
        .post(format!("http://{}/emulation", s.addr))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 400);
}

#[tokio::test]
async fn an_sse_session_connects_with_cf_connect_and_ends_with_a_disconnect_push() {
    let s = TestServer::start(enabled()).await;
    let connect =
        json!({"id": 1, "connect": {"token": token(json!({"sub": "sse-user"}))}}).to_string();
    let mut resp = reqwest::Client::new()
        .get(format!("http://{}/connection/sse", s.addr))
        .query(&[("cf_connect", connect)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let reply = read_message(&mut resp, &mut buf, "\n\n").await;
    assert!(reply["connect"]["session"].is_string());
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/disconnect", s.addr))
        .header("x-api-key", "api-key")
        .body(r#"{"user":"sse-user"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        read_message(&mut resp, &mut buf, "\n\n").await,
        json!({"push": {"disconnect": {"code": 3503, "reason": "force disconnect"}}})
    );
}

#[tokio::test]
async fn emulation_transports_are_off_unless_enabled() {
    let s = TestServer::start(json!({})).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/connection/http_stream", s.addr))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// Reads one varint-delimited Protobuf reply from an HTTP-streaming response.
async fn read_proto(
    resp: &mut reqwest::Response,
    buf: &mut Vec<u8>,
) -> rotor_data_plane::protocol::Reply {
    use prost::Message as _;
    loop {
        let mut slice = &buf[..];
        if let Ok(len) = prost::encoding::decode_varint(&mut slice) {
            let head = buf.len() - slice.len();
            if slice.len() >= len as usize {
                let reply =
                    rotor_data_plane::protocol::Reply::decode(&slice[..len as usize]).unwrap();
                buf.drain(..head + len as usize);
                if reply.id == 0 && reply.push.is_none() {
                    continue; // a ping
                }
                return reply;
            }
        }
        let chunk = tokio::time::timeout(WAIT, resp.chunk())
            .await
            .expect("stalled")
            .unwrap()
            .expect("stream open");
        buf.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn http_streaming_speaks_protobuf_with_octet_stream_and_emulation_takes_protobuf_requests() {
    use prost::Message as _;
    use rotor_data_plane::protocol::{Command, ConnectRequest, SubscribeRequest};
    use rotor_data_plane::transport::emulation::EmulationRequest;
    let s = TestServer::start(enabled()).await;
    let http = reqwest::Client::new();
    let connect = Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: token(json!({"sub": "p"})),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut resp = http
        .post(format!("http://{}/connection/http_stream", s.addr))
        .header("content-type", "application/octet-stream")
        .body(connect.encode_length_delimited_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut buf = Vec::new();
    let reply = read_proto(&mut resp, &mut buf).await;
    let result = reply.connect.expect("connect result");
    assert_eq!(reply.id, 1);
    assert_eq!(result.node, s.node.id);
    let subscribe = Command {
        id: 2,
        subscribe: Some(SubscribeRequest {
            channel: "news".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let request = EmulationRequest {
        node: result.node.clone(),
        session: result.session.clone(),
        data: subscribe.encode_length_delimited_to_vec().into(),
    };
    let r = http
        .post(format!("http://{}/emulation", s.addr))
        .header("content-type", "application/octet-stream")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let reply = read_proto(&mut resp, &mut buf).await;
    assert_eq!(reply.id, 2);
    assert!(
        reply.subscribe.is_some() && reply.error.is_none(),
        "{reply:?}"
    );

    // CORS preflight, an unknown node and an oversize body.
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/emulation", s.addr),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    let other_node = http
        .post(format!("http://{}/emulation", s.addr))
        .body(json!({"session": result.session, "node": "another-node", "data": "{}"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(other_node.status().as_u16(), 404);
    let huge = http
        .post(format!("http://{}/emulation", s.addr))
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
}

#[tokio::test]
async fn another_user_who_knows_the_client_id_cannot_post_into_an_emulation_session() {
    let s = TestServer::start(enabled()).await;
    let http = reqwest::Client::new();
    let post = |session: &str, data: String| {
        http.post(format!("http://{}/emulation", s.addr))
            .body(json!({"session": session, "node": s.node.id, "data": data}).to_string())
            .send()
    };
    // The victim: an HTTP-streaming connection in a room with presence.
    let connect = json!({"id": 1, "connect": {"token": token(json!({"sub": "victim"}))}});
    let mut victim = http
        .post(format!("http://{}/connection/http_stream", s.addr))
        .body(connect.to_string())
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let reply = read_message(&mut victim, &mut buf, "\n").await;
    let client_id = reply["connect"]["client"].as_str().unwrap().to_owned();
    let session = reply["connect"]["session"].as_str().unwrap().to_owned();
    assert_ne!(
        session, client_id,
        "the session id is not the public client id"
    );
    assert_eq!(session.len(), 32, "128 random bits, hex: {session}");
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()), "{session}");
    let join = json!({"id": 2, "subscribe": {"channel": "chat:room"}}).to_string();
    assert_eq!(post(&session, join).await.unwrap().status().as_u16(), 204);
    assert_eq!(
        read_message(&mut victim, &mut buf, "\n").await["id"],
        json!(2)
    );

    // The attacker learns the victim's client id from presence, as any member can.
    let (mut attacker, _) = Client::connected(&s.ws_url(), "attacker").await;
    attacker
        .call(json!({"subscribe": {"channel": "chat:room"}}))
        .await;
    let presence = attacker
        .call(json!({"presence": {"channel": "chat:room"}}))
        .await;
    assert_eq!(
        presence["presence"]["presence"][&client_id]["user"], "victim",
        "{presence}"
    );
    // Posting into the victim's connection by client id (and node) is refused.
    let forged = json!({"id": 99, "publish": {"channel": "chat:room", "data": {"forged": true}}});
    let r = post(&client_id, forged.to_string()).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.text().await.unwrap().is_empty(), "a plain 404");

    // The victim's connection is untouched: its next message answers its own next command.
    let own = json!({"id": 3, "publish": {"channel": "chat:room", "data": {"own": true}}});
    assert_eq!(
        post(&session, own.to_string())
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = read_message(&mut victim, &mut buf, "\n").await;
        if m["push"]["join"].is_object() {
            continue; // the attacker joining the room
        }
        got.push(m);
    }
    got.sort_by_key(|v| v.get("id").is_none());
    assert_eq!(got[0], json!({"id": 3, "publish": {}}));
    assert_eq!(got[1]["push"]["pub"]["data"], json!({"own": true}));
    // The room saw the victim's publication only, never the forged one.
    let publication = loop {
        let push = attacker.push().await;
        if push.get("pub").is_some() {
            break push;
        }
    };
    assert_eq!(publication["pub"]["data"], json!({"own": true}));
}

/// The next EventSource event's data, parsed as a conforming parser does: a line ends at CR,
/// LF or CRLF, `data:` lines join with LF, and a blank line ends the event.
async fn next_sse_event(resp: &mut reqwest::Response, buf: &mut String) -> Value {
    let mut data: Option<String> = None;
    loop {
        while let Some(i) = buf.find(['\r', '\n']) {
            let end = if buf[i..].starts_with("\r\n") {
                i + 2
            } else if buf[i..].starts_with('\r') && i + 1 == buf.len() {
                break; // maybe the first half of a CRLF
            } else {
                i + 1
            };
            let line: String = buf.drain(..end).collect();
            let line = &line[..i];
            if line.is_empty() {
                match data.take() {
                    Some(d) if d != "{}" => {
                        return serde_json::from_str(&d)
                            .unwrap_or_else(|e| panic!("event data {d:?} is cut: {e}"))
                    }
                    _ => continue,
                }
            }
            if let Some(v) = line.strip_prefix("data:") {
                let v = v.strip_prefix(' ').unwrap_or(v);
                let d = data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(v);
            }
        }
        read_chunk(resp, buf).await;
    }
}

/// A carriage return is insignificant whitespace in JSON but ends a line for EventSource: a
/// publication carrying one still arrives as one intact event.
#[tokio::test]
async fn a_publication_with_a_carriage_return_reaches_an_sse_subscriber_intact() {
    let s = TestServer::start(enabled()).await;
    let http = reqwest::Client::new();
    let connect =
        json!({"id": 1, "connect": {"token": token(json!({"sub": "sse-cr"}))}}).to_string();
    let mut resp = http
        .get(format!("http://{}/connection/sse", s.addr))
        .query(&[("cf_connect", connect)])
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let reply = next_sse_event(&mut resp, &mut buf).await;
    let session = reply["connect"]["session"].as_str().unwrap().to_owned();
    let subscribe = json!({"id": 2, "subscribe": {"channel": "news"}}).to_string();
    let r = http
        .post(format!("http://{}/emulation", s.addr))
        .body(json!({"session": session, "node": s.node.id, "data": subscribe}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        next_sse_event(&mut resp, &mut buf).await,
        json!({"id": 2, "subscribe": {}})
    );
    let r = http
        .post(format!("http://{}/api/publish", s.addr))
        .header("x-api-key", "api-key")
        .body("{\"channel\":\"news\",\"data\":{\"data\":[1,\r2]}}")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body["result"].is_object(), "{body}");
    let push = next_sse_event(&mut resp, &mut buf).await;
    assert_eq!(
        push["push"]["pub"]["data"],
        json!({"data": [1, 2]}),
        "{push}"
    );
}
