//! HTTP/2 with prior knowledge at the edge: how a hosted project's gRPC server API reaches its
//! process. The edge reads the connection preface and the frames up to the end of the first
//! request's headers, decodes them (HPACK) and routes on them: the `:authority` when projects
//! are served at their own host, else a `rotor-project` metadata entry naming the project's
//! slug. The whole connection, those bytes included, is then handed to the project's process
//! (see [`rotor_handoff::grpc`]) and the edge leaves the data path, as for a
//! WebSocket. Only gRPC requests (`content-type: application/grpc…`) are routed; another
//! HTTP/2 client is told to use HTTP/1.1.
//!
//! What the edge refuses itself it answers as gRPC does, so a client's error names the
//! reason: the connection's settings, one trailers-only response (`grpc-status`,
//! `grpc-message`) on the request's stream, and a GOAWAY.
//!
//! TLS is ended in front of the edge (as for every other request), so ALPN `h2` is the
//! terminator's business: it must pass HTTP/2 through as cleartext HTTP/2 (h2c).

use loona_hpack::{Decoder, Encoder};
use sha2::{Digest, Sha256};

pub use rotor_handoff::grpc::PREFACE;

use super::head::PresentedKey;

/// Largest first-request prefix (preface, settings and the header block) the edge reads.
pub const MAX_FIRST_REQUEST: usize = 60 * 1024;
/// SETTINGS_MAX_FRAME_SIZE's initial value: no client may send a larger frame before the
/// server raised it, and the edge raises nothing.
const MAX_FRAME: usize = 16_384;

const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// GOAWAY's HTTP_1_1_REQUIRED: the client should repeat its request over HTTP/1.1.
const HTTP_1_1_REQUIRED: u32 = 0xd;
/// GOAWAY's NO_ERROR.
const NO_ERROR: u32 = 0x0;
/// GOAWAY's PROTOCOL_ERROR.
const PROTOCOL_ERROR: u32 = 0x1;

/// What the first request of a connection says about where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstRequest {
    /// The request's stream, for an answer of the edge's own.
    pub stream_id: u32,
    /// `:authority`, lower case.
    pub authority: Option<String>,
    /// `:path`.
    pub path: String,
    /// The `rotor-project` metadata entry.
    pub project: Option<String>,
    /// Whether `content-type` is gRPC's.
    pub grpc: bool,
    /// The digest of the key in `authorization: apikey <key>` (see [`PresentedKey`]).
    pub api_key: Option<PresentedKey>,
    /// Where the client's acknowledgement of the edge's settings begins (always there for a
    /// gRPC request; a request of another kind is returned without waiting for it).
    pub settings_ack_at: Option<usize>,
}

/// Why the start of a connection is not a request the edge can route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H2Error {
    #[error("malformed HTTP/2 connection start: {0}")]
    Malformed(&'static str),
    #[error("the first request's headers exceed {MAX_FIRST_REQUEST} bytes")]
    TooLarge,
}

/// Whether `buf` is, or may still become, the start of an HTTP/2 connection.
pub fn may_be_preface(buf: &[u8]) -> bool {
    if buf.len() < PREFACE.len() {
        PREFACE.starts_with(buf)
    } else {
        buf.starts_with(PREFACE)
    }
}

/// Reads the first request's headers from a connection's first bytes (which begin with
/// [`PREFACE`]), and for a gRPC request the client's acknowledgement of the edge's
/// [`settings`]: `Ok(None)` until both are there. gRPC clients wait for the server's settings before they send a request, so
/// the edge sends its own at once; the acknowledgement is the edge's to take out of what the
/// project's process is handed, which sends (and awaits the acknowledgement of) its own.
pub fn first_request(buf: &[u8]) -> Result<Option<FirstRequest>, H2Error> {
    let mut at = PREFACE.len();
    let mut block = Vec::new();
    let mut open: Option<u32> = None;
    let mut request: Option<FirstRequest> = None;
    let mut ack: Option<usize> = None;
    loop {
        if let Some(first) = request.as_mut() {
            first.settings_ack_at = ack;
            // A request that is not gRPC's is refused as soon as it is read.
            if ack.is_some() || !first.grpc {
                return Ok(request);
            }
        }
        if at > MAX_FIRST_REQUEST {
            return Err(H2Error::TooLarge);
        }
        let Some(header) = buf.get(at..at + 9) else {
            return incomplete(buf);
        };
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            return Err(H2Error::Malformed("frame larger than the initial maximum"));
        }
        let Some(payload) = buf.get(at + 9..at + 9 + len) else {
            return incomplete(buf);
        };
        let frame_at = at;
        at += 9 + len;
        if kind == SETTINGS && flags & ACK != 0 {
            if stream != 0 || len != 0 || ack.is_some() {
                return Err(H2Error::Malformed(
                    "settings acknowledged twice or malformed",
                ));
            }
            ack = Some(frame_at);
            continue;
        }
        if request.is_some() {
            // The request's body and the like: the process reads and checks them.
            continue;
        }
        match (open, kind) {
            (None, SETTINGS | PING) if stream == 0 => {}
            (None, WINDOW_UPDATE) => {}
            (None, PRIORITY) if stream != 0 => {}
            (None, HEADERS) => {
                if stream == 0 || stream % 2 == 0 {
                    return Err(H2Error::Malformed(
                        "headers on a stream a client cannot open",
                    ));
                }
                block.extend_from_slice(fragment(payload, flags)?);
                if flags & END_HEADERS != 0 {
                    request = Some(decode(stream, &block)?);
                } else {
                    open = Some(stream);
                }
            }
            (Some(id), CONTINUATION) if id == stream => {
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    request = Some(decode(stream, &block)?);
                    open = None;
                }
            }
            (Some(_), _) => return Err(H2Error::Malformed("header block interrupted")),
            (None, _) => {
                return Err(H2Error::Malformed(
                    "a frame that cannot precede the first request",
                ))
            }
        }
    }
}

/// The edge's settings, sent as soon as a connection begins with [`PREFACE`]: none changed.
pub fn settings() -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    frame(&mut out, SETTINGS, 0, 0, &[]);
    out
}

/// `buf` without the 9-byte settings acknowledgement at `at` (see [`first_request`]).
pub fn without_ack(buf: &[u8], at: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len().saturating_sub(9));
    out.extend_from_slice(&buf[..at]);
    out.extend_from_slice(buf.get(at + 9..).unwrap_or_default());
    out
}

fn incomplete(buf: &[u8]) -> Result<Option<FirstRequest>, H2Error> {
    if buf.len() > MAX_FIRST_REQUEST {
        Err(H2Error::TooLarge)
    } else {
        Ok(None)
    }
}

/// A HEADERS frame's header block fragment: its padding and priority fields removed.
fn fragment(payload: &[u8], flags: u8) -> Result<&[u8], H2Error> {
    let mut body = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&n, rest) = body
            .split_first()
            .ok_or(H2Error::Malformed("padded frame without its pad length"))?;
        pad = usize::from(n);
        body = rest;
    }
    if flags & PRIORITY_FLAG != 0 {
        body = body
            .get(5..)
            .ok_or(H2Error::Malformed("priority fields missing"))?;
    }
    body.len()
        .checked_sub(pad)
        .map(|end| &body[..end])
        .ok_or(H2Error::Malformed("padding longer than the frame"))
}

fn decode(stream_id: u32, block: &[u8]) -> Result<FirstRequest, H2Error> {
    let mut request = FirstRequest {
        stream_id,
        authority: None,
        path: String::new(),
        project: None,
        grpc: false,
        api_key: None,
        settings_ack_at: None,
    };
    let fields = Decoder::new()
        .decode(block)
        .map_err(|_| H2Error::Malformed("header block does not decode"))?;
    for (name, value) in fields {
        let Ok(value) = std::str::from_utf8(&value) else {
            continue;
        };
        match name.as_slice() {
            b":authority" => request.authority = Some(value.to_ascii_lowercase()),
            b":path" => request.path = value.to_owned(),
            b"rotor-project" => request.project = Some(value.trim().to_ascii_lowercase()),
            b"content-type" => request.grpc = value.starts_with("application/grpc"),
            b"authorization" => {
                request.api_key = value
                    .trim()
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("apikey"))
                    .map(|(_, key)| key.trim())
                    .filter(|key| !key.is_empty())
                    .map(|key| Sha256::digest(key.as_bytes()).into());
            }
            _ => {}
        }
    }
    Ok(request)
}

/// gRPC status codes the edge answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcStatus {
    InvalidArgument = 3,
    NotFound = 5,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unavailable = 14,
}

/// The bytes that refuse the connection's first request with `status` and `message`: a
/// trailers-only response on the request's stream, and a GOAWAY (the edge's [`settings`] went
/// first).
pub fn refusal(stream_id: u32, status: GrpcStatus, message: &str) -> Vec<u8> {
    let code = (status as u8).to_string();
    let message = percent_encode(message);
    let fields: [(&[u8], &[u8]); 4] = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", code.as_bytes()),
        (b"grpc-message", message.as_bytes()),
    ];
    let block = Encoder::new().encode(fields);
    let mut out = Vec::with_capacity(64 + block.len());
    frame(
        &mut out,
        HEADERS,
        END_STREAM | END_HEADERS,
        stream_id,
        &block,
    );
    goaway(&mut out, stream_id, NO_ERROR);
    out
}

/// The bytes that end a connection whose start is not valid HTTP/2 (GOAWAY PROTOCOL_ERROR).
pub fn protocol_error() -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    goaway(&mut out, 0, PROTOCOL_ERROR);
    out
}

/// The bytes that tell an HTTP/2 client that is not a gRPC client to use HTTP/1.1.
pub fn http_1_1_required() -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    goaway(&mut out, 0, HTTP_1_1_REQUIRED);
    out
}

fn goaway(out: &mut Vec<u8>, last_stream: u32, code: u32) {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&last_stream.to_be_bytes());
    payload[4..].copy_from_slice(&code.to_be_bytes());
    frame(out, GOAWAY, 0, 0, &payload);
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len().min(MAX_FRAME) as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&payload[..len as usize]);
}

/// `grpc-message` is percent-encoded outside printable ASCII (and `%` itself).
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let block = Encoder::new().encode(fields.iter().copied());
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
        frame(&mut out, WINDOW_UPDATE, 0, 0, &[0, 0, 0xff, 0]);
        frame(&mut out, HEADERS, END_HEADERS, 1, &block);
        out
    }

    fn ack(out: &mut Vec<u8>) {
        frame(out, SETTINGS, ACK, 0, &[]);
    }

    fn grpc_call(authority: &[u8]) -> Vec<u8> {
        start(&[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (
                b":path",
                b"/centrifugal.centrifugo.api.CentrifugoApi/Publish",
            ),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"authorization", b"apikey secret-1"),
            (b"rotor-project", b"Demo-1"),
        ])
    }

    #[test]
    fn the_first_request_of_a_grpc_connection_is_read_whole_and_only_whole() {
        let mut bytes = grpc_call(b"Demo-1.RT.example.com");
        let headers_end = bytes.len();
        ack(&mut bytes);
        frame(&mut bytes, 0x0, 0, 1, b"\0\0\0\0\0");
        for cut in [
            0,
            5,
            PREFACE.len(),
            PREFACE.len() + 4,
            headers_end - 1,
            headers_end + 4,
        ] {
            assert!(may_be_preface(&bytes[..cut.min(PREFACE.len())]));
            assert_eq!(
                first_request(&bytes[..cut.max(PREFACE.len())]),
                Ok(None),
                "cut {cut}"
            );
        }
        let first = first_request(&bytes).unwrap().unwrap();
        assert_eq!(first.settings_ack_at, Some(headers_end));
        let handed = without_ack(&bytes, headers_end);
        assert_eq!(&handed[..headers_end], &bytes[..headers_end]);
        assert_eq!(
            &handed[headers_end..],
            &bytes[headers_end + 9..],
            "only the ack is taken out"
        );
        assert_eq!(first.stream_id, 1);
        assert_eq!(first.authority.as_deref(), Some("demo-1.rt.example.com"));
        assert_eq!(
            first.path,
            "/centrifugal.centrifugo.api.CentrifugoApi/Publish"
        );
        assert_eq!(first.project.as_deref(), Some("demo-1"));
        assert!(first.grpc);
        let digest: PresentedKey = Sha256::digest(b"secret-1").into();
        assert_eq!(first.api_key, Some(digest));
        assert!(!may_be_preface(b"GET / HTTP/1.1\r\n"));
    }

    #[test]
    fn a_header_block_split_over_continuations_with_padding_and_priority_is_read() {
        let block = Encoder::new().encode([
            (b":path".as_slice(), b"/x".as_slice()),
            (b":authority", b"a.rt.example.com"),
            (b"content-type", b"application/grpc+proto"),
        ]);
        let (one, two) = block.split_at(block.len() / 2);
        let mut headers = vec![3u8];
        headers.extend_from_slice(&[0x80, 0, 0, 0, 16]);
        headers.extend_from_slice(one);
        headers.extend_from_slice(&[0, 0, 0]);
        let mut bytes = PREFACE.to_vec();
        frame(&mut bytes, HEADERS, PADDED | PRIORITY_FLAG, 3, &headers);
        assert_eq!(first_request(&bytes), Ok(None));
        frame(&mut bytes, CONTINUATION, END_HEADERS, 3, two);
        assert_eq!(
            first_request(&bytes),
            Ok(None),
            "the settings are not acknowledged yet"
        );
        ack(&mut bytes);
        let first = first_request(&bytes).unwrap().unwrap();
        assert_eq!((first.stream_id, first.path.as_str()), (3, "/x"));
        assert!(first.grpc);
    }

    #[test]
    fn what_no_client_may_send_first_is_malformed() {
        let malformed = |bytes: &[u8]| matches!(first_request(bytes), Err(H2Error::Malformed(_)));
        let mut data_first = PREFACE.to_vec();
        frame(&mut data_first, 0x0, 0, 1, b"x");
        assert!(malformed(&data_first));
        let mut even = PREFACE.to_vec();
        frame(&mut even, HEADERS, END_HEADERS, 2, &[0x82]);
        assert!(malformed(&even));
        let mut twice = PREFACE.to_vec();
        ack(&mut twice);
        ack(&mut twice);
        assert!(malformed(&twice));
        let mut interrupted = PREFACE.to_vec();
        frame(&mut interrupted, HEADERS, 0, 1, &[0x82]);
        frame(&mut interrupted, SETTINGS, 0, 0, &[]);
        assert!(malformed(&interrupted));
        let mut garbage = PREFACE.to_vec();
        frame(
            &mut garbage,
            HEADERS,
            END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        assert!(malformed(&garbage));
        let mut huge = PREFACE.to_vec();
        huge.extend_from_slice(&[0x01, 0, 0, HEADERS, 0, 0, 0, 0, 1]);
        assert!(malformed(&huge));
    }

    #[test]
    fn an_endless_header_block_is_too_large() {
        let mut bytes = PREFACE.to_vec();
        frame(&mut bytes, HEADERS, 0, 1, &[0x82]);
        while bytes.len() <= MAX_FIRST_REQUEST {
            frame(&mut bytes, CONTINUATION, 0, 1, &[0x82; 1000]);
        }
        assert_eq!(first_request(&bytes), Err(H2Error::TooLarge));
        let mut pings = PREFACE.to_vec();
        while pings.len() <= MAX_FIRST_REQUEST + 100 {
            frame(&mut pings, PING, 0, 0, &[0; 8]);
        }
        assert_eq!(first_request(&pings), Err(H2Error::TooLarge));
    }

    #[test]
    fn a_refusal_is_a_trailers_only_grpc_response_then_goaway() {
        let bytes = refusal(5, GrpcStatus::NotFound, "no project at 100% here");
        assert_eq!(settings(), [0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
        // HEADERS on stream 5 ending the stream, then GOAWAY.
        let len = usize::from(bytes[2]) | usize::from(bytes[1]) << 8;
        assert_eq!(
            &bytes[3..9],
            &[HEADERS, END_STREAM | END_HEADERS, 0, 0, 0, 5]
        );
        let fields = Decoder::new().decode(&bytes[9..9 + len]).unwrap();
        let get = |n: &[u8]| {
            fields
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(get(b"grpc-status").as_deref(), Some("5"));
        assert_eq!(
            get(b"grpc-message").as_deref(),
            Some("no project at 100%25 here")
        );
        let goaway = &bytes[9 + len..];
        assert_eq!(goaway[3], GOAWAY);
        assert_eq!(&goaway[9..13], &5u32.to_be_bytes());
        assert_eq!(http_1_1_required()[3], GOAWAY);
        assert_eq!(protocol_error()[3], GOAWAY);
    }
}
